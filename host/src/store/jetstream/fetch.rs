//! Reading an actor's messages in order from a stream sequence on: the
//! [`Cursor`] every read and scan of the store goes through.
//!
//! JetStream offers two ways to read one subject, and each wins somewhere
//! (measured by `replay_throughput` in `tests/all/jetstream.rs`; the
//! figures are in `docs/performance.md`, "Measurements behind the design").
//! A direct get is one request and creates nothing on the server; a consumer
//! costs a creation (on a cluster, a round through the meta leader) and then
//! streams about twice as fast. Most reads are short (the events since the
//! latest snapshot, a command's events for a retry), so a cursor starts with
//! direct gets and moves to an ordered consumer once it needs more than a
//! page and more than [`LONG_READ`] messages remain. The store keeps such a
//! cursor between an actor's consecutive reads (`replays`), so a whole replay
//! streams from one consumer, about 1.6× the rate of direct gets alone.

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::{Client, HeaderMap, Message};
use futures_util::StreamExt;
use std::time::Duration;

/// Messages still to come beyond which a consumer is worth creating: its
/// creation costs about what a direct get spends on a few hundred messages.
pub(super) const LONG_READ: u64 = 1_000;

/// Bytes asked for per direct-get page, on top of the message count: bounds
/// the memory a page of large commands takes. The server still sends one
/// message if the first is larger.
const PAGE_BYTES: usize = 8 * 1024 * 1024;

/// One stored message and its stream sequence.
#[derive(Debug)]
pub(super) struct Fetched {
    pub seq: u64,
    pub message: Message,
}

/// Why messages could not be read.
#[derive(Debug)]
pub(super) enum FetchError {
    /// Nobody answers for the stream: it does not exist (or JetStream is off).
    Missing,
    /// The server or the connection failed; the message says how.
    Failed(String),
}

/// Where a cursor reads from.
#[derive(Debug, Clone, Copy)]
pub(super) struct Source<'a> {
    pub client: &'a Client,
    pub js: &'a async_nats::jetstream::Context,
    pub stream: &'a str,
    pub timeout: Duration,
}

/// A position on one subject that reads forward.
pub(super) struct Cursor {
    subject: String,
    next_seq: u64,
    /// Messages on the subject after the last one read, once known.
    remaining: Option<u64>,
    consumer: Option<Ordered>,
    headers_only: bool,
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("subject", &self.subject)
            .field("next_seq", &self.next_seq)
            .field("remaining", &self.remaining)
            .field("streaming", &self.consumer.is_some())
            .finish()
    }
}

impl Cursor {
    /// A cursor at stream sequence `from` (messages of other subjects are
    /// passed over). `headers_only` leaves payloads on the server where it
    /// can (the consumer path).
    pub(super) fn new(subject: &str, from: u64, headers_only: bool) -> Self {
        Self { subject: subject.to_owned(), next_seq: from.max(1), remaining: None, consumer: None, headers_only }
    }

    /// True once the last message on the subject (when read) has been read.
    pub(super) fn at_end(&self) -> bool {
        self.remaining == Some(0)
    }

    /// True if reading from a consumer: worth keeping for the next read.
    pub(super) fn is_streaming(&self) -> bool {
        self.consumer.is_some()
    }

    /// The next messages, at most `batch`; none at the end of the subject.
    pub(super) async fn next(&mut self, source: Source<'_>, batch: usize) -> Result<Vec<Fetched>, FetchError> {
        let batch = batch.max(1);
        if self.at_end() {
            return Ok(Vec::new());
        }
        let fetched = if self.consumer.is_some() || self.remaining.is_some_and(|r| r > LONG_READ) {
            self.stream(source, batch).await?
        } else {
            let (messages, remaining) = page(source, &self.subject, self.next_seq, batch).await?;
            self.remaining = Some(remaining);
            messages
        };
        if let Some(last) = fetched.last() {
            self.next_seq = last.seq + 1;
        }
        Ok(fetched)
    }

    /// Up to `batch` messages from the ordered consumer, created on first use.
    async fn stream(&mut self, source: Source<'_>, batch: usize) -> Result<Vec<Fetched>, FetchError> {
        let deadline = tokio::time::Instant::now() + source.timeout;
        let messages = match &mut self.consumer {
            Some(messages) => messages,
            None => {
                let config = OrderedConfig {
                    filter_subject: self.subject.clone(),
                    deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: self.next_seq },
                    headers_only: self.headers_only,
                    ..Default::default()
                };
                let create = async {
                    let stream = source.js.get_stream_no_info(source.stream).await.map_err(failed)?;
                    let consumer = stream.create_consumer(config).await.map_err(|e| {
                        let missing = matches!(e.kind(), async_nats::jetstream::stream::ConsumerErrorKind::JetStream(j)
                            if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND);
                        if missing { FetchError::Missing } else { failed(e) }
                    })?;
                    consumer.messages().await.map_err(failed)
                };
                let messages = tokio::time::timeout_at(deadline, create).await.map_err(|_| late(source.timeout))??;
                self.consumer.insert(messages)
            }
        };
        let mut out = Vec::with_capacity(batch);
        while out.len() < batch {
            let message = match tokio::time::timeout_at(deadline, messages.next()).await {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(e))) => return Err(failed(e)),
                Ok(None) => return Err(FetchError::Failed("the consumer stopped".into())),
                Err(_) => return Err(late(source.timeout)),
            };
            let (seq, pending) = message.info().map(|i| (i.stream_sequence, i.pending)).map_err(failed)?;
            out.push(Fetched { seq, message: message.message });
            self.remaining = Some(pending);
            if pending == 0 {
                break;
            }
        }
        Ok(out)
    }
}

fn failed(e: impl std::fmt::Display) -> FetchError {
    FetchError::Failed(e.to_string())
}

fn late(timeout: Duration) -> FetchError {
    FetchError::Failed(format!("no answer within {timeout:?}"))
}

/// One batched direct get: up to `batch` messages on `subject` from stream
/// sequence `from` on, and how many messages on the subject remain after them.
async fn page(source: Source<'_>, subject: &str, from: u64, batch: usize) -> Result<(Vec<Fetched>, u64), FetchError> {
    let client = source.client;
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.map_err(failed)?;
    let request = serde_json::json!({ "seq": from, "next_by_subj": subject, "batch": batch, "max_bytes": PAGE_BYTES });
    client
        .publish_with_reply(format!("$JS.API.DIRECT.GET.{}", source.stream), inbox, request.to_string().into())
        .await
        .map_err(failed)?;

    let deadline = tokio::time::Instant::now() + source.timeout;
    let (mut messages, mut remaining) = (Vec::new(), 0);
    loop {
        let reply = match tokio::time::timeout_at(deadline, replies.next()).await {
            Ok(Some(reply)) => reply,
            Ok(None) => return Err(FetchError::Failed("the connection closed during the read".into())),
            Err(_) => return Err(late(source.timeout)),
        };
        match reply.status.map(|s| s.as_u16()) {
            None | Some(200) => {
                let seq = header_u64(reply.headers.as_ref(), "Nats-Sequence")
                    .ok_or_else(|| FetchError::Failed("a reply without Nats-Sequence".into()))?;
                remaining = header_u64(reply.headers.as_ref(), "Nats-Num-Pending").unwrap_or(0);
                messages.push(Fetched { seq, message: reply });
            }
            // End of the batch, with the count of messages left on the subject.
            Some(204) => {
                let remaining = header_u64(reply.headers.as_ref(), "Nats-Num-Pending").unwrap_or(remaining);
                return Ok((messages, remaining));
            }
            // Nothing on the subject from `from` on.
            Some(404) => return Ok((messages, 0)),
            Some(503) => return Err(FetchError::Missing),
            Some(code) => {
                let description = reply.description.unwrap_or_default();
                return Err(FetchError::Failed(format!("the server answered {code} {description}")));
            }
        }
    }
}

fn header_u64(headers: Option<&HeaderMap>, name: &str) -> Option<u64> {
    headers?.get(name)?.as_str().parse().ok()
}
