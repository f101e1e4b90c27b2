//! The aggregate trait and what `handle` sees.

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An event-sourced aggregate: decides commands, folds events.
///
/// `handle` decides and must not change state; `apply` folds and must not
/// fail. In a component the SDK folds the events `handle` returns (encoded
/// and decoded back, exactly as replay will read them) in the same call, and
/// the host keeps that state only once the events are durable: if the append
/// fails, the instance is discarded and rebuilt from the store. Both must be
/// deterministic: the same events always give the same state. The clock and
/// randomness are deterministic for them: `handle` reads the command's
/// recorded time and a seed from the actor and its version; `apply` reads
/// the event's recorded time and a seed from the actor and the event's
/// version, the same as it is decided and on every replay, in any batch.
///
/// The state is serialised (MessagePack, field names kept) for snapshots and
/// for inspection; override [`snapshot`](Aggregate::snapshot) and
/// [`restore`](Aggregate::restore) to use another snapshot format.
pub trait Aggregate: Default + Serialize + DeserializeOwned + JsonSchema + 'static {
    /// The aggregate's name in the model, e.g. `"Account"`.
    const NAME: &'static str;
    /// The commands, an enum whose variants are the command names.
    type Command: Serialize + DeserializeOwned + JsonSchema;
    /// The events, an enum whose variants are the event names (past tense).
    type Event: Serialize + DeserializeOwned + JsonSchema;

    /// Decides a command against the current state.
    ///
    /// # Errors
    ///
    /// A [`Rejection`] refuses the command; nothing is appended.
    fn handle(&self, ctx: &Context, command: Self::Command) -> Result<Vec<Self::Event>, Rejection>;

    /// Folds one event into the state.
    fn apply(&mut self, event: &Self::Event);

    /// The state as snapshot bytes. Defaults to MessagePack of `Self`.
    fn snapshot(&self) -> Vec<u8> {
        crate::codec::encode_named(self)
    }

    /// The state from snapshot bytes. Defaults to MessagePack of `Self`.
    ///
    /// # Errors
    ///
    /// A message naming why the bytes do not decode.
    fn restore(bytes: &[u8]) -> Result<Self, String> {
        rmp_serde::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// What the host records about the command being decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// The actor's id (the aggregate instance).
    pub actor_id: String,
    /// The command's id; a repeated id is answered from the store.
    pub command_id: String,
    /// The id shared by everything one request caused.
    pub correlation_id: String,
    /// The id of the message that caused this command.
    pub causation_id: String,
    /// The command's recorded time, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The number of events the actor had before this command.
    pub version: u64,
}

/// A business rejection: a command the aggregate refuses. Nothing is appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// A stable, machine-readable code, e.g. `"insufficient-funds"`.
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

impl Rejection {
    /// A rejection with a code and a message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into() }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Rejection {}
