//! The command path and actor lifecycle on the bank example.

use crate::support;
use crate::support::GatedStore;
use aether_host::{ActorConfig, ActorError, CommandOutcome, CommandRequest, RuntimeConfig};
use bank::{Account, AccountCommand, AccountCommand::*, AccountEvent::*};
use std::sync::Arc;
use std::time::Duration;

fn opened(owner: &str) -> bank::AccountEvent {
    Opened { owner: owner.into() }
}

#[tokio::test]
async fn given_when_then_against_the_real_component() {
    let kit = support::bank().await;
    kit.given("Account", "g-1", [opened("ada"), Deposited { amount: 10 }])
        .await
        .when(Withdraw { amount: 4 })
        .await
        .then_expect_events([Withdrawn { amount: 4 }]);
    let state: Account = kit.state("Account", "g-1").await;
    assert_eq!(state, Account { owner: "ada".into(), balance: 6, open: true });
    kit.given("Account", "g-2", [opened("bob")])
        .await
        .when(Withdraw { amount: 1 })
        .await
        .then_expect_rejection(bank::codes::INSUFFICIENT_FUNDS);
    kit.given::<bank::AccountEvent>("Account", "g-3", [])
        .await
        .when(Close)
        .await
        .then_expect_rejection(bank::codes::NOT_OPEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_deposits_give_the_exact_balance() {
    let kit = support::bank().await;
    kit.send("Account", "busy", &Open { owner: "ada".into() }, None).await.unwrap();
    let mut tasks = Vec::new();
    for i in 1..=100u64 {
        let kit = kit.clone();
        tasks.push(tokio::spawn(async move { kit.send("Account", "busy", &Deposit { amount: i }, None).await }));
    }
    for t in tasks {
        assert!(matches!(t.await.unwrap(), Ok(CommandOutcome::Accepted { .. })));
    }
    let state: Account = kit.state("Account", "busy").await;
    assert_eq!(state.balance, 5050);
    let (version, _) = kit.runtime().state("Account", "busy").await.unwrap();
    assert_eq!(version, 101, "one event per command, none lost or doubled");
}

/// A command accepted with no events names its id, and a retry of it (its
/// key chosen by the caller) is a duplicate, even after the actor forgot it:
/// the store recorded it.
#[tokio::test]
async fn a_command_accepted_with_no_events_is_recorded_and_its_retry_answers_the_same() {
    use clocked::StampCommand;
    let kit = aether_testkit::TestKit::from_file(&support::component("tests/guests/clocked")).await;
    let none = StampCommand::Stamp { events: 0 };
    let first = kit.send("Stamps", "s", &none, Some("nothing")).await.unwrap();
    let CommandOutcome::Accepted { version: 0, events, duplicate: false, command_id, .. } = &first else {
        panic!("{first:?}")
    };
    assert!(events.is_empty());
    assert_eq!(&**command_id, "nothing", "the answer names the command, events or none");
    kit.send("Stamps", "s", &StampCommand::Stamp { events: 2 }, Some("two")).await.unwrap();
    for forget in [false, true] {
        if forget {
            kit.runtime().passivate_all().await;
        }
        let again = kit.send("Stamps", "s", &none, Some("nothing")).await.unwrap();
        let CommandOutcome::Accepted { version: 0, events, duplicate: true, command_id, .. } = &again else {
            panic!("a retry answers as the original did, at the version it was accepted at: {again:?}")
        };
        assert!(events.is_empty() && &**command_id == "nothing");
    }
    // A generated id is its own, never null either.
    let minted = kit.send("Stamps", "s", &none, None).await.unwrap();
    assert!(
        matches!(&minted, CommandOutcome::Accepted { version: 2, duplicate: false, command_id, .. } if !command_id.is_empty())
    );
    assert_eq!(kit.runtime().events("Stamps", "s", 0, 100).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_repeated_command_id_appends_once_and_returns_the_original_result() {
    let kit = support::bank().await;
    kit.send("Account", "idem", &Open { owner: "ada".into() }, Some("open-1")).await.unwrap();
    let first = kit.send("Account", "idem", &Deposit { amount: 7 }, Some("dep-1")).await.unwrap();
    let again = kit.send("Account", "idem", &Deposit { amount: 7 }, Some("dep-1")).await.unwrap();
    let (
        CommandOutcome::Accepted { events: a, duplicate: false, .. },
        CommandOutcome::Accepted { events: b, duplicate: true, .. },
    ) = (&first, &again)
    else {
        panic!("expected an accepted command and its duplicate, got {first:?} / {again:?}");
    };
    assert_eq!(a, b, "the repeat returns the original events");
    // Repeating `Open` would be rejected by the new state; the id wins.
    let reopen = kit.send("Account", "idem", &Open { owner: "eve".into() }, Some("open-1")).await.unwrap();
    assert!(matches!(reopen, CommandOutcome::Accepted { duplicate: true, .. }), "{reopen:?}");
    // Even after the actor forgets (passivation), the store answers.
    kit.runtime().passivate_all().await;
    let later = kit.send("Account", "idem", &Deposit { amount: 7 }, Some("dep-1")).await.unwrap();
    assert!(matches!(later, CommandOutcome::Accepted { duplicate: true, .. }));
    // An id reused for another command is refused, not answered with the
    // first command's events, in memory and from the store.
    for _ in 0..2 {
        let reused = kit.send("Account", "idem", &Withdraw { amount: 7 }, Some("dep-1")).await.unwrap();
        assert!(
            matches!(&reused, CommandOutcome::Rejected { code, message }
                if code == "command-id-reused" && message.contains("already used for `Deposit`")),
            "{reused:?}"
        );
        kit.runtime().passivate_all().await;
    }
    let state: Account = kit.state("Account", "idem").await;
    assert_eq!(state.balance, 7, "the deposit was applied once");
    assert_eq!(kit.runtime().events("Account", "idem", 0, 100).await.unwrap().len(), 2);
}

#[tokio::test]
async fn state_survives_passivation_and_reactivation() {
    let kit = support::bank().await;
    kit.send("Account", "p", &Open { owner: "ada".into() }, None).await.unwrap();
    for amount in 1..=20 {
        kit.send("Account", "p", &Deposit { amount }, None).await.unwrap();
    }
    let before = kit.runtime().state("Account", "p").await.unwrap();
    let activations = kit.runtime().stats().activations.load(std::sync::atomic::Ordering::Relaxed);
    kit.runtime().passivate_all().await;
    assert_eq!(kit.runtime().live_actors(), 0);
    let after = kit.runtime().state("Account", "p").await.unwrap();
    assert_eq!(before, after, "version and state bytes are identical after reactivation");
    assert!(kit.runtime().stats().activations.load(std::sync::atomic::Ordering::Relaxed) > activations);
    kit.send("Account", "p", &Withdraw { amount: 210 }, None).await.unwrap();
    let state: Account = kit.state("Account", "p").await;
    assert_eq!(state.balance, 0);
}

#[tokio::test]
async fn snapshot_plus_tail_replay_equals_full_replay() {
    let config =
        RuntimeConfig::default().with_actor(ActorConfig::default().with_snapshot_every(10).with_replay_batch(7));
    let kit = support::bank_with(config).await;
    kit.send("Account", "s", &Open { owner: "ada".into() }, None).await.unwrap();
    for amount in 1..=34 {
        kit.send("Account", "s", &Deposit { amount }, None).await.unwrap();
    }
    let live = kit.runtime().state("Account", "s").await.unwrap();
    let snapshot = kit.runtime().store().load_snapshot(&aether_host::ActorId::new("Account", "s")).await.unwrap();
    let snapshot = snapshot.expect("a snapshot was taken");
    assert_eq!(snapshot.version, 30, "snapshots every 10 events");
    // Reactivation restores the snapshot and replays versions 31..=35.
    kit.runtime().passivate_all().await;
    let replayed = kit.runtime().state("Account", "s").await.unwrap();
    assert_eq!(live, replayed);
    // A full replay without the snapshot (time travel to the head) agrees too.
    let full = kit.runtime().state_at("Account", "s", 35).await.unwrap();
    assert_eq!(live, full);
}

#[tokio::test]
async fn time_travel_replays_to_each_earlier_version() {
    let kit = support::bank().await;
    kit.send("Account", "tt", &Open { owner: "ada".into() }, None).await.unwrap();
    for amount in [5, 10, 20] {
        kit.send("Account", "tt", &Deposit { amount }, None).await.unwrap();
    }
    for (version, balance) in [(1, 0), (2, 5), (3, 15), (4, 35)] {
        let (v, bytes) = kit.runtime().state_at("Account", "tt", version).await.unwrap();
        let state: Account = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!((v, state.balance), (version, balance));
    }
}

#[tokio::test]
async fn the_least_recently_used_actors_beyond_the_cap_are_passivated() {
    let config = RuntimeConfig::default().with_max_live_actors(5);
    let kit = support::bank_with(config).await;
    for i in 0..20 {
        kit.send("Account", &format!("lru-{i}"), &Open { owner: format!("o{i}") }, None).await.unwrap();
    }
    assert!(kit.runtime().live_actors() <= 5, "live actors: {}", kit.runtime().live_actors());
    // The first actors come back transparently.
    kit.send("Account", "lru-0", &Deposit { amount: 3 }, None).await.unwrap();
    let state: Account = kit.state("Account", "lru-0").await;
    assert_eq!((state.owner.as_str(), state.balance), ("o0", 3));
}

#[tokio::test]
async fn idle_actors_are_passivated() {
    let config = RuntimeConfig::default().with_idle_timeout(Duration::from_millis(50));
    let kit = support::bank_with(config).await;
    kit.send("Account", "idle", &Open { owner: "ada".into() }, None).await.unwrap();
    assert_eq!(kit.runtime().live_actors(), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while kit.runtime().live_actors() > 0 {
        assert!(std::time::Instant::now() < deadline, "the idle actor was never passivated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let state: Account = kit.state("Account", "idle").await;
    assert!(state.open, "it comes back on next use");
}

#[tokio::test]
async fn unknown_aggregates_commands_and_bad_payloads_are_refused_by_name() {
    let kit = support::bank().await;
    let request = |aggregate: &str, command: &str, payload: Vec<u8>| aether_host::CommandRequest {
        aggregate: aggregate.into(),
        id: "x".into(),
        command: command.into(),
        payload,
        ..Default::default()
    };
    let err = kit.runtime().execute(request("Acount", "Open", vec![0xc0])).await.unwrap_err();
    assert!(matches!(err, ActorError::UnknownAggregate { .. }), "{err}");
    assert!(err.to_string().contains("Account"), "lists the valid ones: {err}");
    let err = kit.runtime().execute(request("Account", "Steal", vec![0xc0])).await.unwrap_err();
    assert!(err.to_string().contains("Open, Deposit, Withdraw, Close"), "{err}");
    let bad = rmp_serde::to_vec_named(&serde_json::json!({ "amount": "lots" })).unwrap();
    let err = kit.runtime().execute(request("Account", "Deposit", bad)).await.unwrap_err();
    assert!(matches!(err, ActorError::BadPayload { .. }), "{err}");
    assert!(kit.runtime().events("Account", "x", 0, 10).await.unwrap().is_empty(), "nothing appended");
}

#[tokio::test]
async fn every_event_records_its_provenance() {
    let kit = support::bank().await;
    let request = aether_host::CommandRequest {
        aggregate: "Account".into(),
        id: "prov".into(),
        command: "Open".into(),
        payload: rmp_serde::to_vec_named(&serde_json::json!({ "owner": "ada" })).unwrap(),
        command_id: Some("cmd-1".into()),
        correlation_id: Some("corr-1".into()),
        causation_id: Some("cause-1".into()),
        fence: None,
    };
    kit.runtime().execute(request).await.unwrap();
    let events = kit.runtime().events("Account", "prov", 0, 10).await.unwrap();
    let p = &events[0].provenance;
    assert_eq!((&*p.command_id, &*p.correlation_id, &*p.causation_id), ("cmd-1", "corr-1", "cause-1"));
    assert_eq!(&p.component_hash, kit.runtime().component().hash());
    assert_eq!(p.component_hash.len(), 64, "sha-256 hex");
    assert!(p.timestamp_ms > 1_600_000_000_000, "a real wall-clock time: {}", p.timestamp_ms);
}

#[tokio::test]
async fn the_shop_example_runs_on_the_same_host() {
    let kit = aether_testkit::TestKit::from_file(&support::component("examples/shop")).await;
    let model = kit.runtime().model();
    let names: Vec<_> = model.aggregates.iter().map(|a| a.name.as_str()).collect();
    assert!(names.len() >= 2, "several aggregates: {names:?}");
    assert_eq!(kit.runtime().model().name, "shop");
}

// Current-thread on purpose: each host's actor is one command stale when the
// other host's task runs, so the race is certain rather than likely.
#[tokio::test]
async fn two_hosts_on_one_store_resolve_conflicts_without_losing_a_deposit() {
    use aether_host::{AetherEngine, DomainComponent, EngineConfig, MemoryStore, Runtime};
    use std::sync::Arc;
    let engine = AetherEngine::new(EngineConfig::default().with_max_instances(64)).unwrap();
    let wasm = support::component("examples/bank");
    let store: Arc<dyn aether_host::EventStore> = Arc::new(MemoryStore::new());
    let hosts: Vec<Runtime> = (0..2)
        .map(|_| {
            let component = DomainComponent::from_file(&engine, &wasm).unwrap();
            Runtime::new(component, store.clone(), RuntimeConfig::default())
        })
        .collect();
    let send = |host: &Runtime, command: AccountCommandJson| {
        let host = host.clone();
        async move {
            host.execute(aether_host::CommandRequest {
                aggregate: "Account".into(),
                id: "shared".into(),
                command: command.0.into(),
                payload: rmp_serde::to_vec_named(&command.1).unwrap(),
                ..Default::default()
            })
            .await
        }
    };
    send(&hosts[0], AccountCommandJson("Open", serde_json::json!({ "owner": "ada" }))).await.unwrap();
    // Both hosts hold a live actor for the same account, each a VM of its own.
    send(&hosts[1], AccountCommandJson("Deposit", serde_json::json!({ "amount": 1 }))).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..60u64 {
        let host = hosts[(i % 2) as usize].clone();
        let fut = send(&host, AccountCommandJson("Deposit", serde_json::json!({ "amount": 1 })));
        tasks.push(tokio::spawn(fut));
    }
    for t in tasks {
        let outcome = t.await.unwrap();
        assert!(matches!(outcome, Ok(CommandOutcome::Accepted { .. })), "{outcome:?}");
    }
    let conflicts: u64 = hosts.iter().map(|h| h.stats().conflicts.load(std::sync::atomic::Ordering::Relaxed)).sum();
    assert!(conflicts > 0, "the hosts really did race");
    for host in &hosts {
        let (version, bytes) = host.state("Account", "shared").await.unwrap();
        // A read catches the live actor up with the store first: both hosts
        // see every deposit, whichever appended it.
        let state: Account = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!((version, state.balance), (62, 61));
    }
    assert_eq!(
        store.version(&aether_host::ActorId::new("Account", "shared")).await.unwrap(),
        62,
        "every deposit stored once"
    );
    // A rejection is decided on the latest state, whichever host takes it.
    for host in &hosts {
        let outcome = send(host, AccountCommandJson("Withdraw", serde_json::json!({ "amount": 61 }))).await.unwrap();
        assert!(matches!(outcome, CommandOutcome::Rejected { .. } | CommandOutcome::Accepted { .. }), "{outcome:?}");
    }
    let events = store.read(&aether_host::ActorId::new("Account", "shared"), 62, 10).await.unwrap();
    assert_eq!(
        events.len(),
        1,
        "the first withdrawal of the full balance succeeded on either host, the second was rejected"
    );
}

struct AccountCommandJson(&'static str, serde_json::Value);

/// `Runtime::execute` is cancel safe: a caller that gives up on a command
/// while its append is in flight leaves the actor able to serve the next
/// one, on the state the store has (the VM held the dropped command's
/// events tentatively; it used to stay behind and refuse every later call).
#[tokio::test]
async fn a_command_dropped_during_its_append_leaves_the_actor_serving() {
    let engine = aether_host::AetherEngine::new(aether_host::EngineConfig::default()).unwrap();
    let component = aether_host::DomainComponent::from_file(&engine, &support::component("examples/bank")).unwrap();
    let store = Arc::new(GatedStore::default());
    let runtime = aether_host::Runtime::new(component, store.clone(), RuntimeConfig::default());
    let send = |command: AccountCommand| {
        let (name, payload) = aether_guest::codec::split(&command).unwrap();
        let request = CommandRequest {
            aggregate: "Account".into(),
            id: "dropped".into(),
            command: name,
            payload,
            ..CommandRequest::default()
        };
        runtime.execute(request)
    };
    store.appends.add_permits(1);
    send(Open { owner: "ada".into() }).await.unwrap();

    let gave_up = tokio::time::timeout(Duration::from_millis(50), send(Deposit { amount: 5 })).await;
    assert!(gave_up.is_err(), "the append waited at the gate and the caller gave up on it");
    store.appends.add_permits(10);
    let outcome = send(Deposit { amount: 7 }).await.expect("the next command is served");
    assert!(matches!(outcome, CommandOutcome::Accepted { version: 2, .. }), "{outcome:?}");
    let (_, state) = runtime.state("Account", "dropped").await.unwrap();
    let state: Account = rmp_serde::from_slice(&state).unwrap();
    assert_eq!(state.balance, 7, "the dropped deposit was never appended, and is not in the state");
}
