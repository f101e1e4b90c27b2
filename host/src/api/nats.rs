//! The NATS front door: commands as request/reply, with the same outcomes
//! as the HTTP API, and [`NatsClient`], a typed client of it.
//!
//! Subject, one per aggregate: `<root>.cmd.<domain>.<aggregate>`, where
//! `<root>` is `aether` (or the namespace's root, see
//! [`Subjects`]); e.g. `aether.cmd.bank.Account`.
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

use super::client::{ClientError, CommandIds};
use super::error::ApiError;
use super::json;
use crate::bus::nats::Subjects;
use crate::runtime::{CommandRequest, Runtime};
use crate::store::jetstream::subject::decode_token;
use axum::http::StatusCode;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

/// The queue group every host's command subscription joins.
pub const QUEUE_GROUP: &str = "aether-hosts";

/// Limits of the NATS command API.
#[derive(Debug, Clone)]
pub struct NatsApiConfig {
    /// Request bodies above this many bytes are answered `413`.
    pub max_body_bytes: usize,
    /// Commands handled at once; further requests wait in the subscription.
    pub max_in_flight: usize,
}

impl Default for NatsApiConfig {
    fn default() -> Self {
        Self { max_body_bytes: 1024 * 1024, max_in_flight: 4096 }
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
    subjects: Subjects,
    runtime: Runtime,
    config: NatsApiConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), async_nats::SubscribeError> {
    let domain = runtime.model().name.clone();
    let subject = subjects.commands(&domain, "*");
    let mut requests = client.queue_subscribe(subject.clone(), QUEUE_GROUP.into()).await?;
    tracing::info!(%subject, "serving commands over NATS");
    let tasks = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    tokio::pin!(shutdown);
    loop {
        let message = tokio::select! {
            message = requests.next() => message,
            () = &mut shutdown => break,
        };
        let Some(message) = message else { break };
        let Some(reply) = message.reply.clone() else { continue };
        let Ok(slot) = slots.clone().acquire_owned().await else { break };
        let (client, runtime, tasks_inner, config) = (client.clone(), runtime.clone(), tasks.clone(), config.clone());
        tasks.spawn(async move {
            // The last token is the aggregate, encoded like every subject token.
            let token = message.subject.rsplit('.').next().unwrap_or_default();
            let aggregate = decode_token(token).unwrap_or_else(|| token.to_owned());
            let answer = match answer(&runtime, &tasks_inner, &config, aggregate, &message.payload).await {
                Ok(mut body) => {
                    body["status"] = 200.into();
                    body
                }
                Err(err) => {
                    let mut body = err.body;
                    body["status"] = err.status.as_u16().into();
                    body
                }
            };
            let bytes = serde_json::to_vec(&answer).expect("JSON serialises");
            if let Err(e) = client.publish(reply, bytes.into()).await {
                tracing::warn!(cause = %e, "cannot send a command reply");
            }
            drop(slot);
        });
    }
    let _ = requests.unsubscribe().await;
    tasks.close();
    tasks.wait().await;
    Ok(())
}

async fn answer(
    runtime: &Runtime,
    tasks: &TaskTracker,
    config: &NatsApiConfig,
    aggregate: String,
    body: &[u8],
) -> Result<Value, ApiError> {
    if body.len() > config.max_body_bytes {
        return Err(ApiError::too_large(config.max_body_bytes));
    }
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
    let request = CommandRequest {
        aggregate,
        id: message.id,
        command: message.command,
        payload,
        command_id: id("command_id", message.command_id)?,
        correlation_id: id("correlation_id", message.correlation_id)?,
        causation_id: id("causation_id", message.causation_id)?,
    };
    // This door bounds its commands where it takes them off the subscription.
    super::command::execute(runtime, tasks, request, ()).await
}

/// Sends commands to hosts over NATS.
#[derive(Debug, Clone)]
pub struct NatsClient {
    client: async_nats::Client,
    subjects: Subjects,
    domain: String,
    timeout: Duration,
}

impl NatsClient {
    /// A client for `domain`'s hosts; replies are awaited for 10 seconds.
    pub fn new(client: async_nats::Client, subjects: Subjects, domain: &str) -> Self {
        Self { client, subjects, domain: domain.to_owned(), timeout: Duration::from_secs(10) }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends a command and returns the host's answer (`{"version", "events", …}`).
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
        let subject = self.subjects.commands(&self.domain, aggregate);
        let request = json!({
            "id": id,
            "command": command,
            "payload": payload,
            "command_id": ids.idempotency_key,
            "correlation_id": ids.correlation_id,
            "causation_id": ids.causation_id,
        });
        let request = async_nats::Request::new()
            .payload(serde_json::to_vec(&request).expect("JSON serialises").into())
            .timeout(Some(self.timeout));
        let unreachable = |cause: String| ClientError::Unreachable { url: format!("nats subject {subject}"), cause };
        let reply = self.client.send_request(subject.clone(), request).await.map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::NoResponders => unreachable("no host serves it".into()),
            async_nats::RequestErrorKind::TimedOut => unreachable(format!("no answer within {:?}", self.timeout)),
            _ => unreachable(e.to_string()),
        })?;
        let body: Value = serde_json::from_slice(&reply.payload).map_err(|e| ClientError::Protocol {
            url: subject.clone(),
            status: 0,
            cause: e.to_string(),
        })?;
        let status = body["status"].as_u64().unwrap_or(0) as u16;
        if status == StatusCode::OK.as_u16() {
            return Ok(body);
        }
        Err(ClientError::from_answer(status, body))
    }
}
