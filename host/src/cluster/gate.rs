//! The shard gate: what the command path asks before it runs a command
//! here, without locking the protocol's [`Node`](super::Node).
//!
//! The driver mirrors the node into the gate after every input: the epoch
//! each served shard was granted under and the end of the node's lease. A
//! command enters its shard (a counter of commands in flight, then the
//! checks) and holds a [`ShardPass`] until it is answered; a drain closes
//! the shard and waits for the counter to reach zero. Entering counts before
//! it checks and closing clears before it waits (both sequentially
//! consistent), so a command either sees the shard closed or is counted
//! before the drain looks: no command runs on a shard its node has handed
//! on (invariant: one-server-per-shard).
//!
//! Cost on the command path: a hash of the actor's id, one clock read and
//! three atomic operations.

use super::shard::{ShardId, shard_of};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::Notify;

/// The serving state of every shard, shared by the driver and the doors.
#[derive(Debug)]
pub struct ShardGate {
    origin: Instant,
    /// Sized by the first map seen; a cluster keeps its shard count.
    table: OnceLock<Table>,
    /// End of the node's lease, in ms since `origin`; 0 without one.
    lease_until: AtomicU64,
    /// Woken when a shard's last command in flight ends while it is closed.
    drained: Notify,
}

#[derive(Debug)]
struct Table {
    /// The grant's epoch + 1 while served here, 0 otherwise.
    serving: Box<[AtomicU64]>,
    in_flight: Box<[AtomicU32]>,
}

/// A command's right to run on a shard served here; dropping it ends the
/// command for the shard's drain.
#[derive(Debug)]
pub struct ShardPass {
    gate: Arc<ShardGate>,
    shard: ShardId,
    epoch: u64,
}

impl ShardPass {
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// The map epoch the shard was granted under: appends record it.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// What an actor checks before each append of the command holding this
    /// pass: that the node's lease still holds.
    pub fn fence(&self) -> ShardFence {
        ShardFence { gate: self.gate.clone(), shard: self.shard, epoch: self.epoch }
    }
}

/// Whether the grant a command started under still holds, asked again
/// before each of its appends: a command that waited out a pause or a
/// conflict's retries while the node's lease ran out must not append, since
/// the leader may give the shard away once the lease has run out
/// (invariant: one-server-per-shard). A shard closed for a drain still
/// holds: the node keeps its grant until the commands holding passes are
/// done, and releases it only then. Asked once more after a successful
/// append: if the lease ran out while the append was in flight, the node
/// does not confirm it (`503 unconfirmed`), since a new holder may have
/// rebuilt the actor before it landed. The store's version check keeps
/// such a late append consistent with whatever the new holder wrote.
#[derive(Debug, Clone)]
pub struct ShardFence {
    gate: Arc<ShardGate>,
    shard: ShardId,
    epoch: u64,
}

impl ShardFence {
    /// The node's lease holds now (its pass keeps the grant from moving).
    pub fn holds(&self) -> bool {
        self.gate.now() < self.gate.lease_until.load(Ordering::SeqCst)
    }

    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// The epoch of the grant: appends record it.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl Drop for ShardPass {
    fn drop(&mut self) {
        let table = self.gate.table.get().expect("a pass implies a table");
        let i = self.shard.0 as usize;
        if table.in_flight[i].fetch_sub(1, Ordering::SeqCst) == 1 && table.serving[i].load(Ordering::SeqCst) == 0 {
            self.gate.drained.notify_waiters();
        }
    }
}

impl ShardGate {
    /// A gate serving nothing; `origin` is the instant the node's clock counts from.
    pub fn new(origin: Instant) -> Self {
        Self { origin, table: OnceLock::new(), lease_until: AtomicU64::new(0), drained: Notify::new() }
    }

    /// The node's clock: milliseconds since the origin.
    pub fn now(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// The cluster's shard count, once a map has been seen.
    pub fn shards(&self) -> Option<u32> {
        self.table.get().map(|t| t.serving.len() as u32)
    }

    /// Whether the node's membership lease holds now: it is in touch with
    /// the cluster and may serve what it is granted.
    pub fn lease_holds(&self) -> bool {
        self.now() < self.lease_until.load(Ordering::SeqCst)
    }

    /// The shard of an actor, once the shard count is known.
    pub fn shard_of(&self, aggregate: &str, id: &str) -> Option<ShardId> {
        self.shards().map(|n| shard_of(aggregate, id, n))
    }

    /// Sizes the table for a cluster of `shards`; `false` if it was already
    /// sized differently (a map of another cluster: ignored).
    pub(crate) fn size(&self, shards: u32) -> bool {
        let table = self.table.get_or_init(|| Table {
            serving: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            in_flight: (0..shards).map(|_| AtomicU32::new(0)).collect(),
        });
        table.serving.len() == shards as usize
    }

    pub(crate) fn set_lease(&self, until: Option<u64>) {
        self.lease_until.store(until.unwrap_or(0), Ordering::SeqCst);
    }

    pub(crate) fn open(&self, shard: ShardId, epoch: u64) {
        if let Some(slot) = self.table.get().and_then(|t| t.serving.get(shard.0 as usize)) {
            slot.store(epoch + 1, Ordering::SeqCst);
        }
    }

    pub(crate) fn close(&self, shard: ShardId) {
        if let Some(slot) = self.table.get().and_then(|t| t.serving.get(shard.0 as usize)) {
            slot.store(0, Ordering::SeqCst);
        }
    }

    /// A pass to run a command on `shard` here, if this node serves it and
    /// its lease holds now.
    pub fn enter(self: &Arc<Self>, shard: ShardId) -> Option<ShardPass> {
        let table = self.table.get()?;
        let i = shard.0 as usize;
        let in_flight = table.in_flight.get(i)?;
        in_flight.fetch_add(1, Ordering::SeqCst);
        // From here the pass's drop undoes the count (and wakes a drain).
        let mut pass = ShardPass { gate: self.clone(), shard, epoch: 0 };
        let serving = table.serving[i].load(Ordering::SeqCst);
        if serving == 0 || self.now() >= self.lease_until.load(Ordering::SeqCst) {
            return None;
        }
        pass.epoch = serving - 1;
        Some(pass)
    }

    /// Whether the shard is open here (whatever the lease says).
    pub fn is_open(&self, shard: ShardId) -> bool {
        self.table.get().and_then(|t| t.serving.get(shard.0 as usize)).is_some_and(|s| s.load(Ordering::SeqCst) != 0)
    }

    /// Shards open here.
    pub fn open_count(&self) -> usize {
        self.table.get().map_or(0, |t| t.serving.iter().filter(|s| s.load(Ordering::SeqCst) != 0).count())
    }

    /// Waits until no command holds a pass for the shard. Call after
    /// [`close`](Self::close): no new pass is given out meanwhile.
    pub(super) async fn drained(&self, shard: ShardId) {
        let Some(in_flight) = self.table.get().and_then(|t| t.in_flight.get(shard.0 as usize)) else { return };
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            // Registered before the check, so a wake between the two is kept.
            notified.as_mut().enable();
            if in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn gate() -> Arc<ShardGate> {
        let gate = Arc::new(ShardGate::new(Instant::now()));
        assert!(gate.size(4));
        gate.set_lease(Some(60_000));
        gate
    }

    #[test]
    fn a_pass_needs_an_open_shard_and_a_lease() {
        let gate = gate();
        assert!(gate.enter(ShardId(1)).is_none(), "closed");
        gate.open(ShardId(1), 7);
        assert_eq!(gate.enter(ShardId(1)).map(|p| p.epoch()), Some(7));
        assert!(gate.enter(ShardId(9)).is_none(), "no such shard");
        gate.set_lease(Some(0));
        assert!(gate.enter(ShardId(1)).is_none(), "the lease ran out");
        gate.set_lease(None);
        assert!(gate.enter(ShardId(1)).is_none(), "no lease");
        assert!(!gate.size(8), "a cluster keeps its shard count");
    }

    #[test]
    fn a_fence_holds_while_the_same_grant_does() {
        let gate = gate();
        gate.open(ShardId(1), 4);
        let pass = gate.enter(ShardId(1)).unwrap();
        let fence = pass.fence();
        assert!(fence.holds());
        gate.close(ShardId(1));
        assert!(fence.holds(), "a drain lets the commands holding passes finish");
        gate.set_lease(Some(0));
        assert!(!fence.holds(), "the lease ran out: the shard may be given away");
    }

    #[tokio::test]
    async fn a_drain_waits_for_every_pass_and_none_is_given_after_the_close() {
        let gate = gate();
        gate.open(ShardId(2), 1);
        let passes: Vec<_> = (0..3).map(|_| gate.enter(ShardId(2)).unwrap()).collect();
        gate.close(ShardId(2));
        assert!(gate.enter(ShardId(2)).is_none());
        let drain = tokio::spawn({
            let gate = gate.clone();
            async move { gate.drained(ShardId(2)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!drain.is_finished());
        drop(passes);
        tokio::time::timeout(Duration::from_secs(5), drain).await.unwrap().unwrap();
    }

    /// Commands entering while the drain runs: each either got no pass or
    /// was counted before the drain saw zero.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_pass_outlives_a_drain() {
        for _ in 0..200 {
            let gate = gate();
            gate.open(ShardId(0), 1);
            let done = Arc::new(AtomicU32::new(0));
            let (d, g) = (done.clone(), gate.clone());
            let worker = tokio::spawn(async move {
                for _ in 0..50 {
                    if let Some(pass) = g.enter(ShardId(0)) {
                        tokio::task::yield_now().await;
                        // Still counted: the drain cannot have finished.
                        d.fetch_add(1, Ordering::SeqCst);
                        drop(pass);
                    }
                }
            });
            tokio::task::yield_now().await;
            gate.close(ShardId(0));
            gate.drained(ShardId(0)).await;
            let seen = done.load(Ordering::SeqCst);
            worker.await.unwrap();
            assert_eq!(done.load(Ordering::SeqCst), seen, "a command ran after the drain");
        }
    }
}
