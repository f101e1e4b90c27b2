//! Schemas hoisted into `components/schemas`: schemars' `$defs` given
//! names of their own (`<Aggregate>.<Name>`), every `$ref` rewritten to
//! point there, integer formats bounded as the guest's decoder bounds them.

use serde_json::{Map, Value};
use std::collections::HashMap;

/// `components/schemas`, filled by hoisting schemars' schemas.
#[derive(Debug, Default)]
pub(super) struct Components {
    pub(super) schemas: Map<String, Value>,
    /// Each hoisted definition as the guest wrote it, to tell a second
    /// mention of the same type from another type of the same name.
    origins: HashMap<String, Value>,
}

impl Components {
    /// Adds `schema` as `name` (made unique) and returns the name used.
    pub(super) fn add(&mut self, name: &str, schema: Value) -> String {
        let name = self.unique(&component_name(name), &schema);
        self.origins.insert(name.clone(), schema.clone());
        self.schemas.insert(name.clone(), schema);
        name
    }

    /// A free name, or the name under which `origin` is already.
    fn unique(&self, base: &str, origin: &Value) -> String {
        (1..)
            .map(|n| if n == 1 { base.to_owned() } else { format!("{base}_{n}") })
            .find(|name| self.origins.get(name).is_none_or(|o| o == origin))
            .expect("a free name")
    }

    /// Hoists a schemars root schema as `name`: its `$defs` become
    /// components `<prefix>.<Def>` and every `$ref` points at them.
    /// Returns the name used.
    pub(super) fn hoist(&mut self, prefix: &str, name: &str, schema: &Value) -> String {
        let mut root = schema.clone();
        let mut defs = Map::new();
        if let Value::Object(obj) = &mut root {
            obj.remove("$schema");
            for key in ["$defs", "definitions"] {
                if let Some(Value::Object(mut found)) = obj.remove(key) {
                    defs.append(&mut found);
                }
            }
        }
        let names: HashMap<String, String> = defs
            .iter()
            .map(|(def, body)| (def.clone(), self.unique(&component_name(&format!("{prefix}.{def}")), body)))
            .collect();
        for (def, body) in defs {
            let origin = body.clone();
            let mut body = body;
            rewrite(&mut body, &names);
            let name = names[&def].clone();
            self.origins.insert(name.clone(), origin);
            self.schemas.insert(name, body);
        }
        let origin = root.clone();
        rewrite(&mut root, &names);
        let name = self.unique(&component_name(name), &origin);
        self.origins.insert(name.clone(), origin);
        self.schemas.insert(name.clone(), root);
        name
    }
}

/// A name `components` accepts: `^[a-zA-Z0-9.\-_]+$`.
fn component_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect()
}

/// Keywords whose values are data, not schemas: left as they are.
const DATA_KEYWORDS: &[&str] = &["enum", "const", "default", "examples", "example"];

/// Points `$ref`s at hoisted components and bounds integer formats.
fn rewrite(schema: &mut Value, names: &HashMap<String, String>) {
    match schema {
        Value::Object(obj) => {
            if let Some(Value::String(target)) = obj.get("$ref") {
                let def = target.strip_prefix("#/$defs/").or_else(|| target.strip_prefix("#/definitions/"));
                match def.map(|d| d.replace("~1", "/").replace("~0", "~")).and_then(|d| names.get(&d)) {
                    Some(name) => {
                        obj.insert("$ref".into(), format!("#/components/schemas/{name}").into());
                    }
                    // `#` (the whole enum a variant came from) or a reference
                    // out of reach: any value, rather than a dangling pointer.
                    None if target.starts_with('#') => {
                        obj.remove("$ref");
                    }
                    None => {}
                }
            }
            bound_integer(obj);
            for (key, value) in obj.iter_mut() {
                if !DATA_KEYWORDS.contains(&key.as_str()) {
                    rewrite(value, names);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| rewrite(item, names)),
        _ => {}
    }
}

/// Adds the range of a sized integer format (schemars writes `uint64`,
/// `int32`, …) where the schema does not give one.
fn bound_integer(obj: &mut Map<String, Value>) {
    let Some(format) = obj.get("format").and_then(Value::as_str) else { return };
    let (min, max): (Value, Value) = match format {
        "int8" => (i8::MIN.into(), i8::MAX.into()),
        "int16" => (i16::MIN.into(), i16::MAX.into()),
        "int32" => (i32::MIN.into(), i32::MAX.into()),
        "int64" | "int" => (i64::MIN.into(), i64::MAX.into()),
        "uint8" => (0.into(), u8::MAX.into()),
        "uint16" => (0.into(), u16::MAX.into()),
        "uint32" => (0.into(), u32::MAX.into()),
        "uint64" | "uint" => (0.into(), u64::MAX.into()),
        _ => return,
    };
    obj.entry("minimum").or_insert(min);
    obj.entry("maximum").or_insert(max);
}
