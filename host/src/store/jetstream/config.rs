//! The settings of the JetStream store, and what each choice risks.

use super::subject;
use crate::names::NatsNames;
use std::time::Duration;

/// Where the server keeps a stream's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JetStreamStorage {
    /// On the server's disk (`store_dir`). Survives a server restart; what
    /// survives a machine crash depends on the server's `sync_interval`.
    #[default]
    File,
    /// In the server's memory. Fast, and **everything is lost when the server
    /// restarts**: events, snapshots, the streams themselves. For tests and
    /// throw-away environments only.
    Memory,
}

/// Settings of the [`JetStreamEventStore`](super::JetStreamEventStore).
///
/// The stream and the bucket are created with these settings on first use;
/// if they already exist (another host created them), they are used as they
/// are and a difference is logged, never silently "fixed": changing a live
/// stream is an operator's decision (`nats stream edit`).
///
/// # Durability: what each choice risks
///
/// - [`replicas`](Self::replicas) = 1 keeps one copy: losing that server's
///   disk loses the events. Use 3 (or 5) on a cluster for data that matters;
///   an append then returns only once a majority has it.
/// - [`storage`](Self::storage) = [`Memory`](JetStreamStorage::Memory) loses
///   everything when the server restarts.
/// - The server writes file storage to the OS and fsyncs it every
///   `sync_interval` (a **server** setting, default 2 minutes). A crash of the
///   process loses nothing, but a crash of the machine (power, kernel) can lose
///   acknowledged appends from the last interval unless the server runs with
///   `jetstream { sync_interval: always }` (an fsync per message, much slower)
///   or the stream has replicas on other machines.
/// - [`duplicate_window`](Self::duplicate_window): the stream's setting for
///   messages with a `Nats-Msg-Id`. The store no longer sends message ids and
///   does not depend on it: a command whose id the caller chose is claimed in
///   the command index before its events are appended, and a retry is
///   recognised however late it comes (see the [module docs](super)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JetStreamConfig {
    /// A tenant: stores in different namespaces use different streams,
    /// buckets and subjects, and never see each other's data. `None` is the
    /// default namespace.
    pub namespace: Option<String>,
    /// Copies of every message the cluster keeps (1 to 5; odd counts keep a
    /// majority through the loss of a server).
    pub replicas: usize,
    /// File or memory storage.
    pub storage: JetStreamStorage,
    /// The largest message the stream accepts, i.e. the largest command (all
    /// its events) and the largest snapshot, in bytes. The server's
    /// `max_payload` (default 1 MiB) caps it too.
    pub max_message_bytes: usize,
    /// How long the server remembers message ids to drop retried appends.
    pub duplicate_window: Duration,
    /// The longest any one request to the server may take; past it the
    /// operation fails with `StoreError::Unavailable`.
    pub request_timeout: Duration,
    /// Messages fetched per request while reading events.
    pub read_batch: usize,
    /// Actors whose latest stream positions are remembered (to append without
    /// a lookup and to read from a snapshot without a scan).
    pub cached_actors: usize,
}

impl Default for JetStreamConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            replicas: 1,
            storage: JetStreamStorage::File,
            max_message_bytes: 1024 * 1024,
            duplicate_window: Duration::from_secs(120),
            request_timeout: Duration::from_secs(5),
            read_batch: 256,
            cached_actors: 100_000,
        }
    }
}

impl JetStreamConfig {
    /// The stream holding the events: `AETHER_EVENTS`, or
    /// `AETHER_EVENTS_<namespace>` (namespace encoded as a subject token).
    pub fn stream_name(&self) -> String {
        self.names().events_stream()
    }

    /// The key-value bucket holding snapshots: `aether_snapshots`, or
    /// `aether_snapshots_<namespace>`.
    pub fn bucket_name(&self) -> String {
        self.names().snapshots_bucket()
    }

    /// The subjects of the stream, without the trailing `.>`: `aether.ev`, or
    /// `aether.ns.<namespace>.ev`. The two shapes never overlap, so streams of
    /// different namespaces can live on one server.
    pub fn subject_prefix(&self) -> String {
        self.names().events_prefix()
    }

    /// Every NATS name of the store's namespace.
    pub fn names(&self) -> NatsNames {
        NatsNames::new(self.namespace.as_deref())
    }

    /// The subjects of the command index, without the trailing `.>`:
    /// `aether.ix`, or `aether.ns.<namespace>.ix` (see the store's
    /// Idempotency docs). Beside the events' subjects rather than under
    /// them, so a consumer of `aether.ev.>` sees events only.
    pub fn index_prefix(&self) -> String {
        self.names().index_prefix()
    }

    /// Checks the settings the server would refuse less clearly.
    pub(super) fn validate(&self) -> Result<(), String> {
        if let Some(ns) = &self.namespace
            && subject::encode_token(ns).len() > 64
        {
            return Err(format!("namespace {ns:?} is too long; its encoding must stay within 64 characters"));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(format!("replicas must be between 1 and 5, not {}", self.replicas));
        }
        if self.max_message_bytes < 1024 || self.max_message_bytes > i32::MAX as usize {
            return Err(format!("max_message_bytes {} is out of range (1 KiB to 2 GiB)", self.max_message_bytes));
        }
        if self.request_timeout.is_zero() || self.duplicate_window.is_zero() {
            return Err("request_timeout and duplicate_window must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_get_names_of_their_own() {
        let default = JetStreamConfig::default();
        let tenant = |ns: &str| JetStreamConfig { namespace: Some(ns.into()), ..JetStreamConfig::default() };
        let names = |c: &JetStreamConfig| (c.stream_name(), c.bucket_name(), c.subject_prefix());
        assert_eq!(names(&default), ("AETHER_EVENTS".into(), "aether_snapshots".into(), "aether.ev".into()));
        assert_eq!(
            names(&tenant("acme.eu")),
            ("AETHER_EVENTS_acme_2Eeu".into(), "aether_snapshots_acme_2Eeu".into(), "aether.ns.acme_2Eeu.ev".into())
        );
        assert_ne!(names(&tenant("")), names(&default), "an empty namespace is not the default one");
        assert_ne!(names(&tenant("a_b")), names(&tenant("a.b")));
        assert_eq!(default.index_prefix(), "aether.ix");
        assert_eq!(tenant("acme.eu").index_prefix(), "aether.ns.acme_2Eeu.ix");
    }

    #[test]
    fn refuses_settings_the_server_would_refuse() {
        assert!(JetStreamConfig::default().validate().is_ok());
        assert!(JetStreamConfig { replicas: 0, ..Default::default() }.validate().is_err());
        assert!(JetStreamConfig { namespace: Some("n".repeat(65)), ..Default::default() }.validate().is_err());
        assert!(JetStreamConfig { request_timeout: Duration::ZERO, ..Default::default() }.validate().is_err());
    }
}
