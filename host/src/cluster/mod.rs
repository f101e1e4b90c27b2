//! The cluster protocol: membership, leader election, the shard map and
//! handoff, as a state machine without I/O.
//!
//! A [`Node`] is fed [`Input`]s (a timer, a KV watch entry, the outcome of a
//! KV operation, a drained shard, a leave) with the node's own monotonic
//! clock in milliseconds, and answers with [`Action`]s (KV operations, start
//! or stop serving a shard, events to log). A thin driver maps each
//! [`KvOp`] onto one NATS KV call on the bucket and keys [`ClusterNames`]
//! gives, feeds the bucket's watch back, and re-reads every key after a
//! reconnect (watches have been seen not to resume after a server restart).
//! Nothing here knows NATS, tokio or a real clock, so `sim` (a test) runs
//! the protocol through thousands of seeded schedules of crashes, pauses,
//! lost and reordered messages and drifting clocks.
//!
//! Layout (the modules are private; their API is re-exported here):
//! - `shard`: [`ShardId`] and the documented hash [`shard_of`].
//! - `assign`: which live node should own each shard (sticky, capped rendezvous).
//! - `map`: the [`ShardMap`] (owners and grants under an epoch) and its wire format.
//! - `names`: [`ClusterNames`], the cluster's NATS names: bucket, keys, node subjects.
//! - `gate` and `driver` (I/O): [`ShardGate`], what the command path asks, and
//!   [`Cluster`], the NATS driver that runs a [`Node`] (see their docs).
//! - `record`: [`NodeId`], [`Member`] and the small KV records (heartbeat, leader claim, release).
//! - `config`: [`ClusterConfig`], its defaults and checks.
//! - `view`: what a node has seen of the bucket.
//! - `rollout` (I/O): [`Rollout`], live upgrades across the cluster: the
//!   component every node runs, in a KV bucket of its own, that each node
//!   follows.
//! - `node`: the [`Node`] state machine, its [`Input`]s and [`Action`]s;
//!   `membership`, `leader` and `handoff` hold its three parts.
//! - `sim` (tests only): the deterministic simulation; replay a seed with
//!   `AETHER_SIM_SEED=<seed> cargo test -p aether-host --lib cluster::sim -- --nocapture`,
//!   run more schedules with `AETHER_SIM_SCHEDULES=100000`.
//!
//! # How it works
//!
//! - **Membership.** A node `create`s its member key (that revision is its
//!   *incarnation*) and renews it every `heartbeat_interval` with `update` at
//!   the last revision. Its **lease** runs `member_lease` from the send time
//!   of its newest acknowledged renewal, on its own clock.
//! - **Leader.** Members race to `create` the leader key (or `update` it at
//!   the last revision seen once it has not changed for `leader_timeout`);
//!   the winner renews it every `leader_renew` and acts while its renewal is
//!   younger than `leader_lease`. A leader that leaves deletes the key.
//! - **Failure detection.** The leader deletes, at the last revision it saw,
//!   the key of a member it has not seen change for `failure_timeout`. A
//!   clean leave deletes the key itself, after draining.
//! - **Map.** The leader recomputes the map whenever membership, releases or
//!   leadership change and writes it with `update` at the revision it read,
//!   epoch + 1. Each shard has an *owner* (where it should be) and a *grant*
//!   (the one incarnation allowed to serve it, and the epoch of the grant).
//! - **Handoff.** A node serves a shard while the map owns and grants it to
//!   the node's incarnation and the node's lease holds. When the owner moves,
//!   the holder stops, drains, and `put`s the shard's release key naming the
//!   grant; the leader then grants the shard to its owner. The grant of a
//!   departed incarnation moves at once.
//!
//! # Invariants
//!
//! - **One server per shard.** A grant moves only on a fact that stays true:
//!   its holder released exactly that grant after draining it (and never
//!   serves it again), or the holder's incarnation ended. An incarnation ends
//!   only by a delete: a clean leave (after draining), or an expulsion, which
//!   succeeds only if the member stored nothing for `failure_timeout` of the
//!   leader's clock after the leader saw its last heartbeat; by then that
//!   heartbeat's lease has run out on the member's clock, provided clocks
//!   drift apart by less than `max_drift`. Renewals are compare-and-set, so
//!   an expelled incarnation never renews.
//! - **Fencing.** A node stops serving everything the moment its lease runs
//!   out on its own clock (checked before every input and by
//!   [`Node::is_serving`]). If it was not expelled meanwhile, an
//!   acknowledged renewal lets it serve its grants again: nobody else can
//!   hold them, since they move only on its release or the end of its
//!   incarnation, and a compare-and-set renewal proves the incarnation
//!   alive. If it was expelled, it rejoins as a new incarnation and serves
//!   only what a later map grants that incarnation.
//! - **Epochs only grow**: in the bucket (every map write is a
//!   compare-and-set from the map it extends) and at each node (a map with
//!   an epoch no higher than the one held is ignored).
//! - **Safety does not depend on a single leader**; the leader lease only
//!   keeps two would-be leaders from wasting writes on each other.
//! - **Liveness**: once membership is quiet, every shard ends up served by
//!   exactly one live node, its owner.
//!
//! # What the driver must do
//!
//! - Check [`Node::is_serving`] with the current clock before answering any
//!   command (a node back from a pause stops before its first timer).
//! - Report every request's outcome exactly once; `Unavailable` when unsure.
//! - Feed every watch entry of [`ClusterNames::watch_filter`], including
//!   deletes, and after a reconnect re-read every key and feed each.
//! - Drain a shard after `StopServing` and report `ShardDrained`; record the
//!   `Serve` epoch on each append. The store's expected-version check stays
//!   the last guard against an append from a node that was just fenced.
//! - Map `Delete { expected }` to `delete_expect_revision` (its answer has no
//!   revision: report `Ok { revision: None }`), a wrong-revision error of
//!   `create`/`update`/`delete` to `Conflict`, and feed purges like deletes.
//! - A node restarted under the same `--node-id` after a crash finds its old
//!   key and waits until it has been silent for `failure_timeout` before
//!   replacing it; a clean leave deletes the key, so a restart is immediate.
//!
//! # Timeouts and what they trade
//!
//! The defaults are [`ClusterConfig::default`]; what making each shorter or
//! longer trades, what failover they give (measured), and what the cluster
//! guarantees under which assumptions are in `docs/cluster.md`. Failover is
//! bounded below by `failure_timeout`, which must exceed `member_lease` ×
//! (1 + `max_drift`) + `heartbeat_interval` ([`ClusterConfig::validate`]).

mod assign;
mod config;
mod driver;
mod gate;
mod handoff;
mod leader;
mod map;
mod membership;
mod names;
mod node;
mod record;
mod rollout;
mod shard;
#[cfg(test)]
mod sim;
mod view;

pub use config::{ClusterConfig, ConfigError};
pub use driver::{Cluster, ClusterStats, ClusterStatus, DriverConfig, JoinError, MemberStatus, ShardRequests};
pub use gate::{ShardFence, ShardGate, ShardPass};
pub use map::{MAX_MAP_BYTES, MAX_MAP_NODES, MapError, ShardMap};
pub use names::{ClusterNames, Key};
pub use node::{Action, ClusterEvent, Input, KvOp, KvOutcome, Node, RequestId};
pub use record::{MAX_NODE_ID_BYTES, Member, NodeId, RecordError};
pub use rollout::{CHUNK_BYTES, Current, NodeComponent, Rollout, RolloutError};
pub use shard::{DEFAULT_SHARDS, MAX_SHARDS, ShardId, shard_of};
