//! JSON at the edges, MessagePack inside: the host converts payloads and
//! states so users speak JSON while guests keep their compact encoding.
//!
//! JSON to MessagePack keeps field names (maps, not arrays), which is what
//! the guest SDK decodes. MessagePack to JSON covers every MessagePack value,
//! including what JSON lacks: binary becomes an array of bytes, non-string
//! map keys become their JSON text, extension values become
//! `{"ext": type, "data": [bytes]}`.

use rmpv::Value as Msg;
use serde_json::Value as Json;

/// MessagePack `nil`: the payload of a command without fields.
pub const NIL: &[u8] = &[0xc0];

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
/// If the bytes are not exactly one MessagePack value.
pub fn from_msgpack(bytes: &[u8]) -> Result<Json, String> {
    let mut rest = bytes;
    let value = rmpv::decode::read_value(&mut rest).map_err(|e| format!("not MessagePack: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the MessagePack value", rest.len()));
    }
    Ok(msg_to_json(value))
}

fn msg_to_json(value: Msg) -> Json {
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
        Msg::String(s) => match s.into_str() {
            Some(s) => Json::String(s),
            None => Json::Null,
        },
        Msg::Binary(bytes) => bytes_to_json(bytes),
        Msg::Array(items) => Json::Array(items.into_iter().map(msg_to_json).collect()),
        Msg::Map(entries) => Json::Object(entries.into_iter().map(|(k, v)| (key_text(k), msg_to_json(v))).collect()),
        Msg::Ext(kind, data) => serde_json::json!({ "ext": kind, "data": bytes_to_json(data) }),
    }
}

/// JSON numbers cannot be NaN or infinite; those become `null`.
fn float(f: f64) -> Json {
    serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)
}

fn bytes_to_json(bytes: Vec<u8>) -> Json {
    Json::Array(bytes.into_iter().map(Json::from).collect())
}

fn key_text(key: Msg) -> String {
    match key {
        Msg::String(s) if s.is_str() => s.into_str().unwrap_or_default(),
        other => msg_to_json(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn truncated_or_trailing_bytes_are_refused() {
        assert!(from_msgpack(&[0x92, 0x01]).is_err());
        assert_eq!(from_msgpack(&[0xc0, 0xc0]).unwrap_err(), "1 bytes after the MessagePack value");
    }
}
