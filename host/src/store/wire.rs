//! The binary layout the embedded and JetStream stores write: a format byte,
//! then fields in a fixed order; integers are little-endian, strings and
//! blobs a `u32` length and the bytes, and a trailing blob (a payload, a
//! state) may run to the end. Rather than MessagePack for the envelopes:
//! rmp-serde writes a `Vec<u8>` as an array of integers, and the payloads
//! inside already are MessagePack.
//!
//! Decoders return a message for `StoreError::Corrupt`; they never panic on
//! malformed bytes, and never allocate more than the bytes they are given
//! can fill: a length is checked against the bytes left before anything is
//! reserved, and a count of items against the least those items can take
//! ([`Decoder::count`]), so a value claiming four billion events is refused
//! at once rather than reserving hundreds of gigabytes.
//!
//! Formats: 1, the first; 2 (written today) adds, at the end of each
//! provenance, the command that was decided (see [`Encoder::provenance`]).
//! Values of format 1 still read, their commands as not recorded.

use super::{Provenance, RecordedCommand};
use std::sync::Arc;

/// The format byte of every value written today.
pub(super) const FORMAT: u8 = 2;

/// The format before provenances carried their command.
const FORMAT_1: u8 = 1;

/// Marks in a provenance (format 2) whether the command follows.
const NO_COMMAND: u8 = 0;
const COMMAND: u8 = 1;

/// The highest version, and stream position, a stored value may name. No
/// stream comes near it (a billion events a second would take 292 years),
/// and a decoded version at or below it can be counted on by `+ 1`, or by
/// adding a command's event count, without overflow. Decoders refuse more.
pub(super) const MAX_VERSION: u64 = i64::MAX as u64;

/// The fewest bytes one event takes: its name's and its payload's lengths.
pub(super) const MIN_EVENT_BYTES: usize = 8;

/// The fewest bytes one command's provenance takes: three ids' and the
/// component hash's lengths and the timestamp.
pub(super) const MIN_PROVENANCE_BYTES: usize = 24;

pub(super) struct Encoder(Vec<u8>);

impl Encoder {
    /// An encoder with room for about `capacity` bytes after the format byte.
    pub(super) fn new(capacity: usize) -> Self {
        Self::with_format(FORMAT, capacity)
    }

    /// An encoder of an older `format`: for checks that a value read back
    /// encodes to the bytes it came from (fuzzing, tests).
    pub(super) fn with_format(format: u8, capacity: usize) -> Self {
        let mut bytes = Vec::with_capacity(capacity + 1);
        bytes.push(format);
        Self(bytes)
    }

    pub(super) fn u32(&mut self, n: u32) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    pub(super) fn u64(&mut self, n: u64) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    pub(super) fn bytes(&mut self, bytes: &[u8]) {
        // Values are far below 4 GiB: redb and the NATS server cap them long before.
        self.u32(bytes.len() as u32);
        self.0.extend_from_slice(bytes);
    }

    pub(super) fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    /// The ids, the time, the component hash, then (format 2) a byte
    /// saying whether the command follows, and its name and payload. A
    /// command costs its bytes and 9 more; a provenance without one, 1.
    pub(super) fn provenance(&mut self, p: &Provenance) {
        self.str(&p.command_id);
        self.str(&p.correlation_id);
        self.str(&p.causation_id);
        self.u64(p.timestamp_ms);
        self.str(&p.component_hash);
        if self.0[0] == FORMAT_1 {
            return;
        }
        match &p.command {
            None => self.0.push(NO_COMMAND),
            Some(command) => {
                self.0.push(COMMAND);
                self.str(&command.name);
                self.bytes(&command.payload);
            }
        }
    }

    /// The encoded value, with `rest` appended unprefixed (it runs to the end).
    pub(super) fn finish(mut self, rest: &[u8]) -> Vec<u8> {
        self.0.extend_from_slice(rest);
        self.0
    }
}

pub(super) struct Decoder<'a> {
    bytes: &'a [u8],
    format: u8,
}

impl<'a> Decoder<'a> {
    /// # Errors
    ///
    /// An empty value, or one of an unknown format.
    pub(super) fn new(bytes: &'a [u8]) -> Result<Self, String> {
        match bytes.split_first() {
            Some((&format @ (FORMAT_1 | FORMAT), rest)) => Ok(Self { bytes: rest, format }),
            Some((format, _)) => Err(format!("unknown format {format:#04x}")),
            None => Err("empty value".into()),
        }
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], String> {
        let (head, rest) = self.bytes.split_first_chunk::<N>().ok_or_else(|| format!("value ends inside {field}"))?;
        self.bytes = rest;
        Ok(*head)
    }

    pub(super) fn u32(&mut self, field: &str) -> Result<u32, String> {
        self.array(field).map(u32::from_le_bytes)
    }

    pub(super) fn u64(&mut self, field: &str) -> Result<u64, String> {
        self.array(field).map(u64::from_le_bytes)
    }

    /// A version (or stream position), at most [`MAX_VERSION`].
    pub(super) fn version(&mut self, field: &str) -> Result<u64, String> {
        let version = self.u64(field)?;
        check_version(field, version)?;
        Ok(version)
    }

    /// A `u32` count of items that each take at least `min_item_bytes`:
    /// refused if the bytes left cannot hold that many, so a caller may
    /// reserve room for the count.
    pub(super) fn count(&mut self, field: &str, min_item_bytes: usize) -> Result<usize, String> {
        let count = self.u32(field)? as usize;
        let needed = count.saturating_mul(min_item_bytes.max(1));
        if needed > self.bytes.len() {
            return Err(format!(
                "{field} {count} needs at least {needed} bytes, but {} are left in the value",
                self.bytes.len()
            ));
        }
        Ok(count)
    }

    pub(super) fn bytes(&mut self, field: &str) -> Result<&'a [u8], String> {
        let len = self.u32(field)? as usize;
        if self.bytes.len() < len {
            return Err(format!("value ends inside {field}: it claims {len} bytes, {} are left", self.bytes.len()));
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    pub(super) fn string(&mut self, field: &str) -> Result<String, String> {
        String::from_utf8(self.bytes(field)?.to_vec()).map_err(|_| format!("{field} is not UTF-8"))
    }

    fn str(&mut self, field: &str) -> Result<&'a str, String> {
        std::str::from_utf8(self.bytes(field)?).map_err(|_| format!("{field} is not UTF-8"))
    }

    /// An id, shared with `same` when equal to it: a command that starts
    /// its own conversation is its own correlation and causation.
    fn id(&mut self, field: &str, same: &Arc<str>) -> Result<Arc<str>, String> {
        let id = self.str(field)?;
        Ok(if id == &**same { same.clone() } else { id.into() })
    }

    pub(super) fn provenance(&mut self) -> Result<Provenance, String> {
        let command_id: Arc<str> = self.str("command id")?.into();
        Ok(Provenance {
            correlation_id: self.id("correlation id", &command_id)?,
            causation_id: self.id("causation id", &command_id)?,
            command_id,
            timestamp_ms: self.u64("timestamp")?,
            component_hash: self.str("component hash")?.into(),
            command: self.command()?,
        })
    }

    /// The recorded command of a provenance: none in format 1.
    fn command(&mut self) -> Result<Option<RecordedCommand>, String> {
        if self.format == FORMAT_1 {
            return Ok(None);
        }
        match self.array::<1>("command marker")? {
            [NO_COMMAND] => Ok(None),
            [COMMAND] => Ok(Some(RecordedCommand {
                name: self.string("command name")?,
                payload: self.bytes("command payload")?.to_vec(),
            })),
            [other] => Err(format!("unknown command marker {other:#04x}")),
        }
    }

    /// Whatever is left: the trailing blob.
    pub(super) fn rest(self) -> &'a [u8] {
        self.bytes
    }

    /// # Errors
    ///
    /// If bytes are left over.
    pub(super) fn end(self) -> Result<(), String> {
        if self.bytes.is_empty() { Ok(()) } else { Err(format!("{} unexpected trailing bytes", self.bytes.len())) }
    }
}

/// Refuses a version above [`MAX_VERSION`], naming `field`.
pub(super) fn check_version(field: &str, version: u64) -> Result<(), String> {
    if version > MAX_VERSION {
        return Err(format!("{field} {version} is above the highest version a store writes ({MAX_VERSION})"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_every_truncation_is_an_error() {
        let p = Provenance {
            command_id: "c ü".into(),
            correlation_id: "corr".into(),
            causation_id: "cause".into(),
            timestamp_ms: 7,
            component_hash: "ab".into(),
            command: None,
        };
        let mut e = Encoder::new(64);
        e.u64(3);
        e.provenance(&p);
        let bytes = e.finish(b"tail");
        let mut d = Decoder::new(&bytes).unwrap();
        assert_eq!((d.u64("n").unwrap(), d.provenance().unwrap()), (3, p));
        assert_eq!(d.rest(), b"tail");
        for cut in 0..bytes.len() - 4 {
            let mut d = Decoder::new(&bytes[..cut]).map_err(|_| ());
            let decoded = d.as_mut().map_err(|_| String::new()).and_then(|d| {
                d.u64("n")?;
                d.provenance()
            });
            assert!(decoded.is_err(), "cut at {cut}");
        }
        assert_eq!(Decoder::new(&[9]).err().unwrap(), "unknown format 0x09");
    }

    #[test]
    fn a_provenance_keeps_its_command_and_format_1_still_reads() {
        let command = RecordedCommand { name: "Deposit".into(), payload: vec![0x81, 0xa1, b'n', 5] };
        let p = Provenance {
            command_id: "c".into(),
            correlation_id: "c".into(),
            causation_id: "c".into(),
            timestamp_ms: 7,
            component_hash: "ab".into(),
            command: Some(command),
        };
        let mut e = Encoder::new(64);
        e.provenance(&p);
        let bytes = e.finish(b"");
        assert_eq!(Decoder::new(&bytes).unwrap().provenance().unwrap(), p);
        // A provenance of format 1, as written before commands were kept: no
        // marker; it reads with no command.
        let mut e = Encoder::with_format(FORMAT_1, 64);
        e.provenance(&p);
        e.u32(3);
        let old = e.finish(b"");
        let mut d = Decoder::new(&old).unwrap();
        assert_eq!(d.provenance().unwrap(), Provenance { command: None, ..p.clone() });
        assert_eq!(d.u32("after"), Ok(3), "nothing of the next field was taken for a command");
        // Every cut of a command is refused, and so is an unknown marker.
        for cut in 1..bytes.len() {
            assert!(Decoder::new(&bytes[..cut]).unwrap().provenance().is_err(), "cut at {cut}");
        }
        let marker = bytes.len() - (1 + 4 + 7 + 4 + 4);
        let mut unknown = bytes.clone();
        unknown[marker] = 7;
        assert_eq!(Decoder::new(&unknown).unwrap().provenance().unwrap_err(), "unknown command marker 0x07");
        // A claimed payload longer than the value is refused before it is copied.
        let mut long = bytes.clone();
        let len_at = bytes.len() - 8;
        long[len_at..len_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            Decoder::new(&long).unwrap().provenance().unwrap_err().starts_with("value ends inside command payload")
        );
    }

    #[test]
    fn a_command_that_is_its_own_correlation_shares_one_id() {
        let id: Arc<str> = "c1".into();
        let p = Provenance {
            command_id: id.clone(),
            correlation_id: id.clone(),
            causation_id: "other".into(),
            timestamp_ms: 1,
            component_hash: "ab".into(),
            command: None,
        };
        let mut e = Encoder::new(64);
        e.provenance(&p);
        let bytes = e.finish(b"");
        let decoded = Decoder::new(&bytes).unwrap().provenance().unwrap();
        assert_eq!(decoded, p);
        assert!(Arc::ptr_eq(&decoded.command_id, &decoded.correlation_id), "one allocation for both");
        assert!(!Arc::ptr_eq(&decoded.command_id, &decoded.causation_id));
    }

    #[test]
    fn a_count_the_bytes_cannot_hold_is_refused_before_anything_is_reserved() {
        let mut e = Encoder::new(16);
        e.u32(u32::MAX);
        e.u64(0);
        let bytes = e.finish(&[]);
        let err = Decoder::new(&bytes).unwrap().count("event count", MIN_EVENT_BYTES).unwrap_err();
        assert_eq!(err, "event count 4294967295 needs at least 34359738360 bytes, but 8 are left in the value");
        // Exactly as many as fit is fine; a zero item size still counts one byte each.
        let mut e = Encoder::new(16);
        e.u32(2);
        e.u64(0);
        let bytes = e.finish(&[]);
        assert_eq!(Decoder::new(&bytes).unwrap().count("n", 4), Ok(2));
        assert!(Decoder::new(&bytes).unwrap().count("n", 5).is_err());
        assert!(Decoder::new(&[FORMAT, 9, 0, 0, 0]).unwrap().count("n", 0).is_err());
    }

    #[test]
    fn versions_past_the_maximum_are_refused() {
        let mut e = Encoder::new(16);
        e.u64(MAX_VERSION);
        e.u64(MAX_VERSION + 1);
        let bytes = e.finish(&[]);
        let mut d = Decoder::new(&bytes).unwrap();
        assert_eq!(d.version("first version"), Ok(MAX_VERSION));
        let err = d.version("last version").unwrap_err();
        assert_eq!(
            err,
            format!("last version {} is above the highest version a store writes ({MAX_VERSION})", 1u64 << 63)
        );
    }
}
