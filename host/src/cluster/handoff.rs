//! Serving and handing shards over: which shards this node serves under
//! the newest map and its own lease, stopping and draining the ones it must
//! give up, and releasing them so the leader can grant them on.
//!
//! A node serves a shard exactly while (a) its lease holds, (b) the newest
//! map it has seen both owns and grants the shard to its current
//! incarnation, and (c) it has not released that grant. When the map's owner
//! moves elsewhere while the grant is still this node's, the node stops
//! serving, waits for [`Input::ShardDrained`](super::Input::ShardDrained),
//! then `put`s the shard's release key naming the grant; the leader sees it
//! and grants the shard to its owner in the next epoch. A node never serves
//! a grant again once it released it.

use super::names::Key;
use super::node::{Action, ClusterEvent, KvOp, KvOutcome, Node, Purpose};
use super::record::{Release, encode};
use super::shard::ShardId;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub(super) struct Handoff {
    /// Shards served, with the epoch of their grant.
    pub serving: BTreeMap<ShardId, u64>,
    /// Shards told to stop, waiting for `ShardDrained`.
    pub draining: BTreeMap<ShardId, u64>,
    /// The grant of each shard this node released; never served again.
    released: BTreeMap<ShardId, u64>,
    /// Release writes in flight.
    releasing: BTreeSet<ShardId>,
    /// Acknowledged releases: (grant, revision), so a release is rewritten
    /// only when a newer entry replaced it.
    acked: BTreeMap<ShardId, (u64, u64)>,
    release_retry_at: u64,
    fenced: bool,
    /// Bumped by everything [`Node::reconcile`] depends on besides the
    /// lease; with the lease it was last run under, it lets a reconcile
    /// that would change nothing be skipped.
    pub generation: u64,
    reconciled: Option<(u64, bool)>,
}

impl Handoff {
    /// Nothing served and nothing draining.
    pub(super) fn is_idle(&self) -> bool {
        self.serving.is_empty() && self.draining.is_empty()
    }
}

impl Node {
    /// Stops every shard at once if the lease ran out. Runs before any
    /// input is looked at.
    pub(super) fn fence(&mut self, now: u64) {
        if self.lease_valid(now) {
            self.handoff.fenced = false;
            return;
        }
        if !self.handoff.serving.is_empty() && !self.handoff.fenced {
            self.handoff.fenced = true;
            self.event(ClusterEvent::Fenced);
        }
        let all: Vec<ShardId> = self.handoff.serving.keys().copied().collect();
        self.stop(all);
    }

    fn stop(&mut self, shards: Vec<ShardId>) {
        for shard in shards {
            if let Some(grant) = self.handoff.serving.remove(&shard) {
                self.handoff.draining.insert(shard, grant);
                self.emit(Action::StopServing { shard });
            }
        }
    }

    /// Brings serving in line with the newest map, and releases grants this
    /// node holds for shards owned elsewhere.
    pub(super) fn reconcile(&mut self, now: u64) {
        let lease = self.lease_valid(now);
        let retry_due = self.handoff.release_retry_at != 0 && now >= self.handoff.release_retry_at;
        if retry_due {
            self.handoff.release_retry_at = 0;
        }
        let state = (self.handoff.generation, lease);
        if self.handoff.reconciled == Some(state) && !retry_due {
            return;
        }
        self.handoff.reconciled = Some(state);
        let me = self.me();
        let serve = lease && !self.membership.leaving;
        let mine = match (&me, self.view.shard_map()) {
            (Some(me), Some(map)) => map.index_of(me).map(|index| (map, index)),
            _ => None,
        };
        let Some((map, index)) = mine else {
            let all: Vec<ShardId> = self.handoff.serving.keys().copied().collect();
            self.stop(all);
            return;
        };
        // Whether this node should serve the shard under this grant.
        let released = &self.handoff.released;
        let wants = |shard: ShardId, since: u64| {
            serve
                && map.owner_raw(shard) == Some(index)
                && map.grant_raw(shard).is_some_and(|g| g.node == index && g.since == since)
                && released.get(&shard) != Some(&since)
        };
        let stop: Vec<ShardId> =
            self.handoff.serving.iter().filter(|(s, since)| !wants(**s, **since)).map(|(s, _)| *s).collect();
        let mut start = Vec::new();
        let mut release = Vec::new();
        for s in 0..map.shard_count() {
            let shard = ShardId(s);
            let Some(grant) = map.grant_raw(shard).filter(|g| g.node == index) else { continue };
            if map.owner_raw(shard) != Some(index) {
                if !self.membership.leaving {
                    release.push((shard, grant.since));
                }
            } else if wants(shard, grant.since)
                && !self.handoff.serving.contains_key(&shard)
                && !self.handoff.draining.contains_key(&shard)
            {
                start.push((shard, grant.since));
            }
        }
        self.stop(stop);
        for (shard, epoch) in start {
            self.handoff.serving.insert(shard, epoch);
            self.emit(Action::Serve { shard, epoch });
        }
        if let Some(me) = me {
            for (shard, grant) in release {
                self.release(now, &me, shard, grant);
            }
        }
    }

    /// Writes the release of `grant` once the shard is drained, unless the
    /// bucket already holds it.
    fn release(&mut self, now: u64, me: &super::record::Member, shard: ShardId, grant: u64) {
        let h = &self.handoff;
        if h.serving.contains_key(&shard) || h.draining.contains_key(&shard) || h.releasing.contains(&shard) {
            return;
        }
        if self.view.is_released(shard, me, grant) {
            self.handoff.released.insert(shard, grant);
            return;
        }
        let seen = self.view.releases.get(&shard).map_or(0, |(r, _)| *r);
        if h.acked.get(&shard).is_some_and(|(g, r)| *g == grant && *r >= seen) {
            // Written; the watch has not shown it yet. (A newer entry from
            // someone else means ours was overwritten: write it again.)
            return;
        }
        if now < h.release_retry_at {
            return;
        }
        self.handoff.releasing.insert(shard);
        let value = encode(&Release { holder: me.clone(), grant }).into();
        self.send(KvOp::Put { key: Key::Release(shard), value }, Purpose::Release { shard, grant });
    }

    pub(super) fn on_release_result(
        &mut self,
        now: u64,
        shard: ShardId,
        grant: u64,
        outcome: KvOutcome,
        _value: Option<Bytes>,
    ) {
        self.handoff.releasing.remove(&shard);
        self.handoff.generation += 1;
        match outcome {
            KvOutcome::Ok { revision } => {
                self.handoff.released.insert(shard, grant);
                if let Some(revision) = revision {
                    self.handoff.acked.insert(shard, (grant, revision));
                }
            }
            _ => self.handoff.release_retry_at = now + self.timing.heartbeat,
        }
    }

    pub(super) fn on_drained(&mut self, shard: ShardId) {
        self.handoff.draining.remove(&shard);
        self.handoff.generation += 1;
    }

    pub(super) fn handoff_timer(&self) -> Option<u64> {
        let mut timers = Vec::new();
        if !self.handoff.serving.is_empty()
            && let Some(from) = self.membership.lease_from
        {
            timers.push(from + self.timing.member_lease);
        }
        if self.handoff.release_retry_at > self.now {
            timers.push(self.handoff.release_retry_at);
        }
        timers.into_iter().min()
    }
}
