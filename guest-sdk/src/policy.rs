//! The policy trait: whenever an event happened, send commands.

use crate::messages::{Envelope, Messages, Rejected, SendCommand};

/// A policy ("whenever X happened, do Y"): reacts to events of one or more
/// aggregates by sending commands to aggregates. Stateless: what it sends
/// depends only on the event (or rejection) it is given, so the host can
/// offer an input again after a crash and derive the same command ids.
///
/// What it reacts to and what it may send are its types: [`Event`] and
/// [`Command`] are sets made by [`messages!`](crate::messages), and the
/// model lists their names. The host refuses a command the model does not
/// list for the policy.
///
/// A saga is a policy with an aggregate of its own: it records the saga's
/// progress by sending that aggregate commands, and compensates in
/// [`rejected`](Policy::rejected) when a step is refused.
///
/// [`Event`]: Policy::Event
/// [`Command`]: Policy::Command
pub trait Policy: 'static {
    /// The policy's name in the model, e.g. `"TransferSaga"`.
    const NAME: &'static str;
    /// The events it reacts to.
    type Event: Messages;
    /// The commands it may send.
    type Command: Messages;

    /// The commands to send because `event` happened.
    fn react(event: &Envelope<Self::Event>) -> Vec<SendCommand<Self::Command>>;

    /// The commands to send because a command this policy sent was rejected
    /// (a rejection is final: the host does not retry it). Defaults to none.
    fn rejected(rejected: &Rejected<Self::Command>) -> Vec<SendCommand<Self::Command>> {
        let _ = rejected;
        Vec::new()
    }
}
