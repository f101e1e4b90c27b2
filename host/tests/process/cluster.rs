//! A cluster of real `aether-host load --nats` processes on one real
//! `nats-server -js`: every shard served once, commands through any node,
//! joins, leaves and a rolling restart under load without a client error,
//! and every acknowledged command stored exactly once.

use super::support::{Host, Http, aether_host};
use aether_host::api::client::CommandIds;
use aether_host::api::nats::NatsClient;
use aether_host::cluster::{Key, ShardMap, shard_of};
use aether_host::names::NatsNames;
use aether_host::store::jetstream::EPOCH_HEADER;
use aether_host::testkit::nats::NatsServer;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(super) const SHARDS: u32 = 1024;

fn node(url: &str, id: &str) -> Host {
    Host::load(&["--nats", url, "--node-id", id])
}

async fn status(host: &Host) -> Value {
    Http::new(host).get("/cluster").await.body
}

/// Waits until every host sees the same settled map: `members` members,
/// every shard owned and served by its owner, and none moving.
pub(super) async fn settled(hosts: &[&Host], members: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut views = Vec::new();
        for host in hosts {
            views.push(status(host).await);
        }
        let epoch = &views[0]["epoch"];
        let serving: u64 = views.iter().map(|v| v["serving"].as_u64().unwrap()).sum();
        let quiet = views.iter().all(|v| {
            v["epoch"] == *epoch
                && v["moving"] == 0
                && v["unowned"] == 0
                && v["members"].as_array().unwrap().len() == members
                && v["shards"] == SHARDS
        });
        if quiet && serving == u64::from(SHARDS) {
            return views;
        }
        assert!(Instant::now() < deadline, "the cluster did not settle: {views:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Shards each node owns, from one settled view.
fn owned(view: &Value) -> BTreeMap<String, u64> {
    view["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["node"].as_str().unwrap().to_owned(), m["owned"].as_u64().unwrap()))
        .collect()
}

/// The map in the bucket, read as any client can.
pub(super) async fn map(server: &NatsServer) -> ShardMap {
    let js = async_nats::jetstream::new(server.client().await);
    let names = NatsNames::new(None).cluster("bank");
    let kv = js.get_key_value(names.bucket()).await.unwrap();
    ShardMap::decode(&kv.get(names.key(&Key::Map)).await.unwrap().unwrap()).unwrap()
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in the metrics"))
        .parse()
        .unwrap()
}

/// Deposits of 1 with unique idempotency keys, by `clients` concurrent
/// clients over the targets given, until stopped; records what each answer was.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// (account, key) of every deposit answered `200`.
    acked: Arc<Mutex<Vec<(String, String)>>>,
    /// Every other answer.
    errors: Arc<Mutex<Vec<String>>>,
}

#[allow(clippy::large_enum_variant)]
enum Target {
    Http(Vec<String>),
    Nats(NatsClient),
}

impl Load {
    fn start(target: Target, accounts: usize, clients: usize, tag: &str) -> Load {
        let target = Arc::new(target);
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let tasks = (0..clients)
            .map(|c| {
                let (target, stop, acked, errors) =
                    (target.clone(), stop.clone(), Arc::clone(&acked), Arc::clone(&errors));
                let tag = format!("{tag}{c}");
                tokio::spawn(async move {
                    let http = reqwest::Client::new();
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let account = format!("acct-{}", (i * 7 + c * 13) % accounts);
                        let key = format!("{tag}-{i}");
                        let outcome: Result<(), String> = match &*target {
                            Target::Http(urls) => {
                                let url = &urls[i % urls.len()];
                                match http
                                    .post(format!("{url}/actors/Account/{account}/commands/Deposit"))
                                    .header("Idempotency-Key", &key)
                                    .body(r#"{"amount": 1}"#)
                                    .send()
                                    .await
                                {
                                    Ok(response) if response.status() == 200 => Ok(()),
                                    Ok(response) => Err(format!(
                                        "{} {}",
                                        response.status(),
                                        response.text().await.unwrap_or_default()
                                    )),
                                    Err(e) => Err(e.to_string()),
                                }
                            }
                            Target::Nats(client) => {
                                let ids = CommandIds { idempotency_key: Some(&key), ..CommandIds::default() };
                                client
                                    .send("Account", &account, "Deposit", Some(&json!({"amount": 1})), ids)
                                    .await
                                    .map(drop)
                                    .map_err(|e| e.to_string())
                            }
                        };
                        match outcome {
                            Ok(()) => acked.lock().unwrap().push((account, key)),
                            Err(e) => errors.lock().unwrap().push(format!("{account} {key}: {e}")),
                        }
                    }
                })
            })
            .collect();
        Load { stop, tasks, acked, errors }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Stops the clients and returns the acknowledged deposits.
    async fn finish(self) -> Vec<(String, String)> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let errors = self.errors.lock().unwrap().clone();
        assert!(errors.is_empty(), "clients saw {} errors, e.g. {:?}", errors.len(), &errors[..errors.len().min(5)]);
        self.acked.lock().unwrap().clone()
    }
}

/// Runs the load until `enough` more deposits were acknowledged.
async fn until_acked(load: &Load, enough: usize) {
    let target = load.acked() + enough;
    let deadline = Instant::now() + Duration::from_secs(60);
    while load.acked() < target {
        assert!(Instant::now() < deadline, "the load stalled at {} of {target}", load.acked());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every acknowledged deposit is stored exactly once, and nothing else is.
async fn stored_exactly_once(http: &Http, accounts: usize, acked: &[(String, String)]) {
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (account, key) in acked {
        assert!(expected.entry(account.clone()).or_default().insert(key.clone()), "a key acknowledged twice");
    }
    for a in 0..accounts {
        let account = format!("acct-{a}");
        let mut keys = Vec::new();
        let mut from = 2;
        loop {
            let page = http.get(&format!("/actors/Account/{account}/events?from={from}")).await;
            assert_eq!(page.status, 200, "{}", page.body);
            for event in page.body["events"].as_array().unwrap() {
                keys.push(event["provenance"]["command_id"].as_str().unwrap().to_owned());
            }
            match page.body["next"].as_u64() {
                Some(next) => from = next,
                None => break,
            }
        }
        let stored: BTreeSet<String> = keys.iter().cloned().collect();
        assert_eq!(stored.len(), keys.len(), "{account}: a deposit stored twice");
        assert_eq!(stored, expected.remove(&account).unwrap_or_default(), "{account}: stored ≠ acknowledged");
    }
}

/// Three nodes serve every shard once; commands through any node all
/// succeed and each actor lives on its shard's owner only. A fourth node
/// joins under load and takes about a quarter of the shards; then the
/// leader leaves with SIGTERM under load, another node leads and the epoch
/// moves on. Clients see no error, and every `200` is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_the_shards_and_a_join_and_a_leave_under_load_lose_nothing() {
    let server = NatsServer::start();
    let url = server.url();
    let a = node(&url, "a");
    let b = node(&url, "b");
    let c = node(&url, "c");
    let views = settled(&[&a, &b, &c], 3).await;
    let shares = owned(&views[0]);
    assert_eq!(shares.values().sum::<u64>(), u64::from(SHARDS));
    assert!(shares.values().all(|&n| n.abs_diff(341) <= 341 / 4), "within 25% of even: {shares:?}");

    // 1,000 accounts opened through the three nodes in turn.
    let accounts = 1000;
    let hosts = [&a, &b, &c];
    let mut opens = Vec::new();
    for chunk in 0..8 {
        let urls: Vec<String> = hosts.iter().map(|h| h.url.clone()).collect();
        opens.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in (chunk..accounts).step_by(8) {
                let response = http
                    .post(format!("{}/actors/Account/acct-{i}/commands/Open", urls[i % 3]))
                    .body(r#"{"owner": "o"}"#)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
            }
        }));
    }
    for open in opens {
        open.await.unwrap();
    }
    // Each actor lives on its shard's owner, and only there.
    let map = map(&server).await;
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..accounts {
        let owner = map.owner(shard_of("Account", &format!("acct-{i}"), SHARDS)).unwrap();
        *expected.entry(owner.id.to_string()).or_default() += 1;
    }
    for (host, id) in hosts.iter().zip(["a", "b", "c"]) {
        let metrics = Http::new(host).text("/metrics").await;
        assert_eq!(metric(&metrics, "aether_live_actors"), expected[id], "node {id}");
        assert_eq!(metric(&metrics, "aether_cluster_owned_shards"), shares[id], "node {id}");
    }
    assert!(metric(&Http::new(&a).text("/metrics").await, "aether_cluster_forwarded_total") > 0);
    // `aether-host cluster status` shows the same.
    let out = aether_host().args(["cluster", "status", "--url", &b.url]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("leader   {}", views[0]["leader"].as_str().unwrap())), "{text}");
    for (id, n) in &shares {
        assert!(text.lines().any(|l| l.starts_with(id.as_str()) && l.contains(&format!(" {n} "))), "{text}");
    }
    // Each append records the epoch of the map it was made under.
    let names = NatsNames::new(None);
    let stream = async_nats::jetstream::new(server.client().await).get_stream(names.events_stream()).await.unwrap();
    for i in (0..accounts).step_by(97) {
        let subject = names.event_subject("bank", "Account", &format!("acct-{i}"));
        let message = stream.get_last_raw_message_by_subject(&subject).await.unwrap();
        let epoch: u64 = message.headers.get(EPOCH_HEADER).expect("an epoch").as_str().parse().unwrap();
        let (_, granted) = map.grant(shard_of("Account", &format!("acct-{i}"), SHARDS)).unwrap();
        assert!(epoch >= granted && epoch <= map.epoch(), "acct-{i}: epoch {epoch}, granted at {granted}");
    }

    // A fourth node joins under load.
    let load = Load::start(Target::Http(vec![a.url.clone(), b.url.clone(), c.url.clone()]), accounts, 6, "j");
    until_acked(&load, 100).await;
    let epoch = views[0]["epoch"].as_u64().unwrap();
    let d = node(&url, "d");
    let views = settled(&[&a, &b, &c, &d], 4).await;
    until_acked(&load, 100).await;
    let after = owned(&views[0]);
    assert!(after["d"].abs_diff(256) <= 256 / 4, "about a quarter moved to d: {after:?}");
    let moved: u64 = shares.iter().map(|(id, n)| n - after[id]).sum();
    assert_eq!(moved, after["d"], "only shards that went to d moved");
    assert!(after.values().all(|&n| n.abs_diff(256) <= 256 / 4), "within 25% of even: {after:?}");
    assert!(views[0]["epoch"].as_u64().unwrap() > epoch);

    // The leader leaves with SIGTERM under load (sent to the others).
    let leader = views[0]["leader"].as_str().unwrap().to_owned();
    let term = views[0]["leader_term"].as_u64().unwrap();
    let epoch = views[0]["epoch"].as_u64().unwrap();
    let mut nodes: BTreeMap<&str, Host> = [("a", a), ("b", b), ("c", c), ("d", d)].into_iter().collect();
    let acked = load.finish().await;
    let stay: Vec<String> = nodes.iter().filter(|(id, _)| **id != leader).map(|(_, h)| h.url.clone()).collect();
    let load = Load::start(Target::Http(stay), accounts, 6, "l");
    until_acked(&load, 100).await;
    let mut gone = nodes.remove(leader.as_str()).unwrap();
    let exit = gone.terminate();
    assert!(exit.success(), "a clean leave exits 0: {}", gone.stderr());
    let rest: Vec<&Host> = nodes.values().collect();
    let views = settled(&rest, 3).await;
    until_acked(&load, 100).await;
    let new_leader = views[0]["leader"].as_str().unwrap();
    assert_ne!(new_leader, leader);
    assert!(views[0]["leader_term"].as_u64().unwrap() > term);
    assert!(views[0]["epoch"].as_u64().unwrap() > epoch);
    assert!(gone.stderr().contains("left the cluster"), "{}", gone.stderr());
    let mut all = acked;
    all.extend(load.finish().await);
    stored_exactly_once(&Http::new(rest[0]), accounts, &all).await;
}

/// Every node restarts in turn (SIGTERM, then the same `--node-id`) under
/// a steady stream of commands over the NATS door: no client error, and
/// every `200` stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_a_steady_stream_shows_no_client_error() {
    let server = NatsServer::start();
    let url = server.url();
    let ids = ["a", "b", "c"];
    let mut nodes: Vec<Host> = ids.iter().map(|id| node(&url, id)).collect();
    settled(&nodes.iter().collect::<Vec<_>>(), 3).await;
    let accounts = 60;
    let http = Http::new(&nodes[0]);
    for i in 0..accounts {
        assert_eq!(
            http.post(&format!("/actors/Account/acct-{i}/commands/Open"), r#"{"owner": "o"}"#, &[]).await.status,
            200
        );
    }
    let client =
        NatsClient::new(server.client().await, NatsNames::new(None), "bank").with_timeout(Duration::from_secs(30));
    let load = Load::start(Target::Nats(client), accounts, 4, "r");
    until_acked(&load, 50).await;
    for (i, id) in ids.iter().enumerate() {
        let exit = nodes[i].terminate();
        assert!(exit.success(), "{}", nodes[i].stderr());
        until_acked(&load, 30).await;
        nodes[i] = node(&url, id);
        settled(&nodes.iter().collect::<Vec<_>>(), 3).await;
        until_acked(&load, 30).await;
    }
    let acked = load.finish().await;
    stored_exactly_once(&Http::new(&nodes[0]), accounts, &acked).await;
}
