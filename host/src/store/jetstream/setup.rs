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

/// Creates the event stream and the snapshot bucket unless they exist.
/// Idempotent, and safe against another host doing the same at once.
pub(super) async fn ensure_storage(
    js: &async_nats::jetstream::Context,
    config: &JetStreamConfig,
) -> Result<kv::Store, StoreError> {
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
        subjects: vec![format!("{}.>", config.subject_prefix())],
        storage,
        num_replicas: config.replicas,
        max_message_size: config.max_message_bytes as i32,
        duplicate_window: config.duplicate_window,
        // Replay and head lookups read messages by subject without a consumer.
        allow_direct: true,
        // Deleting one message would leave a gap in an actor's versions.
        deny_delete: true,
        ..Default::default()
    };
    within(timeout, &what, async {
        match js.create_stream(wanted).await {
            Ok(_) => Ok(()),
            // It exists with other settings: made by another host or an
            // operator. Use it as it is.
            Err(e) if is_name_taken(&e.kind()) => {
                let existing = js.get_stream(&name).await.map_err(|e| setup_failed(&what, e))?;
                let config = &existing.cached_info().config;
                tracing::warn!(
                    stream = %name,
                    replicas = config.num_replicas,
                    storage = ?config.storage,
                    duplicate_window = ?config.duplicate_window,
                    "the event stream exists with other settings than configured; using it as it is"
                );
                Ok(())
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
    within(timeout, &what, async {
        if let Ok(store) = js.get_key_value(&bucket).await {
            return Ok(store);
        }
        match js.create_key_value(wanted).await {
            Ok(store) => Ok(store),
            // Another host may have created it meanwhile.
            Err(create) => js.get_key_value(&bucket).await.map_err(|_| setup_failed(&what, create)),
        }
    })
    .await
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
