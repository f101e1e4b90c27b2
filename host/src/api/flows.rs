//! The routes of policies and read models: rows by key and by listing,
//! read-your-writes, parked inputs, progress, and `rebuild`.

use super::error::{ApiError, ErrorKind};
use super::routes::App;
use crate::flow::{FlowError, Flows, Kind};
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

/// The longest a query waits for a position, whatever it asks.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// The wait when a query names a position and no wait.
const DEFAULT_WAIT: Duration = Duration::from_secs(5);
/// Rows per page when a listing names no limit, and the most it may name.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

type ApiResult = Result<Json<Value>, ApiError>;

/// Query parameters of the read-model routes.
#[derive(Debug, Deserialize, Default)]
pub(super) struct RowsQuery {
    /// A command answer's `position`: wait until the read model has seen it.
    position: Option<String>,
    /// How long to wait for `position`, in milliseconds.
    wait_ms: Option<u64>,
    /// Listing: keys starting with this.
    prefix: Option<String>,
    /// Listing: keys after this one (the previous page's `next`).
    after: Option<String>,
    limit: Option<usize>,
    /// Listing: `FIELD=VALUE`, only rows whose field has the value.
    #[serde(rename = "where")]
    filter: Option<String>,
}

fn flows(app: &App) -> Result<&Flows, ApiError> {
    app.config.flows.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorKind::NotFound,
            "this host runs no policies or read models (it is not the one that runs them)",
        )
    })
}

fn flow_error(e: FlowError) -> ApiError {
    match e {
        FlowError::Unknown { .. } => ApiError::new(ErrorKind::NotFound, e.to_string()),
        FlowError::Behind { .. } => ApiError::new(ErrorKind::Behind, e.to_string()),
        FlowError::Unwritten { .. } => ApiError::new(ErrorKind::NotFound, e.to_string()),
        FlowError::Store(e) => ApiError::new(ErrorKind::Unavailable, e.to_string()),
    }
}

/// A page's size: the default, or what the query asks within bounds.
fn page_limit(asked: Option<usize>) -> Result<usize, ApiError> {
    match asked {
        None => Ok(DEFAULT_LIMIT),
        Some(limit @ 1..=MAX_LIMIT) => Ok(limit),
        Some(other) => Err(bad(format!("`limit` must be 1 to {MAX_LIMIT}, not {other}"))),
    }
}

fn bad<E: std::fmt::Display>(e: E) -> ApiError {
    ApiError::new(ErrorKind::BadRequest, e.to_string())
}

/// Waits for the position the query names, if it names one.
async fn caught_up(flows: &Flows, name: &str, query: &RowsQuery) -> Result<(), ApiError> {
    let wait = query.wait_ms.map_or(DEFAULT_WAIT, Duration::from_millis);
    if wait > MAX_WAIT {
        return Err(bad(format!("`wait_ms` may be at most {}", MAX_WAIT.as_millis())));
    }
    let Some(position) = &query.position else { return Ok(()) };
    let position: u64 = position
        .parse()
        .map_err(|_| bad(format!("`position` must be a command answer's position, not `{position}`")))?;
    flows.wait_for(Kind::ReadModel, name, position, wait).await.map_err(flow_error)
}

fn row_json(key: &str, row: &[u8]) -> Result<Value, ApiError> {
    let row = super::json::from_msgpack(row)
        .map_err(|e| ApiError::new(ErrorKind::Corrupt, format!("the row `{key}` does not read: {e}")))?;
    Ok(json!({ "key": key, "row": row }))
}

/// `GET /read-models/{name}/{key}`.
pub(super) async fn row(
    State(app): State<App>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<RowsQuery>, QueryRejection>,
) -> ApiResult {
    let Path((name, key)) = path.map_err(bad)?;
    let Query(query) = query.map_err(bad)?;
    let flows = flows(&app)?;
    caught_up(flows, &name, &query).await?;
    match flows.row(&name, &key).await.map_err(flow_error)? {
        Some(row) => Ok(Json(row_json(&key, &row)?)),
        None => Err(ApiError::new(ErrorKind::NotFound, format!("read model `{name}` has no row `{key}`"))),
    }
}

/// `GET /read-models/{name}`: rows in key order, a page at a time.
pub(super) async fn rows(
    State(app): State<App>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<RowsQuery>, QueryRejection>,
) -> ApiResult {
    let Path(name) = path.map_err(bad)?;
    let Query(query) = query.map_err(bad)?;
    let flows = flows(&app)?;
    caught_up(flows, &name, &query).await?;
    let field = match &query.filter {
        Some(filter) => match filter.split_once('=') {
            Some((field, value)) if !field.is_empty() => Some((field, value)),
            _ => return Err(bad(format!("`where` takes FIELD=VALUE, e.g. owner=ada; got `{filter}`"))),
        },
        None => None,
    };
    let limit = page_limit(query.limit)?;
    let prefix = query.prefix.as_deref().unwrap_or("");
    let page = flows.rows(&name, prefix, query.after.as_deref(), limit, field).await.map_err(flow_error)?;
    let rows: Vec<Value> = page.rows.iter().map(|r| row_json(&r.key, &r.row)).collect::<Result<_, _>>()?;
    Ok(Json(json!({ "rows": rows, "next": page.next })))
}

/// `POST /read-models/{name}/rebuild`: fold again from the start.
pub(super) async fn rebuild(State(app): State<App>, path: Result<Path<String>, PathRejection>) -> ApiResult {
    let Path(name) = path.map_err(bad)?;
    flows(&app)?.rebuild(&name).await.map_err(flow_error)?;
    Ok(Json(json!({ "read_model": name, "rebuilding": true })))
}

/// `GET /flows`: every policy's and read model's progress.
pub(super) async fn statuses(State(app): State<App>) -> ApiResult {
    let flows = flows(&app)?;
    Ok(Json(json!({ "flows": flows.statuses().map(|s| s.json()).collect::<Vec<_>>() })))
}

/// Query parameters of the parked listing.
#[derive(Debug, Deserialize)]
pub(super) struct ParkedQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /policies/{name}/parked` and `GET /read-models/{name}/parked`.
async fn parked(app: &App, kind: Kind, name: &str, query: ParkedQuery) -> ApiResult {
    let limit = page_limit(query.limit)?;
    let entries = flows(app)?.parked(kind, name, query.after.as_deref(), limit).await.map_err(flow_error)?;
    let next = (entries.len() == limit).then(|| entries.last().map(|(k, _)| k.clone())).flatten();
    let parked: Vec<Value> = entries.into_iter().map(|(_, v)| v).collect();
    Ok(Json(json!({ "parked": parked, "next": next })))
}

pub(super) async fn policy_parked(
    State(app): State<App>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ParkedQuery>, QueryRejection>,
) -> ApiResult {
    let (Path(name), Query(query)) = (path.map_err(bad)?, query.map_err(bad)?);
    parked(&app, Kind::Policy, &name, query).await
}

pub(super) async fn read_model_parked(
    State(app): State<App>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ParkedQuery>, QueryRejection>,
) -> ApiResult {
    let (Path(name), Query(query)) = (path.map_err(bad)?, query.map_err(bad)?);
    parked(&app, Kind::ReadModel, &name, query).await
}

/// A policy's commands sent where their shards are served, as a door
/// sends a client's: run here under the shard's pass, or forwarded.
#[derive(Debug)]
pub struct ClusterCommands {
    runtime: crate::runtime::Runtime,
    door: super::ClusterDoor,
    tasks: tokio_util::task::TaskTracker,
}

impl ClusterCommands {
    pub fn new(runtime: crate::runtime::Runtime, door: super::ClusterDoor) -> Self {
        Self { runtime, door, tasks: tokio_util::task::TaskTracker::new() }
    }
}

#[async_trait::async_trait]
impl crate::flow::CommandSink for ClusterCommands {
    async fn send(
        &self,
        request: crate::runtime::CommandRequest,
    ) -> Result<crate::flow::Sent, crate::store::StoreError> {
        use crate::flow::Sent;
        let trace = super::trace::TraceContext::default();
        let answer = super::command::execute(&self.runtime, Some(&self.door), &self.tasks, request, &trace, ()).await;
        let error = match answer {
            Ok(value) => return Ok(Sent::Accepted { duplicate: value["duplicate"].as_bool().unwrap_or(false) }),
            Err(error) => error,
        };
        let text = |key: &str| error.body[key].as_str().unwrap_or_default().to_owned();
        match error.kind() {
            Some(ErrorKind::Rejected) => Ok(Sent::Rejected { code: text("code"), message: text("message") }),
            // Worth asking again: the runner backs off and does.
            None
            | Some(
                ErrorKind::Unavailable
                | ErrorKind::Overloaded
                | ErrorKind::ShardMoved
                | ErrorKind::Unconfirmed
                | ErrorKind::Conflict
                | ErrorKind::BadGateway,
            ) => Err(crate::store::StoreError::Unavailable(format!("{}: {}", text("error"), text("message")))),
            Some(kind) => Ok(Sent::Failed(format!("{}: {}", kind.as_str(), text("message")))),
        }
    }
}
