//! Given/then for a policy against the real `.wasm`: events are stored,
//! offered to the policy in one batch (those it reacts to, as a runner
//! would), and the commands it sends are checked against the model.

use super::TestKit;
use aether_guest::{Messages, SendCommand};
use aether_host::wasm::{CommandToSend, GuestFault, LoggedEvent, PolicyInput, PolicyVm, RejectedCommand};
use serde::Serialize;
use std::fmt::Debug;

/// A policy in a scenario: what it has sent, and the faults of its inputs.
#[derive(Debug)]
pub struct PolicyKit<'a> {
    kit: &'a TestKit,
    vm: PolicyVm,
    sent: Vec<CommandToSend>,
    faults: Vec<GuestFault>,
}

impl<'a> PolicyKit<'a> {
    pub(super) fn new(kit: &'a TestKit, name: &str) -> Self {
        let vm = kit.runtime.component().policy_vm(name).unwrap_or_else(|e| panic!("policy `{name}`: {e}"));
        Self { kit, vm, sent: Vec::new(), faults: Vec::new() }
    }

    /// Stores these events for the actor, then offers the policy those it
    /// reacts to, in one call.
    ///
    /// # Panics
    ///
    /// If an event does not serialise as an enum variant.
    pub async fn given<E: Serialize>(mut self, aggregate: &str, id: &str, events: impl IntoIterator<Item = E>) -> Self {
        let stored = self.kit.store_events(aggregate, id, events).await;
        let actor = aether_host::store::ActorId::new(aggregate, id);
        let inputs: Vec<PolicyInput<'_>> = stored
            .iter()
            .filter(|e| self.vm.model().reacts_to(aggregate, &e.name))
            .map(|event| PolicyInput::Event(LoggedEvent { actor: &actor, event }))
            .collect();
        let reactions = self.vm.react(&inputs);
        self.record(reactions);
        self
    }

    /// A command the policy sent was rejected: offers the policy the rejection.
    ///
    /// # Panics
    ///
    /// If the command does not encode.
    pub fn given_rejected<C: Messages>(mut self, sent: SendCommand<C>, code: &str, message: &str) -> Self {
        let (aggregate, command, payload) = sent.command.encode().unwrap_or_else(|e| panic!("rejected command: {e}"));
        let rejected = RejectedCommand {
            command: CommandToSend { aggregate: aggregate.into(), actor_id: sent.to, command, payload },
            command_id: format!("sent-{}", uuid::Uuid::new_v4()),
            code: code.into(),
            message: message.into(),
            timestamp_ms: 0,
        };
        let reactions = self.vm.react(&[PolicyInput::Rejected(&rejected)]);
        self.record(reactions);
        self
    }

    fn record(&mut self, reactions: Result<Vec<aether_host::wasm::Reaction>, GuestFault>) {
        match reactions {
            Ok(reactions) => {
                for reaction in reactions {
                    match reaction {
                        Ok(commands) => self.sent.extend(commands),
                        Err(fault) => self.faults.push(fault),
                    }
                }
            }
            Err(fault) => self.faults.push(fault),
        }
    }

    /// Asserts the policy sent exactly these commands, and no input faulted.
    ///
    /// # Panics
    ///
    /// If it sent others, or a command does not decode as `C`, or an input faulted.
    pub fn then_expect_commands<C: Messages + PartialEq + Debug>(
        self,
        expected: impl IntoIterator<Item = SendCommand<C>>,
    ) -> Self {
        let name = &self.vm.model().name;
        assert!(self.faults.is_empty(), "policy `{name}` faulted: {:?}", self.faults);
        let sent: Vec<SendCommand<C>> = self
            .sent
            .iter()
            .map(|c| {
                let command = C::decode(&c.aggregate, &c.command, &c.payload)
                    .unwrap_or_else(|e| panic!("`{}.{}` does not decode: {e}", c.aggregate, c.command))
                    .unwrap_or_else(|| panic!("`{}.{}` is not one of the expected type's", c.aggregate, c.command));
                SendCommand { to: c.actor_id.clone(), command }
            })
            .collect();
        let expected: Vec<_> = expected.into_iter().collect();
        assert_eq!(sent, expected, "policy `{name}`: unexpected commands");
        self
    }

    /// Asserts an input faulted with an error whose message contains `text`.
    ///
    /// # Panics
    ///
    /// If none did.
    pub fn then_expect_fault(self, text: &str) -> Self {
        assert!(
            self.faults.iter().any(|f| f.to_string().contains(text)),
            "policy `{}`: no fault mentions {text:?}; faults: {:?}",
            self.vm.model().name,
            self.faults
        );
        self
    }

    /// The commands sent so far, as the host received them.
    pub fn commands(&self) -> &[CommandToSend] {
        &self.sent
    }

    /// The faults so far.
    pub fn faults(&self) -> &[GuestFault] {
        &self.faults
    }
}
