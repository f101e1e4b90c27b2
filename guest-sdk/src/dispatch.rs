//! The guest side of the `policy` and `read-model` interfaces: calls
//! dispatched by name to the domain's policies and read models.
//! [`domain!`](crate::domain) wires these functions to the bindings.

use crate::bindings::aether::domain::types as wit;
use crate::codec;
use crate::export::entering;
use crate::messages::{Envelope, Messages, Rejected, SendCommand};
use crate::model::{PolicyModel, ReadModelModel};
use crate::{Policy, ReadModel, Rejection};

type Reactions = Vec<Result<Vec<wit::CommandToSend>, wit::GuestError>>;
type Keys = Vec<Result<Vec<String>, wit::GuestError>>;
/// A row, MessagePack (`None`: no row).
type Row = Option<Vec<u8>>;

/// How one policy type is registered in a domain.
#[derive(Debug, Clone, Copy)]
pub struct PolicyRegistration {
    name: &'static str,
    pub(crate) model: fn() -> PolicyModel,
    react: fn(Vec<wit::PolicyInput>) -> Reactions,
}

impl PolicyRegistration {
    pub fn of<P: Policy>() -> Self {
        Self { name: P::NAME, model: PolicyModel::of::<P>, react: react_all::<P> }
    }
}

/// How one read-model type is registered in a domain.
#[derive(Debug, Clone, Copy)]
pub struct ReadModelRegistration {
    name: &'static str,
    pub(crate) model: fn() -> ReadModelModel,
    keys: fn(Vec<wit::StoredEvent>) -> Keys,
    fold: fn(&str, Row, Vec<wit::StoredEvent>) -> Result<Row, wit::ApplyError>,
}

impl ReadModelRegistration {
    pub fn of<R: ReadModel>() -> Self {
        Self { name: R::NAME, model: ReadModelModel::of::<R>, keys: keys_all::<R>, fold: fold_all::<R> }
    }
}

/// `policy.react`: the reactions of the named policy, one per input.
pub fn react(
    registry: &[PolicyRegistration],
    policy: &str,
    inputs: Vec<wit::PolicyInput>,
) -> Result<Reactions, wit::GuestError> {
    let reg =
        registry.iter().find(|r| r.name == policy).ok_or_else(|| wit::GuestError::UnknownPolicy(policy.to_string()))?;
    Ok((reg.react)(inputs))
}

/// `read-model.keys`: the row keys each event touches.
pub fn keys(
    registry: &[ReadModelRegistration],
    read_model: &str,
    events: Vec<wit::StoredEvent>,
) -> Result<Keys, wit::GuestError> {
    Ok((find_read_model(registry, read_model)?.keys)(events))
}

/// `read-model.fold`: the row under `key` after `events`.
pub fn fold(
    registry: &[ReadModelRegistration],
    read_model: &str,
    key: &str,
    row: Option<Vec<u8>>,
    events: Vec<wit::StoredEvent>,
) -> Result<Option<Vec<u8>>, wit::ApplyError> {
    let reg = find_read_model(registry, read_model).map_err(|error| wit::ApplyError { index: 0, error })?;
    (reg.fold)(key, row, events)
}

fn find_read_model<'a>(
    registry: &'a [ReadModelRegistration],
    name: &str,
) -> Result<&'a ReadModelRegistration, wit::GuestError> {
    registry.iter().find(|r| r.name == name).ok_or_else(|| wit::GuestError::UnknownReadModel(name.to_string()))
}

fn react_all<P: Policy>(inputs: Vec<wit::PolicyInput>) -> Reactions {
    let mut announce = true;
    inputs
        .into_iter()
        .enumerate()
        .map(|(i, input)| {
            announce = announce && entering(i);
            react_one::<P>(input)
        })
        .collect()
}

fn react_one<P: Policy>(input: wit::PolicyInput) -> Result<Vec<wit::CommandToSend>, wit::GuestError> {
    let sent = match input {
        wit::PolicyInput::Event(event) => P::react(&envelope::<P::Event>(event)?),
        wit::PolicyInput::Rejected(r) => {
            let wit::CommandToSend { aggregate, actor_id, command } = r.command;
            let decoded = P::Command::decode(&aggregate, &command.name, &command.payload)
                .map_err(wit::GuestError::Undecodable)?
                .ok_or_else(|| wit::GuestError::UnknownCommand(format!("{aggregate}.{}", command.name)))?;
            P::rejected(&Rejected {
                sent: SendCommand { to: actor_id, command: decoded },
                command_id: r.command_id,
                rejection: Rejection { code: r.rejection.code, message: r.rejection.message },
                timestamp_ms: r.timestamp_ms,
            })
        }
    };
    sent.into_iter().map(command_to_send).collect()
}

/// A typed command as the contract carries it.
pub(crate) fn command_to_send<C: Messages>(sent: SendCommand<C>) -> Result<wit::CommandToSend, wit::GuestError> {
    let (aggregate, name, payload) = sent.command.encode().map_err(wit::GuestError::InvalidCommand)?;
    Ok(wit::CommandToSend {
        aggregate: aggregate.to_string(),
        actor_id: sent.to,
        command: wit::Message { name, payload },
    })
}

/// A stored event decoded into a set, or why it cannot be.
pub(crate) fn envelope<E: Messages>(event: wit::StoredEvent) -> Result<Envelope<E>, wit::GuestError> {
    let decoded = E::decode(&event.aggregate, &event.name, &event.payload)
        .map_err(wit::GuestError::Undecodable)?
        .ok_or_else(|| wit::GuestError::UnexpectedEvent(format!("{}.{}", event.aggregate, event.name)))?;
    Ok(Envelope {
        aggregate: event.aggregate,
        actor_id: event.actor_id,
        version: event.version,
        timestamp_ms: event.timestamp_ms,
        command_id: event.command_id,
        correlation_id: event.correlation_id,
        event: decoded,
    })
}

fn keys_all<R: ReadModel>(events: Vec<wit::StoredEvent>) -> Keys {
    let mut announce = true;
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            announce = announce && entering(i);
            Ok(R::keys(&envelope::<R::Event>(event)?))
        })
        .collect()
}

fn fold_all<R: ReadModel>(
    key: &str,
    row: Option<Vec<u8>>,
    events: Vec<wit::StoredEvent>,
) -> Result<Option<Vec<u8>>, wit::ApplyError> {
    let mut row: Option<R::Row> = match row {
        None => None,
        Some(bytes) => Some(rmp_serde::from_slice(&bytes).map_err(|e| wit::ApplyError {
            index: 0,
            error: wit::GuestError::Undecodable(format!("the row under `{key}`: {e}")),
        })?),
    };
    let mut announce = true;
    for (i, event) in events.into_iter().enumerate() {
        let event = envelope::<R::Event>(event).map_err(|error| wit::ApplyError { index: i as u32, error })?;
        announce = announce && entering(i);
        row = R::fold(key, row, &event);
    }
    Ok(row.map(|r| codec::encode_named(&r)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{policy, read_model};
    use crate::{Context, JsonSchema};
    use serde::{Deserialize, Serialize};

    #[derive(Default, Serialize, Deserialize, JsonSchema)]
    struct Counter;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
    enum CounterCommand {
        Add { n: u64 },
        Reset,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
    enum CounterEvent {
        Added { n: u64 },
        WasReset,
    }

    impl crate::Aggregate for Counter {
        const NAME: &'static str = "Counter";
        type Command = CounterCommand;
        type Event = CounterEvent;
        fn handle(&self, _: &Context, _: CounterCommand) -> Result<Vec<CounterEvent>, Rejection> {
            Ok(vec![])
        }
        fn apply(&mut self, _: &CounterEvent) {}
    }

    /// Only `Added`.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum AddedOnly {
        Added { n: u64 },
    }

    crate::messages! {
        #[derive(Debug, Clone, PartialEq)]
        enum Adds { Counter(AddedOnly) of Counter }
    }

    crate::messages! {
        #[derive(Debug, Clone, PartialEq)]
        enum Counts { Counter(CounterEvent) of Counter }
    }

    crate::messages! {
        #[derive(Debug, Clone, PartialEq)]
        enum Orders { Counter(CounterCommand) of Counter }
    }

    /// Mirrors each addition to `<actor>-mirror`; a refused one is reset.
    struct Mirror;

    impl Policy for Mirror {
        const NAME: &'static str = "Mirror";
        type Event = Adds;
        type Command = Orders;
        fn react(event: &Envelope<Adds>) -> Vec<SendCommand<Orders>> {
            let Adds::Counter(AddedOnly::Added { n }) = event.event;
            vec![SendCommand::to(format!("{}-mirror", event.actor_id), CounterCommand::Add { n })]
        }
        fn rejected(rejected: &Rejected<Orders>) -> Vec<SendCommand<Orders>> {
            vec![SendCommand::to(rejected.sent.to.clone(), CounterCommand::Reset)]
        }
    }

    /// The sum of each counter's additions; a reset deletes the row.
    struct Sums;

    impl ReadModel for Sums {
        const NAME: &'static str = "Sums";
        type Event = Counts;
        type Row = u64;
        fn keys(event: &Envelope<Counts>) -> Vec<String> {
            vec![event.actor_id.clone()]
        }
        fn fold(_: &str, row: Option<u64>, event: &Envelope<Counts>) -> Option<u64> {
            match event.event {
                Counts::Counter(CounterEvent::Added { n }) => Some(row.unwrap_or(0) + n),
                Counts::Counter(CounterEvent::WasReset) => None,
            }
        }
    }

    fn stored(actor: &str, event: &CounterEvent) -> wit::StoredEvent {
        let (name, payload) = codec::split(event).unwrap();
        wit::StoredEvent {
            aggregate: "Counter".into(),
            actor_id: actor.into(),
            version: 1,
            name,
            payload,
            timestamp_ms: 0,
            command_id: "c".into(),
            correlation_id: "c".into(),
        }
    }

    #[test]
    fn the_model_lists_the_narrower_set() {
        assert_eq!(PolicyModel::of::<Mirror>().reacts_to, ["Counter.Added"]);
        assert_eq!(PolicyModel::of::<Mirror>().sends, ["Counter.Add", "Counter.Reset"]);
        assert_eq!(ReadModelModel::of::<Sums>().consumes, ["Counter.Added", "Counter.WasReset"]);
    }

    #[test]
    fn react_answers_each_input_on_its_own() {
        let registry = [PolicyRegistration::of::<Mirror>()];
        let mut garbled = stored("a", &CounterEvent::Added { n: 1 });
        garbled.payload = vec![0xc1];
        let inputs = vec![
            wit::PolicyInput::Event(stored("a", &CounterEvent::Added { n: 2 })),
            wit::PolicyInput::Event(stored("a", &CounterEvent::WasReset)),
            wit::PolicyInput::Event(garbled),
        ];
        let reactions = react(&registry, "Mirror", inputs).unwrap();
        let sent = reactions[0].as_ref().unwrap();
        assert_eq!((sent[0].aggregate.as_str(), sent[0].actor_id.as_str()), ("Counter", "a-mirror"));
        assert_eq!(
            codec::join::<CounterCommand>(&sent[0].command.name, &sent[0].command.payload).unwrap(),
            CounterCommand::Add { n: 2 }
        );
        assert!(
            matches!(&reactions[1], Err(wit::GuestError::UnexpectedEvent(e)) if e == "Counter.WasReset"),
            "{:?}",
            reactions[1]
        );
        assert!(matches!(&reactions[2], Err(wit::GuestError::Undecodable(_))), "{:?}", reactions[2]);
        assert!(matches!(react(&registry, "Nope", vec![]), Err(wit::GuestError::UnknownPolicy(p)) if p == "Nope"));
    }

    #[test]
    fn a_rejection_is_offered_back_typed() {
        let registry = [PolicyRegistration::of::<Mirror>()];
        let (name, payload) = codec::split(&CounterCommand::Add { n: 2 }).unwrap();
        let rejected = wit::RejectedCommand {
            command: wit::CommandToSend {
                aggregate: "Counter".into(),
                actor_id: "a-mirror".into(),
                command: wit::Message { name, payload },
            },
            command_id: "sent-1".into(),
            rejection: wit::Rejection { code: "full".into(), message: "no room".into() },
            timestamp_ms: 5,
        };
        let reactions = react(&registry, "Mirror", vec![wit::PolicyInput::Rejected(rejected)]).unwrap();
        let sent = reactions[0].as_ref().unwrap();
        assert_eq!((sent[0].actor_id.as_str(), sent[0].command.name.as_str()), ("a-mirror", "Reset"));
    }

    #[test]
    fn fold_carries_a_row_through_a_batch_and_none_deletes_it() {
        let registry = [ReadModelRegistration::of::<Sums>()];
        let adds = vec![stored("a", &CounterEvent::Added { n: 2 }), stored("a", &CounterEvent::Added { n: 3 })];
        let keys = keys(&registry, "Sums", adds.clone()).unwrap();
        assert_eq!(keys.into_iter().map(Result::unwrap).collect::<Vec<_>>(), [["a"], ["a"]]);
        let row = fold(&registry, "Sums", "a", Some(codec::encode_named(&10u64)), adds).unwrap().unwrap();
        assert_eq!(rmp_serde::from_slice::<u64>(&row).unwrap(), 15);
        assert_eq!(fold(&registry, "Sums", "a", Some(row), vec![stored("a", &CounterEvent::WasReset)]).unwrap(), None);
        let bad_row = fold(&registry, "Sums", "a", Some(vec![0xc1]), vec![]).unwrap_err();
        assert!(
            matches!(&bad_row.error, wit::GuestError::Undecodable(why) if why.contains("the row under `a`")),
            "{bad_row:?}"
        );
        let unknown = fold(&registry, "Nope", "a", None, vec![]).unwrap_err();
        assert!(matches!(unknown.error, wit::GuestError::UnknownReadModel(_)));
    }

    #[test]
    fn native_scenarios_match_the_component() {
        policy::<Mirror>()
            .given::<Counter>("a", [CounterEvent::Added { n: 1 }, CounterEvent::WasReset])
            .then_expect_commands([SendCommand::to("a-mirror", CounterCommand::Add { n: 1 })]);
        read_model::<Sums>()
            .given::<Counter>("a", [CounterEvent::Added { n: 1 }, CounterEvent::Added { n: 2 }])
            .given::<Counter>("b", [CounterEvent::Added { n: 5 }, CounterEvent::WasReset])
            .then_expect_rows([("a", 3)]);
    }

    /// Names an event `Counter` does not have.
    #[derive(Debug, Serialize, Deserialize)]
    enum Misnamed {
        Subtracted { n: u64 },
    }

    crate::messages! {
        #[derive(Debug)]
        enum MisnamedSet { Counter(Misnamed) of Counter }
    }

    struct Confused;

    impl Policy for Confused {
        const NAME: &'static str = "Confused";
        type Event = MisnamedSet;
        type Command = Orders;
        fn react(_: &Envelope<MisnamedSet>) -> Vec<SendCommand<Orders>> {
            Vec::new()
        }
    }

    #[test]
    #[should_panic(expected = "`Confused` reacts to `Counter.Subtracted`, which is not an event of `Counter`")]
    fn a_policy_naming_an_event_its_aggregate_lacks_fails_natively() {
        policy::<Confused>();
    }

    /// `Add` with a field of the wrong type.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Drifted {
        Add { n: String },
    }

    crate::messages! {
        #[derive(Debug, PartialEq)]
        enum DriftedSet { Counter(Drifted) of Counter }
    }

    struct Drifter;

    impl Policy for Drifter {
        const NAME: &'static str = "Drifter";
        type Event = Adds;
        type Command = DriftedSet;
        fn react(_: &Envelope<Adds>) -> Vec<SendCommand<DriftedSet>> {
            vec![SendCommand::to("a", Drifted::Add { n: "one".into() })]
        }
    }

    #[test]
    #[should_panic(expected = "policy `Drifter` sends `Counter.Add`, which `Counter` cannot decode")]
    fn a_command_that_drifted_from_its_aggregate_fails_natively() {
        policy::<Drifter>().given::<Counter>("a", [CounterEvent::Added { n: 1 }]);
    }
}
