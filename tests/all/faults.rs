//! Invariant fault-isolation: a guest fault fails only its own command; the
//! VM is rebuilt from the store and the host keeps serving, and a guest that
//! spins cannot stall other actors. Invariant nothing-skipped: an event that
//! cannot be applied stops its actor with an error naming the version.

use crate::support;
use aether_host::RuntimeConfig;
use aether_host::api::{self, ApiConfig};
use aether_host::wasm::GuestFault;
use aether_host::{ActorError, CommandOutcome};
use aether_testkit::TestKit;
use faulty::State;
use std::time::Duration;

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

/// A guest cannot stall the host: with more guests spinning than the runtime
/// has worker threads, another actor's command and `/healthz` answer while
/// every spinner still runs. (When guest calls held their worker for the
/// whole deadline, both waited behind the spinners: seconds.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_guests_cannot_starve_other_actors_or_the_api() {
    const SPINNERS: usize = 8;
    let engine = support::fault_engine().with_call_timeout(Duration::from_secs(1));
    let kit = TestKit::with_config(&support::component("tests/guests/faulty"), engine, RuntimeConfig::default()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let healthz = format!("http://{}/healthz", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(listener, kit.runtime().clone(), ApiConfig::default(), async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    assert_eq!(http.get(&healthz).send().await.unwrap().status(), 200);
    ping(&kit, "Trapper", "bystander").await;

    let spinning = std::time::Instant::now();
    let spinners: Vec<_> = (0..SPINNERS)
        .map(|i| {
            let kit = kit.clone();
            tokio::spawn(async move { kit.send("Looper", &format!("spinner-{i}"), &Cmd::Spin, None).await })
        })
        .collect();
    // On a worker, as every request is: long enough after the spinners
    // started for each to be inside its guest.
    let bystander = {
        let (kit, http, healthz) = (kit.clone(), http.clone(), healthz.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let asked = std::time::Instant::now();
            ping(&kit, "Trapper", "bystander").await;
            assert_eq!(http.get(&healthz).send().await.unwrap().status(), 200);
            asked.elapsed()
        })
    };
    let answered = bystander.await.unwrap();
    let done = spinners.iter().filter(|s| s.is_finished()).count();
    assert_eq!(done, 0, "the bystander and /healthz answered (in {answered:?}) only after {done} spinners were done");
    for spinner in spinners {
        let err = spinner.await.unwrap().expect_err("a spinner runs into its deadline");
        assert!(matches!(&err, ActorError::Fault { fault: GuestFault::Timeout { .. }, .. }), "{err}");
    }
    assert!(spinning.elapsed() >= Duration::from_secs(1), "each spinner had its whole deadline");
    ping(&kit, "Looper", "spinner-0").await;
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
