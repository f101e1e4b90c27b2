//! `Runtime::upgrade` on the in-memory store: live actors move over at
//! their next command, from a snapshot only when the models say the new
//! code reads the old state, and never skip an event they cannot read.

use super::support;
use aether_host::runtime::RuntimeConfig;
use aether_host::upgrade::{UpgradeError, UpgradeOptions};
use aether_host::{ActorConfig, ActorError, CommandOutcome, DomainComponent, EngineConfig};
use bank::AccountCommand::*;
use std::sync::atomic::Ordering;

async fn kit() -> aether_testkit::TestKit {
    // A snapshot every two events.
    let config = RuntimeConfig::default().with_actor(ActorConfig::default().with_snapshot_every(2));
    aether_testkit::TestKit::with_config(&support::component("examples/bank"), EngineConfig::default(), config).await
}

fn load(kit: &aether_testkit::TestKit, crate_dir: &str) -> DomainComponent {
    let engine = kit.runtime().component().engine().clone();
    DomainComponent::from_file(&engine, &support::component(crate_dir)).unwrap()
}

fn event_names(outcome: &CommandOutcome) -> Vec<&str> {
    match outcome {
        CommandOutcome::Accepted { events, .. } => events.iter().map(|e| e.name.as_str()).collect(),
        CommandOutcome::Rejected { code, .. } => panic!("rejected: {code}"),
    }
}

#[tokio::test]
async fn live_actors_move_over_at_their_next_command_from_snapshots_the_models_trust() {
    let kit = kit().await;
    let v1 = kit.runtime().component().component().clone();
    for command in [Open { owner: "a".into() }, Deposit { amount: 500 }, Deposit { amount: 1 }, Deposit { amount: 1 }] {
        kit.send("Account", "a", &command, None).await.unwrap();
        kit.send("Account", "b", &command, None).await.unwrap();
    }
    let stats = kit.runtime().stats();

    // v2 adds an event and keeps the state's shape: v1's snapshots read.
    let report = kit.runtime().upgrade(load(&kit, "tests/guests/bank-v2-fee"), &UpgradeOptions::default()).unwrap();
    let v2 = kit.runtime().component().component().clone();
    assert_eq!((report.previous.as_str(), report.current.as_str()), (&**v1.hash(), &**v2.hash()));
    assert_eq!(report.trusted_snapshots[&**v1.hash()], ["Account", "Transfer"]);
    assert_eq!(stats.moved_over.load(Ordering::Relaxed), 0, "nothing moves before its next command");

    let (activations, replayed) = (stats.activations.load(Ordering::Relaxed), stats.replayed.load(Ordering::Relaxed));
    let outcome = kit.send("Account", "a", &Withdraw { amount: 150 }, None).await.unwrap();
    assert_eq!(event_names(&outcome), ["Withdrawn", "FeeCharged"], "decided by v2");
    assert_eq!(stats.moved_over.load(Ordering::Relaxed), 1);
    assert_eq!(stats.activations.load(Ordering::Relaxed), activations + 1);
    assert_eq!(stats.replayed.load(Ordering::Relaxed), replayed, "restored from v1's snapshot at version 4");
    let events = kit.runtime().events("Account", "a", 0, 10).await.unwrap();
    assert_eq!(&events[4].provenance.component_hash, v2.hash());
    assert_eq!(&events[3].provenance.component_hash, v1.hash());

    // Under v2 "b" moves over and writes a snapshot v1 will not trust.
    kit.send("Account", "b", &Deposit { amount: 1 }, None).await.unwrap();
    kit.send("Account", "b", &Deposit { amount: 1 }, None).await.unwrap();

    // Rolling back to v1, which lacks `FeeCharged`, must be forced.
    let refused = kit.runtime().upgrade(v1.clone(), &UpgradeOptions::default()).unwrap_err();
    assert!(matches!(&refused, UpgradeError::Removes { removed } if removed == &["event `Account.FeeCharged`"]));
    assert_eq!(kit.runtime().component().hash(), v2.hash(), "a refused upgrade changes nothing");
    let report = kit.runtime().upgrade(v1.clone(), &UpgradeOptions { force: true }).unwrap();
    // v2 may have folded fees into Account's snapshots: only Transfer's read.
    assert_eq!(report.trusted_snapshots.get(&**v2.hash()).map(Vec::as_slice), Some(&["Transfer".to_owned()][..]));

    // "b" has only v1's events, but its snapshot is v2's: replayed whole.
    let replayed = stats.replayed.load(Ordering::Relaxed);
    kit.send("Account", "b", &Deposit { amount: 1 }, None).await.unwrap();
    assert_eq!(stats.replayed.load(Ordering::Relaxed), replayed + 6, "v2's snapshot is not trusted");
    let state: bank::Account = kit.state("Account", "b").await;
    assert_eq!(state.balance, 505);

    // "a" holds a `FeeCharged` v1 cannot apply: its actor stops there, named.
    let err = kit.send("Account", "a", &Deposit { amount: 1 }, None).await.unwrap_err();
    assert!(matches!(&err, ActorError::Replay { version: 6, .. }), "{err}");
}

#[tokio::test]
async fn a_component_of_another_domain_is_refused() {
    let kit = kit().await;
    let shop = load(&kit, "examples/shop");
    let err = kit.runtime().upgrade(shop, &UpgradeOptions { force: true }).unwrap_err();
    assert_eq!(err.kind(), aether_host::api::ErrorKind::OtherDomain);
    assert_eq!(kit.runtime().domain(), "bank");
}

/// `Rollout` on a real `nats-server`: a node publishes its component when
/// the cluster has none, follows a new current component, and refuses (and
/// says why, under its node key) one that is missing from the bucket or
/// that its runtime refuses, running what it ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_follows_the_current_component_and_reports_what_it_cannot_run() {
    use aether_host::cluster::{Current, Rollout};
    use aether_host::names::NatsNames;
    use std::time::{Duration, Instant};

    let server = aether_testkit::nats::NatsServer::start();
    let kit = kit().await;
    let runtime = kit.runtime().clone();
    let names = NatsNames::new(Some("rollout-test"));
    let read = |dir: &str| std::fs::read(support::component(dir)).unwrap();
    let (v1, v2, renamed) =
        (read("examples/bank"), read("tests/guests/bank-v2-fee"), read("tests/guests/bank-v2-renamed"));
    let v1_hash = kit.runtime().component().hash().to_string();
    let rollout = Rollout::start(server.client().await, names.clone(), "n1", runtime.clone(), &v1, 1).await.unwrap();
    assert_eq!(rollout.current().await.unwrap().map(|c| c.hash), Some(v1_hash.clone()), "published as the first");

    let node = || async { rollout.nodes(&["n1".to_string()]).await["n1"].clone().expect("n1 reported") };

    let current = rollout.publish(&v2, false).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while node().await.hash != current.hash {
        assert!(Instant::now() < deadline, "n1 moves to v2 and says so");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(&**runtime.component().hash(), current.hash);
    let v2_hash = current.hash;

    // The renamed v2 removes an event: this runtime refuses it, unforced.
    let refused = rollout.publish(&renamed, false).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = node().await;
        if status.wanted.as_deref() == Some(&*refused.hash) {
            break status;
        }
        assert!(Instant::now() < deadline, "n1 says why it cannot move");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.hash, v2_hash, "{status:?}");
    assert!(status.error.as_deref().unwrap().contains("event `Account.Withdrawn`"), "{status:?}");
    assert_eq!(&**runtime.component().hash(), v2_hash);

    // A current component whose bytes are not in the bucket.
    let missing = Current { hash: "ab".repeat(32), size: 10, chunks: 1, force: true };
    let client = server.client().await;
    let kv = async_nats::jetstream::new(client).get_key_value(names.components_bucket()).await.unwrap();
    kv.put(names.component_current("bank"), serde_json::to_vec(&missing).unwrap().into()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = node().await;
        if status.wanted.as_deref() == Some(&*missing.hash) {
            break status;
        }
        assert!(Instant::now() < deadline, "n1 says the bytes are missing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.error.as_deref().unwrap().contains("missing chunk 0 of 1"), "{status:?}");
    assert_eq!(&**runtime.component().hash(), v2_hash, "still serving v2");
    let outcome = kit.send("Account", "r", &Open { owner: "r".into() }, None).await.unwrap();
    assert!(matches!(outcome, CommandOutcome::Accepted { .. }));
}

/// A command appending when the upgrade comes finishes on the old code
/// and records its hash; the command that waited behind it for the actor
/// runs on the new code (invariant: one-component-per-command).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_in_flight_finishes_on_the_old_code_and_the_next_runs_on_the_new() {
    use crate::support::GatedStore;
    use aether_host::{AetherEngine, CommandRequest, Runtime};
    use std::sync::Arc;
    use std::time::Duration;

    let engine = AetherEngine::new(EngineConfig::default()).unwrap();
    let v1 = DomainComponent::from_file(&engine, &support::component("examples/bank")).unwrap();
    let v2 = DomainComponent::from_file(&engine, &support::component("tests/guests/bank-v2-fee")).unwrap();
    let (v1_hash, v2_hash) = (v1.hash().clone(), v2.hash().clone());
    let store = Arc::new(GatedStore::default());
    let runtime = Runtime::new(v1, store.clone(), RuntimeConfig::default());
    let send = |command: bank::AccountCommand| {
        let (name, payload) = aether_guest::codec::split(&command).unwrap();
        let runtime = runtime.clone();
        let request = CommandRequest {
            aggregate: "Account".into(),
            id: "f".into(),
            command: name,
            payload,
            ..Default::default()
        };
        tokio::spawn(async move { runtime.execute(request).await })
    };
    store.appends.add_permits(2);
    send(Open { owner: "f".into() }).await.unwrap().unwrap();
    send(Deposit { amount: 500 }).await.unwrap().unwrap();

    // Decided by v1, held at its append; a second command waits for the actor.
    let in_flight = send(Withdraw { amount: 150 });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = send(Withdraw { amount: 150 });
    tokio::time::sleep(Duration::from_millis(300)).await;
    runtime.upgrade(v2, &UpgradeOptions::default()).unwrap();
    store.appends.add_permits(2);

    let first = in_flight.await.unwrap().unwrap();
    assert_eq!(event_names(&first), ["Withdrawn"], "v1 decided it: no fee");
    let second = waiting.await.unwrap().unwrap();
    assert_eq!(event_names(&second), ["Withdrawn", "FeeCharged"], "v2 decided it");
    let events = runtime.events("Account", "f", 0, 10).await.unwrap();
    let hashes: Vec<_> = events.iter().map(|e| e.provenance.component_hash.clone()).collect();
    assert_eq!(hashes, [v1_hash.clone(), v1_hash.clone(), v1_hash, v2_hash.clone(), v2_hash]);
}
