//! The host on NATS: commands over request/reply answer as HTTP does, and
//! every stored event reaches bus subscribers, filtered, in order, with
//! losses counted. A real `nats-server -js` per test.

use super::support;
use aether_host::api::client::CommandIds;
use aether_host::api::nats::{self as nats_api, NatsApiConfig, NatsClient};
use aether_host::api::{ClientError, ErrorKind};
use aether_host::bus::nats::NatsSubscription;
use aether_host::bus::{Bus, BusConfig, Filter};
use aether_host::names::NatsNames;
use aether_host::store::{JetStreamConfig, JetStreamEventStore};
use aether_host::{AetherEngine, DomainComponent, EngineConfig, Runtime, RuntimeConfig};
use aether_testkit::nats::NatsServer;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A host of the bank on JetStream, serving commands over NATS until dropped.
struct NatsHost {
    runtime: Runtime,
    stop: CancellationToken,
}

impl Drop for NatsHost {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn host(server: &NatsServer, namespace: Option<&str>) -> NatsHost {
    let engine = AetherEngine::new(EngineConfig::default().with_max_instances(256)).unwrap();
    let component = DomainComponent::from_file(&engine, &support::component("examples/bank")).unwrap();
    let client = server.client().await;
    let config = JetStreamConfig::default().with_namespace(namespace.map(str::to_owned));
    let store = JetStreamEventStore::connect(client.clone(), "bank", config).await.unwrap();
    let names = NatsNames::new(namespace);
    let bus = Bus::with_nats("bank", &BusConfig::default(), client.clone(), names.clone());
    let runtime = Runtime::with_bus(component, Arc::new(store), RuntimeConfig::default(), bus);
    let stop = CancellationToken::new();
    let serve = nats_api::serve(
        client.clone(),
        names,
        runtime.clone(),
        NatsApiConfig::default(),
        stop.clone().cancelled_owned(),
    );
    tokio::spawn(async move { serve.await.unwrap() });
    // The subscription is made once the server has seen it.
    client.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    NatsHost { runtime, stop }
}

async fn client(server: &NatsServer, namespace: Option<&str>) -> NatsClient {
    NatsClient::new(server.client().await, NatsNames::new(namespace), "bank")
}

fn api_error(result: Result<Value, ClientError>) -> (u16, ErrorKind, Value) {
    match result {
        Err(ClientError::Api { status, kind: Some(kind), body, .. }) => (status, kind, body),
        other => panic!("expected an error answer, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_over_nats_answer_as_http_does() {
    let server = NatsServer::start();
    let _host = host(&server, None).await;
    let nats = client(&server, None).await;
    let ids = |key| CommandIds { idempotency_key: Some(key), ..CommandIds::default() };

    let opened = nats.send("Account", "a.b c", "Open", Some(&json!({"owner": "Ada"})), ids("open")).await.unwrap();
    assert_eq!((opened["status"].clone(), opened["version"].clone()), (json!(200), json!(1)));
    assert_eq!(opened["events"][0]["payload"], json!({"owner": "Ada"}));
    let again = nats.send("Account", "a.b c", "Open", Some(&json!({"owner": "Ada"})), ids("open")).await.unwrap();
    assert_eq!((again["version"].clone(), again["duplicate"].clone()), (json!(1), json!(true)));

    let (status, kind, body) =
        api_error(nats.send("Account", "a.b c", "Withdraw", Some(&json!({"amount": 5})), CommandIds::default()).await);
    assert_eq!((status, kind, body["code"].as_str()), (422, ErrorKind::Rejected, Some("insufficient-funds")));
    let (status, kind, body) = api_error(nats.send("Account", "x", "Fly", None, CommandIds::default()).await);
    assert_eq!((status, kind), (404, ErrorKind::UnknownCommand));
    assert_eq!(body["known"], json!(["Open", "Deposit", "Withdraw", "Close", "Debit", "Credit", "Refund"]));
    let (status, kind, _) = api_error(nats.send("Ledger", "x", "Open", None, CommandIds::default()).await);
    assert_eq!((status, kind), (404, ErrorKind::UnknownAggregate));
    let (status, kind, _) =
        api_error(nats.send("Account", "x", "Deposit", Some(&json!({"amount": "lots"})), CommandIds::default()).await);
    assert_eq!((status, kind), (400, ErrorKind::BadPayload));

    // A request that is not a command message at all.
    let raw = server.client().await;
    let reply = raw.request(NatsNames::new(None).commands("bank", "Account"), "{not json".into()).await.unwrap();
    let body: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!((body["status"].clone(), body["error"].clone()), (json!(400), json!("bad-json")));

    // Another namespace has no host: a clear error, not a hang.
    let elsewhere = client(&server, Some("tenant-b")).await;
    match elsewhere.send("Account", "x", "Open", None, CommandIds::default()).await {
        Err(ClientError::Unreachable { cause, .. }) => assert!(cause.contains("no host serves it"), "{cause}"),
        other => panic!("{other:?}"),
    }
}

/// The NATS door checks command, correlation and causation ids by the
/// HTTP door's rule (1 to 256 bytes of visible ASCII), and a refused id
/// appends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_door_enforces_the_http_id_rules() {
    let server = NatsServer::start();
    let host = host(&server, None).await;
    let nats = client(&server, None).await;
    let open = json!({"owner": "Ada"});
    let long = "k".repeat(257);
    let bad: [(CommandIds, &str); 5] = [
        (
            CommandIds { idempotency_key: Some(&long), ..CommandIds::default() },
            "`command_id` must be 1 to 256 bytes, not 257",
        ),
        (
            CommandIds { idempotency_key: Some(""), ..CommandIds::default() },
            "`command_id` must be 1 to 256 bytes, not 0",
        ),
        (
            CommandIds { correlation_id: Some("caf\u{e9}"), ..CommandIds::default() },
            "`correlation_id` must be visible ASCII",
        ),
        (CommandIds { causation_id: Some("a\nb"), ..CommandIds::default() }, "`causation_id` must be visible ASCII"),
        (CommandIds { causation_id: Some(&long), ..CommandIds::default() }, "`causation_id` must be 1 to 256 bytes"),
    ];
    for (ids, message) in bad {
        let (status, kind, body) = api_error(nats.send("Account", "ids", "Open", Some(&open), ids).await);
        assert_eq!((status, kind), (400, ErrorKind::BadRequest), "{body}");
        assert!(body["message"].as_str().unwrap().starts_with(message), "{body}");
    }
    assert_eq!(host.runtime.state("Account", "ids").await.unwrap().0, 0, "a refused command appended");

    // The longest id both doors take is taken, and recorded as sent.
    let key = "k".repeat(256);
    let ids = CommandIds { idempotency_key: Some(&key), correlation_id: Some("order 17"), ..CommandIds::default() };
    let opened = nats.send("Account", "ids", "Open", Some(&open), ids).await.unwrap();
    assert_eq!((opened["version"].clone(), opened["command_id"].clone()), (json!(1), json!(key)));
    let events = host.runtime.events("Account", "ids", 0, 10).await.unwrap();
    assert_eq!(&*events[0].provenance.correlation_id, "order 17");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_events_reach_bus_subscribers_filtered_and_in_order() {
    let server = NatsServer::start();
    let host = host(&server, None).await;
    let names = NatsNames::new(None);
    let listener = server.client().await;
    let mut everything = NatsSubscription::subscribe(&listener, &names, "bank", &Filter::default()).await.unwrap();
    let only_b = Filter { aggregate: Some("Account".into()), id: Some("b.*>".into()) };
    let mut just_b = NatsSubscription::subscribe(&listener, &names, "bank", &only_b).await.unwrap();
    listener.flush().await.unwrap();

    let nats = client(&server, None).await;
    for id in ["a", "b.*>"] {
        nats.send("Account", id, "Open", Some(&json!({"owner": id})), CommandIds::default()).await.unwrap();
        nats.send(
            "Account",
            id,
            "Deposit",
            Some(&json!({"amount": 3})),
            CommandIds { correlation_id: Some("corr-1"), ..CommandIds::default() },
        )
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..4 {
        let event = tokio::time::timeout(std::time::Duration::from_secs(5), everything.recv()).await.unwrap().unwrap();
        seen.push((event.id.clone(), event.version, event.name.clone()));
    }
    let of = |id: &str| seen.iter().filter(|(i, ..)| i == id).map(|(_, v, n)| (*v, n.clone())).collect::<Vec<_>>();
    assert_eq!(of("a"), [(1, "Opened".to_string()), (2, "Deposited".to_string())]);
    assert_eq!(of("b.*>"), [(1, "Opened".to_string()), (2, "Deposited".to_string())]);

    let first = just_b.recv().await.unwrap();
    let second = just_b.recv().await.unwrap();
    assert_eq!((first.id.as_str(), first.version, second.version), ("b.*>", 1, 2));
    assert_eq!(&*second.provenance.correlation_id, "corr-1");
    assert_eq!(rmp_serde::from_slice::<Value>(&second.payload).unwrap(), json!({"amount": 3}));
    assert_eq!((everything.dropped(), just_b.dropped()), (0, 0));
    assert_eq!(host.runtime.bus().stats().dropped.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_bus_subscriber_never_blocks_appends_and_its_losses_are_counted() {
    let server = NatsServer::start();
    let host = host(&server, None).await;
    // A subscriber that holds at most 16 undelivered messages and reads none
    // while 400 commands go through.
    let slow_client = async_nats::ConnectOptions::new().subscription_capacity(16).connect(server.url()).await.unwrap();
    let mut slow =
        NatsSubscription::subscribe(&slow_client, &NatsNames::new(None), "bank", &Filter::default()).await.unwrap();
    slow_client.flush().await.unwrap();

    let send = |command: &'static str, payload: Value| {
        let runtime = host.runtime.clone();
        async move {
            runtime
                .execute(aether_host::CommandRequest {
                    aggregate: "Account".into(),
                    id: "busy".into(),
                    command: command.into(),
                    payload: rmp_serde::to_vec_named(&payload).unwrap(),
                    ..Default::default()
                })
                .await
                .unwrap()
        }
    };
    send("Open", json!({"owner": "o"})).await;
    let started = std::time::Instant::now();
    for _ in 0..400 {
        send("Deposit", json!({"amount": 1})).await;
    }
    let elapsed = started.elapsed();
    // The subscriber catches up: what it got plus what it counted as
    // dropped is every event, once it sees a later version of the actor. A
    // later event may itself be dropped if it arrives while the buffer is
    // still full, so send another whenever none comes.
    let (mut received, mut last, mut latest) = (0, 0, 401);
    while last < latest {
        match tokio::time::timeout(std::time::Duration::from_millis(500), slow.recv()).await {
            Ok(event) => {
                received += 1;
                last = event.expect("the subscription lasts").version;
            }
            Err(_) => {
                assert!(latest < 420, "no event arrives any more (last {last}, received {received})");
                send("Deposit", json!({"amount": 1})).await;
                latest += 1;
            }
        }
    }
    assert!(slow.dropped() > 0, "the slow subscriber lost events ({received} received)");
    assert_eq!(received + slow.dropped(), last, "received {received}, dropped {}", slow.dropped());
    assert!(elapsed < std::time::Duration::from_secs(30), "appends were not held up: {elapsed:?}");
}
