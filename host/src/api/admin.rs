//! The admin routes: which component a host runs, and a live upgrade.
//!
//! | route | answers |
//! |---|---|
//! | `GET /admin/component` | `{"domain", "component_hash", "trusted_snapshots", "upgrades"}` |
//! | `POST /admin/component[?force=true]` | body: the new `.wasm`; the [`UpgradeReport`](crate::upgrade::UpgradeReport) |
//!
//! Both sit behind the same bearer token as every other route. The new
//! component is compiled off the async threads and checked (it loads, its
//! `describe()` works, its model is valid and may replace the running one:
//! [`crate::upgrade::check`]) before it is swapped in; a refused one leaves
//! the running component serving.

use super::error::ApiError;
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
    let deployment = app.runtime.deployment();
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
    let Query(query) = query.map_err(|r| ApiError::new(StatusCode::BAD_REQUEST, "bad-request", r.body_text()))?;
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(app.config.max_component_bytes),
        status => ApiError::new(status, "bad-request", rejection.body_text()),
    })?;
    let options = UpgradeOptions { force: query.force };
    let component = compile(&app, body).await?;
    let report = app.runtime.upgrade(component, &options).map_err(upgrade_error)?;
    Ok(Json(serde_json::to_value(report).expect("the report serialises")))
}

/// Compiles a component on a blocking thread (Cranelift compiles it whole).
pub(super) async fn compile(app: &App, bytes: Bytes) -> Result<DomainComponent, ApiError> {
    let engine = app.runtime.component().engine().clone();
    tokio::task::spawn_blocking(move || DomainComponent::from_bytes(&engine, &bytes))
        .await
        .map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "fault", format!("the compile task failed: {e}"))
        })?
        .map_err(|e| upgrade_error(UpgradeError::Load(e)))
}

/// `400 bad-component`, `409 incompatible-component` or `409 other-domain`.
pub(super) fn upgrade_error(err: UpgradeError) -> ApiError {
    let status = match err {
        UpgradeError::Load(_) => StatusCode::BAD_REQUEST,
        UpgradeError::OtherDomain { .. } | UpgradeError::Removes { .. } => StatusCode::CONFLICT,
    };
    ApiError::new(status, err.kind(), err.to_string())
}
