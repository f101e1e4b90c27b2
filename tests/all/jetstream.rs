//! The JetStream event store against a real `nats-server -js`: the store
//! contract on file and memory storage, awkward ids, namespaces, conflicts,
//! retries, corrupt data, a server that goes away and comes back, replay
//! after a snapshot, and the bank hosted on it. No NATS mocks.

use super::support;
use aether_host::names::NatsNames;
use aether_host::store::jetstream::{EPOCH_HEADER, JetStreamStorage, subject};
use aether_host::store::{
    ActorId, AppendRequest, EventStore, JetStreamConfig, JetStreamEventStore, NewEvent, Provenance, Snapshot,
    StoreError,
};
use aether_host::{
    AetherEngine, CommandOutcome, CommandRequest, DomainComponent, EngineConfig, Runtime, RuntimeConfig,
};
use aether_testkit::contract;
use aether_testkit::nats::NatsServer;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod command_index;

const TIMEOUT: Duration = Duration::from_secs(2);

fn config(storage: JetStreamStorage) -> JetStreamConfig {
    JetStreamConfig::default().with_storage(storage).with_request_timeout(TIMEOUT)
}

async fn store(server: &NatsServer, config: JetStreamConfig) -> JetStreamEventStore {
    JetStreamEventStore::connect(server.client().await, "bank", config).await.expect("connect")
}

fn request(expected_version: u64, command_id: &str, events: usize) -> AppendRequest {
    AppendRequest {
        expected_version,
        provenance: Arc::new(Provenance {
            command_id: command_id.into(),
            correlation_id: "corr".into(),
            causation_id: "cause".into(),
            timestamp_ms: 1_700_000_000_000,
            component_hash: "ab".repeat(32).into(),
            command: None,
        }),
        events: (0..events)
            .map(|i| NewEvent { name: "Deposited".into(), payload: vec![0x81, 0xa1, b'n', i as u8] })
            .collect(),
        id_from_caller: true,
        shard_epoch: None,
    }
}

fn versions(events: &[aether_host::store::RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version).collect()
}

/// The contract with a duplicate window short enough that its checks retry
/// older commands beyond it.
async fn keep_the_contract(storage: JetStreamStorage) {
    let server = NatsServer::start();
    let window = Duration::from_millis(500);
    let config = (config(storage)).with_duplicate_window(window);
    contract::check_all_beyond(&store(&server, config).await, window).await;
}

#[tokio::test]
async fn keeps_the_store_contract_on_file_storage() {
    keep_the_contract(JetStreamStorage::File).await;
}

#[tokio::test]
async fn keeps_the_store_contract_on_memory_storage() {
    keep_the_contract(JetStreamStorage::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_starting_together_create_the_stream_once() {
    let server = NatsServer::start();
    let client = server.client().await;
    let connects: Vec<_> = (0..4)
        .map(|_| tokio::spawn(JetStreamEventStore::connect(client.clone(), "bank", config(JetStreamStorage::File))))
        .collect();
    for connect in connects {
        connect.await.unwrap().expect("every host connects");
    }
    // And a host configured differently uses the stream as it is.
    let other = (config(JetStreamStorage::File)).with_duplicate_window(Duration::from_secs(30));
    let store = JetStreamEventStore::connect(client, "bank", other).await.expect("connects to the existing stream");
    store.append(&ActorId::new("Account", "a"), request(0, "c", 1)).await.unwrap();
}

/// Fencing for audits: an append made under a shard map epoch carries it
/// in its message; one made outside a cluster carries none.
#[tokio::test]
async fn an_append_records_the_shard_map_epoch_it_was_made_under() {
    let server = NatsServer::start();
    let store = store(&server, JetStreamConfig::default()).await;
    let names = NatsNames::new(None);
    let stream = async_nats::jetstream::new(server.client().await).get_stream(names.events_stream()).await.unwrap();
    for (id, epoch) in [("fenced", Some(42)), ("alone", None)] {
        let actor = ActorId::new("Account", id);
        store.append(&actor, AppendRequest { shard_epoch: epoch, ..request(0, id, 1) }).await.unwrap();
        let subject = names.event_subject("bank", "Account", id);
        let message = stream.get_last_raw_message_by_subject(&subject).await.unwrap();
        let stored = message.headers.get(EPOCH_HEADER).map(|v| v.as_str().parse::<u64>().unwrap());
        assert_eq!(stored, epoch, "{id}");
    }
}

#[tokio::test]
async fn awkward_ids_are_one_subject_each_and_decode_back() {
    let server = NatsServer::start();
    let store = store(&server, config(JetStreamStorage::File)).await;
    let ids: Vec<String> = ["a.b", "a b", "*", ">", "a.>", "ünï/cødé", "", "a\nb", "%2E", "_", "_2E", "日本", "$JS"]
        .into_iter()
        .map(String::from)
        .chain([".".repeat(900), "x".repeat(2_500)])
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let actor = ActorId::new("Account", id.as_str());
        let command = format!("c.{i} *>");
        store.append(&actor, request(0, &command, 2)).await.unwrap_or_else(|e| panic!("{id:?}: {e}"));
        store.append(&actor, request(2, "again", 1)).await.unwrap_or_else(|e| panic!("{id:?}: {e}"));
        let snapshot = Snapshot { version: 3, component_hash: "h".into(), state: id.as_bytes().to_vec() };
        store.save_snapshot(&actor, snapshot.clone()).await.unwrap();
        assert_eq!(store.load_snapshot(&actor).await.unwrap(), Some(snapshot));
        assert_eq!(store.find_command(&actor, &command).await.unwrap().map(|a| a.last_version), Some(2));
    }
    // A fresh host reads them back through the server, not the cache.
    let fresh = self::store(&server, config(JetStreamStorage::File)).await;
    for id in &ids {
        let actor = ActorId::new("Account", id.as_str());
        assert_eq!(fresh.version(&actor).await.unwrap(), 3, "{id:?}");
        assert_eq!(versions(&fresh.read(&actor, 0, 10).await.unwrap()), [1, 2, 3], "{id:?}");
    }
    // Every actor is exactly one subject, and its last token decodes to the id.
    let client = server.client().await;
    let js = async_nats::jetstream::new(client);
    let names = NatsNames::new(None);
    let stream = js.get_stream(names.events_stream()).await.unwrap();
    let info = stream.info_with_subjects(names.events_filter("bank", "Account")).await.unwrap();
    let names: Vec<(String, usize)> = collect_subjects(info).await;
    assert_eq!(names.len(), ids.len());
    let decoded: BTreeSet<String> = names
        .iter()
        .map(|(s, count)| {
            assert_eq!(*count, 2, "two commands on {s}");
            subject::decode_token(s.rsplit('.').next().unwrap()).expect("decodes")
        })
        .collect();
    assert_eq!(decoded, ids.iter().cloned().collect::<BTreeSet<_>>());

    // Too long for a NATS subject: refused when written, empty when read.
    let huge = ActorId::new("Account", "ü".repeat(2_000));
    assert!(matches!(store.append(&huge, request(0, "c", 1)).await, Err(StoreError::Invalid { .. })));
    assert_eq!(store.version(&huge).await.unwrap(), 0);
    assert!(store.read(&huge, 0, 10).await.unwrap().is_empty());
}

async fn collect_subjects(mut info: async_nats::jetstream::stream::InfoWithSubjects) -> Vec<(String, usize)> {
    use futures_util::StreamExt;
    let mut out = Vec::new();
    while let Some(subject) = info.next().await {
        let (subject, count) = subject.unwrap();
        out.push((subject, count));
    }
    out
}

#[tokio::test]
async fn namespaces_never_see_each_other() {
    let server = NatsServer::start();
    let tenant = |ns: Option<&str>| (config(JetStreamStorage::File)).with_namespace(ns.map(String::from));
    let (default, acme, globex) = (
        store(&server, tenant(None)).await,
        store(&server, tenant(Some("acme"))).await,
        store(&server, tenant(Some("globex"))).await,
    );
    let actor = ActorId::new("Account", "shared-id");
    default.append(&actor, request(0, "c", 1)).await.unwrap();
    acme.append(&actor, request(0, "c", 3)).await.unwrap();
    let snapshot = Snapshot { version: 3, component_hash: "h".into(), state: b"acme".to_vec() };
    acme.save_snapshot(&actor, snapshot.clone()).await.unwrap();

    assert_eq!(default.version(&actor).await.unwrap(), 1);
    assert_eq!(acme.version(&actor).await.unwrap(), 3);
    assert_eq!(globex.version(&actor).await.unwrap(), 0);
    assert!(globex.read(&actor, 0, 10).await.unwrap().is_empty());
    assert_eq!(globex.find_command(&actor, "c").await.unwrap(), None);
    assert_eq!(globex.load_snapshot(&actor).await.unwrap(), None);
    assert_eq!(default.load_snapshot(&actor).await.unwrap(), None);
    assert_eq!(acme.load_snapshot(&actor).await.unwrap(), Some(snapshot));
    // The same command id in another namespace is another command.
    let appended = globex.append(&actor, request(0, "c", 2)).await.unwrap();
    assert!(!appended.duplicate);
    assert_eq!(acme.version(&actor).await.unwrap(), 3);
}

#[tokio::test]
async fn a_conflict_reports_the_actual_version_not_a_sequence() {
    let server = NatsServer::start();
    let (host_a, host_b) =
        (store(&server, config(JetStreamStorage::File)).await, store(&server, config(JetStreamStorage::File)).await);
    // Other actors move the stream sequence far from the versions.
    for i in 0..5 {
        host_a.append(&ActorId::new("Account", format!("other-{i}")), request(0, "x", 1)).await.unwrap();
    }
    let actor = ActorId::new("Account", "contended");
    host_a.append(&actor, request(0, "a1", 1)).await.unwrap();
    assert_eq!(host_b.version(&actor).await.unwrap(), 1, "host b caches version 1");
    host_a.append(&actor, request(1, "a2", 2)).await.unwrap();
    // Host b believes the actor is at 1; the server knows better.
    match host_b.append(&actor, request(1, "b1", 1)).await {
        Err(StoreError::Conflict { expected: 1, actual: 3, .. }) => {}
        other => panic!("expected a conflict at version 3, got {other:?}"),
    }
    match host_b.append(&actor, request(7, "b2", 1)).await {
        Err(StoreError::Conflict { expected: 7, actual: 3, .. }) => {}
        other => panic!("expected a conflict at version 3, got {other:?}"),
    }
    let appended = host_b.append(&actor, request(3, "b3", 1)).await.unwrap();
    assert_eq!((appended.first_version, appended.last_version), (4, 4));
    assert_eq!(versions(&host_a.read(&actor, 0, 100).await.unwrap()), [1, 2, 3, 4]);
}

#[tokio::test]
async fn a_command_id_is_per_actor() {
    let server = NatsServer::start();
    let store = store(&server, config(JetStreamStorage::File)).await;
    // Clients reuse idempotency keys across actors: never a duplicate.
    for id in ["x", "y"] {
        let appended = store.append(&ActorId::new("Account", id), request(0, "same-key", 1)).await.unwrap();
        assert!(!appended.duplicate, "{id}");
    }
}

#[tokio::test]
async fn a_retried_command_returns_the_original_inside_and_beyond_the_duplicate_window() {
    let server = NatsServer::start();
    let window = Duration::from_secs(1);
    let short = (config(JetStreamStorage::File)).with_duplicate_window(window);
    let writer = store(&server, short.clone()).await;
    let actor = ActorId::new("Account", "retried");
    writer.append(&actor, request(0, "c1", 1)).await.unwrap();
    writer.append(&actor, request(1, "c2", 2)).await.unwrap();
    writer.append(&actor, request(3, "c3", 1)).await.unwrap();

    // Inside the window, a host that never saw the commands: the command
    // index names the original.
    let fresh = store(&server, short.clone()).await;
    let again = fresh.append(&actor, request(4, "c2", 2)).await.unwrap();
    assert_eq!((again.first_version, again.last_version, again.duplicate), (2, 3, true));

    tokio::time::sleep(window + Duration::from_millis(500)).await;
    // Beyond the window, on yet another host: the last command is known by
    // the subject's last message, at any expected version.
    let late = store(&server, short).await;
    for expected in [4, 1] {
        let again = late.append(&actor, request(expected, "c3", 1)).await.unwrap();
        assert_eq!((again.first_version, again.last_version, again.duplicate), (4, 4, true), "at {expected}");
    }
    // Older commands are found in the command index.
    let found = late.find_command(&actor, "c2").await.unwrap().expect("c2 is stored");
    assert_eq!((found.first_version, found.last_version), (2, 3));
    assert_eq!(late.find_command(&actor, "c1").await.unwrap().map(|a| a.last_version), Some(1));
    assert_eq!(late.find_command(&actor, "never").await.unwrap(), None);
    assert_eq!(late.version(&actor).await.unwrap(), 4, "no retry appended anything");
}

#[tokio::test]
async fn a_minted_command_id_asks_for_no_duplicate_entry_and_its_repeat_is_still_a_duplicate() {
    let server = NatsServer::start();
    let writer = store(&server, config(JetStreamStorage::File)).await;
    let (minted, chosen) = (ActorId::new("Account", "minted"), ActorId::new("Account", "chosen"));
    let minted_request = || AppendRequest { id_from_caller: false, ..request(0, "m1", 2) };
    writer.append(&minted, minted_request()).await.unwrap();
    writer.append(&chosen, request(0, "c1", 1)).await.unwrap();

    let js = async_nats::jetstream::new(server.client().await);
    let stream = js.get_stream_no_info(config(JetStreamStorage::File).stream_name()).await.unwrap();
    let message_id = |actor: &ActorId| {
        let subject = subject_of(actor);
        let stream = stream.clone();
        async move {
            let message = stream.get_last_raw_message_by_subject(&subject).await.unwrap();
            message.headers.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.to_string())
        }
    };
    assert_eq!(message_id(&minted).await, None, "a minted id needs no de-duplication entry");
    assert_eq!(message_id(&chosen).await, None, "a caller's id neither: the command index replaces it");
    let index_entries = |id: &str| {
        let stream = stream.clone();
        let filter = format!("aether.ix.bank.Account.{id}.*");
        async move { collect_subjects(stream.info_with_subjects(filter).await.unwrap()).await }
    };
    assert!(index_entries("minted").await.is_empty(), "a minted id gets no index entry");
    let entries = index_entries("chosen").await;
    assert_eq!(entries.len(), 1, "a caller's id gets one: {entries:?}");
    assert_eq!(entries[0].1, 1, "one message");

    // The same request again, as after a lost ack, from a host that never
    // saw it: the subject's last message is this command.
    let other = store(&server, config(JetStreamStorage::File)).await;
    let again = other.append(&minted, minted_request()).await.unwrap();
    assert_eq!((again.first_version, again.last_version, again.duplicate), (1, 2, true));
    let again = writer.append(&minted, minted_request()).await.unwrap();
    assert_eq!((again.first_version, again.last_version, again.duplicate), (1, 2, true), "and from the writer");
    assert_eq!(other.version(&minted).await.unwrap(), 2, "no repeat appended anything");
}

/// The subject the store keeps the actor's events on (domain `bank`).
fn subject_of(actor: &ActorId) -> String {
    NatsNames::new(None).event_subject("bank", &actor.aggregate, &actor.id)
}

/// Publishes a raw message onto the actor's subject, as a foreign writer would.
async fn publish_raw(server: &NatsServer, actor: &ActorId, headers: async_nats::HeaderMap, payload: &'static [u8]) {
    let js = async_nats::jetstream::new(server.client().await);
    js.publish_with_headers(subject_of(actor), headers, payload.into()).await.unwrap().await.unwrap();
}

#[tokio::test]
async fn corrupt_data_is_reported_with_its_version_never_skipped() {
    let server = NatsServer::start();
    let store = store(&server, config(JetStreamStorage::File)).await;

    // Garbage without headers after two good events.
    let garbage = ActorId::new("Account", "garbage");
    store.append(&garbage, request(0, "ok", 2)).await.unwrap();
    publish_raw(&server, &garbage, async_nats::HeaderMap::new(), b"not an aether message").await;
    match store.read(&garbage, 0, 100).await {
        Err(StoreError::Corrupt { version: 3, ref actor, .. }) if *actor == garbage => {}
        other => panic!("expected corruption at version 3, got {other:?}"),
    }
    assert_eq!(versions(&store.read(&garbage, 0, 2).await.unwrap()), [1, 2], "the good events before it still read");
    assert!(matches!(store.version(&garbage).await, Err(StoreError::Corrupt { .. })));
    assert!(matches!(store.append(&garbage, request(2, "next", 1)).await, Err(StoreError::Corrupt { .. })));

    // Good headers, broken payload.
    let broken = ActorId::new("Account", "broken");
    store.append(&broken, request(0, "ok", 1)).await.unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Aether-Versions", "2-3");
    headers.insert("Aether-Command-Id", "bad");
    publish_raw(&server, &broken, headers, b"\x01\x00\x00").await;
    match store.read(&broken, 1, 100).await {
        Err(StoreError::Corrupt { version: 2, cause, .. }) => {
            assert!(cause.contains("ends inside command id"), "{cause}")
        }
        other => panic!("expected corruption at version 2, got {other:?}"),
    }

    // A gap in the versions is corruption too.
    let gap = ActorId::new("Account", "gap");
    store.append(&gap, request(0, "ok", 1)).await.unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Aether-Versions", "5-5");
    headers.insert("Aether-Command-Id", "jump");
    publish_raw(&server, &gap, headers, b"\x01").await;
    assert!(matches!(store.read(&gap, 0, 100).await, Err(StoreError::Corrupt { version: 2, .. })));

    // A snapshot that does not decode.
    let js = async_nats::jetstream::new(server.client().await);
    let bucket = js.get_key_value(NatsNames::new(None).snapshots_bucket()).await.unwrap();
    bucket.put("bank.Account.garbage", b"\x01\x02"[..].into()).await.unwrap();
    assert!(matches!(store.load_snapshot(&garbage).await, Err(StoreError::Corrupt { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_unavailable_within_the_timeout_and_then_recovers() {
    let mut server = NatsServer::start();
    let timeout = Duration::from_millis(500);
    let store = store(&server, (config(JetStreamStorage::File)).with_request_timeout(timeout)).await;
    let actor = ActorId::new("Account", "outage");
    store.append(&actor, request(0, "before", 1)).await.unwrap();
    store.save_snapshot(&actor, Snapshot { version: 1, component_hash: "h".into(), state: vec![1] }).await.unwrap();

    server.stop();
    let started = Instant::now();
    match store.append(&actor, request(1, "during", 1)).await {
        Err(StoreError::Unavailable(message)) => assert!(message.contains("appending to Account/outage"), "{message}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert!(matches!(store.read(&actor, 0, 10).await, Err(StoreError::Unavailable(_))));
    assert!(matches!(store.version(&actor).await, Err(StoreError::Unavailable(_))));
    assert!(matches!(store.load_snapshot(&actor).await, Err(StoreError::Unavailable(_))));
    assert!(started.elapsed() < timeout * 4 + Duration::from_millis(500), "each call gives up within its timeout");

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    let appended = loop {
        // The append that timed out may have reached the server after all
        // (the client queues it): a retry with its command id is safe.
        match store.append(&actor, request(1, "during", 1)).await {
            Ok(appended) => break appended,
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("the store did not recover: {e}"),
        }
    };
    assert_eq!(appended.last_version, 2);
    assert_eq!(versions(&store.read(&actor, 0, 10).await.unwrap()), [1, 2], "events from before the restart are kept");
    assert_eq!(store.load_snapshot(&actor).await.unwrap().map(|s| s.version), Some(1));
}

#[tokio::test]
async fn memory_storage_starts_over_after_a_restart() {
    let mut server = NatsServer::start();
    let store = store(&server, config(JetStreamStorage::Memory)).await;
    let actor = ActorId::new("Account", "volatile");
    store.append(&actor, request(0, "c1", 1)).await.unwrap();
    let snapshot = Snapshot { version: 1, component_hash: "h".into(), state: vec![1] };
    store.save_snapshot(&actor, snapshot.clone()).await.unwrap();
    server.restart();
    // The stream and the bucket are gone with the server's memory; the
    // store creates them again, whichever it touches first.
    let deadline = Instant::now() + Duration::from_secs(15);
    let loaded = loop {
        match store.load_snapshot(&actor).await {
            Ok(loaded) => break loaded,
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(loaded, None, "memory storage loses everything on restart");
    assert_eq!(store.version(&actor).await.unwrap(), 0);
    store.append(&actor, request(0, "c2", 1)).await.unwrap();
    assert_eq!(versions(&store.read(&actor, 0, 10).await.unwrap()), [1]);
    store.save_snapshot(&actor, snapshot.clone()).await.unwrap();
    assert_eq!(store.load_snapshot(&actor).await.unwrap(), Some(snapshot));
}

#[tokio::test]
async fn a_read_after_a_snapshot_starts_at_the_snapshot_not_at_the_beginning() {
    let server = NatsServer::start();
    let store = store(&server, config(JetStreamStorage::File)).await;
    let actor = ActorId::new("Account", "long");
    let neighbour = ActorId::new("Account", "neighbour");
    for v in 0..300 {
        store.append(&actor, request(v, &format!("c{v}"), 1)).await.unwrap();
        store.append(&neighbour, request(v, &format!("c{v}"), 1)).await.unwrap();
    }
    // Snapshots are taken right after an append, as actors do.
    store.save_snapshot(&actor, Snapshot { version: 300, component_hash: "h".into(), state: vec![] }).await.unwrap();
    for v in 300..310 {
        store.append(&actor, request(v, &format!("c{v}"), 1)).await.unwrap();
    }

    // A host that knows nothing of the actor but its snapshot.
    let fresh = self::store(&server, config(JetStreamStorage::File)).await;
    let snapshot = fresh.load_snapshot(&actor).await.unwrap().expect("a snapshot");
    let events = fresh.read(&actor, snapshot.version, 512).await.unwrap();
    assert_eq!(versions(&events), (301..=310).collect::<Vec<_>>());
    assert!(fresh.messages_read() <= 10, "read {} messages for 10 events", fresh.messages_read());
    // Paging on from there costs only the new messages, too.
    assert!(fresh.read(&actor, 310, 512).await.unwrap().is_empty());
    assert!(fresh.messages_read() <= 10);

    // Without a snapshot, a fresh host pages through the whole subject.
    let cold = self::store(&server, config(JetStreamStorage::File)).await;
    assert_eq!(versions(&cold.read(&actor, 300, 512).await.unwrap()), (301..=310).collect::<Vec<_>>());
    assert!(cold.messages_read() >= 310);
}

#[tokio::test]
async fn a_long_replay_streams_in_order_and_stops_at_corruption() {
    let server = NatsServer::start();
    let store = store(&server, config(JetStreamStorage::File)).await;
    let actor = ActorId::new("Account", "long-replay");
    // Long enough for reads to move from direct gets to a consumer; commands
    // of one to three events, interleaved with another actor's.
    let mut version = 0;
    for i in 0..1_500 {
        let count = 1 + i % 3;
        store.append(&actor, request(version, &format!("c{i}"), count)).await.unwrap();
        version += count as u64;
        if i % 10 == 0 {
            store.append(&ActorId::new("Account", "noise"), request(i as u64 / 10, &format!("n{i}"), 1)).await.unwrap();
        }
    }
    let js = async_nats::jetstream::new(server.client().await);
    let consumers = async || js.get_stream("AETHER_EVENTS").await.unwrap().cached_info().state.consumer_count;
    assert_eq!(consumers().await, 0);
    let fresh = self::store(&server, config(JetStreamStorage::File)).await;
    let (mut after, mut seen) = (0, Vec::new());
    loop {
        // More than a page per read, as an actor replays.
        let events = fresh.read(&actor, after, 600).await.unwrap();
        let Some(last) = events.last() else { break };
        after = last.version;
        seen.extend(versions(&events));
    }
    assert_eq!(seen, (1..=version).collect::<Vec<_>>(), "every event once, in order");
    assert_eq!(consumers().await, 1, "the long replay streamed from one ordered consumer");
    // Out-of-order reads on the same host are answered right too.
    for from in [2_000, 17, version - 1, 1_000] {
        let events = fresh.read(&actor, from, 5).await.unwrap();
        assert_eq!(events.first().map(|e| e.version), Some(from + 1), "after {from}");
    }

    // A foreign message deep in the stream stops the replay at its version.
    publish_raw(&server, &actor, async_nats::HeaderMap::new(), b"junk").await;
    store.append(&ActorId::new("Account", "noise"), request(150, "after-junk", 1)).await.unwrap();
    let cold = self::store(&server, config(JetStreamStorage::File)).await;
    let mut after = 0;
    let error = loop {
        match cold.read(&actor, after, 500).await {
            Ok(events) => after = events.last().expect("the junk comes before the end").version,
            Err(e) => break e,
        }
    };
    assert!(matches!(error, StoreError::Corrupt { version: v, .. } if v == version + 1), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bank_runs_on_jetstream_and_rebuilds_from_it() {
    let server = NatsServer::start();
    let engine = AetherEngine::new(EngineConfig::default().with_max_instances(16)).unwrap();
    let wasm = support::component("examples/bank");
    let mut runtime_config = RuntimeConfig::default();
    runtime_config.actor.snapshot_every = 4;
    let host_on = |store: Arc<JetStreamEventStore>| {
        Runtime::new(DomainComponent::from_file(&engine, &wasm).unwrap(), store, runtime_config.clone())
    };
    let host = |store: JetStreamEventStore| host_on(Arc::new(store));
    let send = |runtime: &Runtime, command: &str, payload: serde_json::Value, command_id: Option<&str>| {
        let request = CommandRequest {
            aggregate: "Account".into(),
            id: "ada.1".into(),
            command: command.into(),
            payload: rmp_serde::to_vec_named(&payload).unwrap(),
            command_id: command_id.map(String::from),
            ..Default::default()
        };
        let runtime = runtime.clone();
        async move { runtime.execute(request).await.unwrap() }
    };
    let balance = async |runtime: &Runtime| {
        let (version, state) = runtime.state("Account", "ada.1").await.unwrap();
        (version, rmp_serde::from_slice::<bank::Account>(&state).unwrap().balance)
    };

    let first = host(store(&server, config(JetStreamStorage::File)).await);
    send(&first, "Open", serde_json::json!({ "owner": "ada" }), Some("open")).await;
    for amount in 1..=10 {
        let outcome =
            send(&first, "Deposit", serde_json::json!({ "amount": amount }), Some(&format!("d{amount}"))).await;
        assert!(matches!(outcome, CommandOutcome::Accepted { duplicate: false, .. }));
    }
    assert_eq!(balance(&first).await, (11, 55));
    first.passivate_all().await;
    assert_eq!(balance(&first).await, (11, 55), "rebuilt from the snapshot and the events after it");

    // Another host on the same stream: rebuilds from JetStream, and knows
    // a retried command.
    let second_store = Arc::new(store(&server, config(JetStreamStorage::File)).await);
    let second = host_on(second_store.clone());
    assert_eq!(balance(&second).await, (11, 55));
    let again = send(&second, "Deposit", serde_json::json!({ "amount": 10 }), Some("d10")).await;
    assert!(matches!(again, CommandOutcome::Accepted { duplicate: true, version: 11, .. }), "{again:?}");
    // A retry the state now rejects: the store finds the original by its
    // index entry, without reading the actor's history (the one message
    // read holds the original's events, for the answer).
    let read = second_store.messages_read();
    let again = send(&second, "Open", serde_json::json!({ "owner": "eve" }), Some("open")).await;
    assert!(matches!(again, CommandOutcome::Accepted { duplicate: true, version: 1, .. }), "{again:?}");
    assert_eq!(second_store.messages_read(), read + 1, "the original's message, no scan");
    send(&second, "Withdraw", serde_json::json!({ "amount": 5 }), None).await;
    assert_eq!(balance(&second).await, (12, 50));
    // The first host's live actor is stale: its next command catches up.
    send(&first, "Deposit", serde_json::json!({ "amount": 1 }), None).await;
    assert_eq!(balance(&first).await, (13, 51));
}

/// Replay on one actor with 100,000 one-event commands: the store's reads,
/// and the two ways JetStream offers to read a subject, raw (batched direct
/// get, ordered pull consumer), in bulk and for short reads.
///
/// `cargo test -p aether-tests --test all jetstream::replay_throughput -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: writes 100,000 commands"]
async fn replay_throughput() {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
    use futures_util::StreamExt;
    const EVENTS: u64 = 100_000;
    let server = NatsServer::start();
    let store = store(&server, config(JetStreamStorage::File)).await;
    let actor = ActorId::new("Account", "bench");
    let subject = subject_of(&actor);
    let started = Instant::now();
    for v in 0..EVENTS {
        store.append(&actor, request(v, &format!("c{v}"), 1)).await.unwrap();
    }
    let rate = |n: u64, t: Duration| (n as f64 / t.as_secs_f64()) as u64;
    println!("append, one event per command, one at a time: {} events/s", rate(EVENTS, started.elapsed()));

    // The store's read, paged as an actor replays (512 events a call), on a
    // host that knows nothing of the actor yet.
    let fresh = self::store(&server, config(JetStreamStorage::File)).await;
    let started = Instant::now();
    let mut after = 0;
    loop {
        let events = fresh.read(&actor, after, 512).await.unwrap();
        let Some(last) = events.last() else { break };
        after = last.version;
    }
    assert_eq!(after, EVENTS);
    println!("store.read, whole replay in calls of 512: {} events/s", rate(EVENTS, started.elapsed()));
    let client = server.client().await;
    let direct_get = async |from: u64, batch: usize| {
        let inbox = client.new_inbox();
        let mut replies = client.subscribe(inbox.clone()).await.unwrap();
        let request = serde_json::json!({ "seq": from, "next_by_subj": subject, "batch": batch });
        client.publish_with_reply("$JS.API.DIRECT.GET.AETHER_EVENTS", inbox, request.to_string().into()).await.unwrap();
        let (mut seen, mut next, mut pending) = (0, from, 0);
        while let Some(reply) = replies.next().await {
            let headers = reply.headers.as_ref();
            let number = |name: &str| headers.and_then(|h| h.get(name)).and_then(|v| v.as_str().parse::<u64>().ok());
            pending = number("Nats-Num-Pending").unwrap_or(0);
            if reply.status.is_some() {
                break;
            }
            seen += 1;
            next = number("Nats-Sequence").unwrap() + 1;
        }
        (seen, next, pending)
    };
    for batch in [256, 1024] {
        let started = Instant::now();
        let (mut from, mut seen) = (1, 0);
        loop {
            let (n, next, pending) = direct_get(from, batch).await;
            (seen, from) = (seen + n, next);
            if pending == 0 {
                break;
            }
        }
        assert_eq!(seen, EVENTS);
        println!("raw batched direct get, pages of {batch}: {} messages/s", rate(EVENTS, started.elapsed()));
    }
    let started = Instant::now();
    for i in 0..200 {
        assert_eq!(direct_get(1 + (i * 487) % (EVENTS - 20), 10).await.0, 10);
    }
    println!("raw batched direct get of 10 messages: {:?} each", started.elapsed() / 200);

    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream("AETHER_EVENTS").await.unwrap();
    let ordered = async |from: u64, limit: u64| {
        let config = OrderedConfig {
            filter_subject: subject.clone(),
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from },
            ..Default::default()
        };
        let mut messages = stream.create_consumer(config).await.unwrap().messages().await.unwrap();
        let (mut seen, mut next) = (0, from);
        while seen < limit {
            let message = messages.next().await.unwrap().unwrap();
            let info = message.info().unwrap();
            (seen, next) = (seen + 1, info.stream_sequence + 1);
            if info.pending == 0 {
                break;
            }
        }
        (seen, next)
    };
    let started = Instant::now();
    assert_eq!(ordered(1, u64::MAX).await.0, EVENTS);
    println!("raw ordered consumer, one for the whole replay: {} messages/s", rate(EVENTS, started.elapsed()));
    let started = Instant::now();
    let (mut from, mut seen) = (1, 0);
    while seen < EVENTS {
        let (n, next) = ordered(from, 512).await;
        (seen, from) = (seen + n, next);
    }
    println!("raw ordered consumer, one per 512 messages: {} messages/s", rate(EVENTS, started.elapsed()));
    let started = Instant::now();
    for i in 0..200 {
        assert_eq!(ordered(1 + (i * 487) % (EVENTS - 20), 10).await.0, 10);
    }
    println!("raw ordered consumer of 10 messages: {:?} each", started.elapsed() / 200);

    // An activation after a snapshot, as an actor does it: the snapshot,
    // then reads until one comes back empty; 10 events since the snapshot.
    store.save_snapshot(&actor, Snapshot { version: EVENTS, component_hash: "h".into(), state: vec![] }).await.unwrap();
    for v in EVENTS..EVENTS + 10 {
        store.append(&actor, request(v, &format!("c{v}"), 1)).await.unwrap();
    }
    let host = self::store(&server, config(JetStreamStorage::File)).await;
    let started = Instant::now();
    for _ in 0..200 {
        let snapshot = host.load_snapshot(&actor).await.unwrap().unwrap();
        assert_eq!(host.read(&actor, snapshot.version, 512).await.unwrap().len(), 10);
        assert!(host.read(&actor, snapshot.version + 10, 512).await.unwrap().is_empty());
    }
    println!("activation from a snapshot (load it, read 10 events, read none): {:?} each", started.elapsed() / 200);

    // The find_command scan: every header of the subject.
    let started = Instant::now();
    assert!(fresh.find_command(&actor, "absent").await.unwrap().is_none());
    println!("find_command of an absent id among {EVENTS} commands: {:?}", started.elapsed());
}
