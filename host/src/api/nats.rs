//! The NATS front door: commands as request/reply, with the same outcomes
//! as the HTTP API, and [`NatsClient`], a typed client of it.
//!
//! Subject, one per aggregate: `<root>.cmd.<domain>.<aggregate>`, where
//! `<root>` is `aether` (or the namespace's root, see
//! [`NatsNames`]); e.g. `aether.cmd.bank.Account`.
//! Hosts subscribe in the queue group `aether-hosts`, so each request
//! reaches one host.
//!
//! Request (JSON):
//! `{"id": "alice", "command": "Deposit", "payload": {"amount": 5}, "command_id": "k1", "correlation_id": "…", "causation_id": "…"}`
//! — `payload` may be absent or `null` for a command without fields; the ids are optional.
//!
//! Reply (JSON): the HTTP body plus its status,
//! `{"status": 200, "version": 2, "events": [...], "duplicate": false, "command_id": "k1"}`, or
//! `{"status": 422, "error": "rejected", "code": "…", "message": "…"}` and the other
//! error kinds of [`crate::api::error`] (`404`, `400`, `409`, `413`, `500`, `503`).
//!
//! Headers: an optional W3C `traceparent` (and `tracestate`); the command
//! becomes part of that trace (see `api::trace`).

use super::client::{ClientError, CommandIds};
use super::error::ApiError;
use super::forward::{ClusterDoor, with_status};
use super::json;
use super::trace::{self, TraceContext};
use crate::names::NatsNames;
use crate::runtime::{CommandRequest, Runtime};
use crate::store::jetstream::subject::decode_token;
use axum::http::StatusCode;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// The queue group every host's command subscription joins.
pub const QUEUE_GROUP: &str = "aether-hosts";

/// Limits of the NATS command API.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NatsApiConfig {
    /// Request bodies above this many bytes are answered `413`.
    pub max_body_bytes: usize,
    /// Commands handled at once; further requests wait in the subscription.
    pub max_in_flight: usize,
    /// In a cluster: commands for shards served elsewhere are sent there.
    pub cluster: Option<ClusterDoor>,
    /// As [`ApiConfig::trace_spans`](super::ApiConfig::trace_spans).
    pub trace_spans: bool,
}

impl Default for NatsApiConfig {
    fn default() -> Self {
        Self { max_body_bytes: 1024 * 1024, max_in_flight: 4096, cluster: None, trace_spans: false }
    }
}

#[derive(Debug, Deserialize)]
struct CommandMessage {
    id: String,
    command: String,
    #[serde(default)]
    payload: Option<Value>,
    command_id: Option<String>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
}

/// Serves commands for every aggregate of the runtime's model until
/// `shutdown` completes; then stops taking requests and waits for the
/// commands in flight to be answered.
///
/// # Errors
///
/// If the subscription cannot be made.
pub async fn serve(
    client: async_nats::Client,
    names: NatsNames,
    runtime: Runtime,
    config: NatsApiConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), async_nats::SubscribeError> {
    let domain = runtime.domain().to_string();
    let subject = names.commands(&domain, "*");
    let mut requests = client.queue_subscribe(subject.clone(), QUEUE_GROUP.into()).await?;
    tracing::info!(%subject, "serving commands over NATS");
    let tasks = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    tokio::pin!(shutdown);
    let mut draining = false;
    loop {
        let message = tokio::select! {
            message = requests.next() => message,
            // A drain the server never confirms (a lost connection) ends here.
            () = tokio::time::sleep(Duration::from_secs(10)), if draining => break,
            () = &mut shutdown, if !draining => {
                // Requests the server already sent still arrive and are
                // answered (an unsubscribe would drop them and leave their
                // clients waiting); the stream ends once the server has
                // confirmed nothing more comes. The other hosts of the queue
                // group take the new ones.
                draining = true;
                if requests.drain().await.is_err() {
                    break;
                }
                continue;
            }
        };
        let Some(message) = message else { break };
        let Some(reply) = message.reply.clone() else { continue };
        let Ok(slot) = slots.clone().acquire_owned().await else { break };
        let (client, runtime, tasks_inner, config) = (client.clone(), runtime.clone(), tasks.clone(), config.clone());
        tasks.spawn(async move {
            let answer = with_status(answer(&runtime, &tasks_inner, &config, &message).await);
            let bytes = serde_json::to_vec(&answer).expect("JSON serialises");
            if let Err(e) = client.publish(reply, bytes.into()).await {
                tracing::warn!(cause = %e, "cannot send a command reply");
            }
            drop(slot);
        });
    }
    tasks.close();
    tasks.wait().await;
    Ok(())
}

async fn answer(
    runtime: &Runtime,
    tasks: &TaskTracker,
    config: &NatsApiConfig,
    message: &async_nats::Message,
) -> Result<Value, ApiError> {
    let request = parse_request(config, &message.subject, &message.payload)?;
    let trace = TraceContext::from_nats(message.headers.as_ref(), config.trace_spans);
    let span = trace.span(|| {
        tracing::info_span!(
            "nats",
            otel.kind = "server",
            otel.name = %message.subject,
            otel.status_code = tracing::field::Empty,
            status = tracing::field::Empty,
            domain = %runtime.domain(),
            aggregate = %request.aggregate,
            id = %request.id,
            command = %request.command,
        )
    });
    // This door bounds its commands where it takes them off the subscription.
    let answer = super::command::execute(runtime, config.cluster.as_ref(), tasks, request, &trace, ())
        .instrument(span.clone())
        .await;
    trace::record_status(&span, trace::status(&answer));
    answer
}

/// The command a request on `subject` with `body` asks for. Everything here
/// came off the wire: the body's size is checked before it is parsed, and
/// the JSON parser bounds nesting (128 levels) and reserves nothing ahead
/// of the bytes it reads.
///
/// # Errors
///
/// `413` for a body over [`NatsApiConfig::max_body_bytes`], `400` for one
/// that is not a command message.
pub(crate) fn parse_request(config: &NatsApiConfig, subject: &str, body: &[u8]) -> Result<CommandRequest, ApiError> {
    if body.len() > config.max_body_bytes {
        return Err(ApiError::too_large(config.max_body_bytes));
    }
    // The last token is the aggregate, encoded like every subject token.
    let token = subject.rsplit('.').next().unwrap_or_default();
    let aggregate = decode_token(token).unwrap_or_else(|| token.to_owned());
    let message: CommandMessage = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_json(format!("the request is not a command message ({{\"id\", \"command\", \"payload\"}}): {e}"))
    })?;
    let payload = match &message.payload {
        None | Some(Value::Null) => json::NIL.to_vec(),
        Some(value) => json::to_msgpack(value),
    };
    // The same rules as the HTTP door's headers.
    let id = |name: &str, value: Option<String>| match value {
        Some(value) => super::command::check_id(name, value.as_bytes()).map(str::to_owned).map(Some),
        None => Ok(None),
    };
    Ok(CommandRequest {
        aggregate,
        id: message.id,
        command: message.command,
        payload,
        command_id: id("command_id", message.command_id)?,
        correlation_id: id("correlation_id", message.correlation_id)?,
        causation_id: id("causation_id", message.causation_id)?,
        fence: None,
    })
}

/// Sends commands to hosts over NATS.
#[derive(Debug, Clone)]
pub struct NatsClient {
    client: async_nats::Client,
    names: NatsNames,
    domain: String,
    timeout: Duration,
}

impl NatsClient {
    /// A client for `domain`'s hosts; replies are awaited for 10 seconds.
    pub fn new(client: async_nats::Client, names: NatsNames, domain: &str) -> Self {
        Self { client, names, domain: domain.to_owned(), timeout: Duration::from_secs(10) }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends a command and returns the host's answer (`{"version", "events", …}`).
    ///
    /// NATS request/reply delivers at most once: a host that stops (or
    /// hands its requests on) may drop one already on its way. So every
    /// command carries an id (the idempotency key, or one minted here) and an
    /// attempt unanswered after [`ATTEMPT_TIMEOUT`] is sent again, as is one
    /// no host was there to take (for [`NO_HOST_PATIENCE`]), until the
    /// client's timeout: the command
    /// is applied once whatever happened to each attempt. An answer to a
    /// retry of a minted id is not reported as a duplicate.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] for every answer but `200` (kind `rejected` for a
    /// business rejection); [`ClientError::Unreachable`] if no host serves the
    /// aggregate or none answers in time.
    pub async fn send(
        &self,
        aggregate: &str,
        id: &str,
        command: &str,
        payload: Option<&Value>,
        ids: CommandIds<'_>,
    ) -> Result<Value, ClientError> {
        let subject = self.names.commands(&self.domain, aggregate);
        let minted = ids.idempotency_key.is_none().then(|| uuid::Uuid::new_v4().to_string());
        let request = json!({
            "id": id,
            "command": command,
            "payload": payload,
            "command_id": ids.idempotency_key.or(minted.as_deref()),
            "correlation_id": ids.correlation_id,
            "causation_id": ids.causation_id,
        });
        let body: bytes::Bytes = serde_json::to_vec(&request).expect("JSON serialises").into();
        let unreachable = |cause: String| ClientError::Unreachable { url: format!("nats subject {subject}"), cause };
        let started = Instant::now();
        let give_up = started + self.timeout;
        let mut backoff = Duration::from_millis(10);
        let reply = loop {
            let left = give_up.saturating_duration_since(Instant::now());
            let attempt = ATTEMPT_TIMEOUT.min(left).max(Duration::from_millis(1));
            let request = async_nats::Request::new().payload(body.clone()).timeout(Some(attempt));
            let failed = match self.client.send_request(subject.clone(), request).await {
                Ok(reply) => break reply,
                // A host restarting alone; a namespace without hosts fails soon.
                Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                    if started.elapsed() >= NO_HOST_PATIENCE {
                        return Err(unreachable("no host serves it".into()));
                    }
                    "no host serves it".to_owned()
                }
                Err(e) if e.kind() == async_nats::RequestErrorKind::TimedOut => {
                    format!("no answer within {:?}", self.timeout)
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() + backoff >= give_up {
                return Err(unreachable(failed));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        };
        let mut body: Value = serde_json::from_slice(&reply.payload).map_err(|e| ClientError::Protocol {
            url: subject.clone(),
            status: 0,
            cause: e.to_string(),
        })?;
        let status = body["status"].as_u64().unwrap_or(0) as u16;
        if status == StatusCode::OK.as_u16() {
            if minted.is_some() {
                body["duplicate"] = false.into();
            }
            return Ok(body);
        }
        Err(ClientError::from_answer(status, body))
    }
}

/// How long [`NatsClient::send`] waits for one attempt's answer before it
/// sends the command again (with the same id).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long [`NatsClient::send`] keeps asking when no host subscribes at all.
pub const NO_HOST_PATIENCE: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> String {
        NatsNames::new(None).commands("bank", "Account")
    }

    fn parse(subject: &str, body: &[u8]) -> Result<CommandRequest, ApiError> {
        parse_request(&NatsApiConfig { max_body_bytes: 4096, ..NatsApiConfig::default() }, subject, body)
    }

    #[test]
    fn a_request_names_its_aggregate_by_subject_and_its_command_by_body() {
        let body = br#"{"id": "a.b", "command": "Deposit", "payload": {"amount": 5}, "command_id": "k1"}"#;
        let request = parse(&NatsNames::new(None).commands("bank", "Acc.ount"), body).unwrap();
        assert_eq!((request.aggregate.as_str(), request.id.as_str()), ("Acc.ount", "a.b"));
        assert_eq!(json::from_msgpack(&request.payload).unwrap(), json!({"amount": 5}));
        assert_eq!(request.command_id.as_deref(), Some("k1"));
        let without = parse(&account(), br#"{"id": "a", "command": "Close"}"#).unwrap();
        assert_eq!(without.payload, json::NIL);
    }

    /// Bodies an attacker may send: too large, too deep, lying about
    /// lengths, not JSON. Each is a clean `4xx` before anything is sized by it.
    #[test]
    fn hostile_bodies_are_answered_with_client_errors() {
        assert_eq!(parse(&account(), &[b' '; 4097]).unwrap_err().status, StatusCode::PAYLOAD_TOO_LARGE);
        let deep = format!(r#"{{"id": "a", "command": "C", "payload": {}{}}}"#, "[".repeat(2000), "]".repeat(2000));
        let err = parse(&account(), deep.as_bytes()).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        for body in [&b""[..], b"\xff\xfe", b"{\"id\": 1}", b"[", br#"{"id": "a", "command": "C", "payload": 1e999}"#] {
            assert_eq!(parse(&account(), body).unwrap_err().status, StatusCode::BAD_REQUEST, "{body:?}");
        }
    }
}
