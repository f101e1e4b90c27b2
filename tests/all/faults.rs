//! Invariant 5: a guest fault fails only its own command; the VM is rebuilt
//! from the store and the host keeps serving. Invariant 6: an event that
//! cannot be applied stops its actor with an error naming the version.

use crate::support;
use aether_host::testkit::TestKit;
use aether_host::wasm::GuestFault;
use aether_host::{ActorError, CommandOutcome};
use faulty::State;

#[derive(serde::Serialize)]
enum Cmd {
    Ping,
    Panic,
    Spin,
    Gobble,
    Garble,
    Stray,
    PoisonNext,
}

async fn ping(kit: &TestKit, aggregate: &str, id: &str) {
    let outcome = kit.send(aggregate, id, &Cmd::Ping, None).await;
    assert!(matches!(outcome, Ok(CommandOutcome::Accepted { .. })), "{aggregate}/{id} still serves: {outcome:?}");
}

/// Pings twice, misbehaves, then checks the actor and a bystander still serve
/// and the actor's state was rebuilt from the store.
async fn misbehave(kit: &TestKit, aggregate: &str, command: Cmd) -> ActorError {
    let id = format!("{aggregate}-victim");
    ping(kit, aggregate, &id).await;
    ping(kit, aggregate, &id).await;
    let err = kit.send(aggregate, &id, &command, None).await.expect_err("the misbehaving command fails");
    ping(kit, "Trapper", "bystander").await;
    ping(kit, aggregate, &id).await;
    let state: State = kit.state(aggregate, &id).await;
    assert_eq!(state.pings, 3, "{aggregate}: the VM was rebuilt from the store, nothing lost or added");
    err
}

#[tokio::test]
async fn a_trap_fails_only_its_command() {
    let kit = support::faulty().await;
    let err = misbehave(&kit, "Trapper", Cmd::Panic).await;
    assert!(matches!(&err, ActorError::Fault { fault: GuestFault::Trap { .. }, .. }), "{err}");
    assert!(err.to_string().contains("boom on purpose"), "the panic message reaches the caller: {err}");
}

#[tokio::test]
async fn an_infinite_loop_is_interrupted_at_the_deadline() {
    let kit = support::faulty().await;
    let started = std::time::Instant::now();
    let err = misbehave(&kit, "Looper", Cmd::Spin).await;
    assert!(matches!(&err, ActorError::Fault { fault: GuestFault::Timeout { .. }, .. }), "{err}");
    assert!(err.to_string().contains("deadline"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test]
async fn a_memory_bomb_hits_the_cap() {
    let kit = support::faulty().await;
    let err = misbehave(&kit, "Hog", Cmd::Gobble).await;
    assert!(matches!(&err, ActorError::Fault { fault: GuestFault::OutOfMemory { .. }, .. }), "{err}");
    assert!(err.to_string().contains("memory cap"), "{err}");
}

#[tokio::test]
async fn undecodable_or_undeclared_events_are_refused_before_they_are_stored() {
    let kit = support::faulty().await;
    let err = misbehave(&kit, "Garbler", Cmd::Garble).await;
    assert!(matches!(&err, ActorError::Fault { fault: GuestFault::InvalidOutput { .. }, .. }), "{err}");
    assert!(err.to_string().contains("not MessagePack"), "{err}");
    let err = kit.send("Garbler", "Garbler-victim", &Cmd::Stray, None).await.unwrap_err();
    assert!(err.to_string().contains("`NotInTheModel` is not an event of `Garbler`"), "{err}");
    let events = kit.runtime().events("Garbler", "Garbler-victim", 0, 100).await.unwrap();
    assert!(events.iter().all(|e| e.name == "Pinged"), "nothing invalid was stored");
}

#[tokio::test]
async fn all_faults_at_once_leave_the_host_serving_everyone_else() {
    let kit = support::faulty().await;
    let mut tasks = Vec::new();
    for (aggregate, cmd) in
        [("Trapper", Cmd::Panic), ("Looper", Cmd::Spin), ("Hog", Cmd::Gobble), ("Garbler", Cmd::Garble)]
    {
        let kit = kit.clone();
        tasks.push(tokio::spawn(async move { kit.send(aggregate, "chaos", &cmd, None).await.is_err() }));
    }
    let mut pings = Vec::new();
    for i in 0..50 {
        let kit = kit.clone();
        pings.push(tokio::spawn(async move { ping(&kit, "Trapper", &format!("calm-{i}")).await }));
    }
    for t in tasks {
        assert!(t.await.unwrap(), "each misbehaving command failed");
    }
    for p in pings {
        p.await.unwrap();
    }
}

#[tokio::test]
async fn an_event_that_cannot_be_applied_stops_its_actor_naming_the_version() {
    let kit = support::faulty().await;
    ping(&kit, "Prober", "poisoned").await;
    // Appended fine: this guest's handle accepts it without folding it, and
    // its apply traps on it, so the actor cannot be rebuilt past it.
    let outcome = kit.send("Prober", "poisoned", &Cmd::PoisonNext, None).await.unwrap();
    assert!(matches!(outcome, CommandOutcome::Accepted { version: 2, .. }), "the append is durable: {outcome:?}");
    kit.runtime().passivate_all().await;
    let err = kit.send("Prober", "poisoned", &Cmd::Ping, None).await.unwrap_err();
    assert!(matches!(&err, ActorError::Replay { version: 2, .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("Prober/poisoned") && text.contains("version 2"), "{text}");
    // Never skipped: the next attempt fails the same way, and others still serve.
    let again = kit.send("Prober", "poisoned", &Cmd::Ping, None).await.unwrap_err();
    assert!(matches!(again, ActorError::Replay { version: 2, .. }));
    ping(&kit, "Prober", "healthy").await;
}
