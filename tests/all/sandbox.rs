//! Invariant deterministic-guests: no ambient authority, and replay is deterministic.

use crate::support;
use aether_host::CommandOutcome;
use faulty::Probe;

#[derive(serde::Serialize)]
enum Cmd {
    Probe,
    ReadFile,
}

async fn probe(kit: &aether_host::testkit::TestKit, id: &str) -> (Probe, u64) {
    let outcome = kit.send("Prober", id, &Cmd::Probe, None).await.unwrap();
    let CommandOutcome::Accepted { events, version, .. } = outcome else { panic!("{outcome:?}") };
    (rmp_serde::from_slice(&events[0].payload).unwrap(), version)
}

#[tokio::test]
async fn a_guest_sees_no_environment_and_only_the_recorded_time() {
    let kit = support::faulty().await;
    let (seen, _) = probe(&kit, "p-1").await;
    assert_eq!((seen.env, seen.args), (0, 0), "no environment variables or arguments: {seen:?}");
    // wasi-libc reports "/" when the host gives no working directory; there
    // is nothing under it (see `files_are_not_there_to_read`).
    assert!(seen.cwd.is_empty() || seen.cwd == "/", "no working directory: {seen:?}");
    assert_eq!(seen.now_ms, seen.command_ms, "the clock reads the command's recorded time");
}

#[tokio::test]
async fn randomness_is_seeded_from_actor_and_version() {
    let kit = support::faulty().await;
    let (a1, _) = probe(&kit, "same").await;
    let (a2, _) = probe(&kit, "same").await;
    assert_ne!(a1.random, a2.random, "a new version draws new numbers");
    let other = support::faulty().await;
    let (b1, _) = probe(&other, "same").await;
    assert_eq!(a1.random, b1.random, "the same actor at the same version draws the same numbers");
    let (c1, _) = probe(&kit, "different").await;
    assert_ne!(a1.random, c1.random);
}

#[tokio::test]
async fn files_are_not_there_to_read() {
    let kit = support::faulty().await;
    let err = kit.send("Prober", "fs", &Cmd::ReadFile, None).await.unwrap_err();
    assert!(err.to_string().contains("wasi:filesystem"), "the denied import is named: {err}");
    assert!(kit.runtime().events("Prober", "fs", 0, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn replaying_the_same_events_twice_gives_byte_identical_state() {
    let kit = support::bank().await;
    kit.send("Account", "det", &bank::AccountCommand::Open { owner: "ünïcødé ada".into() }, None).await.unwrap();
    for amount in [3, 1, 4, 1, 5, 9, 2, 6] {
        kit.send("Account", "det", &bank::AccountCommand::Deposit { amount }, None).await.unwrap();
    }
    let (_, first) = kit.runtime().state_at("Account", "det", 9).await.unwrap();
    let (_, second) = kit.runtime().state_at("Account", "det", 9).await.unwrap();
    kit.runtime().passivate_all().await;
    let (_, third) = kit.runtime().state("Account", "det").await.unwrap();
    assert_eq!(first, second);
    assert_eq!(first, third);
}
