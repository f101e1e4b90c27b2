//! How failures reach HTTP clients: a status and a JSON body
//! `{"error": kind, "message": text, ...}` whose `kind` ([`ErrorKind`]) is
//! stable for programs and whose message is written for people.
//!
//! | status | kinds |
//! |---|---|
//! | 400 | `bad-json`, `bad-payload`, `bad-request`, `bad-component` (an upgrade's component does not load) |
//! | 401 | `unauthorized`: no or the wrong bearer token (see [`super::auth`]), with `WWW-Authenticate: Bearer` |
//! | 404 | `unknown-aggregate`, `unknown-command` (with `known`), `not-found` |
//! | 405 | `method-not-allowed`, with `Allow` |
//! | 409 | `conflict`: retries did not resolve a concurrent writer; retry. `incompatible-component`, `other-domain`: an upgrade refused |
//! | 413 | `too-large` (with `limit`) |
//! | 422 | `rejected` (with `code`): the domain said no |
//! | 500 | `fault` (the guest misbehaved), `replay` / `corrupt` (stored events cannot be used) |
//! | 502 | `bad-gateway`: in a cluster, the node serving the shard answered something unreadable |
//! | 504 | `rollout-incomplete`: an upgrade changed the cluster's component, but not every node runs it yet |
//! | 503 | `unavailable`: the event store cannot be reached; `overloaded` (with `Retry-After` and `limit`): the host is at one of its limits, retry shortly; `shard-moved`: in a cluster, the node's lease ran out before the command appended; nothing was appended (a forwarding node sends it on; retry); `unconfirmed`: the node's lease ran out while the command appended, so it does not confirm the outcome (a forwarding node asks again when the command has an id; retry with the same idempotency key) |

use crate::actor::ActorError;
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// What an overloaded host asks a client to wait, in seconds: its limits
/// free up as requests in flight finish, in milliseconds.
const OVERLOAD_RETRY_AFTER_S: u32 = 1;

/// The kind of an error answer: the `error` field of its body, the same
/// over HTTP and NATS, stable for programs (the table above). The server
/// answers with these and both clients ([`HttpClient`](super::HttpClient),
/// [`NatsClient`](super::nats::NatsClient)) read them back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The body is not JSON.
    BadJson,
    /// The payload does not fit the command's type.
    BadPayload,
    /// The request is malformed (a path, a query, an id, a header).
    BadRequest,
    /// No or the wrong bearer token.
    Unauthorized,
    UnknownAggregate,
    UnknownCommand,
    NotFound,
    MethodNotAllowed,
    /// Retries did not resolve a concurrent writer; nothing was appended.
    Conflict,
    TooLarge,
    /// The domain refused the command; nothing was appended.
    Rejected,
    /// The guest misbehaved.
    Fault,
    /// Stored events cannot be replayed.
    Replay,
    /// Stored bytes cannot be read.
    Corrupt,
    /// In a cluster, the node serving the shard answered something unreadable.
    BadGateway,
    /// The event store, or the node serving the shard, did not answer in
    /// time: the command may have run.
    Unavailable,
    /// The host is at one of its limits; nothing was done.
    Overloaded,
    /// In a cluster: the node's lease ran out before the command appended;
    /// nothing was appended, and the request can go to the shard's new holder.
    ShardMoved,
    /// In a cluster: the node's lease ran out while the command appended;
    /// it does not confirm the outcome (a retry with the same id learns it).
    Unconfirmed,
    /// An upgrade's component does not load; the host runs what it ran.
    BadComponent,
    /// An upgrade's component removes aggregates or events (without `force`).
    IncompatibleComponent,
    /// An upgrade's component is of another domain.
    OtherDomain,
    /// The cluster's component changed, but not every node runs it yet.
    RolloutIncomplete,
    /// A read model had not caught up to the position a query named within its wait.
    Behind,
}

impl ErrorKind {
    pub const ALL: &[ErrorKind] = &[
        Self::BadJson,
        Self::BadPayload,
        Self::BadRequest,
        Self::Unauthorized,
        Self::UnknownAggregate,
        Self::UnknownCommand,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::Conflict,
        Self::TooLarge,
        Self::Rejected,
        Self::Fault,
        Self::Replay,
        Self::Corrupt,
        Self::BadGateway,
        Self::Unavailable,
        Self::Overloaded,
        Self::ShardMoved,
        Self::Unconfirmed,
        Self::BadComponent,
        Self::IncompatibleComponent,
        Self::OtherDomain,
        Self::RolloutIncomplete,
        Self::Behind,
    ];

    /// The name in the answer's body.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BadJson => "bad-json",
            Self::BadPayload => "bad-payload",
            Self::BadRequest => "bad-request",
            Self::Unauthorized => "unauthorized",
            Self::UnknownAggregate => "unknown-aggregate",
            Self::UnknownCommand => "unknown-command",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::Conflict => "conflict",
            Self::TooLarge => "too-large",
            Self::Rejected => "rejected",
            Self::Fault => "fault",
            Self::Replay => "replay",
            Self::Corrupt => "corrupt",
            Self::BadGateway => "bad-gateway",
            Self::Unavailable => "unavailable",
            Self::Overloaded => "overloaded",
            Self::ShardMoved => "shard-moved",
            Self::Unconfirmed => "unconfirmed",
            Self::BadComponent => "bad-component",
            Self::IncompatibleComponent => "incompatible-component",
            Self::OtherDomain => "other-domain",
            Self::RolloutIncomplete => "rollout-incomplete",
            Self::Behind => "behind",
        }
    }

    /// The kind named `name`, if this build knows it (a newer host may name
    /// kinds it does not).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|kind| kind.as_str() == name)
    }

    /// The HTTP status it is answered with.
    pub const fn status(self) -> StatusCode {
        match self {
            Self::BadJson | Self::BadPayload | Self::BadRequest | Self::BadComponent => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::UnknownAggregate | Self::UnknownCommand | Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict | Self::IncompatibleComponent | Self::OtherDomain => StatusCode::CONFLICT,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Rejected => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Fault | Self::Replay | Self::Corrupt => StatusCode::INTERNAL_SERVER_ERROR,
            Self::BadGateway => StatusCode::BAD_GATEWAY,
            Self::RolloutIncomplete | Self::Behind => StatusCode::GATEWAY_TIMEOUT,
            Self::Unavailable | Self::Overloaded | Self::ShardMoved | Self::Unconfirmed => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed request, ready to be sent.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Value,
    /// Seconds the client should wait before retrying (`Retry-After`).
    pub retry_after_s: Option<u32>,
}

impl ApiError {
    /// An answer of `kind`, with its status.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let body = json!({ "error": kind.as_str(), "message": message.into() });
        Self { status: kind.status(), body, retry_after_s: None }
    }

    /// The kind the body names, if this build knows it.
    pub fn kind(&self) -> Option<ErrorKind> {
        self.body["error"].as_str().and_then(ErrorKind::parse)
    }

    /// `503 overloaded`: a limit of the host was reached; nothing was done.
    pub fn overloaded(message: impl Into<String>, limit: usize) -> Self {
        let mut err = Self::new(ErrorKind::Overloaded, message).with("limit", limit);
        err.retry_after_s = Some(OVERLOAD_RETRY_AFTER_S);
        err.with("retry_after_s", OVERLOAD_RETRY_AFTER_S)
    }

    /// Adds a field to the body.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.body[key] = value.into();
        self
    }

    pub fn rejected(code: String, message: String) -> Self {
        Self::new(ErrorKind::Rejected, message).with("code", code)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(ErrorKind::TooLarge, format!("the body exceeds the limit of {limit} bytes")).with("limit", limit)
    }

    pub fn bad_json(message: String) -> Self {
        Self::new(ErrorKind::BadJson, message)
    }
}

impl From<ActorError> for ApiError {
    fn from(err: ActorError) -> Self {
        let message = err.to_string();
        match err {
            ActorError::UnknownAggregate { known, .. } => {
                Self::new(ErrorKind::UnknownAggregate, message).with("known", known)
            }
            ActorError::UnknownCommand { known, .. } => {
                Self::new(ErrorKind::UnknownCommand, message).with("known", known)
            }
            ActorError::BadPayload { .. } => Self::new(ErrorKind::BadPayload, message),
            ActorError::Conflict { .. } => Self::new(ErrorKind::Conflict, message),
            ActorError::Fault { .. } => Self::new(ErrorKind::Fault, message),
            ActorError::Replay { .. } => Self::new(ErrorKind::Replay, message),
            ActorError::Overloaded { limit, .. } => Self::overloaded(message, limit),
            // The doors send the command on to the shard's new holder; a
            // caller sees this only if that cannot happen in time.
            ActorError::ShardMoved { .. } => {
                let mut err = Self::new(ErrorKind::ShardMoved, message);
                err.retry_after_s = Some(1);
                err
            }
            // A forwarding door asks again when the command has an id.
            ActorError::Unconfirmed { .. } => {
                let mut err = Self::new(ErrorKind::Unconfirmed, message);
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
            StoreError::Conflict { .. } => Self::new(ErrorKind::Conflict, message),
            StoreError::Corrupt { .. } => Self::new(ErrorKind::Corrupt, message),
            StoreError::Invalid { .. } => Self::new(ErrorKind::BadRequest, message),
            StoreError::Unavailable(_) => Self::new(ErrorKind::Unavailable, message),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_under_its_name() {
        for &kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(kind.as_str()), Some(kind));
            let err = ApiError::new(kind, "m");
            assert_eq!((err.status, err.kind()), (kind.status(), Some(kind)));
        }
        assert_eq!(ErrorKind::parse("from-a-newer-host"), None);
    }
}
