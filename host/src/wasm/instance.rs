//! One actor's VM: a wasmtime store and instance, and the calls into it.
//!
//! Every call is bounded by the epoch deadline and the memory cap. A fault
//! (trap, timeout, memory, a guest-reported error) leaves the instance in an
//! unknown state: callers must discard it and rebuild from the store.

use super::bindings::DomainHost;
use super::bindings::aether::domain::types as wit;
use super::engine::AetherEngine;
use super::engine::{OffloadedCalls, Placement};
use super::sandbox::{Sandbox, SeedKey};
use crate::store::{NewEvent, RecordedEvent};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::Store;

/// A guest fault: the call failed in a way that is not a business decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GuestFault {
    /// The guest trapped (a panic, `unreachable`, an out-of-bounds access).
    #[error("guest trapped in `{call}`: {message}")]
    Trap { call: &'static str, message: String },
    /// The call ran past the deadline and was interrupted.
    #[error("guest ran past its {limit:?} deadline in `{call}` and was interrupted")]
    Timeout { call: &'static str, limit: Duration },
    /// A call made on a Tokio worker ran past the engine's inline budget
    /// ([`EngineConfig::inline_budget`](super::EngineConfig::inline_budget))
    /// and was interrupted: not the guest's fault. The runtime rebuilds the
    /// VM off the workers and does the work again there.
    #[error("guest ran past its {limit:?} inline budget in `{call}`; its calls move off the I/O threads")]
    Preempted { call: &'static str, limit: Duration },
    /// A fold read the clocks or randomness after the host had asked the
    /// guest to announce no more events: not the guest's fault. The VM is
    /// left mid-call; rebuild it with every fold announced (for a
    /// [`Replica`](super::Replica), [`announce_folds`](super::Replica::announce_folds))
    /// and do the work again.
    #[error("a fold in `{call}` read the clock or randomness unannounced; folding again with every event announced")]
    Unannounced { call: &'static str },
    /// The guest grew its memory past the cap.
    #[error("guest exceeded its memory cap of {limit} bytes in `{call}` (asked for {asked})")]
    OutOfMemory { call: &'static str, limit: usize, asked: usize },
    /// The guest reported bad input: an unknown aggregate or command, or a
    /// payload it could not decode.
    #[error("guest refused `{call}`: {reason}")]
    Refused { call: &'static str, kind: RefusalKind, reason: String },
    /// The guest returned something the host cannot accept.
    #[error("guest returned invalid output from `{call}`: {reason}")]
    InvalidOutput { call: &'static str, reason: String },
    /// No VM could be created: instantiation failed.
    #[error("cannot create a VM: {0}")]
    Instantiate(String),
    /// No VM could be created: every slot of the engine's pool is in use.
    #[error("cannot create a VM: every slot of the pool is in use ({0})")]
    PoolExhausted(String),
}

/// Why a guest refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusalKind {
    UnknownAggregate,
    UnknownCommand,
    Undecodable,
    NotInitialised,
    UnknownPolicy,
    UnknownReadModel,
    /// A policy or read model was given an event it does not declare.
    UnexpectedEvent,
}

/// What `handle` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HandleResult {
    Accepted(Vec<NewEvent>),
    Rejected { code: String, message: String },
}

/// What `handle` is told about the command (the actor's id went to `init`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CommandContext<'a> {
    pub command_id: &'a str,
    pub correlation_id: &'a str,
    pub causation_id: &'a str,
    pub timestamp_ms: u64,
    pub version: u64,
}

/// One actor's VM. Crate-private: its calls must follow the actor's
/// protocol (a `handle` is confirmed only after a durable append).
pub(crate) struct GuestInstance {
    store: Store<Sandbox>,
    bindings: DomainHost,
    deadline_ticks: u64,
    call_timeout: Duration,
    inline_ticks: u64,
    inline_budget: Duration,
    placement: Placement,
    offloaded: Arc<OffloadedCalls>,
    max_memory: usize,
    /// The state includes events `handle` decided that are not known to be
    /// durable: until [`confirm`](Self::confirm), the instance may only be
    /// dropped.
    tentative: bool,
}

impl std::fmt::Debug for GuestInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestInstance").field("tentative", &self.tentative).finish_non_exhaustive()
    }
}

impl GuestInstance {
    pub(super) fn new(store: Store<Sandbox>, bindings: DomainHost, engine: &AetherEngine) -> Self {
        let config = engine.config();
        Self {
            store,
            bindings,
            deadline_ticks: engine.deadline_ticks(),
            call_timeout: config.call_timeout,
            inline_ticks: engine.inline_ticks(),
            inline_budget: config.inline_budget,
            placement: Placement::Caller,
            offloaded: engine.offloaded_calls().clone(),
            max_memory: config.max_memory_bytes,
            tentative: false,
        }
    }

    /// Sets the span guest logs and output are recorded under.
    pub fn set_span(&mut self, span: tracing::Span) {
        self.store.data_mut().span = span;
    }

    /// Where this VM's calls run from now on (a new VM runs
    /// [`Caller`](Placement::Caller)).
    pub fn place(&mut self, placement: Placement) {
        self.placement = placement;
    }

    /// Whether the guest is to announce every event it folds (for actors
    /// whose folds read the clocks or randomness), or only the first of each
    /// call (the default: a host call per event is most of a replay's cost).
    pub fn announce_folds(&mut self, every_event: bool) {
        self.store.data_mut().announce_folds = every_event;
    }

    /// Runs one bounded call with the clocks at `now_ms` and randomness
    /// seeded from the actor and `version`, where the VM is placed.
    fn call<R>(
        &mut self,
        name: &'static str,
        now_ms: u64,
        version: u64,
        f: impl FnOnce(&DomainHost, &mut Store<Sandbox>) -> wasmtime::Result<R>,
    ) -> Result<R, GuestFault> {
        self.call_with(name, |sandbox| sandbox.prepare(now_ms, sandbox.seed_key.at(version)), f)
    }

    /// As [`call`](Self::call), with the clocks and randomness set by `prepare`.
    pub(super) fn call_with<R>(
        &mut self,
        name: &'static str,
        prepare: impl FnOnce(&mut Sandbox),
        f: impl FnOnce(&DomainHost, &mut Store<Sandbox>) -> wasmtime::Result<R>,
    ) -> Result<R, GuestFault> {
        if self.tentative {
            return Err(GuestFault::InvalidOutput {
                call: name,
                reason: "the host called the guest while the events of an earlier `handle` were neither confirmed \
                         nor discarded (a host bug; the VM is discarded)"
                    .into(),
            });
        }
        prepare(self.store.data_mut());
        let ticks = if self.placement == Placement::Inline { self.inline_ticks } else { self.deadline_ticks };
        self.store.set_epoch_deadline(ticks);
        let (bindings, store) = (&self.bindings, &mut self.store);
        let result = match self.placement {
            Placement::Offloaded => self.offloaded.run(|| f(bindings, store)),
            Placement::Caller | Placement::Inline => f(bindings, store),
        };
        result.map_err(|err| self.classify(name, err))
    }

    fn classify(&mut self, call: &'static str, err: wasmtime::Error) -> GuestFault {
        if let Some(asked) = self.store.data_mut().take_refused_memory() {
            return GuestFault::OutOfMemory { call, limit: self.max_memory, asked };
        }
        if err.downcast_ref::<super::sandbox::UnannouncedRead>().is_some() {
            return GuestFault::Unannounced { call };
        }
        if let Some(wasmtime::Trap::Interrupt) = err.downcast_ref::<wasmtime::Trap>() {
            return match self.placement {
                Placement::Inline if self.inline_ticks < self.deadline_ticks => {
                    GuestFault::Preempted { call, limit: self.inline_budget }
                }
                _ => GuestFault::Timeout { call, limit: self.call_timeout },
            };
        }
        let stderr = self.store.data_mut().recent_stderr();
        let mut message = format!("{err:#}");
        if !stderr.is_empty() {
            message = format!("{stderr} ({message})");
        }
        GuestFault::Trap { call, message }
    }

    /// Seeds this VM's randomness for a policy or read model: from its name
    /// and each input's version (see `sandbox::SeedKey`).
    pub(super) fn seed_for(&mut self, owner: &str) {
        self.store.data_mut().seed_key = SeedKey::new(owner);
    }

    /// Binds the VM to one actor.
    pub fn init(&mut self, aggregate: &str, actor_id: &str) -> Result<(), GuestFault> {
        self.store.data_mut().seed_key = SeedKey::new(&format!("{aggregate}/{actor_id}"));
        let out = self.call("init", 0, 0, |b, s| b.aether_domain_aggregate().call_init(s, aggregate, actor_id))?;
        out.map_err(|e| refused("init", e))
    }

    /// Folds stored events into the state, in one call.
    ///
    /// # Errors
    ///
    /// The fault, and the index in `events` of the event that caused it when
    /// the guest could tell (a trap can only be placed in the batch).
    pub fn apply(&mut self, events: &[RecordedEvent]) -> Result<(), (Option<usize>, GuestFault)> {
        if events.is_empty() {
            return Ok(());
        }
        // The contract's `packed-events`: one copy into the guest for the
        // whole batch, where a list of messages would cost a call into the
        // guest's allocator for every name and payload.
        let packed = pack(events);
        let stored = events.iter().map(|e| (e.provenance.timestamp_ms, e.version));
        let out = self
            .call_with(
                "apply",
                |sandbox| sandbox.prepare_replay(stored),
                |b, s| b.aether_domain_aggregate().call_apply(s, &packed),
            )
            .map_err(|fault| (None, fault))?;
        out.map_err(|e| (Some(e.index as usize), refused("apply", e.error)))
    }

    /// Decides a command. When it accepts with events, the guest has folded
    /// them into its state in the same call (one crossing per command), so the
    /// instance is *tentative*: after the events are appended, call
    /// [`confirm`](Self::confirm); if they are not (a failed or conflicting
    /// append, a command already recorded), drop the instance and rebuild
    /// the actor from the store. Any other call before `confirm` is refused.
    pub fn handle(&mut self, ctx: &CommandContext<'_>, name: &str, payload: &[u8]) -> Result<HandleResult, GuestFault> {
        // Ids equal to the command id go as `none`: each string is a call
        // into the guest's allocator.
        let other = |id: &str| (id != ctx.command_id).then(|| id.to_string());
        let wit_ctx = wit::CommandContext {
            command_id: ctx.command_id.to_string(),
            correlation_id: other(ctx.correlation_id),
            causation_id: other(ctx.causation_id),
            timestamp_ms: ctx.timestamp_ms,
            version: ctx.version,
        };
        let command = wit::Message { name: name.to_string(), payload: payload.to_vec() };
        let out = self.call_with(
            "handle",
            |sandbox| sandbox.prepare_decision(ctx.timestamp_ms, ctx.version),
            |b, s| b.aether_domain_aggregate().call_handle(s, &wit_ctx, &command),
        )?;
        match out.map_err(|e| refused("handle", e))? {
            wit::HandleOutcome::Accepted(events) => {
                self.tentative = !events.is_empty();
                Ok(HandleResult::Accepted(
                    events.into_iter().map(|m| NewEvent { name: m.name, payload: m.payload }).collect(),
                ))
            }
            wit::HandleOutcome::Rejected(r) => Ok(HandleResult::Rejected { code: r.code, message: r.message }),
        }
    }

    /// The events of the last accepted [`handle`](Self::handle) are durable:
    /// the state the guest folded them into is the actor's state.
    pub fn confirm(&mut self) {
        self.tentative = false;
    }

    /// The state as snapshot bytes.
    pub fn snapshot(&mut self) -> Result<Vec<u8>, GuestFault> {
        let out = self.call("snapshot", 0, 0, |b, s| b.aether_domain_aggregate().call_snapshot(s))?;
        out.map_err(|e| refused("snapshot", e))
    }

    /// Replaces the state with a snapshot.
    pub fn restore(&mut self, snapshot: &[u8]) -> Result<(), GuestFault> {
        let out = self.call("restore", 0, 0, |b, s| b.aether_domain_aggregate().call_restore(s, snapshot))?;
        out.map_err(|e| refused("restore", e))
    }

    /// The state as a MessagePack map.
    pub fn state(&mut self) -> Result<Vec<u8>, GuestFault> {
        let out = self.call("state", 0, 0, |b, s| b.aether_domain_aggregate().call_state(s))?;
        out.map_err(|e| refused("state", e))
    }

    /// The component's model, as the guest describes it.
    pub(super) fn describe(&mut self) -> Result<wit::DomainModel, GuestFault> {
        self.call("describe", 0, 0, |b, s| b.aether_domain_aggregate().call_describe(s))
    }
}

/// Packs events as the contract's `packed-events`, with the code the guest
/// SDK unpacks them with (`aether-codec`), in one buffer sized up front.
fn pack(events: &[RecordedEvent]) -> Vec<u8> {
    let size = events.iter().map(|e| 10 + e.name.len() + e.payload.len()).sum();
    let mut out = Vec::with_capacity(size);
    for e in events {
        aether_codec::pack_into(&mut out, &e.name, &e.payload);
    }
    out
}

pub(super) fn refused(call: &'static str, err: wit::GuestError) -> GuestFault {
    let (kind, reason) = match err {
        wit::GuestError::UnknownAggregate(a) => (RefusalKind::UnknownAggregate, format!("unknown aggregate `{a}`")),
        wit::GuestError::UnknownCommand(c) => (RefusalKind::UnknownCommand, format!("unknown command `{c}`")),
        wit::GuestError::Undecodable(why) => (RefusalKind::Undecodable, format!("undecodable payload: {why}")),
        wit::GuestError::NotInitialised => (RefusalKind::NotInitialised, "called before init".to_string()),
        wit::GuestError::UnknownPolicy(p) => (RefusalKind::UnknownPolicy, format!("unknown policy `{p}`")),
        wit::GuestError::UnknownReadModel(r) => (RefusalKind::UnknownReadModel, format!("unknown read model `{r}`")),
        wit::GuestError::UnexpectedEvent(e) => (RefusalKind::UnexpectedEvent, format!("unexpected event `{e}`")),
        wit::GuestError::InvalidEvent(why) | wit::GuestError::InvalidCommand(why) => {
            return GuestFault::InvalidOutput { call, reason: why };
        }
    };
    GuestFault::Refused { call, kind, reason }
}

#[cfg(test)]
mod tests {
    use super::{CommandContext, GuestFault, HandleResult};

    /// One crossing per command: `handle` folds the events it accepts, and the
    /// VM holds them tentatively. Until the host confirms them (after a durable
    /// append) the VM refuses every other call, so a host bug cannot read or
    /// snapshot a state the store may not have.
    #[test]
    fn a_vm_holding_unconfirmed_events_refuses_other_calls_until_confirmed() {
        let bank = crate::testkit::bank();
        let mut vm = bank.instantiate().unwrap();
        vm.init("Account", "tentative").unwrap();
        let ctx =
            CommandContext { command_id: "c-1", correlation_id: "c-1", causation_id: "c-1", ..Default::default() };
        let open = rmp_serde::to_vec_named(&serde_json::json!({ "owner": "ada" })).unwrap();
        let decided = vm.handle(&ctx, "Open", &open).unwrap();
        assert!(matches!(&decided, HandleResult::Accepted(events) if events.len() == 1), "{decided:?}");
        let refused = vm.state().unwrap_err();
        assert!(matches!(&refused, GuestFault::InvalidOutput { call: "state", .. }), "{refused}");
        assert!(vm.snapshot().is_err() && vm.handle(&ctx, "Deposit", &open).is_err(), "every other call is refused");

        let mut vm = bank.instantiate().unwrap();
        vm.init("Account", "confirmed").unwrap();
        vm.handle(&ctx, "Open", &open).unwrap();
        vm.confirm();
        let state: bank::Account = rmp_serde::from_slice(&vm.state().unwrap()).unwrap();
        assert!(state.open, "the confirmed state is the folded one");
    }

    use crate::store::{Provenance, RecordedEvent};
    use std::sync::Arc;

    /// What the host packs for `apply`, the guest's codec unpacks into the
    /// events that were stored: struct and unit variants, a unit variant's
    /// payload stored as `nil` or as nothing, a boxed variant.
    #[test]
    fn packed_events_unpack_as_the_stored_events() {
        use bank::{AccountEvent, TransferDebit};
        let provenance = Arc::new(Provenance {
            command_id: "c".into(),
            correlation_id: "c".into(),
            causation_id: "c".into(),
            timestamp_ms: 0,
            component_hash: "".into(),
            command: None,
        });
        let debit = TransferDebit { transfer: "t-1".into(), amount: 3, to: "acc-2".into() };
        let events = vec![
            AccountEvent::Opened { owner: "ada".into() },
            AccountEvent::Deposited { amount: 5 },
            AccountEvent::Debited(Box::new(debit)),
            AccountEvent::Closed,
            AccountEvent::Closed,
        ];
        let mut stored: Vec<RecordedEvent> = (1..)
            .zip(&events)
            .map(|(version, event)| {
                let (name, payload) = aether_codec::split(event).unwrap();
                RecordedEvent { version, name, payload, provenance: provenance.clone() }
            })
            .collect();
        stored[4].payload.clear();
        let packed = super::pack(&stored);
        let back: Vec<AccountEvent> = aether_codec::unpack(&packed)
            .map(|item| item.and_then(aether_codec::unpack_one))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, events);
    }
}
