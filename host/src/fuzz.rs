//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, off by
//! default; not part of the API): one function per decoder that reads bytes
//! from outside the process, each taking whatever bytes the fuzzer makes.
//!
//! Each function calls the decoder and checks what a decoder must never do
//! whatever it is given: panic, reserve more than its input can fill, or
//! decode something that does not encode back to the bytes it came from.
//! Allocation beyond the input is also caught by the fuzzer itself
//! (`-malloc_limit_mb`, see `docs/fuzzing.md`): a decoder that sizes a
//! buffer from a header fails there before it returns.
//!
//! Where a decoder takes more than bytes (a message's headers, a segment's
//! key), the input is split: a first byte `n`, then `n` bytes for the
//! first part, then the rest (see [`prefixed`]).
//!
//! Each returns whether the input decoded (or, for a check, passed), so the
//! seeds in `fuzz/seeds/` can be checked to be real examples; the targets
//! ignore it.

use crate::api::json;
use crate::api::nats::{NatsApiConfig, parse_request};
use crate::bus::BusEvent;
use crate::bus::nats::Gaps;
use crate::store::jetstream::subject::{decode_token, encode_token};
use std::num::NonZeroUsize;

/// The guest payload check of `actor`, compiled a second time here so the
/// fuzz targets reach it without widening `actor`'s interface (it is
/// `pub(super)` there, and this feature should not change `actor`).
#[path = "actor/msgpack.rs"]
#[allow(clippy::duplicate_mod)]
mod walker;

/// A JetStream message: `[n][Aether-Versions: n bytes][m][Aether-Command-Id:
/// m bytes][payload]`.
pub fn jetstream_message(data: &[u8]) -> bool {
    let (versions, rest) = prefixed(data);
    let (command_id, payload) = prefixed(rest);
    let (versions, command_id) = (String::from_utf8_lossy(versions), String::from_utf8_lossy(command_id));
    crate::store::jetstream::fuzz(&versions, &command_id, payload, &[])
}

/// A snapshot entry of the JetStream store's key-value bucket.
pub fn jetstream_snapshot(data: &[u8]) -> bool {
    crate::store::jetstream::fuzz("", "", &[], data)
}

/// A value of the embedded store (a segment, a snapshot, a log record's
/// writes): `[segment key: 8 bytes, little-endian][value]`.
pub fn embedded_value(data: &[u8]) -> bool {
    let (key, value) = data.split_first_chunk::<8>().map_or((0, data), |(k, v)| (u64::from_le_bytes(*k), v));
    crate::store::embedded::fuzz(key, value, &[])
}

/// The bytes of an embedded store's log file.
pub fn embedded_log(data: &[u8]) -> bool {
    crate::store::embedded::fuzz(1, &[], data)
}

/// The check every guest event payload passes before it is stored,
/// against rmpv's reader: they must agree on what is one MessagePack value.
pub fn msgpack_walker(data: &[u8]) -> bool {
    let walked = walker::check_one_value(data);
    let mut rest = data;
    // rmpv recurses, a few KiB of stack per level: bounded, as the walker
    // (which needs no stack) is not, so rmpv's depth errors say nothing.
    match rmpv::decode::read_value_with_max_depth(&mut rest, 2 * json::MAX_DEPTH + 8) {
        // rmpv reads the marker 0xc1, which MessagePack never assigned, as nil.
        Ok(_) if walked == Err(walker::Malformed::Reserved) => {}
        Ok(value) if rest.is_empty() && all_utf8(&value) => assert_eq!(walked, Ok(()), "rmpv reads one value"),
        Ok(_) => assert!(walked.is_err(), "rmpv reads trailing bytes or a string that is not UTF-8"),
        Err(rmpv::decode::Error::DepthLimitExceeded) => {}
        Err(e) => assert!(walked.is_err(), "rmpv refuses it ({e}) but the walker accepts it"),
    }
    walked.is_ok()
}

/// MessagePack to JSON (stored events and states on their way out), against
/// the rmpv-based conversion it replaced, and JSON to MessagePack (command
/// bodies on their way in).
pub fn msgpack_json(data: &[u8]) -> bool {
    let mut decoded = false;
    let converted = json::from_msgpack(data);
    match &converted {
        Ok(value) => assert_eq!(reference::from_msgpack(data).as_ref(), Some(value), "rmpv reads the same"),
        // rmpv reads the marker 0xc1 as nil; MessagePack never assigned it.
        // rmpv has no budget for keys' text: it would take the time and
        // memory the budget spares.
        Err(e)
            if e.starts_with("nested deeper") || e.starts_with("map keys") || e.ends_with("reserved marker 0xc1") => {}
        Err(e) => assert_eq!(reference::from_msgpack(data), None, "rmpv reads what was refused: {e}"),
    }
    if let Ok(value) = converted {
        let again = json::to_msgpack(&value);
        assert_eq!(walker::check_one_value(&again), Ok(()));
        // One round turns integral floats into integers (as JSON Schema
        // counts them); after it, the conversion is a fixed point.
        let value = json::from_msgpack(&again).expect("what the host wrote reads back");
        assert_eq!(json::to_msgpack(&value), again, "MessagePack from JSON is a fixed point after one round");
        decoded = true;
    }
    if let Ok(msgpack) = json::body_to_msgpack(data) {
        assert_eq!(walker::check_one_value(&msgpack), Ok(()), "a body becomes one MessagePack value");
        assert!(json::from_msgpack(&msgpack).is_ok());
        decoded = true;
    }
    decoded
}

/// A bus event as a NATS subscriber receives it.
pub fn bus_event(data: &[u8]) -> bool {
    let Ok(event) = BusEvent::decode(data) else { return false };
    assert_eq!(BusEvent::decode(&event.encode()).as_ref(), Ok(&event), "a decoded event encodes back");
    let mut gaps = Gaps::new(NonZeroUsize::MIN);
    gaps.observe(&event);
    gaps.observe(&BusEvent { version: event.version.wrapping_add(u64::MAX / 2), ..event.clone() });
    gaps.observe(&BusEvent { version: u64::MAX, ..event });
    true
}

/// A command request on the NATS door: `[n][subject: n bytes][body]`.
pub fn nats_request(data: &[u8]) -> bool {
    let (subject, body) = prefixed(data);
    let subject = String::from_utf8_lossy(subject);
    let config = NatsApiConfig { max_body_bytes: 64 * 1024, ..NatsApiConfig::default() };
    let token = subject.rsplit('.').next().unwrap_or_default();
    if let Some(decoded) = decode_token(token) {
        assert_eq!(encode_token(&decoded), token, "only canonical tokens decode");
    }
    let Ok(request) = parse_request(&config, &subject, body) else { return false };
    assert_eq!(walker::check_one_value(&request.payload), Ok(()), "the payload is one MessagePack value");
    true
}

/// An entry: the input's bytes in, whether they decoded out.
pub type Entry = fn(&[u8]) -> bool;

/// Every entry, by the name of its fuzz target.
pub const TARGETS: &[(&str, Entry)] = &[
    ("jetstream_message", jetstream_message),
    ("jetstream_snapshot", jetstream_snapshot),
    ("embedded_value", embedded_value),
    ("embedded_log", embedded_log),
    ("msgpack_walker", msgpack_walker),
    ("msgpack_json", msgpack_json),
    ("bus_event", bus_event),
    ("nats_request", nats_request),
];

/// `[n][n bytes][rest]`, with `n` cut to what is there.
pub fn prefixed(data: &[u8]) -> (&[u8], &[u8]) {
    match data.split_first() {
        Some((&n, rest)) => rest.split_at(usize::from(n).min(rest.len())),
        None => (&[], &[]),
    }
}

/// MessagePack to JSON through rmpv, as `api::json` converted before it
/// read without recursion: the oracle its reader is checked against.
mod reference {
    use rmpv::Value as Msg;
    use serde_json::Value as Json;

    /// `None` where rmpv finds no single value (or one nested past the
    /// converter's limit: rmpv counts two units of depth per level, and
    /// recursing deeper would only test the fuzzer's stack).
    pub(super) fn from_msgpack(bytes: &[u8]) -> Option<Json> {
        let mut rest = bytes;
        let value = rmpv::decode::read_value_with_max_depth(&mut rest, 2 * super::json::MAX_DEPTH + 8).ok()?;
        rest.is_empty().then(|| to_json(value))
    }

    fn to_json(value: Msg) -> Json {
        match value {
            Msg::Nil => Json::Null,
            Msg::Boolean(b) => Json::Bool(b),
            Msg::Integer(i) => match (i.as_u64(), i.as_i64()) {
                (Some(u), _) => Json::from(u),
                (None, Some(i)) => Json::from(i),
                (None, None) => Json::Null,
            },
            Msg::F32(f) => float(f64::from(f)),
            Msg::F64(f) => float(f),
            Msg::String(s) => s.into_str().map_or(Json::Null, Json::String),
            Msg::Binary(bytes) => bytes.into_iter().map(Json::from).collect(),
            Msg::Array(items) => items.into_iter().map(to_json).collect(),
            Msg::Map(entries) => Json::Object(entries.into_iter().map(|(k, v)| (key(k), to_json(v))).collect()),
            Msg::Ext(kind, data) => serde_json::json!({ "ext": kind, "data": data }),
        }
    }

    fn float(f: f64) -> Json {
        serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)
    }

    fn key(key: Msg) -> String {
        match key {
            Msg::String(s) if s.is_str() => s.into_str().unwrap_or_default(),
            other => to_json(other).to_string(),
        }
    }
}

fn all_utf8(value: &rmpv::Value) -> bool {
    match value {
        rmpv::Value::String(s) => s.is_str(),
        rmpv::Value::Array(items) => items.iter().all(all_utf8),
        rmpv::Value::Map(entries) => entries.iter().all(|(k, v)| all_utf8(k) && all_utf8(v)),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The crafted inputs of the unit tests, through the fuzz entries: what
    /// the fuzz targets would report on the old code.
    #[test]
    fn the_entries_survive_crafted_inputs() {
        let mut message = vec![12];
        message.extend(b"1-4294967295");
        message.push(1);
        message.push(b'c');
        // The payload: the format byte, a provenance of command id "c" (the
        // other ids, the timestamp and the hash zero or empty), and a count
        // of four billion events.
        message.extend([1, 1, 0, 0, 0, b'c']);
        message.extend([0; 4 + 4 + 8 + 4]);
        message.extend(u32::MAX.to_le_bytes());
        assert!(!jetstream_message(&message));
        let mut value = u64::MAX.to_le_bytes().to_vec();
        value.extend([1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(!embedded_value(&value));
        for (_, entry) in TARGETS {
            entry(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0]);
            entry(&[]);
        }
    }

    /// The seeds the fuzzers start from (each a real example that decodes)
    /// and the inputs that once failed (each kept as a regression case).
    #[test]
    fn kept_inputs_replay() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        for (target, entry) in TARGETS {
            let seeds = files(&dir.join("seeds").join(target));
            assert!(!seeds.is_empty(), "fuzz/seeds/{target} holds examples");
            for (path, bytes) in seeds {
                assert!(entry(&bytes), "seed {} decodes", path.display());
            }
            for (_, bytes) in files(&dir.join("regressions").join(target)) {
                entry(&bytes);
            }
        }
    }

    fn files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
        files.sort();
        files.into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect()
    }

    #[test]
    fn prefixed_splits_within_the_input() {
        assert_eq!(prefixed(&[2, 1, 2, 3]), (&[1, 2][..], &[3][..]));
        assert_eq!(prefixed(&[9, 1]), (&[1][..], &[][..]));
        assert_eq!(prefixed(&[]), (&[][..], &[][..]));
    }
}
