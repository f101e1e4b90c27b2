//! The cluster: nodes of the bank domain on one JetStream server, in this
//! process, each with its own NATS connection, store handle, runtime and
//! membership, commands sent through [`Door`] as the HTTP and NATS doors
//! send them.
//!
//! - **Join**: a lone node takes a steady stream of deposits while a second
//!   node joins. Figures: the time from the join until every shard is served
//!   by its owner, and the p99 latency of the commands that started while
//!   the handoff ran, next to the lone node's steady p99 before it.
//! - **Forwarding**: with both nodes settled, deposits sent to each
//!   account's owner directly, next to the same deposits sent through the
//!   other node (which forwards them over NATS): commands/s and the ratio.
//! - **Failover**: three nodes; one after another is killed (alternately a
//!   shard owner and the leader) and replaced by a fresh node. A kill is
//!   what one process can do to a node honestly: its driver and node
//!   subscription stop at once ([`Cluster::halt`]), without a leave, and
//!   its NATS connection closes. Figures: per kill, the time until every
//!   shard the dead node held answers a deposit sent through a survivor
//!   (p50 and p99 over the kills), and the time until a new leader claims.

use crate::commands::Shape;
use crate::fixtures;
use crate::load::{self, LoadResult};
use crate::util::quantile;
use aether_host::api::{ClusterDoor, Door, ShardServer};
use aether_host::cluster::{Cluster, DriverConfig, NodeId, ShardId, shard_of};
use aether_host::names::NatsNames;
use aether_host::store::{JetStreamConfig, JetStreamEventStore};
use aether_host::{CommandRequest, DomainComponent, Runtime, RuntimeConfig};
use aether_testkit::nats::NatsServer;
use bank::AccountCommand;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What the cluster phase measured.
#[derive(Debug, Clone, Default)]
pub struct ClusterFigures {
    /// Deposits through the lone node before the join.
    pub alone: LoadResult,
    /// Deposits that started while the second node was joining.
    pub during_join: LoadResult,
    /// From the join until every shard was served by its owner.
    pub settle_s: f64,
    /// Shards that moved to the new node.
    pub moved: u64,
    /// Deposits sent to each account's owner.
    pub direct: LoadResult,
    /// The same, sent through the node that does not own the account.
    pub forwarded: LoadResult,
    /// Kills of a node and how long its shards went unanswered.
    pub failover: Failover,
}

/// Failover after kills, in seconds; each list sorted.
#[derive(Debug, Clone, Default)]
pub struct Failover {
    /// From the kill of a node that did not lead until every shard it held
    /// answered again.
    pub owner_s: Vec<f64>,
    /// The same when the leader was killed.
    pub leader_s: Vec<f64>,
    /// From the kill of the leader until a survivor saw a new one.
    pub takeover_s: Vec<f64>,
}

impl Failover {
    /// Owner and leader kills together, sorted.
    pub fn all_s(&self) -> Vec<f64> {
        let mut all: Vec<f64> = self.owner_s.iter().chain(&self.leader_s).copied().collect();
        all.sort_by(f64::total_cmp);
        all
    }
}

/// The `q` quantile of sorted seconds (the largest for p99 of a few).
pub fn quantile_s(sorted: &[f64], q: f64) -> f64 {
    let nanos: Vec<u64> = sorted.iter().map(|s| (s * 1e9) as u64).collect();
    quantile(&nanos, q) as f64 / 1e9
}

struct Node {
    id: String,
    client: async_nats::Client,
    cluster: Cluster,
    door: Door,
}

async fn node(server: &NatsServer, component: &DomainComponent, id: &str, actors: usize) -> anyhow::Result<Node> {
    let client = server.client().await;
    let domain = component.model().name.clone();
    let store = JetStreamEventStore::connect(client.clone(), &domain, JetStreamConfig::default()).await?;
    let config =
        RuntimeConfig::default().with_max_live_actors(actors + 1024).with_idle_timeout(Duration::from_secs(3600));
    let runtime = Runtime::new(component.clone(), Arc::new(store), config);
    let requests = ShardServer::new(runtime.clone(), client.clone(), 4096, false);
    let names = NatsNames::new(None).cluster(&domain);
    let cluster =
        Cluster::join(client.clone(), runtime.clone(), requests.clone(), DriverConfig::new(NodeId::new(id), names))
            .await?;
    requests.attach(cluster.clone());
    let door = Door::new(runtime, Some(ClusterDoor::new(cluster.clone(), client.clone())));
    Ok(Node { id: id.to_owned(), client, cluster, door })
}

/// Whether every node sees the same map, with `nodes.len()` members and
/// every shard served by its owner.
fn settled(nodes: &[&Node]) -> bool {
    let views: Vec<_> = nodes.iter().map(|n| n.cluster.status()).collect();
    let Some(shards) = views[0].shards else { return false };
    let serving: usize = views.iter().map(|v| v.serving).sum();
    views.iter().all(|v| v.epoch == views[0].epoch && v.moving == 0 && v.unowned == 0 && v.members.len() == nodes.len())
        && serving == shards as usize
}

async fn until_settled(nodes: &[&Node]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !settled(nodes) {
        anyhow::ensure!(Instant::now() < deadline, "the cluster did not settle in 60 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// `command` as [`fixtures::command`] encodes it, for the account `id`.
fn request(id: &str, (name, payload): &(String, Vec<u8>)) -> CommandRequest {
    CommandRequest {
        aggregate: "Account".into(),
        id: id.into(),
        command: name.clone(),
        payload: payload.clone(),
        ..CommandRequest::default()
    }
}

async fn send(door: &Door, request: CommandRequest) -> anyhow::Result<()> {
    door.command(request).await.map(drop).map_err(|e| anyhow::anyhow!("{} {}", e.status, e.body))
}

/// Runs the phase on a server of its own; the failover kills `kills` nodes.
///
/// # Errors
///
/// The first command that fails, or a cluster that does not settle.
pub async fn run(component: &DomainComponent, shape: Shape, kills: usize) -> anyhow::Result<ClusterFigures> {
    let server = NatsServer::start();
    let a = Arc::new(node(&server, component, "a", shape.actors).await?);
    until_settled(&[&a]).await?;
    let ids: Arc<Vec<String>> = Arc::new((0..shape.actors).map(|i| format!("cl-{i:06}")).collect());
    let open = fixtures::command(&AccountCommand::Open { owner: "ada lovelace".into() });
    let deposit_payload = Arc::new(fixtures::command(&AccountCommand::Deposit { amount: 1 }));
    let opener = {
        let (a, ids, open) = (a.clone(), ids.clone(), open.clone());
        Arc::new(move |actor: usize, _| {
            let (a, request) = (a.clone(), request(&ids[actor], &open));
            async move { send(&a.door, request).await }
        })
    };
    load::each_once(shape.actors, shape.clients, opener).await?;
    let through_a = {
        let (a, ids, payload) = (a.clone(), ids.clone(), deposit_payload.clone());
        Arc::new(move |actor: usize, _| {
            let (a, request) = (a.clone(), request(&ids[actor], &payload));
            async move { send(&a.door, request).await }
        })
    };
    let alone = load::window(shape.actors, shape.clients, shape.window, through_a).await?;

    // A second node joins under a steady stream through the first.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..shape.clients.min(shape.actors) {
        let (a, ids, payload, stop) = (a.clone(), ids.clone(), deposit_payload.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for actor in (client..ids.len()).step_by(shape.clients).cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let t = Instant::now();
                send(&a.door, request(&ids[actor], &payload)).await?;
                latencies.push((t, t.elapsed().as_nanos() as u64));
            }
            anyhow::Ok(latencies)
        }));
    }
    tokio::time::sleep(shape.window / 4).await;
    let join = Instant::now();
    let b = Arc::new(node(&server, component, "b", shape.actors).await?);
    until_settled(&[&a, &b]).await?;
    let settle = join.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut during = Vec::new();
    for client in clients {
        during.extend(client.await??.into_iter().filter(|(t, _)| *t >= join && *t <= join + settle).map(|(_, l)| l));
    }
    during.sort_unstable();
    let during_join = LoadResult {
        per_s: during.len() as f64 / settle.as_secs_f64().max(1e-9),
        p50_us: quantile(&during, 0.5) as f64 / 1e3,
        p99_us: quantile(&during, 0.99) as f64 / 1e3,
        commands: during.len() as u64,
    };
    let moved = b.cluster.status().serving as u64;

    // Each account's owner, and the other node.
    let gate = a.cluster.gate().clone();
    let owners: Arc<Vec<(Arc<Node>, Arc<Node>)>> = Arc::new(
        ids.iter()
            .map(|id| {
                let shard = gate.shard_of("Account", id).expect("a map");
                if gate.is_open(shard) { (a.clone(), b.clone()) } else { (b.clone(), a.clone()) }
            })
            .collect(),
    );
    let mut direct = Vec::new();
    let mut forwarded = Vec::new();
    for _ in 0..shape.rounds {
        for through_owner in [true, false] {
            let (owners, ids, payload) = (owners.clone(), ids.clone(), deposit_payload.clone());
            let send_one = Arc::new(move |actor: usize, _| {
                let (owner, other) = &owners[actor];
                let door = if through_owner { owner.clone() } else { other.clone() };
                let request = request(&ids[actor], &payload);
                async move { send(&door.door, request).await }
            });
            let result = load::window(shape.actors, shape.clients, shape.window, send_one).await?;
            if through_owner { direct.push(result) } else { forwarded.push(result) }
        }
    }
    // The join phase's nodes stop; the failover runs on a server of its own.
    for n in [&a, &b] {
        n.cluster.halt().await;
        let _ = n.client.drain().await;
    }
    drop((a, b, owners, server));
    let failover = failover(component, shape.actors, kills).await?;
    Ok(ClusterFigures {
        failover,
        alone,
        during_join,
        settle_s: settle.as_secs_f64(),
        moved,
        direct: LoadResult::median_of(&direct),
        forwarded: LoadResult::median_of(&forwarded),
    })
}

/// For each shard, an account id that falls in it.
fn probe_ids(shards: u32) -> Vec<String> {
    let mut ids = vec![String::new(); shards as usize];
    let mut missing = shards as usize;
    for n in 0.. {
        let id = format!("fo-{n}");
        let slot = &mut ids[shard_of("Account", &id, shards).0 as usize];
        if slot.is_empty() {
            *slot = id;
            missing -= 1;
            if missing == 0 {
                break;
            }
        }
    }
    ids
}

/// Kills `kills` nodes of three, one at a time, alternately one that does
/// not lead and the leader, replacing each with a fresh node once its
/// shards are served again.
async fn failover(component: &DomainComponent, actors: usize, kills: usize) -> anyhow::Result<Failover> {
    let server = NatsServer::start();
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(Arc::new(node(&server, component, &format!("f{i}"), actors).await?));
    }
    until_settled(&nodes.iter().map(Arc::as_ref).collect::<Vec<_>>()).await?;
    let shards = nodes[0].cluster.gate().shards().expect("a settled map");
    let ids = Arc::new(probe_ids(shards));
    let open = fixtures::command(&AccountCommand::Open { owner: "ada lovelace".into() });
    let opener = {
        let (door, ids) = (nodes[0].clone(), ids.clone());
        Arc::new(move |actor: usize, _| {
            let (door, request) = (door.clone(), request(&ids[actor], &open));
            async move { send(&door.door, request).await }
        })
    };
    load::each_once(ids.len(), 64, opener).await?;
    let deposit = fixtures::command(&AccountCommand::Deposit { amount: 1 });
    let mut figures = Failover::default();
    for kill in 0..kills {
        let leader = nodes[0].cluster.status().leader.unwrap_or_default();
        let kill_leader = kill % 2 == 1;
        let victim = nodes.iter().position(|n| (n.id == leader) == kill_leader).expect("a node of each kind");
        let victim = nodes.remove(victim);
        let gate = victim.cluster.gate();
        let held: Vec<ShardId> = (0..shards).map(ShardId).filter(|s| gate.is_open(*s)).collect();
        let killed = Instant::now();
        victim.cluster.halt().await;
        let _ = victim.client.drain().await;
        // Every held shard answers a deposit through a survivor again.
        let mut probes = Vec::new();
        for (i, shard) in held.iter().enumerate() {
            let door = nodes[i % nodes.len()].clone();
            let mut request = request(&ids[shard.0 as usize], &deposit);
            tokio::task::yield_now().await;
            probes.push(tokio::spawn(async move {
                loop {
                    // An id makes a resend safe, whatever the dead node did.
                    request.command_id = Some(uuid::Uuid::new_v4().to_string());
                    match door.door.command(request.clone()).await {
                        Ok(_) => return Ok(killed.elapsed()),
                        Err(e) if e.status == 503 && killed.elapsed() < Duration::from_secs(60) => {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Err(e) => anyhow::bail!("a deposit after the kill: {} {}", e.status, e.body),
                    }
                }
            }));
        }
        let survivor = nodes[0].clone();
        let takeover = async {
            while kill_leader && survivor.cluster.status().leader.is_none_or(|l| l == victim.id) {
                anyhow::ensure!(killed.elapsed() < Duration::from_secs(60), "no new leader in 60 s");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(killed.elapsed())
        };
        let takeover = takeover.await?;
        let mut worst = Duration::ZERO;
        for probe in probes {
            worst = worst.max(probe.await??);
        }
        if kill_leader {
            figures.leader_s.push(worst.as_secs_f64());
            figures.takeover_s.push(takeover.as_secs_f64());
        } else {
            figures.owner_s.push(worst.as_secs_f64());
        }
        crate::note(&format!(
            "cluster: killed {} ({}, {} shards): served again after {:.2} s",
            victim.id,
            if kill_leader { "the leader" } else { "an owner" },
            held.len(),
            worst.as_secs_f64()
        ));
        drop(victim);
        nodes.push(Arc::new(node(&server, component, &format!("f{}", kill + 3), actors).await?));
        until_settled(&nodes.iter().map(Arc::as_ref).collect::<Vec<_>>()).await?;
    }
    for list in [&mut figures.owner_s, &mut figures.leader_s, &mut figures.takeover_s] {
        list.sort_by(f64::total_cmp);
    }
    Ok(figures)
}
