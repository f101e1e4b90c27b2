//! Commands on the JetStream store next to raw JetStream publishes of
//! messages of the same size at the same concurrency, on one local
//! `nats-server` (the test kit's: ephemeral port, file storage in a
//! temporary directory).
//!
//! Commands run on two sets of accounts: with ids the host mints (the
//! headline) and with ids their caller chose. The four loads take turns,
//! one window each per round, so a machine whose speed drifts (it is
//! shared) slows each of them alike rather than whichever ran last; each
//! measured window follows a shorter unmeasured one of the same load.

use crate::commands::{Accounts, CommandIds, Commands, Shape};
use crate::load::LoadResult;
use crate::nats::{self, RawPublisher};
use crate::util;
use aether_host::store::{JetStreamConfig, JetStreamEventStore};
use aether_host::{DomainComponent, EventStore};
use aether_testkit::nats::NatsServer;
use std::future::Future;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, Default)]
pub struct JetStream {
    /// Commands whose ids the host mints (the headline figure).
    pub commands: Commands,
    /// Commands whose ids their caller chose, which the store claims in the
    /// command index before appending their events: two publishes each.
    pub caller_ids: Commands,
    pub raw: LoadResult,
    /// Raw publishes carrying a message id and the expected sequence: what
    /// the store sent for a caller's id before the command index.
    pub with_headers: LoadResult,
    /// Bytes the server stores per deposit's message with a minted id
    /// (payload, headers, subject): the size of the raw messages.
    pub message_bytes: usize,
    /// Where the CPU went during each load's measured windows, in the order
    /// the loads take turns: minted ids, raw, caller ids, raw with headers.
    pub cpu: [CpuUse; 4],
}

/// The CPU time spent during one load's measured windows, summed: by this
/// process (the host or the publishing client, with the load generator),
/// by the server, and what the machine left idle. The two processes share
/// the machine's cores, so CPU per message is what its rate trades in.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub client_s: f64,
    pub server_s: f64,
    pub idle_s: f64,
    pub machine_s: f64,
    pub messages: u64,
}

impl CpuUse {
    /// Microseconds of this process's CPU per message.
    pub fn client_us(&self) -> f64 {
        per_message(self.client_s, self.messages)
    }

    /// Microseconds of the server's CPU per message.
    pub fn server_us(&self) -> f64 {
        per_message(self.server_s, self.messages)
    }

    /// The share of the machine's CPU time nobody used.
    pub fn idle(&self) -> f64 {
        if self.machine_s > 0.0 { self.idle_s / self.machine_s } else { 0.0 }
    }

    /// Runs one measured window, adding what it spent.
    async fn measure(
        &mut self,
        server: Option<u32>,
        window: impl Future<Output = anyhow::Result<LoadResult>>,
    ) -> anyhow::Result<LoadResult> {
        let sample = || {
            let ((idle, machine), client, server) =
                (util::machine_cpu_s()?, util::process_cpu_s(std::process::id())?, util::process_cpu_s(server?)?);
            Some((client, server, idle, machine))
        };
        let before = sample();
        let result = window.await?;
        if let (Some(b), Some(a)) = (before, sample()) {
            self.client_s += a.0 - b.0;
            self.server_s += a.1 - b.1;
            self.idle_s += a.2 - b.2;
            self.machine_s += a.3 - b.3;
            self.messages += result.commands;
        }
        Ok(result)
    }
}

fn per_message(seconds: f64, messages: u64) -> f64 {
    if messages == 0 { 0.0 } else { seconds * 1e6 / messages as f64 }
}

/// `None` when no `nats-server` is installed.
///
/// # Errors
///
/// If the server starts but the store or a publish fails.
pub fn run(
    tokio: &tokio::runtime::Runtime,
    component: &DomainComponent,
    shape: Shape,
) -> anyhow::Result<Option<JetStream>> {
    if !nats::server_available() {
        return Ok(None);
    }
    let server = NatsServer::start();
    tokio.block_on(async {
        let config = JetStreamConfig::default();
        let stream = config.stream_name();
        let store = JetStreamEventStore::connect(server.client().await, &component.model().name, config).await?;
        let store: Arc<dyn EventStore> = Arc::new(store);
        let minted = Accounts::open(component, store.clone(), shape, CommandIds::Minted).await?;

        // A warm-up window, whose messages give a deposit's size as stored.
        let js = async_nats::jetstream::new(server.client().await);
        let state = || async { anyhow::Ok(js.get_stream(&stream).await?.info().await?.state.clone()) };
        let before = state().await?;
        minted.deposits(shape).await?;
        let after = state().await?;
        let message_bytes = ((after.bytes - before.bytes) / (after.messages - before.messages).max(1)) as usize;

        let caller = Accounts::open(component, store, shape, CommandIds::FromCaller).await?;
        let client = server.client().await;
        let raw = RawPublisher::new(client.clone(), shape.actors, message_bytes, false).await?;
        let headers = RawPublisher::new(client, shape.actors, message_bytes, true).await?;
        let mut rounds: [Vec<LoadResult>; 4] = Default::default();
        let mut cpu = [CpuUse::default(); 4];
        let pid = server.pid();
        // Each load first runs unmeasured for a third of a window, so that
        // every measured window starts warm (the server's caches of the
        // stream, the client's buffers), as it would in a steady run.
        let warm = Shape { window: shape.window / 3, ..shape };
        for _ in 0..shape.rounds.max(1) {
            minted.deposits(warm).await?;
            rounds[0].push(cpu[0].measure(pid, minted.deposits(shape)).await?);
            raw.window(warm).await?;
            rounds[1].push(cpu[1].measure(pid, raw.window(shape)).await?);
            caller.deposits(warm).await?;
            rounds[2].push(cpu[2].measure(pid, caller.deposits(shape)).await?);
            headers.window(warm).await?;
            rounds[3].push(cpu[3].measure(pid, headers.window(shape)).await?);
        }
        let [minted_rounds, raw_rounds, caller_rounds, header_rounds] = rounds.map(|r| LoadResult::median_of(&r));
        Ok(Some(JetStream {
            commands: Commands { steady: minted_rounds, open: minted.opened },
            caller_ids: Commands { steady: caller_rounds, open: caller.opened },
            raw: raw_rounds,
            with_headers: header_rounds,
            message_bytes,
            cpu,
        }))
    })
}
