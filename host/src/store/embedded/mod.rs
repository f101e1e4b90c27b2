//! The embedded event store: one redb file on local disk, the crash-safe
//! default when the host runs on one machine (`aether-host load model.wasm --data DIR`).
//!
//! It owns the file `DIR/events.redb` and the one thread that writes to it.
//!
//! Durability against throughput: an append returns `Ok` only once the redb
//! transaction holding it has committed with `Durability::Immediate`, i.e.
//! after an fsync, and redb's copy-on-write commit makes a half-written
//! transaction invisible after a crash. An fsync costs 0.1–10 ms, so one per
//! append would cap the store at a few hundred appends a second. Instead every
//! write (appends and snapshots) goes through a queue to a single writer
//! thread, which takes everything that queued up while the previous commit was
//! syncing and commits it as one transaction (group commit): a lone append
//! still pays one fsync, and many concurrent appends share one. Readers never
//! wait for the writer: redb readers see the last commit, concurrently with it.
//!
//! Tables (each key starts with `(aggregate, id)`, so an actor's rows are adjacent):
//! - `events`: `(aggregate, id, version)` → name, payload and the first version of its command;
//! - `commands`: `(aggregate, id, first_version)` → the command's provenance, stored once for all
//!   its events (invariant 7), so a 100-event command does not repeat four ids and a hash 100 times;
//! - `command_ids`: `(aggregate, id, command_id)` → first and last version, for idempotency;
//! - `snapshots`: `(aggregate, id)` → the newest snapshot.
//!
//! The head version is the last `events` key of the actor rather than a table
//! of its own, so it can never disagree with the events.
//!
//! Values use the small binary format of `codec` rather than MessagePack:
//! rmp-serde writes a `Vec<u8>` as an array of integers (a `bin` needs
//! `serde_bytes`), which would bloat payloads and states. A value that fails to
//! decode is a [`StoreError::Corrupt`] naming the actor and version; it is
//! never skipped (invariant 6).
//!
//! Layout:
//! - this file: the store, its tables and the read side;
//! - `writer`: the writer thread, group commit and the append rules;
//! - `codec`: the binary format of stored values.

mod codec;
mod writer;

use super::{ActorId, AppendRequest, Appended, EventStore, Provenance, RecordedEvent, Snapshot, StoreError};
use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot};
use writer::{Job, WriteTables, run_writer};

/// The database file inside the data directory.
pub const FILE_NAME: &str = "events.redb";

type EventKey = (&'static str, &'static str, u64);
const EVENTS: TableDefinition<EventKey, &[u8]> = TableDefinition::new("events");
const COMMANDS: TableDefinition<EventKey, &[u8]> = TableDefinition::new("commands");
const COMMAND_IDS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("command_ids");
const SNAPSHOTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("snapshots");

/// Tunables of the [`EmbeddedStore`].
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// The most writes committed in one transaction (one fsync).
    pub max_batch: usize,
    /// Writes waiting for the writer thread before `append` waits for room.
    pub queue_capacity: usize,
    /// redb's page cache, in bytes.
    pub cache_size_bytes: usize,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self { max_batch: 1024, queue_capacity: 4096, cache_size_bytes: 64 * 1024 * 1024 }
    }
}

/// An event store in one redb file. See the [module docs](self) for the layout.
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
    /// `None` once the store is closing; dropping it lets the writer drain and exit.
    queue: Option<mpsc::Sender<Job>>,
    writer: Option<JoinHandle<()>>,
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens the store in `dir` with the default configuration, creating both if needed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the directory or file cannot be created
    /// or opened, e.g. because another process has it open.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, EmbeddedConfig::default())
    }

    /// Opens the store in `dir`, creating both if needed.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with(dir: &Path, config: EmbeddedConfig) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(unavailable(format!("cannot create data directory {}", dir.display())))?;
        let path = dir.join(FILE_NAME);
        let file = path.display().to_string();
        let db = Database::builder()
            .set_cache_size(config.cache_size_bytes)
            .create(&path)
            .map_err(unavailable(format!("cannot open {file}")))?;
        // Readers open tables without creating them, so create them all up front.
        let txn = db.begin_write().map_err(unavailable(format!("cannot initialise {file}")))?;
        WriteTables::open(&txn).map_err(unavailable(format!("cannot create tables in {file}")))?;
        txn.commit().map_err(unavailable(format!("cannot initialise {file}")))?;

        let db = Arc::new(db);
        let (queue, jobs) = mpsc::channel(config.queue_capacity.max(1));
        let writer = std::thread::Builder::new()
            .name("aether-store-writer".into())
            .spawn({
                let db = db.clone();
                let max_batch = config.max_batch.max(1);
                move || run_writer(&db, jobs, max_batch, &file)
            })
            .map_err(unavailable("cannot start the store writer thread"))?;
        Ok(Self { db, path, queue: Some(queue), writer: Some(writer) })
    }

    /// Waits for queued writes to commit, stops the writer and closes the
    /// file, off the async threads. Dropping the store does the same but
    /// blocks the dropping thread and cannot report errors.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the writer thread panicked or the file
    /// does not close cleanly.
    pub async fn close(mut self) -> Result<(), StoreError> {
        let queue = self.queue.take();
        let writer = self.writer.take();
        let db = self.db.clone();
        let path = self.path.clone();
        drop(self);
        tokio::task::spawn_blocking(move || {
            stop_writer(queue, writer)?;
            // A read whose future was dropped may still hold the database;
            // then the last holder closes it.
            match Arc::try_unwrap(db) {
                Ok(db) => db.close().map_err(unavailable(format!("cannot close {}", path.display()))),
                Err(_) => Ok(()),
            }
        })
        .await
        .map_err(unavailable("the store close task failed"))?
    }

    /// Hands a write to the writer thread and waits for its answer.
    async fn write<T>(&self, job: Job, answer: oneshot::Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
        let stopped = || StoreError::Unavailable(format!("the writer of {} has stopped", self.path.display()));
        self.queue.as_ref().ok_or_else(stopped)?.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Runs a read on tokio's blocking pool. Used for reads whose cost grows
    /// with the data (event batches, snapshot states), which may wait on the
    /// disk. Point lookups run inline instead: a few cached B-tree pages cost
    /// less than the hand-off to another thread.
    async fn read_blocking<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || read(&db)).await.map_err(unavailable("a store read task failed"))?
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Blocks for at most the writes already queued: every one is
        // committed and answered before the writer exits, none is lost.
        if let Err(err) = stop_writer(self.queue.take(), self.writer.take()) {
            tracing::error!(path = %self.path.display(), cause = %err, "embedded store did not stop cleanly");
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
        if request.events.is_empty() {
            return Err(StoreError::Invalid { actor: actor.clone(), reason: "no events".into() });
        }
        let (reply, answer) = oneshot::channel();
        self.write(Job::Append { actor: actor.clone(), request, reply }, answer).await
    }

    async fn read(&self, actor: &ActorId, after: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let actor = actor.clone();
        self.read_blocking(move |db| read_events(db, &actor, after, max)).await
    }

    async fn version(&self, actor: &ActorId) -> Result<u64, StoreError> {
        let what = || format!("reading the version of {actor}");
        let txn = self.db.begin_read().map_err(unavailable(what()))?;
        let events = txn.open_table(EVENTS).map_err(unavailable(what()))?;
        head(&events, actor).map_err(unavailable(what()))
    }

    async fn find_command(&self, actor: &ActorId, command_id: &str) -> Result<Option<Appended>, StoreError> {
        let what = || format!("looking up command {command_id:?} of {actor}");
        let txn = self.db.begin_read().map_err(unavailable(what()))?;
        let index = txn.open_table(COMMAND_IDS).map_err(unavailable(what()))?;
        let found =
            index.get((actor.aggregate.as_str(), actor.id.as_str(), command_id)).map_err(unavailable(what()))?;
        found.map(|value| decode_command(actor, command_id, value.value())).transpose()
    }

    async fn load_snapshot(&self, actor: &ActorId) -> Result<Option<Snapshot>, StoreError> {
        let actor = actor.clone();
        self.read_blocking(move |db| {
            let what = || format!("loading the snapshot of {actor}");
            let txn = db.begin_read().map_err(unavailable(what()))?;
            let snapshots = txn.open_table(SNAPSHOTS).map_err(unavailable(what()))?;
            let found = snapshots.get((actor.aggregate.as_str(), actor.id.as_str())).map_err(unavailable(what()))?;
            found.map(|value| codec::snapshot(value.value()).map_err(corrupt_snapshot(&actor))).transpose()
        })
        .await
    }

    async fn save_snapshot(&self, actor: &ActorId, snapshot: Snapshot) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.write(Job::SaveSnapshot { actor: actor.clone(), snapshot, reply }, answer).await
    }
}

/// The version of the actor's last event, 0 if it has none.
fn head(events: &impl ReadableTable<EventKey, &'static [u8]>, actor: &ActorId) -> Result<u64, redb::StorageError> {
    let (aggregate, id) = (actor.aggregate.as_str(), actor.id.as_str());
    let last = events.range((aggregate, id, 0)..=(aggregate, id, u64::MAX))?.next_back().transpose()?;
    Ok(last.map_or(0, |(key, _)| key.value().2))
}

fn read_events(db: &Database, actor: &ActorId, after: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
    let what = || format!("reading events of {actor} after version {after}");
    let Some(first) = after.checked_add(1) else { return Ok(Vec::new()) };
    let txn = db.begin_read().map_err(unavailable(what()))?;
    let events = txn.open_table(EVENTS).map_err(unavailable(what()))?;
    let commands = txn.open_table(COMMANDS).map_err(unavailable(what()))?;
    let (aggregate, id) = (actor.aggregate.as_str(), actor.id.as_str());
    let rows = events.range((aggregate, id, first)..=(aggregate, id, u64::MAX)).map_err(unavailable(what()))?;

    let mut out = Vec::new();
    // Events of one command share one provenance, as they do in memory.
    let mut cached: Option<(u64, Arc<Provenance>)> = None;
    for row in rows.take(max.max(1)) {
        let (key, value) = row.map_err(unavailable(what()))?;
        let version = key.value().2;
        let expected = first + out.len() as u64;
        if version != expected {
            let cause = format!("event missing, the stream jumps to version {version}");
            return Err(StoreError::Corrupt { actor: actor.clone(), version: expected, cause });
        }
        let event = codec::event(value.value()).map_err(corrupt(actor, version))?;
        let provenance = match &cached {
            Some((command, shared)) if *command == event.command => shared.clone(),
            _ => {
                let record = commands.get((aggregate, id, event.command)).map_err(unavailable(what()))?;
                let record = record.ok_or_else(|| format!("no command record at version {}", event.command));
                let decoded = record.and_then(|r| codec::provenance(r.value()).map_err(|e| format!("provenance: {e}")));
                let shared = Arc::new(decoded.map_err(corrupt(actor, version))?);
                cached.insert((event.command, shared)).1.clone()
            }
        };
        out.push(RecordedEvent { version, name: event.name, payload: event.payload, provenance });
    }
    Ok(out)
}

fn decode_command(actor: &ActorId, command_id: &str, value: &[u8]) -> Result<Appended, StoreError> {
    let (first_version, last_version) = codec::versions(value).map_err(|e| StoreError::Corrupt {
        actor: actor.clone(),
        // The entry that names the versions is the broken one.
        version: 0,
        cause: format!("command index entry {command_id:?}: {e}"),
    })?;
    Ok(Appended { first_version, last_version, duplicate: true })
}

fn unavailable<E: fmt::Display>(what: impl fmt::Display) -> impl FnOnce(E) -> StoreError {
    move |err| StoreError::Unavailable(format!("{what}: {err}"))
}

fn corrupt(actor: &ActorId, version: u64) -> impl FnOnce(String) -> StoreError + '_ {
    move |cause| StoreError::Corrupt { actor: actor.clone(), version, cause }
}

fn corrupt_snapshot(actor: &ActorId) -> impl FnOnce(String) -> StoreError + '_ {
    // The version is inside the value that failed to decode.
    move |cause| StoreError::Corrupt { actor: actor.clone(), version: 0, cause: format!("snapshot: {cause}") }
}

#[cfg(test)]
mod tests {
    use super::writer::write_batch;
    use super::*;
    use crate::store::{NewEvent, contract};

    fn request(expected_version: u64, command_id: &str, names: &[&str]) -> AppendRequest {
        AppendRequest {
            expected_version,
            provenance: Arc::new(Provenance {
                command_id: command_id.into(),
                correlation_id: format!("corr-{command_id}"),
                causation_id: format!("cause-{command_id}"),
                timestamp_ms: 1_700_000_000_000,
                component_hash: "ab".repeat(32),
            }),
            events: names
                .iter()
                .map(|n| NewEvent { name: n.to_string(), payload: vec![0x81, 0xa1, b'n', 0x01] })
                .collect(),
        }
    }

    fn snapshot(version: u64) -> Snapshot {
        Snapshot { version, component_hash: "cd".repeat(32), state: vec![7; 4096] }
    }

    #[tokio::test]
    async fn keeps_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        contract::check_all(&store).await;
        store.close().await.unwrap();

        // Batches of one and a queue of one: the backpressure path.
        let dir = tempfile::tempdir().unwrap();
        let tiny = EmbeddedConfig { max_batch: 1, queue_capacity: 1, cache_size_bytes: 1024 * 1024 };
        contract::check_all(&EmbeddedStore::open_with(dir.path(), tiny).unwrap()).await;
    }

    #[tokio::test]
    async fn survives_closing_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let actor = ActorId::new("Account", "a-1");
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.append(&actor, request(0, "c1", &["Opened"])).await.unwrap();
        store.append(&actor, request(1, "c2", &["Deposited", "Withdrawn"])).await.unwrap();
        store.save_snapshot(&actor, snapshot(2)).await.unwrap();
        let before = store.read(&actor, 0, 100).await.unwrap();
        store.close().await.unwrap();

        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.read(&actor, 0, 100).await.unwrap(), before, "events and provenance survive");
        assert_eq!(store.version(&actor).await.unwrap(), 3);
        let c2 = store.find_command(&actor, "c2").await.unwrap();
        assert_eq!(
            c2,
            Some(Appended { first_version: 2, last_version: 3, duplicate: true }),
            "the command index survives"
        );
        assert_eq!(store.load_snapshot(&actor).await.unwrap(), Some(snapshot(2)), "the snapshot survives");
        let retried = store.append(&actor, request(3, "c1", &["Opened"])).await.unwrap();
        assert_eq!((retried.first_version, retried.duplicate), (1, true), "a retry after a restart is a duplicate");
        store.append(&actor, request(3, "c3", &["Closed"])).await.unwrap();
        drop(store);

        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.version(&actor).await.unwrap(), 4, "dropping the store keeps what it committed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_to_many_actors_all_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .append(&ActorId::new("Account", format!("a{i}")), request(0, &format!("c{i}"), &["Opened"]))
                        .await
                })
            })
            .collect();
        for task in tasks {
            let appended = task.await.unwrap().unwrap();
            assert_eq!((appended.first_version, appended.last_version, appended.duplicate), (1, 1, false));
        }
        for i in 0..200 {
            let events = store.read(&ActorId::new("Account", format!("a{i}")), 0, 10).await.unwrap();
            assert_eq!(events.len(), 1, "actor a{i} holds its event");
            assert_eq!(events[0].provenance.command_id, format!("c{i}"));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_at_one_version_let_exactly_one_win() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let actor = ActorId::new("Account", "contended");
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let (store, actor) = (store.clone(), actor.clone());
                tokio::spawn(async move { store.append(&actor, request(0, &format!("c{i}"), &["Opened"])).await })
            })
            .collect();
        let (mut won, mut conflicts) = (0, 0);
        for task in tasks {
            match task.await.unwrap() {
                Ok(appended) if appended.first_version == 1 && !appended.duplicate => won += 1,
                Err(StoreError::Conflict { expected: 0, actual: 1, .. }) => conflicts += 1,
                other => panic!("expected a win or a conflict, got {other:?}"),
            }
        }
        assert_eq!((won, conflicts), (1, 49));
        assert_eq!(store.version(&actor).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_corrupt_event_is_reported_with_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let actor = ActorId::new("Account", "x");
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.append(&actor, request(0, "c1", &["Opened"])).await.unwrap();
        store.append(&actor, request(1, "c2", &["Deposited", "Deposited"])).await.unwrap();
        store.close().await.unwrap();
        {
            let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(EVENTS).unwrap().insert(("Account", "x", 2), b"garbage!".as_slice()).unwrap();
            txn.commit().unwrap();
        }

        let store = EmbeddedStore::open(dir.path()).unwrap();
        match store.read(&actor, 0, 100).await {
            Err(StoreError::Corrupt { actor: a, version: 2, cause }) if a == actor => {
                assert!(cause.contains("format"), "the cause says what is wrong: {cause}")
            }
            other => panic!("a corrupt event must stop the read at version 2, got {other:?}"),
        }
        assert_eq!(store.read(&actor, 0, 1).await.unwrap().len(), 1, "events before it still read");
        assert_eq!(store.read(&actor, 2, 10).await.unwrap()[0].version, 3, "events after it still read");
    }

    #[tokio::test]
    async fn one_batch_sees_its_own_appends() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let actor = ActorId::new("Account", "batched");
        let (mut batch, mut answers) = (Vec::new(), Vec::new());
        for (expected, command_id) in [(0, "b1"), (1, "b2"), (0, "b1"), (1, "b3")] {
            let (reply, answer) = oneshot::channel();
            batch.push(Job::Append { actor: actor.clone(), request: request(expected, command_id, &["E"]), reply });
            answers.push(answer);
        }
        // Written here, on the test's thread, as one transaction; the store's
        // own writer is idle.
        write_batch(&store.db, &mut batch, "test");
        let mut answers = answers.into_iter();
        let mut next = async || answers.next().unwrap().await.unwrap();
        assert_eq!(next().await.unwrap(), Appended { first_version: 1, last_version: 1, duplicate: false });
        assert_eq!(next().await.unwrap(), Appended { first_version: 2, last_version: 2, duplicate: false });
        assert_eq!(next().await.unwrap(), Appended { first_version: 1, last_version: 1, duplicate: true });
        assert!(matches!(next().await, Err(StoreError::Conflict { expected: 1, actual: 2, .. })));
        assert_eq!(store.version(&actor).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn dropping_the_store_answers_every_queued_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let actor = ActorId::new("Account", "queued");
        let mut answers = Vec::new();
        for i in 0..100 {
            let (reply, answer) = oneshot::channel();
            let job = Job::Append { actor: actor.clone(), request: request(i, &format!("q{i}"), &["E"]), reply };
            store.queue.as_ref().unwrap().send(job).await.unwrap();
            answers.push(answer);
        }
        drop(store);
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer.await.unwrap().unwrap().last_version, i as u64 + 1);
        }
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.version(&actor).await.unwrap(), 100);
    }
}
