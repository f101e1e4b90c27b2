//! A closed-loop load generator: `clients` tasks, each owning a disjoint
//! share of the actors, each sending its next command as soon as the last
//! one is answered. Throughput is what completes in the window; latency is
//! measured per command by the client.

use crate::util::{median, quantile};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, Default)]
pub struct LoadResult {
    pub per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub commands: u64,
}

impl LoadResult {
    /// Each figure's median over several rounds; the commands of all of them.
    pub fn median_of(rounds: &[LoadResult]) -> LoadResult {
        let pick = |f: fn(&LoadResult) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
        LoadResult {
            per_s: pick(|r| r.per_s),
            p50_us: pick(|r| r.p50_us),
            p99_us: pick(|r| r.p99_us),
            commands: rounds.iter().map(|r| r.commands).sum(),
        }
    }
}

/// Sends one command to every actor once (e.g. to open them), `clients` at a time.
///
/// # Errors
///
/// The first command that fails.
pub async fn each_once<F, Fut>(actors: usize, clients: usize, send: Arc<F>) -> anyhow::Result<LoadResult>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients.min(actors).max(1) {
        let send = send.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for actor in (client..actors).step_by(clients) {
                let t = Instant::now();
                send(actor, 0).await?;
                latencies.push(t.elapsed().as_nanos() as u64);
            }
            anyhow::Ok(latencies)
        }));
    }
    collect(tasks, started).await
}

/// Runs commands for `window`, each client cycling through its actors.
///
/// # Errors
///
/// The first command that fails.
pub async fn window<F, Fut>(actors: usize, clients: usize, window: Duration, send: Arc<F>) -> anyhow::Result<LoadResult>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let deadline = started + window;
    let mut tasks = Vec::new();
    for client in 0..clients.min(actors).max(1) {
        let send = send.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mine: Vec<usize> = (client..actors).step_by(clients).collect();
            let mut seq = 0u64;
            'outer: loop {
                for &actor in &mine {
                    let t = Instant::now();
                    send(actor, seq).await?;
                    let now = Instant::now();
                    latencies.push((now - t).as_nanos() as u64);
                    seq += 1;
                    if now >= deadline {
                        break 'outer;
                    }
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    collect(tasks, started).await
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Vec<u64>>>>,
    started: Instant,
) -> anyhow::Result<LoadResult> {
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    Ok(LoadResult {
        per_s: all.len() as f64 / elapsed.as_secs_f64(),
        p50_us: quantile(&all, 0.5) as f64 / 1e3,
        p99_us: quantile(&all, 0.99) as f64 / 1e3,
        commands: all.len() as u64,
    })
}
