//! Where events live: the [`EventStore`] trait and its implementations.
//!
//! An actor's events form one stream, numbered from version 1. A command's
//! events are appended together, atomically, with the version the actor had
//! when it decided them (optimistic concurrency) and the command id
//! (idempotency). The shape follows JetStream: one message per command on a
//! per-actor subject, `Nats-Expected-Last-Subject-Sequence` for the expected
//! version, and a command index for the ids callers chose; a file store keeps
//! the same contract with a table per concern.
//!
//! Layout:
//! - [`memory`]: the in-memory store for tests and benchmarks.
//! - [`embedded`]: the crash-safe file store (redb) for one machine.
//! - [`jetstream`]: NATS JetStream, for hosts that share actors over a cluster.
//!
//! The behaviour every store must show is checked by the `aether-testkit`
//! crate's `contract` module, against each store.

pub mod embedded;
pub mod jetstream;
pub mod memory;
mod wire;

pub use embedded::EmbeddedStore;
pub use jetstream::{JetStreamConfig, JetStreamEventStore};
pub use memory::MemoryStore;

use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;

/// An actor's identity: aggregate type and id. One event stream each.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActorId {
    pub aggregate: String,
    pub id: String,
}

impl ActorId {
    pub fn new(aggregate: impl Into<String>, id: impl Into<String>) -> Self {
        Self { aggregate: aggregate.into(), id: id.into() }
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.aggregate, self.id)
    }
}

/// Where an event came from (invariant: provenance). Shared by all events of a command.
///
/// The ids are shared strings: a command that starts its own conversation
/// is its own correlation and causation, and every command of a runtime
/// names the same component, so a command allocates one id, not four.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Provenance {
    /// The command that produced the event; also the de-duplication key.
    pub command_id: Arc<str>,
    /// The id shared by everything one request caused.
    pub correlation_id: Arc<str>,
    /// The id of the message that caused the command.
    pub causation_id: Arc<str>,
    /// When the command was accepted, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// SHA-256 (hex) of the component that decided the event.
    pub component_hash: Arc<str>,
    /// The command itself, so that it can be decided again against the
    /// state before it (`aether-host verify`). `None` for commands stored
    /// before commands were recorded, or by a host told not to record them
    /// (`ActorConfig::record_commands`): those are not re-decidable. Not
    /// serialised with the provenance (the API's events and bus envelopes
    /// carry ids and time, not payloads the caller sent).
    #[serde(skip)]
    pub command: Option<RecordedCommand>,
}

/// A command as it was decided: its name and MessagePack payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCommand {
    pub name: String,
    /// MessagePack.
    pub payload: Vec<u8>,
}

/// A new event, as `handle` produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub name: String,
    /// MessagePack.
    pub payload: Vec<u8>,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// 1 for the actor's first event.
    pub version: u64,
    pub name: String,
    /// MessagePack.
    pub payload: Vec<u8>,
    pub provenance: Arc<Provenance>,
}

/// One command's events, to append atomically.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    /// The actor's version when the command was decided; the append fails
    /// with [`StoreError::Conflict`] if the stream has moved on.
    pub expected_version: u64,
    /// Shared with the events once recorded: one command, one provenance.
    pub provenance: Arc<Provenance>,
    /// The command's events. Empty only for a command accepted with no
    /// events whose id the caller chose: the store then records the command
    /// id at `expected_version` without moving the version, so a retry is
    /// answered as a duplicate (an empty [`Appended`] range).
    pub events: Vec<NewEvent>,
    /// The caller chose the command id, so it may name a command appended
    /// before (a retry reuses its id). An id the host minted for this
    /// command (a fresh random UUID) names no earlier append, and a store
    /// may spare the work that guards against repeats: the JetStream store
    /// then asks the server for no de-duplication entry. Either way a
    /// store answers a repeat it meets as a duplicate.
    pub id_from_caller: bool,
    /// In a cluster: the epoch of the shard map under which the appending
    /// node served the actor's shard. The JetStream store records it in the
    /// `Aether-Epoch` header; stores of one host have no epochs.
    pub shard_epoch: Option<u64>,
}

/// The versions a command's events occupy: `first_version..=last_version`.
/// A command recorded with no events has the empty range
/// `first_version == last_version + 1`, `last_version` being the version it
/// was accepted at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub first_version: u64,
    pub last_version: u64,
    /// True if the command id had been appended before: nothing was written
    /// and the versions are those of the original append.
    pub duplicate: bool,
    /// Where the store's log holds the command's events (see
    /// [`EventStore::read_log`]); 0 when the store cannot tell: a duplicate
    /// found where its position is not kept, or a command with no events.
    pub position: u64,
}

/// One command's events as the store's log of all appends holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedCommand {
    /// Grows with every append that has events; not necessarily by one.
    pub position: u64,
    pub actor: ActorId,
    /// In version order; never empty.
    pub events: Vec<RecordedEvent>,
}

/// A serialised actor state at a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub version: u64,
    /// SHA-256 (hex) of the component that wrote it; a snapshot from another
    /// component is ignored and the actor replays from the start.
    pub component_hash: String,
    pub state: Vec<u8>,
}

/// What a store operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream is not at the expected version: another writer got there
    /// first. Reload and decide again.
    #[error("version conflict on {actor}: expected version {expected}, the stream is at {actual}")]
    Conflict { actor: ActorId, expected: u64, actual: u64 },
    /// Stored data that cannot be read back. Never skipped (invariant: nothing-skipped).
    #[error("corrupt event in {actor} at version {version}: {cause}")]
    Corrupt { actor: ActorId, version: u64, cause: String },
    /// The request itself is invalid, e.g. an empty append.
    #[error("invalid append to {actor}: {reason}")]
    Invalid { actor: ActorId, reason: String },
    /// The store could not be reached or failed underneath.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
}

/// Why an empty append of a minted command id is refused: such an id cannot
/// come again, so there is nothing to record.
pub(crate) const NOTHING_TO_RECORD: &str = "no events, and a command id the host minted needs no record";

impl Appended {
    /// How many events the command appended (0 for one recorded with none).
    pub fn events(&self) -> u64 {
        (self.last_version + 1).saturating_sub(self.first_version)
    }
}

impl StoreError {
    /// True for errors a retry with fresh state may resolve.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }
}

/// An event store: append-only streams with optimistic concurrency,
/// idempotent appends and snapshots.
///
/// Implementations must make [`append`](EventStore::append) atomic per call,
/// check the command id before the expected version (so a retry of a command
/// that was stored answers `duplicate` rather than a conflict), and return
/// events in version order.
///
/// Idempotency holds over the whole history, on every store: a command
/// whose id its caller chose ([`AppendRequest::id_from_caller`]) is found
/// again however old it is, and one accepted with no events is recorded so
/// its retry is found too. A command id the host minted is only ever
/// repeated as the actor's last command (the same append sent again), and a
/// store may find it there only. On JetStream this costs an index message
/// per caller-id command, published before the events (see [`jetstream`]).
#[async_trait]
pub trait EventStore: Send + Sync + fmt::Debug + 'static {
    /// Appends one command's events.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] if the stream is not at `expected_version`
    /// (and the command id is not stored); [`StoreError::Invalid`] for an
    /// empty request with a minted command id.
    async fn append(&self, actor: &ActorId, request: AppendRequest) -> Result<Appended, StoreError>;

    /// Reads events with a version greater than `after`, in order, at most
    /// about `max` of them (a store may return a command's events whole).
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] for an event that cannot be read back.
    async fn read(&self, actor: &ActorId, after: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The stream's current version (0 if it has no events).
    async fn version(&self, actor: &ActorId) -> Result<u64, StoreError>;

    /// Where a command's events were stored, if that command id was appended
    /// (an empty range for one recorded with no events). Cheap on every
    /// store: one lookup (on JetStream two requests, the entry and the
    /// message it names; streams written before the command index may need
    /// a scan of their older messages).
    async fn find_command(&self, actor: &ActorId, command_id: &str) -> Result<Option<Appended>, StoreError>;

    /// The latest snapshot, if any.
    async fn load_snapshot(&self, actor: &ActorId) -> Result<Option<Snapshot>, StoreError>;

    /// Stores a snapshot, replacing an older one.
    async fn save_snapshot(&self, actor: &ActorId, snapshot: Snapshot) -> Result<(), StoreError>;

    /// The actors with stored events (of `aggregate` only, if given), in
    /// order. For tools that walk a whole store (`aether-host verify`),
    /// never on a command's path: it may scan.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the store cannot list its actors (the
    /// default, for stores that wrap another).
    async fn actors(&self, aggregate: Option<&str>) -> Result<Vec<ActorId>, StoreError> {
        let _ = aggregate;
        Err(StoreError::Unavailable(format!("{self:?} cannot list its actors")))
    }

    /// Reads the log of every append, in the order the store took them: the
    /// commands with events at positions greater than `after`, at most
    /// about `max` of them. One actor's commands appear in version order; a
    /// command appears whole, once. This is what policies and read models
    /// consume (never the bus, which may drop).
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] for an entry that cannot be read back;
    /// [`StoreError::Unavailable`] if the store keeps no log (the default,
    /// for stores that wrap another).
    async fn read_log(&self, after: u64, max: usize) -> Result<Vec<LoggedCommand>, StoreError> {
        let _ = (after, max);
        Err(StoreError::Unavailable(format!("{self:?} keeps no log of its appends")))
    }

    /// The position of the newest append in the log (0 if it has none).
    ///
    /// # Errors
    ///
    /// As [`read_log`](Self::read_log).
    async fn log_head(&self) -> Result<u64, StoreError> {
        Err(StoreError::Unavailable(format!("{self:?} keeps no log of its appends")))
    }
}
