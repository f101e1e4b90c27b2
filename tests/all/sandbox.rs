//! Invariant deterministic-guests: no ambient authority, and replay is deterministic.

use crate::support;
use aether_host::CommandOutcome;
use faulty::Probe;

#[derive(serde::Serialize)]
enum Cmd {
    Probe,
    ReadFile,
}

async fn probe(kit: &aether_testkit::TestKit, id: &str) -> (Probe, u64) {
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

/// An `apply` that reads the clock and randomness sees each event's own
/// recorded time and a seed from its version, identically when the event is
/// folded as it is decided, replayed after passivation (from a snapshot, in
/// batches of three), and replayed to every earlier version (time travel,
/// from the start or a snapshot, in every batch split). They used to be set
/// once per call: the command's (or the batch's first event's) for all.
#[tokio::test]
async fn apply_reads_each_events_own_time_and_randomness_on_every_path() {
    use aether_host::{ActorConfig, EngineConfig, RuntimeConfig};
    use clocked::{StampCommand, Stamps};
    let config =
        RuntimeConfig::default().with_actor(ActorConfig::default().with_snapshot_every(4).with_replay_batch(3));
    let kit = aether_testkit::TestKit::with_config(
        &support::component("tests/guests/clocked"),
        EngineConfig::default(),
        config,
    )
    .await;
    for events in [3, 1, 4, 2, 5] {
        kit.send("Stamps", "s", &StampCommand::Stamp { events }, None).await.unwrap();
        // Commands a few milliseconds apart are recorded at different times.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let decided: Stamps = kit.state("Stamps", "s").await;
    let stored = kit.runtime().events("Stamps", "s", 0, 100).await.unwrap();
    assert_eq!(decided.seen.len(), 15);
    for (seen, event) in decided.seen.iter().zip(&stored) {
        assert_eq!(seen.now_ms, event.provenance.timestamp_ms, "event {}: its own recorded time", event.version);
    }
    let mut randoms: Vec<u64> = decided.seen.iter().map(|s| s.random).collect();
    randoms.sort_unstable();
    randoms.dedup();
    assert_eq!(randoms.len(), 15, "every event draws its own numbers");

    kit.runtime().passivate_all().await;
    let replayed: Stamps = kit.state("Stamps", "s").await;
    assert_eq!(replayed, decided, "replayed from a snapshot in batches of three, the state is the decided one");
    for version in 1..=15u64 {
        let (at, bytes) = kit.runtime().state_at("Stamps", "s", version).await.unwrap();
        let travelled: Stamps = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(at, version);
        assert_eq!(travelled.seen, decided.seen[..version as usize], "replayed to version {version}");
    }
}
