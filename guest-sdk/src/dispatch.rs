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
    fold: fn(&str, Option<Vec<u8>>, Vec<wit::StoredEvent>) -> Result<Option<Vec<u8>>, wit::ApplyError>,
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
    let reg = registry
        .iter()
        .find(|r| r.name == policy)
        .ok_or_else(|| wit::GuestError::UnknownPolicy(policy.to_string()))?;
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
