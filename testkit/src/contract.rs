//! The behaviour every [`EventStore`] must show, as reusable checks.
//!
//! Each store's tests call [`check_all`] on a fresh, empty store, so the
//! in-memory, embedded and JetStream stores are held to one contract. A
//! store that de-duplicates for a while only (JetStream's duplicate window)
//! runs [`check_all_beyond`] with that while, so idempotency is checked
//! after it has passed.

use aether_host::store::{
    ActorId, AppendRequest, EventStore, NewEvent, Provenance, RecordedCommand, Snapshot, StoreError,
};
use std::sync::Arc;
use std::time::Duration;

/// Runs every check on an empty store.
///
/// # Panics
///
/// On the first behaviour that breaks the contract, naming it.
pub async fn check_all(store: &dyn EventStore) {
    check_all_beyond(store, Duration::ZERO).await;
}

/// Runs every check on an empty store, retrying old commands only once
/// `window` (the store's duplicate window, if it has one) has passed.
///
/// # Panics
///
/// On the first behaviour that breaks the contract, naming it.
pub async fn check_all_beyond(store: &dyn EventStore, window: Duration) {
    appends_in_order_and_reads_from_a_version(store).await;
    rejects_a_stale_expected_version(store).await;
    answers_a_repeated_command_id_with_the_original(store).await;
    answers_a_repeat_of_the_last_append_with_a_minted_id(store).await;
    answers_an_older_command_as_a_duplicate_however_late(store, window).await;
    records_a_command_accepted_with_no_events(store).await;
    keeps_streams_apart_whatever_their_ids(store).await;
    keeps_the_latest_snapshot(store).await;
    refuses_an_empty_append_with_a_minted_id(store).await;
    keeps_each_command_beside_its_events(store).await;
    lists_its_actors(store).await;
    keeps_a_log_of_every_append(store).await;
}

fn provenance(command_id: &str) -> Provenance {
    Provenance {
        command_id: command_id.into(),
        correlation_id: format!("corr-{command_id}").into(),
        causation_id: format!("cause-{command_id}").into(),
        timestamp_ms: 1_700_000_000_000,
        component_hash: "ab".repeat(32).into(),
        // Every check's reads compare provenances whole: the command too.
        command: Some(RecordedCommand { name: format!("Do-{command_id}"), payload: vec![0x91, 0x2a] }),
    }
}

fn request(expected_version: u64, command_id: &str, names: &[&str]) -> AppendRequest {
    AppendRequest {
        expected_version,
        provenance: Arc::new(provenance(command_id)),
        events: names.iter().map(|n| NewEvent { name: n.to_string(), payload: vec![0x81, 0xa1, b'n', 0x01] }).collect(),
        // The strictest case: an id that may come again.
        id_from_caller: true,
        shard_epoch: Some(7),
    }
}

async fn appends_in_order_and_reads_from_a_version(store: &dyn EventStore) {
    let actor = ActorId::new("Account", "order");
    let a = store.append(&actor, request(0, "c1", &["Opened"])).await.expect("first append");
    assert_eq!((a.first_version, a.last_version, a.duplicate), (1, 1, false));
    let b = store.append(&actor, request(1, "c2", &["Deposited", "Deposited", "Withdrawn"])).await.expect("append");
    assert_eq!((b.first_version, b.last_version), (2, 4));
    assert_eq!(store.version(&actor).await.unwrap(), 4);

    let all = store.read(&actor, 0, 100).await.unwrap();
    let versions: Vec<_> = all.iter().map(|e| e.version).collect();
    assert_eq!(versions, [1, 2, 3, 4], "events come back in version order");
    assert_eq!(all[1].name, "Deposited");
    assert_eq!(all[1].payload, vec![0x81, 0xa1, b'n', 0x01], "payload round-trips");
    assert_eq!(*all[3].provenance, provenance("c2"), "provenance is kept per event");
    assert_eq!(*all[0].provenance, provenance("c1"));

    let tail = store.read(&actor, 2, 100).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.version).collect::<Vec<_>>(), [3, 4], "reads start after the given version");
    assert!(store.read(&actor, 4, 100).await.unwrap().is_empty(), "nothing after the last version");
    let mut from = 0;
    let mut seen = Vec::new();
    loop {
        let batch = store.read(&actor, from, 1).await.unwrap();
        let Some(last) = batch.last() else { break };
        from = last.version;
        seen.extend(batch.iter().map(|e| e.version));
    }
    assert_eq!(seen, [1, 2, 3, 4], "small batches page through the whole stream");
    assert!(
        store.find_command(&actor, "c2").await.unwrap().is_some_and(|a| (a.first_version, a.last_version) == (2, 4))
    );
    assert!(store.find_command(&actor, "nope").await.unwrap().is_none());
}

async fn rejects_a_stale_expected_version(store: &dyn EventStore) {
    let actor = ActorId::new("Account", "conflict");
    store.append(&actor, request(0, "k1", &["Opened"])).await.unwrap();
    match store.append(&actor, request(0, "k2", &["Deposited"])).await {
        Err(StoreError::Conflict { expected: 0, actual: 1, .. }) => {}
        other => panic!("a stale expected version must conflict with the actual version, got {other:?}"),
    }
    match store.append(&actor, request(5, "k3", &["Deposited"])).await {
        Err(StoreError::Conflict { expected: 5, actual: 1, .. }) => {}
        other => panic!("an expected version ahead of the stream must conflict, got {other:?}"),
    }
    assert_eq!(store.version(&actor).await.unwrap(), 1, "a conflicting append writes nothing");
}

async fn answers_a_repeated_command_id_with_the_original(store: &dyn EventStore) {
    let actor = ActorId::new("Account", "dedup");
    store.append(&actor, request(0, "open", &["Opened"])).await.unwrap();
    let first = store.append(&actor, request(1, "dep", &["Deposited", "Deposited"])).await.unwrap();
    // The same command retried, at the old and at a new expected version.
    for expected in [1, 3] {
        let again = store.append(&actor, request(expected, "dep", &["Deposited", "Deposited"])).await.unwrap();
        assert!(again.duplicate, "a repeated command id is reported as a duplicate");
        assert_eq!((again.first_version, again.last_version), (first.first_version, first.last_version));
    }
    assert_eq!(store.version(&actor).await.unwrap(), 3, "a repeated command id appends nothing");
}

/// An id the host minted names no earlier command, so a store need not
/// index it; but the one repeat that can happen, the same append sent again
/// after its answer was lost, is still a duplicate.
async fn answers_a_repeat_of_the_last_append_with_a_minted_id(store: &dyn EventStore) {
    let actor = ActorId::new("Account", "minted");
    let minted =
        |expected, id: &str, names: &[&str]| AppendRequest { id_from_caller: false, ..request(expected, id, names) };
    store.append(&actor, minted(0, "m-open", &["Opened"])).await.unwrap();
    let first = store.append(&actor, minted(1, "m-dep", &["Deposited", "Deposited"])).await.unwrap();
    let again = store.append(&actor, minted(1, "m-dep", &["Deposited", "Deposited"])).await.unwrap();
    assert!(again.duplicate, "a repeat of the last append is a duplicate, whoever chose its id");
    assert_eq!((again.first_version, again.last_version), (first.first_version, first.last_version));
    assert!(
        store.find_command(&actor, "m-dep").await.unwrap().is_some_and(|a| (a.first_version, a.last_version) == (2, 3)),
        "the last command is found by its id"
    );
    assert_eq!(store.version(&actor).await.unwrap(), 3, "the repeat wrote nothing");
}

/// A retry of a command that is neither the last nor recent (beyond any
/// duplicate window), at the version the stream has now and at older ones:
/// the original versions, nothing appended.
async fn answers_an_older_command_as_a_duplicate_however_late(store: &dyn EventStore, window: Duration) {
    let actor = ActorId::new("Account", "older");
    store.append(&actor, request(0, "old", &["Opened"])).await.unwrap();
    store.append(&actor, request(1, "mid", &["Deposited", "Deposited"])).await.unwrap();
    store.append(&actor, request(3, "new", &["Withdrawn"])).await.unwrap();
    if !window.is_zero() {
        tokio::time::sleep(window + Duration::from_millis(300)).await;
    }
    for expected in [4, 3, 1, 0] {
        for (id, names, versions) in [("mid", &["Deposited", "Deposited"][..], (2, 3)), ("old", &["Opened"], (1, 1))] {
            let again = store.append(&actor, request(expected, id, names)).await;
            let again = again.unwrap_or_else(|e| panic!("a retry of {id:?} at version {expected} failed: {e}"));
            assert!(again.duplicate, "a retry of the older command {id:?} at version {expected} is a duplicate");
            assert_eq!((again.first_version, again.last_version), versions, "{id:?} at version {expected}");
        }
    }
    assert_eq!(store.version(&actor).await.unwrap(), 4, "no retry of an older command appended anything");
    assert_eq!(store.read(&actor, 0, 100).await.unwrap().len(), 4);
    let found = store.find_command(&actor, "mid").await.unwrap().map(|a| (a.first_version, a.last_version));
    assert_eq!(found, Some((2, 3)), "an older command is found by its id");
}

/// A command accepted with no events whose id the caller chose is recorded
/// at the version it was decided at, without moving it; a retry answers a
/// duplicate with the empty range at that version.
async fn records_a_command_accepted_with_no_events(store: &dyn EventStore) {
    let actor = ActorId::new("Account", "no-events");
    store.append(&actor, request(0, "open", &["Opened"])).await.unwrap();
    let recorded = store.append(&actor, request(1, "noop", &[])).await.expect("a command with no events is recorded");
    assert_eq!((recorded.first_version, recorded.last_version, recorded.duplicate), (2, 1, false));
    assert_eq!(store.version(&actor).await.unwrap(), 1, "recording a command with no events moves no version");
    store.append(&actor, request(1, "dep", &["Deposited"])).await.expect("the next command appends at version 1");
    for expected in [1, 2] {
        let again = store.append(&actor, request(expected, "noop", &[])).await.unwrap();
        assert!(again.duplicate, "a retry of a command accepted with no events is a duplicate (at {expected})");
        assert_eq!((again.first_version, again.last_version), (2, 1), "accepted at version 1, no events");
    }
    let found = store.find_command(&actor, "noop").await.unwrap().map(|a| (a.first_version, a.last_version));
    assert_eq!(found, Some((2, 1)));
    // A retry that brings events this time is still the same command.
    let again = store.append(&actor, request(2, "noop", &["Deposited"])).await.unwrap();
    assert!(again.duplicate && (again.first_version, again.last_version) == (2, 1), "{again:?}");
    match store.append(&actor, request(0, "late", &[])).await {
        Err(StoreError::Conflict { expected: 0, actual: 2, .. }) => {}
        other => panic!("a command with no events decided at a stale version must conflict, got {other:?}"),
    }
    assert_eq!(store.version(&actor).await.unwrap(), 2);
    assert_eq!(store.read(&actor, 0, 100).await.unwrap().len(), 2, "only the events were appended");
}

async fn keeps_streams_apart_whatever_their_ids(store: &dyn EventStore) {
    let ids = ["a.b", "a b", "*", ">", "a.>", "ünï/cødé", "", "x".repeat(300).leak(), "a\nb", "%2E"];
    for (i, id) in ids.iter().enumerate() {
        let actor = ActorId::new("Account", *id);
        store
            .append(&actor, request(0, &format!("awkward-{i}"), &["Opened"]))
            .await
            .unwrap_or_else(|e| panic!("{id:?}: {e}"));
    }
    for id in ids {
        let actor = ActorId::new("Account", id);
        let events = store.read(&actor, 0, 10).await.unwrap();
        assert_eq!(events.len(), 1, "stream {id:?} holds exactly its own event");
    }
    let other = ActorId::new("Cart", "a.b");
    assert_eq!(store.version(&other).await.unwrap(), 0, "aggregates do not share streams");
}

async fn keeps_the_latest_snapshot(store: &dyn EventStore) {
    let actor = ActorId::new("Account", "snap");
    assert!(store.load_snapshot(&actor).await.unwrap().is_none());
    let snap = |version| Snapshot { version, component_hash: "cd".repeat(32), state: vec![version as u8; 1024] };
    store.save_snapshot(&actor, snap(10)).await.unwrap();
    store.save_snapshot(&actor, snap(20)).await.unwrap();
    assert_eq!(store.load_snapshot(&actor).await.unwrap(), Some(snap(20)));
    store.save_snapshot(&actor, snap(15)).await.unwrap();
    assert_eq!(
        store.load_snapshot(&actor).await.unwrap(),
        Some(snap(20)),
        "an older snapshot never replaces a newer one"
    );
}

/// An id the host minted cannot come again: nothing to record without events.
async fn refuses_an_empty_append_with_a_minted_id(store: &dyn EventStore) {
    let actor = ActorId::new("Account", "empty");
    let minted = AppendRequest { id_from_caller: false, ..request(0, "e", &[]) };
    assert!(matches!(store.append(&actor, minted).await, Err(StoreError::Invalid { .. })));
    assert_eq!(store.version(&actor).await.unwrap(), 0);
}

/// Each command's name and payload come back with its events, from every
/// event of it; a command stored without one (not recorded) comes back
/// without one.
async fn keeps_each_command_beside_its_events(store: &dyn EventStore) {
    let actor = ActorId::new("Account", "recorded");
    let payload = (0..=255u8).collect::<Vec<_>>();
    let mut recorded = request(0, "r1", &["Opened", "Deposited"]);
    Arc::make_mut(&mut recorded.provenance).command = Some(RecordedCommand { name: "Open".into(), payload });
    let expected = recorded.provenance.clone();
    store.append(&actor, recorded).await.expect("a recorded command");
    let mut unrecorded = request(2, "r2", &["Deposited"]);
    Arc::make_mut(&mut unrecorded.provenance).command = None;
    store.append(&actor, unrecorded).await.expect("a command not recorded");
    let events = store.read(&actor, 0, 10).await.unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].provenance, expected, "the command round-trips");
    assert_eq!(events[1].provenance, expected, "on every event of the command");
    assert_eq!(events[2].provenance.command, None, "a command not recorded reads as none");
}

/// A store lists the actors it holds events of, by aggregate.
async fn lists_its_actors(store: &dyn EventStore) {
    let ids = ["b", "a", "ü.x y", "a.b"];
    for id in ids {
        store.append(&ActorId::new("Listed", id), request(0, &format!("l-{id}"), &["Opened"])).await.unwrap();
    }
    store.append(&ActorId::new("Listed2", "z"), request(0, "l-z", &["Opened"])).await.unwrap();
    let mut expected: Vec<_> = ids.iter().map(|id| ActorId::new("Listed", *id)).collect();
    expected.sort();
    assert_eq!(store.actors(Some("Listed")).await.unwrap(), expected, "one aggregate's actors, in order");
    let all = store.actors(None).await.unwrap();
    assert!(all.windows(2).all(|w| w[0] < w[1]), "in order, each once: {all:?}");
    for actor in expected.iter().chain([&ActorId::new("Listed2", "z"), &ActorId::new("Account", "order")]) {
        assert!(all.contains(actor), "{actor} is listed");
    }
    assert!(store.actors(Some("Nobody")).await.unwrap().is_empty());
}

/// A store logs every append with events, in the order it took them, at
/// the position the append answered; duplicates, conflicts and commands
/// with no events add nothing.
async fn keeps_a_log_of_every_append(store: &dyn EventStore) {
    let head = store.log_head().await.unwrap();
    let (a, b) = (ActorId::new("Logged", "a"), ActorId::new("Logged", "b.ü"));
    let first = store.append(&a, request(0, "log-1", &["Opened", "Deposited"])).await.unwrap();
    let second = store.append(&b, request(0, "log-2", &["Opened"])).await.unwrap();
    assert!(store.append(&a, request(2, "log-1", &["Opened"])).await.unwrap().duplicate);
    assert!(store.append(&a, request(1, "log-x", &["Late"])).await.unwrap_err().is_conflict());
    store.append(&b, request(1, "log-empty", &[])).await.unwrap();
    let third = store.append(&a, request(2, "log-3", &["Closed"])).await.unwrap();
    assert!(head < first.position && first.position < second.position && second.position < third.position);
    assert_eq!(store.log_head().await.unwrap(), third.position, "the head is the newest append");

    let logged = store.read_log(head, 100).await.unwrap();
    let seen: Vec<_> = logged.iter().map(|c| (c.position, c.actor.clone(), c.events.len())).collect();
    assert_eq!(
        seen,
        [(first.position, a.clone(), 2), (second.position, b.clone(), 1), (third.position, a.clone(), 1)],
        "every append with events, once, in order"
    );
    assert_eq!(logged[0].events, store.read(&a, 0, 2).await.unwrap(), "the events as stored");
    assert_eq!(logged[2].events[0].version, 3);
    assert_eq!(&*logged[2].events[0].provenance.command_id, "log-3");

    let rest = store.read_log(first.position, 1).await.unwrap();
    assert_eq!(rest.len(), 1, "at most `max`");
    assert_eq!(rest[0].position, second.position, "after a position");
    assert!(store.read_log(third.position, 10).await.unwrap().is_empty(), "nothing after the head");
}
