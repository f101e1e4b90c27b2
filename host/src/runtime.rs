//! The registry of live actors: routes commands to them, one at a time per
//! actor and concurrently across actors, and passivates idle and least
//! recently used actors.
//!
//! Each live actor sits in a cell behind an async mutex: a command holds its
//! actor's lock from decide to apply, so commands to one actor serialise
//! while different actors run in parallel. The registry itself is a `std`
//! mutex around an LRU map, held only to look up, insert and evict.
//! Passivation drops an actor's VM; its next command rebuilds it from the
//! latest snapshot and the events after it, transparently.
//!
//! The component is swapped by a live upgrade ([`Runtime::upgrade`], see
//! [`crate::upgrade`]): each command reads the current one once, lock-free,
//! after taking its actor's lock, and runs on it to the end.

use crate::actor::{Actor, ActorConfig, ActorError, Command, CommandOutcome, Env};
use crate::admission::{Admission, AdmissionConfig};
use crate::bus::{Bus, BusConfig};
use crate::cluster::ShardFence;
pub use crate::metrics::Stats;
use crate::model::{AggregateModel, DomainModel};
use crate::store::{ActorId, EventStore, Provenance, RecordedCommand, RecordedEvent};
use crate::upgrade::{Deployment, History, UpgradeError, UpgradeOptions, UpgradeReport};
use crate::wasm::DomainComponent;
use arc_swap::ArcSwap;
use lru::LruCache;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How the runtime holds actors.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RuntimeConfig {
    pub actor: ActorConfig,
    /// Live actors kept at most; beyond it the least recently used is passivated.
    /// Keep it below the engine's `max_instances`.
    pub max_live_actors: usize,
    /// An actor unused this long is passivated.
    pub idle_timeout: Duration,
    /// Work started at once beyond one command per actor.
    pub admission: AdmissionConfig,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            actor: ActorConfig::default(),
            max_live_actors: 8_000,
            idle_timeout: Duration::from_secs(300),
            admission: AdmissionConfig::default(),
        }
    }
}

/// A command as a caller sends it: ids are optional and filled in.
#[derive(Debug, Clone, Default)]
pub struct CommandRequest {
    pub aggregate: String,
    pub id: String,
    pub command: String,
    /// MessagePack.
    pub payload: Vec<u8>,
    /// Idempotency key; a fresh one if `None`.
    pub command_id: Option<String>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    /// In a cluster: the grant this node serves the actor's shard under.
    /// Checked before each append (no append once the shard has moved on),
    /// and its epoch recorded with the command's events.
    pub fence: Option<ShardFence>,
}

/// Hosts one domain component's actors on one event store.
#[derive(Debug, Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The component commands run on; swapped by an upgrade.
    current: ArcSwap<Deployment>,
    /// The models of every component run so far; held while upgrading, so
    /// upgrades happen one at a time.
    history: Mutex<History>,
    /// The domain's name: an upgrade never changes it.
    domain: Arc<str>,
    bus: Bus,
    store: Arc<dyn EventStore>,
    config: RuntimeConfig,
    actors: Mutex<LruCache<ActorId, Arc<Cell>, foldhash::fast::RandomState>>,
    stats: Stats,
    admission: Admission,
}

type Cell = tokio::sync::Mutex<Slot>;

#[derive(Debug)]
struct Slot {
    actor: Actor,
    /// Set when the registry dropped this cell; a command that raced the
    /// eviction looks the actor up again.
    evicted: bool,
    last_used: Instant,
}

impl Runtime {
    /// Hosts `component`'s actors on `store`. Must be called within a Tokio
    /// runtime: it starts the passivation sweeper.
    pub fn new(component: DomainComponent, store: Arc<dyn EventStore>, config: RuntimeConfig) -> Self {
        let bus = Bus::local(&component.model().name, &BusConfig::default());
        Self::with_bus(component, store, config, bus)
    }

    /// As [`new`](Self::new), publishing stored events on `bus` (e.g. one
    /// that reaches NATS).
    pub fn with_bus(component: DomainComponent, store: Arc<dyn EventStore>, config: RuntimeConfig, bus: Bus) -> Self {
        let mut history = History::default();
        history.remember(&component);
        let inner = Arc::new(Inner {
            domain: component.model().name.as_str().into(),
            current: ArcSwap::from_pointee(Deployment::new(component)),
            history: Mutex::new(history),
            bus,
            store,
            // foldhash, as hashbrown's own default: SipHash over two ids was
            // a visible part of finding an actor.
            actors: Mutex::new(LruCache::unbounded_with_hasher(foldhash::fast::RandomState::default())),
            admission: Admission::new(config.admission.clone()),
            config,
            stats: Stats::default(),
        });
        let weak = Arc::downgrade(&inner);
        let period = (inner.config.idle_timeout / 4).max(Duration::from_millis(10));
        tokio::spawn(sweep_idle(weak, period));
        Self { inner }
    }

    /// The domain's name (the same for every component an upgrade swaps in).
    pub fn domain(&self) -> &str {
        &self.inner.domain
    }

    /// The component new commands run on, with the snapshots it trusts
    /// (it derefs to the [`DomainComponent`]). Cheap: a reference count.
    pub fn component(&self) -> Arc<Deployment> {
        self.inner.current.load_full()
    }

    /// The current component's model.
    pub fn model(&self) -> DomainModel {
        self.inner.current.load().component().model().clone()
    }

    /// Swaps in `component` for every command from now on: commands running
    /// finish on the old one, and each live actor moves over at its next
    /// command (see [`crate::upgrade`]). Upgrading to the running component
    /// changes nothing. A rollback is an upgrade to the old component.
    ///
    /// # Errors
    ///
    /// [`UpgradeError`] if the component may not replace the running one
    /// ([`crate::upgrade::check`]); the running one then stays.
    pub fn upgrade(&self, component: DomainComponent, options: &UpgradeOptions) -> Result<UpgradeReport, UpgradeError> {
        let mut history = self.inner.history.lock().unwrap_or_else(|e| e.into_inner());
        let running = self.inner.current.load_full();
        let model_changes = crate::upgrade::check(running.component().model(), component.model(), options)?;
        let previous = running.component().hash().to_string();
        let changed = running.component().hash() != component.hash();
        let deployment = if changed {
            history.remember(&component);
            let deployment = Arc::new(history.deploy(component));
            self.inner.current.store(deployment.clone());
            self.inner.stats.upgrades.fetch_add(1, Ordering::Relaxed);
            tracing::info!(previous = %previous, current = %deployment.component().hash(), "component upgraded");
            deployment
        } else {
            running
        };
        Ok(UpgradeReport {
            domain: self.inner.domain.to_string(),
            previous,
            current: deployment.component().hash().to_string(),
            changed,
            model_changes,
            trusted_snapshots: deployment.trusted_snapshots(),
        })
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.inner.store
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Where stored events are published; subscribe here in process.
    pub fn bus(&self) -> &Bus {
        &self.inner.bus
    }

    /// Every figure in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        self.inner.stats.render_prometheus(self.live_actors(), self.inner.bus.stats())
    }

    /// Actors with a live VM or waiting for one.
    pub fn live_actors(&self) -> usize {
        self.inner.lock_actors().len()
    }

    fn env<'a>(&'a self, deployment: &'a Deployment) -> Env<'a> {
        Env {
            component: deployment.component(),
            deployment,
            store: &self.inner.store,
            config: &self.inner.config.actor,
            stats: &self.inner.stats,
            admission: &self.inner.admission,
        }
    }

    /// Routes a command to its actor and returns what became of it.
    ///
    /// # Errors
    ///
    /// [`ActorError`]: an unknown aggregate or command, a payload the guest
    /// cannot decode, an unresolved conflict, a guest fault, a store failure.
    #[tracing::instrument(
        name = "command",
        skip_all,
        fields(aggregate = %request.aggregate, id = %request.id, command = %request.command, command_id, version)
    )]
    pub async fn execute(&self, request: CommandRequest) -> Result<CommandOutcome, ActorError> {
        // Checked before an actor cell exists for it, and again under the
        // actor's lock, against the component the command runs on.
        check_command(&self.inner.current.load(), &request.aggregate, &request.command)?;
        let id_from_caller = request.command_id.is_some();
        let command_id: Arc<str> = match request.command_id {
            Some(id) => id.into(),
            None => uuid::Uuid::new_v4().hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()).into(),
        };
        let span = tracing::Span::current();
        span.record("command_id", &*command_id);
        let actor = ActorId::new(request.aggregate, request.id);
        self.inner.stats.commands.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let mut slot = self.lock(&actor, started).await;
        // The component this command runs on to its end, read once it holds
        // its actor: a command that waited for the actor through an upgrade
        // runs on the new component (invariant: one-component-per-command).
        let deployment = self.inner.current.load_full();
        check_command(&deployment, &actor.aggregate, &request.command)?;
        let model = deployment.component().model().aggregate(&actor.aggregate).expect("checked above");
        let provenance = Provenance {
            correlation_id: request.correlation_id.map_or_else(|| command_id.clone(), Into::into),
            causation_id: request.causation_id.map_or_else(|| command_id.clone(), Into::into),
            command_id,
            timestamp_ms: now_ms(),
            component_hash: deployment.component().hash().clone(),
            // Kept beside the events so it can be decided again (`verify`).
            command: self
                .inner
                .config
                .actor
                .record_commands
                .then(|| RecordedCommand { name: request.command.clone(), payload: request.payload.clone() }),
        };
        let command = Command {
            actor,
            name: request.command,
            payload: request.payload,
            provenance: Arc::new(provenance),
            id_from_caller,
            fence: request.fence,
        };
        let outcome = slot.actor.execute(self.env(&deployment), model, &command).await;
        // Under the actor's lock, so an actor's events reach the bus in order.
        if let Ok(CommandOutcome::Accepted { events, duplicate: false, .. }) = &outcome {
            self.inner.bus.publish(&command.actor, events);
        }
        drop(slot);
        match &outcome {
            Ok(CommandOutcome::Accepted { version, .. }) => {
                span.record("version", version);
            }
            Ok(CommandOutcome::Rejected { code, .. }) => {
                self.inner.stats.rejections.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(code = %code, "rejected");
            }
            Err(ActorError::Fault { .. } | ActorError::Replay { .. }) => {
                self.inner.stats.faults.fetch_add(1, Ordering::Relaxed);
            }
            Err(ActorError::Overloaded { .. }) => {
                self.inner.stats.overloads.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {}
        }
        self.inner.stats.command_latency.observe(started.elapsed());
        outcome
    }

    /// An actor's current version and state (MessagePack).
    ///
    /// # Errors
    ///
    /// As for [`execute`](Self::execute), minus command errors.
    pub async fn state(&self, aggregate: &str, id: &str) -> Result<(u64, Vec<u8>), ActorError> {
        self.aggregate_model(aggregate)?;
        let mut slot = self.lock(&ActorId::new(aggregate, id), Instant::now()).await;
        let deployment = self.inner.current.load_full();
        let state = slot.actor.state(self.env(&deployment)).await;
        self.count_overload(state)
    }

    /// An actor's state at an earlier version (time travel), rebuilt in a
    /// scratch VM; the live actor is not touched.
    ///
    /// # Errors
    ///
    /// As for [`state`](Self::state).
    pub async fn state_at(&self, aggregate: &str, id: &str, version: u64) -> Result<(u64, Vec<u8>), ActorError> {
        self.aggregate_model(aggregate)?;
        let deployment = self.inner.current.load_full();
        let state = match self.inner.admission.time_travel().await {
            Ok(_slot) => Actor::state_at(self.env(&deployment), ActorId::new(aggregate, id), version).await,
            Err(overloaded) => Err(overloaded),
        };
        self.count_overload(state)
    }

    fn count_overload<T>(&self, result: Result<T, ActorError>) -> Result<T, ActorError> {
        if let Err(ActorError::Overloaded { .. }) = &result {
            self.inner.stats.overloads.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// An actor's stored events after `after`, at most `max`.
    ///
    /// # Errors
    ///
    /// An unknown aggregate or a store failure.
    pub async fn events(
        &self,
        aggregate: &str,
        id: &str,
        after: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, ActorError> {
        self.aggregate_model(aggregate)?;
        Ok(self.inner.store.read(&ActorId::new(aggregate, id), after, max).await?)
    }

    /// Passivates every live actor (drops their VMs). Their next use rebuilds them.
    pub async fn passivate_all(&self) {
        // Out of the registry first, so a command arriving meanwhile builds a
        // fresh cell; then each old cell is marked once its current command
        // is done, so a command waiting on it looks the actor up again.
        let cells: Vec<Arc<Cell>> = {
            let mut actors = self.inner.lock_actors();
            std::iter::from_fn(|| actors.pop_lru().map(|(_, cell)| cell)).collect()
        };
        let n = cells.len();
        for cell in cells {
            cell.lock().await.evicted = true;
        }
        self.inner.stats.passivations.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Passivates the live actors `leaving` picks, after the command each
    /// is running, snapshotting those with a long tail of events since their
    /// last snapshot: what a node does with a shard it hands to another.
    /// Returns how many it passivated.
    pub async fn passivate_where(&self, leaving: impl Fn(&ActorId) -> bool) -> usize {
        let cells: Vec<Arc<Cell>> = {
            let mut actors = self.inner.lock_actors();
            let ids: Vec<ActorId> = actors.iter().filter(|(id, _)| leaving(id)).map(|(id, _)| id.clone()).collect();
            ids.iter().filter_map(|id| actors.pop(id)).collect()
        };
        let n = cells.len();
        let deployment = self.inner.current.load_full();
        for cell in cells {
            let mut slot = cell.lock().await;
            slot.actor.snapshot_for_handoff(self.env(&deployment)).await;
            slot.evicted = true;
        }
        self.inner.stats.passivations.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    fn aggregate_model(&self, aggregate: &str) -> Result<(), ActorError> {
        check_aggregate(&self.inner.current.load(), aggregate).map(|_| ())
    }

    /// The actor's slot, locked: commands to one actor run one at a time.
    /// The actor's cell, locked; `now` is recorded as its last use.
    async fn lock(&self, id: &ActorId, now: Instant) -> tokio::sync::OwnedMutexGuard<Slot> {
        loop {
            let mut slot = self.inner.cell(id).lock_owned().await;
            if !slot.evicted {
                slot.last_used = now;
                return slot;
            }
        }
    }
}

impl Inner {
    fn lock_actors(&self) -> std::sync::MutexGuard<'_, LruCache<ActorId, Arc<Cell>, foldhash::fast::RandomState>> {
        self.actors.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The actor's cell, created if absent; evicts least recently used
    /// actors beyond the cap.
    fn cell(&self, id: &ActorId) -> Arc<Cell> {
        let mut actors = self.lock_actors();
        if let Some(cell) = actors.get(id) {
            return cell.clone();
        }
        let cell = Arc::new(Cell::new(Slot {
            actor: Actor::new(id.clone(), &self.config.actor),
            evicted: false,
            last_used: Instant::now(),
        }));
        actors.put(id.clone(), cell.clone());
        // Only idle actors are passivated; busy ones (and the one just
        // created) go back, most recent last, and the cap is exceeded briefly.
        let mut busy = Vec::new();
        while actors.len() > self.config.max_live_actors {
            let Some((victim_id, victim)) = actors.pop_lru() else { break };
            if victim_id != *id && try_passivate(&victim) {
                self.stats.passivations.fetch_add(1, Ordering::Relaxed);
            } else {
                busy.push((victim_id, victim));
            }
        }
        for (id, cell) in busy {
            actors.put(id, cell);
        }
        cell
    }
}

/// The aggregate's model in the deployment's component.
fn check_aggregate<'a>(deployment: &'a Deployment, aggregate: &str) -> Result<&'a AggregateModel, ActorError> {
    let model = deployment.component().model();
    model.aggregate(aggregate).ok_or_else(|| ActorError::UnknownAggregate {
        name: aggregate.to_string(),
        known: model.aggregates.iter().map(|a| a.name.clone()).collect(),
    })
}

/// Both the aggregate and the command are in the deployment's model.
fn check_command(deployment: &Deployment, aggregate: &str, command: &str) -> Result<(), ActorError> {
    let model = check_aggregate(deployment, aggregate)?;
    if !model.commands.iter().any(|c| c.name == command) {
        return Err(ActorError::UnknownCommand {
            aggregate: model.name.clone(),
            name: command.to_string(),
            known: model.commands.iter().map(|c| c.name.clone()).collect(),
        });
    }
    Ok(())
}

/// Marks an actor passivated unless a command holds it.
fn try_passivate(cell: &Cell) -> bool {
    match cell.try_lock() {
        Ok(mut slot) => {
            slot.evicted = true;
            true
        }
        Err(_) => false,
    }
}

/// Passivates actors idle longer than the timeout, until the runtime is dropped.
async fn sweep_idle(inner: Weak<Inner>, period: Duration) {
    loop {
        tokio::time::sleep(period).await;
        let Some(inner) = inner.upgrade() else { return };
        let timeout = inner.config.idle_timeout;
        let now = Instant::now();
        let mut actors = inner.lock_actors();
        let mut idle = Vec::new();
        for (id, cell) in actors.iter() {
            // A locked actor is busy, hence not idle.
            let idle_since = cell.try_lock().map(|slot| now.duration_since(slot.last_used));
            if idle_since.is_ok_and(|d| d >= timeout) && try_passivate(cell) {
                idle.push(id.clone());
            }
        }
        for id in &idle {
            actors.pop(id);
        }
        inner.stats.passivations.fetch_add(idle.len() as u64, Ordering::Relaxed);
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ShardGate, ShardId};
    use crate::store::{AppendRequest, Appended, Snapshot, StoreError};
    use crate::testkit::TestKit;

    fn command(name: &str, payload: serde_json::Value, fence: &crate::cluster::ShardFence) -> CommandRequest {
        CommandRequest {
            aggregate: "Account".into(),
            id: "fenced".into(),
            command: name.into(),
            payload: rmp_serde::to_vec_named(&payload).unwrap(),
            fence: Some(fence.clone()),
            ..CommandRequest::default()
        }
    }

    /// A command that reaches its append after the node's lease ran out
    /// (a pause, a conflict's retries) appends nothing: the shard may be
    /// served elsewhere by then.
    #[tokio::test]
    async fn a_command_whose_node_lost_its_lease_appends_nothing() {
        let kit = TestKit::for_crate(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/bank")).await;
        let gate = Arc::new(ShardGate::new(Instant::now()));
        assert!(gate.size(1));
        gate.open(ShardId(0), 3);
        gate.set_lease(Some(u64::MAX / 2));
        let fence = gate.enter(ShardId(0)).unwrap().fence();
        let opened = kit.runtime().execute(command("Open", serde_json::json!({"owner": "o"}), &fence)).await;
        assert!(matches!(opened, Ok(CommandOutcome::Accepted { version: 1, .. })), "{opened:?}");

        gate.set_lease(Some(0));
        let late = kit.runtime().execute(command("Deposit", serde_json::json!({"amount": 5}), &fence)).await;
        assert!(matches!(late, Err(ActorError::ShardMoved { .. })), "{late:?}");
        assert_eq!(kit.runtime().events("Account", "fenced", 0, 10).await.unwrap().len(), 1, "nothing appended");
        let (version, _) = kit.runtime().state("Account", "fenced").await.unwrap();
        assert_eq!(version, 1, "the actor dropped what it had folded");
    }

    /// A memory store during whose appends the node's lease runs out.
    #[derive(Debug)]
    struct LeaseLapsesMidAppend {
        store: crate::store::MemoryStore,
        gate: Arc<ShardGate>,
    }

    #[async_trait::async_trait]
    impl EventStore for LeaseLapsesMidAppend {
        async fn append(&self, actor: &ActorId, request: AppendRequest) -> Result<Appended, StoreError> {
            self.gate.set_lease(Some(0));
            self.store.append(actor, request).await
        }
        async fn read(&self, actor: &ActorId, after: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
            self.store.read(actor, after, max).await
        }
        async fn version(&self, actor: &ActorId) -> Result<u64, StoreError> {
            self.store.version(actor).await
        }
        async fn find_command(&self, actor: &ActorId, command_id: &str) -> Result<Option<Appended>, StoreError> {
            self.store.find_command(actor, command_id).await
        }
        async fn load_snapshot(&self, actor: &ActorId) -> Result<Option<Snapshot>, StoreError> {
            self.store.load_snapshot(actor).await
        }
        async fn save_snapshot(&self, actor: &ActorId, snapshot: Snapshot) -> Result<(), StoreError> {
            self.store.save_snapshot(actor, snapshot).await
        }
    }

    /// A command whose node's lease runs out while its append is in
    /// flight: the append stands, but the node does not confirm it (the
    /// shard may have a holder that rebuilt the actor without it); the
    /// same command again, with its id, answers the stored outcome.
    #[tokio::test]
    async fn a_command_whose_node_lost_its_lease_during_the_append_is_not_confirmed() {
        let bank = crate::testkit::build_component(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/bank")).unwrap();
        let engine = crate::testkit::shared_engine(crate::EngineConfig::default());
        let component = DomainComponent::from_file(&engine, &bank).unwrap();
        let gate = Arc::new(ShardGate::new(Instant::now()));
        assert!(gate.size(1));
        gate.open(ShardId(0), 3);
        gate.set_lease(Some(u64::MAX / 2));
        let store = LeaseLapsesMidAppend { store: crate::store::MemoryStore::new(), gate: gate.clone() };
        let runtime = Runtime::new(component, Arc::new(store), RuntimeConfig::default());
        let fence = gate.enter(ShardId(0)).unwrap().fence();
        let mut open = command("Open", serde_json::json!({"owner": "o"}), &fence);
        open.command_id = Some("open-1".into());
        let answer = runtime.execute(open.clone()).await;
        assert!(matches!(answer, Err(ActorError::Unconfirmed { version: 1, .. })), "{answer:?}");
        assert_eq!(runtime.events("Account", "fenced", 0, 10).await.unwrap().len(), 1, "the append stands");

        // Asked again where the lease holds (the shard's next holder).
        open.fence = None;
        let again = runtime.execute(open).await;
        assert!(matches!(again, Ok(CommandOutcome::Accepted { version: 1, duplicate: true, .. })), "{again:?}");
    }
}
