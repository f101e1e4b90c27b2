//! Calls into a guest's policies: a VM that serves one policy, and the
//! model's word on what it may send.
//!
//! The host, not the guest, is the guard: every command a reaction returns
//! is checked against the policy's `sends` before anyone may act on it, and
//! a reaction with an undeclared command is a fault of that input.

use super::bindings::aether::domain::types as wit;
use super::instance::{GuestFault, GuestInstance, refused};
use crate::actor::msgpack::check_one_value;
use crate::model::PolicyModel;
use crate::store::{ActorId, RecordedEvent};

/// A stored event with the actor that recorded it, as policies and read
/// models are given it.
#[derive(Debug, Clone, Copy)]
pub struct LoggedEvent<'a> {
    pub actor: &'a ActorId,
    pub event: &'a RecordedEvent,
}

/// What a policy is given: an event from the log, or the rejection of a
/// command it sent.
#[derive(Debug, Clone, Copy)]
pub enum PolicyInput<'a> {
    Event(LoggedEvent<'a>),
    Rejected(&'a RejectedCommand),
}

/// A command a policy sends. The runner gives it an id derived from the
/// policy and the input that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandToSend {
    pub aggregate: String,
    pub actor_id: String,
    pub command: String,
    /// MessagePack.
    pub payload: Vec<u8>,
}

/// A command a policy sent that its target rejected, recorded by the runner
/// and offered back to the policy once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedCommand {
    pub command: CommandToSend,
    pub command_id: String,
    pub code: String,
    pub message: String,
    /// When it was rejected, ms since the Unix epoch.
    pub timestamp_ms: u64,
}

/// What a policy sends in reply to one input, or the fault of that input
/// alone (park it, go on with the others).
pub type Reaction = Result<Vec<CommandToSend>, GuestFault>;

/// A VM serving one policy. Policies are stateless: after a fault, drop it
/// and make another.
#[derive(Debug)]
pub struct PolicyVm {
    vm: GuestInstance,
    policy: PolicyModel,
}

impl PolicyVm {
    pub(super) fn new(mut vm: GuestInstance, policy: PolicyModel) -> Self {
        vm.seed_for(&format!("policy/{}", policy.name));
        Self { vm, policy }
    }

    /// The policy as the model declares it.
    pub fn model(&self) -> &PolicyModel {
        &self.policy
    }

    /// The VM, to place it or to have every input announced (as for an actor).
    #[allow(dead_code)] // for the runners that host policies and read models
    pub(crate) fn vm(&mut self) -> &mut GuestInstance {
        &mut self.vm
    }

    /// The commands to send for each input, one reaction per input, in
    /// order, in one call. Each input reads its own recorded time and
    /// randomness seeded from the policy and its version, whatever the batch.
    ///
    /// # Errors
    ///
    /// A fault of the whole call (a trap, a timeout, a refused policy, a
    /// reaction count other than the inputs'): retry the inputs one by one
    /// to find the one at fault. A reaction with a command the policy does
    /// not declare, or whose payload is not one MessagePack value, is the
    /// fault of its input ([`GuestFault::InvalidOutput`] naming it).
    pub fn react(&mut self, inputs: &[PolicyInput<'_>]) -> Result<Vec<Reaction>, GuestFault> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let wit_inputs: Vec<wit::PolicyInput> = inputs.iter().map(to_wit).collect();
        let stored = inputs.iter().map(|input| match input {
            PolicyInput::Event(e) => (e.event.provenance.timestamp_ms, e.event.version),
            PolicyInput::Rejected(r) => (r.timestamp_ms, 0),
        });
        let name = self.policy.name.as_str();
        let out = self.vm.call_with(
            "react",
            |sandbox| sandbox.prepare_replay(stored),
            |b, s| b.aether_domain_policy().call_react(s, name, &wit_inputs),
        )?;
        let reactions = out.map_err(|e| refused("react", e))?;
        if reactions.len() != inputs.len() {
            return Err(GuestFault::InvalidOutput {
                call: "react",
                reason: format!("{} reactions to {} inputs", reactions.len(), inputs.len()),
            });
        }
        Ok(reactions
            .into_iter()
            .map(|reaction| {
                let commands = reaction.map_err(|e| refused("react", e))?;
                commands.into_iter().map(|c| self.checked(c)).collect()
            })
            .collect())
    }

    /// A command the guest returned, if the policy may send it (invariant:
    /// policies-send-what-they-declare).
    fn checked(&self, c: wit::CommandToSend) -> Result<CommandToSend, GuestFault> {
        let (aggregate, command) = (&c.aggregate, &c.command.name);
        if !self.policy.may_send(aggregate, command) {
            return Err(GuestFault::InvalidOutput {
                call: "react",
                reason: format!(
                    "policy `{}` sent `{aggregate}.{command}`, which it does not declare (it may send: {})",
                    self.policy.name,
                    self.policy.sends.join(", ")
                ),
            });
        }
        check_one_value(&c.command.payload).map_err(|m| GuestFault::InvalidOutput {
            call: "react",
            reason: format!("policy `{}` sent `{aggregate}.{command}` with a payload that is {m}", self.policy.name),
        })?;
        Ok(CommandToSend {
            aggregate: c.aggregate,
            actor_id: c.actor_id,
            command: c.command.name,
            payload: c.command.payload,
        })
    }
}

/// A logged event in the contract's types.
pub(super) fn stored_event(e: &LoggedEvent<'_>) -> wit::StoredEvent {
    wit::StoredEvent {
        aggregate: e.actor.aggregate.clone(),
        actor_id: e.actor.id.clone(),
        version: e.event.version,
        name: e.event.name.clone(),
        payload: e.event.payload.clone(),
        timestamp_ms: e.event.provenance.timestamp_ms,
        command_id: e.event.provenance.command_id.to_string(),
        correlation_id: e.event.provenance.correlation_id.to_string(),
    }
}

fn to_wit(input: &PolicyInput<'_>) -> wit::PolicyInput {
    match input {
        PolicyInput::Event(e) => wit::PolicyInput::Event(stored_event(e)),
        PolicyInput::Rejected(r) => wit::PolicyInput::Rejected(wit::RejectedCommand {
            command: wit::CommandToSend {
                aggregate: r.command.aggregate.clone(),
                actor_id: r.command.actor_id.clone(),
                command: wit::Message { name: r.command.command.clone(), payload: r.command.payload.clone() },
            },
            command_id: r.command_id.clone(),
            rejection: wit::Rejection { code: r.code.clone(), message: r.message.clone() },
            timestamp_ms: r.timestamp_ms,
        }),
    }
}
