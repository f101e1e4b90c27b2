//! The in-memory event store: for tests and benchmarks, gone with the process.
//!
//! Streams are spread over a fixed number of shards, each behind its own
//! mutex, so commands to different actors rarely contend. The lock is a
//! `std` mutex held only for map operations, never across an `.await`.
//! Maps hash with foldhash rather than SipHash: in the benchmarks the store
//! sits on every command's path, and SipHash over two ids per lookup was a
//! tenth of the time spent.
//!
//! Only command ids a caller chose are indexed (see
//! [`AppendRequest::id_from_caller`]): an id the host minted names no other
//! command, and the one repeat it can see, the same append again, is the
//! stream's last command, found at its tail. As on JetStream, which keeps
//! no de-duplication entry for such an id either.

use super::{
    ActorId, AppendRequest, Appended, EventStore, LoggedCommand, Provenance, RecordedEvent, Snapshot, StoreError,
};
use async_trait::async_trait;
use foldhash::fast::RandomState;
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

const SHARDS: usize = 64;

/// An event store in memory.
#[derive(Debug)]
pub struct MemoryStore {
    shards: Vec<Mutex<HashMap<ActorId, Stream, RandomState>>>,
    hasher: RandomState,
    /// Every append with events, in the order taken: position `i + 1` is
    /// `log[i]`. Pushed while the actor's shard is locked (shard, then log:
    /// the one lock order), so one actor's commands enter it in version order.
    log: Mutex<Log>,
}

/// The log in chunks of fixed size: a push never moves what is there (a
/// single `Vec` of millions of entries copied itself whole, under the lock,
/// each time it grew).
#[derive(Debug, Default)]
struct Log {
    chunks: Vec<Vec<LogEntry>>,
    len: usize,
}

const LOG_CHUNK: usize = 1 << 14;

impl Log {
    fn push(&mut self, entry: LogEntry) {
        if self.chunks.last().is_none_or(|c| c.len() == LOG_CHUNK) {
            self.chunks.push(Vec::with_capacity(LOG_CHUNK));
        }
        self.chunks.last_mut().expect("pushed above").push(entry);
        self.len += 1;
    }

    fn get(&self, i: usize) -> &LogEntry {
        &self.chunks[i / LOG_CHUNK][i % LOG_CHUNK]
    }
}

/// Where a command's events sit: the actor and their versions.
#[derive(Debug)]
struct LogEntry {
    /// Shared with the stream: a log entry allocates nothing.
    actor: Arc<ActorId>,
    first_version: u64,
    last_version: u64,
}

#[derive(Debug, Default)]
struct Stream {
    events: Vec<RecordedEvent>,
    /// The commands whose ids their callers chose.
    commands: HashMap<CommandKey, Appended, RandomState>,
    /// Boxed: most streams have none, and every stream would carry its size.
    snapshot: Option<Box<Snapshot>>,
    /// The actor's id as the log's entries share it, made at its first entry.
    logged_as: Option<Arc<ActorId>>,
}

impl Stream {
    /// Where the command with this id put its events, if the stream has it.
    fn command(&self, id: &str) -> Option<Appended> {
        let indexed = if self.commands.is_empty() { None } else { self.commands.get(id) };
        indexed.copied().or_else(|| self.last_command(id))
    }

    /// The versions of the stream's last command if it has this id.
    fn last_command(&self, id: &str) -> Option<Appended> {
        let last = self.events.last().filter(|e| *e.provenance.command_id == *id)?;
        let events = self.events.iter().rev().take_while(|e| Arc::ptr_eq(&e.provenance, &last.provenance)).count();
        Some(Appended {
            first_version: last.version + 1 - events as u64,
            last_version: last.version,
            duplicate: false,
            position: 0,
        })
    }
}

/// A command id, held through the provenance the command's events already
/// share rather than copied once more per command.
#[derive(Debug)]
struct CommandKey(Arc<Provenance>);

impl PartialEq for CommandKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.command_id == other.0.command_id
    }
}

impl Eq for CommandKey {}

impl Hash for CommandKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, so that a lookup by `&str` finds it.
        self.0.command_id.hash(state);
    }
}

impl Borrow<str> for CommandKey {
    fn borrow(&self) -> &str {
        &self.0.command_id
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::default(),
            log: Mutex::default(),
        }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        // Every mutation is one push: a poisoned lock is safe to keep using.
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn shard(&self, actor: &ActorId) -> std::sync::MutexGuard<'_, HashMap<ActorId, Stream, RandomState>> {
        // A panic while holding the lock cannot leave a stream half-written
        // (every mutation is a single push/insert), so a poisoned lock is safe
        // to keep using.
        self.shards[self.hasher.hash_one(actor) as usize % SHARDS].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the actor's stream, creating it: for writes.
    fn with_stream<R>(&self, actor: &ActorId, f: impl FnOnce(&mut Stream) -> R) -> R {
        let mut map = self.shard(actor);
        if let Some(stream) = map.get_mut(actor) {
            return f(stream);
        }
        f(map.entry(actor.clone()).or_default())
    }

    /// Runs `f` on the actor's stream if it exists: for reads, which must not
    /// leave an empty stream behind for every id ever asked about.
    fn read_stream<R>(&self, actor: &ActorId, f: impl FnOnce(&Stream) -> R) -> Option<R> {
        self.shard(actor).get(actor).map(f)
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append(&self, actor: &ActorId, request: AppendRequest) -> Result<Appended, StoreError> {
        if request.events.is_empty() && !request.id_from_caller {
            return Err(StoreError::Invalid { actor: actor.clone(), reason: super::NOTHING_TO_RECORD.into() });
        }
        self.with_stream(actor, |stream| {
            if let Some(original) = stream.command(&request.provenance.command_id) {
                return Ok(Appended { duplicate: true, position: 0, ..original });
            }
            let actual = stream.events.len() as u64;
            if actual != request.expected_version {
                return Err(StoreError::Conflict { actor: actor.clone(), expected: request.expected_version, actual });
            }
            let provenance = request.provenance;
            let first_version = actual + 1;
            if request.events.is_empty() {
                // Accepted with no events: recorded, the version unmoved.
                let recorded = Appended { first_version, last_version: actual, duplicate: false, position: 0 };
                stream.commands.insert(CommandKey(provenance), Appended { duplicate: true, ..recorded });
                return Ok(recorded);
            }
            if stream.events.is_empty() {
                // Many streams hold a command or two: room for the first
                // command's events only, rather than four events at least.
                stream.events.reserve_exact(request.events.len());
            }
            for (i, event) in request.events.into_iter().enumerate() {
                stream.events.push(RecordedEvent {
                    version: first_version + i as u64,
                    name: event.name,
                    payload: event.payload,
                    provenance: provenance.clone(),
                });
            }
            let last_version = stream.events.len() as u64;
            let position = {
                let mut log = self.log();
                let logged_as = stream.logged_as.get_or_insert_with(|| Arc::new(actor.clone())).clone();
                log.push(LogEntry { actor: logged_as, first_version, last_version });
                log.len as u64
            };
            let appended = Appended { first_version, last_version, duplicate: false, position };
            if request.id_from_caller {
                stream.commands.insert(CommandKey(provenance), appended);
            }
            Ok(appended)
        })
    }

    async fn read(&self, actor: &ActorId, after: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(self
            .read_stream(actor, |stream| {
                let start = (after as usize).min(stream.events.len());
                let end = start.saturating_add(max.max(1)).min(stream.events.len());
                stream.events[start..end].to_vec()
            })
            .unwrap_or_default())
    }

    async fn version(&self, actor: &ActorId) -> Result<u64, StoreError> {
        Ok(self.read_stream(actor, |s| s.events.len() as u64).unwrap_or(0))
    }

    async fn find_command(&self, actor: &ActorId, command_id: &str) -> Result<Option<Appended>, StoreError> {
        Ok(self
            .read_stream(actor, |s| s.command(command_id).map(|a| Appended { duplicate: true, position: 0, ..a }))
            .flatten())
    }

    async fn load_snapshot(&self, actor: &ActorId) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.read_stream(actor, |s| s.snapshot.as_deref().cloned()).flatten())
    }

    async fn save_snapshot(&self, actor: &ActorId, snapshot: Snapshot) -> Result<(), StoreError> {
        self.with_stream(actor, |s| {
            if s.snapshot.as_ref().is_none_or(|old| old.version < snapshot.version) {
                s.snapshot = Some(Box::new(snapshot));
            }
        });
        Ok(())
    }

    async fn actors(&self, aggregate: Option<&str>) -> Result<Vec<ActorId>, StoreError> {
        let mut actors = Vec::new();
        for shard in &self.shards {
            let map = shard.lock().unwrap_or_else(|e| e.into_inner());
            let held = map.iter().filter(|(_, stream)| !stream.events.is_empty()).map(|(actor, _)| actor);
            actors.extend(held.filter(|a| aggregate.is_none_or(|g| a.aggregate == g)).cloned());
        }
        actors.sort();
        Ok(actors)
    }

    async fn read_log(&self, after: u64, max: usize) -> Result<Vec<LoggedCommand>, StoreError> {
        let entries: Vec<(u64, Arc<ActorId>, u64, u64)> = {
            let log = self.log();
            let start = usize::try_from(after).unwrap_or(usize::MAX).min(log.len);
            let end = start.saturating_add(max.max(1)).min(log.len);
            (start..end)
                .map(|i| {
                    let e = log.get(i);
                    (i as u64 + 1, e.actor.clone(), e.first_version, e.last_version)
                })
                .collect()
        };
        Ok(entries
            .into_iter()
            .map(|(position, actor, first, last)| {
                let events = self
                    .read_stream(&actor, |s| s.events[(first - 1) as usize..last as usize].to_vec())
                    .unwrap_or_default();
                LoggedCommand { position, actor: Arc::unwrap_or_clone(actor), events }
            })
            .collect())
    }

    async fn log_head(&self) -> Result<u64, StoreError> {
        Ok(self.log().len as u64)
    }
}
