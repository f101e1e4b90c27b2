//! The NATS driver of the protocol: one task owns the [`Node`], feeds it
//! the bucket's watch, the outcomes of its KV calls, its timers and the
//! runtime's drains, and carries out its actions.
//!
//! - `Kv`: one call on the bucket, as a task of its own with a timeout; its
//!   outcome comes back as an input (exactly one per request).
//! - `Serve`: opens the shard in the [`ShardGate`].
//! - `StopServing`: closes the shard, waits for the commands holding passes,
//!   passivates the shard's actors (snapshotting long tails), then reports
//!   `ShardDrained`.
//! - Requests from other nodes arrive on this node's own subject
//!   ([`ClusterNames::node_subject`]), subscribed from the join until the
//!   node has left and every other node had `leave_grace` to see the map
//!   that moved its shards: a subscription never ends while requests may be
//!   on their way to it (async-nats drops what arrives after an unsubscribe
//!   or a drain, without waiting for the server to confirm), and the gate,
//!   not the subscription, decides what is served (invariant:
//!   subscriptions-outlive-handoffs). They go to [`ShardRequests`].
//! - The watch is made again, re-reading every key, when it ends, fails, or
//!   the connection comes back after a loss (watches have been seen not to
//!   resume after a server restart).
//!
//! After each input the driver copies the node's lease and served shards
//! into the gate, and a summary into [`ClusterStatus`] for `GET /cluster`.

use super::gate::ShardGate;
use super::map::ShardMap;
use super::names::ClusterNames;
use super::node::{Action, ClusterEvent, Input, KvOp, KvOutcome, Node, RequestId};
use super::record::NodeId;
use super::shard::{ShardId, shard_of};
use super::{ClusterConfig, ConfigError};
use crate::metrics::Histogram;
use crate::runtime::Runtime;
use async_nats::jetstream::kv;
use futures_util::StreamExt;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// How a node joins: the protocol's settings and the driver's own.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DriverConfig {
    pub protocol: ClusterConfig,
    pub node_id: NodeId,
    pub names: ClusterNames,
    /// Replicas of the cluster's KV bucket when this node creates it.
    pub kv_replicas: usize,
    /// The longest one KV call may take before it counts as unavailable.
    pub kv_timeout: Duration,
    /// How long a node that has left keeps answering "not serving" on its
    /// subject, so senders holding an older map are told to look again
    /// rather than lose their request.
    pub leave_grace: Duration,
}

impl DriverConfig {
    pub fn new(node_id: NodeId, names: ClusterNames) -> Self {
        Self {
            protocol: ClusterConfig::default(),
            node_id,
            names,
            kv_replicas: 1,
            kv_timeout: Duration::from_secs(1),
            leave_grace: Duration::from_millis(500),
        }
    }
}

/// Where requests that arrive on the subject of a shard served here go.
pub trait ShardRequests: Send + Sync + std::fmt::Debug + 'static {
    /// Answers one request that arrived on this node's subject; must not
    /// block (spawn the work).
    fn handle(self: Arc<Self>, message: async_nats::Message);
}

/// Why a node could not join.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open the cluster's KV bucket {bucket}: {cause}")]
    Bucket { bucket: String, cause: String },
    #[error("cannot watch the cluster's KV bucket {bucket}: {cause}")]
    Watch { bucket: String, cause: String },
    #[error("cannot subscribe to this node's subject {subject}: {cause}")]
    Subscribe { subject: String, cause: String },
}

/// What the cluster counts, for `/metrics`.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Commands and reads sent on to the node serving their shard.
    pub forwarded: AtomicU64,
    /// Shards this node took over from another node (or from none).
    pub handoffs: AtomicU64,
    /// From the map naming this node a shard's owner to serving it.
    pub handoff_duration: Histogram,
    /// Members that joined or went, as this node saw them.
    pub membership_changes: AtomicU64,
    /// Maps this node published as leader.
    pub maps_published: AtomicU64,
}

/// A node of the cluster as `GET /cluster` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ClusterStatus {
    pub node: String,
    pub incarnation: Option<u64>,
    pub leader: Option<String>,
    pub leader_term: Option<u64>,
    pub is_leader: bool,
    pub epoch: u64,
    pub shards: Option<u32>,
    /// Shards this node answers for now.
    pub serving: usize,
    /// Shards whose owner does not hold the grant yet (handoffs under way).
    pub moving: usize,
    /// Shards without an owner.
    pub unowned: usize,
    pub members: Vec<MemberStatus>,
    /// This node has left the cluster.
    pub left: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MemberStatus {
    pub node: String,
    pub incarnation: u64,
    /// Shards the map gives it.
    pub owned: usize,
    /// Shards granted to it (it serves them, or is draining them).
    pub granted: usize,
}

/// A handle on this node's membership: the gate the doors ask, its status,
/// and the way to leave. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    id: NodeId,
    names: ClusterNames,
    gate: Arc<ShardGate>,
    status: Mutex<ClusterStatus>,
    /// The newest map seen, for senders choosing the node to ask.
    map: Mutex<Option<Arc<ShardMap>>>,
    /// This node's incarnation, 0 before it joined.
    incarnation: AtomicU64,
    /// Bumped after every input that changed what is served or known.
    changes: watch::Sender<u64>,
    inputs: mpsc::UnboundedSender<Input>,
    stats: ClusterStats,
    /// The driver's and the node subject's tasks, for [`Cluster::halt`].
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Cluster {
    /// Joins the cluster: opens (or creates) its bucket, starts the driver,
    /// and returns at once; shards are served as maps grant them.
    ///
    /// # Errors
    ///
    /// A bad config, or a bucket that cannot be opened or watched.
    pub async fn join(
        client: async_nats::Client,
        runtime: Runtime,
        requests: Arc<dyn ShardRequests>,
        config: DriverConfig,
    ) -> Result<Self, JoinError> {
        config.protocol.validate()?;
        let mut js = async_nats::jetstream::new(client.clone());
        js.set_timeout(config.kv_timeout);
        let bucket = config.names.bucket().to_owned();
        let store = open_bucket(&js, &bucket, config.kv_replicas)
            .await
            .map_err(|cause| JoinError::Bucket { bucket: bucket.clone(), cause })?;
        let watch = store
            .watch_with_history(config.names.watch_filter())
            .await
            .map_err(|e| JoinError::Watch { bucket: bucket.clone(), cause: e.to_string() })?;
        let subject = config.names.node_subject(&config.node_id);
        let subscription = client
            .subscribe(subject.clone())
            .await
            .map_err(|e| JoinError::Subscribe { subject, cause: e.to_string() })?;
        let origin = Instant::now();
        let node = Node::new(config.node_id.clone(), &config.protocol, rand_u64(), 0)?;
        let (inputs, inputs_rx) = mpsc::unbounded_channel();
        let (results_tx, results) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            id: config.node_id.clone(),
            names: config.names.clone(),
            gate: Arc::new(ShardGate::new(origin)),
            status: Mutex::new(status_of(&node, 0, 0)),
            map: Mutex::new(None),
            incarnation: AtomicU64::new(0),
            changes: watch::channel(0).0,
            inputs,
            stats: ClusterStats::default(),
            tasks: Mutex::new(Vec::new()),
        });
        tracing::info!(node = %config.node_id, %bucket, "joining the cluster");
        let driver = Driver {
            node,
            shared: shared.clone(),
            client,
            store,
            config,
            results_tx,
            results,
            inputs: inputs_rx,
            runtime,
            pending_handoffs: BTreeMap::new(),
            changes: 0,
            leaving: false,
            left: false,
        };
        let (stop_requests, stopped) = oneshot::channel();
        let requests = tokio::spawn(take_requests(subscription, requests, stopped));
        let requests_abort = requests.abort_handle();
        let driver = tokio::spawn(driver.run(watch, stop_requests, requests));
        *shared.tasks.lock().unwrap_or_else(|e| e.into_inner()) = vec![driver.abort_handle(), requests_abort];
        Ok(Self { shared })
    }

    pub fn gate(&self) -> &Arc<ShardGate> {
        &self.shared.gate
    }

    pub fn names(&self) -> &ClusterNames {
        &self.shared.names
    }

    pub fn stats(&self) -> &ClusterStats {
        &self.shared.stats
    }

    /// Appends the cluster's figures to a `/metrics` page.
    pub fn render_metrics(&self, out: &mut String) {
        use crate::metrics::{counter, gauge};
        let (stats, status) = (&self.shared.stats, self.status());
        gauge(out, "aether_cluster_owned_shards", "Shards this node serves.", status.serving as u64);
        gauge(out, "aether_cluster_members", "Live members this node sees.", status.members.len() as u64);
        gauge(out, "aether_cluster_epoch", "Epoch of the newest shard map seen.", status.epoch);
        gauge(out, "aether_cluster_leader", "1 while this node leads.", u64::from(status.is_leader));
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        counter(
            out,
            "aether_cluster_forwarded_total",
            "Requests sent on to the node serving their shard.",
            load(&stats.forwarded),
        );
        counter(out, "aether_cluster_handoffs_total", "Shards this node took over.", load(&stats.handoffs));
        counter(
            out,
            "aether_cluster_membership_changes_total",
            "Joins, expulsions and rejoins seen.",
            load(&stats.membership_changes),
        );
        counter(
            out,
            "aether_cluster_maps_published_total",
            "Shard maps published as leader.",
            load(&stats.maps_published),
        );
        stats.handoff_duration.render(
            out,
            "aether_cluster_handoff_duration_seconds",
            "From the map naming this node a shard's owner to serving it.",
        );
    }

    pub fn status(&self) -> ClusterStatus {
        self.shared.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The subject of the node the newest map grants `shard` to, unless
    /// that is this node (it then serves the shard, or is about to).
    pub fn holder_subject(&self, shard: ShardId) -> Option<String> {
        let map = self.shared.map.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
        let (holder, _) = map.grant(shard)?;
        if holder.id == self.shared.id && holder.incarnation == self.shared.incarnation.load(Ordering::Relaxed) {
            return None;
        }
        Some(self.shared.names.node_subject(&holder.id))
    }

    /// The epoch of the newest map's grant of `shard`, if it is granted.
    /// A grant that moves always gets a newer epoch, so a sender can tell
    /// that the node it asked no longer holds the shard.
    pub fn grant_epoch(&self, shard: ShardId) -> Option<u64> {
        let map = self.shared.map.lock().unwrap_or_else(|e| e.into_inner());
        map.as_ref()?.grant(shard).map(|(_, since)| since)
    }

    /// A receiver that sees a new value after every change of the node's
    /// view (maps, serving, lease): what a command waiting for its shard
    /// waits on.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// Stops this node as a crash would, for tests and benchmarks that
    /// run nodes in one process: the driver and the subscription to the
    /// node's subject end at once, nothing is drained or released, the
    /// member key is left for the leader to expel, and the gate serves
    /// nothing more. Close the node's NATS connection too (`drain`) to
    /// be as dead as a killed process: its other subscriptions go with it.
    #[doc(hidden)]
    pub async fn halt(&self) {
        let tasks: Vec<_> = self.shared.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect();
        for task in &tasks {
            task.abort();
        }
        // Once the driver has ended, nothing opens the gate again.
        while !tasks.iter().all(tokio::task::AbortHandle::is_finished) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.shared.gate.set_lease(None);
    }

    /// Leaves cleanly: stops serving, drains every shard, deletes the member
    /// key. Returns once the node has left, or after `within`.
    ///
    /// # Errors
    ///
    /// `Err(())` if the leave did not complete in time (the lease then runs
    /// out and the leader expels the node after its failure timeout).
    pub async fn leave(&self, within: Duration) -> Result<(), ()> {
        let mut changes = self.changes();
        let _ = self.shared.inputs.send(Input::Leave);
        let left = async {
            while !self.status().left {
                if changes.changed().await.is_err() {
                    return self.status().left;
                }
            }
            true
        };
        match tokio::time::timeout(within, left).await {
            Ok(true) => Ok(()),
            _ => Err(()),
        }
    }
}

/// Opens the bucket, creating it if absent. The bucket keeps one entry per
/// key (members, leader, map, releases): nothing reads history.
async fn open_bucket(js: &async_nats::jetstream::Context, bucket: &str, replicas: usize) -> Result<kv::Store, String> {
    if let Ok(store) = js.get_key_value(bucket).await {
        return Ok(store);
    }
    let config = kv::Config {
        bucket: bucket.to_owned(),
        description: "Aether cluster: members, leader, shard map, releases".into(),
        history: 1,
        num_replicas: replicas.max(1),
        storage: async_nats::jetstream::stream::StorageType::File,
        ..kv::Config::default()
    };
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        // Another node created it meanwhile.
        Err(create) => js.get_key_value(bucket).await.map_err(|_| create.to_string()),
    }
}

fn rand_u64() -> u64 {
    let uuid = uuid::Uuid::new_v4();
    let (high, _) = uuid.as_u64_pair();
    high
}

struct Driver {
    node: Node,
    shared: Arc<Shared>,
    client: async_nats::Client,
    store: kv::Store,
    config: DriverConfig,
    /// Outcomes of KV calls, sent by their tasks.
    results_tx: mpsc::UnboundedSender<(RequestId, KvOutcome)>,
    results: mpsc::UnboundedReceiver<(RequestId, KvOutcome)>,
    inputs: mpsc::UnboundedReceiver<Input>,
    runtime: Runtime,
    /// Shards the map names this node owner of that it does not serve yet,
    /// since when.
    pending_handoffs: BTreeMap<ShardId, Instant>,
    changes: u64,
    /// A clean leave was asked for: the member key's delete is ours.
    leaving: bool,
    left: bool,
}

impl Driver {
    fn now(&self) -> u64 {
        self.shared.gate.now()
    }

    async fn run(
        mut self,
        mut watch: kv::Watch,
        stop_requests: oneshot::Sender<()>,
        requests: tokio::task::JoinHandle<()>,
    ) {
        let mut connected = true;
        let mut rewatch_at: Option<Instant> = None;
        self.after_input();
        while !self.left {
            let wake = [self.node.next_timer(), self.node.lease_until()].into_iter().flatten().min();
            let sleep = match wake {
                Some(at) => Duration::from_millis(at.saturating_sub(self.now())),
                None => Duration::from_millis(250),
            };
            // A watch lost to a reconnect is made again (re-reading every key).
            let state = self.client.connection_state();
            let now_connected = state == async_nats::connection::State::Connected;
            if now_connected && !connected {
                tracing::info!("reconnected to NATS; re-reading the cluster's bucket");
                rewatch_at = Some(Instant::now());
            }
            connected = now_connected;
            if let Some(at) = rewatch_at
                && Instant::now() >= at
            {
                match self.store.watch_with_history(self.config.names.watch_filter()).await {
                    Ok(fresh) => {
                        watch = fresh;
                        rewatch_at = None;
                    }
                    Err(e) => {
                        tracing::warn!(cause = %e, "cannot watch the cluster's bucket; retrying");
                        rewatch_at = Some(Instant::now() + Duration::from_millis(250));
                    }
                }
            }
            let input = tokio::select! {
                entry = watch.next(), if rewatch_at.is_none() => match entry {
                    Some(Ok(entry)) => self.entry(entry),
                    Some(Err(e)) => {
                        tracing::warn!(cause = %e, "the cluster's watch failed; re-reading the bucket");
                        rewatch_at = Some(Instant::now() + Duration::from_millis(100));
                        None
                    }
                    None => {
                        rewatch_at = Some(Instant::now() + Duration::from_millis(100));
                        None
                    }
                },
                Some((request, outcome)) = self.results.recv() => Some(Input::KvResult { request, outcome }),
                Some(input) = self.inputs.recv() => {
                    self.leaving |= input == Input::Leave;
                    Some(input)
                }
                () = tokio::time::sleep(sleep.min(Duration::from_millis(250))) => Some(Input::Tick),
            };
            if let Some(input) = input {
                let now = self.now();
                self.node.handle(now, input);
                self.after_input();
            }
        }
        // Senders with an older map are told "not serving" a while longer.
        tokio::time::sleep(self.config.leave_grace).await;
        let _ = stop_requests.send(());
        let _ = requests.await;
        tracing::info!(node = %self.config.node_id, "left the cluster");
        let status =
            ClusterStatus { left: true, ..self.shared.status.lock().unwrap_or_else(|e| e.into_inner()).clone() };
        *self.shared.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
        self.changes += 1;
        self.shared.changes.send_replace(self.changes);
    }

    /// A watch entry as an input; `None` for keys of no interest.
    fn entry(&self, entry: kv::Entry) -> Option<Input> {
        let key = self.config.names.parse_key(&entry.key)?;
        let value = match entry.operation {
            kv::Operation::Put => Some(entry.value),
            kv::Operation::Delete | kv::Operation::Purge => None,
        };
        Some(Input::KvChanged { key, value, revision: entry.revision })
    }

    /// Carries out the node's actions and mirrors it into the gate and status.
    fn after_input(&mut self) {
        if let Some(map) = self.node.map()
            && !self.shared.gate.size(map.shard_count())
        {
            tracing::error!(
                shards = map.shard_count(),
                served = self.shared.gate.shards(),
                "the shard map changed its shard count; this node keeps its own and serves nothing new"
            );
        }
        self.shared.gate.set_lease(self.node.lease_until());
        self.shared.incarnation.store(self.node.incarnation().unwrap_or(0), Ordering::Relaxed);
        while let Some(action) = self.node.poll_action() {
            match action {
                Action::Kv { request, op } => self.kv(request, op),
                Action::Serve { shard, epoch } => self.serve(shard, epoch),
                Action::StopServing { shard } => self.stop_serving(shard),
                Action::Event(event) => self.event(event),
                Action::Left => self.left = true,
            }
        }
        self.track_handoffs();
        if let Some(map) = self.node.map() {
            let mut held = self.shared.map.lock().unwrap_or_else(|e| e.into_inner());
            if held.as_ref().is_none_or(|h| h.epoch() < map.epoch()) {
                *held = Some(Arc::new(map.clone()));
            }
        }
        let status = status_of(&self.node, self.now(), self.shared.gate.open_count());
        let mut current = self.shared.status.lock().unwrap_or_else(|e| e.into_inner());
        self.log_membership(&current.members, &status.members);
        if *current != status {
            *current = status;
            drop(current);
            self.changes += 1;
            self.shared.changes.send_replace(self.changes);
        }
    }

    /// Logs and counts the members that joined or went since the last view.
    fn log_membership(&self, before: &[MemberStatus], after: &[MemberStatus]) {
        let key = |m: &MemberStatus| (m.node.clone(), m.incarnation);
        let before: std::collections::BTreeSet<_> = before.iter().map(key).collect();
        let after: std::collections::BTreeSet<_> = after.iter().map(key).collect();
        for (node, incarnation) in after.difference(&before) {
            self.shared.stats.membership_changes.fetch_add(1, Ordering::Relaxed);
            tracing::info!(member = %node, incarnation, "member joined");
        }
        for (node, incarnation) in before.difference(&after) {
            self.shared.stats.membership_changes.fetch_add(1, Ordering::Relaxed);
            tracing::info!(member = %node, incarnation, "member left");
        }
    }

    fn kv(&self, request: RequestId, op: KvOp) {
        let (store, names, results) = (self.store.clone(), self.config.names.clone(), self.results_tx.clone());
        let timeout = self.config.kv_timeout;
        tokio::spawn(async move {
            let outcome =
                tokio::time::timeout(timeout, run_kv(&store, &names, op)).await.unwrap_or(KvOutcome::Unavailable);
            let _ = results.send((request, outcome));
        });
    }

    fn serve(&mut self, shard: ShardId, epoch: u64) {
        self.shared.gate.open(shard, epoch);
        if let Some(since) = self.pending_handoffs.remove(&shard) {
            self.shared.stats.handoffs.fetch_add(1, Ordering::Relaxed);
            self.shared.stats.handoff_duration.observe(since.elapsed());
        }
    }

    fn stop_serving(&mut self, shard: ShardId) {
        self.shared.gate.close(shard);
        let (gate, runtime, inputs) = (self.shared.gate.clone(), self.runtime.clone(), self.shared.inputs.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            gate.drained(shard).await;
            let shards = gate.shards().unwrap_or(1);
            let passivated =
                runtime.passivate_where(|actor| shard_of(&actor.aggregate, &actor.id, shards) == shard).await;
            tracing::debug!(%shard, passivated, took_ms = started.elapsed().as_millis() as u64, "shard drained");
            let _ = inputs.send(Input::ShardDrained(shard));
        });
    }

    /// Starts the handoff clock of shards newly owned here but not served.
    fn track_handoffs(&mut self) {
        let Some(map) = self.node.map() else { return };
        let Some(me) = self.node.incarnation() else { return };
        let id = self.node.id();
        let gate = &self.shared.gate;
        for shard in (0..map.shard_count()).map(ShardId) {
            let mine = map.owner(shard).is_some_and(|o| o.id == *id && o.incarnation == me);
            if mine && !gate.is_open(shard) {
                self.pending_handoffs.entry(shard).or_insert_with(Instant::now);
            } else if !mine {
                self.pending_handoffs.remove(&shard);
            }
        }
    }

    fn event(&self, event: ClusterEvent) {
        let node = &self.config.node_id;
        let stats = &self.shared.stats;
        match event {
            ClusterEvent::Joined { incarnation } => tracing::info!(%node, incarnation, "joined the cluster"),
            ClusterEvent::Expelled { incarnation } if self.leaving => {
                tracing::debug!(%node, incarnation, "member key deleted on leaving")
            }
            ClusterEvent::Expelled { incarnation } => {
                tracing::warn!(%node, incarnation, "expelled by the leader (silent too long); rejoining");
            }
            ClusterEvent::Fenced => tracing::warn!(%node, "membership lease ran out; serving nothing until renewed"),
            ClusterEvent::BecameLeader { term } => tracing::info!(%node, term, "became the leader"),
            ClusterEvent::SteppedDown { term } => tracing::info!(%node, term, "no longer the leader"),
            ClusterEvent::LeaderSeen { leader, term } => tracing::info!(%leader, term, "leader"),
            ClusterEvent::MemberExpelled { member } => {
                tracing::warn!(member = %member.id, incarnation = member.incarnation, "expelled a silent member");
            }
            ClusterEvent::MapPublished { epoch, moved, granted } => {
                stats.maps_published.fetch_add(1, Ordering::Relaxed);
                tracing::info!(epoch, moved, granted, "published a shard map (rebalance)");
            }
            ClusterEvent::MapSeen { epoch } => tracing::debug!(epoch, "shard map"),
            ClusterEvent::MapUnreadable { revision } => {
                tracing::error!(
                    revision,
                    "the shard map in the bucket cannot be read by this build; keeping the last one"
                )
            }
        }
    }
}

/// Hands every request on this node's subject to `requests` until told to
/// stop; then drains the subscription and answers what was still on its way.
async fn take_requests(
    mut subscription: async_nats::Subscriber,
    requests: Arc<dyn ShardRequests>,
    stop: oneshot::Receiver<()>,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            message = subscription.next() => match message {
                Some(message) => requests.clone().handle(message),
                None => return,
            },
            _ = &mut stop => break,
        }
    }
    let _ = subscription.drain().await;
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(5), subscription.next()).await {
        requests.clone().handle(message);
    }
}

/// One KV call: its outcome as the protocol sees it.
async fn run_kv(store: &kv::Store, names: &ClusterNames, op: KvOp) -> KvOutcome {
    use kv::{CreateErrorKind, UpdateErrorKind};
    let key = names.key(op.key());
    let ok = |revision: u64| KvOutcome::Ok { revision: Some(revision) };
    match op {
        KvOp::Put { value, .. } => match store.put(&key, value).await {
            Ok(revision) => ok(revision),
            Err(_) => KvOutcome::Unavailable,
        },
        KvOp::Create { value, .. } => match store.create(&key, value).await {
            Ok(revision) => ok(revision),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => KvOutcome::Conflict,
            Err(_) => KvOutcome::Unavailable,
        },
        KvOp::Update { value, expected, .. } => match store.update(&key, value, expected).await {
            Ok(revision) => ok(revision),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => KvOutcome::Conflict,
            Err(_) => KvOutcome::Unavailable,
        },
        KvOp::Delete { expected, .. } => match store.delete_expect_revision(&key, expected).await {
            Ok(()) => KvOutcome::Ok { revision: None },
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => KvOutcome::Conflict,
            Err(_) => KvOutcome::Unavailable,
        },
    }
}

/// What `GET /cluster` shows of a node.
fn status_of(node: &Node, now: u64, serving: usize) -> ClusterStatus {
    let map = node.map();
    let leader = node.leader();
    let mut members: Vec<MemberStatus> = node
        .members()
        .into_iter()
        .map(|m| MemberStatus { node: m.id.to_string(), incarnation: m.incarnation, owned: 0, granted: 0 })
        .collect();
    let (mut moving, mut unowned) = (0, 0);
    if let Some(map) = map {
        for shard in (0..map.shard_count()).map(ShardId) {
            match map.owner(shard) {
                None => unowned += 1,
                Some(owner) => {
                    if !map.is_settled(shard) {
                        moving += 1;
                    }
                    if let Some(m) =
                        members.iter_mut().find(|m| m.node == owner.id.as_str() && m.incarnation == owner.incarnation)
                    {
                        m.owned += 1;
                    }
                }
            }
            if let Some((holder, _)) = map.grant(shard)
                && let Some(m) =
                    members.iter_mut().find(|m| m.node == holder.id.as_str() && m.incarnation == holder.incarnation)
            {
                m.granted += 1;
            }
        }
    }
    members.sort_by(|a, b| a.node.cmp(&b.node));
    ClusterStatus {
        node: node.id().to_string(),
        incarnation: node.incarnation(),
        leader: leader.map(|(id, _)| id.to_string()),
        leader_term: leader.map(|(_, term)| term),
        is_leader: node.is_leader(now),
        epoch: node.epoch(),
        shards: map.map(super::ShardMap::shard_count),
        serving,
        moving,
        unowned,
        members,
        left: false,
    }
}
