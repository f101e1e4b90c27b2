//! Native given/when/then for aggregates, without wasm.
//!
//! ```
//! # use aether_guest::testing::given;
//! # fn demo<A: aether_guest::Aggregate>(e: A::Event, c: A::Command, expect: A::Event)
//! # where A::Event: PartialEq + std::fmt::Debug {
//! given::<A>([e]).when(c).then_expect_events([expect]);
//! # }
//! ```
//!
//! Events and commands go through the same MessagePack codec as on the wire,
//! so a type that does not survive the trip fails here, not in production.

use crate::{Aggregate, Context, Rejection, codec};
use std::fmt::Debug;

/// Starts a scenario from the events an actor already has.
pub fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> Given<A> {
    let mut state = A::default();
    let mut version = 0;
    for event in events {
        let event = round_trip(&event);
        state.apply(&event);
        version += 1;
    }
    Given { state, ctx: Context { actor_id: "test".into(), version, ..Context::default() } }
}

/// An aggregate rebuilt from past events.
#[derive(Debug)]
pub struct Given<A> {
    state: A,
    ctx: Context,
}

impl<A: Aggregate> Given<A> {
    /// Sets the context `handle` sees (the version is kept from the events).
    pub fn with_context(mut self, ctx: Context) -> Self {
        let version = self.ctx.version;
        self.ctx = Context { version, ..ctx };
        self
    }

    /// The state after the given events.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// Decides a command.
    pub fn when(self, command: A::Command) -> Then<A> {
        let command = round_trip(&command);
        let outcome = self.state.handle(&self.ctx, command).map(|events| events.iter().map(round_trip).collect());
        Then { state: self.state, outcome }
    }
}

/// The outcome of a command, to assert on.
#[derive(Debug)]
pub struct Then<A: Aggregate> {
    state: A,
    outcome: Result<Vec<A::Event>, Rejection>,
}

impl<A: Aggregate> Then<A> {
    /// Asserts the command was accepted with exactly these events.
    ///
    /// # Panics
    ///
    /// If the command was rejected or produced other events.
    pub fn then_expect_events(self, expected: impl IntoIterator<Item = A::Event>) -> Self
    where
        A::Event: PartialEq + Debug,
    {
        let expected: Vec<_> = expected.into_iter().collect();
        match &self.outcome {
            Ok(events) => assert_eq!(events, &expected, "{}: unexpected events", A::NAME),
            Err(r) => panic!("{}: expected events {expected:?}, the command was rejected: {r}", A::NAME),
        }
        self
    }

    /// Asserts the command was rejected with this code.
    ///
    /// # Panics
    ///
    /// If the command was accepted or rejected with another code.
    pub fn then_expect_rejection(self, code: &str) -> Self
    where
        A::Event: Debug,
    {
        match &self.outcome {
            Ok(events) => panic!("{}: expected rejection `{code}`, got events {events:?}", A::NAME),
            Err(r) => assert_eq!(r.code, code, "{}: rejected with another code ({r})", A::NAME),
        }
        self
    }

    /// The state after applying the accepted events (unchanged if rejected).
    pub fn state(mut self) -> A {
        if let Ok(events) = &self.outcome {
            for e in events {
                self.state.apply(e);
            }
        }
        self.state
    }

    /// The raw outcome.
    pub fn outcome(&self) -> &Result<Vec<A::Event>, Rejection> {
        &self.outcome
    }
}

fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
    let (name, payload) = codec::split(value).unwrap_or_else(|e| panic!("does not encode as a message: {e}"));
    codec::join(&name, &payload).unwrap_or_else(|e| panic!("`{name}` does not survive the wire: {e}"))
}
