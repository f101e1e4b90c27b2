//! One node's protocol state machine: the inputs a driver feeds it, the
//! actions it asks for, and the glue between membership, leadership and
//! handoff (each in its own file as an `impl Node` block).

use super::config::{ClusterConfig, ConfigError, Timing};
use super::handoff::Handoff;
use super::leader::Leadership;
use super::map::ShardMap;
use super::membership::Membership;
use super::names::Key;
use super::record::{Member, NodeId};
use super::shard::ShardId;
use super::view::{Change, View};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};

/// Names one KV operation, so its outcome comes back to what asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// One operation on the cluster's KV bucket; each is one NATS KV call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOp {
    /// `put`: write whatever is there.
    Put { key: Key, value: Bytes },
    /// `create`: write only if the key is absent or deleted.
    Create { key: Key, value: Bytes },
    /// `update`: write only if the key's last revision is `expected`.
    Update { key: Key, value: Bytes, expected: u64 },
    /// `delete` (a delete marker, kept as the key's last entry), only if the
    /// last revision is `expected` when given (`delete_expect_revision`).
    Delete { key: Key, expected: Option<u64> },
}

impl KvOp {
    pub fn key(&self) -> &Key {
        match self {
            KvOp::Put { key, .. } | KvOp::Create { key, .. } | KvOp::Update { key, .. } | KvOp::Delete { key, .. } => {
                key
            }
        }
    }

    /// The value written; `None` for a delete.
    pub fn value(&self) -> Option<&Bytes> {
        match self {
            KvOp::Put { value, .. } | KvOp::Create { value, .. } | KvOp::Update { value, .. } => Some(value),
            KvOp::Delete { .. } => None,
        }
    }

    /// Whether a NATS KV bucket takes this operation on a key whose newest
    /// entry is `current` (its value, `None` once deleted, and revision):
    /// the compare-and-set rule the test buckets share.
    #[cfg(test)]
    pub(in crate::cluster) fn takes_on(&self, current: Option<&(Option<Bytes>, u64)>) -> bool {
        let last = current.map(|(_, revision)| *revision);
        match self {
            KvOp::Put { .. } => true,
            KvOp::Create { .. } => !current.is_some_and(|(value, _)| value.is_some()),
            KvOp::Update { expected, .. } => last == Some(*expected),
            KvOp::Delete { expected, .. } => expected.is_none_or(|e| last == Some(e)),
        }
    }
}

/// How a [`KvOp`] ended. Every request must get exactly one outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvOutcome {
    /// Written, at `revision` when the client reports it (NATS reports none
    /// for deletes).
    Ok { revision: Option<u64> },
    /// `create` found the key, or `update`/`delete` found another revision.
    Conflict,
    /// Timed out or disconnected: it may or may not have been written.
    Unavailable,
}

/// What a driver feeds the node, with the node's clock (`now`, monotonic
/// milliseconds) at the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A timer fired (or any reason to look at the clock).
    Tick,
    /// The watch delivered an entry: `value` is `None` for a delete. Late,
    /// repeated and reordered entries are fine; after a reconnect the driver
    /// re-reads every key of the cluster and feeds each one.
    KvChanged { key: Key, value: Option<Bytes>, revision: u64 },
    /// The outcome of a [`KvOp`] the node asked for.
    KvResult { request: RequestId, outcome: KvOutcome },
    /// The runtime finished the shard's in-flight commands and passivated
    /// its actors, after an [`Action::StopServing`].
    ShardDrained(ShardId),
    /// Leave the cluster cleanly (SIGTERM): drain, then delete the member key.
    Leave,
}

/// Something worth a log line or a metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterEvent {
    /// This node's member key was created: it is a member.
    Joined {
        incarnation: u64,
    },
    /// This node's member key was deleted by the leader: it rejoins as a new
    /// incarnation.
    Expelled {
        incarnation: u64,
    },
    /// This node's lease ran out: it stopped serving every shard.
    Fenced,
    BecameLeader {
        term: u64,
    },
    SteppedDown {
        term: u64,
    },
    /// Another node's claim to lead was seen.
    LeaderSeen {
        leader: NodeId,
        term: u64,
    },
    /// As leader, this node removed a member that stopped heartbeating.
    MemberExpelled {
        member: Member,
    },
    /// As leader, this node published a map: `moved` shards got a new
    /// owner, `granted` shards a new grant.
    MapPublished {
        epoch: u64,
        moved: u32,
        granted: u32,
    },
    /// A newer map was seen.
    MapSeen {
        epoch: u64,
    },
    /// The map key holds something this build cannot read; the node keeps
    /// the last map it could read and, as leader, does not overwrite it.
    MapUnreadable {
        revision: u64,
    },
}

/// What the node asks its driver to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run a KV operation and report its outcome as [`Input::KvResult`].
    Kv {
        request: RequestId,
        op: KvOp,
    },
    /// Start taking commands for the shard (the driver opens it in its gate);
    /// appends record `epoch`, the epoch of the grant.
    Serve {
        shard: ShardId,
        epoch: u64,
    },
    /// Stop taking commands for the shard, finish the ones in flight,
    /// passivate its actors, then report [`Input::ShardDrained`].
    StopServing {
        shard: ShardId,
    },
    Event(ClusterEvent),
    /// The clean leave is complete: the driver may exit.
    Left,
}

/// Why a request was sent, and what it wrote.
#[derive(Debug, Clone)]
pub(super) enum Purpose {
    Join {
        sent_at: u64,
        nonce: u64,
    },
    Heartbeat {
        sent_at: u64,
        incarnation: u64,
    },
    LeaveDelete,
    /// Deleting a silent key an earlier life of this id left behind.
    ClearStale,
    Claim {
        sent_at: u64,
        term: u64,
    },
    Abdicate,
    Expel {
        member: Member,
    },
    MapWrite {
        base_revision: u64,
        moved: u32,
        granted: u32,
    },
    Release {
        shard: ShardId,
        grant: u64,
    },
}

#[derive(Debug)]
pub(super) struct Request {
    pub purpose: Purpose,
    pub key: Key,
    pub value: Option<Bytes>,
}

/// One node of the cluster, without I/O (see the [module docs](super)).
#[derive(Debug)]
pub struct Node {
    pub(super) id: NodeId,
    pub(super) timing: Timing,
    /// Shards of a map this node creates.
    pub(super) shards: u32,
    pub(super) now: u64,
    pub(super) view: View,
    next_request: u64,
    pub(super) pending: BTreeMap<RequestId, Request>,
    actions: VecDeque<Action>,
    pub(super) membership: Membership,
    pub(super) leadership: Leadership,
    pub(super) handoff: Handoff,
}

impl Node {
    /// A node that joins as soon as it is polled. `nonce` should differ
    /// between processes that may use the same id (a random number): it lets
    /// the node recognise its own member key when an answer is lost.
    ///
    /// # Errors
    ///
    /// The config's [`ConfigError`].
    pub fn new(id: NodeId, config: &ClusterConfig, nonce: u64, now: u64) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut node = Self {
            id,
            timing: config.timing(),
            shards: config.shards,
            now,
            view: View::default(),
            next_request: 0,
            pending: BTreeMap::new(),
            actions: VecDeque::new(),
            membership: Membership::new(nonce, now),
            leadership: Leadership::new(now),
            handoff: Handoff::default(),
        };
        node.poll(now);
        Ok(node)
    }

    /// Feeds one input. Before anything else the node checks its own lease,
    /// so a node resuming from a pause stops serving before it acts.
    pub fn handle(&mut self, now: u64, input: Input) {
        if self.membership.left {
            return;
        }
        self.now = self.now.max(now);
        let now = self.now;
        self.fence(now);
        match input {
            Input::Tick => {}
            Input::KvChanged { key, value, revision } => self.observe(now, &key, value.as_ref(), revision),
            Input::KvResult { request, outcome } => self.on_result(now, request, outcome),
            Input::ShardDrained(shard) => self.on_drained(shard),
            Input::Leave => self.leave(now),
        }
        self.poll(now);
    }

    /// The next action to carry out, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When (node clock) the node next needs a [`Input::Tick`], if ever.
    pub fn next_timer(&self) -> Option<u64> {
        if self.membership.left {
            return None;
        }
        [self.membership_timer(), self.leader_timer(), self.handoff_timer()].into_iter().flatten().min()
    }

    /// Whether the node may answer a command for the shard **now**
    /// (invariant: one-server-per-shard): it
    /// serves the shard and its lease holds. The driver must ask this before
    /// answering each command (a node back from a pause may not have had a
    /// timer yet).
    pub fn is_serving(&self, now: u64, shard: ShardId) -> bool {
        self.lease_valid(now) && self.handoff.serving.contains_key(&shard)
    }

    /// When (node clock) this node's lease runs out, if it holds one: until
    /// then [`Node::is_serving`] answers from the shards it serves alone, so
    /// a driver may cache both and check them without locking the node.
    pub fn lease_until(&self) -> Option<u64> {
        let m = &self.membership;
        if m.left || m.incarnation.is_none() {
            return None;
        }
        m.lease_from.map(|from| from.saturating_add(self.timing.member_lease))
    }

    /// The shards this node believes it serves (between `Serve` and
    /// `StopServing`), whatever its lease says; see [`Node::is_serving`].
    pub fn serving(&self) -> impl Iterator<Item = ShardId> + '_ {
        self.handoff.serving.keys().copied()
    }

    /// The shards the node may answer for **now** ([`Node::is_serving`] of
    /// each): none once its lease has run out.
    pub fn serving_now(&self, now: u64) -> impl Iterator<Item = ShardId> + '_ {
        let lease = self.lease_valid(now);
        self.handoff.serving.keys().copied().filter(move |_| lease)
    }

    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// This node's current incarnation, once it is a member.
    pub fn incarnation(&self) -> Option<u64> {
        self.membership.incarnation
    }

    /// The newest map this node has seen.
    pub fn map(&self) -> Option<&ShardMap> {
        self.view.shard_map()
    }

    /// The newest map's epoch, 0 before any.
    pub fn epoch(&self) -> u64 {
        self.view.shard_map().map_or(0, ShardMap::epoch)
    }

    /// Whether this node acts as leader now (its claim's lease holds).
    pub fn is_leader(&self, now: u64) -> bool {
        self.leads(now)
    }

    /// The newest claim to lead seen: the leader and its term.
    pub fn leader(&self) -> Option<(&NodeId, u64)> {
        let claim = self.view.leader.as_ref()?.claim.as_ref()?;
        Some((&claim.leader.id, claim.term))
    }

    /// The members whose key holds a heartbeat, as this node has seen them.
    pub fn members(&self) -> Vec<Member> {
        self.view.live_members()
    }

    pub(super) fn me(&self) -> Option<Member> {
        Some(Member { id: self.id.clone(), incarnation: self.membership.incarnation? })
    }

    pub(super) fn emit(&mut self, action: Action) {
        self.actions.push_back(action);
    }

    pub(super) fn event(&mut self, event: ClusterEvent) {
        self.actions.push_back(Action::Event(event));
    }

    pub(super) fn send(&mut self, op: KvOp, purpose: Purpose) -> RequestId {
        let request = RequestId(self.next_request);
        self.next_request += 1;
        let (key, value) = (op.key().clone(), op.value().cloned());
        self.pending.insert(request, Request { purpose, key, value });
        self.actions.push_back(Action::Kv { request, op });
        request
    }

    /// Applies an entry of the bucket to the view and reacts to what changed.
    fn observe(&mut self, now: u64, key: &Key, value: Option<&Bytes>, revision: u64) {
        match self.view.apply(now, key, value, revision) {
            Change::None => {}
            Change::Member { node, alive } => {
                self.leadership.map_dirty |= alive;
                if node == self.id {
                    let before = self.membership.incarnation;
                    self.on_own_key(now);
                    if self.membership.incarnation != before {
                        self.handoff.generation += 1;
                    }
                }
            }
            Change::Leader => self.on_leader_key(),
            Change::Map(epoch) => {
                self.leadership.map_dirty = true;
                self.handoff.generation += 1;
                self.event(ClusterEvent::MapSeen { epoch });
            }
            Change::BadMap => self.event(ClusterEvent::MapUnreadable { revision }),
            Change::Release(_) => {
                self.leadership.map_dirty = true;
                self.handoff.generation += 1;
            }
        }
    }

    fn on_result(&mut self, now: u64, request: RequestId, outcome: KvOutcome) {
        let Some(Request { purpose, key, value }) = self.pending.remove(&request) else { return };
        // Our own write is the newest entry of its key we know of.
        if let KvOutcome::Ok { revision: Some(revision) } = outcome {
            self.observe(now, &key, value.as_ref(), revision);
        }
        match purpose {
            Purpose::Join { .. } | Purpose::Heartbeat { .. } | Purpose::LeaveDelete | Purpose::ClearStale => {
                // Serving depends on the incarnation (and the lease, which
                // reconcile checks itself), not on every renewal.
                let before = self.membership.incarnation;
                self.on_membership_result(now, purpose, outcome);
                if self.membership.incarnation != before {
                    self.handoff.generation += 1;
                }
            }
            Purpose::Claim { .. } | Purpose::Abdicate | Purpose::Expel { .. } | Purpose::MapWrite { .. } => {
                self.on_leader_result(now, purpose, outcome)
            }
            Purpose::Release { shard, grant } => self.on_release_result(now, shard, grant, outcome, value),
        }
    }

    fn leave(&mut self, _now: u64) {
        if self.membership.leaving {
            return;
        }
        self.membership.leaving = true;
        self.handoff.generation += 1;
        self.abdicate();
    }

    /// Everything that may be due: heartbeats, claims, leader duties,
    /// serving and releases.
    fn poll(&mut self, now: u64) {
        self.fence(now);
        self.poll_membership(now);
        self.poll_leadership(now);
        self.reconcile(now);
        // Serving may have stopped; a leave may now delete the member key.
        self.poll_membership(now);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::collections::{BTreeSet, VecDeque};

    /// A perfect bucket and network: every operation applies at once and
    /// every watcher sees every entry, in order. Drains are held until the
    /// test releases them.
    #[derive(Debug, Default)]
    pub(in crate::cluster) struct Cluster {
        pub now: u64,
        pub revision: u64,
        pub kv: BTreeMap<Key, (Option<Bytes>, u64)>,
        pub nodes: Vec<Node>,
        serving: Vec<BTreeSet<ShardId>>,
        drains: Vec<(usize, ShardId)>,
        pub events: Vec<(usize, ClusterEvent)>,
        left: Vec<bool>,
        /// Nodes that get no input (crashed, or paused until removed).
        pub crashed: BTreeSet<usize>,
    }

    impl Cluster {
        fn config() -> ClusterConfig {
            ClusterConfig { shards: 8, ..ClusterConfig::default() }
        }

        pub(in crate::cluster) fn add(&mut self, id: &str) -> usize {
            let node = Node::new(NodeId::new(id), &Self::config(), self.nodes.len() as u64 + 1, self.now).unwrap();
            self.nodes.push(node);
            self.serving.push(BTreeSet::new());
            self.left.push(false);
            let index = self.nodes.len() - 1;
            // The initial read of the bucket.
            let entries: Vec<_> = self.kv.iter().map(|(k, (v, r))| (k.clone(), v.clone(), *r)).collect();
            for (key, value, revision) in entries {
                self.nodes[index].handle(self.now, Input::KvChanged { key, value, revision });
            }
            self.settle();
            index
        }

        pub(in crate::cluster) fn apply(&mut self, op: &KvOp) -> KvOutcome {
            if !op.takes_on(self.kv.get(op.key())) {
                return KvOutcome::Conflict;
            }
            self.revision += 1;
            self.kv.insert(op.key().clone(), (op.value().cloned(), self.revision));
            KvOutcome::Ok { revision: Some(self.revision) }
        }

        /// Runs every node's actions until none are left.
        pub(in crate::cluster) fn settle(&mut self) {
            let mut queue: VecDeque<(usize, Input)> = VecDeque::new();
            loop {
                for index in 0..self.nodes.len() {
                    while let Some(action) = self.nodes[index].poll_action() {
                        match action {
                            Action::Kv { request, op } => {
                                let outcome = self.apply(&op);
                                if let KvOutcome::Ok { revision: Some(revision) } = outcome {
                                    for other in 0..self.nodes.len() {
                                        let (key, value) = (op.key().clone(), op.value().cloned());
                                        queue.push_back((other, Input::KvChanged { key, value, revision }));
                                    }
                                }
                                queue.push_back((index, Input::KvResult { request, outcome }));
                            }
                            Action::Serve { shard, .. } => assert!(self.serving[index].insert(shard)),
                            Action::StopServing { shard } => {
                                assert!(self.serving[index].remove(&shard));
                                self.drains.push((index, shard));
                            }
                            Action::Event(event) => self.events.push((index, event)),
                            Action::Left => self.left[index] = true,
                        }
                    }
                }
                let Some((index, input)) = queue.pop_front() else { break };
                if !self.crashed.contains(&index) {
                    self.nodes[index].handle(self.now, input);
                }
            }
        }

        /// Feeds a node every key of the bucket, as after a reconnect.
        pub(in crate::cluster) fn resync(&mut self, index: usize) {
            let entries: Vec<_> = self.kv.iter().map(|(k, (v, r))| (k.clone(), v.clone(), *r)).collect();
            for (key, value, revision) in entries {
                self.nodes[index].handle(self.now, Input::KvChanged { key, value, revision });
            }
            self.settle();
        }

        pub(in crate::cluster) fn drain_all(&mut self) {
            let drains = std::mem::take(&mut self.drains);
            let (skip, drains): (Vec<_>, Vec<_>) = drains.into_iter().partition(|(i, _)| self.crashed.contains(i));
            self.drains = skip;
            for (index, shard) in drains {
                self.nodes[index].handle(self.now, Input::ShardDrained(shard));
            }
            self.settle();
        }

        /// Advances time in heartbeat steps, draining as it goes.
        pub(in crate::cluster) fn run_for(&mut self, millis: u64) {
            let end = self.now + millis;
            while self.now < end {
                self.now += 50;
                for index in 0..self.nodes.len() {
                    if !self.crashed.contains(&index) {
                        self.nodes[index].handle(self.now, Input::Tick);
                    }
                }
                self.settle();
                self.drain_all();
            }
        }

        pub(in crate::cluster) fn served(&self, index: usize) -> usize {
            (0..8).filter(|s| self.nodes[index].is_serving(self.now, ShardId(*s))).count()
        }
    }

    #[test]
    fn a_lone_node_joins_leads_and_serves_every_shard() {
        let mut cluster = Cluster::default();
        let a = cluster.add("a");
        assert!(cluster.nodes[a].is_leader(cluster.now));
        assert_eq!(cluster.nodes[a].epoch(), 1);
        assert_eq!(cluster.served(a), 8);
        assert_eq!(cluster.nodes[a].leader(), Some((&NodeId::new("a"), 1)));
        let events: Vec<_> = cluster.events.iter().map(|(_, e)| e.clone()).collect();
        assert!(events.contains(&ClusterEvent::Joined { incarnation: 1 }));
        assert!(events.contains(&ClusterEvent::BecameLeader { term: 1 }));
        assert!(events.contains(&ClusterEvent::MapPublished { epoch: 1, moved: 8, granted: 8 }));
        assert!(cluster.nodes[a].next_timer().is_some_and(|t| t > cluster.now));
    }

    #[test]
    fn a_moving_shard_waits_for_the_old_holder_to_drain_and_release() {
        let mut cluster = Cluster::default();
        let a = cluster.add("a");
        let b = cluster.add("b");
        // The map now owns half the shards to b, but a still holds them.
        let map = cluster.nodes[b].map().unwrap().clone();
        let moving: Vec<ShardId> =
            (0..8).map(ShardId).filter(|s| map.owner(*s).is_some_and(|o| o.id.as_str() == "b")).collect();
        assert_eq!(moving.len(), 4);
        assert!(moving.iter().all(|s| !map.is_settled(*s)));
        assert_eq!((cluster.served(a), cluster.served(b)), (4, 0), "a stopped the moving shards; b waits");
        assert_eq!(cluster.drains.len(), 4);
        // a drains and releases; the leader grants them to b.
        cluster.drain_all();
        assert_eq!((cluster.served(a), cluster.served(b)), (4, 4));
        let map = cluster.nodes[a].map().unwrap();
        assert!((0..8).all(|s| map.is_settled(ShardId(s))));
        assert!(map.epoch() >= 3, "one epoch to move the owners, then the grants as releases come");
    }

    #[test]
    fn a_node_whose_lease_ran_out_stops_before_anything_else() {
        let mut cluster = Cluster::default();
        let a = cluster.add("a");
        assert_eq!(cluster.served(a), 8);
        // Nothing is answered for longer than the lease (a pause, a cut).
        let later = cluster.now + 1_600;
        assert!(!cluster.nodes[a].is_serving(later, ShardId(0)), "the lease is checked on every question");
        cluster.nodes[a].handle(later, Input::Tick);
        let mut stopped = 0;
        while let Some(action) = cluster.nodes[a].poll_action() {
            match action {
                Action::StopServing { .. } => stopped += 1,
                Action::Serve { .. } => panic!("serves without a lease"),
                _ => {}
            }
        }
        assert_eq!(stopped, 8);
        assert_eq!(cluster.nodes[a].serving().count(), 0);
    }

    #[test]
    fn a_clean_leave_drains_then_deletes_the_member_key_and_hands_over() {
        let mut cluster = Cluster::default();
        let a = cluster.add("a");
        let b = cluster.add("b");
        cluster.drain_all();
        cluster.nodes[a].handle(cluster.now, Input::Leave);
        cluster.settle();
        assert!(!cluster.left[a], "not before its shards are drained");
        assert!(cluster.kv.get(&Key::Member(NodeId::new("a"))).is_some_and(|(v, _)| v.is_some()));
        cluster.drain_all();
        assert!(cluster.left[a]);
        assert!(cluster.kv.get(&Key::Member(NodeId::new("a"))).is_some_and(|(v, _)| v.is_none()));
        // b takes over the claim at once (it was deleted) and every shard.
        cluster.run_for(300);
        assert!(cluster.nodes[b].is_leader(cluster.now));
        assert_eq!(cluster.served(b), 8);
        assert_eq!(cluster.nodes[a].next_timer(), None);
    }

    #[test]
    fn a_silent_member_is_expelled_and_its_shards_move_after_the_failure_timeout() {
        let mut cluster = Cluster::default();
        let a = cluster.add("a");
        let b = cluster.add("b");
        cluster.drain_all();
        assert_eq!((cluster.served(a), cluster.served(b)), (4, 4));
        // b stops answering anything (crashed): only a runs.
        cluster.crashed.insert(b);
        let crashed = cluster.now;
        while cluster.served(a) < 8 {
            cluster.now += 50;
            cluster.nodes[a].handle(cluster.now, Input::Tick);
            cluster.settle();
            assert!(cluster.now - crashed < 3_500, "failover took too long");
        }
        assert!(cluster.now - crashed >= 2_500, "not before the failure timeout");
        assert!(cluster.events.iter().any(|(i, e)| *i == a && matches!(e, ClusterEvent::MemberExpelled { .. })));
    }

    #[test]
    fn stale_maps_and_unknown_keys_are_ignored() {
        let mut cluster = Cluster::default();
        let a = cluster.add("a");
        let old = ShardMap::build(1, 1, &vec![None; 8], &vec![None; 8]).encode();
        let revision = cluster.revision + 1;
        cluster.nodes[a].handle(cluster.now, Input::KvChanged { key: Key::Map, value: Some(old.into()), revision });
        assert_eq!(cluster.nodes[a].epoch(), 1);
        assert_eq!(cluster.served(a), 8, "an older epoch at a newer revision changes nothing");
        let junk = Some(Bytes::from_static(b"junk"));
        cluster.nodes[a].handle(cluster.now, Input::KvChanged { key: Key::Map, value: junk, revision: revision + 1 });
        assert_eq!(cluster.served(a), 8);
        let request = RequestId(9_999);
        cluster.nodes[a].handle(cluster.now, Input::KvResult { request, outcome: KvOutcome::Conflict });
        cluster.nodes[a].handle(cluster.now, Input::ShardDrained(ShardId(77)));
    }
}
