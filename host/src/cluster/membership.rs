//! This node's own membership: joining with `create`, renewing with
//! `update` at the last revision, the lease that follows from acknowledged
//! renewals, noticing an expulsion, and leaving.
//!
//! The lease runs from the **send** time of the newest heartbeat the store
//! acknowledged, on this node's clock. Renewals are compare-and-set on the
//! key's revision, so once the leader has deleted the key (expelled this
//! incarnation) no renewal of it can succeed: an expelled node's lease can
//! only run out, and it comes back as a new incarnation.

use super::names::Key;
use super::node::{Action, ClusterEvent, KvOp, KvOutcome, Node, Purpose};
use super::record::{Heartbeat, encode};
use bytes::Bytes;

#[derive(Debug)]
pub(super) struct Membership {
    nonce_seed: u64,
    rejoins: u64,
    /// Written into every heartbeat of this incarnation.
    pub nonce: u64,
    /// The revision that created this node's key, once known.
    pub incarnation: Option<u64>,
    /// The newest revision of this node's key it knows.
    pub revision: u64,
    /// Send time of the newest acknowledged heartbeat of this incarnation.
    pub lease_from: Option<u64>,
    pub in_flight: bool,
    pub next_beat_at: u64,
    pub leaving: bool,
    pub left: bool,
    /// The renewal of the current incarnation, encoded.
    beat: Option<(u64, Bytes)>,
}

impl Membership {
    pub(super) fn new(nonce: u64, now: u64) -> Self {
        Self {
            nonce_seed: nonce,
            rejoins: 0,
            nonce,
            incarnation: None,
            revision: 0,
            lease_from: None,
            in_flight: false,
            next_beat_at: now,
            leaving: false,
            left: false,
            beat: None,
        }
    }

    /// Whether this node may serve at `now` by its own lease.
    pub(super) fn lease_valid(&self, now: u64, lease: u64) -> bool {
        !self.left && self.incarnation.is_some() && self.lease_from.is_some_and(|from| now < from.saturating_add(lease))
    }

    fn forget_incarnation(&mut self, now: u64) {
        self.incarnation = None;
        self.lease_from = None;
        self.revision = 0;
        self.rejoins += 1;
        self.nonce = self.nonce_seed.wrapping_add(self.rejoins.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        self.next_beat_at = now;
    }
}

impl Node {
    pub(super) fn poll_membership(&mut self, now: u64) {
        let m = &self.membership;
        if m.left || m.in_flight {
            return;
        }
        let key = Key::Member(self.id.clone());
        if m.leaving && self.handoff.is_idle() {
            self.membership.in_flight = true;
            self.send(KvOp::Delete { key, expected: None }, Purpose::LeaveDelete);
            return;
        }
        if now < m.next_beat_at {
            return;
        }
        self.membership.next_beat_at = now + self.timing.heartbeat;
        self.membership.in_flight = true;
        let nonce = self.membership.nonce;
        match self.membership.incarnation {
            // An earlier life of this id (a crash, then a restart under the
            // same `--node-id`) left its key behind. When it has not changed
            // for `failure_timeout` its lease is over, so it is safe to
            // delete at that revision, as the leader would; this also lets a
            // lone node restart when there is no leader to expel it.
            None if self.stale_own_key(now).is_some() => {
                let expected = self.stale_own_key(now);
                self.send(KvOp::Delete { key, expected }, Purpose::ClearStale);
            }
            None => {
                let value = encode(&Heartbeat { nonce, incarnation: 0 }).into();
                self.send(KvOp::Create { key, value }, Purpose::Join { sent_at: now, nonce });
            }
            Some(incarnation) => {
                // The same bytes every beat of an incarnation: encoded once.
                let value = match &self.membership.beat {
                    Some((i, value)) if *i == incarnation => value.clone(),
                    _ => {
                        let value: Bytes = encode(&Heartbeat { nonce, incarnation }).into();
                        self.membership.beat = Some((incarnation, value.clone()));
                        value
                    }
                };
                let expected = self.membership.revision;
                self.send(KvOp::Update { key, value, expected }, Purpose::Heartbeat { sent_at: now, incarnation });
            }
        }
    }

    pub(super) fn on_membership_result(&mut self, now: u64, purpose: Purpose, outcome: KvOutcome) {
        self.membership.in_flight = false;
        let m = &mut self.membership;
        match (purpose, outcome) {
            (Purpose::Join { sent_at, nonce }, KvOutcome::Ok { revision: Some(revision) }) if nonce == m.nonce => {
                if m.incarnation.is_none() {
                    m.incarnation = Some(revision);
                    self.event(ClusterEvent::Joined { incarnation: revision });
                }
                let m = &mut self.membership;
                if m.incarnation == Some(revision) {
                    m.revision = m.revision.max(revision);
                    m.lease_from = Some(m.lease_from.map_or(sent_at, |t| t.max(sent_at)));
                }
            }
            // (A renewal of an incarnation since expelled renews nothing.)
            (Purpose::Heartbeat { sent_at, incarnation }, KvOutcome::Ok { revision })
                if m.incarnation == Some(incarnation) =>
            {
                if let Some(revision) = revision {
                    m.revision = m.revision.max(revision);
                }
                m.lease_from = Some(m.lease_from.map_or(sent_at, |t| t.max(sent_at)));
            }
            (Purpose::LeaveDelete, KvOutcome::Ok { .. }) => {
                m.left = true;
                m.lease_from = None;
                self.emit(Action::Left);
            }
            // A conflict or a lost answer: the watch tells what happened (our
            // own write, applied; or an expulsion); retry at the next beat.
            (Purpose::LeaveDelete, _) => m.next_beat_at = now + self.timing.heartbeat,
            // The key is gone: create ours at once.
            (Purpose::ClearStale, KvOutcome::Ok { .. }) => m.next_beat_at = now,
            _ => {}
        }
    }

    /// The revision of a key left by an earlier life of this id that has
    /// been silent for `failure_timeout`.
    fn stale_own_key(&self, now: u64) -> Option<u64> {
        let entry = self.view.members.get(&self.id)?;
        let beat = entry.heartbeat.as_ref()?;
        (beat.nonce != self.membership.nonce && now >= entry.seen_at + self.timing.failure_timeout)
            .then_some(entry.revision)
    }

    /// The watch showed a newer entry of this node's own key.
    pub(super) fn on_own_key(&mut self, now: u64) {
        let Some(entry) = self.view.members.get(&self.id).cloned() else { return };
        let m = &mut self.membership;
        let ours = entry.heartbeat.as_ref().is_some_and(|b| b.nonce == m.nonce);
        match m.incarnation {
            // A create whose answer was lost: adopt it (the lease waits for
            // an acknowledged renewal).
            None if ours => {
                m.incarnation = entry.incarnation();
                m.revision = entry.revision;
                if let Some(incarnation) = m.incarnation {
                    self.event(ClusterEvent::Joined { incarnation });
                }
            }
            None => {}
            Some(incarnation) if entry.revision > m.revision => {
                if ours && entry.incarnation() == Some(incarnation) {
                    m.revision = entry.revision;
                } else if entry.revision > incarnation {
                    // Deleted or replaced after this incarnation began: expelled.
                    m.forget_incarnation(now);
                    self.event(ClusterEvent::Expelled { incarnation });
                    if self.membership.leaving {
                        // Nothing left to delete: the leave is complete once drained.
                        self.membership.incarnation = None;
                    }
                }
            }
            Some(_) => {}
        }
    }

    /// Whether this node may serve at `now` by its own lease.
    pub(super) fn lease_valid(&self, now: u64) -> bool {
        self.membership.lease_valid(now, self.timing.member_lease)
    }

    pub(super) fn membership_timer(&self) -> Option<u64> {
        let m = &self.membership;
        if m.in_flight {
            return None;
        }
        Some(m.next_beat_at)
    }
}

#[cfg(test)]
mod tests {
    use crate::cluster::node::tests::Cluster;
    use crate::cluster::{Action, ClusterConfig, ClusterEvent, Input, Key, KvOp, KvOutcome, Node, NodeId, ShardId};

    #[test]
    fn an_expelled_node_fences_and_rejoins_as_a_new_incarnation() {
        let mut cluster = Cluster::default();
        let a = cluster.add("a");
        let b = cluster.add("b");
        cluster.drain_all();
        let old = cluster.nodes[b].incarnation().unwrap();
        // b freezes for longer than the failure timeout; a expels it.
        cluster.crashed.insert(b);
        cluster.run_for(3_000);
        assert_eq!(cluster.served(a), 8);
        assert!(cluster.kv[&Key::Member(NodeId::new("b"))].0.is_none(), "b's key is deleted");
        // b resumes with its stale state: the lease check comes first.
        cluster.crashed.remove(&b);
        assert!(!cluster.nodes[b].is_serving(cluster.now, ShardId(0)));
        cluster.resync(b);
        cluster.run_for(1_000);
        let events: Vec<&ClusterEvent> = cluster.events.iter().filter(|(i, _)| *i == b).map(|(_, e)| e).collect();
        assert!(events.contains(&&ClusterEvent::Fenced));
        assert!(events.contains(&&ClusterEvent::Expelled { incarnation: old }));
        let new = cluster.nodes[b].incarnation().unwrap();
        assert!(new > old);
        assert_eq!((cluster.served(a), cluster.served(b)), (4, 4), "b serves again under new grants");
    }

    #[test]
    fn a_create_whose_answer_was_lost_is_recognised_on_the_watch() {
        let config = ClusterConfig { shards: 4, ..ClusterConfig::default() };
        let mut node = Node::new(NodeId::new("a"), &config, 7, 0).unwrap();
        let Some(Action::Kv { request, op: op @ KvOp::Create { .. } }) = node.poll_action() else {
            panic!("a node starts by creating its key")
        };
        node.handle(10, Input::KvResult { request, outcome: KvOutcome::Unavailable });
        assert_eq!(node.incarnation(), None);
        let (key, value) = (op.key().clone(), op.value().cloned());
        node.handle(11, Input::KvChanged { key, value, revision: 42 });
        assert_eq!(node.incarnation(), Some(42));
        let actions: Vec<Action> = std::iter::from_fn(|| node.poll_action()).collect();
        assert!(actions.contains(&Action::Event(ClusterEvent::Joined { incarnation: 42 })));
        assert!(!node.is_serving(11, ShardId(0)), "no lease before an acknowledged renewal");
    }
}
