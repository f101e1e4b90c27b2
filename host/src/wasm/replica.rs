//! An actor's state rebuilt outside the runtime, from events or a snapshot
//! the caller supplies: for tools that inspect or migrate state offline,
//! and for benchmarks of replay and activation.
//!
//! A replica only folds and reads: it cannot decide a command, so it can
//! never hold a state the store does not have. Commands go through
//! [`Runtime`](crate::Runtime), which appends before it folds.

use super::component::DomainComponent;
use super::instance::{GuestFault, GuestInstance};
use crate::store::RecordedEvent;

/// An actor's VM that folds events and answers its state, detached from any
/// store. Made by [`DomainComponent::replica`].
///
/// Like an actor's, its calls are bounded by the engine's call timeout and
/// memory cap, and its clocks and randomness are those each event recorded.
/// After a [`GuestFault`] its state is unknown: drop it and build another.
#[derive(Debug)]
pub struct Replica {
    vm: GuestInstance,
}

impl DomainComponent {
    /// A fresh VM bound to the actor `aggregate`/`id`, with the empty state.
    ///
    /// # Errors
    ///
    /// [`GuestFault::PoolExhausted`] if every slot of the engine's pool is
    /// in use, [`GuestFault::Instantiate`] if the guest's start-up fails,
    /// [`GuestFault::Refused`] if the guest has no such aggregate.
    pub fn replica(&self, aggregate: &str, id: &str) -> Result<Replica, GuestFault> {
        let mut vm = self.instantiate()?;
        vm.init(aggregate, id)?;
        Ok(Replica { vm })
    }
}

impl Replica {
    /// Folds stored events, in order, into the state, in one call into the
    /// guest. Their versions should follow on from the state's.
    ///
    /// # Errors
    ///
    /// The guest's fault: a trap, a timeout, an event it cannot decode.
    pub fn apply(&mut self, events: &[RecordedEvent]) -> Result<(), GuestFault> {
        self.vm.apply(events).map_err(|(_, fault)| fault)
    }

    /// Replaces the state with a snapshot (as [`snapshot`](Self::snapshot)
    /// or the store made it).
    ///
    /// # Errors
    ///
    /// The guest's fault, as for [`apply`](Self::apply).
    pub fn restore(&mut self, snapshot: &[u8]) -> Result<(), GuestFault> {
        self.vm.restore(snapshot)
    }

    /// The state as snapshot bytes.
    ///
    /// # Errors
    ///
    /// The guest's fault, as for [`apply`](Self::apply).
    pub fn snapshot(&mut self) -> Result<Vec<u8>, GuestFault> {
        self.vm.snapshot()
    }

    /// The state as MessagePack (a map, for the SDK's aggregates).
    ///
    /// # Errors
    ///
    /// The guest's fault, as for [`apply`](Self::apply).
    pub fn state(&mut self) -> Result<Vec<u8>, GuestFault> {
        self.vm.state()
    }

    /// Whether the guest announces every event it folds, for guests whose
    /// folds read the clocks or randomness; by default only the first of
    /// each call is (a host call per event is most of a replay's cost), and
    /// such a fold fails with [`GuestFault::Unannounced`].
    pub fn announce_folds(&mut self, every_event: bool) {
        self.vm.announce_folds(every_event);
    }
}
