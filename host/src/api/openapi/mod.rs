//! `GET /openapi.json`: an OpenAPI 3.1 description of this host's HTTP API,
//! built once at start-up from the loaded model, so a stranger (or a tool
//! such as schemathesis) can probe every route without reading our code.
//!
//! Every aggregate and every command is a concrete path
//! (`/actors/Account/{id}/commands/Deposit`) whose request body is the
//! command's payload schema, and the state and events of an aggregate are
//! described by its state and event schemas. OpenAPI 3.1 rather than 3.0:
//! the guest SDK's schemas come from schemars as JSON Schema 2020-12
//! (`"type": "null"`, `const`, `$defs`), which 3.1 takes as is.
//!
//! Schemars puts the types a schema refers to under its own `$defs` (or
//! `definitions`) and points at them with `#/$defs/Name`, which means nothing
//! inside an OpenAPI document: they are hoisted into `components/schemas`
//! (as `<Aggregate>.<Name>`) and every `$ref` rewritten to point there.
//! Integer formats (`uint64`, `int32`, …) gain the bounds the guest's decoder
//! enforces, so a value the document allows is one the guest can decode.

use super::ApiConfig;
use super::error::ErrorKind;
use super::routes::{CAUSATION_ID, CORRELATION_ID, IDEMPOTENCY_KEY, MAX_ID_LEN};
use crate::model::{AggregateModel, DomainModel, MessageModel};
use schemas::Components;
use serde_json::{Map, Value, json};

mod schemas;

/// The OpenAPI document of a host serving `model` with `config`.
pub(super) fn document(model: &DomainModel, config: &ApiConfig) -> Value {
    let secured = config.token.is_some();
    let mut components = Components::default();
    let mut paths = Map::new();
    for aggregate in &model.aggregates {
        aggregate_paths(aggregate, &mut components, &mut paths, secured);
    }
    if config.flows.is_some() {
        for read_model in &model.read_models {
            read_model_paths(read_model, &mut components, &mut paths, secured);
        }
        flow_paths(model, &mut paths, secured);
    }
    paths.insert(
        "/model".into(),
        json!({ "get": operation(
            "model", "The EventStorming model with each message's payload schema", &[], secured,
            ok(json!({ "$ref": "#/components/schemas/Model" })), &[],
        )}),
    );
    let mut board = operation(
        "board",
        "The model drawn as an EventStorming board: an HTML page with an SVG, no script",
        &[],
        secured,
        json!({}),
        &[],
    );
    board["responses"]["200"] = json!({
        "description": "An HTML page: commands blue, events orange, aggregates yellow, policies lilac, read models green",
        "content": { "text/html": { "schema": { "type": "string" } } },
    });
    paths.insert("/board".into(), json!({ "get": board }));
    let mut health = operation(
        "healthz",
        "Whether the host is up; never asks for a token",
        &[],
        false,
        ok(json!({ "$ref": "#/components/schemas/Health" })),
        &[],
    );
    if secured {
        // Load balancers probe it without credentials.
        health["security"] = json!([]);
    }
    paths.insert("/healthz".into(), json!({ "get": health }));
    let mut ready = operation(
        "readyz",
        "Whether to send this host requests (in a cluster: while its membership lease holds); never asks for a token",
        &[],
        false,
        ok(json!({ "$ref": "#/components/schemas/Ready" })),
        &[],
    );
    ready["responses"]["503"] = json!({
        "description": "Not ready: cut off from its cluster, or left it",
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/NotReady" } } },
    });
    if secured {
        ready["security"] = json!([]);
    }
    paths.insert("/readyz".into(), json!({ "get": ready }));
    let mut metrics =
        operation("metrics", "Counters and latency histograms, as Prometheus text", &[], secured, json!({}), &[]);
    metrics["responses"]["200"] = json!({
        "description": "Prometheus text exposition format 0.0.4",
        "content": { "text/plain": { "schema": { "type": "string" } } },
    });
    paths.insert("/metrics".into(), json!({ "get": metrics }));
    paths.insert(
        "/openapi.json".into(),
        json!({ "get": operation(
            "openapi", "This document", &[], secured,
            ok(json!({ "type": "object", "required": ["openapi", "paths"] })), &[],
        )}),
    );

    let mut schemas = shared_schemas();
    schemas.append(&mut components.schemas);
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": format!("Aether host: domain `{}`", model.name),
            "version": model.sdk_version,
            "description": "Commands, state, time travel and events of the actors this host runs. \
                Failures are JSON `{\"error\": kind, \"message\": text}` with a stable kind.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "parameters": parameters(),
            "responses": error_responses(config),
        },
    });
    if secured {
        doc["components"]["securitySchemes"] = json!({ "bearer": { "type": "http", "scheme": "bearer" } });
        doc["security"] = json!([{ "bearer": [] }]);
    }
    doc
}

/// The command, state and events paths of one aggregate.
fn aggregate_paths(
    aggregate: &AggregateModel,
    components: &mut Components,
    paths: &mut Map<String, Value>,
    secured: bool,
) {
    let name = &aggregate.name;
    let state = components.hoist(name, &format!("{name}.State"), &aggregate.state_schema);
    let events: Vec<Value> = aggregate.events.iter().map(|event| event_schema(name, event, components)).collect();
    let event = components.add(&format!("{name}.Event"), json!({ "oneOf": events }));
    let event_ref = json!({ "$ref": format!("#/components/schemas/{event}") });

    for command in &aggregate.commands {
        let payload = components.hoist(name, &format!("{name}.{}", command.name), &command.schema);
        let schema = &components.schemas[&payload];
        // An empty body is a command without fields (`null`).
        let required = !accepts_null(schema);
        let mut summary = schema.get("description").and_then(Value::as_str).unwrap_or_default().to_owned();
        if summary.is_empty() {
            summary = format!("Sends `{}` to an actor of `{name}`", command.name);
        }
        let answer = json!({
            "type": "object",
            "required": ["version", "events", "duplicate", "command_id", "position"],
            "properties": {
                "version": { "type": "integer", "minimum": 0, "description": "The actor's version after the command" },
                "events": { "type": "array", "items": event_ref },
                "duplicate": { "type": "boolean", "description": "A repeat of a command already applied: nothing new was appended" },
                "command_id": { "type": "string", "description": "The command's id (the `Idempotency-Key`, or one the host minted)" },
                "position": { "type": "string", "description": "Where the store's log holds the events: pass it to a read-model query to read your writes" },
            },
        });
        let mut op = operation(
            &format!("{name}.{}", command.name),
            &summary,
            &["id", "Idempotency-Key", "Correlation-Id", "Causation-Id"],
            secured,
            ok(answer),
            &["BadRequest", "NotFound", "Conflict", "TooLarge", "Rejected", "ServerError", "Unavailable"],
        );
        op["tags"] = json!([name]);
        op["requestBody"] = json!({
            "required": required,
            "description": "The command's payload as JSON; empty or `null` for a command without fields",
            "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{payload}") } } },
        });
        paths.insert(format!("/actors/{name}/{{id}}/commands/{}", command.name), json!({ "post": op }));
    }

    let mut get_state = operation(
        &format!("{name}.state"),
        &format!("The state and version of an actor of `{name}`, or its state at an earlier version"),
        &["id", "at_version"],
        secured,
        ok(json!({
            "type": "object",
            "required": ["aggregate", "id", "version", "state"],
            "properties": {
                "aggregate": { "const": name },
                "id": { "type": "string" },
                "version": { "type": "integer", "minimum": 0 },
                "state": { "$ref": format!("#/components/schemas/{state}") },
            },
        })),
        &["BadRequest", "NotFound", "ServerError", "Unavailable"],
    );
    get_state["tags"] = json!([name]);
    paths.insert(format!("/actors/{name}/{{id}}"), json!({ "get": get_state }));

    let mut get_events = operation(
        &format!("{name}.events"),
        &format!("A page of the events of an actor of `{name}`, with their provenance"),
        &["id", "from", "limit"],
        secured,
        ok(json!({
            "type": "object",
            "required": ["aggregate", "id", "events", "next"],
            "properties": {
                "aggregate": { "const": name },
                "id": { "type": "string" },
                "events": { "type": "array", "items": event_ref },
                "next": { "type": ["integer", "null"], "minimum": 1, "description": "`from` of the next page; null at the end" },
            },
        })),
        &["BadRequest", "NotFound", "ServerError", "Unavailable"],
    );
    get_events["tags"] = json!([name]);
    paths.insert(format!("/actors/{name}/{{id}}/events"), json!({ "get": get_events }));
}

/// The row and listing paths of one read model.
fn read_model_paths(
    read_model: &crate::model::ReadModelModel,
    components: &mut Components,
    paths: &mut Map<String, Value>,
    secured: bool,
) {
    let name = &read_model.name;
    let row = components.hoist(name, &format!("{name}.Row"), &read_model.row_schema);
    let keyed = json!({
        "type": "object",
        "required": ["key", "row"],
        "properties": { "key": { "type": "string" }, "row": { "$ref": format!("#/components/schemas/{row}") } },
    });
    let errors = ["BadRequest", "NotFound", "ServerError", "Unavailable", "Behind"];
    let mut get_row = operation(
        &format!("{name}.row"),
        &format!("The row of read model `{name}` under a key; with `position`, once the read model has seen it"),
        &["key", "position", "wait_ms"],
        secured,
        ok(keyed.clone()),
        &errors,
    );
    get_row["tags"] = json!([name]);
    paths.insert(format!("/read-models/{name}/{{key}}"), json!({ "get": get_row }));
    let indexes = if read_model.indexes.is_empty() { "any field".to_owned() } else { read_model.indexes.join(", ") };
    let mut list = operation(
        &format!("{name}.rows"),
        &format!(
            "A page of the rows of read model `{name}` in key order: by key prefix, or where a field ({indexes}) has a value"
        ),
        &["position", "wait_ms", "prefix", "after", "page_limit", "where"],
        secured,
        ok(json!({
            "type": "object",
            "required": ["rows", "next"],
            "properties": {
                "rows": { "type": "array", "items": keyed },
                "next": { "type": ["string", "null"], "description": "`after` of the next page; null at the end" },
            },
        })),
        &errors,
    );
    list["tags"] = json!([name]);
    paths.insert(format!("/read-models/{name}"), json!({ "get": list }));
}

/// The progress, parked inputs and rebuild of policies and read models.
fn flow_paths(model: &DomainModel, paths: &mut Map<String, Value>, secured: bool) {
    // The names the model has, so a probe reaches the routes' logic.
    let named = |mut op: Value, names: Vec<&str>| {
        let name = json!({
            "name": "name", "in": "path", "required": true, "description": "A name the model declares",
            "schema": { "type": "string", "enum": names },
        });
        let mut parameters = op["parameters"].as_array().cloned().unwrap_or_default();
        parameters.retain(|p| p["$ref"] != "#/components/parameters/name");
        parameters.insert(0, name);
        op["parameters"] = Value::Array(parameters);
        op
    };
    let policies: Vec<&str> = model.policies.iter().map(|p| p.name.as_str()).collect();
    let read_models: Vec<&str> = model.read_models.iter().map(|r| r.name.as_str()).collect();
    let flows = operation(
        "flows",
        "Each policy's and read model's progress through the log: checkpoint, lag, parked inputs, counts",
        &[],
        secured,
        ok(json!({ "type": "object", "required": ["flows"], "properties": { "flows": { "type": "array" } } })),
        &[],
    );
    paths.insert("/flows".into(), json!({ "get": flows }));
    let parked = |kind: &str| {
        operation(
            &format!("{kind}.parked"),
            &format!("The inputs a {kind} parked with their errors, oldest first"),
            &["after", "page_limit"],
            secured,
            ok(json!({
                "type": "object",
                "required": ["parked", "next"],
                "properties": { "parked": { "type": "array" }, "next": { "type": ["string", "null"] } },
            })),
            &["BadRequest", "NotFound", "Unavailable"],
        )
    };
    if !policies.is_empty() {
        paths.insert("/flows/policies/{name}/parked".into(), json!({ "get": named(parked("policy"), policies) }));
    }
    if read_models.is_empty() {
        return;
    }
    let parked = named(parked("read-model"), read_models.clone());
    paths.insert("/flows/read-models/{name}/parked".into(), json!({ "get": parked }));
    let rebuild = operation(
        "read-model.rebuild",
        "Folds a read model again from the start of the log; its rows grow back while the host serves",
        &[],
        secured,
        ok(json!({ "type": "object", "required": ["read_model", "rebuilding"] })),
        &["BadRequest", "NotFound"],
    );
    paths.insert("/flows/read-models/{name}/rebuild".into(), json!({ "post": named(rebuild, read_models) }));
}

/// One event of an aggregate: its name, payload and (in pages of events) provenance.
fn event_schema(aggregate: &str, event: &MessageModel, components: &mut Components) -> Value {
    let payload = components.hoist(aggregate, &format!("{aggregate}.{}.Payload", event.name), &event.schema);
    json!({
        "type": "object",
        "required": ["version", "name", "payload"],
        "properties": {
            "version": { "type": "integer", "minimum": 1 },
            "name": { "const": event.name },
            "payload": { "$ref": format!("#/components/schemas/{payload}") },
            "provenance": { "$ref": "#/components/schemas/Provenance" },
        },
    })
}

/// An operation with its parameters (names in `components/parameters`),
/// its `200` answer and its error answers (names in `components/responses`).
fn operation(id: &str, summary: &str, params: &[&str], secured: bool, ok: Value, errors: &[&str]) -> Value {
    let mut responses = Map::new();
    responses.insert("200".into(), ok);
    for error in errors {
        let (status, _) = ERRORS.iter().find(|(_, name)| name == error).expect("a known error response");
        responses.insert(status.to_string(), json!({ "$ref": format!("#/components/responses/{error}") }));
    }
    let mut op = json!({ "operationId": id, "summary": summary, "responses": responses });
    if secured {
        op["responses"]["401"] = json!({ "$ref": "#/components/responses/Unauthorized" });
    }
    if !params.is_empty() {
        op["parameters"] = params.iter().map(|p| json!({ "$ref": format!("#/components/parameters/{p}") })).collect();
    }
    op
}

fn ok(schema: Value) -> Value {
    json!({ "description": "OK", "content": { "application/json": { "schema": schema } } })
}

/// Error answers: status and response name; the kinds each may carry are
/// the [`ErrorKind`]s of that status.
const ERRORS: &[(u16, &str)] = &[
    (400, "BadRequest"),
    (401, "Unauthorized"),
    (404, "NotFound"),
    (409, "Conflict"),
    (413, "TooLarge"),
    (422, "Rejected"),
    (500, "ServerError"),
    (503, "Unavailable"),
    (504, "Behind"),
];

/// The kinds the documented routes answer with `status` (the admin route's
/// own kinds are not documented here, as the route is not).
fn kinds(status: u16) -> Vec<&'static str> {
    use ErrorKind::{BadComponent, IncompatibleComponent, OtherDomain, RolloutIncomplete};
    let admin = [BadComponent, IncompatibleComponent, OtherDomain, RolloutIncomplete];
    let documented = ErrorKind::ALL.iter().filter(|k| !admin.contains(k));
    documented.filter(|k| k.status().as_u16() == status).map(|k| k.as_str()).collect()
}

fn error_responses(config: &ApiConfig) -> Value {
    let mut responses = Map::new();
    for (status, name) in ERRORS {
        let mut schema = json!({ "allOf": [
            { "$ref": "#/components/schemas/Error" },
            { "properties": { "error": { "enum": kinds(*status) } } },
        ]});
        let description = match *status {
            400 => "The request is malformed: the body is not JSON, the payload does not fit the command, or a header, path or query parameter is invalid".to_owned(),
            401 => "No `Authorization: Bearer <token>`, or the wrong token".to_owned(),
            404 => "No such aggregate, command or route; `known` lists the valid names".to_owned(),
            409 => "Another writer kept winning; retry".to_owned(),
            413 => format!("The body exceeds {} bytes", config.max_body_bytes),
            422 => "The domain rejected the command; `code` says why, for programs".to_owned(),
            500 => "A guest fault, or stored events that cannot be used".to_owned(),
            504 => "The read model had not caught up to `position` within the wait".to_owned(),
            _ => "The event store cannot be reached, or the host is at a limit (`overloaded`, retry after `Retry-After` seconds)".to_owned(),
        };
        let mut response = json!({ "description": description });
        match *status {
            401 => {
                response["headers"] = json!({ "WWW-Authenticate": {
                    "description": "`Bearer`", "required": true, "schema": { "type": "string" },
                }});
            }
            413 => schema["allOf"][1]["required"] = json!(["limit"]),
            422 => schema["allOf"][1]["required"] = json!(["code"]),
            503 => {
                response["headers"] = json!({ "Retry-After": {
                    "description": "Seconds to wait before retrying (`overloaded` only)",
                    "schema": { "type": "integer", "minimum": 0 },
                }});
            }
            _ => {}
        }
        response["content"] = json!({ "application/json": { "schema": schema } });
        responses.insert((*name).to_owned(), response);
    }
    Value::Object(responses)
}

fn parameters() -> Value {
    let id_header = |name: &str, what: &str| {
        json!({
            "name": name, "in": "header", "required": false, "description": what,
            // Visible ASCII and inner spaces, as HTTP carries them (invariant: provenance).
            "schema": { "type": "string", "minLength": 1, "maxLength": MAX_ID_LEN, "pattern": ID_PATTERN },
        })
    };
    let integer = |name: &str, what: &str| {
        json!({
            "name": name, "in": "query", "required": false, "description": what,
            "schema": { "type": "integer", "minimum": 0, "maximum": u64::MAX },
        })
    };
    json!({
        "id": {
            "name": "id", "in": "path", "required": true,
            "description": "The actor's id: any non-empty string, percent-encoded",
            "schema": { "type": "string", "minLength": 1 },
        },
        "Idempotency-Key": id_header(IDEMPOTENCY_KEY, "The command's id: a retry with the same key appends nothing and answers the original events"),
        "Correlation-Id": id_header(CORRELATION_ID, "Recorded in the events' provenance"),
        "Causation-Id": id_header(CAUSATION_ID, "Recorded in the events' provenance"),
        "at_version": integer("at_version", "Time travel: the state after this many events (0: the initial state)"),
        "from": integer("from", "The first version to return; 1 if absent"),
        "limit": integer("limit", "The most events to return; the host caps it"),
        "key": {
            "name": "key", "in": "path", "required": true,
            "description": "The row's key, percent-encoded",
            "schema": { "type": "string", "minLength": 1 },
        },
        "position": {
            "name": "position", "in": "query", "required": false,
            "description": "A command answer's `position`: answer once the read model has folded it (read-your-writes)",
            "schema": { "type": "string", "pattern": "^[0-9]{1,19}$" },
        },
        "wait_ms": {
            "name": "wait_ms", "in": "query", "required": false,
            "description": "How long to wait for `position` (default 5000, at most 30000)",
            "schema": { "type": "integer", "minimum": 0, "maximum": 30000 },
        },
        "prefix": string_query("prefix", "Only keys starting with this"),
        "after": string_query("after", "Only keys after this one (the previous page's `next`)"),
        "page_limit": {
            "name": "limit", "in": "query", "required": false, "description": "Rows per page (default 100)",
            "schema": { "type": "integer", "minimum": 1, "maximum": 1000 },
        },
        "where": {
            "name": "where", "in": "query", "required": false,
            "description": "`FIELD=VALUE`: only rows whose top-level field has the value (a string as it is, other values as JSON)",
            "schema": { "type": "string", "pattern": "^[^=]+=" },
        },
    })
}

fn string_query(name: &str, what: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": what, "schema": { "type": "string" } })
}

/// What an id header may hold: 1 to [`MAX_ID_LEN`] visible ASCII
/// characters, spaces only inside.
pub(super) const ID_PATTERN: &str = "^[!-~]([ -~]*[!-~])?$";

/// Schemas every host has, whatever its model.
fn shared_schemas() -> Map<String, Value> {
    let json = json!({
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {
                "error": { "type": "string", "description": "A stable kind, for programs" },
                "message": { "type": "string", "description": "Why, for people" },
                "known": { "type": "array", "items": { "type": "string" } },
                "code": { "type": "string" },
                "limit": { "type": "integer", "minimum": 0 },
                "retry_after_s": { "type": "integer", "minimum": 0 },
            },
        },
        "Provenance": {
            "type": "object",
            "required": ["command_id", "correlation_id", "causation_id", "timestamp_ms", "component_hash"],
            "properties": {
                "command_id": { "type": "string" },
                "correlation_id": { "type": "string" },
                "causation_id": { "type": "string" },
                "timestamp_ms": { "type": "integer", "minimum": 0 },
                "component_hash": { "type": "string", "pattern": "^[0-9a-f]{64}$" },
            },
        },
        "Health": {
            "type": "object",
            "required": ["status", "domain", "component_hash", "live_actors", "uptime_s"],
            "properties": {
                "status": { "const": "ok" },
                "domain": { "type": "string" },
                "component_hash": { "type": "string" },
                "live_actors": { "type": "integer", "minimum": 0 },
                "uptime_s": { "type": "integer", "minimum": 0 },
            },
        },
        "Ready": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": { "const": "ready" },
                "serving": { "type": "integer", "minimum": 0, "description": "Shards this node serves (in a cluster)" },
            },
        },
        "NotReady": {
            "type": "object",
            "required": ["status", "reason"],
            "properties": { "status": { "const": "not-ready" }, "reason": { "type": "string" } },
        },
        "Model": {
            "type": "object",
            "required": ["name", "sdk_version", "aggregates", "policies", "read_models"],
            "properties": {
                "name": { "type": "string" },
                "sdk_version": { "type": "string" },
                "aggregates": { "type": "array", "items": { "type": "object", "required": ["name", "commands", "events", "state_schema"] } },
                "policies": { "type": "array" },
                "read_models": { "type": "array" },
            },
        },
    });
    match json {
        Value::Object(map) => map,
        _ => unreachable!("an object literal"),
    }
}

/// Whether `null` (an empty body) fits `schema`, judged shallowly: the
/// command's payload schema is `{"type": "null"}` for a unit variant.
fn accepts_null(schema: &Value) -> bool {
    match schema.get("type") {
        Some(Value::String(t)) => t == "null",
        Some(Value::Array(types)) => types.iter().any(|t| t == "null"),
        _ => schema.as_object().is_some_and(|o| o.keys().all(|k| k == "description" || k == "title")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::HttpToken;

    fn message(name: &str, schema: Value) -> MessageModel {
        MessageModel { name: name.into(), schema }
    }

    fn model() -> DomainModel {
        DomainModel {
            name: "shop".into(),
            sdk_version: "0.4.0".into(),
            aggregates: vec![AggregateModel {
                name: "Cart".into(),
                commands: vec![
                    message(
                        "AddItem",
                        json!({
                            "$schema": "https://json-schema.org/draft/2020-12/schema",
                            "type": "object",
                            "properties": { "item": { "$ref": "#/$defs/Item" }, "qty": { "type": "integer", "format": "uint32", "minimum": 0 } },
                            "required": ["item", "qty"],
                            "$defs": {
                                "Item": { "type": "object", "properties": { "sku": { "$ref": "#/$defs/Sku" } } },
                                "Sku": { "type": "string", "enum": ["a", "b"] },
                            },
                        }),
                    ),
                    message("Clear", json!({ "type": "null" })),
                ],
                events: vec![message("Cleared", json!({ "type": "null" }))],
                state_schema: json!({
                    "type": "object",
                    "properties": { "items": { "type": "array", "items": { "$ref": "#/definitions/Item" } } },
                    "definitions": { "Item": { "type": "object", "properties": { "sku": { "type": "string" } } } },
                }),
            }],
            policies: vec![],
            read_models: vec![],
        }
    }

    /// Every `$ref` in the document, with where it points.
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(obj) => {
                if let Some(Value::String(r)) = obj.get("$ref") {
                    out.push(r.clone());
                }
                obj.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    fn resolve<'a>(doc: &'a Value, pointer: &str) -> Option<&'a Value> {
        doc.pointer(pointer.strip_prefix('#')?)
    }

    #[test]
    fn every_reference_resolves_inside_the_document() {
        let doc = document(&model(), &ApiConfig::default());
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 20, "{found:?}");
        for r in &found {
            assert!(r.starts_with("#/components/"), "{r}");
            assert!(resolve(&doc, r).is_some(), "{r} does not resolve");
        }
        let text = doc.to_string();
        assert!(!text.contains("$defs") && !text.contains("definitions") && !text.contains("$schema"), "{text}");
    }

    #[test]
    fn commands_are_concrete_paths_with_their_payloads() {
        let doc = document(&model(), &ApiConfig::default());
        let add = &doc["paths"]["/actors/Cart/{id}/commands/AddItem"]["post"];
        assert_eq!(add["requestBody"]["required"], true);
        let payload =
            resolve(&doc, add["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str().unwrap());
        let payload = payload.unwrap();
        assert_eq!(payload["properties"]["item"]["$ref"], "#/components/schemas/Cart.Item_2");
        assert_eq!(payload["properties"]["qty"]["maximum"], u32::MAX);
        assert_eq!(
            doc["components"]["schemas"]["Cart.Item_2"]["properties"]["sku"]["$ref"],
            "#/components/schemas/Cart.Sku"
        );
        // The state (hoisted first) has another type of the same name.
        assert_eq!(doc["components"]["schemas"]["Cart.Item"]["properties"]["sku"]["type"], "string");
        let clear = &doc["paths"]["/actors/Cart/{id}/commands/Clear"]["post"];
        assert_eq!(clear["requestBody"]["required"], false);
        for status in ["200", "400", "404", "409", "413", "422", "500", "503"] {
            assert!(add["responses"].get(status).is_some(), "{status}");
        }
        assert!(add["responses"].get("401").is_none());
        for path in [
            "/actors/Cart/{id}",
            "/actors/Cart/{id}/events",
            "/model",
            "/board",
            "/healthz",
            "/readyz",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(doc["paths"][path]["get"].is_object(), "{path}");
        }
        assert_eq!(
            doc["components"]["responses"]["Unavailable"]["headers"]["Retry-After"]["schema"]["type"],
            "integer"
        );
        assert_eq!(doc["components"]["parameters"]["Idempotency-Key"]["schema"]["maxLength"], MAX_ID_LEN);
    }

    #[test]
    fn a_token_secures_every_route_but_health() {
        let config = ApiConfig { token: Some(HttpToken::new("t").unwrap()), ..ApiConfig::default() };
        let doc = document(&model(), &config);
        assert_eq!(doc["security"], json!([{ "bearer": [] }]));
        assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([]));
        assert_eq!(doc["paths"]["/readyz"]["get"]["security"], json!([]));
        assert!(doc["paths"]["/model"]["get"].get("security").is_none());
        assert_eq!(doc["paths"]["/model"]["get"]["responses"]["401"]["$ref"], "#/components/responses/Unauthorized");
    }
}
