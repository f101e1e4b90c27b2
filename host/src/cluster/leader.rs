//! Leadership: the claim on the leader key (compare-and-set with a lease),
//! and what the leader does with it: expel members that stopped
//! heartbeating, and publish the next shard map.
//!
//! The map's safety does not rest on there being one leader: every map is
//! written with `update` at the revision it was computed from, so maps form
//! one chain of growing epochs, and a grant only moves on a fact that stays
//! true (a release of exactly that grant, or the end of the holder's
//! incarnation). Two nodes that both believe they lead can only make each
//! other's writes fail. The lease keeps that rare.

use super::assign::assign;
use super::map::ShardMap;
use super::names::Key;
use super::node::{ClusterEvent, KvOp, KvOutcome, Node, Purpose};
use super::record::{LeaderClaim, Member, NodeId, encode};
use super::shard::ShardId;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug)]
pub(super) struct Leadership {
    /// The term of the claim this node holds (or believes it holds).
    pub term: Option<u64>,
    pub claim_revision: u64,
    /// Send time of the newest acknowledged renewal.
    pub lease_from: Option<u64>,
    pub in_flight: bool,
    pub next_claim_at: u64,
    /// The newest leader this node logged, to log each change once.
    seen_leader: Option<(NodeId, u64)>,
    expelling: BTreeSet<NodeId>,
    expel_retry_at: BTreeMap<NodeId, u64>,
    /// Incarnations this node expelled (the watch may not show it yet).
    expelled: BTreeSet<Member>,
    map_in_flight: bool,
    /// Something the next map depends on changed since it was last computed.
    pub map_dirty: bool,
    /// After a conflict, wait until the view holds a map newer than this.
    map_wait_for: Option<u64>,
    map_retry_at: u64,
}

impl Leadership {
    pub(super) fn new(now: u64) -> Self {
        Self {
            term: None,
            claim_revision: 0,
            lease_from: None,
            in_flight: false,
            next_claim_at: now,
            seen_leader: None,
            expelling: BTreeSet::new(),
            expel_retry_at: BTreeMap::new(),
            expelled: BTreeSet::new(),
            map_in_flight: false,
            map_dirty: true,
            map_wait_for: None,
            map_retry_at: 0,
        }
    }
}

impl Node {
    /// Whether this node acts as leader at `now`.
    pub(super) fn leads(&self, now: u64) -> bool {
        let l = &self.leadership;
        l.term.is_some()
            && l.lease_from.is_some_and(|from| now < from.saturating_add(self.timing.leader_lease))
            && self.lease_valid(now)
            && !self.membership.leaving
    }

    /// The highest term this node knows of.
    fn known_term(&self) -> u64 {
        let claimed = self.view.leader.as_ref().and_then(|e| e.claim.as_ref()).map_or(0, |c| c.term);
        let mapped = self.view.shard_map().map_or(0, ShardMap::leader_term);
        claimed.max(mapped).max(self.leadership.term.unwrap_or(0))
    }

    pub(super) fn poll_leadership(&mut self, now: u64) {
        self.poll_claim(now);
        if self.leads(now) {
            self.expel_silent_members(now);
            self.publish_map(now);
        }
    }

    /// Renews the claim, or takes over one that went quiet.
    fn poll_claim(&mut self, now: u64) {
        if self.membership.leaving || self.leadership.in_flight || now < self.leadership.next_claim_at {
            return;
        }
        let Some(me) = self.me() else { return };
        if !self.lease_valid(now) {
            return;
        }
        let (op, term) = match self.leadership.term {
            Some(term) => {
                // A map from a later term than ours (we claimed before we had
                // read it): renew under a term above it, or we could never
                // write the map.
                let mapped = self.view.shard_map().map_or(0, ShardMap::leader_term);
                let term = if mapped > term { mapped + 1 } else { term };
                let value = encode(&LeaderClaim { leader: me, term }).into();
                (KvOp::Update { key: Key::Leader, value, expected: self.leadership.claim_revision }, term)
            }
            None => {
                let term = self.known_term() + 1;
                let value = || encode(&LeaderClaim { leader: me.clone(), term }).into();
                match &self.view.leader {
                    Some(entry) if entry.claim.is_some() => {
                        if now < entry.seen_at + self.timing.leader_timeout {
                            return;
                        }
                        (KvOp::Update { key: Key::Leader, value: value(), expected: entry.revision }, term)
                    }
                    // Deleted by a leader that left, or never written.
                    _ => (KvOp::Create { key: Key::Leader, value: value() }, term),
                }
            }
        };
        self.leadership.in_flight = true;
        self.leadership.next_claim_at = now + self.timing.leader_renew;
        self.send(op, Purpose::Claim { sent_at: now, term });
    }

    pub(super) fn on_leader_result(&mut self, now: u64, purpose: Purpose, outcome: KvOutcome) {
        match purpose {
            Purpose::Claim { sent_at, term } => {
                self.leadership.in_flight = false;
                match outcome {
                    KvOutcome::Ok { revision } => {
                        let l = &mut self.leadership;
                        if l.term.is_none() || l.term.is_some_and(|t| t < term) {
                            l.term = Some(term);
                            l.lease_from = None;
                            l.map_wait_for = None;
                            l.map_dirty = true;
                            self.event(ClusterEvent::BecameLeader { term });
                        }
                        let l = &mut self.leadership;
                        if let Some(revision) = revision {
                            l.claim_revision = l.claim_revision.max(revision);
                        }
                        l.lease_from = Some(l.lease_from.map_or(sent_at, |t| t.max(sent_at)));
                    }
                    KvOutcome::Conflict => self.step_down(),
                    KvOutcome::Unavailable => {}
                }
            }
            Purpose::Abdicate => {}
            Purpose::Expel { member } => {
                self.leadership.expelling.remove(&member.id);
                match outcome {
                    KvOutcome::Ok { .. } => {
                        self.leadership.expel_retry_at.remove(&member.id);
                        self.leadership.expelled.insert(member.clone());
                        self.leadership.map_dirty = true;
                        self.event(ClusterEvent::MemberExpelled { member });
                    }
                    // It renewed, or the answer was lost: look again later.
                    _ => {
                        self.leadership.expel_retry_at.insert(member.id, now + self.timing.heartbeat);
                    }
                }
            }
            Purpose::MapWrite { base_revision, moved, granted } => {
                self.leadership.map_in_flight = false;
                match outcome {
                    KvOutcome::Ok { .. } => {
                        let epoch = self.epoch();
                        self.event(ClusterEvent::MapPublished { epoch, moved, granted });
                    }
                    KvOutcome::Conflict => {
                        self.leadership.map_wait_for = Some(base_revision);
                        self.leadership.map_dirty = true;
                    }
                    // Maybe written: a retry from the same base then conflicts.
                    KvOutcome::Unavailable => {
                        self.leadership.map_retry_at = now + self.timing.heartbeat;
                        self.leadership.map_dirty = true;
                    }
                }
            }
            _ => {}
        }
    }

    fn step_down(&mut self) {
        if let Some(term) = self.leadership.term.take() {
            self.leadership.lease_from = None;
            self.event(ClusterEvent::SteppedDown { term });
        }
    }

    /// On a clean leave: give the claim up at once, so another node takes
    /// over without waiting for `leader_timeout`.
    pub(super) fn abdicate(&mut self) {
        if self.leadership.term.is_some() {
            let expected = Some(self.leadership.claim_revision);
            self.step_down();
            self.send(KvOp::Delete { key: Key::Leader, expected }, Purpose::Abdicate);
        }
    }

    /// The watch showed a newer leader entry.
    pub(super) fn on_leader_key(&mut self) {
        let Some(entry) = self.view.leader.clone() else { return };
        let me = self.me();
        match &entry.claim {
            Some(claim) if Some(&claim.leader) == me.as_ref() => {
                // Our own claim (perhaps one whose answer was lost).
                let l = &mut self.leadership;
                l.claim_revision = l.claim_revision.max(entry.revision);
                if l.term.is_none() && !self.membership.leaving {
                    l.term = Some(claim.term);
                    l.map_dirty = true;
                    self.event(ClusterEvent::BecameLeader { term: claim.term });
                }
            }
            _ if entry.revision > self.leadership.claim_revision => self.step_down(),
            _ => {}
        }
        if let Some(claim) = entry.claim {
            let seen = Some((claim.leader.id.clone(), claim.term));
            if self.leadership.seen_leader != seen {
                self.leadership.seen_leader = seen;
                self.event(ClusterEvent::LeaderSeen { leader: claim.leader.id, term: claim.term });
            }
        }
    }

    /// Deletes, at the revision last seen, the key of every member that has
    /// not changed it for `failure_timeout`. The compare-and-set makes it
    /// safe: it succeeds only if the member stored nothing since that
    /// revision, whose heartbeat was sent before this node saw it, so the
    /// member's lease ran out `failure_timeout - member_lease × drift` ago.
    fn expel_silent_members(&mut self, now: u64) {
        let timeout = self.timing.failure_timeout;
        let due: Vec<(NodeId, Member, u64)> = self
            .view
            .members
            .iter()
            .filter(|(id, e)| {
                **id != self.id
                    && e.heartbeat.is_some()
                    && now >= e.seen_at + timeout
                    && !self.leadership.expelling.contains(*id)
                    && self.leadership.expel_retry_at.get(*id).is_none_or(|t| now >= *t)
            })
            .filter_map(|(id, e)| {
                Some((id.clone(), Member { id: id.clone(), incarnation: e.incarnation()? }, e.revision))
            })
            .collect();
        for (id, member, revision) in due {
            self.leadership.expelling.insert(id.clone());
            self.send(KvOp::Delete { key: Key::Member(id), expected: Some(revision) }, Purpose::Expel { member });
        }
        // Forget expulsions the watch has caught up with.
        let view = &self.view;
        self.leadership
            .expelled
            .retain(|m| !view.members.get(&m.id).is_some_and(|e| e.revision > m.incarnation && e.heartbeat.is_none()));
    }

    fn is_dead(&self, member: &Member) -> bool {
        self.leadership.expelled.contains(member) || self.view.is_dead(member)
    }

    /// Computes the next map from the newest one seen and writes it if it
    /// differs.
    fn publish_map(&mut self, now: u64) {
        let l = &self.leadership;
        if !l.map_dirty || l.map_in_flight || now < l.map_retry_at || self.view.map_unreadable() {
            return;
        }
        if let Some(wait) = l.map_wait_for {
            if self.view.map_revision <= wait {
                return;
            }
            self.leadership.map_wait_for = None;
        }
        let Some(term) = self.leadership.term else { return };
        let base = self.view.map.as_ref();
        if base.is_some_and(|(_, m)| m.leader_term() > term) {
            return;
        }
        // Computed from the view alone: it changes only with the view.
        self.leadership.map_dirty = false;
        let Some((map, moved, granted)) = self.next_map(term) else { return };
        let value = map.encode().into();
        let (op, base_revision) = match base {
            Some((revision, _)) => (KvOp::Update { key: Key::Map, value, expected: *revision }, *revision),
            None => (KvOp::Create { key: Key::Map, value }, 0),
        };
        self.leadership.map_in_flight = true;
        self.send(op, Purpose::MapWrite { base_revision, moved, granted });
    }

    /// The map that follows the newest one seen, or `None` if nothing would
    /// change. Owners follow [`assign`]; a grant moves to the owner only
    /// when the shard has none, or its holder released exactly that grant,
    /// or its holder's incarnation has ended.
    fn next_map(&self, term: u64) -> Option<(ShardMap, u32, u32)> {
        let base = self.view.shard_map();
        let epoch = base.map_or(0, ShardMap::epoch) + 1;
        let shards = base.map_or(self.shards, ShardMap::shard_count);
        let live: Vec<Member> = self.view.live_members().into_iter().filter(|m| !self.is_dead(m)).collect();
        let ids: Vec<NodeId> = live.iter().map(|m| m.id.clone()).collect();
        let previous: Vec<Option<&NodeId>> = match base {
            Some(map) => (0..shards).map(|s| map.owner(ShardId(s)).map(|m| &m.id)).collect(),
            None => Vec::new(),
        };
        let assigned = assign(&previous, &ids, shards);
        let owners: Vec<Option<Member>> = assigned.iter().map(|o| o.map(|i| live[i].clone())).collect();
        let (mut moved, mut granted) = (0, 0);
        let mut grants = Vec::with_capacity(shards as usize);
        for (s, owner) in owners.iter().enumerate() {
            let shard = ShardId(s as u32);
            let old_owner = base.and_then(|m| m.owner(shard));
            if old_owner != owner.as_ref() {
                moved += 1;
            }
            let grant = match base.and_then(|m| m.grant(shard)) {
                // The holder released this very grant (it may own the shard
                // again by now: it still needs a new grant), or is gone.
                Some((holder, since)) if self.view.is_released(shard, holder, since) || self.is_dead(holder) => {
                    owner.clone().map(|o| (o, epoch))
                }
                Some((holder, since)) => Some((holder.clone(), since)),
                None => owner.clone().map(|o| (o, epoch)),
            };
            if grant.as_ref().is_some_and(|(_, since)| *since == epoch) {
                granted += 1;
            }
            grants.push(grant);
        }
        if moved == 0 && granted == 0 && base.is_some() {
            return None;
        }
        Some((ShardMap::build(epoch, term, &owners, &grants), moved, granted))
    }

    pub(super) fn leader_timer(&self) -> Option<u64> {
        let l = &self.leadership;
        let mut timers = Vec::new();
        if !l.in_flight && !self.membership.leaving && self.lease_valid(self.now) && self.me().is_some() {
            let takeover = match (&l.term, &self.view.leader) {
                (None, Some(entry)) => entry.seen_at + self.timing.leader_timeout,
                _ => 0,
            };
            timers.push(l.next_claim_at.max(takeover));
        }
        if self.leads(self.now) {
            for (id, e) in &self.view.members {
                if *id != self.id && e.heartbeat.is_some() && !l.expelling.contains(id) {
                    let retry = l.expel_retry_at.get(id).copied().unwrap_or(0);
                    timers.push((e.seen_at + self.timing.failure_timeout).max(retry));
                }
            }
            if l.map_dirty && l.map_retry_at > self.now {
                timers.push(l.map_retry_at);
            }
        }
        timers.into_iter().min()
    }
}

#[cfg(test)]
mod tests {
    use crate::cluster::node::tests::Cluster;
    use crate::cluster::{ClusterEvent, NodeId};

    #[test]
    fn a_dead_leader_is_replaced_and_its_shards_move() {
        let mut cluster = Cluster::default();
        let a = cluster.add("a");
        let b = cluster.add("b");
        cluster.drain_all();
        assert!(cluster.nodes[a].is_leader(cluster.now) && !cluster.nodes[b].is_leader(cluster.now));
        cluster.crashed.insert(a);
        let crashed = cluster.now;
        while !cluster.nodes[b].is_leader(cluster.now) {
            cluster.run_for(50);
        }
        let took = cluster.now - crashed;
        assert!((2_500..3_000).contains(&took), "took over after {took} ms");
        assert_eq!(cluster.nodes[b].leader(), Some((&NodeId::new("b"), 2)));
        // a's lease ran out long ago; its shards move once it is expelled.
        cluster.run_for(500);
        assert_eq!(cluster.served(b), 8);
        assert!(cluster.nodes[b].epoch() > 3);
        assert!(cluster.events.contains(&(b, ClusterEvent::BecameLeader { term: 2 })));
    }
}
