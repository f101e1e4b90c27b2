//! Cluster nodes in this process on a real `nats-server -js`: a node
//! stopped as a crash would (`Cluster::halt`, its connection closed) is
//! expelled after the failure timeout and its shards answer again through
//! the survivor, commands waiting for them included.

use super::support;
use aether_host::api::{ClusterDoor, Door, ShardServer};
use aether_host::cluster::{Cluster, DriverConfig, NodeId, ShardId};
use aether_host::names::NatsNames;
use aether_host::store::{JetStreamConfig, JetStreamEventStore};
use aether_host::{AetherEngine, CommandRequest, DomainComponent, EngineConfig, Runtime, RuntimeConfig};
use aether_testkit::nats::NatsServer;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SHARDS: u32 = 16;

struct Node {
    client: async_nats::Client,
    cluster: Cluster,
    door: Door,
}

async fn node(server: &NatsServer, component: &DomainComponent, id: &str) -> Node {
    let client = server.client().await;
    let store = JetStreamEventStore::connect(client.clone(), "bank", JetStreamConfig::default()).await.unwrap();
    let runtime = Runtime::new(component.clone(), Arc::new(store), RuntimeConfig::default());
    let requests = ShardServer::new(runtime.clone(), client.clone(), 64, false);
    let mut config = DriverConfig::new(NodeId::new(id), NatsNames::new(None).cluster("bank"));
    config.protocol.shards = SHARDS;
    let cluster = Cluster::join(client.clone(), runtime.clone(), requests.clone(), config).await.unwrap();
    requests.attach(cluster.clone());
    let door = Door::new(runtime, Some(ClusterDoor::new(cluster.clone(), client.clone())));
    Node { client, cluster, door }
}

/// Waits until `nodes` see one settled map of them all, every shard served once.
async fn settled(nodes: &[&Node]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let views: Vec<_> = nodes.iter().map(|n| n.cluster.status()).collect();
        let serving: usize = views.iter().map(|v| v.serving).sum();
        if views.iter().all(|v| v.epoch == views[0].epoch && v.moving == 0 && v.members.len() == nodes.len())
            && serving == SHARDS as usize
        {
            return;
        }
        assert!(Instant::now() < deadline, "no settled map: {views:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn command(id: &str, command: &str, payload: serde_json::Value, key: &str) -> CommandRequest {
    CommandRequest {
        aggregate: "Account".into(),
        id: id.into(),
        command: command.into(),
        payload: rmp_serde::to_vec_named(&payload).unwrap(),
        command_id: Some(key.into()),
        ..CommandRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halted_node_is_expelled_and_its_shards_answer_through_the_survivor() {
    let server = NatsServer::start();
    let engine = AetherEngine::new(EngineConfig::default().with_max_instances(256)).unwrap();
    let component = DomainComponent::from_file(&engine, &support::component("examples/bank")).unwrap();
    let a = node(&server, &component, "a").await;
    let b = node(&server, &component, "b").await;
    settled(&[&a, &b]).await;
    // An account in a shard b serves, opened through a.
    let gate = b.cluster.gate();
    let account = (0..)
        .map(|n| format!("acct-{n}"))
        .find(|id| gate.shard_of("Account", id).is_some_and(|s| gate.is_open(s)))
        .unwrap();
    let open = command(&account, "Open", serde_json::json!({"owner": "o"}), "open-1");
    a.door.command(open).await.unwrap();
    let held = b.cluster.status().serving;

    let halted = Instant::now();
    b.cluster.halt().await;
    b.client.drain().await.unwrap();
    assert_eq!(b.cluster.gate().open_count(), held, "halting leaves the map as it was");
    assert!((0..SHARDS).all(|s| b.cluster.gate().enter(ShardId(s)).is_none()), "a halted node serves nothing");
    // A deposit sent now waits for the failover and is answered once.
    let deposit = command(&account, "Deposit", serde_json::json!({"amount": 5}), "deposit-1");
    let answer = a.door.command(deposit.clone()).await.unwrap();
    let took = halted.elapsed();
    assert_eq!(answer["version"], 2, "{answer}");
    assert!(took >= Duration::from_millis(2_000), "not before the failure timeout: {took:?}");
    assert!(took < Duration::from_secs(5), "failover took {took:?}");
    let status = a.cluster.status();
    assert_eq!((status.serving, status.members.len()), (SHARDS as usize, 1), "{status:#?}");
    let again = a.door.command(deposit).await.unwrap();
    assert_eq!((again["version"].as_u64(), again["duplicate"].as_bool()), (Some(2), Some(true)), "{again}");
}
