//! The command index on a real server: a claim left without its events (a
//! writer that crashed between its two publishes, or whose events lost a
//! conflict) is honoured or taken over, so a retry appends exactly once;
//! writers of one command on several hosts append it once; finding a
//! command reads its entry, not the actor's history; a stream made before
//! the index is given it.

use super::{config, publish_raw, request, store, subject_of, versions};
use aether_host::names::NatsNames;
use aether_host::store::jetstream::{JetStreamStorage, subject};
use aether_host::store::{ActorId, AppendRequest, Appended, EventStore, JetStreamEventStore, StoreError};
use aether_testkit::nats::NatsServer;
use async_nats::HeaderMap;
use async_nats::jetstream::stream::Stream;
use std::collections::BTreeMap;

async fn event_stream(server: &NatsServer) -> Stream<()> {
    let js = async_nats::jetstream::new(server.client().await);
    js.get_stream_no_info(config(JetStreamStorage::File).stream_name()).await.unwrap()
}

/// The stream sequence of the actor's last message.
async fn last_seq(stream: &Stream<()>, actor: &ActorId) -> u64 {
    stream.get_last_raw_message_by_subject(&subject_of(actor)).await.unwrap().sequence
}

/// What a writer of `command_id` leaves when it crashes between its two
/// publishes: its claim, naming where its events were to go.
async fn claim_only(server: &NatsServer, store: &JetStreamEventStore, actor: &ActorId, command_id: &str, at: u64) {
    let stream = event_stream(server).await;
    let after = last_seq(&stream, actor).await;
    let mut headers = HeaderMap::new();
    headers.insert("Aether-Versions", format!("{}-{}", at + 1, at + 1));
    headers.insert("Aether-Command-Id", subject::encode_token(command_id));
    headers.insert("Aether-Events-After", after.to_string());
    headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
    let index = store.index_subject(actor, command_id).unwrap();
    let js = async_nats::jetstream::new(server.client().await);
    js.publish_with_headers(index, headers, Default::default()).await.unwrap().await.expect("the id was unclaimed");
}

fn span(appended: &Appended) -> (u64, u64, bool) {
    (appended.first_version, appended.last_version, appended.duplicate)
}

#[tokio::test]
async fn a_claim_left_without_its_events_is_honoured_once_by_a_retry() {
    let server = NatsServer::start();
    let store = store(&server, config(JetStreamStorage::File)).await;
    let actor = ActorId::new("Account", "crashed");
    store.append(&actor, request(0, "c1", 1)).await.unwrap();

    // At the same position: the claim is open, and the retry fills its slot.
    claim_only(&server, &store, &actor, "c2", 1).await;
    assert_eq!(store.find_command(&actor, "c2").await.unwrap(), None, "an open claim is no stored command");
    assert_eq!(span(&store.append(&actor, request(1, "c2", 1)).await.unwrap()), (2, 2, false));
    assert_eq!(span(&store.append(&actor, request(1, "c2", 1)).await.unwrap()), (2, 2, true));
    assert_eq!(span(&store.append(&actor, request(2, "c2", 1)).await.unwrap()), (2, 2, true));

    // After another command took the slot: the claim is abandoned, and a
    // retry on a host that never saw any of it takes the claim over.
    claim_only(&server, &store, &actor, "c4", 2).await;
    store.append(&actor, request(2, "c3", 1)).await.unwrap();
    let other = super::store(&server, config(JetStreamStorage::File)).await;
    assert_eq!(other.find_command(&actor, "c4").await.unwrap(), None, "an abandoned claim is no stored command");
    assert_eq!(span(&other.append(&actor, request(3, "c4", 2)).await.unwrap()), (4, 5, false));
    for expected in [1, 3, 5] {
        assert_eq!(span(&store.append(&actor, request(expected, "c4", 2)).await.unwrap()), (4, 5, true));
    }
    assert_eq!(store.find_command(&actor, "c4").await.unwrap().map(|a| span(&a)), Some((4, 5, true)));
    assert_eq!(versions(&other.read(&actor, 0, 100).await.unwrap()), [1, 2, 3, 4, 5], "each command once");
}

#[tokio::test]
async fn a_claim_whose_events_lost_a_conflict_is_taken_over_by_its_retry() {
    let server = NatsServer::start();
    let (host_a, host_b) =
        (store(&server, config(JetStreamStorage::File)).await, store(&server, config(JetStreamStorage::File)).await);
    let actor = ActorId::new("Account", "conflicted");
    host_a.append(&actor, request(0, "c1", 1)).await.unwrap();
    host_b.append(&actor, request(1, "other", 1)).await.unwrap();
    // Host A still believes the actor at version 1: it claims c2 there,
    // and its events lose to the command host B appended.
    match host_a.append(&actor, request(1, "c2", 1)).await {
        Err(StoreError::Conflict { expected: 1, actual: 2, .. }) => {}
        other => panic!("a stale append must conflict, got {other:?}"),
    }
    let stream = event_stream(&server).await;
    let index = host_a.index_subject(&actor, "c2").unwrap();
    assert!(stream.get_last_raw_message_by_subject(&index).await.is_ok(), "the claim was made");
    assert_eq!(host_b.find_command(&actor, "c2").await.unwrap(), None);

    // The retry, decided again at version 2, takes the abandoned claim over.
    assert_eq!(span(&host_a.append(&actor, request(2, "c2", 1)).await.unwrap()), (3, 3, false));
    assert_eq!(span(&host_b.append(&actor, request(2, "c2", 1)).await.unwrap()), (3, 3, true));
    assert_eq!(span(&host_b.append(&actor, request(3, "c2", 1)).await.unwrap()), (3, 3, true));
    assert_eq!(host_b.version(&actor).await.unwrap(), 3);
}

#[tokio::test]
async fn an_open_claim_is_never_moved_by_a_writer_with_a_stale_view() {
    let server = NatsServer::start();
    let [stale, other, late] = [
        store(&server, config(JetStreamStorage::File)).await,
        store(&server, config(JetStreamStorage::File)).await,
        store(&server, config(JetStreamStorage::File)).await,
    ];
    let actor = ActorId::new("Account", "in-flight");
    stale.append(&actor, request(0, "c1", 1)).await.unwrap();
    other.append(&actor, request(1, "c2", 1)).await.unwrap();
    // A writer of X at version 2 is between its two publishes.
    claim_only(&server, &other, &actor, "X", 2).await;
    // A host that still believes the actor at version 1 tries X there: the
    // open claim is not its to move.
    match stale.append(&actor, request(1, "X", 1)).await {
        Err(StoreError::Conflict { expected: 1, actual: 2, .. }) => {}
        got => panic!("a writer with a stale view must conflict, got {got:?}"),
    }
    // The first writer's events land where its claim said (its second
    // publish: the events message alone), and the actor moves on.
    let events_only = AppendRequest { id_from_caller: false, ..request(2, "X", 1) };
    assert_eq!(span(&other.append(&actor, events_only).await.unwrap()), (3, 3, false));
    other.append(&actor, request(3, "c4", 1)).await.unwrap();
    // However late, X is found, and a retry appends nothing.
    assert_eq!(late.find_command(&actor, "X").await.unwrap().map(|a| span(&a)), Some((3, 3, true)));
    assert_eq!(span(&late.append(&actor, request(4, "X", 1)).await.unwrap()), (3, 3, true));
    assert_eq!(late.version(&actor).await.unwrap(), 4);
}

/// Appends a command as an actor does: at the version the store has, again
/// after a conflict.
async fn until_stored(store: &JetStreamEventStore, actor: &ActorId, command_id: &str, minted: bool) -> Appended {
    for _ in 0..200 {
        let version = store.version(actor).await.unwrap();
        let request = AppendRequest { id_from_caller: !minted, ..request(version, command_id, 1) };
        match store.append(actor, request).await {
            Ok(appended) => return appended,
            Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
            Err(e) => panic!("{command_id}: {e}"),
        }
    }
    panic!("{command_id}: conflicts without end")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_of_one_command_on_two_hosts_append_it_once() {
    let server = NatsServer::start();
    let hosts = [
        store(&server, config(JetStreamStorage::File)).await,
        store(&server, config(JetStreamStorage::File)).await,
        store(&server, config(JetStreamStorage::File)).await,
    ];
    let actor = ActorId::new("Account", "raced");
    for round in 0..40 {
        let (id, other) = (format!("r{round}"), format!("m{round}"));
        // Two hosts append the same command while a third appends others,
        // so claims are made, shared, abandoned and taken over.
        let (a, b, _) = tokio::join!(
            until_stored(&hosts[0], &actor, &id, false),
            until_stored(&hosts[1], &actor, &id, false),
            until_stored(&hosts[2], &actor, &other, true),
        );
        assert_eq!((a.first_version, a.last_version), (b.first_version, b.last_version), "{id}: one answer");
        assert!(a.duplicate != b.duplicate, "{id}: exactly one of the two appended it: {a:?} {b:?}");
    }
    let events = hosts[0].read(&actor, 0, 1000).await.unwrap();
    let mut counts = BTreeMap::<String, usize>::new();
    for event in &events {
        *counts.entry(event.provenance.command_id.to_string()).or_default() += 1;
    }
    assert_eq!(events.len(), 80, "{counts:?}");
    assert!(counts.values().all(|&n| n == 1), "every command once: {counts:?}");
}

#[tokio::test]
async fn finding_a_command_reads_its_entry_not_the_history() {
    let server = NatsServer::start();
    let writer = store(&server, config(JetStreamStorage::File)).await;
    let actor = ActorId::new("Account", "long");
    for i in 0..300 {
        writer.append(&actor, request(i, &format!("c{i}"), 1)).await.unwrap();
    }
    // A host that never saw the actor, as after a restart.
    let fresh = store(&server, config(JetStreamStorage::File)).await;
    assert_eq!(fresh.find_command(&actor, "c7").await.unwrap().map(|a| span(&a)), Some((8, 8, true)));
    assert_eq!(fresh.find_command(&actor, "c299").await.unwrap().map(|a| span(&a)), Some((300, 300, true)));
    assert_eq!(fresh.find_command(&actor, "never").await.unwrap(), None);
    assert_eq!(fresh.messages_read(), 0, "no lookup read the actor's history");
}

#[tokio::test]
async fn a_stream_made_before_the_index_is_given_it_and_its_older_commands_still_found() {
    let server = NatsServer::start();
    let js = async_nats::jetstream::new(server.client().await);
    let name = config(JetStreamStorage::File).stream_name();
    // As an aether-host before the index made it: the events' subjects only.
    js.create_stream(async_nats::jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![format!("{}.>", NatsNames::new(None).events_prefix())],
        allow_direct: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let actor = ActorId::new("Account", "legacy");
    for (i, id) in ["old1", "old2"].iter().enumerate() {
        let mut headers = HeaderMap::new();
        headers.insert("Aether-Versions", format!("{}-{}", i + 1, i + 1));
        headers.insert("Aether-Command-Id", *id);
        publish_raw(&server, &actor, headers, b"").await;
    }

    let store = store(&server, config(JetStreamStorage::File)).await;
    let info = js.get_stream(&name).await.unwrap().cached_info().config.clone();
    assert!(info.subjects.contains(&format!("{}.>", NatsNames::new(None).index_prefix())), "{:?}", info.subjects);
    assert_eq!(info.metadata.get("aether.index-since").map(String::as_str), Some("2"));
    // Commands before the mark are found by a scan of the messages up to it.
    assert_eq!(store.find_command(&actor, "old1").await.unwrap().map(|a| span(&a)), Some((1, 1, true)));
    assert_eq!(store.append(&actor, request(2, "new", 1)).await.map(|a| span(&a)).unwrap(), (3, 3, false));
    assert_eq!(store.append(&actor, request(0, "new", 1)).await.map(|a| span(&a)).unwrap(), (3, 3, true));
    // A second host finds the stream marked and leaves the mark.
    let again = super::store(&server, config(JetStreamStorage::File)).await;
    assert_eq!(again.find_command(&actor, "new").await.unwrap().map(|a| span(&a)), Some((3, 3, true)));
    let info = js.get_stream(&name).await.unwrap().cached_info().config.clone();
    assert_eq!(info.metadata.get("aether.index-since").map(String::as_str), Some("2"));
}
