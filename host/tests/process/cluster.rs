//! A cluster of real `aether-host load --nats` processes on one real
//! `nats-server -js`: every shard served once, commands through any node,
//! joins, leaves and a rolling restart under load without a client error,
//! and every acknowledged command stored exactly once.

use super::harness::{Load, SHARDS, Target, check, map, node, open_accounts, owned, settled};
use super::support::{Host, Http, aether_host};
use aether_host::api::nats::NatsClient;
use aether_host::cluster::shard_of;
use aether_host::names::NatsNames;
use aether_host::store::jetstream::EPOCH_HEADER;
use aether_testkit::nats::NatsServer;
use std::collections::BTreeMap;
use std::time::Duration;

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in the metrics"))
        .parse()
        .unwrap()
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
    for host in [&a, &b, &c] {
        let ready = Http::new(host).get("/readyz").await;
        assert_eq!((ready.status, ready.body["status"].as_str()), (200, Some("ready")), "{}", ready.body);
    }
    let shares = owned(&views[0]);
    assert_eq!(shares.values().sum::<u64>(), u64::from(SHARDS));
    assert!(shares.values().all(|&n| n.abs_diff(341) <= 341 / 4), "within 25% of even: {shares:?}");

    // 1,000 accounts opened through the three nodes in turn.
    let accounts = 1000;
    let hosts = [&a, &b, &c];
    open_accounts(&hosts.iter().map(|h| h.url.clone()).collect::<Vec<_>>(), accounts).await;
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
    load.until_acked(100).await;
    let epoch = views[0]["epoch"].as_u64().unwrap();
    let d = node(&url, "d");
    let views = settled(&[&a, &b, &c, &d], 4).await;
    load.until_acked(100).await;
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
    let mut history = load.finish().await;
    let stay: Vec<String> = nodes.iter().filter(|(id, _)| **id != leader).map(|(_, h)| h.url.clone()).collect();
    let load = Load::start(Target::Http(stay), accounts, 6, "l");
    load.until_acked(100).await;
    let mut gone = nodes.remove(leader.as_str()).unwrap();
    let exit = gone.terminate();
    assert!(exit.success(), "a clean leave exits 0: {}", gone.stderr());
    let rest: Vec<&Host> = nodes.values().collect();
    let views = settled(&rest, 3).await;
    load.until_acked(100).await;
    let new_leader = views[0]["leader"].as_str().unwrap();
    assert_ne!(new_leader, leader);
    assert!(views[0]["leader_term"].as_u64().unwrap() > term);
    assert!(views[0]["epoch"].as_u64().unwrap() > epoch);
    assert!(gone.stderr().contains("left the cluster"), "{}", gone.stderr());
    history.records.extend(load.finish().await.records);
    history.assert_no_errors();
    check(&Http::new(rest[0]), accounts, &history).await.assert_exactly_once();
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
    load.until_acked(50).await;
    for (i, id) in ids.iter().enumerate() {
        let exit = nodes[i].terminate();
        assert!(exit.success(), "{}", nodes[i].stderr());
        load.until_acked(30).await;
        nodes[i] = node(&url, id);
        settled(&nodes.iter().collect::<Vec<_>>(), 3).await;
        load.until_acked(30).await;
    }
    let history = load.finish().await;
    history.assert_no_errors();
    check(&Http::new(&nodes[0]), accounts, &history).await.assert_exactly_once();
}
