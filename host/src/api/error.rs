//! How failures reach HTTP clients: a status and a JSON body
//! `{"error": kind, "message": text, ...}` whose `kind` is stable for
//! programs and whose message is written for people.
//!
//! | status | kinds |
//! |---|---|
//! | 400 | `bad-json`, `bad-payload`, `bad-request` |
//! | 401 | `unauthorized`: no or the wrong bearer token (see [`super::auth`]), with `WWW-Authenticate: Bearer` |
//! | 404 | `unknown-aggregate`, `unknown-command` (with `known`), `not-found` |
//! | 405 | `method-not-allowed`, with `Allow` |
//! | 409 | `conflict`: retries did not resolve a concurrent writer; retry |
//! | 413 | `too-large` (with `limit`) |
//! | 422 | `rejected` (with `code`): the domain said no |
//! | 500 | `fault` (the guest misbehaved), `replay` / `corrupt` (stored events cannot be used) |
//! | 503 | `unavailable`: the event store cannot be reached; `overloaded` (with `Retry-After` and `limit`): the host is at one of its limits, retry shortly; `shard-moved`: in a cluster, the node's lease ran out before the command appended; nothing was appended (a forwarding node sends it on; retry); `unconfirmed`: the node's lease ran out while the command appended, so it does not confirm the outcome (a forwarding node asks again when the command has an id; retry with the same idempotency key) |

use crate::actor::ActorError;
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// What an overloaded host asks a client to wait, in seconds: its limits
/// free up as requests in flight finish, in milliseconds.
const OVERLOAD_RETRY_AFTER_S: u32 = 1;

/// The error kind of [`ActorError::ShardMoved`]: nothing was appended, and
/// the request can go to the shard's new holder.
pub(crate) const SHARD_MOVED: &str = "shard-moved";

/// The error kind of [`ActorError::Unconfirmed`]: appended, not confirmed;
/// a request with an id can be asked again wherever the shard is served.
pub(crate) const UNCONFIRMED: &str = "unconfirmed";

/// A failed request, ready to be sent.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Value,
    /// Seconds the client should wait before retrying (`Retry-After`).
    pub retry_after_s: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> Self {
        Self { status, body: json!({ "error": kind, "message": message.into() }), retry_after_s: None }
    }

    /// `503 overloaded`: a limit of the host was reached; nothing was done.
    pub fn overloaded(message: impl Into<String>, limit: usize) -> Self {
        let mut err = Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message).with("limit", limit);
        err.retry_after_s = Some(OVERLOAD_RETRY_AFTER_S);
        err.with("retry_after_s", OVERLOAD_RETRY_AFTER_S)
    }

    /// Adds a field to the body.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.body[key] = value.into();
        self
    }

    pub fn rejected(code: String, message: String) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "rejected", message).with("code", code)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", format!("the body exceeds the limit of {limit} bytes"))
            .with("limit", limit)
    }

    pub fn bad_json(message: String) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-json", message)
    }
}

impl From<ActorError> for ApiError {
    fn from(err: ActorError) -> Self {
        let message = err.to_string();
        match err {
            ActorError::UnknownAggregate { known, .. } => {
                Self::new(StatusCode::NOT_FOUND, "unknown-aggregate", message).with("known", known)
            }
            ActorError::UnknownCommand { known, .. } => {
                Self::new(StatusCode::NOT_FOUND, "unknown-command", message).with("known", known)
            }
            ActorError::BadPayload { .. } => Self::new(StatusCode::BAD_REQUEST, "bad-payload", message),
            ActorError::Conflict { .. } => Self::new(StatusCode::CONFLICT, "conflict", message),
            ActorError::Fault { .. } => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "fault", message),
            ActorError::Replay { .. } => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "replay", message),
            ActorError::Overloaded { limit, .. } => Self::overloaded(message, limit),
            // The doors send the command on to the shard's new holder; a
            // caller sees this only if that cannot happen in time.
            ActorError::ShardMoved { .. } => {
                let mut err = Self::new(StatusCode::SERVICE_UNAVAILABLE, SHARD_MOVED, message);
                err.retry_after_s = Some(1);
                err
            }
            // A forwarding door asks again when the command has an id.
            ActorError::Unconfirmed { .. } => {
                let mut err = Self::new(StatusCode::SERVICE_UNAVAILABLE, UNCONFIRMED, message);
                err.retry_after_s = Some(1);
                err
            }
            ActorError::Store(err) => err.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        let message = err.to_string();
        match err {
            StoreError::Conflict { .. } => Self::new(StatusCode::CONFLICT, "conflict", message),
            StoreError::Corrupt { .. } => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "corrupt", message),
            StoreError::Invalid { .. } => Self::new(StatusCode::BAD_REQUEST, "bad-request", message),
            StoreError::Unavailable(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), body = %self.body, "request failed");
        }
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if let Some(seconds) = self.retry_after_s {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
