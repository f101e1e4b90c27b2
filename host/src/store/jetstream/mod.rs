//! The JetStream event store: events in a NATS JetStream stream, snapshots in
//! a key-value bucket, for hosts that share their actors over a cluster.
//!
//! # Layout on the server
//!
//! - One stream per namespace ([`JetStreamConfig::stream_name`]) with one
//!   subject per actor: `aether.ev.<domain>.<aggregate>.<id>` (namespaced:
//!   `aether.ns.<namespace>.ev.…`), every part encoded by [`subject`] so any
//!   string is one token.
//! - One message per command, holding all its events, so an append is
//!   atomic; its headers carry the versions and the command id (see `codec`).
//! - One bucket of snapshots per namespace, keyed `<domain>.<aggregate>.<id>`.
//!
//! # Versions and sequences
//!
//! An actor's versions count its events (1..n); stream sequences count every
//! message of the stream. An append must say which sequence it expects the
//! subject's last message to have (`Nats-Expected-Last-Subject-Sequence`),
//! so the store keeps, per actor, the last message it saw: its sequence and
//! its last version (`cache`). An append at that version publishes at once:
//! one round trip. Otherwise the store reads the subject's last message
//! first (a `STREAM.MSG.GET` by subject, answered by the stream
//! leader so it is never stale). When the server refuses the expected
//! sequence, the store reads the last message and reports the **version**
//! it holds in [`StoreError::Conflict`].
//!
//! Reads start from the latest known message at or before the version asked
//! for: the end of the previous read while an actor replays, or the position
//! saved inside the snapshot it restored from. Each snapshot entry records
//! the sequence of the latest message the saving host knew to end at or
//! before the snapshot's version; actors snapshot right after an append, so
//! that is the message holding the snapshot's version, and a host that
//! restores the snapshot reads only the messages after it, never from
//! sequence 1 ([`JetStreamEventStore::messages_read`] shows it). Every start
//! position is checked against the versions of the first message read; a
//! position the server contradicts (a recreated stream) is dropped and the
//! read starts over from the beginning.
//!
//! # Replay
//!
//! JetStream reads a subject two ways, and each wins somewhere
//! (`docs/performance.md`, "Measurements behind the design"): a batched
//! direct get answers a short read in one request, several times sooner
//! than creating an ordered consumer, which streams a long read about twice
//! as fast. So a
//! read starts with direct gets and, if it needs more than a page and more
//! than `fetch::LONG_READ` messages remain, streams the rest from an ordered
//! consumer, which the store keeps for the actor's next read (`replays`):
//! a whole replay runs on one consumer. An activation from a recent snapshot
//! costs three requests (the snapshot, the events after it, an empty read
//! that confirms the end) and creates nothing on the server.
//!
//! # Idempotency
//!
//! A command whose id the caller chose ([`AppendRequest::id_from_caller`])
//! is recorded in the **command index**: a subject per command,
//! `aether.ix.<domain>.<aggregate>.<id>.<hash>` (namespaced:
//! `aether.ns.<namespace>.ix.…`; the hash covers the actor and the command
//! id, see [`subject`]), in the same stream, beside the events' subjects so
//! a consumer of `aether.ev.>` sees events only. The store first publishes
//! a **claim** there, expecting the subject empty and naming the stream
//! sequence the actor's subject ends at, then the events message, expecting
//! that same sequence: two ordinary publishes, no batch. A reader of an
//! entry checks the actor's first message after the named sequence, which
//! is this command's events if they were stored; a claim whose slot another
//! command took is abandoned and a retry takes it over (compare-and-set on
//! the index subject), and one whose slot is still empty is left alone
//! (its writer may be between its two publishes). `index` has the protocol
//! and why it never stores a command twice. A retry is recognised however
//! late it comes: there is no window. No `Nats-Msg-Id` is sent, so the
//! server keeps no de-duplication entries and
//! [`JetStreamConfig::duplicate_window`] no longer matters to the store.
//!
//! A command accepted with no events and a caller-chosen id is recorded by
//! its index message alone (versions `<v+1>-<v>`: accepted at `v`), after
//! the store checked that the actor is still at `v`; a retry is a duplicate
//! with no events.
//!
//! A command id the host minted (a fresh random UUID) names no earlier
//! message, so it gets no index entry: its message is published alone, one
//! round trip as before. The one repeat it can see, the same request sent
//! again after its ack was lost, is answered from the subject's last
//! message.
//!
//! What it costs: a caller-id command is two round trips and two stored
//! messages (the claim is headers only) instead of one; `docs/performance.md`
//! ("Idempotency") has the measured ratio. A conflict of a caller-id
//! command reads its entry (two requests) before answering, since it may be
//! a retry of an older command.
//!
//! [`find_command`](EventStore::find_command) is two requests: the entry,
//! and the message it names (or, with no entry, the actor's last message,
//! for a minted id). The runtime calls it for a rejected command whose id
//! it does not remember, under the actor's lock; no history is read. A
//! stream created before the index (by an older aether-host) is given the
//! index subjects when a host connects, and the stream sequence at that
//! moment is kept in its metadata (`aether.index-since`); commands stored
//! up to it have no index entry, so a lookup that misses the index scans
//! the actor's messages up to that sequence (as every lookup did before;
//! 1.5–2.5 s for 100,000 commands), and a retry of such a command beyond
//! the actor's last is still decided again. A stream made with the index
//! never scans. Hosts older than the index must not keep writing to a
//! stream once it has it: their commands would not be indexed.
//!
//! # Failures
//!
//! Every request is bounded by [`JetStreamConfig::request_timeout`]; an
//! unreachable server gives [`StoreError::Unavailable`], never a hang. An
//! append that times out may still have been stored: retry it with the same
//! command id. Stored data that does not decode is [`StoreError::Corrupt`]
//! naming the actor and the version it should have held; it is never
//! skipped (invariant: nothing-skipped). A stream or bucket that disappeared (a restarted
//! server with memory storage) is created again.
//!
//! Layout:
//! - this file: the store and its operations;
//! - [`config`](JetStreamConfig): the settings and what each risks;
//! - [`subject`]: the id encoding and the names derived from it;
//! - `codec`: the message and snapshot formats;
//! - `index`: the command index: claims, takeovers, lookups;
//! - `cache`: the positions remembered per actor;
//! - `fetch`: the cursor that reads a subject (direct gets, then a consumer);
//! - `replays`: cursors kept between the reads of a long replay;
//! - `setup`: creating the stream and the bucket.

mod cache;
mod codec;
mod config;
mod fetch;
mod index;
mod replays;
mod setup;
pub mod subject;

pub use codec::EPOCH as EPOCH_HEADER;
pub use config::{JetStreamConfig, JetStreamStorage};

use super::{ActorId, AppendRequest, Appended, EventStore, LoggedCommand, RecordedEvent, Snapshot, StoreError};
use async_nats::connection::State;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::kv;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::{Client, HeaderMap};
use async_trait::async_trait;
use cache::{Mark, Positions};
use codec::CommandHeaders;
#[cfg(feature = "fuzzing")]
pub(crate) use codec::fuzz;
use fetch::{Cursor, FetchError, Fetched, Source};
use index::Claim;
use replays::Replays;
use setup::{Storage, ensure_storage};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use subject::Names;

/// Room left in a message for the headers, next to the payload.
const HEADER_ROOM: usize = 1024;

/// An event store on NATS JetStream. See the [module docs](self).
pub struct JetStreamEventStore {
    client: Client,
    js: async_nats::jetstream::Context,
    snapshots: kv::Store,
    config: JetStreamConfig,
    stream: String,
    names: Names,
    positions: Positions,
    replays: Replays,
    messages_read: AtomicU64,
    /// The stream sequence from which every caller-id command is in the
    /// command index (`setup::INDEX_SINCE`); 0 for a stream made with it.
    index_since: AtomicU64,
}

impl fmt::Debug for JetStreamEventStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamEventStore")
            .field("stream", &self.stream)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// How a publish went wrong.
enum PublishFailure {
    /// The subject's last message is not at the expected sequence.
    WrongSequence,
    /// No stream takes the subject.
    Missing,
    Failed(StoreError),
}

impl JetStreamEventStore {
    /// A store for the actors of `domain` (the model's name) on the
    /// JetStream of `client`'s server. Creates the stream and the bucket if
    /// they do not exist (safe when several hosts start at once).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the configuration is invalid, the
    /// server does not answer within the request timeout, JetStream is not
    /// enabled, or the stream or bucket cannot be created.
    pub async fn connect(client: Client, domain: &str, config: JetStreamConfig) -> Result<Self, StoreError> {
        config.validate().map_err(|e| StoreError::Unavailable(format!("invalid JetStream configuration: {e}")))?;
        let mut js = async_nats::jetstream::new(client.clone());
        js.set_timeout(config.request_timeout);
        let Storage { snapshots, index_since } = ensure_storage(&js, &config).await?;
        Ok(Self {
            names: Names::new(&config.subject_prefix(), &config.index_prefix(), domain),
            index_since: AtomicU64::new(index_since),
            stream: config.stream_name(),
            positions: Positions::new(config.cached_actors),
            replays: Replays::default(),
            messages_read: AtomicU64::new(0),
            client,
            js,
            snapshots,
            config,
        })
    }

    pub fn config(&self) -> &JetStreamConfig {
        &self.config
    }

    /// Messages fetched from the stream by reads since the store was
    /// created: shows how far back replays start.
    pub fn messages_read(&self) -> u64 {
        self.messages_read.load(Ordering::Relaxed)
    }

    /// The subject of a command's entry in the command index (see the
    /// [module docs](self)), `None` if the actor's subject would be too long.
    /// Every command whose id its caller chose has one, in the event stream.
    pub fn index_subject(&self, actor: &ActorId, command_id: &str) -> Option<String> {
        self.names.index_subject(actor, command_id)
    }

    /// The actor's event subject, if it fits the protocol.
    fn subject(&self, actor: &ActorId) -> Option<String> {
        self.names.subject(actor)
    }

    fn too_long(actor: &ActorId) -> StoreError {
        StoreError::Invalid {
            actor: actor.clone(),
            reason: format!(
                "the id is too long for a NATS subject (at most {} bytes once encoded)",
                subject::MAX_SUBJECT_BYTES
            ),
        }
    }

    /// [`StoreError::Unavailable`] for `what`, naming the connection's state.
    fn unavailable(&self, what: impl fmt::Display, cause: impl fmt::Display) -> StoreError {
        StoreError::Unavailable(format!("{what}: {cause} (NATS connection {})", self.client.connection_state()))
    }

    /// Runs one request, failing with [`StoreError::Unavailable`] once the
    /// request timeout has passed.
    async fn bounded<T>(&self, what: impl Fn() -> String, request: impl Future<Output = T>) -> Result<T, StoreError> {
        let timeout = self.config.request_timeout;
        tokio::time::timeout(timeout, request)
            .await
            .map_err(|_| self.unavailable(what(), format_args!("no answer within {timeout:?}")))
    }

    /// Creates the stream and the bucket again, after the server forgot them.
    ///
    /// Boxed: creating a stream and a bucket is a future of several
    /// kilobytes, and inline it would make every append, read and version
    /// future as large (each is boxed per call, behind the store trait).
    fn recreate(&self) -> std::pin::Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + '_>> {
        Box::pin(async move {
            tracing::warn!(stream = %self.stream, "the event stream is missing; creating it again");
            let storage = ensure_storage(&self.js, &self.config).await?;
            self.index_since.store(storage.index_since, Ordering::Relaxed);
            Ok(())
        })
    }

    /// Runs a request on the snapshot bucket. If the server lost the bucket
    /// (a restart with memory storage), creates it again and retries once.
    /// The client nests the cause of such a failure several errors deep, so
    /// it is recognised by its text, and only while connected.
    async fn in_bucket<T, E: fmt::Display, F: Future<Output = Result<T, E>>>(
        &self,
        what: impl Fn() -> String + Copy,
        request: impl Fn() -> F,
    ) -> Result<Result<T, E>, StoreError> {
        let result = self.bounded(what, request()).await?;
        let missing = |e: &E| {
            let text = e.to_string();
            text.contains("no responders") || text.contains("no stream found")
        };
        match &result {
            Err(e) if missing(e) && self.client.connection_state() == State::Connected => {
                self.recreate().await?;
                self.bounded(what, request()).await
            }
            _ => Ok(result),
        }
    }

    /// The last message on the actor's subject, from the stream leader; also
    /// remembered as the actor's head.
    async fn fetch_head(&self, actor: &ActorId, subject: &str) -> Result<Option<Head>, StoreError> {
        let what = || format!("reading the last event of {actor}");
        for attempt in 0..2 {
            let stream = self.js.get_stream_no_info(&self.stream).await.map_err(|e| self.unavailable(what(), e))?;
            let message = match self.bounded(what, stream.get_last_raw_message_by_subject(subject)).await? {
                Ok(message) => message,
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                    self.positions.set_head(actor, None);
                    return Ok(None);
                }
                Err(e) if attempt == 0 && is_stream_missing(&e.kind()) => {
                    self.recreate().await?;
                    continue;
                }
                Err(e) => return Err(self.unavailable(what(), e)),
            };
            let headers = codec::command_headers(Some(&message.headers)).map_err(|cause| {
                // The version it should hold is unknown without a scan; the
                // cache may know the version before it.
                let version = self.positions.head(actor).map_or(0, |mark| mark.version + 1);
                let cause = format!("last message (stream sequence {}): {cause}", message.sequence);
                StoreError::Corrupt { actor: actor.clone(), version, cause }
            })?;
            let head = head(&headers, message.sequence);
            self.positions.set_head(actor, Some(head.mark));
            return Ok(Some(head));
        }
        Err(self.unavailable(what(), "the stream is missing"))
    }

    async fn publish(
        &self,
        actor: &ActorId,
        subject: &str,
        headers: HeaderMap,
        payload: bytes::Bytes,
    ) -> Result<PublishAck, PublishFailure> {
        let what = || format!("appending to {actor}");
        let size = payload.len();
        // Our bound covers handing the message to the client; the ack is
        // bounded by the client itself (the context's timeout is ours), so
        // an append registers one timer, not two.
        let sent = self.bounded(what, self.js.publish_with_headers(subject.to_owned(), headers, payload)).await;
        let acked = match sent.map_err(PublishFailure::Failed)? {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match acked {
            Ok(ack) => Ok(ack),
            Err(e) if e.kind() == PublishErrorKind::TimedOut => Err(PublishFailure::Failed(
                self.unavailable(what(), format_args!("no answer within {:?}", self.config.request_timeout)),
            )),
            Err(e) => Err(match e.kind() {
                PublishErrorKind::WrongLastSequence => PublishFailure::WrongSequence,
                PublishErrorKind::StreamNotFound => PublishFailure::Missing,
                PublishErrorKind::MaxPayloadExceeded => PublishFailure::Failed(StoreError::Invalid {
                    actor: actor.clone(),
                    reason: format!("the command's events ({size} bytes) exceed the server's max_payload"),
                }),
                _ => PublishFailure::Failed(self.unavailable(what(), e)),
            }),
        }
    }

    /// Records a command accepted with no events: its index entry alone,
    /// at the expected version, which must still be the subject's (as a
    /// rejection is checked, the decision must have been made on the latest
    /// state): the head, then the entry, and the entry again if it was
    /// taken (see `index`).
    async fn record(
        &self,
        actor: &ActorId,
        subject: &str,
        index: &str,
        command_id: &str,
        expected: u64,
    ) -> Result<Appended, StoreError> {
        let head = self.fetch_head(actor, subject).await?;
        if let Some(head) = &head
            && head.command_id == command_id
        {
            return Ok(duplicate_of(head));
        }
        let actual = head.map_or(0, |h| h.mark.version);
        if actual != expected {
            return match self.find_indexed(actor, subject, index, command_id).await? {
                Some(original) => Ok(original),
                None => Err(StoreError::Conflict { actor: actor.clone(), expected, actual }),
            };
        }
        let recorded = Appended { first_version: expected + 1, last_version: expected, duplicate: false, position: 0 };
        match self.claim(actor, subject, index, (command_id, (expected + 1, expected)), None).await? {
            Claim::Held => Ok(recorded),
            Claim::Stored(original) => Ok(original),
            Claim::Open { after } => Err(self.unavailable(
                format_args!("recording command {command_id:?} of {actor} as accepted with no events"),
                format_args!("another writer is appending it with events (after stream sequence {after}); retry"),
            )),
        }
    }

    fn source(&self) -> Source<'_> {
        Source { client: &self.client, js: &self.js, stream: &self.stream, timeout: self.config.request_timeout }
    }

    /// The cursor's next messages (at most `batch`), creating the stream
    /// again if the server lost it.
    async fn next_batch(&self, actor: &ActorId, cursor: &mut Cursor, batch: usize) -> Result<Vec<Fetched>, StoreError> {
        self.next_of(&|| format!("reading the events of {actor}"), cursor, batch).await
    }

    /// The next messages of `cursor` (see [`Cursor::next`]), recreating a
    /// missing stream once; `what` names the read in errors.
    async fn next_of(
        &self,
        what: &(dyn Fn() -> String + Sync),
        cursor: &mut Cursor,
        batch: usize,
    ) -> Result<Vec<Fetched>, StoreError> {
        for attempt in 0..2 {
            match cursor.next(self.source(), batch).await {
                Ok(fetched) => {
                    self.messages_read.fetch_add(fetched.len() as u64, Ordering::Relaxed);
                    return Ok(fetched);
                }
                Err(FetchError::Missing) if attempt == 0 => self.recreate().await?,
                Err(FetchError::Missing) => break,
                Err(FetchError::Failed(cause)) => return Err(self.unavailable(what(), cause)),
            }
        }
        Err(self.unavailable(what(), "the stream is missing"))
    }

    /// Reads events after `after` from `cursor`, whose first message must
    /// hold version `due`. `Ok(None)` if it does not and `due` came from a
    /// remembered position (`hint`): the position is wrong, not the data.
    async fn read_with(
        &self,
        actor: &ActorId,
        mut cursor: Cursor,
        mut due: u64,
        after: u64,
        max: usize,
        hint: bool,
    ) -> Result<Option<Vec<RecordedEvent>>, StoreError> {
        let mut out = Vec::new();
        let mut last: Option<(CommandHeaders, u64)> = None;
        loop {
            let batch = self.next_batch(actor, &mut cursor, (max - out.len()).min(self.config.read_batch)).await?;
            let count = batch.len();
            let mut consumed = 0;
            for fetched in batch {
                let seq = fetched.seq;
                let corrupt = |version, cause| StoreError::Corrupt {
                    actor: actor.clone(),
                    version,
                    cause: format!("message at stream sequence {seq}: {cause}"),
                };
                let headers = codec::command_headers(fetched.message.headers.as_ref()).map_err(|c| corrupt(due, c))?;
                if headers.first_version != due {
                    if hint && last.is_none() {
                        return Ok(None);
                    }
                    let cause = format!(
                        "it holds versions {}..={} where version {due} was due",
                        headers.first_version, headers.last_version
                    );
                    return Err(corrupt(due, cause));
                }
                due = headers.last_version + 1;
                if headers.last_version > after {
                    let events = codec::decode_events(&headers, &fetched.message.payload)
                        .map_err(|c| corrupt(headers.first_version, c))?;
                    out.extend(events.into_iter().filter(|e| e.version > after));
                }
                last = Some((headers, seq));
                consumed += 1;
                if out.len() >= max {
                    break;
                }
            }
            let at_end = count == 0 || (consumed == count && cursor.at_end());
            if at_end || out.len() >= max {
                if let Some((headers, seq)) = last {
                    if at_end {
                        self.positions.set_head(actor, Some(Mark { version: headers.last_version, seq }));
                    } else {
                        self.positions.add_mark(actor, Mark { version: headers.last_version, seq });
                    }
                }
                // A long replay continues from the same consumer next time.
                if !at_end && consumed == count && cursor.is_streaming() {
                    self.replays.park(actor, cursor, due);
                }
                return Ok(Some(out));
            }
        }
    }

    /// Looks for a command id in the headers of the actor's messages up to
    /// stream sequence `until`, oldest first: for commands stored before the
    /// stream had the command index.
    async fn scan_for_command(
        &self,
        actor: &ActorId,
        subject: &str,
        command_id: &str,
        until: u64,
    ) -> Result<Option<Appended>, StoreError> {
        let mut cursor = Cursor::new(subject, 1, true);
        let mut due = 1;
        loop {
            let batch = self.next_batch(actor, &mut cursor, self.config.read_batch).await?;
            if batch.is_empty() {
                return Ok(None);
            }
            for fetched in batch {
                if fetched.seq > until {
                    return Ok(None);
                }
                let headers = codec::command_headers(fetched.message.headers.as_ref()).map_err(|cause| {
                    let cause = format!("message at stream sequence {}: {cause}", fetched.seq);
                    StoreError::Corrupt { actor: actor.clone(), version: due, cause }
                })?;
                if headers.command_id == command_id {
                    let (first_version, last_version) = (headers.first_version, headers.last_version);
                    return Ok(Some(Appended { first_version, last_version, duplicate: true, position: 0 }));
                }
                due = headers.last_version + 1;
            }
        }
    }
}

/// The last message on an actor's subject, as the server returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    mark: Mark,
    first_version: u64,
    command_id: String,
}

fn head(headers: &CommandHeaders, seq: u64) -> Head {
    Head {
        mark: Mark { version: headers.last_version, seq },
        first_version: headers.first_version,
        command_id: headers.command_id.clone(),
    }
}

fn duplicate_of(head: &Head) -> Appended {
    Appended { first_version: head.first_version, last_version: head.mark.version, duplicate: true, position: 0 }
}

fn is_stream_missing(kind: &LastRawMessageErrorKind) -> bool {
    matches!(kind, LastRawMessageErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

#[async_trait]
impl EventStore for JetStreamEventStore {
    #[tracing::instrument(level = "debug", skip(self, request), fields(expected = request.expected_version))]
    async fn append(&self, actor: &ActorId, request: AppendRequest) -> Result<Appended, StoreError> {
        if request.events.is_empty() && !request.id_from_caller {
            return Err(StoreError::Invalid { actor: actor.clone(), reason: super::NOTHING_TO_RECORD.into() });
        }
        let subject = self.subject(actor).ok_or_else(|| Self::too_long(actor))?;
        let expected = request.expected_version;
        let command_id = &*request.provenance.command_id;
        // Only an id the caller chose can come again (see the module's
        // Idempotency section): it is claimed in the command index before
        // its events are published; a minted one costs nothing more.
        let index = match request.id_from_caller {
            true => Some(self.names.index_subject(actor, command_id).ok_or_else(|| Self::too_long(actor))?),
            false => None,
        };
        if request.events.is_empty() {
            let index = index.expect("only a caller's id is recorded with no events");
            return Box::pin(self.record(actor, &subject, &index, command_id, expected)).await;
        }
        let (first_version, last_version) = (expected + 1, expected + request.events.len() as u64);
        let payload = bytes::Bytes::from(codec::encode_events(&request.provenance, &request.events));
        if payload.len() + HEADER_ROOM > self.config.max_message_bytes {
            let reason = format!(
                "the command's {} events take {} bytes; a message may take at most {} (max_message_bytes)",
                request.events.len(),
                payload.len() + HEADER_ROOM,
                self.config.max_message_bytes
            );
            return Err(StoreError::Invalid { actor: actor.clone(), reason });
        }
        // Built per attempt rather than cloned: a header map is a hash map of
        // vectors of strings, as many allocations either way.
        let epoch = request.shard_epoch;
        let headers = |last_seq: u64| codec::headers(first_version, last_version, command_id, last_seq, epoch);

        // `last`: the subject's last message as an append needs it, its mark
        // and, if it is this very command, the answer to a retry (only ever
        // from the server). The cached mark answers most appends without a
        // lookup; one that disagrees with the caller may be stale, so ask
        // the server. The lookups are boxed: they are the rare path, and
        // inline they would triple the size of every append's future.
        let cached = self.positions.head(actor);
        let fetch_head = || async {
            let head = Box::pin(self.fetch_head(actor, &subject)).await?;
            Ok::<_, StoreError>(head.map(|h| (h.mark, (h.command_id == command_id).then(|| duplicate_of(&h)))))
        };
        let mut last = match cached {
            Some(mark) if mark.version == expected => Some((mark, None)),
            None if expected == 0 => None,
            // A stale cache, or a retry of a command already appended.
            _ => fetch_head().await?,
        };
        // The position the command's index entry names, once it does.
        let mut held = None;
        let mut missing = false;
        for _ in 0..3 {
            if let Some((_, Some(duplicate))) = last {
                return Ok(duplicate);
            }
            let actual = last.map_or(0, |(mark, _)| mark.version);
            if actual != expected {
                // A retry of an older command: its entry knows it.
                if let Some(index) = &index
                    && let Some(original) = Box::pin(self.find_indexed(actor, &subject, index, command_id)).await?
                {
                    return Ok(original);
                }
                return Err(StoreError::Conflict { actor: actor.clone(), expected, actual });
            }
            let last_seq = last.map_or(0, |(mark, _)| mark.seq);
            if let Some(index) = &index
                && held != Some(last_seq)
            {
                let command = (command_id, (first_version, last_version));
                match Box::pin(self.claim(actor, &subject, index, command, Some(last_seq))).await? {
                    Claim::Held => held = Some(last_seq),
                    Claim::Stored(original) => return Ok(original),
                    // A claim of this command is open at another position:
                    // the subject moved on since `last`.
                    Claim::Open { .. } => {
                        last = fetch_head().await?;
                        continue;
                    }
                }
            }
            match self.publish(actor, &subject, headers(last_seq), payload.clone()).await {
                Ok(ack) => {
                    self.positions.advance_head(actor, Mark { version: last_version, seq: ack.sequence });
                    return Ok(Appended { first_version, last_version, duplicate: false, position: ack.sequence });
                }
                // Another writer got there first (perhaps of this very
                // command), or the cache was stale: the last message, and
                // for a claimed command its entry, say which. A claim whose
                // slot another command took is left for a retry to take over.
                Err(PublishFailure::WrongSequence) => last = fetch_head().await?,
                Err(PublishFailure::Missing) if !missing => {
                    missing = true;
                    self.recreate().await?;
                    last = fetch_head().await?;
                }
                Err(PublishFailure::Missing) => break,
                Err(PublishFailure::Failed(err)) => {
                    // The append may have landed after all: ask next time
                    // (a claimed command's entry then names it).
                    self.positions.set_head(actor, None);
                    return Err(err);
                }
            }
        }
        let actual = last.map_or(0, |(mark, _)| mark.version);
        if actual != expected {
            return Err(StoreError::Conflict { actor: actor.clone(), expected, actual });
        }
        Err(self.unavailable(format_args!("appending to {actor}"), "the stream changed under every attempt"))
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn read(&self, actor: &ActorId, after: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let Some(subject) = self.subject(actor) else { return Ok(Vec::new()) };
        let Some(due) = after.checked_add(1) else { return Ok(Vec::new()) };
        let max = max.max(1);
        // Continue a long replay where the previous read stopped, else start
        // after the latest known position at or before `after`.
        let (cursor, start) = match self.replays.take(actor, due) {
            Some(cursor) => (cursor, Some(after)),
            None => {
                let start = self.positions.at_or_before(actor, after);
                let from = start.map_or(1, |m| m.seq + 1);
                (Cursor::new(&subject, from, false), start.map(|m| m.version))
            }
        };
        let first_due = start.map_or(1, |version| version + 1);
        if let Some(events) = self.read_with(actor, cursor, first_due, after, max, start.is_some()).await? {
            return Ok(events);
        }
        tracing::warn!(actor = %actor, ?start, "the stream contradicts a remembered position; reading from the start");
        self.positions.forget(actor);
        let events = self.read_with(actor, Cursor::new(&subject, 1, false), 1, after, max, false).await?;
        Ok(events.expect("a read from the start has no position to contradict"))
    }

    async fn version(&self, actor: &ActorId) -> Result<u64, StoreError> {
        let Some(subject) = self.subject(actor) else { return Ok(0) };
        Ok(self.fetch_head(actor, &subject).await?.map_or(0, |h| h.mark.version))
    }

    async fn find_command(&self, actor: &ActorId, command_id: &str) -> Result<Option<Appended>, StoreError> {
        let Some(subject) = self.subject(actor) else { return Ok(None) };
        let index = self.names.index_subject(actor, command_id).ok_or_else(|| Self::too_long(actor))?;
        // Every command whose id its caller chose has an entry: it and the
        // message it names answer (two requests). An entry whose claim is
        // open or abandoned is a command not (yet) stored. With no entry,
        // a minted id is found as the last command only.
        match self.read_entry(actor, &index, command_id).await? {
            Some(entry) => {
                if let index::State::Stored(original) = self.check(actor, &subject, &entry).await? {
                    return Ok(Some(original));
                }
            }
            None => {
                if let Some(head) = self.fetch_head(actor, &subject).await?
                    && head.command_id == command_id
                {
                    return Ok(Some(duplicate_of(&head)));
                }
            }
        }
        // Commands stored before the stream had the index are found by a
        // scan, of the messages up to the stream's index mark only.
        match self.index_since.load(Ordering::Relaxed) {
            0 => Ok(None),
            until => self.scan_for_command(actor, &subject, command_id, until).await,
        }
    }

    async fn load_snapshot(&self, actor: &ActorId) -> Result<Option<Snapshot>, StoreError> {
        if self.subject(actor).is_none() {
            return Ok(None);
        }
        let key = self.names.snapshot_key(actor);
        let what = || format!("loading the snapshot of {actor}");
        let (bucket, key) = (&self.snapshots, key.as_str());
        let entry = self.in_bucket(what, move || bucket.entry(key)).await?.map_err(|e| self.unavailable(what(), e))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else { return Ok(None) };
        let (snapshot, start) = codec::decode_snapshot(&entry.value).map_err(|cause| StoreError::Corrupt {
            actor: actor.clone(),
            version: codec::snapshot_version(&entry.value).unwrap_or(0),
            cause: format!("snapshot: {cause}"),
        })?;
        self.positions.add_mark(actor, start);
        Ok(Some(snapshot))
    }

    /// The stream's subjects under the domain's event prefix, from stream
    /// info with a subjects filter (the server pages them): no message is read.
    async fn actors(&self, aggregate: Option<&str>) -> Result<Vec<ActorId>, StoreError> {
        use futures_util::TryStreamExt;
        let what = "listing the actors";
        let stream = self.js.get_stream_no_info(&self.stream).await.map_err(|e| self.unavailable(what, e))?;
        let subjects = stream
            .info_with_subjects(self.names.actors_filter(aggregate))
            .await
            .map_err(|e| self.unavailable(what, e))?;
        let subjects: Vec<(String, usize)> = subjects.try_collect().await.map_err(|e| self.unavailable(what, e))?;
        let mut actors: Vec<ActorId> =
            subjects.iter().filter_map(|(subject, _)| self.names.actor_of(subject)).collect();
        actors.sort();
        Ok(actors)
    }

    /// The log is the stream itself: positions are stream sequences of
    /// events messages (index messages, on other subjects, are passed
    /// over), read a page of direct gets at a time.
    async fn read_log(&self, after: u64, max: usize) -> Result<Vec<LoggedCommand>, StoreError> {
        let Some(from) = after.checked_add(1) else { return Ok(Vec::new()) };
        let mut cursor = Cursor::new(&self.names.actors_filter(None), from, false);
        let batch = max.clamp(1, self.config.read_batch);
        let fetched = self.next_of(&|| format!("reading the log after {after}"), &mut cursor, batch).await?;
        fetched
            .into_iter()
            .map(|f| {
                let seq = f.seq;
                let subject = f.message.headers.as_ref().and_then(|h| h.get("Nats-Subject")).map(|s| s.as_str());
                let subject = subject.unwrap_or(f.message.subject.as_str());
                let corrupt = |actor: ActorId, version, cause| StoreError::Corrupt {
                    actor,
                    version,
                    cause: format!("message at stream sequence {seq}: {cause}"),
                };
                let Some(actor) = self.names.actor_of(subject) else {
                    let cause = format!("its subject `{subject}` names no actor");
                    return Err(corrupt(ActorId::new("?", "?"), 0, cause));
                };
                let headers =
                    codec::command_headers(f.message.headers.as_ref()).map_err(|c| corrupt(actor.clone(), 0, c))?;
                let events = codec::decode_events(&headers, &f.message.payload)
                    .map_err(|c| corrupt(actor.clone(), headers.first_version, c))?;
                Ok(LoggedCommand { position: seq, actor, events })
            })
            .collect()
    }

    async fn log_head(&self) -> Result<u64, StoreError> {
        let what = "reading the log's head";
        let mut stream = self.js.get_stream(&self.stream).await.map_err(|e| self.unavailable(what, e))?;
        let info = stream.info().await.map_err(|e| self.unavailable(what, e))?;
        Ok(info.state.last_sequence)
    }

    async fn save_snapshot(&self, actor: &ActorId, snapshot: Snapshot) -> Result<(), StoreError> {
        let Some(subject) = self.subject(actor) else { return Err(Self::too_long(actor)) };
        let key = self.names.snapshot_key(actor);
        // Replay after this snapshot may start after the latest message known
        // to end at or before its version: usually the append that preceded
        // it; else the subject's last message, if it is not past the snapshot.
        let start = match self.positions.at_or_before(actor, snapshot.version) {
            Some(mark) => mark,
            None => match self.fetch_head(actor, &subject).await {
                Ok(Some(head)) if head.mark.version <= snapshot.version => head.mark,
                Err(e @ StoreError::Unavailable(_)) => return Err(e),
                // A corrupt last message is for replay to report.
                _ => Mark::START,
            },
        };
        let value = codec::encode_snapshot(&snapshot, start);
        if value.len() + HEADER_ROOM > self.config.max_message_bytes {
            let reason = format!(
                "the snapshot at version {} takes {} bytes; a message may take at most {} (max_message_bytes)",
                snapshot.version,
                value.len(),
                self.config.max_message_bytes
            );
            return Err(StoreError::Invalid { actor: actor.clone(), reason });
        }
        let what = || format!("saving the snapshot of {actor} at version {}", snapshot.version);
        let (bucket, key) = (&self.snapshots, key.as_str());
        // Compare and set: an older snapshot never replaces a newer one, even
        // when two hosts save at once.
        for _ in 0..5 {
            let entry =
                self.in_bucket(what, move || bucket.entry(key)).await?.map_err(|e| self.unavailable(what(), e))?;
            let written = match entry.filter(|e| e.operation == kv::Operation::Put) {
                Some(current) => {
                    match codec::snapshot_version(&current.value) {
                        Ok(version) if version >= snapshot.version => return Ok(()),
                        Ok(_) => {}
                        Err(cause) => tracing::warn!(actor = %actor, %cause, "replacing a corrupt snapshot"),
                    }
                    let update = || bucket.update(key, value.clone().into(), current.revision);
                    match self.in_bucket(what, update).await? {
                        Ok(_) => true,
                        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => false,
                        Err(e) => return Err(self.unavailable(what(), e)),
                    }
                }
                None => match self.in_bucket(what, || bucket.create(key, value.clone().into())).await? {
                    Ok(_) => true,
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => false,
                    Err(e) => return Err(self.unavailable(what(), e)),
                },
            };
            if written {
                return Ok(());
            }
        }
        Err(self.unavailable(what(), "other hosts kept replacing it"))
    }
}
