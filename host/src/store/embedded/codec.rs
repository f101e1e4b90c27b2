//! The stored values and the log's records, in the [wire](crate::store::wire)
//! layout both stores share.
//!
//! A log record holds one batch's decided writes, each a `u32` length and a
//! value tagged as an append (actor, first version, provenance, events) or a
//! snapshot (actor, snapshot). It records decisions, not requests, so
//! replaying it never decides anything again.
//!
//! Decoders return a message for `StoreError::Corrupt`, never panic on malformed bytes.

use super::memtable::{Command, Write};
use super::tables::id_key;
use crate::store::wire::{Decoder, Encoder};
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

/// The last version a segment holds.
pub(super) fn segment_last(bytes: &[u8]) -> Result<u64, String> {
    Decoder::new(bytes)?.u64("last version")
}

/// A segment's commands; `first_version` is the segment's key.
pub(super) fn segment(bytes: &[u8], first_version: u64) -> Result<Vec<Command>, String> {
    let mut d = Decoder::new(bytes)?;
    let last = d.u64("last version")?;
    let count = d.u32("command count")?;
    let mut commands = Vec::with_capacity(count.min(1 << 16) as usize);
    let mut version = first_version;
    for _ in 0..count {
        let provenance = Arc::new(d.provenance()?);
        let events = events(&mut d)?;
        let command = Command { first_version: version, provenance, events };
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
    let n = d.u32("event count")?;
    if n == 0 {
        return Err("a command without events".into());
    }
    let mut events = Vec::with_capacity(n.min(1 << 16) as usize);
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
    Decoder::new(bytes)?.u64("snapshot version")
}

pub(super) fn snapshot(bytes: &[u8]) -> Result<Snapshot, String> {
    let mut d = Decoder::new(bytes)?;
    Ok(Snapshot {
        version: d.u64("snapshot version")?,
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
                let first_version = d.u64("first version")?;
                let provenance = Arc::new(d.provenance()?);
                let events = events(&mut d)?;
                let id_key = id_key(&actor, &provenance.command_id);
                let command = Arc::new(Command { first_version, provenance, events });
                writes.push(Write::Append { actor, command, id_key });
            }
            SNAPSHOT => {
                let snapshot = Snapshot {
                    version: d.u64("snapshot version")?,
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
