//! The stored values and the log's records, in the [wire](crate::store::wire)
//! layout both stores share.
//!
//! A log record holds one batch's decided writes, each a `u32` length and a
//! value tagged as an append (actor, first version, provenance, events) or a
//! snapshot (actor, snapshot). It records decisions, not requests, so
//! replaying it never decides anything again.
//!
//! Decoders return a message for `StoreError::Corrupt`, never panic on
//! malformed bytes, and reserve room only for counts the bytes can hold
//! (see [`Decoder::count`]). Versions stay at or below `wire::MAX_VERSION`, so a
//! damaged file cannot make the arithmetic on them overflow.

use super::memtable::{Command, Write};
use super::tables::id_key;
use crate::store::wire::{self, Decoder, Encoder, MIN_EVENT_BYTES, MIN_PROVENANCE_BYTES};
use crate::store::{ActorId, NewEvent, Snapshot};
use std::sync::Arc;

const APPEND: u32 = 1;
const SNAPSHOT: u32 = 2;

/// A segment row: some of an actor's consecutive commands, each its
/// provenance (once for all its events, invariant: provenance) and its events. The
/// key holds the first version; the value starts with the last, so the head
/// of a stream is read without decoding the rest.
pub(super) fn encode_segment(commands: &[Arc<Command>]) -> Vec<u8> {
    let size: usize = commands.iter().map(|c| c.size_hint()).sum();
    let mut e = Encoder::new(12 + size);
    e.u64(commands.last().map_or(0, |c| c.last_version()));
    e.u32(commands.len() as u32);
    for command in commands {
        e.provenance(&command.provenance);
        e.u32(command.events.len() as u32);
        for event in &command.events {
            e.str(&event.name);
            e.bytes(&event.payload);
        }
    }
    e.finish(&[])
}

/// The fewest bytes one command takes in a segment: its provenance and its
/// event count (a command accepted with no events is recorded with none).
const MIN_COMMAND_BYTES: usize = MIN_PROVENANCE_BYTES + 4;

/// The last version a segment holds.
pub(super) fn segment_last(bytes: &[u8]) -> Result<u64, String> {
    Decoder::new(bytes)?.version("last version")
}

/// A segment's commands; `first_version` is the segment's key.
pub(super) fn segment(bytes: &[u8], first_version: u64) -> Result<Vec<Command>, String> {
    if first_version == 0 {
        return Err("the segment's key names version 0; versions start at 1".into());
    }
    wire::check_version("the segment's first version", first_version)?;
    let mut d = Decoder::new(bytes)?;
    let last = d.version("last version")?;
    let count = d.count("command count", MIN_COMMAND_BYTES)?;
    if count == 0 {
        return Err("a segment without commands".into());
    }
    let mut commands = Vec::with_capacity(count);
    let mut version = first_version;
    for _ in 0..count {
        let provenance = Arc::new(d.provenance()?);
        let events = events(&mut d)?;
        let command = Command { first_version: version, provenance, events };
        // At most MAX_VERSION plus four billion: no overflow.
        version = command.last_version() + 1;
        commands.push(command);
    }
    d.end()?;
    if version != last + 1 {
        return Err(format!("the segment says it ends at version {last}, its events end at {}", version - 1));
    }
    Ok(commands)
}

fn events(d: &mut Decoder<'_>) -> Result<Vec<NewEvent>, String> {
    // 0 for a command accepted with no events, recorded for its id.
    let n = d.count("event count", MIN_EVENT_BYTES)?;
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        events.push(NewEvent { name: d.string("event name")?, payload: d.bytes("payload")?.to_vec() });
    }
    Ok(events)
}

pub(super) fn encode_snapshot(s: &Snapshot) -> Vec<u8> {
    let mut e = Encoder::new(12 + s.component_hash.len() + s.state.len());
    e.u64(s.version);
    e.str(&s.component_hash);
    e.finish(&s.state)
}

pub(super) fn snapshot_version(bytes: &[u8]) -> Result<u64, String> {
    Decoder::new(bytes)?.version("snapshot version")
}

pub(super) fn snapshot(bytes: &[u8]) -> Result<Snapshot, String> {
    let mut d = Decoder::new(bytes)?;
    Ok(Snapshot {
        version: d.version("snapshot version")?,
        component_hash: d.string("component hash")?,
        state: d.rest().to_vec(),
    })
}

/// Appends one log record's payload to `out`: each write as a `u32`
/// length and a value. Written into the log's own buffer, so a batch costs
/// no allocation of its size.
pub(super) fn encode_writes(writes: &[Write], out: &mut Vec<u8>) {
    for write in writes {
        let mut e = Encoder::new(write.size_hint());
        match write {
            Write::Append { actor, command, .. } => {
                e.u32(APPEND);
                e.str(&actor.aggregate);
                e.str(&actor.id);
                e.u64(command.first_version);
                e.provenance(&command.provenance);
                e.u32(command.events.len() as u32);
                for event in &command.events {
                    e.str(&event.name);
                    e.bytes(&event.payload);
                }
            }
            Write::Snapshot { actor, snapshot } => {
                e.u32(SNAPSHOT);
                e.str(&actor.aggregate);
                e.str(&actor.id);
                e.u64(snapshot.version);
                e.str(&snapshot.component_hash);
                e.bytes(&snapshot.state);
            }
        }
        let value = e.finish(&[]);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(&value);
    }
}

/// The writes of one log record.
pub(super) fn writes(mut bytes: &[u8]) -> Result<Vec<Write>, String> {
    let mut writes = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<4>().ok_or("the record ends inside a length")?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err("the record ends inside a write".into());
        }
        let (value, rest) = rest.split_at(len);
        bytes = rest;
        let mut d = Decoder::new(value)?;
        let tag = d.u32("write tag")?;
        let actor = ActorId::new(d.string("aggregate")?, d.string("actor id")?);
        match tag {
            APPEND => {
                let first_version = d.version("first version")?;
                if first_version == 0 {
                    return Err(format!("an append to {actor} at version 0; versions start at 1"));
                }
                let provenance = Arc::new(d.provenance()?);
                let events = events(&mut d)?;
                let id_key = id_key(&actor, &provenance.command_id);
                let command = Arc::new(Command { first_version, provenance, events });
                writes.push(Write::Append { actor, command, id_key, position: 0 });
            }
            SNAPSHOT => {
                let snapshot = Snapshot {
                    version: d.version("snapshot version")?,
                    component_hash: d.string("component hash")?,
                    state: d.bytes("state")?.to_vec(),
                };
                writes.push(Write::Snapshot { actor, snapshot: Arc::new(snapshot) });
            }
            other => return Err(format!("unknown write tag {other}")),
        }
        d.end()?;
    }
    Ok(writes)
}

/// Fuzzing (feature `fuzzing`): decodes `value` as a segment keyed by
/// `first_version`, as a snapshot and as a log record's writes, and walks
/// `log` as a log file's bytes. Nothing may panic; whatever decodes must
/// hold no more items than its bytes can, and encode back to its bytes.
/// True if any of them decoded (a log: if it holds a valid record).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz(first_version: u64, value: &[u8], log: &[u8]) -> bool {
    let mut decoded = false;
    // A value of an older format encodes in today's: then the check is
    // that what it encodes to reads back and encodes the same again.
    let current = value.first() == Some(&wire::FORMAT);
    let arcs = |commands: Vec<Command>| commands.into_iter().map(Arc::new).collect::<Vec<_>>();
    if let Ok(commands) = segment(value, first_version) {
        assert!(commands.capacity() * MIN_COMMAND_BYTES <= value.len(), "more room than the bytes can fill");
        assert_eq!(segment_last(value).ok(), commands.last().map(|c| c.last_version()));
        let again = encode_segment(&arcs(commands));
        if current {
            assert_eq!(again, value, "a decoded segment encodes back");
        } else {
            let read = segment(&again, first_version).expect("an older segment, encoded anew, reads");
            assert_eq!(encode_segment(&arcs(read)), again, "an older segment encodes back once re-encoded");
        }
        decoded = true;
    }
    if let Ok(snap) = snapshot(value) {
        assert_eq!(snapshot_version(value), Ok(snap.version));
        assert_eq!(encode_snapshot(&snap)[1..], value[1..], "a decoded snapshot encodes back");
        decoded = true;
    }
    if let Ok(found) = writes(value) {
        let mut again = Vec::new();
        encode_writes(&found, &mut again);
        if current || found.is_empty() {
            assert_eq!(again, value, "decoded writes encode back");
        } else {
            let read = writes(&again).expect("older writes, encoded anew, read");
            let mut twice = Vec::new();
            encode_writes(&read, &mut twice);
            assert_eq!(twice, again, "older writes encode back once re-encoded");
        }
        decoded |= !found.is_empty();
    }
    let end = super::log::valid_records(log, |_, record| writes(record).map(drop)).unwrap_or(0);
    assert!(end <= log.len());
    if let Some(next) = super::log::next_record(log, end) {
        assert!(next > end && next < log.len());
    }
    decoded || end > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Provenance;

    fn command(first_version: u64, events: usize) -> Arc<Command> {
        let provenance = Provenance {
            command_id: format!("c{first_version}").into(),
            correlation_id: "corr".into(),
            causation_id: "cause".into(),
            timestamp_ms: 1,
            component_hash: "ab".into(),
            command: None,
        };
        let events = (0..events).map(|i| NewEvent { name: format!("E{i}"), payload: vec![0xc0] }).collect();
        Arc::new(Command { first_version, provenance: Arc::new(provenance), events })
    }

    #[test]
    fn segments_snapshots_and_log_writes_round_trip() {
        let commands = [command(3, 2), command(5, 1)];
        let bytes = encode_segment(&commands);
        assert_eq!(segment_last(&bytes), Ok(5));
        let decoded = segment(&bytes, 3).unwrap();
        assert_eq!(decoded.iter().map(|c| (c.first_version, c.events.len())).collect::<Vec<_>>(), [(3, 2), (5, 1)]);
        let snap = Snapshot { version: 4, component_hash: "ab".into(), state: vec![1, 2] };
        assert_eq!(snapshot(&encode_snapshot(&snap)), Ok(snap.clone()));
        let actor = ActorId::new("A", "a");
        let writes_in = [
            Write::Append { actor: actor.clone(), command: command(1, 2), id_key: 0, position: 0 },
            Write::Snapshot { actor, snapshot: Arc::new(snap) },
        ];
        let mut record = Vec::new();
        encode_writes(&writes_in, &mut record);
        let out = writes(&record).unwrap();
        assert!(matches!(&out[0], Write::Append { command, .. } if command.events.len() == 2));
        assert!(matches!(&out[1], Write::Snapshot { snapshot, .. } if snapshot.version == 4));
    }

    /// A segment whose counts claim more than its bytes hold. The old
    /// decoder reserved up to 65,536 commands and as many events per
    /// command before finding out; now the claim is refused when read.
    #[test]
    fn counts_the_bytes_cannot_hold_are_refused_when_read() {
        let mut e = Encoder::new(16);
        e.u64(9);
        e.u32(u32::MAX);
        let err = segment(&e.finish(b"tail"), 1).unwrap_err();
        assert!(err.starts_with("command count 4294967295 needs at least"), "{err}");

        let mut e = Encoder::new(64);
        e.u32(APPEND);
        e.str("A");
        e.str("a");
        e.u64(1);
        e.provenance(&command(1, 1).provenance);
        e.u32(u32::MAX);
        let value = e.finish(&[0; 16]);
        let mut record = (value.len() as u32).to_le_bytes().to_vec();
        record.extend_from_slice(&value);
        let err = writes(&record).err().unwrap();
        assert!(err.starts_with("event count 4294967295 needs at least 34359738360 bytes"), "{err}");
    }

    /// Versions from a damaged file that the old decoder let overflow (a
    /// panic in a debug build, a wrapped version in a release build).
    #[test]
    fn versions_that_would_overflow_are_refused() {
        let bytes = encode_segment(&[command(1, 2)]);
        let err = segment(&bytes, u64::MAX).unwrap_err();
        assert!(err.contains("above the highest version"), "{err}");
        assert!(segment(&bytes, 0).unwrap_err().contains("version 0"));

        let mut e = Encoder::new(16);
        e.u64(u64::MAX);
        e.u32(0);
        let bytes = e.finish(&[]);
        assert!(segment_last(&bytes).unwrap_err().contains("above the highest version"));
        assert!(segment(&bytes, 1).unwrap_err().contains("above the highest version"));
        let mut e = Encoder::new(16);
        e.u64(4);
        e.u32(0);
        assert_eq!(segment(&e.finish(&[]), 5).unwrap_err(), "a segment without commands");

        let actor = ActorId::new("A", "a");
        for first in [0, u64::MAX] {
            let mut record = Vec::new();
            encode_writes(
                &[Write::Append { actor: actor.clone(), command: command(first, 2), id_key: 0, position: 0 }],
                &mut record,
            );
            assert!(writes(&record).is_err(), "an append at version {first}");
        }
        let snap = Snapshot { version: u64::MAX, component_hash: "ab".into(), state: vec![] };
        assert!(snapshot(&encode_snapshot(&snap)).is_err());
        assert!(snapshot_version(&encode_snapshot(&snap)).is_err());
    }
}
