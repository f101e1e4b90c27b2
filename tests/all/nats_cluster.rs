//! The test harness's cluster of three `nats-server`s (`NatsCluster`): a
//! stream with three replicas takes and keeps acknowledged writes while any
//! one server is killed, and a restarted server catches up.

use aether_testkit::nats::NatsCluster;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use std::time::{Duration, Instant};

/// Publishes with a message id (so a retry after a lost answer is not
/// stored twice), retrying until acknowledged: while a server is down the
/// stream may be electing a new leader.
async fn publish(js: &jetstream::Context, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("m-{n}").as_str());
        let acked = match js.publish_with_headers(format!("t.{n}"), headers, "x".into()).await {
            Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match acked {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => panic!("message {n} not acknowledged within 30 s: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Waits until the stream holds `messages` and all three replicas are current.
async fn caught_up(js: &jetstream::Context, messages: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = match js.get_stream("T").await {
            Ok(mut stream) => stream.info().await.ok().cloned(),
            Err(_) => None,
        };
        let state = info.as_ref().map(|i| {
            let cluster = i.cluster.as_ref();
            let replicas = cluster.map_or(0, |c| c.replicas.iter().filter(|r| r.current && !r.offline).count());
            (i.state.messages, cluster.and_then(|c| c.leader.clone()).is_some(), replicas)
        });
        if state == Some((messages, true, 2)) {
            return;
        }
        assert!(Instant::now() < deadline, "not caught up within 30 s: {state:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_stream_keeps_every_acknowledged_write_while_any_one_server_is_down() {
    let mut cluster = NatsCluster::start(3);
    assert_eq!(cluster.len(), 3);
    let client = cluster.client().await;
    let js = jetstream::new(client);
    let config = stream::Config {
        name: "T".into(),
        subjects: vec!["t.>".into()],
        num_replicas: 3,
        duplicate_window: Duration::from_secs(120),
        ..stream::Config::default()
    };
    js.create_stream(config).await.unwrap();
    let mut sent = 0;
    for victim in 0..3 {
        for _ in 0..10 {
            publish(&js, sent).await;
            sent += 1;
        }
        cluster.stop(victim);
        assert!(!cluster.is_running(victim));
        for _ in 0..10 {
            publish(&js, sent).await;
            sent += 1;
        }
        cluster.restart(victim);
        caught_up(&js, sent as u64).await;
    }
    // Each server alone answers with everything acknowledged.
    for url in cluster.urls() {
        let alone = async_nats::connect(&url).await.unwrap();
        let mut stream = jetstream::new(alone).get_stream("T").await.unwrap();
        assert_eq!(stream.info().await.unwrap().state.messages, sent as u64, "through {url}");
    }
}
