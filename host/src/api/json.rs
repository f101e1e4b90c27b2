//! JSON at the edges, MessagePack inside: the host converts payloads and
//! states so users speak JSON while guests keep their compact encoding.
//!
//! JSON to MessagePack keeps field names (maps, not arrays), which is what
//! the guest SDK decodes. MessagePack to JSON covers every MessagePack value,
//! including what JSON lacks: binary becomes an array of bytes, non-string
//! map keys become their JSON text, extension values become
//! `{"ext": type, "data": [bytes]}`.
//!
//! The MessagePack read here was stored by guests, which may nest values as
//! deep as they like. So the reader keeps its place on a heap stack, not the
//! call stack, and stops at [`MAX_DEPTH`]: the values it builds are dropped
//! and serialised recursively. (rmpv's reader, used before, took about 6 KiB
//! of stack per level and allowed 511 levels: an event a guest had stored
//! 500 deep aborted the host when its JSON was asked for.)

use serde_json::Value as Json;

/// MessagePack `nil`: the payload of a command without fields.
pub const NIL: &[u8] = &[0xc0];

/// The deepest nesting of arrays and maps converted to JSON: as deep as a
/// JSON body may nest (serde_json's limit), so whatever came in as JSON goes
/// out again.
pub const MAX_DEPTH: usize = 128;

/// A JSON value as MessagePack with field names.
///
/// A number written with a fraction or exponent but integral (`5.0`, `1e3`)
/// travels as an integer: JSON Schema counts it as one, so a payload the
/// model's schema allows decodes into a guest's integer field (and a float
/// field still takes an integer).
pub fn to_msgpack(value: &Json) -> Vec<u8> {
    // A `serde_json::Value` always serialises: its maps have string keys.
    rmp_serde::to_vec_named(&Integral(value)).expect("a JSON value serialises as MessagePack")
}

/// Serialises a JSON value with integral floats as integers.
struct Integral<'a>(&'a Json);

impl serde::Serialize for Integral<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Json::Number(n) => match n.as_f64().filter(|_| n.is_f64()) {
                // -0.0 stays a float, so a float field keeps its sign.
                Some(f) if f.fract() == 0.0 && !(f == 0.0 && f.is_sign_negative()) => {
                    if (0.0..18_446_744_073_709_551_616.0).contains(&f) {
                        serializer.serialize_u64(f as u64)
                    } else if (-9_223_372_036_854_775_808.0..0.0).contains(&f) {
                        serializer.serialize_i64(f as i64)
                    } else {
                        serializer.serialize_f64(f)
                    }
                }
                _ => n.serialize(serializer),
            },
            Json::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Integral(item))?;
                }
                seq.end()
            }
            Json::Object(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(key, &Integral(value))?;
                }
                map.end()
            }
            other => other.serialize(serializer),
        }
    }
}

/// A command body as MessagePack: an empty body is `nil` (a command
/// without fields), anything else must be one JSON value.
///
/// # Errors
///
/// The JSON parser's message, naming line and column.
pub fn body_to_msgpack(body: &[u8]) -> Result<Vec<u8>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(NIL.to_vec());
    }
    serde_json::from_slice::<Json>(body).map(|v| to_msgpack(&v)).map_err(|e| format!("the body is not JSON: {e}"))
}

/// A MessagePack value (one, with nothing after it) as JSON.
///
/// # Errors
///
/// If the bytes are not exactly one MessagePack value, or nest arrays and
/// maps deeper than [`MAX_DEPTH`].
pub fn from_msgpack(bytes: &[u8]) -> Result<Json, String> {
    let mut reader = Reader(bytes);
    let mut key_budget = KEY_TEXT_PER_BYTE * bytes.len() + 256;
    // The arrays and maps still being filled, innermost last.
    let mut open: Vec<Open> = Vec::new();
    loop {
        let mut value = match reader.next().map_err(|e| format!("not MessagePack: {e}"))? {
            Item::Value(value) => value,
            Item::Array(_) | Item::Map(_) if open.len() == MAX_DEPTH => {
                return Err(format!("nested deeper than {MAX_DEPTH} levels"));
            }
            Item::Array(0) => Json::Array(Vec::new()),
            Item::Map(0) => Json::Object(serde_json::Map::new()),
            // Each item takes a byte at least, so the bytes left bound the room reserved.
            Item::Array(len) => {
                open.push(Open::Array { items: Vec::with_capacity(len.min(reader.0.len())), left: len });
                continue;
            }
            Item::Map(len) => {
                open.push(Open::Map { entries: serde_json::Map::new(), key: None, left: len });
                continue;
            }
        };
        // Place the value in the innermost open container; a container
        // it completes is itself a value for the next one out.
        loop {
            match open.last_mut() {
                None if reader.0.is_empty() => return Ok(value),
                None => return Err(format!("{} bytes after the MessagePack value", reader.0.len())),
                Some(Open::Array { items, left }) => {
                    items.push(value);
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                    value = Json::Array(std::mem::take(items));
                }
                Some(Open::Map { key: key @ None, .. }) => {
                    *key = Some(key_text(value, &mut key_budget)?);
                    break;
                }
                Some(Open::Map { entries, key, left }) => {
                    entries.insert(key.take().unwrap_or_default(), value);
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                    value = Json::Object(std::mem::take(entries));
                }
            }
            open.pop();
        }
    }
}

/// An array or a map being read.
enum Open {
    Array { items: Vec<Json>, left: usize },
    Map { entries: serde_json::Map<String, Json>, key: Option<String>, left: usize },
}

/// What a marker starts: a whole value, or the head of a container whose
/// items follow.
enum Item {
    Value(Json),
    Array(usize),
    Map(usize),
}

/// MessagePack markers, read from the front of a slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let (taken, rest) = self.0.split_at_checked(n).ok_or("it ends inside a value")?;
        self.0 = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or("it ends inside a value")?;
        self.0 = rest;
        Ok(*head)
    }

    /// A big-endian length of `N` bytes.
    fn len<const N: usize>(&mut self) -> Result<usize, &'static str> {
        Ok(self.array::<N>()?.iter().fold(0, |n, &b| (n << 8) | usize::from(b)))
    }

    /// A value whose length comes first, in `N` bytes.
    fn sized<const N: usize>(
        &mut self,
        read: fn(&mut Self, usize) -> Result<Json, &'static str>,
    ) -> Result<Json, &'static str> {
        let len = self.len::<N>()?;
        read(self, len)
    }

    fn next(&mut self) -> Result<Item, &'static str> {
        let marker = self.array::<1>()?[0];
        let value = match marker {
            0x00..=0x7f => Json::from(marker),
            0x80..=0x8f => return Ok(Item::Map(usize::from(marker & 0x0f))),
            0x90..=0x9f => return Ok(Item::Array(usize::from(marker & 0x0f))),
            0xa0..=0xbf => self.string(usize::from(marker & 0x1f))?,
            0xc0 => Json::Null,
            0xc1 => return Err("it uses the reserved marker 0xc1"),
            0xc2 => Json::Bool(false),
            0xc3 => Json::Bool(true),
            0xc4 => self.sized::<1>(Self::bytes)?,
            0xc5 => self.sized::<2>(Self::bytes)?,
            0xc6 => self.sized::<4>(Self::bytes)?,
            0xc7 => self.sized::<1>(Self::ext)?,
            0xc8 => self.sized::<2>(Self::ext)?,
            0xc9 => self.sized::<4>(Self::ext)?,
            0xca => float(f64::from(f32::from_be_bytes(self.array()?))),
            0xcb => float(f64::from_be_bytes(self.array()?)),
            0xcc => Json::from(u8::from_be_bytes(self.array()?)),
            0xcd => Json::from(u16::from_be_bytes(self.array()?)),
            0xce => Json::from(u32::from_be_bytes(self.array()?)),
            0xcf => Json::from(u64::from_be_bytes(self.array()?)),
            0xd0 => Json::from(i8::from_be_bytes(self.array()?)),
            0xd1 => Json::from(i16::from_be_bytes(self.array()?)),
            0xd2 => Json::from(i32::from_be_bytes(self.array()?)),
            0xd3 => Json::from(i64::from_be_bytes(self.array()?)),
            0xd4 => self.ext(1)?,
            0xd5 => self.ext(2)?,
            0xd6 => self.ext(4)?,
            0xd7 => self.ext(8)?,
            0xd8 => self.ext(16)?,
            0xd9 => self.sized::<1>(Self::string)?,
            0xda => self.sized::<2>(Self::string)?,
            0xdb => self.sized::<4>(Self::string)?,
            0xdc => return Ok(Item::Array(self.len::<2>()?)),
            0xdd => return Ok(Item::Array(self.len::<4>()?)),
            0xde => return Ok(Item::Map(self.len::<2>()?)),
            0xdf => return Ok(Item::Map(self.len::<4>()?)),
            0xe0..=0xff => Json::from(marker as i8),
        };
        Ok(Item::Value(value))
    }

    /// A string that is not UTF-8 becomes `null`, as JSON has no such string.
    fn string(&mut self, len: usize) -> Result<Json, &'static str> {
        Ok(std::str::from_utf8(self.take(len)?).map_or(Json::Null, |s| Json::String(s.to_owned())))
    }

    fn bytes(&mut self, len: usize) -> Result<Json, &'static str> {
        Ok(bytes_to_json(self.take(len)?))
    }

    /// An extension of `len` data bytes after its type byte.
    fn ext(&mut self, len: usize) -> Result<Json, &'static str> {
        let kind = i8::from_be_bytes(self.array()?);
        Ok(serde_json::json!({ "ext": kind, "data": bytes_to_json(self.take(len)?) }))
    }
}

/// JSON numbers cannot be NaN or infinite; those become `null`.
fn float(f: f64) -> Json {
    serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)
}

fn bytes_to_json(bytes: &[u8]) -> Json {
    Json::Array(bytes.iter().map(|&b| Json::from(b)).collect())
}

/// Map keys that are not strings become their JSON text, which quotes and
/// escapes the strings inside: a key nested in keys grows with each level
/// (every escape at least doubles a backslash), exponentially, so 284 bytes
/// could ask for gigabytes. Such keys' text may take this many bytes per
/// byte of input, in all.
const KEY_TEXT_PER_BYTE: usize = 16;

/// A map key as JSON text: a string as it is, anything else as its JSON,
/// paid from `budget`.
fn key_text(key: Json, budget: &mut usize) -> Result<String, String> {
    match key {
        Json::String(s) => Ok(s),
        other => {
            // Each level's text is at most six times the last's (`\u0000`
            // for a control character), so the largest made is bounded too.
            let text = other.to_string();
            *budget = budget.checked_sub(text.len()).ok_or_else(|| {
                format!("map keys that are not strings take more than {KEY_TEXT_PER_BYTE} bytes of JSON per byte")
            })?;
            Ok(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value as Msg;
    use serde_json::json;

    #[test]
    fn json_round_trips_through_msgpack() {
        let value = json!({"owner": "Ada", "amount": 5, "neg": -3, "ratio": 0.5, "tags": ["a", null, true], "nested": {"x": {}}});
        assert_eq!(from_msgpack(&to_msgpack(&value)).unwrap(), value);
    }

    #[test]
    fn integral_floats_travel_as_integers() {
        let value: Json =
            serde_json::from_str(r#"{"a": 5.0, "b": 1e3, "c": -2.0, "d": 0.5, "e": -0.0, "f": 1e30}"#).unwrap();
        let back = from_msgpack(&to_msgpack(&value)).unwrap();
        assert_eq!(back, json!({"a": 5, "b": 1000, "c": -2, "d": 0.5, "e": -0.0, "f": 1e30}));
        assert!(back["a"].is_u64() && back["c"].is_i64() && back["e"].is_f64() && back["f"].is_f64());
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Payload {
            amount: u64,
            ratio: f64,
        }
        let payload = to_msgpack(&json!({"amount": 57099.0, "ratio": 2}));
        assert_eq!(rmp_serde::from_slice::<Payload>(&payload).unwrap(), Payload { amount: 57099, ratio: 2.0 });
    }

    #[test]
    fn msgpack_beyond_json_still_converts() {
        let value = Msg::Map(vec![
            (Msg::from(7), Msg::Binary(vec![1, 2])),
            (Msg::from("nan"), Msg::F64(f64::NAN)),
            (Msg::from("ext"), Msg::Ext(3, vec![9])),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &value).unwrap();
        assert_eq!(from_msgpack(&bytes).unwrap(), json!({"7": [1, 2], "nan": null, "ext": {"ext": 3, "data": [9]}}));
    }

    #[test]
    fn bodies_empty_or_json_and_nothing_else() {
        assert_eq!(body_to_msgpack(b"").unwrap(), NIL);
        assert_eq!(body_to_msgpack(b" \n").unwrap(), NIL);
        assert_eq!(from_msgpack(&body_to_msgpack(br#"{"amount": 5}"#).unwrap()).unwrap(), json!({"amount": 5}));
        let err = body_to_msgpack(b"{amount: 5}").unwrap_err();
        assert!(err.starts_with("the body is not JSON: key must be a string at line 1 column 2"), "{err}");
    }

    /// Stored payloads and states are read back through here: headers that
    /// claim more than the bytes hold are errors found without reserving
    /// what they claim.
    #[test]
    fn lying_lengths_and_deep_nesting_are_errors_not_allocations() {
        for crafted in [
            &[0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0][..],   // array32 of four billion
            &[0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0], // map32 of four billion
            &[0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2],       // bin32 of 4 GiB
            &[0xdb, 0xff, 0xff, 0xff, 0xff, b'a'],       // str32 of 4 GiB
            &[0xc9, 0xff, 0xff, 0xff, 0xff, 1, 2],       // ext32 of 4 GiB
        ] {
            let started = std::time::Instant::now();
            assert!(from_msgpack(crafted).unwrap_err().starts_with("not MessagePack"), "{crafted:02x?}");
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
        }
        let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(body_to_msgpack(deep_json.as_bytes()).unwrap_err().contains("recursion limit"));
    }

    /// A guest may store a payload nested as deep as it likes (the payload
    /// check walks without recursion). Read with rmpv, 500 levels overflowed
    /// a 2 MiB stack (a Tokio worker's) and aborted the host; now the
    /// reader needs no stack per level and refuses past `MAX_DEPTH`, and
    /// what it builds up to there drops and serialises on a small stack.
    #[test]
    fn deep_nesting_is_refused_without_using_the_stack() {
        let nested = |levels: usize| {
            let mut bytes = vec![0x91; levels];
            bytes.push(0xc0);
            bytes
        };
        let on_small_stack = |bytes: Vec<u8>| {
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || from_msgpack(&bytes).map(|json| json.to_string().len()))
                .unwrap()
                .join()
                .unwrap()
        };
        assert_eq!(on_small_stack(nested(MAX_DEPTH)), Ok(2 * MAX_DEPTH + 4));
        for levels in [MAX_DEPTH + 1, 500, 1_000_000] {
            assert_eq!(on_small_stack(nested(levels)), Err(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let mut maps = [0x81, 0xa1, b'k'].repeat(MAX_DEPTH + 1);
        maps.push(0xc0);
        assert_eq!(on_small_stack(maps), Err(format!("nested deeper than {MAX_DEPTH} levels")));
    }

    /// Found by the `msgpack_json` fuzz target: maps as keys of maps, each
    /// level's JSON text escaping the last's. The rmpv-based conversion
    /// (and this one before its budget) doubled the text per level: 40
    /// levels asked for a terabyte.
    #[test]
    fn keys_nested_in_keys_cannot_grow_exponentially() {
        let mut bytes = vec![0x81; 40];
        bytes.extend([0xa1, b'"']);
        bytes.extend([0xc0; 40]);
        let started = std::time::Instant::now();
        let err = from_msgpack(&bytes).unwrap_err();
        assert_eq!(err, "map keys that are not strings take more than 16 bytes of JSON per byte");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let three = [0x81, 0x81, 0x81, 0xa1, b'"', 0xc0, 0xc0, 0xc0];
        assert_eq!(from_msgpack(&three).unwrap(), json!({ r#"{"{\"\\\"\":null}":null}"#: null }));
    }

    #[test]
    fn every_kind_of_marker_converts() {
        let mut bytes = vec![0x9f]; // fixarray of 15
        bytes.extend([0x05, 0xe0, 0xcc, 0xff, 0xcd, 0x01, 0x00, 0xd0, 0x80, 0xd1, 0x80, 0x00]);
        bytes.extend([0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        bytes.extend([0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]);
        bytes.extend([0xca, 0x3f, 0xc0, 0, 0, 0xcb, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0]);
        bytes.extend([0xd9, 2, b'h', b'i', 0xa2, 0xff, 0xfe]);
        bytes.extend([0xc4, 2, 7, 8, 0xd5, 0xfe, 1, 2]);
        bytes.extend([0x82, 0xc3, 0xc2, 0x91, 0x01, 0xc0]);
        assert_eq!(
            from_msgpack(&bytes).unwrap(),
            json!([5, -32, 255, 256, -128, -32768, u64::MAX, i64::MIN, 1.5, 0.5, "hi", null, [7, 8],
                {"ext": -2, "data": [1, 2]}, {"true": false, "[1]": null}])
        );
        assert_eq!(from_msgpack(&[0xc1]).unwrap_err(), "not MessagePack: it uses the reserved marker 0xc1");
        assert_eq!(from_msgpack(&[0xdc, 0xff]).unwrap_err(), "not MessagePack: it ends inside a value");
    }

    #[test]
    fn truncated_or_trailing_bytes_are_refused() {
        assert!(from_msgpack(&[0x92, 0x01]).is_err());
        assert_eq!(from_msgpack(&[0xc0, 0xc0]).unwrap_err(), "1 bytes after the MessagePack value");
    }
}
