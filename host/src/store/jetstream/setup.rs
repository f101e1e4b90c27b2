//! Creating the event stream and the snapshot bucket, with the settings of
//! [`JetStreamConfig`], on first use and again if the server lost them.

use super::{JetStreamConfig, JetStreamStorage};
use crate::store::StoreError;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::CreateStreamErrorKind;
use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{self, StorageType};
use std::fmt;
use std::future::Future;

/// The stream metadata key naming the first stream sequence from which
/// every command whose id its caller chose is in the command index: 0 for a
/// stream created with the index, the stream's last sequence when an older
/// stream was given it. Only messages up to it may need a scan to be found.
pub(super) const INDEX_SINCE: &str = "aether.index-since";

/// What the store needs from the server's side.
pub(super) struct Storage {
    pub snapshots: kv::Store,
    /// See [`INDEX_SINCE`].
    pub index_since: u64,
}

/// Creates the event stream and the snapshot bucket unless they exist, and
/// gives an existing stream the command index (its subjects and the
/// [`INDEX_SINCE`] mark) if it lacks it. Idempotent, and safe against
/// another host doing the same at once.
pub(super) async fn ensure_storage(
    js: &async_nats::jetstream::Context,
    config: &JetStreamConfig,
) -> Result<Storage, StoreError> {
    // Creating a stream takes a few requests; each is bounded by the
    // context's timeout, the whole by twice that.
    let timeout = config.request_timeout * 2;
    let storage = match config.storage {
        JetStreamStorage::File => StorageType::File,
        JetStreamStorage::Memory => StorageType::Memory,
    };
    let name = config.stream_name();
    let what = format!("creating the event stream {name}");
    let wanted = stream::Config {
        name: name.clone(),
        description: Some("Aether events: one subject per actor, one message per command".into()),
        subjects: vec![format!("{}.>", config.subject_prefix()), format!("{}.>", config.index_prefix())],
        storage,
        num_replicas: config.replicas,
        max_message_size: config.max_message_bytes as i32,
        duplicate_window: config.duplicate_window,
        // Replay and head lookups read messages by subject without a consumer.
        allow_direct: true,
        // Deleting one message would leave a gap in an actor's versions.
        deny_delete: true,
        metadata: [(INDEX_SINCE.to_owned(), "0".to_owned())].into(),
        ..Default::default()
    };
    let wanted_index = config.index_prefix();
    let index_since = within(timeout, &what, async {
        match js.create_stream(wanted).await {
            // Made with the index: every command is in it.
            Ok(_) => Ok(0),
            // It exists with other settings: made by another host, an
            // operator, or an older aether-host. Use it as it is, but for
            // the command index.
            Err(e) if is_name_taken(&e.kind()) => {
                let mut existing = js.get_stream(&name).await.map_err(|e| setup_failed(&what, e))?;
                let info = existing.info().await.map_err(|e| setup_failed(&what, e))?;
                let config = &info.config;
                tracing::warn!(
                    stream = %name,
                    replicas = config.num_replicas,
                    storage = ?config.storage,
                    duplicate_window = ?config.duplicate_window,
                    "the event stream exists with other settings than configured; using it as it is"
                );
                let index = format!("{}.>", wanted_index);
                add_index(js, config.clone(), index, info.state.last_sequence, &what).await
            }
            Err(e) => Err(setup_failed(&what, e)),
        }
    })
    .await?;

    let bucket = config.bucket_name();
    let what = format!("creating the snapshot bucket {bucket}");
    let wanted = kv::Config {
        bucket: bucket.clone(),
        description: "Aether snapshots: the latest per actor".into(),
        history: 1,
        max_value_size: config.max_message_bytes as i32,
        storage,
        num_replicas: config.replicas,
        ..Default::default()
    };
    let snapshots = within(timeout, &what, async {
        if let Ok(store) = js.get_key_value(&bucket).await {
            return Ok(store);
        }
        match js.create_key_value(wanted).await {
            Ok(store) => Ok(store),
            // Another host may have created it meanwhile.
            Err(create) => js.get_key_value(&bucket).await.map_err(|_| setup_failed(&what, create)),
        }
    })
    .await?;
    Ok(Storage { snapshots, index_since })
}

/// Gives an existing stream the command index's subjects and the
/// [`INDEX_SINCE`] mark, if it lacks either. The mark is the
/// stream's last sequence now: every later caller-id command is indexed
/// (so long as no host older than the index still writes to it).
async fn add_index(
    js: &async_nats::jetstream::Context,
    mut config: stream::Config,
    index: String,
    last_sequence: u64,
    what: &str,
) -> Result<u64, StoreError> {
    let has_subjects = config.subjects.contains(&index);
    let marked = config.metadata.contains_key(INDEX_SINCE);
    if has_subjects && marked {
        return Ok(index_since(&config));
    }
    if !has_subjects {
        config.subjects.push(index);
    }
    if !marked {
        config.metadata.insert(INDEX_SINCE.to_owned(), last_sequence.to_string());
    }
    tracing::info!(stream = %config.name, index_since = last_sequence, "adding the command index to the event stream");
    let updated = js
        .update_stream(&config)
        .await
        .map_err(|e| setup_failed(what, format_args!("cannot add the command index's subjects to the stream: {e}")))?;
    Ok(index_since(&updated.config))
}

/// The stream's [`INDEX_SINCE`] mark; a stream without a readable one may
/// hold unindexed commands anywhere.
fn index_since(config: &stream::Config) -> u64 {
    config.metadata.get(INDEX_SINCE).and_then(|v| v.parse().ok()).unwrap_or(u64::MAX)
}

async fn within<T>(
    timeout: std::time::Duration,
    what: &str,
    request: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(timeout, request)
        .await
        .unwrap_or_else(|_| Err(setup_failed(what, format_args!("no answer within {timeout:?}"))))
}

fn setup_failed(what: &str, cause: impl fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what}: {cause} (is JetStream enabled on the server?)"))
}

fn is_name_taken(kind: &CreateStreamErrorKind) -> bool {
    matches!(kind, CreateStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NAME_EXIST)
}
