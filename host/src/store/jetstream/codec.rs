//! The stored format: one message per command, one key-value entry per
//! actor's snapshot.
//!
//! A command's message carries its versions and command id in headers, so
//! a reader can place a message (or skip it, or find a command) without
//! decoding the payload:
//!
//! | header | value |
//! |---|---|
//! | `Aether-Versions` | the versions the command's events occupy, `<first>-<last>` in decimal |
//! | `Aether-Command-Id` | the command id, as a [subject token](super::subject) (header values cannot hold every string) |
//! | `Nats-Expected-Last-Subject-Sequence` | set by the store for concurrency |
//! | `Nats-Msg-Id` | no longer set (messages from before the command index have it when the caller chose the command id) |
//! | `Aether-Epoch` | in a cluster, the epoch of the shard map under which the appending node served the actor |
//!
//! A command-index message (see `index`) has the same `Aether-Versions`
//! (the empty range `<v+1>-<v>` for a command accepted with no events) and
//! `Aether-Command-Id` headers, `Aether-Events-After` for a claim, and no
//! payload.
//!
//! Every header is a hash-map entry and a few allocations for the client,
//! and bytes the server parses and stores with every message, so the
//! headers hold only what a headers-only read needs; the rest of the
//! provenance is in the payload. Messages written before these headers
//! (`Aether-First-Version` and `Aether-Last-Version`, and an
//! `Aether-Component-Hash` nothing read) still read.
//!
//! The payload is in the [wire](crate::store::wire) layout: the provenance
//! (command id, correlation id, causation id, timestamp, component hash and,
//! from format 2, the command that was decided: a marker byte, then its name
//! and MessagePack payload if it was recorded), the number of events, then
//! each event's name and MessagePack payload. Messages of format 1 (no
//! command) still read, as commands that cannot be decided again.
//!
//! A snapshot entry is a format byte (1), the snapshot's version, the stream
//! position replay may start from (see [`Mark`]), the component hash, and the
//! state to the end.
//!
//! Decoders return a message for `StoreError::Corrupt`; they never panic on
//! malformed bytes. Anyone who may publish on the stream's subjects can
//! write a message the host will read, so nothing read is trusted for a
//! size: an event count must fit the payload's bytes before room is made
//! for it, and versions and stream positions stay at or below
//! `wire::MAX_VERSION` so arithmetic on them cannot overflow.

use super::cache::Mark;
use super::subject;
use crate::store::wire::{self, Decoder, Encoder, MIN_EVENT_BYTES};
use crate::store::{NewEvent, Provenance, RecordedEvent, Snapshot};
use async_nats::header::{HeaderName, NATS_EXPECTED_LAST_SUBJECT_SEQUENCE};
use async_nats::{HeaderMap, HeaderValue};
use std::sync::Arc;

pub(super) const VERSIONS: &str = "Aether-Versions";
pub(super) const COMMAND_ID: &str = "Aether-Command-Id";
/// The shard map epoch an append was made under (fencing, for audits).
pub const EPOCH: &str = "Aether-Epoch";
/// The versions of messages written before `Aether-Versions`.
const FIRST_VERSION: &str = "Aether-First-Version";
const LAST_VERSION: &str = "Aether-Last-Version";

/// What the headers of a command's message say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CommandHeaders {
    pub first_version: u64,
    pub last_version: u64,
    pub command_id: String,
}

/// The headers of a command's message: its versions and id, and the
/// sequence the subject's last message must have.
pub(super) fn headers(
    first_version: u64,
    last_version: u64,
    command_id: &str,
    expected_last_seq: u64,
    epoch: Option<u64>,
) -> HeaderMap {
    // Names made once, without an allocation each (a name given as `&str` is
    // copied into a new buffer); values moved in rather than copied.
    const VERSIONS_NAME: HeaderName = HeaderName::from_static(VERSIONS);
    const COMMAND_ID_NAME: HeaderName = HeaderName::from_static(COMMAND_ID);
    let mut headers = HeaderMap::new();
    headers.insert(VERSIONS_NAME, format!("{first_version}-{last_version}"));
    headers.insert(COMMAND_ID_NAME, subject::encode_token(command_id));
    headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, HeaderValue::from(expected_last_seq));
    if let Some(epoch) = epoch {
        const EPOCH_NAME: HeaderName = HeaderName::from_static(EPOCH);
        headers.insert(EPOCH_NAME, HeaderValue::from(epoch));
    }
    headers
}

/// Reads the headers of a command's message.
pub(super) fn command_headers(headers: Option<&HeaderMap>) -> Result<CommandHeaders, String> {
    let headers = headers.ok_or("the message has no headers; it was not written by Aether")?;
    let get =
        |name: &str| headers.get(name).map(|v| v.as_str()).ok_or_else(|| format!("the message has no {name} header"));
    let version =
        |name: &str, value: &str| value.parse::<u64>().map_err(|_| format!("{name} header {value:?} is not a version"));
    let (first_version, last_version) = match headers.get(VERSIONS) {
        Some(value) => {
            let value = value.as_str();
            let (first, last) =
                value.split_once('-').ok_or_else(|| format!("{VERSIONS} header {value:?} is not <first>-<last>"))?;
            (version(VERSIONS, first)?, version(VERSIONS, last)?)
        }
        None if headers.get(FIRST_VERSION).is_some() => {
            (version(FIRST_VERSION, get(FIRST_VERSION)?)?, version(LAST_VERSION, get(LAST_VERSION)?)?)
        }
        None => return Err(format!("the message has no {VERSIONS} header")),
    };
    if first_version == 0 || last_version < first_version {
        return Err(format!("versions {first_version}..={last_version} in the headers are not a range"));
    }
    wire::check_version("the last version in the headers", last_version)?;
    let token = get(COMMAND_ID)?;
    let command_id =
        subject::decode_token(token).ok_or_else(|| format!("{COMMAND_ID} header {token:?} does not decode"))?;
    Ok(CommandHeaders { first_version, last_version, command_id })
}

/// The payload of a command's message.
pub(super) fn encode_events(provenance: &Provenance, events: &[NewEvent]) -> Vec<u8> {
    let command = provenance.command.as_ref().map_or(1, |c| 9 + c.name.len() + c.payload.len());
    let size: usize = events.iter().map(|e| 8 + e.name.len() + e.payload.len()).sum();
    let mut e = Encoder::new(64 + provenance.command_id.len() * 3 + command + size);
    e.provenance(provenance);
    e.u32(events.len() as u32);
    for event in events {
        e.str(&event.name);
        e.bytes(&event.payload);
    }
    e.finish(&[])
}

/// Decodes a command's message whose headers said `headers`.
pub(super) fn decode_events(headers: &CommandHeaders, payload: &[u8]) -> Result<Vec<RecordedEvent>, String> {
    let mut d = Decoder::new(payload)?;
    let provenance = d.provenance()?;
    if *provenance.command_id != *headers.command_id {
        return Err(format!(
            "the payload is of command {:?} but the headers say {:?}",
            provenance.command_id, headers.command_id
        ));
    }
    // The count must fit the bytes left before it sizes anything: a payload
    // claiming four billion events would otherwise reserve 256 GiB.
    let count = d.count("event count", MIN_EVENT_BYTES)?;
    if count as u64 != headers.last_version - headers.first_version + 1 {
        return Err(format!(
            "{count} events in the payload, versions {}..={} in the headers",
            headers.first_version, headers.last_version
        ));
    }
    let provenance = Arc::new(provenance);
    let mut events = Vec::with_capacity(count);
    for version in headers.first_version..=headers.last_version {
        let name = d.string("event name")?;
        let payload = d.bytes("event payload")?.to_vec();
        events.push(RecordedEvent { version, name, payload, provenance: provenance.clone() });
    }
    d.end()?;
    Ok(events)
}

/// A snapshot entry. `start` is where replay after it may begin.
pub(super) fn encode_snapshot(snapshot: &Snapshot, start: Mark) -> Vec<u8> {
    let mut e = Encoder::new(40 + snapshot.component_hash.len() + snapshot.state.len());
    e.u64(snapshot.version);
    e.u64(start.version);
    e.u64(start.seq);
    e.str(&snapshot.component_hash);
    e.finish(&snapshot.state)
}

/// The snapshot's version alone, to compare without copying the state.
pub(super) fn snapshot_version(bytes: &[u8]) -> Result<u64, String> {
    Decoder::new(bytes)?.version("snapshot version")
}

pub(super) fn decode_snapshot(bytes: &[u8]) -> Result<(Snapshot, Mark), String> {
    let mut d = Decoder::new(bytes)?;
    let version = d.version("snapshot version")?;
    let start = Mark { version: d.version("replay start version")?, seq: d.version("replay start sequence")? };
    if start.version > version {
        return Err(format!("replay start at version {} is past the snapshot's {version}", start.version));
    }
    let component_hash = d.string("component hash")?;
    Ok((Snapshot { version, component_hash, state: d.rest().to_vec() }, start))
}

/// Fuzzing (feature `fuzzing`): decodes a message whose headers hold
/// `versions` and `command_id`, and `snapshot` as a snapshot entry. Nothing
/// may panic; whatever decodes must hold no more events than its bytes can,
/// and encode back to exactly the bytes it came from. True if either decoded.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz(versions: &str, command_id: &str, payload: &[u8], snapshot: &[u8]) -> bool {
    let mut map = HeaderMap::new();
    for (name, value) in [(VERSIONS, versions), (COMMAND_ID, command_id)] {
        if let Ok(value) = value.parse::<HeaderValue>() {
            map.insert(name, value);
        }
    }
    let mut decoded = false;
    if let Ok(headers) = command_headers(Some(&map)) {
        assert!(headers.first_version >= 1 && headers.last_version <= wire::MAX_VERSION);
        if let Ok(events) = decode_events(&headers, payload) {
            assert!(events.capacity() * MIN_EVENT_BYTES <= payload.len(), "more room than the bytes can fill");
            let new: Vec<_> =
                events.iter().map(|e| NewEvent { name: e.name.clone(), payload: e.payload.clone() }).collect();
            let again = encode_events(&events[0].provenance, &new);
            if payload.first() == Some(&wire::FORMAT) {
                assert_eq!(again, payload, "a decoded message encodes back");
            } else {
                // An older format encodes in today's, which reads back the same.
                assert_eq!(decode_events(&headers, &again).expect("a message encoded anew reads"), events);
            }
            decoded = true;
        }
    }
    if let Ok((snap, start)) = decode_snapshot(snapshot) {
        assert_eq!(snapshot_version(snapshot), Ok(snap.version));
        assert_eq!(encode_snapshot(&snap, start)[1..], snapshot[1..], "a decoded snapshot encodes back");
        decoded = true;
    }
    decoded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::wire::MAX_VERSION;

    fn provenance() -> Provenance {
        Provenance {
            command_id: "cmd.1 ü\r\n".into(),
            correlation_id: "corr".into(),
            causation_id: "cause".into(),
            timestamp_ms: 1_700_000_000_000,
            component_hash: "ab".repeat(32).into(),
            command: None,
        }
    }

    #[test]
    fn a_command_round_trips_through_headers_and_payload() {
        let events = vec![
            NewEvent { name: "Opened".into(), payload: vec![0x81, 0xa1, b'n', 1] },
            NewEvent { name: "Deposited".into(), payload: vec![] },
        ];
        let headers = command_headers(Some(&headers(4, 5, &provenance().command_id, 9, Some(3)))).unwrap();
        assert_eq!(headers, CommandHeaders { first_version: 4, last_version: 5, command_id: "cmd.1 ü\r\n".into() });
        let decoded = decode_events(&headers, &encode_events(&provenance(), &events)).unwrap();
        assert_eq!(decoded.iter().map(|e| e.version).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(decoded[0].payload, events[0].payload);
        assert_eq!(decoded[1].name, "Deposited");
        assert_eq!(*decoded[1].provenance, provenance());
    }

    #[test]
    fn a_message_keeps_the_command_it_decided() {
        let command = crate::store::RecordedCommand { name: "Deposit".into(), payload: vec![0x81, 0xa1, b'n', 5] };
        let provenance = Provenance { command: Some(command), ..provenance() };
        let events = [NewEvent { name: "Deposited".into(), payload: vec![0xc0] }];
        let headers = command_headers(Some(&headers(1, 1, &provenance.command_id, 0, None))).unwrap();
        let decoded = decode_events(&headers, &encode_events(&provenance, &events)).unwrap();
        assert_eq!(*decoded[0].provenance, provenance);
        // A message of format 1, written before commands were kept, reads with none.
        let mut old = Encoder::with_format(1, 64);
        old.provenance(&provenance);
        old.u32(1);
        old.str("Deposited");
        old.bytes(&[0xc0]);
        let decoded = decode_events(&headers, &old.finish(&[])).unwrap();
        assert_eq!(*decoded[0].provenance, Provenance { command: None, ..provenance });
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let events = [NewEvent { name: "E".into(), payload: vec![1, 2, 3] }];
        let good = encode_events(&provenance(), &events);
        let headers = command_headers(Some(&headers(1, 1, &provenance().command_id, 0, None))).unwrap();
        for cut in 0..good.len() {
            assert!(decode_events(&headers, &good[..cut]).is_err(), "a payload cut at {cut} must not decode");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode_events(&headers, &trailing).is_err());
        let two = CommandHeaders { last_version: 2, ..headers.clone() };
        assert!(decode_events(&two, &good).unwrap_err().contains("1 events"));
        let other = CommandHeaders { command_id: "other".into(), ..headers };
        assert!(decode_events(&other, &good).is_err());

        assert!(command_headers(None).is_err());
        let with = |pairs: &[(&str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, *value);
            }
            command_headers(Some(&map))
        };
        let error = |pairs: &[(&str, &str)]| with(pairs).unwrap_err();
        assert!(error(&[(VERSIONS, "2-1"), (COMMAND_ID, "c")]).contains("not a range"));
        assert!(error(&[(VERSIONS, "0-0"), (COMMAND_ID, "c")]).contains("not a range"));
        assert!(error(&[(VERSIONS, "3"), (COMMAND_ID, "c")]).contains("is not <first>-<last>"));
        assert!(error(&[(VERSIONS, "1-x"), (COMMAND_ID, "c")]).contains("is not a version"));
        assert!(error(&[(VERSIONS, "1-1")]).contains("no Aether-Command-Id header"));
        assert!(error(&[(COMMAND_ID, "c")]).contains("no Aether-Versions header"));
        assert!(error(&[(FIRST_VERSION, "2"), (COMMAND_ID, "c")]).contains("no Aether-Last-Version header"));
    }

    #[test]
    fn messages_written_with_the_earlier_headers_still_read() {
        let legacy = [(FIRST_VERSION, "3"), (LAST_VERSION, "4"), (COMMAND_ID, "c1"), ("Aether-Component-Hash", "ab")];
        let mut map = HeaderMap::new();
        for (name, value) in legacy {
            map.insert(name, value);
        }
        let read = command_headers(Some(&map)).unwrap();
        assert_eq!(read, CommandHeaders { first_version: 3, last_version: 4, command_id: "c1".into() });
    }

    #[test]
    fn a_snapshot_keeps_its_replay_start() {
        let snapshot = Snapshot { version: 9, component_hash: "cd".into(), state: vec![7; 100] };
        let start = Mark { version: 8, seq: 1234 };
        let bytes = encode_snapshot(&snapshot, start);
        assert_eq!(snapshot_version(&bytes).unwrap(), 9);
        assert_eq!(decode_snapshot(&bytes).unwrap(), (snapshot, start));
        assert!(decode_snapshot(&bytes[..20]).is_err());
        assert!(decode_snapshot(b"garbage").is_err());
    }

    /// The attack of issue 19: a message whose headers and payload agree on
    /// four billion events, with nothing behind the count. The old decoder
    /// reserved `u32::MAX` events (256 GiB) before reading the first.
    #[test]
    fn a_message_claiming_four_billion_events_is_refused_before_allocating() {
        let mut payload = Encoder::new(64);
        payload.provenance(&provenance());
        payload.u32(u32::MAX);
        let payload = payload.finish(b"a few bytes, not four billion events");
        let headers = CommandHeaders {
            first_version: 1,
            last_version: u64::from(u32::MAX),
            command_id: provenance().command_id.to_string(),
        };
        let started = std::time::Instant::now();
        let err = decode_events(&headers, &payload).unwrap_err();
        assert!(err.starts_with("event count 4294967295 needs at least 34359738360 bytes"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "refused at once, not after reading");
    }

    #[test]
    fn versions_and_positions_that_would_overflow_are_refused() {
        let mut map = HeaderMap::new();
        map.insert(VERSIONS, format!("1-{}", u64::MAX).as_str());
        map.insert(COMMAND_ID, "c");
        let err = command_headers(Some(&map)).unwrap_err();
        assert!(err.contains("above the highest version"), "{err}");
        let snapshot = Snapshot { version: 9, component_hash: "cd".into(), state: vec![] };
        for start in [Mark { version: 1, seq: u64::MAX }, Mark { version: MAX_VERSION + 1, seq: 1 }] {
            let err = decode_snapshot(&encode_snapshot(&snapshot, start)).unwrap_err();
            assert!(err.contains("above the highest version"), "{err}");
        }
        let huge = Snapshot { version: u64::MAX, ..snapshot };
        assert!(snapshot_version(&encode_snapshot(&huge, Mark::START)).is_err());
    }
}
