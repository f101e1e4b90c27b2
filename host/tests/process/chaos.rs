//! The cluster under failure: real `aether-host load --nats` processes on
//! one real `nats-server -js`, clients depositing through every node's HTTP
//! door, and a nemesis: `kill -9` of a shard owner, of the leader, of both
//! at once (each restarted under its id once its shards moved), or SIGSTOP
//! of an owner for longer than its lease, then SIGCONT.
//!
//! Every client records each command it sends (account, idempotency key)
//! and the answer; commands answered with an error are sent once more with
//! their key after the fault; then the history checker
//! ([`check`](super::harness::check)) reads every account's stream and
//! proves that each command answered `200` is stored exactly once, at the
//! version its answer gave, that versions are contiguous, and that nothing
//! is stored twice.
//!
//! Each test prints its figures: commands sent, acknowledged, errors, lost,
//! doubled, and the failover time, from the fault until every shard the
//! faulty node held answers again (a state read of an actor in each shard,
//! sent through a survivor right after the fault, answered `200`).
//!
//! The tests take turns (`TURN`): each runs several processes, and their
//! timings are the point.

use super::harness::{
    History, Load, Outcome, SHARDS, Target, check, epochs_going_back, map, node, open_accounts, settled, status,
};
use super::support::{Host, Http};
use aether_host::cluster::{ShardId, shard_of};
use aether_host::testkit::nats::NatsServer;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One chaos test at a time.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const ACCOUNTS: usize = 200;
const CLIENTS: usize = 6;

/// The longest a faulty node's shards may stay unanswered, and (after a
/// kill) the longest a command may wait for its answer. The target is 3 s
/// at p99 (`failure_timeout` 2.5 s plus a few KV round trips); the bound
/// leaves room for a loaded CI machine but stays below the forwarding
/// door's 5 s attempt timeout: a request waiting on a dead or frozen node
/// is sent again as soon as the map grants its shard anew.
const FAILOVER_BOUND: Duration = Duration::from_millis(4500);

/// How long after the fault clients may still see errors: only commands
/// in flight on the faulty node, or sent to it, fail.
const ERRORS_BOUND: Duration = FAILOVER_BOUND;

/// Whom the nemesis strikes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Victims {
    /// A node holding shards that is not the leader.
    Owner,
    Leader,
    /// The leader and another shard owner at once.
    LeaderAndOwner,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// SIGKILL: the process dies mid-command.
    Kill,
    /// SIGSTOP for this long, then SIGCONT: the process resumes with its
    /// stale view and stale actors.
    Pause(Duration),
}

/// A cluster of `ids.len()` nodes under load, as the nemesis finds it.
struct Cluster {
    server: NatsServer,
    nodes: BTreeMap<String, Host>,
    leader: String,
}

impl Cluster {
    async fn start(ids: &[&str]) -> Cluster {
        let server = NatsServer::start();
        let url = server.url();
        let nodes: BTreeMap<String, Host> = ids.iter().map(|id| ((*id).to_owned(), node(&url, id))).collect();
        let views = settled(&nodes.values().collect::<Vec<_>>(), ids.len()).await;
        let leader = views[0]["leader"].as_str().unwrap().to_owned();
        Cluster { server, nodes, leader }
    }

    fn urls(&self) -> Vec<String> {
        self.nodes.values().map(|h| h.url.clone()).collect()
    }

    fn pick(&self, victims: Victims) -> Vec<String> {
        let owner = || self.nodes.keys().find(|id| **id != self.leader).unwrap().clone();
        match victims {
            Victims::Owner => vec![owner()],
            Victims::Leader => vec![self.leader.clone()],
            Victims::LeaderAndOwner => vec![self.leader.clone(), owner()],
        }
    }
}

/// For each shard, an account id that falls in it (never opened: a state
/// read of it answers version 0 from the node serving the shard).
fn probe_ids() -> Vec<String> {
    let mut ids = vec![String::new(); SHARDS as usize];
    let mut missing = SHARDS as usize;
    for n in 0.. {
        let id = format!("probe-{n}");
        let slot = &mut ids[shard_of("Account", &id, SHARDS).0 as usize];
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

/// Reads the state of one actor in each of `shards` through `urls` (in
/// turn) until each answers `200`; returns, per shard, the time from
/// `since` to its first `200`.
async fn probe(urls: &[String], shards: &BTreeSet<ShardId>, since: Instant) -> Vec<Duration> {
    let ids = probe_ids();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let probes: Vec<_> = shards
        .iter()
        .enumerate()
        .map(|(i, shard)| {
            let url = format!("{}/actors/Account/{}", urls[i % urls.len()], ids[shard.0 as usize]);
            let http = http.clone();
            tokio::spawn(async move {
                let deadline = since + Duration::from_secs(30);
                let mut last = String::new();
                while Instant::now() < deadline {
                    match http.get(&url).send().await {
                        Ok(response) if response.status() == 200 => return since.elapsed(),
                        Ok(response) => last = format!("{} {}", response.status(), response.text().await.unwrap()),
                        Err(e) => last = e.to_string(),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                panic!("{url} did not answer 200 within 30 s of the fault: {last}");
            })
        })
        .collect();
    let mut times = Vec::new();
    for probe in probes {
        times.push(probe.await.unwrap());
    }
    times.sort();
    times
}

/// Polls a survivor's `/cluster` until it names a leader that is not a victim.
async fn new_leader(survivor: &Host, victims: &[String], since: Instant) -> (String, Duration) {
    loop {
        let view = status(survivor).await;
        if let Some(leader) = view["leader"].as_str().filter(|l| !victims.iter().any(|v| v == l)) {
            return (leader.to_owned(), since.elapsed());
        }
        assert!(since.elapsed() < Duration::from_secs(30), "no new leader within 30 s: {view:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn signal(host: &Host, signal: &str) {
    let status = Command::new("kill").args([signal, &host.pid().to_string()]).status().expect("kill runs");
    assert!(status.success(), "kill {signal} {}", host.pid());
}

fn seconds(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Runs one nemesis on a cluster of `ids` under load and checks the history.
async fn nemesis(name: &str, ids: &[&str], victims: Victims, fault: Fault) {
    let _turn = TURN.lock().await;
    let started = Instant::now();
    let mut cluster = Cluster::start(ids).await;
    let urls = cluster.urls();
    open_accounts(&urls, ACCOUNTS).await;
    let load = Load::start(Target::Http(urls), ACCOUNTS, CLIENTS, name);
    load.until_acked(300).await;

    let victims = cluster.pick(victims);
    let map = map(&cluster.server).await;
    // The shards the victims hold, and the incarnation of each victim.
    let mut held = BTreeSet::new();
    let mut incarnations = BTreeMap::new();
    for shard in (0..SHARDS).map(ShardId) {
        if let Some((holder, _)) = map.grant(shard).filter(|(h, _)| victims.iter().any(|v| v == h.id.as_str())) {
            held.insert(shard);
            incarnations.insert(holder.id.to_string(), holder.incarnation);
        }
    }
    let survivors: Vec<String> =
        cluster.nodes.iter().filter(|(id, _)| !victims.contains(id)).map(|(_, h)| h.url.clone()).collect();
    let survivor_id = cluster.nodes.keys().find(|id| !victims.contains(id)).unwrap().clone();

    // The fault.
    let fault_at = Instant::now();
    for victim in &victims {
        let host = cluster.nodes.get_mut(victim).unwrap();
        match fault {
            Fault::Kill => host.kill(),
            Fault::Pause(_) => signal(host, "-STOP"),
        }
    }
    let leader_gone = victims.contains(&cluster.leader);
    let (failover, leader) = tokio::join!(probe(&survivors, &held, fault_at), async {
        if leader_gone { Some(new_leader(&cluster.nodes[&survivor_id], &victims, fault_at).await) } else { None }
    });
    let worst = *failover.last().unwrap();
    let median = failover[failover.len() / 2];

    // After a pause: the node resumes, must not answer from its stale
    // actors, and rejoins as a new incarnation.
    if let Fault::Pause(pause) = fault {
        tokio::time::sleep(pause.saturating_sub(fault_at.elapsed())).await;
        let before = load.history();
        let paused = Instant::now().duration_since(fault_at);
        for victim in &victims {
            signal(&cluster.nodes[victim], "-CONT");
        }
        for victim in &victims {
            no_stale_reads(&cluster.nodes[victim], &before, &held).await;
        }
        println!("chaos {name}: paused {}", seconds(paused));
    }
    let members = match fault {
        Fault::Kill => {
            for victim in &victims {
                cluster.nodes.remove(victim);
            }
            ids.len() - victims.len()
        }
        Fault::Pause(_) => ids.len(),
    };
    let views = settled(&cluster.nodes.values().collect::<Vec<_>>(), members).await;
    if let Fault::Pause(_) = fault {
        for victim in &victims {
            let view = status(&cluster.nodes[victim]).await;
            let incarnation = view["incarnation"].as_u64().unwrap();
            assert!(incarnation > incarnations[victim], "{victim} rejoined as a new incarnation: {view:#}");
            assert!(cluster.nodes[victim].stderr().contains("expelled by the leader"));
        }
    }
    load.until_acked(300).await;
    // A supervisor restarts the killed under the same ids: they rejoin as
    // new incarnations and take shards back under load, without an error.
    let mut rejoin = None;
    if fault == Fault::Kill {
        let restarted = Instant::now();
        for victim in &victims {
            cluster.nodes.insert(victim.clone(), node(&cluster.server.url(), victim));
        }
        settled(&cluster.nodes.values().collect::<Vec<_>>(), ids.len()).await;
        rejoin = Some(restarted.elapsed());
        load.until_acked(200).await;
    }
    let mut history = load.finish().await;

    // Errors only around the fault, and each such command, sent again with
    // its key, is stored once.
    for error in history.errors() {
        assert!(error.answered >= fault_at, "an error before the fault: {error:?}");
        assert!(error.answered <= fault_at + ERRORS_BOUND, "an error {ERRORS_BOUND:?} after the fault: {error:?}");
    }
    let last_error = history.errors().map(|e| e.answered.duration_since(fault_at)).max();
    let errors: Vec<String> = history.errors().take(3).map(|e| format!("{:?}", e.outcome)).collect();
    history.retry_errors(&cluster.nodes[&survivor_id].url).await;
    let verdict = check(&Http::new(&cluster.nodes[&survivor_id]), ACCOUNTS, &history).await;
    let slowest = history.acked().map(|r| r.answered.duration_since(r.sent)).max().unwrap();
    // Appends a node made under a grant already superseded on that actor's
    // stream (a stale owner writing after the new one). The store's version
    // check keeps them exactly-once; fencing them out of the store is the
    // storage-level fence still to come, so this is a figure, not a rule.
    let (actors, stale) = epochs_going_back(&cluster.server).await;
    println!("chaos {name}: stale appends (epoch going back) {} on {actors} actors {stale:?}", stale.len());
    println!(
        "chaos {name}: {verdict}; failover of {} shards: worst {}, median {}{}; slowest 200 {}; epoch {}; \
         last error {} after the fault;{} {} in all",
        held.len(),
        seconds(worst),
        seconds(median),
        leader.map(|(l, t)| format!(", new leader {l} after {}", seconds(t))).unwrap_or_default(),
        seconds(slowest),
        views[0]["epoch"],
        last_error.map(seconds).unwrap_or_else(|| "none".into()),
        rejoin.map(|r| format!(" restarted and settled in {};", seconds(r))).unwrap_or_default(),
        seconds(started.elapsed()),
    );
    if !errors.is_empty() {
        println!("chaos {name}: errors such as {errors:?}");
    }
    verdict.assert_exactly_once();
    assert!(worst <= FAILOVER_BOUND, "failover took {worst:?}");
    // (Commands sent straight to a paused node wait out its pause.)
    if fault == Fault::Kill {
        assert!(slowest <= FAILOVER_BOUND, "a command waited {slowest:?} for its 200");
    }
}

/// Right after SIGCONT, reads through the resumed node every account of the
/// shards it held: each must show at least the version of the newest
/// deposit acknowledged before (from wherever serves it now), never the
/// state the node had cached before its pause.
async fn no_stale_reads(host: &Host, before: &History, held: &BTreeSet<ShardId>) {
    let mut newest: BTreeMap<&str, u64> = BTreeMap::new();
    for record in &before.records {
        if let Outcome::Acked { version } = record.outcome {
            let v = newest.entry(&record.account).or_default();
            *v = (*v).max(version);
        }
    }
    let http = Arc::new(Http::new(host));
    let mut reads = 0;
    for (account, version) in newest {
        if !held.contains(&shard_of("Account", account, SHARDS)) {
            continue;
        }
        let state = http.get(&format!("/actors/Account/{account}")).await;
        assert_eq!(state.status, 200, "{account}: {}", state.body);
        let seen = state.body["version"].as_u64().unwrap();
        assert!(seen >= version, "{account}: the resumed node answered v{seen}, but v{version} was acknowledged");
        reads += 1;
    }
    assert!(reads > 0, "no account of the paused node's shards was written");
}

/// kill -9 of a node that holds shards but does not lead, under load;
/// then it is restarted under the same id. (Each kill test restarts its
/// victims.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_an_owner_under_load_loses_nothing() {
    nemesis("owner", &["a", "b", "c"], Victims::Owner, Fault::Kill).await;
}

/// kill -9 of the leader under load: another node takes the claim over
/// after `leader_timeout`, expels it and moves its shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_the_leader_under_load_loses_nothing() {
    nemesis("leader", &["a", "b", "c"], Victims::Leader, Fault::Kill).await;
}

/// kill -9 of the leader and another owner at once, of four nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_the_leader_and_an_owner_at_once_loses_nothing() {
    nemesis("both", &["a", "b", "c", "d"], Victims::LeaderAndOwner, Fault::Kill).await;
}

/// SIGSTOP of an owner for 4 s (its lease is 1.5 s, the failure timeout
/// 2.5 s), then SIGCONT: its shards move meanwhile; once resumed it answers
/// nothing from its stale actors and rejoins as a new incarnation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_an_owner_past_its_lease_fences_it() {
    nemesis("pause", &["a", "b", "c"], Victims::Owner, Fault::Pause(Duration::from_secs(4))).await;
}
