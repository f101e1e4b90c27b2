//! The writer thread of the embedded store: the only code that decides
//! writes. It takes every write that queued up while the previous batch was
//! syncing, decides each in turn (so later appends see earlier ones), appends
//! the batch's decisions to the log as one record, syncs it, and only then
//! publishes them to the memtable and answers the callers. Every so often it
//! freezes the memtable and hands it to the checkpoint thread.
//!
//! Decisions read, newest first, the batch's own decisions, the memtables,
//! and redb. If the log cannot be written the store stops taking writes:
//! after a failed sync the file's state is unknown (the kernel may have
//! dropped the dirty pages), and only a reopen, replaying the log, knows it.

use super::bloom::IdFilter;
use super::checkpoint::Checkpointer;
use super::log::Log;
use super::memtable::{Command, HashMap, Tail, Write};
use super::tables::{Lookup, id_key};
use super::{Shared, codec};
use crate::store::{ActorId, AppendRequest, Appended, Snapshot, StoreError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// A write waiting for the writer thread.
pub(super) enum Job {
    Append { actor: ActorId, request: AppendRequest, reply: oneshot::Sender<Result<Appended, StoreError>> },
    SaveSnapshot { actor: ActorId, snapshot: Snapshot, reply: oneshot::Sender<Result<(), StoreError>> },
}

/// A job's answer, decided before the batch is logged and sent once the
/// batch's fate is known: the decision if it is durable, the failure if not
/// (a duplicate or conflict decided against writes that never reached the
/// disk would be a lie).
type Staged = Box<dyn FnOnce(Result<(), &str>) + Send>;

fn stage<T: Send + 'static>(reply: oneshot::Sender<Result<T, StoreError>>, decided: Result<T, StoreError>) -> Staged {
    Box::new(move |logged| {
        // The caller may have stopped waiting; a logged append stands and a
        // retry of its command is answered as a duplicate.
        let _ = reply.send(logged.map_err(|e| StoreError::Unavailable(e.to_owned())).and(decided));
    })
}

impl Job {
    /// Answers a job the store cannot write.
    fn fail(self, message: &str) {
        match self {
            Job::Append { reply, .. } => refuse(reply, message),
            Job::SaveSnapshot { reply, .. } => refuse(reply, message),
        }
    }
}

/// Answers with [`StoreError::Unavailable`].
fn refuse<T>(reply: oneshot::Sender<Result<T, StoreError>>, message: &str) {
    // As in `stage`: a caller that stopped waiting needs no answer.
    let _ = reply.send(Err(StoreError::Unavailable(message.to_owned())));
}

/// When the writer freezes the memtable for a checkpoint.
#[derive(Debug, Clone, Copy)]
pub(super) struct CheckpointPolicy {
    /// Writes in the memtable that start a checkpoint.
    pub writes: usize,
    /// The longest the first write of a memtable waits for one, while writes keep coming.
    pub interval: Duration,
}

pub(super) struct Writer {
    shared: Arc<Shared>,
    log: Log,
    /// Every command-id key the store holds or has been given: redb is asked
    /// only about the keys this says may be there.
    ids: IdFilter,
    checkpoints: Checkpointer,
    policy: CheckpointPolicy,
    /// Writes in the active memtable.
    pending: usize,
    /// When the active memtable received its first write.
    since: Option<Instant>,
    /// Set once the store cannot write any more; every later write gets it.
    failed: Option<String>,
}

impl Writer {
    pub(super) fn new(shared: Arc<Shared>, log: Log, ids: IdFilter, policy: CheckpointPolicy) -> std::io::Result<Self> {
        let checkpoints = Checkpointer::spawn(shared.clone())?;
        Ok(Self { shared, log, ids, checkpoints, policy, pending: 0, since: None, failed: None })
    }

    /// Writes batches until the store closes the queue. Blocks for the first
    /// job, then takes whatever else queued meanwhile: a batch grows by itself
    /// while the previous one syncs, and a lone append never waits for
    /// company. Returns once the queue is closed and empty (every job taken
    /// was answered) and the memtable is checkpointed.
    pub(super) fn run(mut self, mut jobs: mpsc::Receiver<Job>, max_batch: usize) {
        let mut batch = Vec::with_capacity(max_batch);
        while jobs.blocking_recv_many(&mut batch, max_batch) > 0 {
            self.write_batch(&mut batch);
            self.checkpoint_if_due();
        }
        self.finish();
    }

    /// Decides, logs and answers `batch`.
    pub(super) fn write_batch(&mut self, batch: &mut Vec<Job>) {
        if let Some(reason) = &self.failed {
            batch.drain(..).for_each(|job| job.fail(reason));
            return;
        }
        let (writes, staged) = self.decide(batch);
        let logged = if writes.is_empty() {
            Ok(())
        } else {
            self.log.append(|buffer| codec::encode_writes(&writes, buffer)).map_err(|err| {
                let reason = format!(
                    "cannot write the log of {} ({err}); the store takes no more writes until it is reopened",
                    self.shared.file
                );
                tracing::error!(cause = %reason, "embedded store write failed");
                self.failed.insert(reason).clone()
            })
        };
        if logged.is_ok() && !writes.is_empty() {
            for write in &writes {
                if let Write::Append { id_key, .. } = write {
                    self.ids.insert(*id_key);
                }
            }
            let mut tail = self.shared.tail();
            writes.iter().for_each(|w| tail.insert(w));
            self.pending += writes.len();
            self.since.get_or_insert_with(Instant::now);
        }
        let logged = logged.as_ref().map(|_| ()).map_err(String::as_str);
        staged.into_iter().for_each(|answer| answer(logged));
    }

    /// Decides every job of `batch` against one view of the store.
    fn decide(&self, batch: &mut Vec<Job>) -> (Vec<Write>, Vec<Staged>) {
        let mut writes = Vec::with_capacity(batch.len());
        let mut staged = Vec::with_capacity(batch.len());
        // The memtables first, then redb: a checkpoint that commits in
        // between leaves its writes in both, never in neither.
        let tail = self.shared.tail_read();
        let view = Lookup::begin(&self.shared.db).map_err(|e| format!("cannot read {}: {e}", self.shared.file));
        let positions = tail.positions;
        let mut decider =
            Decider { tail: &tail, redb: view.as_ref(), ids: &self.ids, batch: HashMap::default(), positions };
        for job in batch.drain(..) {
            staged.push(match job {
                Job::Append { actor, request, reply } => stage(reply, decider.append(actor, request, &mut writes)),
                Job::SaveSnapshot { actor, snapshot, reply } => {
                    stage(reply, decider.snapshot(actor, snapshot, &mut writes))
                }
            });
        }
        (writes, staged)
    }

    /// Starts a checkpoint when the memtable is big or old enough and none
    /// is running; waits for the running one if the memtable has grown far
    /// past its size (the disk is slower than the writes).
    fn checkpoint_if_due(&mut self) {
        if let Some(Err(reason)) = self.checkpoints.finished(false) {
            self.fail_checkpoint(reason);
        }
        let old = self.since.is_some_and(|t| t.elapsed() >= self.policy.interval);
        if self.failed.is_some() || (self.pending < self.policy.writes && !old) {
            return;
        }
        if self.checkpoints.busy() {
            if self.pending < self.policy.writes.saturating_mul(4) {
                return;
            }
            if let Some(Err(reason)) = self.checkpoints.finished(true) {
                return self.fail_checkpoint(reason);
            }
        }
        if let Err(reason) = self.freeze(true) {
            self.failed = Some(reason);
        }
    }

    /// Hands the active memtable to the checkpoint thread; `rotate`: the
    /// log continues in a new file, so the old ones cover exactly it.
    fn freeze(&mut self, rotate: bool) -> Result<(), String> {
        let seq = if rotate {
            self.log.rotate().map_err(|e| format!("cannot start a new log in {}: {e}", self.shared.dir.display()))?
        } else {
            self.log.seq()
        };
        let frozen = {
            let mut tail = self.shared.tail();
            let frozen = Arc::new(std::mem::take(&mut tail.active));
            tail.frozen = Some(frozen.clone());
            frozen
        };
        self.pending = 0;
        self.since = None;
        self.checkpoints.start(frozen, seq)
    }

    fn fail_checkpoint(&mut self, reason: String) {
        let reason = format!("{reason}; the store takes no more writes until it is reopened (the log keeps them)");
        tracing::error!(cause = %reason, "embedded store checkpoint failed");
        self.failed = Some(reason);
    }

    /// Checkpoints what is left, so a clean close leaves no log to replay.
    fn finish(&mut self) {
        if let Some(Err(reason)) = self.checkpoints.finished(true) {
            self.fail_checkpoint(reason);
        }
        if self.failed.is_none() && self.pending > 0 {
            let done = self.freeze(false).and_then(|()| self.checkpoints.finished(true).unwrap_or(Ok(())));
            if let Err(reason) = done {
                tracing::error!(cause = %reason, "the closing checkpoint failed; the next open replays the log");
            }
        }
        self.checkpoints.stop();
    }
}

/// What the batch decided so far for one actor.
#[derive(Default)]
struct Decided {
    head: Option<u64>,
    commands: Vec<(String, Appended)>,
    snapshot: Option<u64>,
}

/// The rules of a write, applied against the batch, the memtables and redb.
struct Decider<'a> {
    tail: &'a Tail,
    redb: Result<&'a Lookup, &'a String>,
    ids: &'a IdFilter,
    batch: HashMap<ActorId, Decided>,
    /// The newest log position given out: the batch's appends with events
    /// take the next ones, in the order they are logged.
    positions: u64,
}

impl Decider<'_> {
    fn redb(&self) -> Result<&Lookup, StoreError> {
        self.redb.map_err(|e| StoreError::Unavailable(e.clone()))
    }

    /// Checks the command id first, then the expected version, exactly as
    /// the in-memory store does; only then writes.
    fn append(
        &mut self,
        actor: ActorId,
        request: AppendRequest,
        writes: &mut Vec<Write>,
    ) -> Result<Appended, StoreError> {
        let command_id = &*request.provenance.command_id;
        let decided = self.batch.get(&actor);
        let earlier = decided.and_then(|d| d.commands.iter().find(|(id, _)| id == command_id)).map(|(_, a)| *a);
        let memory = self.tail.actor(&actor);
        let in_memory = || memory.iter().flatten().find_map(|t| t.command(command_id));
        if let Some(original) = earlier.or_else(in_memory) {
            return Ok(original);
        }
        let id_key = id_key(&actor, command_id);
        if self.ids.may_contain(id_key)
            && let Some(original) = self.redb()?.command_by_key(&actor, command_id, id_key)?
        {
            return Ok(original);
        }
        let newest_in_memory = || memory.iter().flatten().find_map(|t| t.head());
        let actual = match decided.and_then(|d| d.head).or_else(newest_in_memory) {
            Some(head) => head,
            None => self.redb()?.head(&actor)?,
        };
        if actual != request.expected_version {
            return Err(StoreError::Conflict { actor, expected: request.expected_version, actual });
        }
        let command = Command { first_version: actual + 1, provenance: request.provenance, events: request.events };
        let position = if command.events.is_empty() {
            0
        } else {
            self.positions += 1;
            self.positions
        };
        let (first_version, last_version) = (command.first_version, command.last_version());
        let appended = Appended { first_version, last_version, duplicate: false, position };
        let decided = self.batch.entry(actor.clone()).or_default();
        decided.head = Some(appended.last_version);
        let original = Appended { duplicate: true, position: 0, ..appended };
        decided.commands.push((command.provenance.command_id.to_string(), original));
        writes.push(Write::Append { actor, command: Arc::new(command), id_key, position });
        Ok(appended)
    }

    /// Keeps the newer of the stored and the given snapshot.
    fn snapshot(&mut self, actor: ActorId, snapshot: Snapshot, writes: &mut Vec<Write>) -> Result<(), StoreError> {
        let decided = self.batch.get(&actor).and_then(|d| d.snapshot);
        let stored = match decided.or_else(|| self.tail.find(|m| m.snapshot(&actor).map(|s| s.version))) {
            Some(version) => Some(version),
            None => self.redb()?.snapshot_version(&actor)?,
        };
        if stored.is_some_and(|stored| stored >= snapshot.version) {
            return Ok(());
        }
        self.batch.entry(actor.clone()).or_default().snapshot = Some(snapshot.version);
        writes.push(Write::Snapshot { actor, snapshot: Arc::new(snapshot) });
        Ok(())
    }
}
