//! The EventStorming model a component describes: aggregates with their
//! commands and events, each with a name and a JSON Schema of its payload;
//! policies with what they react to and send; read models with what they
//! fold and the schema of their rows.
//!
//! Names come from serde (the variant names the codec uses on the wire), so
//! the model and the wire can never disagree; schemas come from `schemars`.

use crate::{Aggregate, Messages, Policy, ReadModel};
use schemars::JsonSchema;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde_json::{Map, Value};

/// A domain's model, as `describe()` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainModel {
    pub name: String,
    pub sdk_version: String,
    pub aggregates: Vec<AggregateModel>,
    pub policies: Vec<PolicyModel>,
    pub read_models: Vec<ReadModelModel>,
}

/// One policy: the events it reacts to and the commands it may send, as
/// qualified names (`"Aggregate.Message"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyModel {
    pub name: String,
    pub reacts_to: Vec<String>,
    pub sends: Vec<String>,
}

/// One read model: the events it folds (qualified names), the JSON Schema
/// of its rows (as text) and the row fields the host indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadModelModel {
    pub name: String,
    pub consumes: Vec<String>,
    pub row_schema: String,
    pub indexes: Vec<String>,
}

impl PolicyModel {
    /// Describes a policy type.
    pub fn of<P: Policy>() -> Self {
        Self { name: P::NAME.to_string(), reacts_to: P::Event::qualified_names(), sends: P::Command::qualified_names() }
    }
}

impl ReadModelModel {
    /// Describes a read-model type.
    pub fn of<R: ReadModel>() -> Self {
        Self {
            name: R::NAME.to_string(),
            consumes: R::Event::qualified_names(),
            row_schema: schemars::schema_for!(R::Row).as_value().to_string(),
            indexes: R::INDEXES.iter().map(|i| i.to_string()).collect(),
        }
    }
}

/// One aggregate: its commands, events and state schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateModel {
    pub name: String,
    pub commands: Vec<MessageModel>,
    pub events: Vec<MessageModel>,
    /// JSON Schema of the state, as text.
    pub state_schema: String,
}

/// A command or event: its name and the JSON Schema of its payload, as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageModel {
    pub name: String,
    pub schema: String,
}

impl AggregateModel {
    /// Describes an aggregate type.
    pub fn of<A: Aggregate>() -> Self {
        Self {
            name: A::NAME.to_string(),
            commands: messages::<A::Command>(),
            events: messages::<A::Event>(),
            state_schema: schemars::schema_for!(A).as_value().to_string(),
        }
    }
}

/// The variants of an enum with their payload schemas.
pub fn messages<T: JsonSchema + for<'de> Deserialize<'de>>() -> Vec<MessageModel> {
    let root = schemars::schema_for!(T).to_value();
    let defs = root.get("$defs").cloned();
    let schemas = variant_schemas(&root);
    variant_names::<T>()
        .iter()
        .map(|name| {
            let mut schema = schemas
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s.clone())
                .unwrap_or_else(|| Value::Object(Map::new()));
            if let (Some(defs), Value::Object(obj)) = (&defs, &mut schema) {
                obj.insert("$defs".into(), defs.clone());
            }
            MessageModel { name: name.to_string(), schema: schema.to_string() }
        })
        .collect()
}

/// Payload schemas of an externally tagged enum, by variant name.
fn variant_schemas(root: &Value) -> Vec<(String, Value)> {
    let alternatives = root
        .get("oneOf")
        .or_else(|| root.get("anyOf"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_else(|| vec![root.clone()]);
    let mut out = Vec::new();
    for alt in alternatives {
        // Unit variants: {"type": "string", "enum": [..]} or {"const": ..}.
        let units = alt
            .get("enum")
            .and_then(Value::as_array)
            .cloned()
            .or_else(|| alt.get("const").map(|c| vec![c.clone()]))
            .unwrap_or_default();
        for unit in units {
            if let Some(name) = unit.as_str() {
                out.push((name.to_string(), serde_json::json!({ "type": "null" })));
            }
        }
        // Data variants: {"type": "object", "properties": {Name: schema}, "required": [Name]}.
        if let Some(props) = alt.get("properties").and_then(Value::as_object)
            && props.len() == 1
        {
            let (name, schema) = props.iter().next().expect("one property");
            let mut schema = schema.clone();
            if let (Some(desc), Value::Object(obj)) = (alt.get("description"), &mut schema) {
                obj.entry("description").or_insert(desc.clone());
            }
            out.push((name.clone(), schema));
        }
    }
    out
}

/// The variant names serde uses for an enum type, in declaration order.
///
/// Asks the type's `Deserialize` impl, which passes its variant list to
/// `deserialize_enum`; a type that is not an enum gives an empty list.
pub fn variant_names<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("probe")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            variants: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = variants;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier ignored_any
        }
    }
    let mut names: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut names));
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    /// A documented command.
    #[derive(Serialize, Deserialize, JsonSchema)]
    #[allow(dead_code)]
    enum Cmd {
        /// Opens it.
        Open {
            owner: String,
        },
        Close,
        Touch,
        Move(Target),
    }

    #[derive(Serialize, Deserialize, JsonSchema)]
    struct Target {
        x: i32,
    }

    #[test]
    fn names_follow_serde_and_schemas_follow_schemars() {
        let msgs = messages::<Cmd>();
        let names: Vec<_> = msgs.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["Open", "Close", "Touch", "Move"]);
        let open: Value = serde_json::from_str(&msgs[0].schema).unwrap();
        assert_eq!(open["properties"]["owner"]["type"], "string");
        let close: Value = serde_json::from_str(&msgs[1].schema).unwrap();
        assert_eq!(close["type"], "null");
        let mv: Value = serde_json::from_str(&msgs[3].schema).unwrap();
        assert!(mv.get("$defs").is_some(), "{mv}");
    }

    #[test]
    fn non_enums_have_no_variants() {
        assert!(variant_names::<Target>().is_empty());
    }
}
