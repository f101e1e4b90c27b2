//! Policies and read models: the bank's `TransferSaga` and `AccountsByOwner`
//! hosted by [`aether_host::flow::Flows`] on the memory store, each beside
//! the same code compiled natively.
//!
//! Every figure comes in two pairs:
//!
//! - **the runner**: from [`Flows::start`] until the runner has caught up
//!   with a preloaded log (and, for the saga, with the log its own commands
//!   grow), beside a runner loop of the same shape in this crate (read the
//!   log after a checkpoint, 256 entries at a time, the same views
//!   bookkeeping, the same commands through the same [`Runtime`]) calling
//!   the policy or read model natively;
//! - **the guest calls alone**: `PolicyVm::react` and `ReadModelVm::keys` +
//!   `fold` on the same events, 256 per call, beside the native trait
//!   methods with the decoding and encoding the guest does.
//!
//! Layout: this file has the figures, the preload and the views wrapper
//! that keeps a run to one runner; `policy` and `read_model` the two halves.

pub mod policy;
pub mod read_model;

use aether_guest::{Envelope, MessagePart, Messages};
use aether_host::flow::views::ViewWrite;
use aether_host::flow::{FlowConfig, Flows, Kind, MemoryViews, ViewStore};
use aether_host::store::{ActorId, AppendRequest, NewEvent, Provenance, RecordedEvent, StoreError};
use aether_host::{DomainComponent, EventStore, Runtime};
use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Log entries a runner reads at a time (the host's default, mirrored by
/// the native runners) and events per guest call in the raw figures.
pub const BATCH: usize = 256;

/// One throughput pair: hosted, and the same work natively.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pair {
    pub hosted: f64,
    pub native: f64,
}

/// The figures of the phase.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlowFigures {
    pub policy: policy::PolicyFigures,
    pub read_model: read_model::ReadModelFigures,
}

/// Sizes of the phase.
#[derive(Debug, Clone, Copy)]
pub struct FlowSizes {
    /// Funded accounts the saga's transfers move money among.
    pub accounts: usize,
    /// Started transfers in the saga's log: three reactions and three commands each.
    pub transfers: usize,
    /// Accounts whose events the read model folds, in turn.
    pub read_model_accounts: usize,
    /// Events in the read model's log.
    pub read_model_events: usize,
    pub rounds: usize,
}

/// Runs both halves.
///
/// # Errors
///
/// As [`policy::run`] and [`read_model::run`].
pub fn run(
    tokio: &tokio::runtime::Runtime,
    component: &DomainComponent,
    sizes: FlowSizes,
) -> anyhow::Result<FlowFigures> {
    let policy = policy::run(tokio, component, sizes.accounts, sizes.transfers, sizes.rounds)?;
    let read_model =
        read_model::run(tokio, component, sizes.read_model_accounts, sizes.read_model_events, sizes.rounds)?;
    Ok(FlowFigures { policy, read_model })
}

/// A provenance for preloaded events (as if a command had decided them).
pub(crate) fn provenance(command_id: &str) -> Arc<Provenance> {
    let id: Arc<str> = command_id.into();
    Arc::new(Provenance {
        command_id: id.clone(),
        correlation_id: id.clone(),
        causation_id: id,
        timestamp_ms: 1_700_000_000_000,
        component_hash: "0".repeat(64).into(),
        command: None,
    })
}

/// Appends `events` (name, payload) to an actor at `expected_version`,
/// straight into the store: a preload costs microseconds, not a command.
pub(crate) async fn append(
    store: &dyn EventStore,
    actor: &ActorId,
    expected_version: u64,
    events: Vec<(String, Vec<u8>)>,
) -> anyhow::Result<()> {
    let request = AppendRequest {
        expected_version,
        provenance: provenance(&format!("preload-{actor}-{expected_version}")),
        events: events.into_iter().map(|(name, payload)| NewEvent { name, payload }).collect(),
        id_from_caller: false,
        shard_epoch: None,
    };
    store.append(actor, request).await?;
    Ok(())
}

/// Whether a set (its [`Messages::parts`]) holds the event `aggregate.name`:
/// what the host checks against the model before calling the guest.
pub(crate) fn in_set(parts: &[MessagePart], aggregate: &str, name: &str) -> bool {
    parts.iter().any(|p| p.aggregate == aggregate && p.names.contains(&name))
}

/// A logged event decoded as the guest SDK decodes it for a policy or a
/// read model (`dispatch::envelope`): the set's message and owned ids.
pub(crate) fn envelope<E: Messages>(actor: &ActorId, event: &RecordedEvent) -> anyhow::Result<Envelope<E>> {
    let decoded = E::decode(&actor.aggregate, &event.name, &event.payload)
        .map_err(anyhow::Error::msg)?
        .ok_or_else(|| anyhow::anyhow!("{}.{} is not in the set", actor.aggregate, event.name))?;
    Ok(Envelope {
        aggregate: actor.aggregate.clone(),
        actor_id: actor.id.clone(),
        version: event.version,
        timestamp_ms: event.provenance.timestamp_ms,
        command_id: event.provenance.command_id.to_string(),
        correlation_id: event.provenance.correlation_id.to_string(),
        event: decoded,
    })
}

/// Every event of the store's log, with its actor and position.
pub(crate) async fn whole_log(store: &dyn EventStore) -> anyhow::Result<Vec<(u64, ActorId, RecordedEvent)>> {
    let (mut out, mut after) = (Vec::new(), 0);
    loop {
        let batch = store.read_log(after, 4096).await?;
        let Some(last) = batch.last().map(|c| c.position) else { return Ok(out) };
        for entry in batch {
            out.extend(entry.events.into_iter().map(|e| (entry.position, entry.actor.clone(), e)));
        }
        after = last;
    }
}

/// What a hosted run measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hosted {
    pub seconds: f64,
    pub handled: u64,
    pub sent: u64,
    pub views_seconds: f64,
}

/// Starts the runtime's flows with only the runner `kind`/`name` working,
/// and times it from the start until it has processed the whole log and
/// the log has stopped growing.
pub(crate) async fn hosted_run(runtime: &Runtime, kind: Kind, name: &str) -> anyhow::Result<Hosted> {
    let label = match kind {
        Kind::Policy => "policy",
        Kind::ReadModel => "read-model",
    };
    let views = Arc::new(OneRunner::new(format!("{label}/{name}")));
    let stop = CancellationToken::new();
    let store = runtime.store().clone();
    let started = Instant::now();
    let flows = Flows::start(runtime.clone(), views.clone(), FlowConfig::default(), stop.clone());
    loop {
        let head = store.log_head().await?;
        flows.wait_for(kind, name, head, Duration::from_secs(300)).await?;
        if store.log_head().await? == head {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let count = |key: &str| {
        let status = flows.status(kind, name).map(|s| s.json()).unwrap_or_default();
        status[key].as_u64().unwrap_or(0)
    };
    let (handled, sent, parked) = (count("events_handled"), count("commands_sent"), count("parked"));
    // The other runners were held back at their checkpoints: none handled anything.
    for status in flows.statuses().filter(|s| !(s.kind == kind && s.name == name)) {
        let json = status.json();
        anyhow::ensure!(json["events_handled"] == 0, "runner {} was not held back: {json}", status.name);
    }
    stop.cancel();
    flows.stopped().await;
    anyhow::ensure!(parked == 0, "{label} {name} parked {parked} inputs");
    Ok(Hosted { seconds, handled, sent, views_seconds: views.seconds() })
}

/// Memory views that let one runner work and hold every other at its
/// checkpoint (its read of it never returns), and time the calls made.
/// It knows where the host keeps checkpoints (space `checkpoints`, key
/// `<kind>/<name>`); were that to change, [`hosted_run`] fails: the runner
/// never catches up, or another one handles events.
#[derive(Debug)]
struct OneRunner {
    inner: MemoryViews,
    /// The runner's checkpoint key, `policy/<name>` or `read-model/<name>`.
    runner: String,
    nanos: AtomicU64,
}

impl OneRunner {
    fn new(runner: String) -> Self {
        Self { inner: MemoryViews::default(), runner, nanos: AtomicU64::new(0) }
    }

    fn seconds(&self) -> f64 {
        self.nanos.load(Ordering::Relaxed) as f64 / 1e9
    }

    fn timed<T>(&self, started: Instant, out: T) -> T {
        self.nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        out
    }
}

#[async_trait]
impl ViewStore for OneRunner {
    async fn get(&self, space: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if space == "checkpoints" && key != self.runner {
            std::future::pending::<()>().await;
        }
        let started = Instant::now();
        let out = self.inner.get(space, key).await;
        self.timed(started, out)
    }

    async fn write(&self, space: &str, writes: Vec<ViewWrite>) -> Result<(), StoreError> {
        let started = Instant::now();
        let out = self.inner.write(space, writes).await;
        self.timed(started, out)
    }

    async fn scan(
        &self,
        space: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.scan(space, prefix, after, limit).await
    }

    async fn clear(&self, space: &str) -> Result<(), StoreError> {
        self.inner.clear(space).await
    }
}

/// The mean round trip of an empty call handed to the blocking pool and
/// awaited, as the runners hand each guest call off the workers, µs.
pub(crate) async fn handoff_us(calls: usize) -> f64 {
    let started = Instant::now();
    for _ in 0..calls {
        // An empty closure does not panic.
        let _ = tokio::task::spawn_blocking(|| std::hint::black_box(())).await;
    }
    started.elapsed().as_secs_f64() * 1e6 / calls.max(1) as f64
}

/// Runs `work` as a task of the runtime (as the hosted runners run), not
/// on the thread that blocks on the phase.
pub(crate) async fn spawned<T: Send + 'static>(
    work: impl std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::spawn(work).await?
}
