//! The stored values: a format byte, then fields in a fixed order; integers
//! are little-endian `u64`, strings a `u32` length and UTF-8, and a trailing
//! blob (payload, state) runs to the end of the value.
//!
//! Decoders return a message for `StoreError::Corrupt`, never panic on malformed bytes.

use crate::store::{Provenance, Snapshot};

const FORMAT: u8 = 1;

/// An event row: `command` is the first version of the command that wrote it.
pub(super) struct StoredEvent {
    pub command: u64,
    pub name: String,
    pub payload: Vec<u8>,
}

struct Encoder(Vec<u8>);

impl Encoder {
    fn new(capacity: usize) -> Self {
        let mut bytes = Vec::with_capacity(capacity + 1);
        bytes.push(FORMAT);
        Self(bytes)
    }
    fn u64(mut self, n: u64) -> Self {
        self.0.extend_from_slice(&n.to_le_bytes());
        self
    }
    fn str(mut self, s: &str) -> Self {
        // Names and ids are far below 4 GiB; redb refuses larger values anyway.
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn rest(mut self, bytes: &[u8]) -> Vec<u8> {
        self.0.extend_from_slice(bytes);
        self.0
    }
}

struct Decoder<'a>(&'a [u8]);

impl<'a> Decoder<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, String> {
        match bytes.split_first() {
            Some((&FORMAT, rest)) => Ok(Self(rest)),
            Some((format, _)) => Err(format!("unknown value format {format:#04x}")),
            None => Err("empty value".into()),
        }
    }
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!("value ends inside {field}"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], String> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or_else(|| format!("value ends inside {field}"))?;
        self.0 = rest;
        Ok(*head)
    }
    fn u64(&mut self, field: &str) -> Result<u64, String> {
        self.array(field).map(u64::from_le_bytes)
    }
    fn str(&mut self, field: &str) -> Result<String, String> {
        let len = u32::from_le_bytes(self.array(field)?);
        let bytes = self.take(len as usize, field)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{field} is not UTF-8"))
    }
    fn rest(self) -> Vec<u8> {
        self.0.to_vec()
    }
    fn end(self) -> Result<(), String> {
        if self.0.is_empty() { Ok(()) } else { Err(format!("{} unexpected trailing bytes", self.0.len())) }
    }
}

pub(super) fn encode_event(command: u64, name: &str, payload: &[u8]) -> Vec<u8> {
    Encoder::new(12 + name.len() + payload.len()).u64(command).str(name).rest(payload)
}

pub(super) fn event(bytes: &[u8]) -> Result<StoredEvent, String> {
    let mut d = Decoder::new(bytes)?;
    Ok(StoredEvent { command: d.u64("command version")?, name: d.str("event name")?, payload: d.rest() })
}

pub(super) fn encode_provenance(p: &Provenance) -> Vec<u8> {
    let strings = p.command_id.len() + p.correlation_id.len() + p.causation_id.len() + p.component_hash.len();
    let e = Encoder::new(24 + strings).str(&p.command_id).str(&p.correlation_id).str(&p.causation_id);
    e.u64(p.timestamp_ms).str(&p.component_hash).rest(&[])
}

pub(super) fn provenance(bytes: &[u8]) -> Result<Provenance, String> {
    let mut d = Decoder::new(bytes)?;
    let provenance = Provenance {
        command_id: d.str("command id")?,
        correlation_id: d.str("correlation id")?,
        causation_id: d.str("causation id")?,
        timestamp_ms: d.u64("timestamp")?,
        component_hash: d.str("component hash")?,
    };
    d.end()?;
    Ok(provenance)
}

pub(super) fn encode_versions(first: u64, last: u64) -> Vec<u8> {
    Encoder::new(16).u64(first).u64(last).rest(&[])
}

pub(super) fn versions(bytes: &[u8]) -> Result<(u64, u64), String> {
    let mut d = Decoder::new(bytes)?;
    let versions = (d.u64("first version")?, d.u64("last version")?);
    d.end()?;
    Ok(versions)
}

pub(super) fn encode_snapshot(s: &Snapshot) -> Vec<u8> {
    Encoder::new(12 + s.component_hash.len() + s.state.len()).u64(s.version).str(&s.component_hash).rest(&s.state)
}

pub(super) fn snapshot_version(bytes: &[u8]) -> Result<u64, String> {
    Decoder::new(bytes)?.u64("snapshot version")
}

pub(super) fn snapshot(bytes: &[u8]) -> Result<Snapshot, String> {
    let mut d = Decoder::new(bytes)?;
    Ok(Snapshot { version: d.u64("snapshot version")?, component_hash: d.str("component hash")?, state: d.rest() })
}
