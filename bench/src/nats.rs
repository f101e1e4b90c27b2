//! The raw publish baseline of the JetStream figures: async-nats JetStream
//! publishes of a given size, one subject per actor, each waiting for its
//! ack, on a file-storage stream.

use crate::commands::Shape;
use crate::load::{self, LoadResult};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether a `nats-server` can be found, where the test kit looks for one
/// (`AETHER_NATS_SERVER`, `cargo xtask install-nats`'s cache, `PATH`).
pub fn server_available() -> bool {
    std::panic::catch_unwind(aether_testkit::nats::find_binary).is_ok()
}

/// Publishes `size`-byte messages on one subject per actor, each waiting
/// for its ack, on a file-storage stream of its own. With `headers`, each
/// message carries what the store's append of a command with a caller's id
/// carries for the server to check: a message id (de-duplication) and the
/// expected last sequence of its subject (optimistic concurrency).
#[derive(Debug)]
pub struct RawPublisher {
    js: async_nats::jetstream::Context,
    subjects: Arc<Vec<String>>,
    /// The last sequence of each subject, as the store caches it.
    last: Arc<Vec<AtomicU64>>,
    payload: bytes::Bytes,
    headers: bool,
}

impl RawPublisher {
    /// # Errors
    ///
    /// If the server refuses the stream.
    pub async fn new(client: async_nats::Client, actors: usize, size: usize, headers: bool) -> anyhow::Result<Self> {
        let js = async_nats::jetstream::new(client);
        let name = if headers { "headers" } else { "raw" };
        js.get_or_create_stream(async_nats::jetstream::stream::Config {
            name: format!("BENCH_{}", name.to_uppercase()),
            subjects: vec![format!("bench.{name}.>")],
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await?;
        Ok(Self {
            js,
            subjects: Arc::new((0..actors).map(|i| format!("bench.{name}.acc-{i:06}")).collect()),
            last: Arc::new((0..actors).map(|_| AtomicU64::new(0)).collect()),
            payload: bytes::Bytes::from(vec![b'x'; size]),
            headers,
        })
    }

    /// Publishes for one window of `shape` (its clients and length).
    ///
    /// # Errors
    ///
    /// If the server refuses a publish.
    pub async fn window(&self, shape: Shape) -> anyhow::Result<LoadResult> {
        let (js, subjects, last, payload, headers) =
            (self.js.clone(), self.subjects.clone(), self.last.clone(), self.payload.clone(), self.headers);
        let send = Arc::new(move |actor: usize, _| {
            let (js, subjects, payload, last) = (js.clone(), subjects.clone(), payload.clone(), last.clone());
            async move {
                let subject = subjects[actor].clone();
                if headers {
                    let mut map = async_nats::HeaderMap::new();
                    map.insert(async_nats::header::NATS_MESSAGE_ID, uuid::Uuid::new_v4().to_string().as_str());
                    map.insert(
                        async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                        last[actor].load(Ordering::Relaxed).to_string().as_str(),
                    );
                    let ack = js.publish_with_headers(subject, map, payload).await?.await?;
                    last[actor].store(ack.sequence, Ordering::Relaxed);
                } else {
                    js.publish(subject, payload).await?.await?;
                }
                anyhow::Ok(())
            }
        });
        load::window(self.subjects.len(), shape.clients, shape.window, send).await
    }
}
