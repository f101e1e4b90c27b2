//! The writer thread of the embedded store: the only code that writes to
//! the file. It takes every write that queued up while the previous commit
//! was syncing, decides each in turn inside one redb transaction (so later
//! appends see earlier ones), commits once, and only then answers the callers.

use super::{COMMAND_IDS, COMMANDS, EVENTS, EventKey, SNAPSHOTS, codec, decode_command, head};
use crate::store::{ActorId, AppendRequest, Appended, Snapshot, StoreError};
use redb::{Database, ReadableTable, Table, WriteTransaction};
use std::fmt;
use tokio::sync::{mpsc, oneshot};

/// A write waiting for the writer thread.
pub(super) enum Job {
    Append { actor: ActorId, request: AppendRequest, reply: oneshot::Sender<Result<Appended, StoreError>> },
    SaveSnapshot { actor: ActorId, snapshot: Snapshot, reply: oneshot::Sender<Result<(), StoreError>> },
}

/// A job's answer, decided inside the batch transaction and sent once the
/// batch's fate is known: the decision if it committed, the failure if not
/// (a duplicate or conflict decided against writes that never committed
/// would be a lie).
type Staged = Box<dyn FnOnce(Result<(), &str>) + Send>;

fn stage<T: Send + 'static>(reply: oneshot::Sender<Result<T, StoreError>>, decided: Result<T, StoreError>) -> Staged {
    Box::new(move |committed| {
        // The caller may have stopped waiting; a committed append stands and
        // a retry of its command is answered as a duplicate.
        let _ = reply.send(committed.map_err(|e| StoreError::Unavailable(e.to_owned())).and(decided));
    })
}

impl Job {
    /// Answers a job the batch could not write.
    fn fail(self, message: &str) {
        match self {
            Job::Append { reply, .. } => refuse(reply, message),
            Job::SaveSnapshot { reply, .. } => refuse(reply, message),
        }
    }

    /// Decides this job inside the batch transaction. On a redb error the
    /// job is answered with it and the whole batch is abandoned.
    fn decide(self, tables: &mut WriteTables<'_>, batch: &str) -> Result<Staged, String> {
        match self {
            Job::Append { actor, request, reply } => match tables.append(&actor, request) {
                Ok(decided) => Ok(stage(reply, decided)),
                Err(err) => {
                    let message = format!("cannot append to {actor} ({batch}): {err}");
                    refuse(reply, &message);
                    Err(message)
                }
            },
            Job::SaveSnapshot { actor, snapshot, reply } => match tables.save_snapshot(&actor, snapshot) {
                Ok(()) => Ok(stage(reply, Ok(()))),
                Err(err) => {
                    let message = format!("cannot save the snapshot of {actor} ({batch}): {err}");
                    refuse(reply, &message);
                    Err(message)
                }
            },
        }
    }
}

/// Answers with [`StoreError::Unavailable`].
fn refuse<T>(reply: oneshot::Sender<Result<T, StoreError>>, message: &str) {
    // As in `stage`: a caller that stopped waiting needs no answer.
    let _ = reply.send(Err(StoreError::Unavailable(message.to_owned())));
}

/// Commits writes in batches until the store closes the queue. Blocks for
/// the first job, then takes whatever else queued meanwhile: a batch grows by
/// itself while the previous commit syncs, and a lone append never waits for
/// company. Returns once the queue is closed and empty, i.e. every job taken
/// was answered.
pub(super) fn run_writer(db: &Database, mut jobs: mpsc::Receiver<Job>, max_batch: usize, file: &str) {
    let mut batch = Vec::with_capacity(max_batch);
    while jobs.blocking_recv_many(&mut batch, max_batch) > 0 {
        write_batch(db, &mut batch, file);
    }
}

/// Writes `batch` in one transaction, then answers every job in it.
pub(super) fn write_batch(db: &Database, batch: &mut Vec<Job>, file: &str) {
    let size = batch.len();
    let mut jobs = batch.drain(..);
    let mut staged = Vec::with_capacity(size);
    let batch = format!("batch of {size} writes to {file}");
    let failed = |doing: &str, err: &dyn fmt::Display| format!("{doing} ({batch}): {err}");
    let outcome = (|| {
        let mut txn = db.begin_write().map_err(|e| failed("cannot begin a write transaction", &e))?;
        // Explicit although it is redb's default: this is the promise `append` makes.
        txn.set_durability(redb::Durability::Immediate).map_err(|e| failed("cannot set durability", &e))?;
        {
            let mut tables = WriteTables::open(&txn).map_err(|e| failed("cannot open tables", &e))?;
            for job in jobs.by_ref() {
                staged.push(job.decide(&mut tables, &batch)?);
            }
        }
        txn.commit().map_err(|e| failed("cannot commit", &e))
    })();
    if let Err(message) = &outcome {
        tracing::error!(cause = %message, "embedded store write failed");
        jobs.for_each(|job| job.fail(message));
    }
    let committed = outcome.as_ref().map(|_| ()).map_err(String::as_str);
    staged.into_iter().for_each(|answer| answer(committed));
}

/// The tables of one write transaction. Appends later in a batch see the
/// rows of earlier ones, since they read through the same transaction.
pub(super) struct WriteTables<'txn> {
    events: Table<'txn, EventKey, &'static [u8]>,
    commands: Table<'txn, EventKey, &'static [u8]>,
    command_ids: Table<'txn, (&'static str, &'static str, &'static str), &'static [u8]>,
    snapshots: Table<'txn, (&'static str, &'static str), &'static [u8]>,
}

impl<'txn> WriteTables<'txn> {
    pub(super) fn open(txn: &'txn WriteTransaction) -> Result<Self, redb::TableError> {
        Ok(Self {
            events: txn.open_table(EVENTS)?,
            commands: txn.open_table(COMMANDS)?,
            command_ids: txn.open_table(COMMAND_IDS)?,
            snapshots: txn.open_table(SNAPSHOTS)?,
        })
    }

    /// Checks the command id first, then the expected version, exactly as
    /// the in-memory store does; only then writes. The outer error is redb
    /// failing; the inner one is this append's answer.
    fn append(
        &mut self,
        actor: &ActorId,
        request: AppendRequest,
    ) -> Result<Result<Appended, StoreError>, redb::StorageError> {
        let (aggregate, id) = (actor.aggregate.as_str(), actor.id.as_str());
        let command_id = request.provenance.command_id.as_str();
        if let Some(original) = self.command_ids.get((aggregate, id, command_id))? {
            return Ok(decode_command(actor, command_id, original.value()));
        }
        let actual = head(&self.events, actor)?;
        if actual != request.expected_version {
            return Ok(Err(StoreError::Conflict { actor: actor.clone(), expected: request.expected_version, actual }));
        }
        let first_version = actual + 1;
        let last_version = actual + request.events.len() as u64;
        self.commands
            .insert((aggregate, id, first_version), codec::encode_provenance(&request.provenance).as_slice())?;
        for (event, version) in request.events.iter().zip(first_version..) {
            let value = codec::encode_event(first_version, &event.name, &event.payload);
            self.events.insert((aggregate, id, version), value.as_slice())?;
        }
        let versions = codec::encode_versions(first_version, last_version);
        self.command_ids.insert((aggregate, id, command_id), versions.as_slice())?;
        Ok(Ok(Appended { first_version, last_version, duplicate: false }))
    }

    /// Keeps the newer of the stored and the given snapshot.
    fn save_snapshot(&mut self, actor: &ActorId, snapshot: Snapshot) -> Result<(), redb::StorageError> {
        let key = (actor.aggregate.as_str(), actor.id.as_str());
        let stored = self.snapshots.get(key)?.map(|old| codec::snapshot_version(old.value()));
        match stored {
            Some(Ok(version)) if version >= snapshot.version => return Ok(()),
            Some(Err(cause)) => tracing::warn!(actor = %actor, %cause, "replacing a corrupt snapshot"),
            _ => {}
        }
        self.snapshots.insert(key, codec::encode_snapshot(&snapshot).as_slice())?;
        Ok(())
    }
}
