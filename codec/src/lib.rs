//! How commands and events cross the WebAssembly boundary between the
//! Aether host and a guest: a name and a MessagePack payload.
//!
//! A serde enum value `Deposited { amount: 5 }` travels as the name
//! `"Deposited"` and the payload `{"amount": 5}` (MessagePack, field names
//! kept), so the host can route and convert to JSON without knowing Rust
//! types. A unit variant's payload is `nil`.
//!
//! Both sides depend on this crate (the guest SDK re-exports it as
//! `aether_guest::codec`): the host packs the batches the guest unpacks
//! with the same code.
//!
//! Layout:
//! - [`split`] / [`join`]: an enum value to and from its name and payload.
//! - [`pack`] / [`unpack`] / [`unpack_one`]: the contract's `packed-events`.
//! - [`encode_named`]: MessagePack with field names.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// MessagePack `nil`, the payload of a unit variant.
pub const NIL: &[u8] = &[0xc0];

/// Packs events into one payload, the contract's `packed-events` (the
/// batch `apply` takes): for each, the length (u32, little endian)
/// of the event as [`join`] rebuilds it (the variant name, as a map of one
/// entry to its payload unless the payload is `nil`), then those bytes. The
/// guest decodes each in place, with no copy and no allocation.
pub fn pack<'a>(events: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, payload) in events {
        pack_into(&mut out, name, payload);
    }
    out
}

/// Appends one event to a [`pack`]ed payload: for a caller that sizes the
/// buffer once for the whole batch (about `10 + name + payload` bytes
/// each).
pub fn pack_into(out: &mut Vec<u8>, name: &str, payload: &[u8]) {
    let unit = payload.is_empty() || payload == NIL;
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    if !unit {
        out.push(0x81);
    }
    write_str(out, name);
    if !unit {
        out.extend_from_slice(payload);
    }
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// A MessagePack string, written straight into the buffer (the host packs
/// every replayed event through here).
fn write_str(out: &mut Vec<u8>, s: &str) {
    match s.len() {
        n if n < 32 => out.push(0xa0 | n as u8),
        n if n <= 0xff => out.extend_from_slice(&[0xd9, n as u8]),
        n if n <= 0xffff => {
            out.push(0xda);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0xdb);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
    out.extend_from_slice(s.as_bytes());
}

/// The events of a [`pack`]ed payload, in order, each still encoded (see
/// [`unpack_one`]), or why the rest cannot be read.
pub fn unpack(packed: &[u8]) -> impl Iterator<Item = Result<&[u8], String>> {
    let mut rest = packed;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let item = rest.split_first_chunk::<4>().and_then(|(len, tail)| {
            let len = u32::from_le_bytes(*len) as usize;
            let event = tail.get(..len)?;
            rest = &tail[len..];
            Some(event)
        });
        if item.is_none() {
            rest = &[];
        }
        Some(item.ok_or_else(|| "truncated packed events".to_string()))
    })
}

/// Decodes one event of a packed payload, in place. What does not decode
/// directly is decoded by [`join`], so the result and the error are
/// exactly what the event would give unpacked.
///
/// # Errors
///
/// As [`join`].
pub fn unpack_one<T: DeserializeOwned>(event: &[u8]) -> Result<T, String> {
    if let Ok(value) = rmp_serde::from_slice(event) {
        return Ok(value);
    }
    let (name, payload) = match rmp::decode::read_marker(&mut &event[..]) {
        Ok(rmp::Marker::FixMap(1)) => {
            let mut rest = &event[1..];
            (read_str(&mut rest)?, rest)
        }
        _ => (read_str(&mut &event[..])?, NIL),
    };
    join(&name, payload)
}

/// Serialises a value as MessagePack with field names (maps, not arrays).
pub fn encode_named<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Serialising plain data into a Vec cannot fail; a custom `Serialize` that
    // errors is a bug in the domain, reported as a trap with this message.
    // Room for a typical command or event up front: growing from empty
    // reallocates three or four times on the way to a few dozen bytes.
    let mut out = Vec::with_capacity(64);
    rmp_serde::encode::write_named(&mut out, value).expect("aether-guest: value does not serialise as MessagePack");
    out
}

/// Splits an enum value into its variant name and payload.
///
/// # Errors
///
/// If the value does not serialise as an externally tagged enum variant.
pub fn split<T: Serialize>(value: &T) -> Result<(String, Vec<u8>), String> {
    split_encoded(&encode_named(value))
}

/// [`split`] of a value already serialised with [`encode_named`].
///
/// # Errors
///
/// If the bytes are not an externally tagged enum variant.
pub fn split_encoded(bytes: &[u8]) -> Result<(String, Vec<u8>), String> {
    let mut rd = bytes;
    let marker = rmp::decode::read_marker(&mut &bytes[..]).map_err(|_| "empty value".to_string())?;
    match marker {
        rmp::Marker::FixStr(_) | rmp::Marker::Str8 | rmp::Marker::Str16 | rmp::Marker::Str32 => {
            let name = read_str(&mut rd)?;
            Ok((name, NIL.to_vec()))
        }
        rmp::Marker::FixMap(_) | rmp::Marker::Map16 | rmp::Marker::Map32 => {
            let len = rmp::decode::read_map_len(&mut rd).map_err(|e| e.to_string())?;
            if len != 1 {
                return Err(format!("expected an enum variant (a map of one entry), found a map of {len}"));
            }
            let name = read_str(&mut rd)?;
            Ok((name, rd.to_vec()))
        }
        other => Err(format!("expected an enum variant, found MessagePack {other:?}")),
    }
}

/// Rebuilds an enum value from a variant name and payload.
///
/// # Errors
///
/// A message naming the variant and why its payload does not decode.
pub fn join<T: DeserializeOwned>(name: &str, payload: &[u8]) -> Result<T, String> {
    let unit = payload.is_empty() || payload == NIL;
    // The joined value goes in one buffer kept for the next call (an
    // instance serves one actor, one call at a time): no allocation per
    // command, in a guest where each is a cold walk through the allocator.
    thread_local! {
        static JOINED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    JOINED.with(|joined| {
        let mut buf = joined.borrow_mut();
        buf.clear();
        if unit {
            rmp::encode::write_str(&mut *buf, name).map_err(|e| e.to_string())?;
        } else {
            rmp::encode::write_map_len(&mut *buf, 1).map_err(|e| e.to_string())?;
            rmp::encode::write_str(&mut *buf, name).map_err(|e| e.to_string())?;
            buf.extend_from_slice(payload);
        }
        let decoded = decode_joined(name, payload, &buf);
        if buf.capacity() > 64 * 1024 {
            // One huge command should not pin its buffer for good.
            *buf = Vec::new();
        }
        decoded
    })
}

fn decode_joined<T: DeserializeOwned>(name: &str, payload: &[u8], buf: &[u8]) -> Result<T, String> {
    match rmp_serde::from_slice(buf) {
        Ok(value) => Ok(value),
        // `{}` for a unit variant, as a JSON client may send it.
        Err(_) if is_empty_map(payload) => {
            let mut buf = Vec::new();
            rmp::encode::write_str(&mut buf, name).map_err(|e| e.to_string())?;
            rmp_serde::from_slice(&buf).map_err(|e| format!("`{name}`: {e}"))
        }
        Err(e) => Err(format!("`{name}`: {}", explain::<T>(name, payload).unwrap_or_else(|| e.to_string()))),
    }
}

/// Why a payload does not fit, in the terms of its fields, e.g.
/// `amount: invalid type: string "lots", expected u64`. MessagePack's own
/// error names only the wire marker it did not expect. Only on the failure
/// path: the payload is decoded again through JSON values for serde's words
/// and the field's path. `None` if the payload is not plain data.
fn explain<T: DeserializeOwned>(name: &str, payload: &[u8]) -> Option<String> {
    let value: serde_json::Value = rmp_serde::from_slice(payload).ok()?;
    let tagged = serde_json::Value::Object([(name.to_owned(), value)].into_iter().collect());
    match serde_path_to_error::deserialize::<_, T>(tagged) {
        Ok(_) => None,
        Err(e) => {
            // The path starts with the variant: the caller names it already.
            let path = e.path().to_string();
            let field = path.strip_prefix(name).unwrap_or(&path).trim_matches('.');
            let cause = e.into_inner();
            Some(if field.is_empty() || field == "?" { cause.to_string() } else { format!("{field}: {cause}") })
        }
    }
}

fn is_empty_map(payload: &[u8]) -> bool {
    payload == [0x80]
}

fn read_str(rd: &mut &[u8]) -> Result<String, String> {
    let len = rmp::decode::read_str_len(rd).map_err(|e| e.to_string())? as usize;
    if rd.len() < len {
        return Err("truncated variant name".into());
    }
    let (name, rest) = rd.split_at(len);
    *rd = rest;
    String::from_utf8(name.to_vec()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum E {
        Unit,
        Struct { a: u64, b: String },
        Newtype(u32),
    }

    #[test]
    fn variants_round_trip() {
        // The last is joined on the heap rather than on the stack.
        for value in [E::Unit, E::Struct { a: 7, b: "x".into() }, E::Newtype(3), E::Struct { a: 8, b: "y".repeat(300) }]
        {
            let (name, payload) = split(&value).unwrap();
            assert_eq!(join::<E>(&name, &payload).unwrap(), value);
        }
    }

    #[test]
    fn payload_is_the_variant_content_with_field_names() {
        let (name, payload) = split(&E::Struct { a: 1, b: "y".into() }).unwrap();
        assert_eq!(name, "Struct");
        let map: std::collections::BTreeMap<String, rmpv_like::Any> = rmp_serde::from_slice(&payload).unwrap();
        assert!(map.contains_key("a") && map.contains_key("b"));
        assert_eq!(split(&E::Unit).unwrap().1, NIL);
    }

    #[test]
    fn a_payload_that_does_not_fit_is_explained_by_field() {
        let payload = rmp_serde::to_vec_named(&serde_json::json!({"a": "lots", "b": "x"})).unwrap();
        let err = join::<E>("Struct", &payload).unwrap_err();
        assert_eq!(err, r#"`Struct`: a: invalid type: string "lots", expected u64"#);
        let payload = rmp_serde::to_vec_named(&serde_json::json!({"a": 1})).unwrap();
        assert_eq!(join::<E>("Struct", &payload).unwrap_err(), "`Struct`: missing field `b`");
        let err = join::<E>("Nope", NIL).unwrap_err();
        assert!(err.starts_with("`Nope`: unknown variant `Nope`"), "{err}");
    }

    #[test]
    fn unit_variant_accepts_nil_empty_and_empty_map() {
        assert_eq!(join::<E>("Unit", NIL).unwrap(), E::Unit);
        assert_eq!(join::<E>("Unit", &[]).unwrap(), E::Unit);
        assert_eq!(join::<E>("Unit", &[0x80]).unwrap(), E::Unit);
    }

    #[test]
    fn packed_events_round_trip() {
        let events = [E::Unit, E::Struct { a: 7, b: "x".into() }, E::Newtype(3)];
        let split: Vec<_> = events.iter().map(|e| split(e).unwrap()).collect();
        let packed = pack(split.iter().map(|(n, p)| (n.as_str(), p.as_slice())));
        let back: Vec<E> = unpack(&packed).map(|item| item.and_then(unpack_one)).collect::<Result<_, _>>().unwrap();
        assert_eq!(back, events);
        assert_eq!(unpack(&[]).count(), 0);
    }

    #[test]
    fn packed_events_decode_as_join_does() {
        // `{}` for a unit variant, and a payload that does not fit.
        let packed = pack([("Unit", &[0x80][..]), ("Struct", &[0xc1][..])]);
        let items: Vec<&[u8]> = unpack(&packed).collect::<Result<_, _>>().unwrap();
        assert_eq!(unpack_one::<E>(items[0]).unwrap(), E::Unit);
        assert_eq!(unpack_one::<E>(items[1]).unwrap_err(), join::<E>("Struct", &[0xc1]).unwrap_err());
    }

    #[test]
    fn names_of_every_length_pack_as_messagepack_strings() {
        for len in [0, 31, 32, 255, 256, 65_535, 65_536] {
            let name = "n".repeat(len);
            let packed = pack([(name.as_str(), NIL)]);
            let mut expected = Vec::new();
            rmp::encode::write_str(&mut expected, &name).unwrap();
            assert_eq!(&packed[4..], &expected[..], "a name of {len} bytes");
        }
    }

    #[test]
    fn truncated_packed_events_are_an_error_not_an_end() {
        let packed = pack([("Unit", NIL)]);
        let items: Vec<_> = unpack(&packed[..packed.len() - 1]).collect();
        assert_eq!(items.len(), 1);
        assert!(items[0].is_err());
    }

    #[test]
    fn bad_payload_names_the_variant() {
        let err = join::<E>("Struct", &[0xc1]).unwrap_err();
        assert!(err.starts_with("`Struct`"), "{err}");
        assert!(join::<E>("Nope", NIL).is_err());
    }

    mod rmpv_like {
        /// Accepts any MessagePack value.
        #[derive(Debug)]
        pub struct Any;
        impl<'de> serde::Deserialize<'de> for Any {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                serde::de::IgnoredAny::deserialize(d).map(|_| Any)
            }
        }
    }
}
