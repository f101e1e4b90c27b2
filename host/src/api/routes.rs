//! The HTTP routes: one handler per route, JSON in and out.

use super::error::{ApiError, ErrorKind};
use super::forward::{self, Op};
use super::json;
use super::trace::{self, TraceContext};
use crate::runtime::{CommandRequest, Runtime};
use crate::store::RecordedEvent;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// What every handler shares.
#[derive(Debug, Clone)]
pub(super) struct App {
    pub runtime: Runtime,
    pub config: super::ApiConfig,
    /// Commands run as tasks tracked here, so a client that hangs up does not
    /// cut a command in half and shutdown waits for every one of them.
    pub commands: TaskTracker,
    /// A slot per command in flight, at most `max_in_flight_commands`.
    pub in_flight: Arc<Semaphore>,
    pub started: Instant,
    /// `GET /openapi.json`, built again after an upgrade.
    pub openapi: Arc<std::sync::Mutex<OpenApi>>,
}

/// The OpenAPI document of the component it was built from.
#[derive(Debug)]
pub(super) struct OpenApi {
    component_hash: Arc<str>,
    document: Arc<Value>,
}

impl OpenApi {
    pub(super) fn new(runtime: &Runtime, config: &super::ApiConfig) -> Self {
        let component = runtime.component();
        Self {
            component_hash: component.hash().clone(),
            document: Arc::new(super::openapi::document(component.model(), config)),
        }
    }
}

/// Headers a command may carry; each at most [`MAX_ID_LEN`] bytes.
pub(super) const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
pub(super) const CORRELATION_ID: &str = "Correlation-Id";
pub(super) const CAUSATION_ID: &str = "Causation-Id";
pub(super) use super::command::MAX_ID_LEN;

type ApiResult<T = Json<Value>> = Result<T, ApiError>;

/// `POST /actors/{aggregate}/{id}/commands/{command}`.
pub(super) async fn send_command(
    State(app): State<App>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let Path((aggregate, id, command)) = path.map_err(bad_path)?;
    // Held by the command's task, so a client that hangs up does not free
    // the slot of a command still running.
    let Ok(slot) = app.in_flight.clone().try_acquire_owned() else {
        app.runtime.stats().overloads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let limit = app.config.max_in_flight_commands;
        return Err(ApiError::overloaded(format!("the host is at its limit of {limit} commands in flight"), limit));
    };
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(app.config.max_body_bytes),
        _ => ApiError::new(ErrorKind::BadRequest, rejection.body_text()),
    })?;
    let payload = json::body_to_msgpack(&body).map_err(ApiError::bad_json)?;
    let request = CommandRequest {
        aggregate,
        id,
        command,
        payload,
        command_id: id_header(&headers, IDEMPOTENCY_KEY)?,
        correlation_id: id_header(&headers, CORRELATION_ID)?,
        causation_id: id_header(&headers, CAUSATION_ID)?,
        fence: None,
    };
    let trace = TraceContext::from_http(&headers, app.config.trace_spans);
    let span = trace.span(|| {
        tracing::info_span!(
            "http",
            otel.kind = "server",
            otel.name = "POST /actors/{aggregate}/{id}/commands/{command}",
            otel.status_code = tracing::field::Empty,
            status = tracing::field::Empty,
            domain = %app.runtime.domain(),
            aggregate = %request.aggregate,
            id = %request.id,
            command = %request.command,
        )
    });
    let answer =
        super::command::execute(&app.runtime, app.config.cluster.as_ref(), &app.commands, request, &trace, slot)
            .instrument(span.clone())
            .await;
    trace::record_status(&span, trace::status(&answer));
    answer.map(Json)
}

#[derive(Debug, Deserialize)]
pub(super) struct StateQuery {
    at_version: Option<u64>,
}

/// `GET /actors/{aggregate}/{id}`, `?at_version=N` for the state at version N.
pub(super) async fn actor_state(
    State(app): State<App>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<StateQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let Path((aggregate, id)) = path.map_err(bad_path)?;
    let Query(query) = query.map_err(bad_query)?;
    match (query.at_version, &app.config.cluster) {
        // Time travel replays in a scratch VM from the store: any node can.
        (Some(at), _) => {
            let (version, state) = app.runtime.state_at(&aggregate, &id, at).await?;
            state_answer(&aggregate, &id, version, &state).map(Json)
        }
        (None, None) => state_json(&app.runtime, &aggregate, &id).await.map(Json),
        // The live actor is on the node serving its shard.
        (None, Some(door)) => {
            let trace = TraceContext::from_http(&headers, app.config.trace_spans);
            let span = trace.span(|| {
                tracing::info_span!(
                    "http",
                    otel.kind = "server",
                    otel.name = "GET /actors/{aggregate}/{id}",
                    otel.status_code = tracing::field::Empty,
                    status = tracing::field::Empty,
                    domain = %app.runtime.domain(),
                    aggregate = %aggregate,
                    id = %id,
                )
            });
            let op = Op::State { aggregate, id };
            let runtime = &app.runtime;
            let answer = forward::route(door, op, &trace, |op, pass| {
                forward::run_here(runtime, &app.commands, op, &trace, pass, ())
            })
            .instrument(span.clone())
            .await;
            trace::record_status(&span, trace::status(&answer));
            answer.map(Json)
        }
    }
}

/// An actor's current state as `GET /actors/{aggregate}/{id}` answers it.
pub(super) async fn state_json(runtime: &Runtime, aggregate: &str, id: &str) -> Result<Value, ApiError> {
    let (version, state) = runtime.state(aggregate, id).await?;
    state_answer(aggregate, id, version, &state)
}

fn state_answer(aggregate: &str, id: &str, version: u64, state: &[u8]) -> Result<Value, ApiError> {
    let state = json::from_msgpack(state)
        .map_err(|e| ApiError::new(ErrorKind::Fault, format!("the state of {aggregate}/{id} is {e}")))?;
    Ok(json!({ "aggregate": aggregate, "id": id, "version": version, "state": state }))
}

#[derive(Debug, Deserialize)]
pub(super) struct EventsQuery {
    /// The first version to return; 1 if absent.
    from: Option<u64>,
    limit: Option<usize>,
}

/// `GET /actors/{aggregate}/{id}/events?from=N&limit=M`: events with their provenance.
pub(super) async fn actor_events(
    State(app): State<App>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> ApiResult {
    let Path((aggregate, id)) = path.map_err(bad_path)?;
    let Query(query) = query.map_err(bad_query)?;
    let max = app.config.max_events_per_page;
    let limit = query.limit.unwrap_or(max).clamp(1, max);
    let after = query.from.unwrap_or(1).saturating_sub(1);
    let events = app.runtime.events(&aggregate, &id, after, limit).await?;
    // A store may return a command's events whole, past the limit.
    let next = events.last().filter(|_| events.len() >= limit).map(|e| e.version + 1);
    let events: Vec<Value> = events.iter().map(|e| event_json(e, true)).collect::<Result<_, _>>()?;
    Ok(Json(json!({ "aggregate": aggregate, "id": id, "events": events, "next": next })))
}

/// `GET /model`: the EventStorming model with payload schemas.
pub(super) async fn model(State(app): State<App>) -> Json<crate::model::DomainModel> {
    Json(app.runtime.model())
}

/// `GET /board`: the model drawn as an EventStorming board, an HTML page
/// that runs no script and fetches nothing (and says so in its
/// `Content-Security-Policy`).
pub(super) async fn board(State(app): State<App>) -> impl IntoResponse {
    let page = crate::board::html(&app.runtime.model());
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, crate::board::CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        page,
    )
}

/// `GET /healthz`.
pub(super) async fn health(State(app): State<App>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "domain": app.runtime.domain(),
        "component_hash": app.runtime.component().hash(),
        "live_actors": app.runtime.live_actors(),
        "uptime_s": app.started.elapsed().as_secs(),
    }))
}

/// `GET /readyz`: whether to send this host requests. Not in a cluster:
/// always. In one: while its membership lease holds (a node cut off from
/// the cluster's NATS, or back from a pause and not yet renewed, answers
/// nothing itself and cannot reach the others) and until it leaves.
pub(super) async fn ready(State(app): State<App>) -> (StatusCode, Json<Value>) {
    let Some(door) = &app.config.cluster else {
        return (StatusCode::OK, Json(json!({ "status": "ready" })));
    };
    let status = door.cluster.status();
    let not_ready = if status.left {
        Some("the node has left its cluster")
    } else if !door.cluster.gate().lease_holds() {
        Some("the node's membership lease has run out: it is cut off from the cluster (or was paused) until it renews")
    } else {
        None
    };
    match not_ready {
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "not-ready", "reason": reason }))),
        None => (StatusCode::OK, Json(json!({ "status": "ready", "serving": status.serving }))),
    }
}

/// `GET /openapi.json`: the OpenAPI document of this host.
pub(super) async fn openapi(State(app): State<App>) -> Json<Value> {
    let document = {
        let mut openapi = app.openapi.lock().unwrap_or_else(|e| e.into_inner());
        if *openapi.component_hash != **app.runtime.component().hash() {
            *openapi = OpenApi::new(&app.runtime, &app.config);
        }
        openapi.document.clone()
    };
    Json(Value::clone(&document))
}

/// `GET /cluster`: this node's view of its cluster.
pub(super) async fn cluster(State(app): State<App>) -> ApiResult {
    match &app.config.cluster {
        Some(door) => {
            let status = door.cluster.status();
            let mut answer = serde_json::to_value(&status).expect("the status serialises");
            if let Some(rollout) = &app.config.rollout {
                // Which component each member runs, as it said.
                let nodes: Vec<String> = status.members.iter().map(|m| m.node.clone()).collect();
                let components = rollout.nodes(&nodes).await;
                for member in answer["members"].as_array_mut().into_iter().flatten() {
                    let Some(Some(component)) = member["node"].as_str().and_then(|n| components.get(n)) else {
                        continue;
                    };
                    member["component_hash"] = json!(component.hash);
                    if let Some(error) = &component.error {
                        member["component_error"] = json!(error);
                    }
                }
                answer["component_hash"] = json!(rollout.current().await.ok().flatten().map(|c| c.hash));
            }
            Ok(Json(answer))
        }
        None => Err(ApiError::new(ErrorKind::NotFound, "this host is not in a cluster; hosts started with --nats are")),
    }
}

/// `GET /metrics`: Prometheus text.
pub(super) async fn metrics(State(app): State<App>) -> impl IntoResponse {
    let mut body = app.runtime.render_metrics();
    if let Some(door) = &app.config.cluster {
        door.cluster.render_metrics(&mut body);
    }
    if let Some(flows) = &app.config.flows {
        flows.render_metrics(&mut body);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

/// Any other path.
pub(super) async fn not_found() -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "no such route; the API has POST /actors/{aggregate}/{id}/commands/{command}, GET /actors/{aggregate}/{id}, \
         GET /actors/{aggregate}/{id}/events, GET /model, GET /board, GET|POST /admin/component, GET /cluster, GET /healthz, \
         GET /readyz, GET /metrics, GET /openapi.json",
    )
}

/// A route asked with a method it does not have (axum adds `Allow`).
pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorKind::MethodNotAllowed, "the route does not take this method")
}

pub(super) fn event_json(event: &RecordedEvent, with_provenance: bool) -> Result<Value, ApiError> {
    let payload = json::from_msgpack(&event.payload).map_err(|e| {
        ApiError::new(ErrorKind::Corrupt, format!("the payload of event {} (`{}`) is {e}", event.version, event.name))
    })?;
    let mut value = json!({ "version": event.version, "name": event.name, "payload": payload });
    if with_provenance {
        value["provenance"] = serde_json::to_value(&*event.provenance).expect("provenance serialises");
    }
    Ok(value)
}

/// A command id header, checked as the NATS door checks its ids.
fn id_header(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(name) else { return Ok(None) };
    super::command::check_id(name, value.as_bytes()).map(|id| Some(id.to_owned()))
}

fn bad_path(rejection: PathRejection) -> ApiError {
    ApiError::new(ErrorKind::BadRequest, rejection.body_text())
}

fn bad_query(rejection: QueryRejection) -> ApiError {
    ApiError::new(ErrorKind::BadRequest, rejection.body_text())
}
