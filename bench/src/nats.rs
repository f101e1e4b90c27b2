//! The raw publish baseline of the JetStream figures: async-nats JetStream
//! publishes of a given size, one subject per actor, each waiting for its
//! ack, on a file-storage stream.

use crate::load::{self, LoadResult};
use crate::util::median;
use std::sync::Arc;
use std::time::Duration;

/// Whether a `nats-server` can be found, where the test kit looks for one
/// (`AETHER_NATS_SERVER`, `cargo xtask install-nats`'s cache, `PATH`).
pub fn server_available() -> bool {
    std::panic::catch_unwind(aether_host::testkit::nats::find_binary).is_ok()
}

/// Publishes `size`-byte messages on one subject per actor, `clients` at a
/// time, each waiting for its ack, `rounds` windows; the median round.
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
) -> anyhow::Result<LoadResult> {
    let js = async_nats::jetstream::new(client);
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: "BENCH_RAW".into(),
        subjects: vec!["bench.raw.>".into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    let subjects: Arc<Vec<String>> = Arc::new((0..actors).map(|i| format!("bench.raw.acc-{i:06}")).collect());
    let payload = bytes::Bytes::from(vec![b'x'; size]);
    let send = Arc::new(move |actor: usize, _| {
        let (js, subjects, payload) = (js.clone(), subjects.clone(), payload.clone());
        async move {
            js.publish(subjects[actor].clone(), payload).await?.await?;
            anyhow::Ok(())
        }
    });
    let mut results = Vec::new();
    for _ in 0..rounds.max(1) {
        results.push(load::window(actors, clients, window, send.clone()).await?);
    }
    let pick = |f: fn(&LoadResult) -> f64| median(&results.iter().map(f).collect::<Vec<_>>());
    Ok(LoadResult {
        per_s: pick(|r| r.per_s),
        p50_us: pick(|r| r.p50_us),
        p99_us: pick(|r| r.p99_us),
        commands: results.iter().map(|r| r.commands).sum(),
    })
}
