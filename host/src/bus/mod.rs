//! The event bus: every event the host stores is published, after the
//! append, for whoever listens: policies and projections in this process,
//! other hosts and external consumers over NATS.
//!
//! Publishing never waits. In process, subscribers read a bounded broadcast
//! ring; one that falls behind loses the oldest events and its
//! [`LocalSubscription::dropped`] count says how many. Towards NATS, events
//! queue for a publisher task; when the queue is full the event is dropped
//! and counted in [`BusStats::dropped`] (the store still has it: a consumer
//! that needs every event reads the store, or a JetStream consumer). A slow
//! subscriber therefore never blocks an append, and no drop is silent.
//!
//! Layout:
//! - [`BusEvent`](self): the envelope one event travels in.
//! - [`nats`]: the NATS publisher and [`NatsSubscription`](nats::NatsSubscription).

pub mod nats;

use crate::store::{ActorId, Provenance, RecordedEvent};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{broadcast, mpsc};

/// One stored event as the bus carries it: self-describing MessagePack
/// (field names kept), so consumers in any language can read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusEvent {
    pub domain: String,
    pub aggregate: String,
    pub id: String,
    pub version: u64,
    pub name: String,
    /// The event's own payload, MessagePack.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    pub provenance: Provenance,
}

impl BusEvent {
    pub fn new(domain: &str, actor: &ActorId, event: &RecordedEvent) -> Self {
        Self {
            domain: domain.to_owned(),
            aggregate: actor.aggregate.clone(),
            id: actor.id.clone(),
            version: event.version,
            name: event.name.clone(),
            payload: event.payload.clone(),
            // Ids and time, not the command: the bus carries what happened,
            // and in process and over NATS alike (the command is not serialised).
            provenance: Provenance {
                command_id: event.provenance.command_id.clone(),
                correlation_id: event.provenance.correlation_id.clone(),
                causation_id: event.provenance.causation_id.clone(),
                timestamp_ms: event.provenance.timestamp_ms,
                component_hash: event.provenance.component_hash.clone(),
                command: None,
            },
        }
    }

    pub fn actor(&self) -> ActorId {
        ActorId::new(self.aggregate.clone(), self.id.clone())
    }

    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("a bus event serialises")
    }

    /// # Errors
    ///
    /// If the bytes are not a bus event, or nest deeper than
    /// [`MAX_DEPTH`](Self::MAX_DEPTH).
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut decoder = rmp_serde::Deserializer::from_read_ref(bytes);
        decoder.set_max_depth(Self::MAX_DEPTH);
        Self::deserialize(&mut decoder).map_err(|e| format!("not an aether bus event: {e}"))
    }

    /// The deepest nesting [`decode`](Self::decode) reads: an envelope nests
    /// three deep (its provenance's fields), with room for fields a newer
    /// host may add. Anyone may publish on the bus's subjects, and rmp-serde
    /// recurses once per level, skipped fields included, a few kilobytes of
    /// stack each: its own limit of 1,024 levels overflowed a 2 MiB Tokio
    /// worker's stack, and aborted the process, at about 500.
    pub const MAX_DEPTH: usize = 16;
}

/// Which events a subscriber wants; `None` matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub aggregate: Option<String>,
    pub id: Option<String>,
}

impl Filter {
    pub fn matches(&self, event: &BusEvent) -> bool {
        self.aggregate.as_ref().is_none_or(|a| *a == event.aggregate) && self.id.as_ref().is_none_or(|i| *i == event.id)
    }
}

/// How many events went out, and how many were dropped on the way.
#[derive(Debug, Default)]
pub struct BusStats {
    pub published: AtomicU64,
    /// Events the NATS publisher could not take (queue full or publish failed).
    pub dropped: AtomicU64,
    /// Events in-process subscribers missed by falling behind.
    pub lagged: AtomicU64,
}

/// Sizes of the bus's queues.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BusConfig {
    /// Events an in-process subscriber may fall behind before it loses the oldest.
    pub local_capacity: usize,
    /// Events waiting for the NATS publisher before new ones are dropped.
    pub nats_queue: usize,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self { local_capacity: 4096, nats_queue: 65_536 }
    }
}

/// The publishing side; cheap to clone.
#[derive(Debug, Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    domain: String,
    local: broadcast::Sender<Arc<BusEvent>>,
    nats: Option<mpsc::Sender<Arc<BusEvent>>>,
    stats: Arc<BusStats>,
}

impl Bus {
    /// A bus for in-process subscribers only.
    pub fn local(domain: &str, config: &BusConfig) -> Self {
        Self::build(domain, config, None, Arc::default())
    }

    /// A bus that also publishes every event on NATS (see [`nats`] for the
    /// subjects). Must be called within a Tokio runtime: it starts the
    /// publisher task.
    pub fn with_nats(
        domain: &str,
        config: &BusConfig,
        client: async_nats::Client,
        names: crate::names::NatsNames,
    ) -> Self {
        let stats = Arc::new(BusStats::default());
        let (queue, events) = mpsc::channel(config.nats_queue.max(1));
        tokio::spawn(nats::publish_all(client, names, events, stats.clone()));
        Self::build(domain, config, Some(queue), stats)
    }

    fn build(
        domain: &str,
        config: &BusConfig,
        nats: Option<mpsc::Sender<Arc<BusEvent>>>,
        stats: Arc<BusStats>,
    ) -> Self {
        let (local, _) = broadcast::channel(config.local_capacity.max(1));
        Self { inner: Arc::new(Inner { domain: domain.to_owned(), local, nats, stats }) }
    }

    pub fn stats(&self) -> &BusStats {
        &self.inner.stats
    }

    /// Publishes one command's stored events. Never waits.
    pub fn publish(&self, actor: &ActorId, events: &[RecordedEvent]) {
        let inner = &*self.inner;
        if inner.nats.is_none() && inner.local.receiver_count() == 0 {
            return;
        }
        for event in events {
            let event = Arc::new(BusEvent::new(&inner.domain, actor, event));
            inner.stats.published.fetch_add(1, Ordering::Relaxed);
            if let Some(queue) = &inner.nats
                && queue.try_send(event.clone()).is_err()
            {
                inner.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // No receivers is not an error: nobody is listening in process.
            let _ = inner.local.send(event);
        }
    }

    /// Subscribes in process to events matching `filter`, from now on.
    pub fn subscribe(&self, filter: Filter) -> LocalSubscription {
        LocalSubscription { events: self.inner.local.subscribe(), filter, dropped: 0, stats: self.inner.stats.clone() }
    }
}

/// An in-process subscription.
#[derive(Debug)]
pub struct LocalSubscription {
    events: broadcast::Receiver<Arc<BusEvent>>,
    filter: Filter,
    dropped: u64,
    stats: Arc<BusStats>,
}

impl LocalSubscription {
    /// The next matching event; `None` once the bus is gone. Events missed
    /// by falling behind are skipped and counted in [`dropped`](Self::dropped).
    pub async fn recv(&mut self) -> Option<Arc<BusEvent>> {
        loop {
            match self.events.recv().await {
                Ok(event) if self.filter.matches(&event) => return Some(event),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "bus subscriber fell behind; events dropped");
                    self.dropped += n;
                    self.stats.lagged.fetch_add(n, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Events this subscriber missed (of any actor, matching or not).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(version: u64) -> RecordedEvent {
        RecordedEvent {
            version,
            name: "Deposited".into(),
            payload: vec![0x81, 0xa6, b'a', b'm', b'o', b'u', b'n', b't', 0x05],
            provenance: Arc::new(Provenance {
                command_id: format!("c{version}").into(),
                correlation_id: "corr".into(),
                causation_id: "cause".into(),
                timestamp_ms: 1,
                component_hash: "ab".into(),
                command: None,
            }),
        }
    }

    #[test]
    fn envelope_round_trips_and_keeps_the_payload_as_bytes() {
        let e = BusEvent::new("bank", &ActorId::new("Account", "a.b c"), &event(3));
        let bytes = e.encode();
        assert_eq!(BusEvent::decode(&bytes).unwrap(), e);
        assert!(BusEvent::decode(b"\x01").unwrap_err().starts_with("not an aether bus event"));
    }

    /// Anyone may publish on the bus's subjects: envelopes that claim more
    /// than they hold are refused without reserving what they claim.
    #[test]
    fn crafted_envelopes_are_errors_not_allocations() {
        let e = BusEvent::new("bank", &ActorId::new("Account", "a"), &event(3));
        let bytes = e.encode();
        for cut in 0..bytes.len() {
            assert!(BusEvent::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // An unknown field nested 100,000 deep, read on a thread with less
        // stack than a Tokio worker's: an overflow aborted the process.
        let mut deep = vec![0x81, 0xa1, b'x'];
        deep.extend(std::iter::repeat_n(0x91, 100_000));
        deep.push(0xc0);
        let err = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || BusEvent::decode(&deep).unwrap_err())
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(err, "not an aether bus event: depth limit exceeded");
        for crafted in [
            &[0xdf, 0xff, 0xff, 0xff, 0xff, 0xa6, b'd', b'o', b'm', b'a', b'i', b'n'][..], // map32 of four billion
            &[0xdd, 0xff, 0xff, 0xff, 0xff, 0xdb, 0xff, 0xff, 0xff, 0xff], // array32, then str32 of 4 GiB
            &[0x97, 0xa1, b'd', 0xa1, b'a', 0xa1, b'i', 0x01, 0xa1, b'n', 0xc6, 0xff, 0xff, 0xff, 0xff], // bin32 of 4 GiB
        ] {
            let started = std::time::Instant::now();
            assert!(BusEvent::decode(crafted).is_err(), "{crafted:02x?}");
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
        }
    }

    #[tokio::test]
    async fn subscribers_get_matching_events_and_a_slow_one_counts_what_it_missed() {
        let bus = Bus::local("bank", &BusConfig { local_capacity: 4, ..BusConfig::default() });
        let mut only_b = bus.subscribe(Filter { id: Some("b".into()), ..Filter::default() });
        let mut slow = bus.subscribe(Filter::default());
        bus.publish(&ActorId::new("Account", "a"), &[event(1)]);
        bus.publish(&ActorId::new("Account", "b"), &[event(1), event(2)]);
        assert_eq!(only_b.recv().await.unwrap().version, 1);
        assert_eq!(only_b.recv().await.unwrap().version, 2);
        // Publishing never waits for `slow`; it loses the oldest and says so.
        for v in 3..10 {
            bus.publish(&ActorId::new("Account", "b"), &[event(v)]);
        }
        assert_eq!(slow.recv().await.unwrap().version, 6);
        assert_eq!(slow.dropped(), 6);
        assert_eq!(bus.stats().lagged.load(Ordering::Relaxed), 6);
        assert_eq!(bus.stats().published.load(Ordering::Relaxed), 10);
    }
}
