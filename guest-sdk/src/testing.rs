//! Native given/when/then for aggregates, policies and read models, without wasm.
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
//!
//! Policies: [`policy`], given events (and rejections), expect commands.
//! Read models: [`read_model`], given events, expect rows.

use crate::messages::{Envelope, MessagePart, Messages, Rejected, SendCommand};
use crate::{Aggregate, Context, Policy, ReadModel, Rejection, codec};
use std::collections::{BTreeMap, HashMap};
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

/// Starts a policy scenario: events happen, the policy reacts to each.
///
/// ```
/// # use aether_guest::{Policy, SendCommand, testing::policy};
/// # fn demo<P: Policy, A: aether_guest::Aggregate>(e: A::Event, expect: SendCommand<P::Command>)
/// # where P::Command: PartialEq + std::fmt::Debug {
/// policy::<P>().given::<A>("a-1", [e]).then_expect_commands([expect]);
/// # }
/// ```
///
/// # Panics
///
/// If the policy's types name an event or command its aggregate does not have.
pub fn policy<P: Policy>() -> PolicyScenario<P> {
    check_parts(P::NAME, "reacts to", "an event", &P::Event::parts(), |p| p.aggregate_events);
    check_parts(P::NAME, "sends", "a command", &P::Command::parts(), |p| p.aggregate_commands);
    PolicyScenario { sent: Vec::new(), stream: Stream::default() }
}

/// A policy and the commands it has sent so far in a scenario.
#[derive(Debug)]
pub struct PolicyScenario<P: Policy> {
    sent: Vec<SendCommand<P::Command>>,
    stream: Stream,
}

impl<P: Policy> PolicyScenario<P> {
    /// These events of the actor `id` of aggregate `A` happen, in order, and
    /// the policy reacts to each it reacts to (the host offers it no others).
    ///
    /// # Panics
    ///
    /// If an event does not survive the wire, or a command the policy sends
    /// does not decode as its aggregate's command.
    pub fn given<A: Aggregate>(mut self, id: &str, events: impl IntoIterator<Item = A::Event>) -> Self {
        for event in events {
            let Some(envelope) = self.stream.envelope::<A, P::Event>(id, &event, P::NAME) else { continue };
            let sent = P::react(&envelope);
            self.record(sent);
        }
        self
    }

    /// A command this policy sent was rejected: the policy is offered the
    /// rejection, as the host offers it, and may compensate.
    ///
    /// # Panics
    ///
    /// As [`given`](Self::given).
    pub fn given_rejected(mut self, sent: SendCommand<P::Command>, rejection: Rejection) -> Self {
        let command_id = format!("sent-{}", self.stream.next_id());
        let rejected = Rejected { sent, command_id, rejection, timestamp_ms: 0 };
        let sent = P::rejected(&rejected);
        self.record(sent);
        self
    }

    fn record(&mut self, sent: Vec<SendCommand<P::Command>>) {
        for command in sent {
            let (aggregate, name, payload) = command
                .command
                .encode()
                .unwrap_or_else(|e| panic!("policy `{}` sends a command that does not encode: {e}", P::NAME));
            let part = P::Command::parts().into_iter().find(|p| p.aggregate == aggregate).expect("the set's own part");
            if let Err(e) = (part.decodes_as_command)(&name, &payload) {
                panic!("policy `{}` sends `{aggregate}.{name}`, which `{aggregate}` cannot decode: {e}", P::NAME);
            }
            self.sent.push(command);
        }
    }

    /// Asserts the policy sent exactly these commands since the scenario began.
    ///
    /// # Panics
    ///
    /// If it sent others.
    pub fn then_expect_commands(self, expected: impl IntoIterator<Item = SendCommand<P::Command>>) -> Self
    where
        P::Command: PartialEq + Debug,
    {
        let expected: Vec<_> = expected.into_iter().collect();
        assert_eq!(self.sent, expected, "policy `{}`: unexpected commands", P::NAME);
        self
    }

    /// The commands sent so far.
    pub fn commands(&self) -> &[SendCommand<P::Command>] {
        &self.sent
    }
}

/// Starts a read-model scenario: events happen, the read model folds each
/// into the rows it chooses.
///
/// # Panics
///
/// If the read model's types name an event its aggregate does not have, or
/// an index that is not a field of its row.
pub fn read_model<R: ReadModel>() -> ReadModelScenario<R> {
    check_parts(R::NAME, "consumes", "an event", &R::Event::parts(), |p| p.aggregate_events);
    let schema = schemars::schema_for!(R::Row).to_value();
    for index in R::INDEXES {
        if schema.pointer(&format!("/properties/{index}")).is_none() {
            panic!("read model `{}` indexes `{index}`, which is not a field of its row", R::NAME);
        }
    }
    ReadModelScenario { rows: BTreeMap::new(), stream: Stream::default() }
}

/// A read model and its rows so far in a scenario.
#[derive(Debug)]
pub struct ReadModelScenario<R: ReadModel> {
    rows: BTreeMap<String, R::Row>,
    stream: Stream,
}

impl<R: ReadModel> ReadModelScenario<R> {
    /// These events of the actor `id` of aggregate `A` happen, in order, and
    /// the read model folds each it consumes (the host offers it no others).
    /// Rows cross the wire (MessagePack) between folds, as in the host.
    ///
    /// # Panics
    ///
    /// If an event or a row does not survive the wire.
    pub fn given<A: Aggregate>(mut self, id: &str, events: impl IntoIterator<Item = A::Event>) -> Self {
        for event in events {
            let Some(envelope) = self.stream.envelope::<A, R::Event>(id, &event, R::NAME) else { continue };
            for key in R::keys(&envelope) {
                let row = self.rows.remove(&key).map(|row| {
                    rmp_serde::from_slice(&codec::encode_named(&row)).unwrap_or_else(|e| {
                        panic!("read model `{}`: the row `{key}` does not survive the wire: {e}", R::NAME)
                    })
                });
                if let Some(row) = R::fold(&key, row, &envelope) {
                    self.rows.insert(key, row);
                }
            }
        }
        self
    }

    /// Asserts the row under `key` (`None`: no row).
    ///
    /// # Panics
    ///
    /// If the row differs.
    pub fn then_expect_row(self, key: &str, expected: Option<R::Row>) -> Self
    where
        R::Row: PartialEq + Debug,
    {
        assert_eq!(self.rows.get(key), expected.as_ref(), "read model `{}`: unexpected row `{key}`", R::NAME);
        self
    }

    /// Asserts the read model holds exactly these rows.
    ///
    /// # Panics
    ///
    /// If there are other rows, or a row differs.
    pub fn then_expect_rows(self, expected: impl IntoIterator<Item = (impl Into<String>, R::Row)>) -> Self
    where
        R::Row: PartialEq + Debug,
    {
        let expected: BTreeMap<String, R::Row> = expected.into_iter().map(|(k, r)| (k.into(), r)).collect();
        assert_eq!(self.rows, expected, "read model `{}`: unexpected rows", R::NAME);
        self
    }

    /// The rows, by key.
    pub fn rows(&self) -> &BTreeMap<String, R::Row> {
        &self.rows
    }
}

/// Panics if a part names a message its aggregate does not have.
fn check_parts(owner: &str, verb: &str, kind: &str, parts: &[MessagePart], own: fn(&MessagePart) -> &[&str]) {
    for part in parts {
        if let Some(missing) = part.names.iter().find(|n| !own(part).contains(n)) {
            panic!("`{owner}` {verb} `{}.{missing}`, which is not {kind} of `{}`", part.aggregate, part.aggregate);
        }
    }
}

/// The versions of the actors in a scenario, to stamp events as the store would.
#[derive(Debug, Default)]
struct Stream {
    versions: HashMap<(String, String), u64>,
    ids: u64,
}

impl Stream {
    fn next_id(&mut self) -> u64 {
        self.ids += 1;
        self.ids
    }

    /// The event as `owner` receives it, or `None` if it is not in the set.
    fn envelope<A: Aggregate, E: Messages>(&mut self, id: &str, event: &A::Event, owner: &str) -> Option<Envelope<E>> {
        let (name, payload) = codec::split(event).unwrap_or_else(|e| panic!("given event: {e}"));
        let version = self.versions.entry((A::NAME.to_string(), id.to_string())).or_default();
        *version += 1;
        let version = *version;
        let decoded = E::decode(A::NAME, &name, &payload)
            .unwrap_or_else(|e| panic!("`{owner}` cannot decode `{}.{name}`: {e}", A::NAME))?;
        let command_id = format!("given-{}", self.next_id());
        Some(Envelope {
            aggregate: A::NAME.to_string(),
            actor_id: id.to_string(),
            version,
            timestamp_ms: 0,
            correlation_id: command_id.clone(),
            command_id,
            event: decoded,
        })
    }
}
