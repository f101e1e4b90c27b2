//! The raw publish baseline of the JetStream figures: async-nats JetStream
//! publishes of a given size, one subject per actor, each waiting for its
//! ack, on a file-storage stream.

use crate::load::{self, LoadResult};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Whether a `nats-server` can be found, where the test kit looks for one
/// (`AETHER_NATS_SERVER`, `cargo xtask install-nats`'s cache, `PATH`).
pub fn server_available() -> bool {
    std::panic::catch_unwind(aether_host::testkit::nats::find_binary).is_ok()
}

/// Publishes `size`-byte messages on one subject per actor, `clients` at a
/// time, each waiting for its ack, `rounds` windows; the median round.
/// With `headers`, each message carries what the store's appends carry for
/// the server to check: a message id (de-duplication) and the expected last
/// sequence of its subject (optimistic concurrency).
///
/// # Errors
///
/// If the server refuses the stream or a publish.
pub async fn raw_publish(
    client: async_nats::Client,
    actors: usize,
    clients: usize,
    size: usize,
    window: Duration,
    rounds: usize,
    headers: bool,
) -> anyhow::Result<LoadResult> {
    let js = async_nats::jetstream::new(client);
    let name = if headers { "headers" } else { "raw" };
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: format!("BENCH_{}", name.to_uppercase()),
        subjects: vec![format!("bench.{name}.>")],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    let subjects: Arc<Vec<String>> = Arc::new((0..actors).map(|i| format!("bench.{name}.acc-{i:06}")).collect());
    // The last sequence of each subject, as the store caches it.
    let last: Arc<Vec<AtomicU64>> = Arc::new((0..actors).map(|_| AtomicU64::new(0)).collect());
    let payload = bytes::Bytes::from(vec![b'x'; size]);
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
    let mut results = Vec::new();
    for _ in 0..rounds.max(1) {
        results.push(load::window(actors, clients, window, send.clone()).await?);
    }
    Ok(LoadResult::median_of(&results))
}
