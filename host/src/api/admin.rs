//! The admin routes: which component a host runs, and a live upgrade.
//!
//! | route | answers |
//! |---|---|
//! | `GET /admin/component` | `{"domain", "component_hash", "trusted_snapshots", "upgrades"}` |
//! | `POST /admin/component[?force=true]` | body: the new `.wasm`; the [`UpgradeReport`](crate::upgrade::UpgradeReport), in a cluster with `nodes`: what each node runs |
//!
//! Both sit behind the same bearer token as every other route. The new
//! component is compiled off the async threads and checked (it loads, its
//! `describe()` works, its model is valid and may replace the running one:
//! [`crate::upgrade::check`]) before it is swapped in; a refused one leaves
//! the running component serving.
//!
//! In a cluster ([`ApiConfig::rollout`](super::ApiConfig)) the component,
//! once this node finds it acceptable, becomes the cluster's current one
//! ([`Rollout`](crate::cluster::Rollout)); the answer waits until every
//! member runs it (or says why it cannot), else `504 rollout-incomplete`.

use super::error::{ApiError, ErrorKind};
use super::routes::App;
use crate::upgrade::{UpgradeError, UpgradeOptions};
use crate::wasm::DomainComponent;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
pub(super) struct UpgradeQuery {
    /// Swap in a component that removes aggregates or events.
    #[serde(default)]
    force: bool,
}

/// `GET /admin/component`: the component this host runs.
pub(super) async fn component(State(app): State<App>) -> Json<Value> {
    let deployment = app.runtime.component();
    Json(json!({
        "domain": app.runtime.domain(),
        "component_hash": deployment.component().hash(),
        "trusted_snapshots": deployment.trusted_snapshots(),
        "upgrades": app.runtime.stats().upgrades.load(std::sync::atomic::Ordering::Relaxed),
    }))
}

/// `POST /admin/component[?force=true]`: a live upgrade (or rollback) to the component in the body.
pub(super) async fn upgrade(
    State(app): State<App>,
    query: Result<Query<UpgradeQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|r| ApiError::new(ErrorKind::BadRequest, r.body_text()))?;
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(app.config.max_component_bytes),
        _ => ApiError::new(ErrorKind::BadRequest, rejection.body_text()),
    })?;
    let options = UpgradeOptions { force: query.force };
    let component = compile(&app, body.clone()).await?;
    let Some(rollout) = &app.config.rollout else {
        let report = app.runtime.upgrade(component, &options).map_err(upgrade_error)?;
        return Ok(Json(serde_json::to_value(report).expect("the report serialises")));
    };
    // Checked here first: a component this node refuses never reaches the others.
    let running = app.runtime.component();
    let model_changes = crate::upgrade::check(running.model(), component.model(), &options).map_err(upgrade_error)?;
    let unavailable = |e: crate::cluster::RolloutError| ApiError::new(ErrorKind::Unavailable, e.to_string());
    let current = rollout.publish(&body, options.force).await.map_err(unavailable)?;
    let (nodes, complete) = wait_for_nodes(&app, rollout, &current.hash).await;
    let answer = json!({
        "domain": app.runtime.domain(),
        "previous": running.hash(),
        "current": current.hash,
        "changed": **running.hash() != *current.hash,
        "model_changes": model_changes,
        "trusted_snapshots": app.runtime.component().trusted_snapshots(),
        "nodes": nodes,
    });
    if !complete {
        let message = format!(
            "the cluster's component is now {}, but not every node runs it yet (see `nodes`; GET /cluster follows them)",
            current.hash
        );
        return Err(ApiError::new(ErrorKind::RolloutIncomplete, message).with("rollout", answer));
    }
    Ok(Json(answer))
}

/// Waits, bounded, until every member of the cluster runs `hash` or said
/// why it cannot; true if every one runs it.
async fn wait_for_nodes(app: &App, rollout: &crate::cluster::Rollout, hash: &str) -> (Value, bool) {
    let deadline = tokio::time::Instant::now() + app.config.rollout_wait;
    loop {
        let members: Vec<String> = app
            .config
            .cluster
            .as_ref()
            .map(|door| door.cluster.status().members.into_iter().map(|m| m.node).collect())
            .unwrap_or_default();
        let nodes = rollout.nodes(&members).await;
        let moved = |n: &Option<crate::cluster::NodeComponent>| n.as_ref().is_some_and(|n| n.hash == hash);
        let failed = |n: &Option<crate::cluster::NodeComponent>| {
            n.as_ref().is_some_and(|n| n.wanted.as_deref() == Some(hash) && n.error.is_some())
        };
        let complete = nodes.values().all(moved);
        if complete || nodes.values().all(|n| moved(n) || failed(n)) || tokio::time::Instant::now() >= deadline {
            return (serde_json::to_value(nodes).expect("statuses serialise"), complete);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Compiles a component on a blocking thread (Cranelift compiles it whole).
pub(super) async fn compile(app: &App, bytes: Bytes) -> Result<DomainComponent, ApiError> {
    let engine = app.runtime.component().engine().clone();
    tokio::task::spawn_blocking(move || DomainComponent::from_bytes(&engine, &bytes))
        .await
        .map_err(|e| ApiError::new(ErrorKind::Fault, format!("the compile task failed: {e}")))?
        .map_err(|e| upgrade_error(UpgradeError::Load(e)))
}

/// `400 bad-component`, `409 incompatible-component` or `409 other-domain`
/// (`504 rollout-incomplete` when a cluster's nodes did not all move).
pub(super) fn upgrade_error(err: UpgradeError) -> ApiError {
    ApiError::new(err.kind(), err.to_string())
}
