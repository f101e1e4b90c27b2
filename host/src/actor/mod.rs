//! One actor: a VM bound to one aggregate instance, rebuilt from its events.
//!
//! The command path keeps the invariants durable-first, store-guards-writes
//! and idempotent-commands:
//! 1. `handle` decides against the current state; the events are appended
//!    with the version the state had. The guest folds the events it decided
//!    in the same call (one crossing per command), but that state is only
//!    kept once the append succeeds: a failed, conflicting or duplicate
//!    append discards the VM, and the actor is rebuilt from the store.
//! 2. On a version conflict (another writer) the actor is rebuilt from the
//!    store (its snapshot and the events after it) and decides again, a
//!    bounded number of times.
//! 3. A command id seen before returns the original events and appends
//!    nothing: recent ids are remembered, and the store is the final guard.
//!
//! A guest fault discards the VM; the next use rebuilds it from the store
//! (invariant: fault-isolation). An event that cannot be applied stops the actor with an
//! error naming its version (invariant: nothing-skipped).
//!
//! Guest calls run on the caller's thread, a Tokio worker, for at most the
//! engine's inline budget (`Placement::Inline`). A call that needs longer
//! is interrupted; the actor discards the VM, moves its calls off the
//! workers for as long as it stays live (`Placement::Offloaded`) and does
//! the operation again from the start (nothing was appended yet: a call
//! after the append, the snapshot, is not redone). So one slow or spinning
//! guest holds a worker for a few milliseconds, not for its whole deadline.
//! The same redo serves an actor whose folds read the clocks or randomness:
//! its VM is asked to announce every event it folds only once a fold read
//! them unannounced (`GuestFault::Unannounced`; see `wasm::sandbox`).

use crate::model::AggregateModel;
use crate::store::StoreError;
use crate::store::{ActorId, AppendRequest, Appended, EventStore, NewEvent, Provenance, RecordedEvent, Snapshot};
use crate::wasm::{CommandContext, DomainComponent, GuestFault, GuestInstance, HandleResult, Placement, RefusalKind};
use recent::RecentCommands;
use std::sync::Arc;

pub(crate) mod msgpack;
mod recent;

/// How actors replay, snapshot and retry.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ActorConfig {
    /// Take a snapshot after this many events since the last one (0: never).
    pub snapshot_every: u64,
    /// Events read from the store and applied per call during replay.
    pub replay_batch: usize,
    /// Times a command is decided again after a version conflict, each after
    /// a short random pause (so two writers racing for one actor take turns
    /// rather than colliding in lockstep).
    pub conflict_retries: u32,
    /// Command ids remembered per actor to answer repeats without the store.
    pub remembered_commands: usize,
    /// Store each command (name and payload) beside its events, so that a
    /// new component can decide it again (`aether-host verify`). Off for a
    /// domain whose command payloads must not be kept: its commands are
    /// then not re-decidable. About the payload's bytes and 9 more per
    /// command (1 byte when off).
    pub record_commands: bool,
}

impl Default for ActorConfig {
    fn default() -> Self {
        Self {
            snapshot_every: 100,
            replay_batch: 512,
            conflict_retries: 20,
            remembered_commands: 32,
            record_commands: true,
        }
    }
}

/// A command for one actor.
#[derive(Debug, Clone)]
pub struct Command {
    pub actor: ActorId,
    pub name: String,
    /// MessagePack.
    pub payload: Vec<u8>,
    /// Its ids and time, shared with the events it produces.
    pub provenance: Arc<Provenance>,
    /// The caller chose the command id. An id the host generated (a fresh
    /// random UUID) cannot be a repeat, so such a command skips the lookups
    /// that answer repeats; the store still checks every id.
    pub id_from_caller: bool,
    /// In a cluster: the grant its shard is served under, checked before
    /// each append.
    pub fence: Option<crate::cluster::ShardFence>,
}

/// What became of a command that was not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    /// The events are durable. `duplicate` if the command id had been seen:
    /// the events are the original ones and nothing was appended. A command
    /// accepted with no events has none, and `version` is the version it
    /// was accepted at; if its caller chose its id, it was recorded, and a
    /// retry is a duplicate too.
    ///
    /// `position`: where the store's log holds the events (see
    /// [`EventStore::read_log`]), for a reader to wait until policies and
    /// read models have seen them; 0 when the command appended nothing now
    /// (a duplicate, or no events).
    Accepted { version: u64, events: Vec<RecordedEvent>, duplicate: bool, command_id: Arc<str>, position: u64 },
    /// A business rejection: nothing was appended.
    Rejected { code: String, message: String },
}

/// Why a command or a read failed. Distinct from a rejection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActorError {
    #[error("unknown aggregate `{name}`; the model has: {}", known.join(", "))]
    UnknownAggregate { name: String, known: Vec<String> },
    #[error("unknown command `{aggregate}.{name}`; `{aggregate}` accepts: {}", known.join(", "))]
    UnknownCommand { aggregate: String, name: String, known: Vec<String> },
    #[error("the payload of `{command}` does not decode: {reason}")]
    BadPayload { command: String, reason: String },
    /// Retries did not resolve a version conflict. Retryable by the caller.
    #[error("{actor}: still conflicting after {retries} retries (expected version {expected}, store at {actual})")]
    Conflict { actor: ActorId, retries: u32, expected: u64, actual: u64 },
    /// The guest misbehaved; its VM was discarded and will be rebuilt.
    #[error("{actor}: {fault}")]
    Fault { actor: ActorId, fault: GuestFault },
    /// The actor cannot be rebuilt from its events (invariant: nothing-skipped).
    #[error("{actor} cannot be rebuilt: event at version {version}: {cause}")]
    Replay { actor: ActorId, version: u64, cause: String },
    /// The host is at one of its limits ([`crate::admission`]); nothing
    /// was done. Retryable, after a short pause.
    #[error("the host is at its limit of {limit} {what} at once; retry shortly")]
    Overloaded { what: &'static str, limit: usize },
    /// In a cluster: the node's lease ran out before the command appended
    /// (the shard may be served elsewhere by then); nothing was appended.
    #[error("{actor}: this node lost its cluster lease before appending; nothing was appended")]
    ShardMoved { actor: ActorId },
    /// In a cluster: the node's lease ran out while the command's append
    /// was in flight. The append went through (up to `version`), but the
    /// shard may be served elsewhere already, so the node does not confirm
    /// it; a retry with the same command id learns the outcome.
    #[error(
        "{actor}: this node lost its cluster lease while the command was appending, so it cannot confirm the \
         outcome; retry with the same idempotency key to learn it"
    )]
    Unconfirmed { actor: ActorId, version: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One live actor.
#[derive(Debug)]
pub(crate) struct Actor {
    id: ActorId,
    /// `None` after a fault: rebuilt on next use.
    vm: Option<GuestInstance>,
    version: u64,
    since_snapshot: u64,
    recent: RecentCommands,
    /// Where the actor's VM runs its calls: inline until one of them ran
    /// past the inline budget.
    placement: Placement,
    /// Whether its VM announces every event it folds: from the first fold
    /// that read the clocks or randomness unannounced.
    announce_folds: bool,
    /// The hash of the component its VM runs: its snapshots are labelled
    /// with it, and a VM of another component than the runtime's current
    /// one is rebuilt at the actor's next command (a live upgrade).
    vm_component: Option<Arc<str>>,
}

/// What an actor needs from its runtime.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Env<'a> {
    pub component: &'a DomainComponent,
    /// The component with the snapshots it trusts.
    pub deployment: &'a crate::upgrade::Deployment,
    pub store: &'a Arc<dyn EventStore>,
    pub config: &'a ActorConfig,
    pub stats: &'a crate::metrics::Stats,
    pub admission: &'a crate::admission::Admission,
}

impl Actor {
    pub(crate) fn new(id: ActorId, config: &ActorConfig) -> Self {
        Self {
            id,
            vm: None,
            version: 0,
            since_snapshot: 0,
            recent: RecentCommands::new(config.remembered_commands),
            placement: Placement::Inline,
            announce_folds: false,
            vm_component: None,
        }
    }

    /// The state (MessagePack) at an earlier version, rebuilt in a scratch VM
    /// by replaying to that version: time travel.
    pub(crate) async fn state_at(env: Env<'_>, id: ActorId, version: u64) -> Result<(u64, Vec<u8>), ActorError> {
        let mut scratch = Actor::new(id, env.config);
        let mut state = scratch.replay_to(env, version).await;
        while scratch.must_redo(&state) {
            state = scratch.replay_to(env, version).await;
        }
        state
    }

    /// Time travel in a scratch actor: a fresh VM replayed to `version`.
    async fn replay_to(&mut self, env: Env<'_>, version: u64) -> Result<(u64, Vec<u8>), ActorError> {
        self.vm = Some(self.new_vm(env)?);
        self.version = 0;
        self.restore_and_replay(env, version).await?;
        let vm = self.vm.as_mut().expect("active");
        let state = vm.state().map_err(|fault| ActorError::Fault { actor: self.id.clone(), fault })?;
        Ok((self.version, state))
    }

    /// Whether the operation that ended in `result` is to be done again,
    /// differently (it appended nothing: see the module docs): a guest call
    /// ran past the inline budget, so the actor's calls move off the I/O
    /// threads; or a fold read the clocks or randomness unannounced, so the
    /// actor's VM announces every event from now on. Each happens once per
    /// actor; the VM, left mid-call, is discarded.
    fn must_redo<T>(&mut self, result: &Result<T, ActorError>) -> bool {
        let Err(ActorError::Fault { fault, .. }) = result else { return false };
        match fault {
            GuestFault::Preempted { .. } if self.placement != Placement::Offloaded => {
                tracing::info!(actor = %self.id, cause = %fault, "moving the actor's guest calls off the I/O threads");
                self.placement = Placement::Offloaded;
            }
            GuestFault::Unannounced { .. } if !self.announce_folds => {
                tracing::debug!(actor = %self.id, "the actor's folds read clocks or randomness: announcing each event");
                self.announce_folds = true;
            }
            _ => return false,
        }
        self.vm = None;
        true
    }

    /// A VM for this actor, placed and announcing as it needs.
    fn new_vm(&mut self, env: Env<'_>) -> Result<GuestInstance, ActorError> {
        let mut vm = new_vm(env, &self.id, self.placement)?;
        vm.announce_folds(self.announce_folds);
        self.vm_component = Some(env.component.hash().clone());
        Ok(vm)
    }

    /// Drops a VM of another component than `env`'s (the runtime was
    /// upgraded since it was built): the actor's next use rebuilds it on
    /// the current component, from a snapshot it trusts or by replay.
    fn drop_stale_vm(&mut self, env: Env<'_>) {
        let current = env.component.hash();
        if self.vm.is_some()
            && self.vm_component.as_ref().is_some_and(|hash| !Arc::ptr_eq(hash, current) && hash != current)
        {
            tracing::debug!(actor = %self.id, component = %env.component.hash(), "moving to the upgraded component");
            env.stats.moved_over.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.vm = None;
        }
    }

    /// Builds the VM if there is none: latest snapshot, then the remaining
    /// events in batches.
    pub(crate) async fn ensure_active(&mut self, env: Env<'_>) -> Result<&mut GuestInstance, ActorError> {
        self.drop_stale_vm(env);
        if self.vm.is_none() {
            let _slot = env.admission.activation().await?;
            tracing::debug!(actor = %self.id, "activating");
            self.vm = Some(self.new_vm(env)?);
            self.version = 0;
            self.since_snapshot = 0;
            self.recent.clear();
            env.stats.activations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let started = std::time::Instant::now();
            if let Err(e) = self.restore_and_replay(env, u64::MAX).await {
                self.vm = None;
                return Err(e);
            }
            env.stats.activation_latency.observe(started.elapsed());
        }
        Ok(self.vm.as_mut().expect("vm was just built"))
    }

    async fn restore_and_replay(&mut self, env: Env<'_>, up_to: u64) -> Result<(), ActorError> {
        let snapshot = match env.store.load_snapshot(&self.id).await {
            Ok(snapshot) => snapshot,
            // A snapshot is an optimisation: an unreadable one costs a full replay.
            Err(StoreError::Corrupt { cause, .. }) => {
                tracing::warn!(actor = %self.id, cause = %cause, "corrupt snapshot ignored; replaying from the start");
                None
            }
            Err(e) => return Err(e.into()),
        };
        // A snapshot is the state of the code that wrote it: restored only
        // by that code, or by code whose model says it reads that state
        // (invariant: one-component-per-command).
        if let Some(snapshot) = snapshot
            && env.deployment.trusts_snapshot(&snapshot.component_hash, &self.id.aggregate)
            && snapshot.version <= up_to
        {
            let vm = self.vm.as_mut().expect("active");
            match vm.restore(&snapshot.state) {
                Ok(()) => self.version = snapshot.version,
                Err(fault @ (GuestFault::Preempted { .. } | GuestFault::Unannounced { .. })) => {
                    return Err(ActorError::Fault { actor: self.id.clone(), fault });
                }
                Err(fault) => {
                    // A snapshot is an optimisation: fall back to a full replay.
                    tracing::warn!(actor = %self.id, version = snapshot.version, cause = %fault, "snapshot ignored");
                    let fresh = self.new_vm(env)?;
                    *self.vm.as_mut().expect("active") = fresh;
                }
            }
        }
        self.catch_up(env, up_to).await
    }

    /// Applies the events the store has beyond the actor's version.
    async fn catch_up(&mut self, env: Env<'_>, up_to: u64) -> Result<(), ActorError> {
        let mut progress = ReplayProgress::new(self.version);
        loop {
            progress.report(&self.id, self.version);
            let max = env.config.replay_batch.min(up_to.saturating_sub(self.version) as usize);
            if max == 0 {
                progress.finish(&self.id, self.version);
                return Ok(());
            }
            let mut batch = env.store.read(&self.id, self.version, max).await?;
            batch.retain(|e| e.version <= up_to);
            let Some(last) = batch.last() else {
                progress.finish(&self.id, self.version);
                return Ok(());
            };
            let last_version = last.version;
            if let Some(gap) = batch.iter().enumerate().find(|(i, e)| e.version != self.version + 1 + *i as u64) {
                return Err(ActorError::Replay {
                    actor: self.id.clone(),
                    version: gap.1.version,
                    cause: format!(
                        "the store returned version {} where {} was due",
                        gap.1.version,
                        self.version + 1 + gap.0 as u64
                    ),
                });
            }
            let vm = self.vm.as_mut().expect("active");
            if let Err((index, fault)) = vm.apply(&batch) {
                if let GuestFault::Preempted { .. } | GuestFault::Unannounced { .. } = fault {
                    return Err(ActorError::Fault { actor: self.id.clone(), fault });
                }
                let version = match index {
                    Some(i) => batch[i].version,
                    // A trap cannot say which event of the batch caused it.
                    None if batch.len() > 1 => return Err(self.pinpoint(env, last_version).await),
                    None => batch[0].version,
                };
                tracing::error!(actor = %self.id, version, cause = %fault, "replay failed");
                return Err(ActorError::Replay { actor: self.id.clone(), version, cause: fault.to_string() });
            }
            env.stats.replayed.fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
            for e in &batch {
                self.recent.extend_or_remember(&e.provenance.command_id, e.version);
            }
            self.since_snapshot += batch.len() as u64;
            self.version = last_version;
        }
    }

    /// Replays from the start one event at a time in a fresh VM, to name the
    /// event that a batch trapped on. Only on the failure path.
    async fn pinpoint(&mut self, env: Env<'_>, up_to: u64) -> ActorError {
        let mut vm = match self.new_vm(env) {
            Ok(vm) => vm,
            Err(e) => return e,
        };
        let mut version = 0;
        while version < up_to {
            let events = match env.store.read(&self.id, version, 1).await {
                Ok(events) => events,
                Err(e) => return e.into(),
            };
            let Some(event) = events.into_iter().next() else { break };
            if let Err((_, fault)) = vm.apply(std::slice::from_ref(&event)) {
                if let GuestFault::Preempted { .. } | GuestFault::Unannounced { .. } = fault {
                    return ActorError::Fault { actor: self.id.clone(), fault };
                }
                tracing::error!(actor = %self.id, version = event.version, cause = %fault, "replay failed");
                return ActorError::Replay { actor: self.id.clone(), version: event.version, cause: fault.to_string() };
            }
            version = event.version;
        }
        ActorError::Replay {
            actor: self.id.clone(),
            version: up_to,
            cause: "a batch trapped but no single event does (is `apply` non-deterministic?)".into(),
        }
    }

    /// The current state (MessagePack) and version. A live actor first
    /// catches up with the store: another host may have appended since.
    pub(crate) async fn state(&mut self, env: Env<'_>) -> Result<(u64, Vec<u8>), ActorError> {
        let mut state = self.current_state(env).await;
        while self.must_redo(&state) {
            state = self.current_state(env).await;
        }
        state
    }

    async fn current_state(&mut self, env: Env<'_>) -> Result<(u64, Vec<u8>), ActorError> {
        self.drop_stale_vm(env);
        if self.vm.is_some() {
            self.catch_up_or_discard(env).await?;
        }
        let vm = self.ensure_active(env).await?;
        match vm.state() {
            Ok(state) => Ok((self.version, state)),
            Err(fault) => Err(self.fault(fault)),
        }
    }

    fn fault(&mut self, fault: GuestFault) -> ActorError {
        if !matches!(fault, GuestFault::Preempted { .. } | GuestFault::Unannounced { .. }) {
            tracing::warn!(actor = %self.id, cause = %fault, "guest fault; the VM is discarded");
        }
        self.vm = None;
        ActorError::Fault { actor: self.id.clone(), fault }
    }

    /// Decides, appends and applies one command.
    pub(crate) async fn execute(
        &mut self,
        env: Env<'_>,
        model: &AggregateModel,
        command: &Command,
    ) -> Result<CommandOutcome, ActorError> {
        self.drop_stale_vm(env);
        let mut outcome = self.decide_and_append(env, model, command).await;
        while self.must_redo(&outcome) {
            outcome = self.decide_and_append(env, model, command).await;
        }
        outcome
    }

    async fn decide_and_append(
        &mut self,
        env: Env<'_>,
        model: &AggregateModel,
        command: &Command,
    ) -> Result<CommandOutcome, ActorError> {
        self.ensure_active(env).await?;
        if command.id_from_caller
            && let Some(original) = self.recent.find(&command.provenance.command_id)
        {
            return self.original_outcome(env, command, original).await;
        }
        let provenance = &command.provenance;
        let mut ctx = CommandContext {
            command_id: &provenance.command_id,
            correlation_id: &provenance.correlation_id,
            causation_id: &provenance.causation_id,
            timestamp_ms: provenance.timestamp_ms,
            version: self.version,
        };
        let mut retries = 0;
        loop {
            ctx.version = self.version;
            let vm = self.vm.as_mut().expect("active");
            let events = match vm.handle(&ctx, &command.name, &command.payload) {
                Ok(HandleResult::Accepted(events)) => events,
                Ok(HandleResult::Rejected { code, message }) => {
                    // A repeat whose original fell out of the remembered ids
                    // may be rejected by the new state; the store knows, in
                    // one lookup (on JetStream one round trip, under the
                    // actor's lock: see the store's Idempotency docs).
                    if command.id_from_caller
                        && let Some(original) = env.store.find_command(&self.id, &provenance.command_id).await?
                    {
                        return self.original_outcome(env, command, original).await;
                    }
                    // A rejection appends nothing, so no version check guards
                    // it: make sure it was decided on the latest state (another
                    // writer may have moved the stream on).
                    if retries < env.config.conflict_retries && env.store.version(&self.id).await? > self.version {
                        retries += 1;
                        self.catch_up_or_discard(env).await?;
                        continue;
                    }
                    return Ok(CommandOutcome::Rejected { code, message });
                }
                Err(GuestFault::Refused { kind: RefusalKind::Undecodable, reason, .. }) => {
                    return Err(ActorError::BadPayload { command: command.name.clone(), reason });
                }
                Err(fault) => return Err(self.fault(fault)),
            };
            if let Err(reason) = check_events(model, &events) {
                return Err(self.fault(GuestFault::InvalidOutput { call: "handle", reason }));
            }
            // With no events, only an id its caller chose can come again: that
            // command is recorded (an empty append), a minted one needs nothing.
            if events.is_empty() && !command.id_from_caller {
                let command_id = provenance.command_id.clone();
                return Ok(CommandOutcome::Accepted {
                    version: self.version,
                    events: vec![],
                    duplicate: false,
                    command_id,
                    position: 0,
                });
            }
            let request = AppendRequest {
                expected_version: self.version,
                provenance: provenance.clone(),
                events,
                id_from_caller: command.id_from_caller,
                shard_epoch: command.fence.as_ref().map(crate::cluster::ShardFence::epoch),
            };
            let events = request.events.clone();
            // Decided while the node's lease may have run out (a pause, a
            // conflict's retries): then the shard may already be served
            // elsewhere, so append nothing (invariant: one-server-per-shard).
            if let Some(fence) = &command.fence
                && !fence.holds()
            {
                // The VM folded the events tentatively: rebuilt on next use.
                self.vm = None;
                return Err(ActorError::ShardMoved { actor: self.id.clone() });
            }
            // The VM holds the events tentatively: it is out of the actor
            // while the append is in flight, so a caller that drops this
            // future mid-append leaves an actor with no VM, rebuilt from the
            // store on its next use, whatever the append did.
            let tentative = self.vm.take();
            let appended = env.store.append(&self.id, request).await;
            if let Ok(appended) = appended
                && !appended.duplicate
            {
                self.vm = tentative;
                let version = appended.last_version;
                let outcome = self.appended(env, appended, command, events).await;
                // The lease ran out while the append was in flight: the
                // shard may have a new holder that rebuilt this actor
                // before the append landed and answers reads without it.
                // The append stands (the store's version check took it);
                // its answer is withheld, so no client is told of a write
                // the shard's holder may not show (invariant:
                // one-server-per-shard). A retry with the same id learns
                // the outcome from whoever holds the shard then.
                if let Some(fence) = &command.fence
                    && !fence.holds()
                {
                    return Err(ActorError::Unconfirmed { actor: self.id.clone(), version });
                }
                return Ok(outcome);
            }
            // The VM folded events the store did not take: only a rebuild
            // from the store gives the actor's state back.
            match appended {
                Ok(original) => return self.original_outcome(env, command, original).await,
                Err(StoreError::Conflict { expected, actual, .. }) => {
                    env.stats.conflicts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if retries >= env.config.conflict_retries {
                        // Rebuild now, so the caller's retry decides on the latest state.
                        let _ = self.ensure_active(env).await;
                        return Err(ActorError::Conflict { actor: self.id.clone(), retries, expected, actual });
                    }
                    retries += 1;
                    tracing::debug!(actor = %self.id, expected, actual, retries, "version conflict; rebuilding");
                    tokio::time::sleep(conflict_backoff(retries)).await;
                    self.ensure_active(env).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Catches up with the store; on failure the VM is discarded, so the next
    /// use rebuilds it rather than deciding on a half-replayed state.
    async fn catch_up_or_discard(&mut self, env: Env<'_>) -> Result<(), ActorError> {
        let caught_up = self.catch_up(env, u64::MAX).await;
        if caught_up.is_err() {
            self.vm = None;
        }
        caught_up
    }

    /// Keeps the state the guest folded the appended events into, remembers
    /// the command if its caller chose its id (only such an id can come
    /// again), snapshots if due.
    async fn appended(
        &mut self,
        env: Env<'_>,
        appended: Appended,
        command: &Command,
        events: Vec<NewEvent>,
    ) -> CommandOutcome {
        let provenance = &command.provenance;
        self.vm.as_mut().expect("active").confirm();
        self.version = appended.last_version;
        self.since_snapshot += events.len() as u64;
        if command.id_from_caller {
            self.recent.remember(provenance.command_id.clone(), Appended { duplicate: true, ..appended });
        }
        self.maybe_snapshot(env).await;
        let recorded = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| RecordedEvent {
                version: appended.first_version + i as u64,
                name: e.name,
                payload: e.payload,
                provenance: provenance.clone(),
            })
            .collect();
        let command_id = provenance.command_id.clone();
        let (version, position) = (appended.last_version, appended.position);
        CommandOutcome::Accepted { version, events: recorded, duplicate: false, command_id, position }
    }

    /// Before the actor moves to another node: snapshots it if the events
    /// since its last snapshot are a long tail (a quarter of
    /// `snapshot_every` or more), so the new owner does not replay them.
    pub(crate) async fn snapshot_for_handoff(&mut self, env: Env<'_>) {
        let every = env.config.snapshot_every;
        if every == 0 || self.vm.is_none() || self.since_snapshot < (every / 4).max(1) {
            return;
        }
        self.snapshot(env).await;
    }

    async fn maybe_snapshot(&mut self, env: Env<'_>) {
        let every = env.config.snapshot_every;
        if every == 0 || self.since_snapshot < every {
            return;
        }
        self.snapshot(env).await;
    }

    async fn snapshot(&mut self, env: Env<'_>) {
        let vm = self.vm.as_mut().expect("active");
        match vm.snapshot() {
            Ok(state) => {
                // Labelled with the VM's own component: before a handoff the
                // VM may still run the component an upgrade replaced.
                let component_hash = self.vm_component.as_deref().unwrap_or(env.component.hash()).to_string();
                let snapshot = Snapshot { version: self.version, component_hash, state };
                match env.store.save_snapshot(&self.id, snapshot).await {
                    Ok(()) => self.since_snapshot = 0,
                    Err(e) => tracing::warn!(actor = %self.id, cause = %e, "snapshot not saved"),
                }
            }
            // The command is durable: a snapshot call that ran past the
            // inline budget is not redone, only its VM discarded.
            Err(fault) => {
                let failed = Err(self.fault(fault));
                self.must_redo::<()>(&failed);
            }
        }
    }

    /// The answer to a repeated command: its original events (none for a
    /// command recorded with none) at the version it left the actor at.
    async fn original_outcome(
        &mut self,
        env: Env<'_>,
        command: &Command,
        original: Appended,
    ) -> Result<CommandOutcome, ActorError> {
        let events = match original.events() {
            0 => Vec::new(),
            count => {
                let events = env.store.read(&self.id, original.first_version - 1, count as usize).await?;
                events.into_iter().filter(|e| e.version <= original.last_version).collect()
            }
        };
        // A command id reused for another command is not a repeat: answering
        // the first command's events would tell the caller a command it never
        // sent was accepted. Names are compared, not payloads, so a retry whose
        // JSON was re-serialised still counts as the same command. A command
        // recorded without its name (`--record-commands=false`, wire format
        // 1) or without events cannot be compared and is answered as a repeat.
        if let Some(recorded) = events.first().and_then(|e| e.provenance.command.as_ref())
            && recorded.name != command.name
        {
            return Ok(CommandOutcome::Rejected {
                code: ID_REUSED.to_string(),
                message: format!(
                    "command id `{}` was already used for `{}`; give `{}` an id of its own",
                    command.provenance.command_id, recorded.name, command.name
                ),
            });
        }
        let command_id = command.provenance.command_id.clone();
        Ok(CommandOutcome::Accepted {
            version: original.last_version,
            events,
            duplicate: true,
            command_id,
            position: 0,
        })
    }
}

/// The rejection code of a command whose id was already used for another
/// command of the actor.
pub const ID_REUSED: &str = "command-id-reused";

/// A random pause before the `retry`th attempt after a conflict: up to
/// 0.25 ms doubling per retry, capped at 16 ms.
fn conflict_backoff(retry: u32) -> std::time::Duration {
    use std::hash::{BuildHasher, Hasher};
    let max_us = 250u64 << retry.saturating_sub(1).min(6);
    // A randomly keyed hasher is a random source without a dependency.
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    std::time::Duration::from_micros(random % (max_us + 1))
}

/// Reports a replay that takes more than a moment: every few seconds while
/// it runs, and once when it ends, so a long activation is never silent.
struct ReplayProgress {
    started: std::time::Instant,
    last_report: std::time::Instant,
    from: u64,
    reported: bool,
}

impl ReplayProgress {
    const FIRST_REPORT: std::time::Duration = std::time::Duration::from_secs(1);
    const EVERY: std::time::Duration = std::time::Duration::from_secs(5);

    fn new(from: u64) -> Self {
        let now = std::time::Instant::now();
        Self { started: now, last_report: now, from, reported: false }
    }

    fn report(&mut self, actor: &ActorId, version: u64) {
        let due = if self.reported { Self::EVERY } else { Self::FIRST_REPORT };
        if self.last_report.elapsed() < due {
            return;
        }
        let elapsed = self.started.elapsed();
        let rate = (version - self.from) as f64 / elapsed.as_secs_f64().max(1e-9);
        tracing::info!(actor = %actor, version, events_per_s = rate as u64, "replaying");
        self.last_report = std::time::Instant::now();
        self.reported = true;
    }

    fn finish(&self, actor: &ActorId, version: u64) {
        if self.reported {
            let elapsed = self.started.elapsed();
            tracing::info!(actor = %actor, version, events = version - self.from, ?elapsed, "replay done");
        }
    }
}

/// Creates and binds a VM for an actor.
pub(crate) fn new_vm(env: Env<'_>, id: &ActorId, placement: Placement) -> Result<GuestInstance, ActorError> {
    let fault = |fault| match fault {
        // Every VM slot is in use: overload, not the guest's doing.
        GuestFault::PoolExhausted(_) => {
            ActorError::Overloaded { what: "VMs", limit: env.component.engine().config().max_instances as usize }
        }
        fault => ActorError::Fault { actor: id.clone(), fault },
    };
    let mut vm = env.component.instantiate().map_err(fault)?;
    vm.place(placement);
    // A root span: the VM outlives the command that activated it. As that
    // command's child it would hold the command's span (and, exported, its
    // whole trace) open until the actor is passivated, and show the later
    // commands' guest logs under the first one's ids.
    vm.set_span(tracing::info_span!(parent: None, "actor", aggregate = %id.aggregate, id = %id.id));
    vm.init(&id.aggregate, &id.id).map_err(fault)?;
    Ok(vm)
}

/// Events must be declared by the model and be well-formed MessagePack.
fn check_events(model: &AggregateModel, events: &[NewEvent]) -> Result<(), String> {
    for e in events {
        if !model.events.iter().any(|m| m.name == e.name) {
            return Err(format!("event `{}` is not an event of `{}`", e.name, model.name));
        }
        match msgpack::check_one_value(&e.payload) {
            Ok(()) => {}
            Err(msgpack::Malformed::Trailing(n)) => {
                return Err(format!("the payload of `{}` has {n} trailing bytes", e.name));
            }
            Err(cause) => return Err(format!("the payload of `{}` is not MessagePack: {cause}", e.name)),
        }
    }
    Ok(())
}
