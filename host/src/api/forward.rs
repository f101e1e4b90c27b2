//! Commands and state reads in a cluster: run here when this node serves
//! the actor's shard, sent to the node the shard map grants it to otherwise,
//! and answered back the same way; and [`ShardServer`], the side that
//! answers what other nodes send.
//!
//! A request goes to the holder's subject `<root>.node.<domain>.<node>` (see
//! [`ClusterNames`](crate::cluster::ClusterNames)) with its fields in
//! headers and the command's MessagePack payload as its body:
//!
//! | header | value |
//! |---|---|
//! | `Aether-Op` | `command` or `state` |
//! | `Aether-Aggregate`, `Aether-Id`, `Aether-Command` | as [subject tokens](crate::store::jetstream::subject) (header values cannot hold every string) |
//! | `Aether-Command-Id`, `Aether-Correlation-Id`, `Aether-Causation-Id` | optional, as the doors checked them |
//! | `traceparent`, `tracestate` | optional, W3C trace context: the sender's `forward` span when it exports spans, else the context its caller sent, as sent (see `api::trace`) |
//!
//! The reply is the NATS door's JSON (`{"status": 200, ...}`), or no body
//! and `Aether-Not-Serving: 1` from a node that does not serve the shard
//! (any more, or yet): nothing was done. Then, or when no node answers the
//! subject (it left), the sender waits for its view of the map to change,
//! briefly, and tries again, for at most [`ClusterDoor::wait`] before
//! `503 unavailable`. An attempt of a command with an id (or a read) whose
//! answer has not come is sent again with that id as soon as the map grants
//! its shard anew (its holder died, or froze and was expelled: a failover),
//! or after [`ClusterDoor::attempt_timeout`], until [`ClusterDoor::timeout`];
//! one without an id is answered `503` (it may have run).
//!
//! Why a subject per node and not per shard: a subject per shard would be
//! subscribed and unsubscribed at every handoff, and async-nats drops the
//! messages that reach a subscription after its unsubscribe (or drain)
//! without waiting for the server to confirm it: their senders would wait
//! for nothing. A node's own subscription lasts as long as the node.
//!
//! A command forwarded stays one trace: the sender's `forward` span (a
//! child of its door's) goes in `traceparent`, and the serving node's
//! `shard` span, and under it the `command` span, are its children.

use super::error::{ApiError, ErrorKind};
use super::trace::{self, TraceContext};
use crate::cluster::{Cluster, ShardPass, ShardRequests};
use crate::runtime::{CommandRequest, Runtime};
use crate::store::jetstream::subject::{decode_token, encode_token};
use async_nats::HeaderMap;
use axum::http::StatusCode;
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

const OP: &str = "Aether-Op";
const AGGREGATE: &str = "Aether-Aggregate";
const ID: &str = "Aether-Id";
const COMMAND: &str = "Aether-Command";
const COMMAND_ID: &str = "Aether-Command-Id";
const CORRELATION_ID: &str = "Aether-Correlation-Id";
const CAUSATION_ID: &str = "Aether-Causation-Id";
const NOT_SERVING: &str = "Aether-Not-Serving";

/// A front door's view of the cluster: where to send what it does not serve.
#[derive(Debug, Clone)]
pub struct ClusterDoor {
    pub cluster: Cluster,
    pub client: async_nats::Client,
    /// How long a request waits for its shard to be served (during a
    /// handoff, a failover, or before the first map) before `503`.
    pub wait: Duration,
    /// How long a request may take in all, answers included, before `503`.
    pub timeout: Duration,
    /// How long one attempt of a command with an id (or a read) waits for
    /// the serving node's answer before it is sent again.
    pub attempt_timeout: Duration,
}

impl ClusterDoor {
    pub fn new(cluster: Cluster, client: async_nats::Client) -> Self {
        Self {
            cluster,
            client,
            wait: Duration::from_secs(15),
            timeout: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(5),
        }
    }
}

/// What a request asks of the node serving its actor.
pub(super) enum Op {
    Command(CommandRequest),
    State { aggregate: String, id: String },
}

impl Op {
    fn actor(&self) -> (&str, &str) {
        match self {
            Op::Command(request) => (&request.aggregate, &request.id),
            Op::State { aggregate, id } => (aggregate, id),
        }
    }

    fn message(&self) -> (HeaderMap, bytes::Bytes) {
        let mut headers = HeaderMap::new();
        let (aggregate, id) = self.actor();
        headers.insert(AGGREGATE, encode_token(aggregate));
        headers.insert(ID, encode_token(id));
        match self {
            Op::Command(request) => {
                headers.insert(OP, "command");
                headers.insert(COMMAND, encode_token(&request.command));
                for (name, value) in [
                    (COMMAND_ID, &request.command_id),
                    (CORRELATION_ID, &request.correlation_id),
                    (CAUSATION_ID, &request.causation_id),
                ] {
                    if let Some(value) = value {
                        headers.insert(name, value.as_str());
                    }
                }
                (headers, bytes::Bytes::copy_from_slice(&request.payload))
            }
            Op::State { .. } => {
                headers.insert(OP, "state");
                (headers, bytes::Bytes::new())
            }
        }
    }
}

/// Runs `op` where its actor's shard is served: here through `local` (with
/// the shard's pass held until it is done), or on the node the newest map
/// grants the shard to, with `trace` carried on (in a `forward` span's
/// context when spans are on).
///
/// An attempt whose answer does not come (the node died, or stalled) is sent
/// again only if the client gave the command an id, which makes a second
/// attempt safe: after [`ClusterDoor::attempt_timeout`], or as soon as the
/// map grants the shard anew (a failover). Otherwise it is answered `503`
/// saying the command may have run. (Minting an id here would make every forwarded command pay for the
/// store's command index (`docs/performance.md`, "Idempotency") to cover a
/// node dying mid-command.)
///
/// # Errors
///
/// What the serving node answered, or `503 unavailable` when no node
/// served the shard within [`ClusterDoor::wait`] or none answered within
/// [`ClusterDoor::timeout`].
pub(super) async fn route<F, Fut>(door: &ClusterDoor, op: Op, trace: &TraceContext, local: F) -> Result<Value, ApiError>
where
    F: FnOnce(Op, ShardPass) -> Fut,
    Fut: Future<Output = Result<Value, ApiError>>,
{
    let started = Instant::now();
    let (wait_until, give_up) = (started + door.wait, started + door.timeout);
    let gate = door.cluster.gate();
    let mut changes = door.cluster.changes();
    let mut backoff = Duration::from_millis(2);
    let mut message = None;
    let mut why = "no shard map yet".to_owned();
    loop {
        let (aggregate, id) = op.actor();
        if let Some(shard) = gate.shard_of(aggregate, id) {
            if let Some(pass) = gate.enter(shard) {
                return local(op, pass).await;
            }
            why = format!("no node served shard {shard}");
            if let Some(subject) = door.cluster.holder_subject(shard) {
                // Only an attempt that can be made again safely gives up early.
                let retryable = match &op {
                    Op::Command(request) => request.command_id.is_some(),
                    Op::State { .. } => true,
                };
                let (headers, body, span) = message
                    .get_or_insert_with(|| {
                        let span =
                            trace.child_span(|| tracing::info_span!("forward", otel.kind = "client", shard = shard.0));
                        let (mut headers, body) = op.message();
                        trace.inject(&span, &mut headers);
                        (headers, body, span)
                    })
                    .clone();
                let left = give_up.saturating_duration_since(Instant::now());
                let attempt = if retryable { door.attempt_timeout.min(left) } else { left };
                let request = async_nats::Request::new()
                    .headers(headers)
                    .payload(body)
                    .timeout(Some(attempt.max(Duration::from_millis(1))));
                door.cluster.stats().forwarded.fetch_add(1, Ordering::Relaxed);
                let sent = door.client.send_request(subject, request).instrument(span);
                let reply = if retryable {
                    // The grant moved on while we wait (the holder died, or
                    // froze and was expelled): ask the new holder at once
                    // rather than wait out the attempt.
                    let granted = door.cluster.grant_epoch(shard);
                    let moved = async {
                        while changes.changed().await.is_ok() {
                            if door.cluster.grant_epoch(shard) != granted {
                                return;
                            }
                        }
                        std::future::pending().await
                    };
                    tokio::select! {
                        reply = sent => reply,
                        () = moved => continue,
                    }
                } else {
                    sent.await
                };
                match reply {
                    Ok(reply) if reply.headers.as_ref().is_some_and(|h| h.get(NOT_SERVING).is_some()) => {}
                    Ok(reply) => match answer(&reply.payload) {
                        // Fenced before it appended anything: ask again.
                        Err(err) if err.kind() == Some(ErrorKind::ShardMoved) => {}
                        // Fenced while it appended: ask again if that is
                        // safe (the new holder answers the command's outcome).
                        Err(err) if retryable && err.kind() == Some(ErrorKind::Unconfirmed) => {}
                        answer => return answer,
                    },
                    Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {}
                    // The answer was lost or is late: ask again if that is
                    // safe, wherever the shard is served by then.
                    Err(e) if e.kind() == async_nats::RequestErrorKind::TimedOut => {
                        if !retryable || Instant::now() >= give_up {
                            return Err(ApiError::new(
                                ErrorKind::Unavailable,
                                format!(
                                    "no node answered for shard {shard} within {:?}; the command may have run: \
                                     retry with the same idempotency key",
                                    door.timeout
                                ),
                            ));
                        }
                        continue;
                    }
                    Err(e) => why = format!("cannot reach the node serving shard {shard}: {e}"),
                }
            }
        }
        let now = Instant::now();
        if now >= wait_until {
            let mut err = ApiError::new(ErrorKind::Unavailable, format!("{why} within {:?}; retry", door.wait));
            err.retry_after_s = Some(1);
            return Err(err);
        }
        // A handoff ends with a map this node sees: wait for one, briefly.
        let nap = backoff.min(wait_until - now);
        let _ = tokio::time::timeout(nap, changes.changed()).await;
        backoff = (backoff * 2).min(Duration::from_millis(50));
    }
}

/// A reply of the serving node as this door's answer.
fn answer(payload: &[u8]) -> Result<Value, ApiError> {
    let mut body: Value = serde_json::from_slice(payload)
        .map_err(|e| ApiError::new(ErrorKind::BadGateway, format!("the serving node's answer is not JSON: {e}")))?;
    let status = body.as_object_mut().and_then(|o| o.remove("status")).and_then(|s| s.as_u64()).unwrap_or(0);
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| ApiError::new(ErrorKind::BadGateway, "the serving node's answer has no status"))?;
    if status == StatusCode::OK {
        return Ok(body);
    }
    let retry_after_s = body.get("retry_after_s").and_then(Value::as_u64).and_then(|s| u32::try_from(s).ok());
    Err(ApiError { status, body, retry_after_s })
}

/// Answers requests arriving on the subjects of shards served here.
#[derive(Debug)]
pub struct ShardServer {
    runtime: Runtime,
    client: async_nats::Client,
    cluster: std::sync::OnceLock<Cluster>,
    tasks: TaskTracker,
    slots: Arc<Semaphore>,
    max_in_flight: usize,
    trace_spans: bool,
}

impl ShardServer {
    /// A server running at most `max_in_flight` requests at once.
    /// `trace_spans`: as [`ApiConfig::trace_spans`](super::ApiConfig::trace_spans);
    /// set, each request runs in a `shard` span, child of the sender's
    /// `traceparent`.
    pub fn new(runtime: Runtime, client: async_nats::Client, max_in_flight: usize, trace_spans: bool) -> Arc<Self> {
        Arc::new(Self {
            runtime,
            client,
            cluster: std::sync::OnceLock::new(),
            tasks: TaskTracker::new(),
            slots: Arc::new(Semaphore::new(max_in_flight.max(1))),
            max_in_flight: max_in_flight.max(1),
            trace_spans,
        })
    }

    /// Connects the server to the cluster it serves for (once it has joined).
    pub fn attach(&self, cluster: Cluster) {
        let _ = self.cluster.set(cluster);
    }

    /// Waits for the requests it started.
    pub async fn close(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    async fn answer(&self, headers: Option<&HeaderMap>, payload: &[u8]) -> Option<Value> {
        let trace = TraceContext::from_nats(headers, self.trace_spans);
        let span = trace.span(|| {
            tracing::info_span!(
                "shard",
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                status = tracing::field::Empty,
                domain = %self.runtime.domain(),
            )
        });
        let answer = self.answer_in(headers, payload, &trace).instrument(span.clone()).await;
        if let Some(status) = answer.as_ref().and_then(|a| a["status"].as_u64()) {
            trace::record_status(&span, u16::try_from(status).unwrap_or(0));
        }
        answer
    }

    async fn answer_in(&self, headers: Option<&HeaderMap>, payload: &[u8], trace: &TraceContext) -> Option<Value> {
        let cluster = self.cluster.get()?;
        let request = match parse(headers, payload) {
            Ok(request) => request,
            Err(err) => return Some(with_status(Err(err))),
        };
        let (aggregate, id) = request.actor();
        let pass = cluster.gate().enter(cluster.gate().shard_of(aggregate, id)?)?;
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            self.runtime.stats().overloads.fetch_add(1, Ordering::Relaxed);
            let limit = self.max_in_flight;
            let err = ApiError::overloaded(format!("the node is at its limit of {limit} forwarded requests"), limit);
            return Some(with_status(Err(err)));
        };
        Some(with_status(run_here(&self.runtime, &self.tasks, request, trace, pass, slot).await))
    }
}

impl ShardRequests for ShardServer {
    fn handle(self: Arc<Self>, message: async_nats::Message) {
        let Some(reply) = message.reply.clone() else { return };
        let tasks = self.tasks.clone();
        tasks.spawn(async move {
            let published = match self.answer(message.headers.as_ref(), &message.payload).await {
                Some(answer) => {
                    let bytes = serde_json::to_vec(&answer).expect("JSON serialises");
                    self.client.publish(reply, bytes.into()).await
                }
                None => {
                    let mut headers = HeaderMap::new();
                    headers.insert(NOT_SERVING, "1");
                    self.client.publish_with_headers(reply, headers, bytes::Bytes::new()).await
                }
            };
            if let Err(e) = published {
                tracing::warn!(cause = %e, "cannot answer a forwarded request");
            }
        });
    }
}

/// Reads a forwarded request. Another node sent it, but the subject is
/// open to any client of the NATS account: everything is checked as the
/// doors check it.
fn parse(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<Op, ApiError> {
    let bad = |message: String| ApiError::new(ErrorKind::BadRequest, message);
    let headers = headers.ok_or_else(|| bad("a forwarded request needs headers".into()))?;
    let get = |name: &str| headers.get(name).map(|v| v.as_str());
    let token = |name: &str| {
        let value = get(name).ok_or_else(|| bad(format!("the {name} header is missing")))?;
        decode_token(value).ok_or_else(|| bad(format!("the {name} header does not decode")))
    };
    let id = |name: &str| match get(name) {
        Some(value) => super::command::check_id(name, value.as_bytes()).map(|id| Some(id.to_owned())),
        None => Ok(None),
    };
    let (aggregate, actor) = (token(AGGREGATE)?, token(ID)?);
    match get(OP) {
        Some("command") => Ok(Op::Command(CommandRequest {
            aggregate,
            id: actor,
            command: token(COMMAND)?,
            payload: payload.to_vec(),
            command_id: id(COMMAND_ID)?,
            correlation_id: id(CORRELATION_ID)?,
            causation_id: id(CAUSATION_ID)?,
            fence: None,
        })),
        Some("state") => Ok(Op::State { aggregate, id: actor }),
        other => Err(bad(format!("unknown {OP} {other:?}"))),
    }
}

/// Runs a request on this node under the shard's pass, kept (with `hold`,
/// a door's slot) until it is done; a command records the pass's epoch.
pub(super) async fn run_here(
    runtime: &Runtime,
    tasks: &TaskTracker,
    op: Op,
    trace: &TraceContext,
    pass: ShardPass,
    hold: impl Send + 'static,
) -> Result<Value, ApiError> {
    match op {
        Op::Command(mut request) => {
            request.fence = Some(pass.fence());
            super::command::execute_here(runtime, tasks, request, trace, (pass, hold)).await
        }
        Op::State { aggregate, id } => {
            let state = super::routes::state_json(runtime, &aggregate, &id).await;
            drop((pass, hold));
            state
        }
    }
}

/// An answer as the NATS door sends it: the body with its status.
pub(super) fn with_status(answer: Result<Value, ApiError>) -> Value {
    let (status, mut body) = match answer {
        Ok(body) => (StatusCode::OK, body),
        Err(err) => (err.status, err.body),
    };
    body["status"] = status.as_u16().into();
    body
}
