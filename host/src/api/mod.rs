//! The HTTP front door: JSON in, JSON out, MessagePack for the guest.
//!
//! | route | answers |
//! |---|---|
//! | `POST /actors/{aggregate}/{id}/commands/{command}` | `{"version", "events", "duplicate", "command_id"}`; body = the command's JSON payload (empty for none); `Idempotency-Key`, `Correlation-Id`, `Causation-Id` headers |
//! | `GET /actors/{aggregate}/{id}[?at_version=N]` | `{"version", "state"}`, at version N if asked (time travel) |
//! | `GET /actors/{aggregate}/{id}/events[?from=N&limit=M]` | `{"events": [{version, name, payload, provenance}], "next"}` |
//! | `GET /model` | the EventStorming model with payload schemas |
//! | `GET /board` | the model drawn as an EventStorming board: an HTML page (see [`board`](crate::board)) |
//! | `GET /admin/component` | the component this host runs (hash) and the snapshots it trusts |
//! | `POST /admin/component[?force=true]` | a live upgrade to the `.wasm` in the body: see [`admin`](self) |
//! | `GET /cluster` | in a cluster: nodes, leader, map epoch, shards per node |
//! | `GET /healthz` | `{"status": "ok", ...}`: the process is up |
//! | `GET /readyz` | `200 {"status": "ready"}`, or `503` with the reason (in a cluster: cut off, or left) |
//! | `GET /metrics` | Prometheus text |
//! | `GET /openapi.json` | an OpenAPI 3.1 document of all of the above, from the loaded model |
//!
//! Failures are JSON with a stable `error` kind: see [`error`]. With a
//! token ([`ApiConfig::token`]) every route but `/healthz` and `/readyz` asks for
//! `Authorization: Bearer <token>`; with [`ApiConfig::tls`] the listener
//! speaks HTTPS. Commands and state reads take a W3C `traceparent` (and
//! `tracestate`) header: see [`trace`](self).
//!
//! Layout:
//! - [`routes`](self): the handlers; [`admin`](self): live upgrades.
//! - [`openapi`](self): the OpenAPI document.
//! - [`auth`]: the bearer token; [`tls`]: HTTPS.
//! - [`error`]: statuses and error bodies.
//! - [`json`]: JSON ↔ MessagePack.
//! - [`client`]: [`HttpClient`], what the CLI uses to talk to a host.
//! - [`nats`]: the same commands as NATS request/reply, and [`NatsClient`](nats::NatsClient).
//! - [`forward`]: in a cluster, requests sent to the node serving their shard.
//! - [`trace`](self): W3C trace context from callers, on to the serving node.

mod admin;
pub mod auth;
pub mod client;
mod command;
pub mod error;
mod flows;
pub mod forward;
pub mod json;
pub mod nats;
mod openapi;
mod routes;
pub mod tls;
mod trace;

pub use auth::HttpToken;
pub use client::{ClientError, HttpClient};
pub use error::{ApiError, ErrorKind};
pub use flows::ClusterCommands;
pub use forward::{ClusterDoor, ShardServer};
pub use tls::TlsConfig;

/// Commands run as the HTTP and NATS doors run them, for a front end of
/// one's own (or a benchmark): on this host, or in a cluster wherever the
/// actor's shard is served. Answers are the doors' JSON.
#[derive(Debug, Clone)]
pub struct Door {
    runtime: Runtime,
    cluster: Option<ClusterDoor>,
    tasks: TaskTracker,
}

impl Door {
    pub fn new(runtime: Runtime, cluster: Option<ClusterDoor>) -> Self {
        Self { runtime, cluster, tasks: TaskTracker::new() }
    }

    /// Runs a command; `{"version", "events", "duplicate", "command_id"}`.
    ///
    /// # Errors
    ///
    /// As the doors answer them: a rejection (`422`), every
    /// [`ActorError`](crate::ActorError), `503` when no node serves the shard in time.
    pub async fn command(&self, request: crate::runtime::CommandRequest) -> Result<serde_json::Value, ApiError> {
        let trace = trace::TraceContext::default();
        command::execute(&self.runtime, self.cluster.as_ref(), &self.tasks, request, &trace, ()).await
    }
}

use crate::runtime::Runtime;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

/// Limits of the HTTP API.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ApiConfig {
    /// Command bodies above this many bytes are refused with `413`.
    pub max_body_bytes: usize,
    /// The most events one `GET …/events` returns.
    pub max_events_per_page: usize,
    /// Components above this many bytes are refused by `POST /admin/component` with `413`.
    pub max_component_bytes: usize,
    /// Commands this door runs at once; more are answered `503 overloaded`.
    pub max_in_flight_commands: usize,
    /// If set, every route but `GET /healthz` and `GET /readyz` needs `Authorization: Bearer <token>`.
    pub token: Option<HttpToken>,
    /// If set, the listener speaks HTTPS only.
    pub tls: Option<TlsConfig>,
    /// In a cluster: commands and reads for actors of shards served
    /// elsewhere are sent there.
    pub cluster: Option<ClusterDoor>,
    /// In a cluster: an upgrade is rolled out to every node, and `GET
    /// /cluster` says which component each runs.
    pub rollout: Option<crate::cluster::Rollout>,
    /// How long an upgrade waits for every node of the cluster to move.
    pub rollout_wait: std::time::Duration,
    /// Set when the process exports spans (its subscriber has an
    /// OpenTelemetry layer): each request opens a span, child of the
    /// caller's `traceparent`. Unset, no span is opened and a caller's
    /// context is only passed on to the serving node.
    pub trace_spans: bool,
    /// The policies and read models this host runs, if it runs them:
    /// `GET /read-models/…`, `GET /flows`.
    pub flows: Option<crate::flow::Flows>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_events_per_page: 1000,
            max_component_bytes: 64 << 20,
            max_in_flight_commands: 4096,
            token: None,
            tls: None,
            cluster: None,
            rollout: None,
            rollout_wait: std::time::Duration::from_secs(60),
            trace_spans: false,
            flows: None,
        }
    }
}

/// Serves the API on `listener` until `shutdown` completes, then stops
/// accepting, lets requests in flight finish and waits for every command
/// they started, including those whose client hung up.
///
/// # Errors
///
/// An I/O error of the listener.
pub async fn serve(
    listener: TcpListener,
    runtime: Runtime,
    config: ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let commands = TaskTracker::new();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(config.max_in_flight_commands.max(1)));
    let openapi = Arc::new(std::sync::Mutex::new(routes::OpenApi::new(&runtime, &config)));
    let tls = config.tls.clone();
    let app = routes::App { runtime, config, commands: commands.clone(), in_flight, started: Instant::now(), openapi };
    let router = router(app);
    match tls {
        Some(tls) => {
            axum::serve(tls::TlsListener::new(listener, &tls)?, router).with_graceful_shutdown(shutdown).await?;
        }
        None => axum::serve(listener, router).with_graceful_shutdown(shutdown).await?,
    }
    commands.close();
    commands.wait().await;
    Ok(())
}

fn router(app: routes::App) -> Router {
    let limit = app.config.max_body_bytes;
    let component_limit = app.config.max_component_bytes;
    let token = app.config.token.clone();
    let router = Router::new()
        .route("/actors/{aggregate}/{id}/commands/{command}", post(routes::send_command))
        .route("/actors/{aggregate}/{id}", get(routes::actor_state))
        .route("/actors/{aggregate}/{id}/events", get(routes::actor_events))
        .route("/model", get(routes::model))
        .route("/board", get(routes::board))
        .route(
            "/admin/component",
            get(admin::component).post(admin::upgrade).layer(DefaultBodyLimit::max(component_limit)),
        )
        .route("/read-models/{name}", get(flows::rows))
        .route("/read-models/{name}/{key}", get(flows::row))
        .route("/flows", get(flows::statuses))
        .route("/flows/policies/{name}/parked", get(flows::policy_parked))
        .route("/flows/read-models/{name}/parked", get(flows::read_model_parked))
        .route("/flows/read-models/{name}/rebuild", post(flows::rebuild))
        .route("/cluster", get(routes::cluster))
        .route("/healthz", get(routes::health))
        .route("/readyz", get(routes::ready))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(routes::openapi))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app);
    match token {
        Some(token) => router.layer(axum::middleware::from_fn_with_state(token, auth::require_token)),
        None => router,
    }
}
