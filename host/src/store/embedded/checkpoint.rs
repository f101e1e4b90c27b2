//! Checkpoints: moving the log's writes into redb, in the background while
//! the store runs and in the foreground when it opens.
//!
//! A checkpoint stores a frozen memtable in one durable redb transaction
//! that also records the number of the last log file it covers; only then
//! are those files deleted and the memtable dropped. So at every moment each
//! answered write is in redb or in a log file redb does not claim, and a
//! crash at any point replays exactly the files after the recorded number:
//! never a write twice, never one lost.
//!
//! It runs on a thread of its own so the writer keeps logging and answering
//! while redb copies and checksums pages; one checkpoint runs at a time.

use super::codec;
use super::log;
use super::memtable::{Command, Memtable, Write};
use super::tables::{Lookup, SEGMENT_BYTES, WriteTables};
use super::{Shared, unavailable};
use crate::store::StoreError;
use redb::Database;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

/// The handle the writer keeps on the checkpoint thread.
pub(super) struct Checkpointer {
    /// `None` once closing; dropping it ends the thread.
    jobs: Option<Sender<(Arc<Memtable>, u64)>>,
    done: Receiver<Result<(), String>>,
    thread: Option<JoinHandle<()>>,
    busy: bool,
}

impl Checkpointer {
    pub(super) fn spawn(shared: Arc<Shared>) -> std::io::Result<Self> {
        let (jobs, work) = channel::<(Arc<Memtable>, u64)>();
        let (report, done) = channel();
        let thread = std::thread::Builder::new().name("aether-store-checkpoint".into()).spawn(move || {
            for (memtable, seq) in work {
                let stored = store(&shared.db, &memtable, seq, &shared.file);
                if stored.is_ok() {
                    shared.tail().frozen = None;
                    // Left behind, they are deleted at the next open: redb claims them.
                    if let Err(err) = log::remove_through(&shared.dir, seq) {
                        tracing::warn!(dir = %shared.dir.display(), cause = %err, "cannot delete checkpointed logs");
                    }
                }
                if report.send(stored).is_err() {
                    break;
                }
            }
        })?;
        Ok(Self { jobs: Some(jobs), done, thread: Some(thread), busy: false })
    }

    pub(super) fn busy(&self) -> bool {
        self.busy
    }

    /// Starts storing `memtable`, which covers log files up to `seq`.
    pub(super) fn start(&mut self, memtable: Arc<Memtable>, seq: u64) -> Result<(), String> {
        let stopped = || "the checkpoint thread has stopped".to_owned();
        self.jobs.as_ref().ok_or_else(stopped)?.send((memtable, seq)).map_err(|_| stopped())?;
        self.busy = true;
        Ok(())
    }

    /// The outcome of the running checkpoint if it has finished (`wait`: once it has).
    pub(super) fn finished(&mut self, wait: bool) -> Option<Result<(), String>> {
        if !self.busy {
            return None;
        }
        let outcome = if wait { self.done.recv().ok() } else { self.done.try_recv().ok() };
        let outcome =
            if wait { Some(outcome.unwrap_or_else(|| Err("the checkpoint thread died".into()))) } else { outcome };
        self.busy = outcome.is_none();
        outcome
    }

    /// Ends the thread once its checkpoint is done.
    pub(super) fn stop(&mut self) {
        self.jobs = None;
        if let Some(Err(_)) = self.thread.take().map(JoinHandle::join) {
            tracing::error!("the store checkpoint thread panicked");
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stores `memtable` and records that redb now holds log files up to `seq`.
fn store(db: &Database, memtable: &Memtable, seq: u64, file: &str) -> Result<(), String> {
    let failed = |doing: &'static str| move |err: redb::Error| format!("checkpoint of {file}: cannot {doing}: {err}");
    let txn = db.begin_write().map_err(|e| failed("begin")(e.into()))?;
    {
        let mut tables = WriteTables::open(&txn).map_err(|e| failed("open tables")(e.into()))?;
        // In key order, so consecutive inserts walk neighbouring pages.
        let mut actors: Vec<_> = memtable.actors.iter().collect();
        actors.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut ids = Vec::with_capacity(memtable.appends);
        for (actor, tail) in actors {
            for segment in segments(&tail.commands) {
                tables.store_segment(actor, segment).map_err(|e| failed("store")(e.into()))?;
            }
            let versions = tail.commands.iter().map(|c| (c.first_version, c.last_version()));
            ids.extend(tail.id_keys.iter().copied().zip(versions));
            if let Some(snapshot) = &tail.snapshot {
                tables.store_snapshot(actor, snapshot).map_err(|e| failed("store")(e.into()))?;
            }
        }
        tables.store_ids(&mut ids).map_err(|e| failed("index command ids")(e.into()))?;
        tables.store_log(&memtable.log).map_err(|e| failed("store the log's entries")(e.into()))?;
        tables.set_log(seq).map_err(|e| failed("record the log position")(e.into()))?;
    }
    txn.commit().map_err(|e| failed("commit")(e.into()))
}

/// Replays the log files redb does not hold yet into it, in one durable
/// transaction, and deletes every file it then holds. Returns the number of
/// the last file redb holds.
///
/// # Errors
///
/// [`StoreError::Unavailable`] naming the file and offset of a damaged log
/// (not a torn last write), or of a write that does not follow what redb
/// holds: the store refuses to open rather than lose or misplace writes.
pub(super) fn recover(db: &Database, dir: &Path, checkpointed: u64, file: &str) -> Result<u64, StoreError> {
    let files = log::files(dir).map_err(unavailable(format!("cannot list the logs in {}", dir.display())))?;
    let pending: Vec<_> = files.into_iter().filter(|(seq, _)| *seq > checkpointed).collect();
    let Some(&(last, _)) = pending.last() else {
        log::remove_through(dir, checkpointed).map_err(unavailable("cannot delete checkpointed logs"))?;
        return Ok(checkpointed);
    };
    // The logged writes, gathered as the writer had them, then stored as a checkpoint would.
    let stored = Lookup::begin(db).map_err(unavailable(format!("cannot read {file}")))?;
    let mut memtable = Memtable::default();
    // Positions are given out again in the order the writer gave them.
    let mut positions = stored.log_head().map_err(|e| StoreError::Unavailable(e.to_string()))?;
    for (seq, path) in &pending {
        log::replay(path, *seq == last, |record| {
            for mut write in codec::writes(record)? {
                if let Write::Append { actor, command, position, .. } = &mut write {
                    if !command.events.is_empty() {
                        positions += 1;
                        *position = positions;
                    }
                    let head = match memtable.head(actor) {
                        Some(head) => head,
                        None => stored.head(actor).map_err(|e| e.to_string())?,
                    };
                    if head + 1 != command.first_version {
                        return Err(format!(
                            "an append to {actor} at version {} does not follow the stored version {head}",
                            command.first_version
                        ));
                    }
                }
                memtable.insert(&write);
            }
            Ok(())
        })
        .map_err(StoreError::Unavailable)?;
    }
    drop(stored);
    store(db, &memtable, last, file).map_err(StoreError::Unavailable)?;
    tracing::info!(logs = pending.len(), writes = memtable.appends, through = last, "replayed the store's log");
    log::remove_through(dir, last).map_err(unavailable("cannot delete replayed logs"))?;
    Ok(last)
}

/// Cuts an actor's commands into runs of about [`SEGMENT_BYTES`].
fn segments(commands: &[Arc<Command>]) -> impl Iterator<Item = &[Arc<Command>]> {
    let mut rest = commands;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut size = 0;
        let end = rest.iter().position(|c| {
            size += c.size_hint();
            size > SEGMENT_BYTES
        });
        // At least one command per segment, however big.
        let (segment, tail) = rest.split_at(end.map_or(rest.len(), |i| i.max(1)));
        rest = tail;
        Some(segment)
    })
}
