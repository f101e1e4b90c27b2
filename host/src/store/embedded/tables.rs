//! The redb file: its tables, the format marker, and reads and writes of rows.
//!
//! Tables (format 2):
//! - `segments`: `(aggregate, id, first_version)` → some of the actor's consecutive commands, each
//!   with its provenance once and its events (see `codec::encode_segment`). A checkpoint writes one
//!   segment per actor (more if it is over [`SEGMENT_BYTES`]), so a checkpoint's cost follows the
//!   actors it touches rather than the events: with thousands of actors, redb's cost is pages;
//! - `command_ids`: a 128-bit hash of `(aggregate, id, command_id)` → first and last version, for
//!   idempotency over the whole history. Keys and values of fixed size: redb keeps no offsets in
//!   such leaves, and inserting random keys into offset arrays was most of a checkpoint's cost;
//! - `snapshots`: `(aggregate, id)` → the newest snapshot;
//! - `meta`: `format` → the layout version ([`FORMAT`]); `log` → the number of the last log file
//!   whose writes this file holds (see `log`).
//!
//! The head version is the last segment of the actor rather than a table of
//! its own, so it can never disagree with the events.
//!
//! Format 1 (before the log: `events`, `commands` and `command_ids` keyed by
//! actor, no `meta`) is refused with what to do, as is any format but 2. An
//! older aether-host refuses a format-2 file too: its `command_ids` has
//! string keys, and redb will not open a table under another key type.

use super::bloom::IdFilter;
use super::memtable::Command;
use super::{codec, corrupt, unavailable};
use crate::store::{ActorId, Appended, RecordedEvent, Snapshot, StoreError};
use redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition, TableHandle, WriteTransaction,
};
use sha2::{Digest, Sha256};
use std::cell::OnceCell;
use std::sync::Arc;

pub(super) type SegmentKey = (&'static str, &'static str, u64);
pub(super) const SEGMENTS: TableDefinition<SegmentKey, &[u8]> = TableDefinition::new("segments");
const COMMAND_IDS: TableDefinition<u128, (u64, u64)> = TableDefinition::new("command_ids");
const SNAPSHOTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("snapshots");
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The store's log of appends with events: position → actor and versions.
const LOG: TableDefinition<u64, (&str, &str, u64, u64)> = TableDefinition::new("log");

/// The layout this build writes and reads.
pub(super) const FORMAT: u64 = 2;
const FORMAT_KEY: &str = "format";
const LOG_KEY: &str = "log";
/// The newest position in [`LOG`].
const POSITIONS_KEY: &str = "positions";

/// A checkpoint starts a new segment for an actor past this size.
pub(super) const SEGMENT_BYTES: usize = 64 * 1024;

/// The key of a command id in `command_ids`: SHA-256 of the length-prefixed
/// aggregate, actor id and command id, first 16 bytes. A hash that is stable
/// across builds (it is stored), and collisions are out of reach (2^-64 at
/// four billion commands).
pub(super) fn id_key(actor: &ActorId, command_id: &str) -> u128 {
    let mut hash = Sha256::new();
    for part in [&actor.aggregate, &actor.id, command_id] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    u128::from_be_bytes(digest[..16].try_into().expect("a SHA-256 digest has 32 bytes"))
}

/// A filter holding every command-id key in the file (see `bloom`), with
/// room for as many again before it grows.
pub(super) fn id_filter(db: &Database, file: &str) -> Result<IdFilter, StoreError> {
    let failed = |err: redb::Error| StoreError::Unavailable(format!("cannot read the command ids of {file}: {err}"));
    let txn = db.begin_read().map_err(|e| failed(e.into()))?;
    let index = txn.open_table(COMMAND_IDS).map_err(|e| failed(e.into()))?;
    let stored = index.len().map_err(|e| failed(e.into()))? as usize;
    let mut filter = IdFilter::with_capacity(stored.saturating_mul(2));
    for entry in index.range::<u128>(..).map_err(|e| failed(e.into()))? {
        let (key, _) = entry.map_err(|e| failed(e.into()))?;
        filter.insert(key.value());
    }
    Ok(filter)
}

/// Checks the format marker (writing it into a new or format-1 file) and
/// creates missing tables. Returns the number of the last log file the
/// file holds.
pub(super) fn prepare(db: &Database, file: &str) -> Result<u64, StoreError> {
    let txn = db.begin_write().map_err(unavailable(format!("cannot initialise {file}")))?;
    let log = {
        let mut meta = txn.open_table(META).map_err(unavailable(format!("cannot open the tables of {file}")))?;
        let read = |key| meta.get(key).map(|v| v.map(|v| v.value()));
        let (format, log) = read(FORMAT_KEY).and_then(|f| Ok((f, read(LOG_KEY)?))).map_err(unavailable(file))?;
        match format {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(StoreError::Unavailable(format!(
                    "{file} is in store format {other}, and this aether-host reads format {FORMAT} only: \
                     open it with the aether-host that wrote it"
                )));
            }
            None if format_1(&txn) => {
                return Err(StoreError::Unavailable(format!(
                    "{file} is in store format 1 (written by an aether-host before the write-ahead log), \
                     and this aether-host reads format {FORMAT} only: keep running the aether-host that \
                     wrote it, or move the directory away to start with an empty store"
                )));
            }
            None => {
                meta.insert(FORMAT_KEY, FORMAT).map_err(unavailable(file))?;
            }
        }
        log.unwrap_or(0)
    };
    // Readers open tables without creating them, so create them all up front.
    WriteTables::open(&txn).map_err(unavailable(format!("cannot create tables in {file}")))?;
    txn.commit().map_err(unavailable(format!("cannot initialise {file}")))?;
    Ok(log)
}

/// Gives a file written before the log of appends its history: every
/// stored command with events is logged, actor by actor in version order
/// (the one order the log promises), so policies and read models started
/// on old data see all of it. Runs before the log files are replayed, once.
pub(super) fn log_history(db: &Database, file: &str) -> Result<(), StoreError> {
    let failed = |e: redb::Error| StoreError::Unavailable(format!("cannot log the history of {file}: {e}"));
    let txn = db.begin_write().map_err(|e| failed(e.into()))?;
    let logged = {
        let mut meta = txn.open_table(META).map_err(|e| failed(e.into()))?;
        let mut log = txn.open_table(LOG).map_err(|e| failed(e.into()))?;
        if meta.get(POSITIONS_KEY).map_err(|e| failed(e.into()))?.is_some()
            || !log.is_empty().map_err(|e| failed(e.into()))?
        {
            return Ok(());
        }
        let segments = txn.open_table(SEGMENTS).map_err(|e| failed(e.into()))?;
        let mut position = 0;
        for row in segments.iter().map_err(|e| failed(e.into()))? {
            let (key, value) = row.map_err(|e| failed(e.into()))?;
            let (aggregate, id, start) = key.value();
            let actor = ActorId::new(aggregate, id);
            for command in codec::segment(value.value(), start).map_err(corrupt(&actor, start))? {
                if !command.events.is_empty() {
                    position += 1;
                    let entry = (aggregate, id, command.first_version, command.last_version());
                    log.insert(position, entry).map_err(|e| failed(e.into()))?;
                }
            }
        }
        if position > 0 {
            meta.insert(POSITIONS_KEY, position).map_err(|e| failed(e.into()))?;
        }
        position
    };
    txn.commit().map_err(|e| failed(e.into()))?;
    if logged > 0 {
        tracing::info!(file, commands = logged, "logged the stored history for policies and read models");
    }
    Ok(())
}

/// Whether the file has format 1's tables.
fn format_1(txn: &WriteTransaction) -> bool {
    txn.list_tables().is_ok_and(|mut tables| tables.any(|t| t.name() == "events"))
}

/// The tables of one write transaction: a checkpoint, or the replay of the log.
pub(super) struct WriteTables<'txn> {
    segments: Table<'txn, SegmentKey, &'static [u8]>,
    command_ids: Table<'txn, u128, (u64, u64)>,
    snapshots: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    meta: Table<'txn, &'static str, u64>,
    log: Table<'txn, u64, (&'static str, &'static str, u64, u64)>,
}

impl<'txn> WriteTables<'txn> {
    pub(super) fn open(txn: &'txn WriteTransaction) -> Result<Self, redb::TableError> {
        Ok(Self {
            segments: txn.open_table(SEGMENTS)?,
            command_ids: txn.open_table(COMMAND_IDS)?,
            snapshots: txn.open_table(SNAPSHOTS)?,
            meta: txn.open_table(META)?,
            log: txn.open_table(LOG)?,
        })
    }

    /// Stores consecutive commands of one actor as one segment, as decided:
    /// the writer already checked them. Their ids go in with [`store_ids`](Self::store_ids).
    pub(super) fn store_segment(
        &mut self,
        actor: &ActorId,
        commands: &[Arc<Command>],
    ) -> Result<(), redb::StorageError> {
        let Some(first) = commands.first() else { return Ok(()) };
        let (aggregate, id) = (actor.aggregate.as_str(), actor.id.as_str());
        self.segments.insert((aggregate, id, first.first_version), codec::encode_segment(commands).as_slice())?;
        Ok(())
    }

    /// Indexes command ids: [`id_key`] → first and last version. In key
    /// order, consecutive inserts walk neighbouring pages.
    pub(super) fn store_ids(&mut self, ids: &mut [(u128, (u64, u64))]) -> Result<(), redb::StorageError> {
        ids.sort_unstable_by_key(|(key, _)| *key);
        for (key, versions) in ids.iter() {
            self.command_ids.insert(*key, *versions)?;
        }
        Ok(())
    }

    /// Stores a snapshot, replacing the actor's previous one.
    pub(super) fn store_snapshot(&mut self, actor: &ActorId, snapshot: &Snapshot) -> Result<(), redb::StorageError> {
        let key = (actor.aggregate.as_str(), actor.id.as_str());
        self.snapshots.insert(key, codec::encode_snapshot(snapshot).as_slice()).map(drop)
    }

    /// Stores entries of the log of appends (ascending positions).
    pub(super) fn store_log(&mut self, entries: &[super::memtable::LogEntry]) -> Result<(), redb::StorageError> {
        for (position, actor, command) in entries {
            let entry = (actor.aggregate.as_str(), actor.id.as_str(), command.first_version, command.last_version());
            self.log.insert(*position, entry)?;
        }
        match entries.last() {
            Some((position, ..)) => self.meta.insert(POSITIONS_KEY, *position).map(drop),
            None => Ok(()),
        }
    }

    /// Records that the file now holds the writes of log files up to `seq`.
    pub(super) fn set_log(&mut self, seq: u64) -> Result<(), redb::StorageError> {
        self.meta.insert(LOG_KEY, seq).map(drop)
    }
}

/// Reads in one read transaction: a read of the store, or all the lookups
/// of one batch. Each table is opened once, when first needed: opening one
/// checks its definition and costs about as much as a lookup.
pub(super) struct Lookup {
    txn: ReadTransaction,
    segments: OnceCell<ReadOnlyTable<SegmentKey, &'static [u8]>>,
    command_ids: OnceCell<ReadOnlyTable<u128, (u64, u64)>>,
    snapshots: OnceCell<ReadOnlyTable<(&'static str, &'static str), &'static [u8]>>,
}

/// The table in `cell`, opened on first use.
fn opened<'a, K: redb::Key + 'static, V: redb::Value + 'static>(
    cell: &'a OnceCell<ReadOnlyTable<K, V>>,
    txn: &ReadTransaction,
    definition: TableDefinition<K, V>,
) -> Result<&'a ReadOnlyTable<K, V>, redb::TableError> {
    if cell.get().is_none() {
        // Only this thread sees the cell: the set cannot lose a race.
        let _ = cell.set(txn.open_table(definition)?);
    }
    Ok(cell.get().expect("set above"))
}

impl Lookup {
    pub(super) fn begin(db: &Database) -> Result<Self, redb::TransactionError> {
        let txn = db.begin_read()?;
        Ok(Self { txn, segments: OnceCell::new(), command_ids: OnceCell::new(), snapshots: OnceCell::new() })
    }

    /// The version of the actor's last stored event, 0 if it has none.
    pub(super) fn head(&self, actor: &ActorId) -> Result<u64, StoreError> {
        let what = || format!("reading the version of {actor}");
        let segments = opened(&self.segments, &self.txn, SEGMENTS).map_err(|e| unavailable(what())(e))?;
        let (aggregate, id) = (actor.aggregate.as_str(), actor.id.as_str());
        let last = segments
            .range((aggregate, id, 0)..=(aggregate, id, u64::MAX))
            .and_then(|mut rows| rows.next_back().transpose())
            .map_err(|e| unavailable(what())(e))?;
        let Some((key, value)) = last else { return Ok(0) };
        codec::segment_last(value.value()).map_err(corrupt(actor, key.value().2))
    }

    pub(super) fn command(&self, actor: &ActorId, command_id: &str) -> Result<Option<Appended>, StoreError> {
        self.command_by_key(actor, command_id, id_key(actor, command_id))
    }

    /// As [`command`](Self::command), with the id's key already computed.
    pub(super) fn command_by_key(
        &self,
        actor: &ActorId,
        command_id: &str,
        key: u128,
    ) -> Result<Option<Appended>, StoreError> {
        let what = || format!("looking up command {command_id:?} of {actor}");
        let index = opened(&self.command_ids, &self.txn, COMMAND_IDS).map_err(|e| unavailable(what())(e))?;
        let found = index.get(key).map_err(|e| unavailable(what())(e))?;
        found.map(|value| checked_versions(actor, command_id, value.value())).transpose()
    }

    /// The version of the stored snapshot; a corrupt one counts as none, so a new one replaces it.
    pub(super) fn snapshot_version(&self, actor: &ActorId) -> Result<Option<u64>, StoreError> {
        let what = || format!("loading the snapshot of {actor}");
        let snapshots = opened(&self.snapshots, &self.txn, SNAPSHOTS).map_err(|e| unavailable(what())(e))?;
        let found = snapshots.get((actor.aggregate.as_str(), actor.id.as_str())).map_err(|e| unavailable(what())(e))?;
        Ok(found.and_then(|old| match codec::snapshot_version(old.value()) {
            Ok(version) => Some(version),
            Err(cause) => {
                tracing::warn!(actor = %actor, %cause, "replacing a corrupt snapshot");
                None
            }
        }))
    }

    pub(super) fn snapshot(&self, actor: &ActorId) -> Result<Option<Snapshot>, StoreError> {
        let what = || format!("loading the snapshot of {actor}");
        let snapshots = opened(&self.snapshots, &self.txn, SNAPSHOTS).map_err(|e| unavailable(what())(e))?;
        let found = snapshots.get((actor.aggregate.as_str(), actor.id.as_str())).map_err(|e| unavailable(what())(e))?;
        found.map(|value| codec::snapshot(value.value()).map_err(corrupt_snapshot(actor))).transpose()
    }

    /// The actors with segments (of `aggregate` only, if given), in order:
    /// one range read per actor, skipping past its segments.
    pub(super) fn actors(&self, aggregate: Option<&str>) -> Result<Vec<ActorId>, StoreError> {
        use std::ops::Bound;
        let what = || "listing the actors".to_string();
        let segments = opened(&self.segments, &self.txn, SEGMENTS).map_err(|e| unavailable(what())(e))?;
        let mut actors = Vec::new();
        let mut after: Option<ActorId> = None;
        loop {
            let start = match &after {
                Some(a) => Bound::Excluded((a.aggregate.as_str(), a.id.as_str(), u64::MAX)),
                None => Bound::Included((aggregate.unwrap_or(""), "", 0)),
            };
            let next = segments
                .range::<(&str, &str, u64)>((start, Bound::Unbounded))
                .and_then(|mut rows| rows.next().transpose())
                .map_err(|e| unavailable(what())(e))?;
            let Some((key, _)) = next else { break };
            let (found_aggregate, id, _) = key.value();
            if aggregate.is_some_and(|g| g != found_aggregate) {
                break;
            }
            let actor = ActorId::new(found_aggregate, id);
            actors.push(actor.clone());
            after = Some(actor);
        }
        Ok(actors)
    }

    /// The newest position of the log of appends (0: none yet).
    pub(super) fn log_head(&self) -> Result<u64, StoreError> {
        let meta = self.txn.open_table(META).map_err(unavailable("reading the log's head"))?;
        let head = meta.get(POSITIONS_KEY).map_err(unavailable("reading the log's head"))?;
        Ok(head.map_or(0, |v| v.value()))
    }

    /// The log's entries after `after` and before `before`, at most `max`.
    pub(super) fn log(&self, after: u64, before: u64, max: usize) -> Result<Vec<(u64, ActorId, u64, u64)>, StoreError> {
        let what = || format!("reading the log after {after}");
        let Some(from) = after.checked_add(1) else { return Ok(Vec::new()) };
        if from >= before {
            return Ok(Vec::new());
        }
        let log = self.txn.open_table(LOG).map_err(|e| unavailable(what())(e))?;
        let mut out = Vec::new();
        for row in log.range(from..before).map_err(|e| unavailable(what())(e))?.take(max) {
            let (position, entry) = row.map_err(|e| unavailable(what())(e))?;
            let (aggregate, id, first, last) = entry.value();
            out.push((position.value(), ActorId::new(aggregate, id), first, last));
        }
        Ok(out)
    }

    /// The actor's stored events after `after`, in order, at most `max`.
    pub(super) fn events(&self, actor: &ActorId, after: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let what = || format!("reading events of {actor} after version {after}");
        let Some(first) = after.checked_add(1) else { return Ok(Vec::new()) };
        let segments = opened(&self.segments, &self.txn, SEGMENTS).map_err(|e| unavailable(what())(e))?;
        let (aggregate, id) = (actor.aggregate.as_str(), actor.id.as_str());
        // Start at the segment holding `first`: the last one starting at or before it.
        let holding = segments
            .range((aggregate, id, 0)..=(aggregate, id, first))
            .and_then(|mut rows| rows.next_back().transpose())
            .map_err(|e| unavailable(what())(e))?;
        let from = holding.map_or(first, |(key, _)| key.value().2);
        let rows =
            segments.range((aggregate, id, from)..=(aggregate, id, u64::MAX)).map_err(|e| unavailable(what())(e))?;

        let mut out = Vec::new();
        for row in rows {
            let (key, value) = row.map_err(|e| unavailable(what())(e))?;
            let start = key.value().2;
            let expected = first + out.len() as u64;
            if start > expected {
                let cause = format!("event missing, the stream jumps to version {start}");
                return Err(StoreError::Corrupt { actor: actor.clone(), version: expected, cause });
            }
            let commands = codec::segment(value.value(), start).map_err(corrupt(actor, start.max(first)))?;
            for command in commands {
                // Events of one command share one provenance, as they do in memory.
                for (event, version) in command.events.into_iter().zip(command.first_version..) {
                    if version < first {
                        continue;
                    }
                    if out.len() >= max {
                        return Ok(out);
                    }
                    let provenance = command.provenance.clone();
                    out.push(RecordedEvent { version, name: event.name, payload: event.payload, provenance });
                }
            }
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }
}

/// The versions an index entry names, if they can be a command's.
fn checked_versions(actor: &ActorId, command_id: &str, (first, last): (u64, u64)) -> Result<Appended, StoreError> {
    // `last + 1 == first`: a command accepted with no events at version `last`.
    if first == 0 || last.checked_add(1).is_none_or(|end| end < first) || last > crate::store::wire::MAX_VERSION {
        return Err(StoreError::Corrupt {
            actor: actor.clone(),
            // The entry that names the versions is the broken one.
            version: 0,
            cause: format!("command index entry {command_id:?} names versions {first}..={last}"),
        });
    }
    Ok(Appended { first_version: first, last_version: last, duplicate: true, position: 0 })
}

fn corrupt_snapshot(actor: &ActorId) -> impl FnOnce(String) -> StoreError + '_ {
    // The version is inside the value that failed to decode.
    move |cause| StoreError::Corrupt { actor: actor.clone(), version: 0, cause: format!("snapshot: {cause}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_entry_must_name_versions_a_command_can_have() {
        let actor = ActorId::new("A", "a");
        assert!(checked_versions(&actor, "c", (2, 3)).is_ok());
        assert!(checked_versions(&actor, "c", (3, 2)).is_ok(), "accepted at version 2 with no events");
        for bad in [(0, 1), (4, 2), (1, u64::MAX), (u64::MAX, u64::MAX - 1)] {
            let err = checked_versions(&actor, "c", bad).unwrap_err().to_string();
            assert!(err.contains("command index entry \"c\" names versions"), "{err}");
        }
    }
}
