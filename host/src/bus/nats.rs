//! The bus on NATS: the publisher task, and subscriptions that
//! count what they missed.
//!
//! Every stored event is published (core NATS, no acknowledgement) on
//! `<root>.bus.<domain>.<aggregate>.<id>` with the [`BusEvent`] envelope as
//! payload and headers `Aether-Event` (name) and `Aether-Version`.
//! `<root>` is `aether`, or `aether.ns.<namespace>` for a namespace (tenant),
//! as for the event store's stream, so tenants never share a subject. Ids are encoded as one subject token
//! (see [`crate::store::jetstream`]), so filter by domain (`aether.bus.bank.>`),
//! aggregate (`aether.bus.bank.Account.*`) or actor with [`NatsNames::bus_filter`].

use super::{BusEvent, BusStats, Filter};
use crate::names::NatsNames;
use async_nats::HeaderMap;
use futures_util::StreamExt;
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;

/// Publishes queued events until the bus is dropped.
pub(super) async fn publish_all(
    client: async_nats::Client,
    names: NatsNames,
    mut events: mpsc::Receiver<Arc<BusEvent>>,
    stats: Arc<BusStats>,
) {
    while let Some(event) = events.recv().await {
        let subject = names.bus(&event.domain, &event.aggregate, &event.id);
        let mut headers = HeaderMap::new();
        headers.insert("Aether-Event", event.name.as_str());
        headers.insert("Aether-Version", event.version.to_string().as_str());
        if let Err(e) = client.publish_with_headers(subject, headers, event.encode().into()).await {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(actor = %event.actor(), version = event.version, cause = %e, "bus event not published");
        }
    }
}

/// A subscription to the bus over NATS.
///
/// Core NATS drops messages for a subscriber that cannot keep up rather than
/// slow the publisher. This subscription notices: it tracks each actor's
/// last version and counts a jump as dropped events, and counts messages
/// that are not bus events as undecodable. Nothing is lost silently.
#[derive(Debug)]
pub struct NatsSubscription {
    messages: async_nats::Subscriber,
    gaps: Gaps,
    undecodable: u64,
}

/// Each actor's last version seen, and the events missed as counted from
/// the jumps. Versions come from the wire: a message may claim any, so the
/// count saturates rather than overflow.
#[derive(Debug)]
pub(crate) struct Gaps {
    last_versions: LruCache<(String, String), u64>,
    dropped: u64,
}

impl Gaps {
    /// Remembers at most `actors` actors, the least recently seen forgotten.
    pub(crate) fn new(actors: NonZeroUsize) -> Self {
        Self { last_versions: LruCache::new(actors), dropped: 0 }
    }

    /// Notes an event; a jump past the actor's last version counts the
    /// versions skipped as dropped.
    pub(crate) fn observe(&mut self, event: &BusEvent) {
        match self.last_versions.get_mut(&(event.aggregate.clone(), event.id.clone())) {
            Some(last) if event.version > *last => {
                self.dropped = self.dropped.saturating_add(event.version - *last - 1);
                *last = event.version;
            }
            // Two hosts' publications may interleave: an older version is no gap.
            Some(_) => {}
            None => _ = self.last_versions.put((event.aggregate.clone(), event.id.clone()), event.version),
        }
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl NatsSubscription {
    /// Subscribes to `domain`'s events matching `filter`, from now on.
    ///
    /// # Errors
    ///
    /// If NATS refuses the subscription.
    pub async fn subscribe(
        client: &async_nats::Client,
        names: &NatsNames,
        domain: &str,
        filter: &Filter,
    ) -> Result<Self, async_nats::SubscribeError> {
        let messages = client.subscribe(names.bus_filter(domain, filter)).await?;
        let actors = NonZeroUsize::new(100_000).expect("non-zero");
        Ok(Self { messages, gaps: Gaps::new(actors), undecodable: 0 })
    }

    /// The next event; `None` when the subscription ends.
    pub async fn recv(&mut self) -> Option<BusEvent> {
        loop {
            let message = self.messages.next().await?;
            let event = match BusEvent::decode(&message.payload) {
                Ok(event) => event,
                Err(e) => {
                    self.undecodable += 1;
                    tracing::warn!(subject = %message.subject, cause = %e, "undecodable bus message");
                    continue;
                }
            };
            self.gaps.observe(&event);
            return Some(event);
        }
    }

    /// Events missed, as counted from version gaps of actors seen before.
    pub fn dropped(&self) -> u64 {
        self.gaps.dropped()
    }

    /// Messages on the names that were not bus events.
    pub fn undecodable(&self) -> u64 {
        self.undecodable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Provenance;

    fn event(id: &str, version: u64) -> BusEvent {
        let provenance = Provenance {
            command_id: "c".into(),
            correlation_id: "c".into(),
            causation_id: "c".into(),
            timestamp_ms: 1,
            component_hash: "ab".into(),
            command: None,
        };
        let (domain, aggregate, name) = ("bank".into(), "Account".into(), "Deposited".into());
        BusEvent { domain, aggregate, id: id.into(), version, name, payload: vec![0xc0], provenance }
    }

    #[test]
    fn jumps_count_as_dropped_and_older_versions_do_not() {
        let mut gaps = Gaps::new(NonZeroUsize::new(10).unwrap());
        for (id, version) in [("a", 1), ("a", 4), ("b", 7), ("a", 2), ("b", 8), ("a", 5)] {
            gaps.observe(&event(id, version));
        }
        assert_eq!(gaps.dropped(), 2);
    }

    /// Versions are whatever a message on the subject claims: two jumps to
    /// `u64::MAX` overflowed the count (a panic in a debug build).
    #[test]
    fn crafted_versions_saturate_the_count() {
        let mut gaps = Gaps::new(NonZeroUsize::new(10).unwrap());
        for (id, version) in [("a", 0), ("a", u64::MAX), ("b", 0), ("b", u64::MAX)] {
            gaps.observe(&BusEvent::decode(&event(id, version).encode()).unwrap());
        }
        assert_eq!(gaps.dropped(), u64::MAX);
    }
}
