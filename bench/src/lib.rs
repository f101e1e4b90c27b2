//! Aether's benchmark suite (`cargo xtask bench`): how fast actors activate,
//! replay and decide commands, and how many fit in one process, each figure
//! next to a baseline measured in the same run.
//!
//! Layout:
//! - [`activation`]: create a VM and restore a 1 KiB snapshot;
//! - [`replay`]: events through the guest's `apply` in batches, and natively;
//! - [`verify`]: `aether-host verify`'s replay and re-decision of a recorded history, beside a plain replay of it;
//! - [`commands`]: commands through the runtime on a store, 10,000 actors;
//! - [`flows`]: the bank's saga and owners read model hosted, beside the same code natively;
//! - [`cluster`]: nodes on one JetStream: a join under load, forwarding, failover after kills;
//! - [`native`]: the command path with the aggregate called natively;
//! - [`nats`]: a throw-away `nats-server` and the raw publish baseline;
//! - [`resident`]: memory per live actor and the most actors one process holds;
//! - [`report`]: the table and `summary.json`;
//! - [`load`], [`fixtures`], [`util`]: the load generator, inputs, measuring tools.
//!
//! Every phase reports the median of several rounds; [`Options::smoke`]
//! runs tiny sizes in a few seconds (CI runs it; it asserts nothing).

pub mod activation;
pub mod cluster;
pub mod commands;
pub mod fixtures;
pub mod flows;
pub mod jetstream;
pub mod load;
pub mod native;
pub mod nats;
pub mod replay;
pub mod report;
pub mod resident;
pub mod util;
pub mod verify;

use aether_host::store::{EmbeddedStore, JetStreamConfig, JetStreamEventStore};
use aether_host::{EngineConfig, EventStore, MemoryStore};
use aether_testkit::nats::NatsServer;
use commands::Shape;
use fixtures::GuestProfile;
use report::Report;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to run and how big.
#[derive(Debug, Clone)]
pub struct Options {
    pub smoke: bool,
    /// The bench binary, to run the resident probe in a process of its own;
    /// `None` runs it in this process.
    pub probe_exe: Option<PathBuf>,
    /// Phases to run (`activation`, `replay`, `verify`, `flows`, `memory`,
    /// `embedded`, `jetstream`, `cluster`, `resident`); empty runs them all.
    pub only: Vec<String>,
}

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub activations: usize,
    pub activation_rounds: usize,
    /// Actors woken from a store's snapshot, per round.
    pub store_activations: usize,
    pub replay_events: usize,
    pub replay_batch: usize,
    pub replay_rounds: usize,
    /// Actors of the history `verify` checks, and commands of each.
    pub verify_actors: usize,
    pub verify_commands: usize,
    /// Policies and read models: transfers, accounts and events (see [`flows::FlowSizes`]).
    pub flows: flows::FlowSizes,
    pub actors: usize,
    pub window: Duration,
    pub rounds: usize,
    pub memory_clients: usize,
    pub embedded_clients: usize,
    pub jetstream_clients: usize,
    pub resident_sample: usize,
    pub resident_cap: usize,
    /// Nodes killed in the cluster phase's failover, alternately an owner
    /// and the leader.
    pub failover_kills: usize,
}

impl Sizes {
    pub fn full() -> Self {
        Self {
            activations: 20_000,
            activation_rounds: 5,
            store_activations: 1_000,
            replay_events: 500_000,
            replay_batch: 512,
            replay_rounds: 5,
            verify_actors: 1_000,
            verify_commands: 200,
            flows: flows::FlowSizes {
                accounts: 1_000,
                transfers: 4_000,
                read_model_accounts: 1_000,
                read_model_events: 60_000,
                rounds: 3,
            },
            actors: 10_000,
            window: Duration::from_secs(3),
            rounds: 3,
            memory_clients: 32,
            embedded_clients: 1024,
            jetstream_clients: 256,
            resident_sample: 10_000,
            resident_cap: 200_000,
            failover_kills: 8,
        }
    }

    pub fn smoke() -> Self {
        Self {
            activations: 200,
            activation_rounds: 1,
            store_activations: 20,
            replay_events: 5_000,
            replay_batch: 512,
            replay_rounds: 1,
            verify_actors: 20,
            verify_commands: 20,
            flows: flows::FlowSizes {
                accounts: 20,
                transfers: 100,
                read_model_accounts: 50,
                read_model_events: 1_000,
                rounds: 1,
            },
            actors: 200,
            window: Duration::from_millis(200),
            rounds: 1,
            memory_clients: 8,
            embedded_clients: 32,
            jetstream_clients: 8,
            resident_sample: 100,
            resident_cap: 300,
            failover_kills: 2,
        }
    }
}

impl Options {
    fn wants(&self, phase: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == phase)
    }
}

/// Runs the benchmarks and returns their figures.
///
/// # Errors
///
/// If the bank component cannot be built or loaded, or a phase fails.
pub fn run(options: &Options) -> anyhow::Result<Report> {
    let mut sizes = if options.smoke { Sizes::smoke() } else { Sizes::full() };
    // Concurrency overrides, to explore: AETHER_BENCH_CLIENTS=memory:32,embedded:1024,jetstream:256.
    for (phase, n) in std::env::var("AETHER_BENCH_CLIENTS").unwrap_or_default().split(',').filter_map(|kv| {
        let (k, v) = kv.split_once(':')?;
        Some((k.to_string(), v.parse::<usize>().ok()?))
    }) {
        match phase.as_str() {
            "memory" => sizes.memory_clients = n,
            "embedded" => sizes.embedded_clients = n,
            "jetstream" => sizes.jetstream_clients = n,
            _ => {}
        }
    }
    let started = Instant::now();
    let mut report = Report::default();
    let profile = if options.smoke { GuestProfile::Release } else { GuestProfile::Guest };
    let wasm = fixtures::bank_wasm(profile)?;
    let bytes = std::fs::read(&wasm)?;
    // The JetStream phase keeps two sets of accounts live at once.
    let engine = EngineConfig::default().with_max_instances((2 * sizes.actors + 2048) as u32);
    let t = Instant::now();
    let component = fixtures::load(&bytes, engine)?;
    note(&format!("bank component loaded in {:.1} s ({} KiB)", t.elapsed().as_secs_f64(), bytes.len() / 1024));

    if options.wants("activation") {
        let a = activation::run(&component, sizes.activations, sizes.activation_rounds)?;
        note(&format!("activation: p50 {:.1} µs, p99 {:.1} µs", a.p50_us, a.p99_us));
        report.activation(&a);
    }
    if options.wants("replay") {
        let r = replay::run(&component, sizes.replay_events, sizes.replay_batch, sizes.replay_rounds)?;
        note(&format!("replay: {:.0} events/s (native {:.0})", r.events_per_s, r.native_events_per_s));
        report.replay(&r);
    }

    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    if options.wants("activation") {
        let in_process = report.figures.iter().find(|f| f.key == "activation_p50_us").map_or(0.0, |f| f.value);
        let dir = tempfile::tempdir()?;
        let store: Arc<dyn EventStore> = Arc::new(EmbeddedStore::open(dir.path())?);
        let rounds = sizes.activation_rounds.min(3);
        let a = tokio.block_on(activation::from_store(&component, store, sizes.store_activations, rounds))?;
        note(&format!("activation from the embedded store: p50 {:.1} µs, p99 {:.1} µs", a.p50_us, a.p99_us));
        report.activation_from("embedded", &a, in_process);
        if nats::server_available() {
            let server = NatsServer::start();
            let a = tokio.block_on(async {
                let client = server.client().await;
                let config = JetStreamConfig::default();
                let store = JetStreamEventStore::connect(client, &component.model().name, config).await?;
                activation::from_store(&component, Arc::new(store), sizes.store_activations, rounds).await
            })?;
            note(&format!("activation from JetStream: p50 {:.1} µs, p99 {:.1} µs", a.p50_us, a.p99_us));
            report.activation_from("jetstream", &a, in_process);
        }
    }
    if options.wants("verify") {
        let rounds = sizes.replay_rounds.min(3);
        let v = tokio.block_on(verify::run(&component, sizes.verify_actors, sizes.verify_commands, rounds))?;
        note(&format!(
            "verify: {:.0} events/s and {:.0} commands/s over {} events (plain replay of them {:.0} events/s)",
            v.events_per_s, v.commands_per_s, v.events, v.replay_events_per_s
        ));
        report.verify(&v);
    }
    if options.wants("flows") {
        let f = flows::run(&tokio, &component, sizes.flows)?;
        let (p, r) = (&f.policy, &f.read_model);
        note(&format!(
            "flows: the saga reacted to {:.0} events/s sending {:.0} commands/s (natively {:.0} and {:.0}; \
             {:.0}% of the native runner's time in Runtime::execute); react alone {:.0} events/s (natively {:.0})",
            p.events.hosted,
            p.commands.hosted,
            p.events.native,
            p.commands.native,
            100.0 * p.execute_share,
            p.react.hosted,
            p.react.native
        ));
        note(&format!(
            "flows: the owners read model folded {:.0} events/s (natively {:.0}), {:.1} rows a batch; keys + fold \
             alone {:.0} events/s (natively {:.0}), each call handed off as the runner does {:.0} events/s; an empty \
             hand-off to the blocking pool {:.1} µs, a component clone {:.1} µs",
            r.events.hosted,
            r.events.native,
            r.rows_per_batch,
            r.fold.hosted,
            r.fold.native,
            r.fold_handed_off,
            r.handoff_us,
            r.component_clone_us
        ));
        report.flows(&f);
    }
    let shape = |clients| Shape { actors: sizes.actors, clients, window: sizes.window, rounds: sizes.rounds };
    if options.wants("memory") {
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
        let wasm = tokio.block_on(commands::through_runtime(&component, store, shape(sizes.memory_clients)))?;
        note(&format!("memory store: {:.0} commands/s, p99 {:.0} µs", wasm.steady.per_s, wasm.steady.p99_us));
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
        let native = tokio.block_on(commands::native(store, shape(sizes.memory_clients)))?;
        note(&format!(
            "memory store, native: {:.0} commands/s, p99 {:.0} µs",
            native.steady.per_s, native.steady.p99_us
        ));
        report.memory(&wasm, &native);
    }
    if options.wants("embedded") {
        let dir = tempfile::tempdir()?;
        let store: Arc<dyn EventStore> = Arc::new(EmbeddedStore::open(dir.path())?);
        let written = util::io_write_bytes();
        let wasm = tokio.block_on(commands::through_runtime(&component, store, shape(sizes.embedded_clients)))?;
        let written = util::io_write_bytes().saturating_sub(written) as f64;
        let per_command = written / (wasm.steady.commands + wasm.open.commands).max(1) as f64;
        note(&format!(
            "embedded store: {:.0} commands/s, p99 {:.0} µs, {per_command:.0} bytes written per command",
            wasm.steady.per_s, wasm.steady.p99_us
        ));
        report.extra.push(("embedded_bytes_written_per_command", per_command));
        let dir = tempfile::tempdir()?;
        let store: Arc<dyn EventStore> = Arc::new(EmbeddedStore::open(dir.path())?);
        let native = tokio.block_on(commands::native(store, shape(sizes.embedded_clients)))?;
        note(&format!(
            "embedded store, native: {:.0} commands/s, p99 {:.0} µs",
            native.steady.per_s, native.steady.p99_us
        ));
        report.embedded(&wasm, &native);
    }
    if options.wants("jetstream") {
        match jetstream::run(&tokio, &component, shape(sizes.jetstream_clients))? {
            Some(js) => {
                note(&format!(
                    "jetstream: {:.0} commands/s ({:.0}/s with caller ids), raw publish {:.0}/s, with a caller id's \
                     headers {:.0}/s ({} B messages)",
                    js.commands.steady.per_s,
                    js.caller_ids.steady.per_s,
                    js.raw.per_s,
                    js.with_headers.per_s,
                    js.message_bytes
                ));
                let [minted, raw, ..] = &js.cpu;
                note(&format!(
                    "jetstream: CPU per message: command {:.1} µs host + {:.1} µs server ({:.0}% idle), raw publish \
                     {:.1} µs client + {:.1} µs server ({:.0}% idle)",
                    minted.client_us(),
                    minted.server_us(),
                    100.0 * minted.idle(),
                    raw.client_us(),
                    raw.server_us(),
                    100.0 * raw.idle()
                ));
                report.jetstream(&js);
            }
            None => {
                note("jetstream: skipped, no nats-server (cargo xtask install-nats)");
                report.notes.push("jetstream: skipped, no nats-server found (cargo xtask install-nats)".into());
            }
        }
    }
    if options.wants("cluster") {
        if nats::server_available() {
            let actors = sizes.actors.min(2_000);
            let shape =
                Shape { actors, clients: sizes.jetstream_clients.min(64), window: sizes.window, rounds: sizes.rounds };
            let c = tokio.block_on(cluster::run(&component, shape, sizes.failover_kills))?;
            note(&format!(
                "cluster: {:.0} commands/s to the owner, {:.0}/s through the other node; a join settled in {:.2} s \
                 ({} shards moved), p99 {:.0} µs during it against {:.0} µs alone",
                c.direct.per_s, c.forwarded.per_s, c.settle_s, c.moved, c.during_join.p99_us, c.alone.p99_us
            ));
            let f = &c.failover;
            let all = f.all_s();
            note(&format!(
                "cluster: failover after {} kills p50 {:.2} s, p99 {:.2} s; of the leader p50 {:.2} s, p99 {:.2} s \
                 (new leader after p99 {:.2} s)",
                all.len(),
                cluster::quantile_s(&all, 0.5),
                cluster::quantile_s(&all, 0.99),
                cluster::quantile_s(&f.leader_s, 0.5),
                cluster::quantile_s(&f.leader_s, 0.99),
                cluster::quantile_s(&f.takeover_s, 0.99),
            ));
            report.cluster(&c);
        } else {
            note("cluster: skipped, no nats-server (cargo xtask install-nats)");
            report.notes.push("cluster: skipped, no nats-server found (cargo xtask install-nats)".into());
        }
    }
    drop(tokio);
    drop(component);

    if options.wants("resident") {
        let sample = sizes.resident_sample.min(sizes.resident_cap);
        let r = resident::run(options.probe_exe.as_deref(), &wasm, sample, sizes.resident_cap)?;
        note(&format!(
            "resident: {:.0} bytes and {:.2} mappings per actor at {}; held {} ({:?}: {})",
            r.rss_per_actor, r.maps_per_actor, r.sampled, r.max_actors, r.reason, r.detail
        ));
        report.resident(&r);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Progress, on stderr, so the table on stdout stays clean.
pub fn note(line: &str) {
    eprintln!("aether-bench: {line}");
}
