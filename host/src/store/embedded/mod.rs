//! The embedded event store: a write-ahead log and a redb file on local
//! disk, the crash-safe default when the host runs on one machine
//! (`aether-host load model.wasm --data DIR`).
//!
//! It owns the directory `DIR`: `events.redb`, the `wal-<n>.log` files, and
//! the two threads that write them.
//!
//! Durability against throughput: an append returns `Ok` only once it is in
//! the log and the log is synced (fsync), and a crash at any moment loses no
//! answered append and never exposes half of one. Every write (appends and
//! snapshots) goes through a queue to a single writer thread, which takes
//! everything that queued up while the previous sync ran, decides it, and
//! appends it to the log as one checksummed record with one sync (group
//! commit). The decided writes then go to an in-memory tail (the memtable),
//! which readers consult before redb, and are answered.
//!
//! redb receives them later, in checkpoints of tens of thousands of writes
//! made by a second thread, each one durable transaction that also records
//! which log files it covers. Why not commit each batch to redb as before:
//! a redb commit copies, checksums and writes every B-tree page it touches,
//! and with thousands of actors a batch of a thousand appends touches
//! thousands of pages, the writer waiting on the disk. In a checkpoint each
//! page carries many appends, one row per actor holds all of them (see
//! `tables`), and the log writes each append once, sequentially: a quarter
//! of the bytes written per append (`docs/performance.md`, "What each
//! lever bought").
//!
//! On open, log files that redb does not cover are replayed into it; a torn
//! last write (never answered) is cut off, any other damage refuses the open
//! with the file and offset. A value that fails to decode is a
//! [`StoreError::Corrupt`] naming the actor and version; it is never skipped
//! (invariant: nothing-skipped).
//!
//! Layout:
//! - this file: the store, opening and closing it, and the read side;
//! - `writer`: the writer thread, group commit and the append rules;
//! - `bloom`: the filter that spares the writer a redb lookup for a new command id;
//! - `log`: the log files and their records, torn tails and damage;
//! - `memtable`: logged writes not yet in redb, as readers see them;
//! - `checkpoint`: moving the log's writes into redb, in the background and on open;
//! - `tables`: redb's tables, the format marker, row reads and writes;
//! - `codec`: the binary format of stored values and log records.

mod bloom;
mod checkpoint;
mod codec;
mod log;
mod memtable;
mod tables;
#[cfg(test)]
mod tests;
mod writer;

use super::{ActorId, AppendRequest, Appended, EventStore, LoggedCommand, RecordedEvent, Snapshot, StoreError};
use async_trait::async_trait;
use memtable::Tail;
use redb::Database;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use tables::Lookup;
use tokio::sync::{mpsc, oneshot};
use writer::{CheckpointPolicy, Job, Writer};

#[cfg(feature = "fuzzing")]
pub(crate) use codec::fuzz;

/// The database file inside the data directory.
pub const FILE_NAME: &str = "events.redb";

/// Tunables of the [`EmbeddedStore`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EmbeddedConfig {
    /// The most writes logged in one record (one fsync).
    pub max_batch: usize,
    /// Writes waiting for the writer thread before `append` waits for room.
    pub queue_capacity: usize,
    /// redb's page cache, in bytes.
    pub cache_size_bytes: usize,
    /// Writes held in memory (and in the log) that start a checkpoint into
    /// redb. While a checkpoint runs the next memtable keeps filling; at four
    /// times this, appends wait for the checkpoint to finish.
    pub checkpoint_writes: usize,
    /// The longest a write stays out of redb while writes keep coming.
    pub checkpoint_interval: Duration,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            max_batch: 1024,
            queue_capacity: 4096,
            cache_size_bytes: 64 * 1024 * 1024,
            checkpoint_writes: 65_536,
            checkpoint_interval: Duration::from_secs(2),
        }
    }
}

/// What the store's threads and its readers share.
struct Shared {
    db: Database,
    tail: RwLock<Tail>,
    dir: PathBuf,
    /// The redb file, for messages.
    file: String,
}

impl Shared {
    // A panic while holding the lock cannot leave a memtable half-updated
    // (each write is one insert), so a poisoned lock is safe to keep using.
    fn tail(&self) -> RwLockWriteGuard<'_, Tail> {
        self.tail.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn tail_read(&self) -> RwLockReadGuard<'_, Tail> {
        self.tail.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An event store in a log and a redb file. See the [module docs](self).
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    /// `None` once the store is closing; dropping it lets the writer drain and exit.
    queue: Option<mpsc::Sender<Job>>,
    writer: Option<JoinHandle<()>>,
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore").field("dir", &self.shared.dir).finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens the store in `dir` with the default configuration, creating both if needed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the directory or file cannot be created
    /// or opened (e.g. another process has it open), is in a format this
    /// build does not read, or holds a damaged log; the message says which.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, EmbeddedConfig::default())
    }

    /// Opens the store in `dir`, creating both if needed.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with(dir: &Path, config: EmbeddedConfig) -> Result<Self, StoreError> {
        let (shared, log) = open_parts(dir, &config)?;
        let ids = tables::id_filter(&shared.db, &shared.file)?;
        tracing::debug!(file = %shared.file, command_ids = ids.len(), "command-id filter filled");
        let policy = CheckpointPolicy { writes: config.checkpoint_writes.max(1), interval: config.checkpoint_interval };
        let writer =
            Writer::new(shared.clone(), log, ids, policy).map_err(unavailable("cannot start the checkpoint thread"))?;
        let (queue, jobs) = mpsc::channel(config.queue_capacity.max(1));
        let max_batch = config.max_batch.max(1);
        let writer = std::thread::Builder::new()
            .name("aether-store-writer".into())
            .spawn(move || writer.run(jobs, max_batch))
            .map_err(unavailable("cannot start the store writer thread"))?;
        Ok(Self { shared, queue: Some(queue), writer: Some(writer) })
    }

    /// Waits for queued writes to be logged and checkpointed, stops the
    /// threads and closes the file, off the async threads. Dropping the store
    /// does the same but blocks the dropping thread and cannot report errors.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the writer thread panicked or the file
    /// does not close cleanly.
    pub async fn close(mut self) -> Result<(), StoreError> {
        let queue = self.queue.take();
        let writer = self.writer.take();
        let shared = self.shared.clone();
        drop(self);
        tokio::task::spawn_blocking(move || {
            stop_writer(queue, writer)?;
            // A read whose future was dropped may still hold the database;
            // then the last holder closes it.
            match Arc::try_unwrap(shared) {
                Ok(shared) => shared.db.close().map_err(unavailable(format!("cannot close {}", shared.file))),
                Err(_) => Ok(()),
            }
        })
        .await
        .map_err(unavailable("the store close task failed"))?
    }

    /// Hands a write to the writer thread and waits for its answer.
    async fn write<T>(&self, job: Job, answer: oneshot::Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
        let stopped = || StoreError::Unavailable(format!("the writer of {} has stopped", self.shared.dir.display()));
        self.queue.as_ref().ok_or_else(stopped)?.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Runs a redb read on tokio's blocking pool. Used for reads whose cost
    /// grows with the data (event batches, snapshot states), which may wait
    /// on the disk. Point lookups run inline instead: a few cached B-tree
    /// pages cost less than the hand-off to another thread.
    async fn read_blocking<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Lookup) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = self.shared.clone();
        let task =
            move || read(&Lookup::begin(&shared.db).map_err(unavailable(format!("cannot read {}", shared.file)))?);
        tokio::task::spawn_blocking(task).await.map_err(unavailable("a store read task failed"))?
    }

    fn lookup(&self) -> Result<Lookup, StoreError> {
        Lookup::begin(&self.shared.db).map_err(unavailable(format!("cannot read {}", self.shared.file)))
    }
}

/// Opens redb, checks its format, replays the log into it and starts a new log file.
fn open_parts(dir: &Path, config: &EmbeddedConfig) -> Result<(Arc<Shared>, log::Log), StoreError> {
    std::fs::create_dir_all(dir).map_err(unavailable(format!("cannot create data directory {}", dir.display())))?;
    let path = dir.join(FILE_NAME);
    let file = path.display().to_string();
    let db = Database::builder()
        .set_cache_size(config.cache_size_bytes)
        .create(&path)
        .map_err(unavailable(format!("cannot open {file}")))?;
    let checkpointed = tables::prepare(&db, &file)?;
    tables::log_history(&db, &file)?;
    let last = checkpoint::recover(&db, dir, checkpointed, &file)?;
    let positions = Lookup::begin(&db).map_err(unavailable(format!("cannot read {file}")))?.log_head()?;
    let log =
        log::Log::create(dir, last + 1).map_err(unavailable(format!("cannot start a log in {}", dir.display())))?;
    let tail = RwLock::new(Tail { positions, ..Tail::default() });
    let shared = Shared { db, tail, dir: dir.to_owned(), file };
    Ok((Arc::new(shared), log))
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Blocks for at most the writes already queued and a checkpoint:
        // every one is logged and answered before the writer exits.
        if let Err(err) = stop_writer(self.queue.take(), self.writer.take()) {
            tracing::error!(dir = %self.shared.dir.display(), cause = %err, "embedded store did not stop cleanly");
        }
    }
}

fn stop_writer(queue: Option<mpsc::Sender<Job>>, writer: Option<JoinHandle<()>>) -> Result<(), StoreError> {
    drop(queue);
    match writer.map(JoinHandle::join) {
        Some(Err(_)) => Err(StoreError::Unavailable("the store writer thread panicked".into())),
        _ => Ok(()),
    }
}

#[async_trait]
impl EventStore for EmbeddedStore {
    async fn append(&self, actor: &ActorId, request: AppendRequest) -> Result<Appended, StoreError> {
        if request.events.is_empty() && !request.id_from_caller {
            return Err(StoreError::Invalid { actor: actor.clone(), reason: super::NOTHING_TO_RECORD.into() });
        }
        let (reply, answer) = oneshot::channel();
        self.write(Job::Append { actor: actor.clone(), request, reply }, answer).await
    }

    async fn read(&self, actor: &ActorId, after: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let max = max.max(1);
        // Memory first, then redb: a checkpoint in between leaves events in
        // both, never in neither.
        let (recent, first_in_memory) = self.shared.tail_read().events_after(actor, after, max);
        if first_in_memory.is_some_and(|first| first <= after.saturating_add(1)) {
            return Ok(recent);
        }
        let actor = actor.clone();
        self.read_blocking(move |redb| {
            let mut events = redb.events(&actor, after, max)?;
            let newest = events.last().map_or(after, |e| e.version);
            let room = max - events.len();
            let mut recent = recent.into_iter().skip_while(|e| e.version <= newest).take(room).peekable();
            if let Some(next) = recent.peek().filter(|e| e.version != newest + 1) {
                let cause = format!("event missing, the stream jumps to version {}", next.version);
                return Err(StoreError::Corrupt { actor, version: newest + 1, cause });
            }
            events.extend(recent);
            Ok(events)
        })
        .await
    }

    async fn version(&self, actor: &ActorId) -> Result<u64, StoreError> {
        let recent = self.shared.tail_read().find(|m| m.head(actor));
        match recent {
            Some(head) => Ok(head),
            None => self.lookup()?.head(actor),
        }
    }

    async fn find_command(&self, actor: &ActorId, command_id: &str) -> Result<Option<Appended>, StoreError> {
        let recent = self.shared.tail_read().find(|m| m.command(actor, command_id));
        match recent {
            Some(found) => Ok(Some(found)),
            None => self.lookup()?.command(actor, command_id),
        }
    }

    async fn load_snapshot(&self, actor: &ActorId) -> Result<Option<Snapshot>, StoreError> {
        let recent = self.shared.tail_read().find(|m| m.snapshot(actor));
        if let Some(recent) = recent {
            return Ok(Some(Snapshot::clone(&recent)));
        }
        let actor = actor.clone();
        self.read_blocking(move |redb| redb.snapshot(&actor)).await
    }

    async fn save_snapshot(&self, actor: &ActorId, snapshot: Snapshot) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.write(Job::SaveSnapshot { actor: actor.clone(), snapshot, reply }, answer).await
    }

    async fn read_log(&self, after: u64, max: usize) -> Result<Vec<LoggedCommand>, StoreError> {
        let max = max.max(1);
        // Memory first, then redb, as reads do.
        let (recent, first_in_memory) = self.shared.tail_read().log_after(after, max);
        let logged = |(position, actor, command): memtable::LogEntry| {
            let events = command.events.iter().zip(command.first_version..);
            let events = events.map(|(event, version)| RecordedEvent {
                version,
                name: event.name.clone(),
                payload: event.payload.clone(),
                provenance: command.provenance.clone(),
            });
            LoggedCommand { position, actor, events: events.collect() }
        };
        if first_in_memory.is_some_and(|first| first <= after.saturating_add(1)) {
            return Ok(recent.into_iter().map(logged).collect());
        }
        self.read_blocking(move |redb| {
            let mut out = Vec::new();
            for (position, actor, first, last) in redb.log(after, first_in_memory.unwrap_or(u64::MAX), max)? {
                let events = redb.events(&actor, first - 1, (last + 1 - first) as usize)?;
                if events.len() as u64 != last + 1 - first {
                    let cause = format!("the log names versions {first}..={last}, and the stream holds fewer");
                    return Err(StoreError::Corrupt { actor, version: first, cause });
                }
                out.push(LoggedCommand { position, actor, events });
            }
            let room = max - out.len();
            out.extend(recent.into_iter().take(room).map(logged));
            Ok(out)
        })
        .await
    }

    async fn log_head(&self) -> Result<u64, StoreError> {
        Ok(self.shared.tail_read().positions)
    }

    async fn actors(&self, aggregate: Option<&str>) -> Result<Vec<ActorId>, StoreError> {
        // Memory first, then redb, as reads do: a checkpoint in between
        // leaves an actor in both, never in neither.
        let mut actors: Vec<ActorId> = {
            let tail = self.shared.tail_read();
            let memtables = std::iter::once(&tail.active).chain(tail.frozen.as_deref());
            let held = memtables.flat_map(|m| m.actors.iter()).filter(|(_, t)| t.head().is_some_and(|v| v > 0));
            held.map(|(actor, _)| actor).filter(|a| aggregate.is_none_or(|g| a.aggregate == g)).cloned().collect()
        };
        let aggregate = aggregate.map(str::to_owned);
        actors.extend(self.read_blocking(move |redb| redb.actors(aggregate.as_deref())).await?);
        actors.sort();
        actors.dedup();
        Ok(actors)
    }
}

fn unavailable<E: fmt::Display>(what: impl fmt::Display) -> impl FnOnce(E) -> StoreError {
    move |err| StoreError::Unavailable(format!("{what}: {err}"))
}

fn corrupt(actor: &ActorId, version: u64) -> impl FnOnce(String) -> StoreError + '_ {
    move |cause| StoreError::Corrupt { actor: actor.clone(), version, cause }
}
