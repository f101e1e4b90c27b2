//! The stored values, in the [wire](crate::store::wire) layout both stores share.
//!
//! Decoders return a message for `StoreError::Corrupt`, never panic on malformed bytes.

use crate::store::wire::{Decoder, Encoder};
use crate::store::{Provenance, Snapshot};

/// An event row: `command` is the first version of the command that wrote it.
pub(super) struct StoredEvent {
    pub command: u64,
    pub name: String,
    pub payload: Vec<u8>,
}

pub(super) fn encode_event(command: u64, name: &str, payload: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new(12 + name.len() + payload.len());
    e.u64(command);
    e.str(name);
    e.finish(payload)
}

pub(super) fn event(bytes: &[u8]) -> Result<StoredEvent, String> {
    let mut d = Decoder::new(bytes)?;
    Ok(StoredEvent { command: d.u64("command version")?, name: d.string("event name")?, payload: d.rest().to_vec() })
}

pub(super) fn encode_provenance(p: &Provenance) -> Vec<u8> {
    let strings = p.command_id.len() + p.correlation_id.len() + p.causation_id.len() + p.component_hash.len();
    let mut e = Encoder::new(24 + strings);
    e.provenance(p);
    e.finish(&[])
}

pub(super) fn provenance(bytes: &[u8]) -> Result<Provenance, String> {
    let mut d = Decoder::new(bytes)?;
    let provenance = d.provenance()?;
    d.end()?;
    Ok(provenance)
}

pub(super) fn encode_versions(first: u64, last: u64) -> Vec<u8> {
    let mut e = Encoder::new(16);
    e.u64(first);
    e.u64(last);
    e.finish(&[])
}

pub(super) fn versions(bytes: &[u8]) -> Result<(u64, u64), String> {
    let mut d = Decoder::new(bytes)?;
    let versions = (d.u64("first version")?, d.u64("last version")?);
    d.end()?;
    Ok(versions)
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
