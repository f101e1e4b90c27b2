//! Typed commands: [`Runtime::execute_typed`] takes a command as a Rust
//! value and answers its events as values, where [`Runtime::execute`]
//! speaks names and MessagePack.
//!
//! Values are in the guest SDK's shape, encoded by the same code the guest
//! decodes with (`aether-codec`): an enum whose variant is the message's
//! name and whose fields are its payload. An embedder that depends on a
//! domain crate natively (as its tests do) can use that crate's command and
//! event types as they are.

use crate::actor::{ActorError, CommandOutcome};
use crate::runtime::{CommandRequest, Runtime};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// A command's answer with its events decoded: [`CommandOutcome`], typed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decided<E> {
    /// The events are durable (see [`CommandOutcome::Accepted`]).
    Accepted { version: u64, events: Vec<E>, duplicate: bool, command_id: Arc<str>, position: u64 },
    /// A business rejection: nothing was appended.
    Rejected { code: String, message: String },
}

/// Why a typed command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TypedError {
    /// The command is not an enum variant (a name with a payload).
    #[error("the command does not encode as a message: {0}")]
    Encode(String),
    /// The command failed as [`Runtime::execute`] fails.
    #[error(transparent)]
    Actor(#[from] ActorError),
    /// An event of the answer does not decode as the type asked for: the
    /// command was accepted and its events are stored all the same.
    #[error("event {version} (`{name}`) does not decode: {reason}")]
    Decode { version: u64, name: String, reason: String },
}

impl CommandRequest {
    /// A request for `command`, an enum value in the guest SDK's shape, to
    /// the actor `aggregate`/`id`, with a fresh command id.
    ///
    /// # Errors
    ///
    /// [`TypedError::Encode`] if `command` is not an enum variant.
    pub fn typed<C: Serialize>(aggregate: &str, id: &str, command: &C) -> Result<Self, TypedError> {
        let (command, payload) = aether_codec::split(command).map_err(TypedError::Encode)?;
        Ok(Self { aggregate: aggregate.into(), id: id.into(), command, payload, ..Self::default() })
    }
}

impl<E: DeserializeOwned> Decided<E> {
    /// Decodes the events of an answer.
    ///
    /// # Errors
    ///
    /// [`TypedError::Decode`] naming the first event that does not decode as `E`.
    pub fn decode(outcome: CommandOutcome) -> Result<Self, TypedError> {
        Ok(match outcome {
            CommandOutcome::Accepted { version, events, duplicate, command_id, position } => Decided::Accepted {
                version,
                events: events
                    .iter()
                    .map(|e| {
                        aether_codec::join(&e.name, &e.payload).map_err(|reason| TypedError::Decode {
                            version: e.version,
                            name: e.name.clone(),
                            reason,
                        })
                    })
                    .collect::<Result<_, _>>()?,
                duplicate,
                command_id,
                position,
            },
            CommandOutcome::Rejected { code, message, .. } => Decided::Rejected { code, message },
        })
    }
}

impl Runtime {
    /// Executes `command`, an enum value in the guest SDK's shape, on the
    /// actor `aggregate`/`id`, and decodes the events of the answer as `E`.
    /// For a command id, correlation or causation of your own, build the
    /// request with [`CommandRequest::typed`] and decode the answer of
    /// [`execute`](Self::execute) with [`Decided::decode`].
    ///
    /// ```no_run
    /// # async fn example(runtime: aether_host::Runtime) -> Result<(), aether_host::TypedError> {
    /// #[derive(serde::Serialize)]
    /// enum AccountCommand { Deposit { amount: u64 } }
    /// #[derive(serde::Deserialize)]
    /// enum AccountEvent { Deposited { amount: u64 } }
    ///
    /// let _answer = runtime
    ///     .execute_typed::<_, AccountEvent>("Account", "acc-1", &AccountCommand::Deposit { amount: 5 })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute) ([`TypedError::Actor`]), and if the
    /// command does not encode or an event does not decode.
    pub async fn execute_typed<C: Serialize, E: DeserializeOwned>(
        &self,
        aggregate: &str,
        id: &str,
        command: &C,
    ) -> Result<Decided<E>, TypedError> {
        let outcome = self.execute(CommandRequest::typed(aggregate, id, command)?).await?;
        Decided::decode(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::Decided;
    use crate::runtime::{Runtime, RuntimeConfig};
    use crate::store::MemoryStore;
    use bank::{AccountCommand, AccountEvent};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_typed_command_answers_typed_events_and_rejections() {
        let runtime = Runtime::new(crate::testkit::bank(), Arc::new(MemoryStore::new()), RuntimeConfig::default());
        let open = AccountCommand::Open { owner: "ada".into() };
        let opened = runtime.execute_typed::<_, AccountEvent>("Account", "typed", &open).await.unwrap();
        assert!(
            matches!(&opened, Decided::Accepted { version: 1, events, duplicate: false, .. }
                if events == &[AccountEvent::Opened { owner: "ada".into() }]),
            "{opened:?}"
        );
        let overdraw = AccountCommand::Withdraw { amount: 1_000 };
        let refused = runtime.execute_typed::<_, AccountEvent>("Account", "typed", &overdraw).await.unwrap();
        assert!(matches!(refused, Decided::Rejected { .. }), "{refused:?}");
        let not_a_variant = runtime.execute_typed::<_, AccountEvent>("Account", "typed", &5_u32).await;
        assert!(matches!(not_a_variant, Err(super::TypedError::Encode(_))), "{not_a_variant:?}");
    }
}
