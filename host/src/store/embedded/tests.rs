//! The embedded store: restarts, crashes (as copies of the directory taken
//! while the store runs), damaged logs and older layouts. The contract's
//! checks run from `aether-testkit`'s tests.

use super::tables::{META, SEGMENTS};
use super::writer::{CheckpointPolicy, Job, Writer};
use super::*;
use crate::store::{NewEvent, Provenance};

fn request(expected_version: u64, command_id: &str, names: &[&str]) -> AppendRequest {
    AppendRequest {
        expected_version,
        provenance: Arc::new(Provenance {
            command_id: command_id.into(),
            correlation_id: format!("corr-{command_id}").into(),
            causation_id: format!("cause-{command_id}").into(),
            timestamp_ms: 1_700_000_000_000,
            component_hash: "ab".repeat(32).into(),
            command: None,
        }),
        events: names.iter().map(|n| NewEvent { name: n.to_string(), payload: vec![0x81, 0xa1, b'n', 0x01] }).collect(),
        id_from_caller: true,
        shard_epoch: None,
    }
}

fn snapshot(version: u64) -> Snapshot {
    Snapshot { version, component_hash: "cd".repeat(32), state: vec![7; 4096] }
}

/// A checkpoint after every write: redb and the memtables take turns.
fn checkpoint_always() -> EmbeddedConfig {
    EmbeddedConfig { checkpoint_writes: 1, ..EmbeddedConfig::default() }
}

/// No checkpoint until the store closes: the files a test copies stay still.
fn no_checkpoints() -> EmbeddedConfig {
    EmbeddedConfig { checkpoint_writes: 1 << 30, checkpoint_interval: Duration::from_secs(3600), ..Default::default() }
}

/// The directory as a crash at this moment would leave it: the store (opened
/// with [`no_checkpoints`]) keeps running while the files are copied.
fn crash_copy(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.path().join(path.file_name().unwrap())).unwrap();
    }
    to
}

fn logs(dir: &Path) -> Vec<PathBuf> {
    log::files(dir).unwrap().into_iter().map(|(_, path)| path).collect()
}

async fn versions(store: &EmbeddedStore, actor: &ActorId) -> Vec<u64> {
    store.read(actor, 0, 1000).await.unwrap().iter().map(|e| e.version).collect()
}

fn refused(dir: &Path) -> String {
    match EmbeddedStore::open(dir) {
        Err(StoreError::Unavailable(message)) => message,
        other => panic!("the open must be refused, got {other:?}"),
    }
}

#[tokio::test]
async fn keeps_the_contract_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let actor = ActorId::new("Account", "a-1");
    let store = EmbeddedStore::open(dir.path()).unwrap();
    store.append(&actor, request(0, "c1", &["Opened"])).await.unwrap();
    store.append(&actor, request(1, "c2", &["Deposited", "Withdrawn"])).await.unwrap();
    store.save_snapshot(&actor, snapshot(2)).await.unwrap();
    let before = store.read(&actor, 0, 100).await.unwrap();
    store.close().await.unwrap();
    assert!(logs(dir.path()).is_empty(), "a clean close leaves no log to replay");

    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.read(&actor, 0, 100).await.unwrap(), before, "events and provenance survive");
    assert_eq!(store.version(&actor).await.unwrap(), 3);
    let c2 = store.find_command(&actor, "c2").await.unwrap();
    assert_eq!(
        c2,
        Some(Appended { first_version: 2, last_version: 3, duplicate: true, position: 0 }),
        "the command index survives"
    );
    assert_eq!(store.load_snapshot(&actor).await.unwrap(), Some(snapshot(2)), "the snapshot survives");
    let retried = store.append(&actor, request(3, "c1", &["Opened"])).await.unwrap();
    assert_eq!((retried.first_version, retried.duplicate), (1, true), "a retry after a restart is a duplicate");
    store.append(&actor, request(3, "c3", &["Closed"])).await.unwrap();
    // Events 1–3 in redb, 4 in memory: one read.
    assert_eq!(versions(&store, &actor).await, [1, 2, 3, 4]);
    assert_eq!(store.read(&actor, 2, 100).await.unwrap().len(), 2);
    store.save_snapshot(&actor, snapshot(1)).await.unwrap();
    assert_eq!(store.load_snapshot(&actor).await.unwrap(), Some(snapshot(2)), "redb's newer snapshot stays");
    drop(store);

    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.version(&actor).await.unwrap(), 4, "dropping the store keeps what it logged");
}

#[tokio::test]
async fn a_crash_loses_no_answered_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_with(dir.path(), no_checkpoints()).unwrap();
    let actor = ActorId::new("Account", "crash");
    store.append(&actor, request(0, "c1", &["Opened"])).await.unwrap();
    store.append(&actor, request(1, "c2", &["Deposited", "Deposited"])).await.unwrap();
    store.save_snapshot(&actor, snapshot(3)).await.unwrap();
    let crashed = crash_copy(dir.path());
    assert_eq!(logs(crashed.path()).len(), 1, "the writes are in the log only");

    let recovered = EmbeddedStore::open(crashed.path()).unwrap();
    assert_eq!(recovered.read(&actor, 0, 100).await.unwrap(), store.read(&actor, 0, 100).await.unwrap());
    assert_eq!(recovered.load_snapshot(&actor).await.unwrap(), Some(snapshot(3)));
    let retried = recovered.append(&actor, request(3, "c2", &["Deposited", "Deposited"])).await.unwrap();
    assert_eq!((retried.first_version, retried.duplicate), (2, true), "the command index is rebuilt too");
    assert_eq!(logs(crashed.path()).len(), 1, "replayed logs are deleted; a new one is started");
}

#[tokio::test]
async fn logs_redb_already_holds_are_not_replayed_again() {
    let dir = tempfile::tempdir().unwrap();
    let actor = ActorId::new("Account", "twice");
    let store = EmbeddedStore::open_with(dir.path(), no_checkpoints()).unwrap();
    store.append(&actor, request(0, "c1", &["Opened"])).await.unwrap();
    // A crash after the checkpoint committed and before it deleted the log.
    let crashed = crash_copy(dir.path());
    store.close().await.unwrap();
    std::fs::copy(dir.path().join(FILE_NAME), crashed.path().join(FILE_NAME)).unwrap();

    let store = EmbeddedStore::open(crashed.path()).unwrap();
    assert_eq!(versions(&store, &actor).await, [1], "the append is stored once");
    store.append(&actor, request(1, "c2", &["Deposited"])).await.unwrap();
    assert_eq!(versions(&store, &actor).await, [1, 2]);
}

#[tokio::test]
async fn a_torn_last_write_is_cut_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_with(dir.path(), no_checkpoints()).unwrap();
    let actor = ActorId::new("Account", "torn");
    store.append(&actor, request(0, "c1", &["Opened"])).await.unwrap();
    let crashed = crash_copy(dir.path());
    let log = &logs(crashed.path())[0];
    // The next batch's record, half written: a copy of the first one, cut.
    let mut bytes = std::fs::read(log).unwrap();
    bytes.extend_from_slice(&bytes.clone()[..bytes.len() / 2]);
    std::fs::write(log, &bytes).unwrap();

    let recovered = EmbeddedStore::open(crashed.path()).unwrap();
    assert_eq!(versions(&recovered, &actor).await, [1]);
    recovered.append(&actor, request(1, "c2", &["Deposited"])).await.unwrap();
    assert_eq!(versions(&recovered, &actor).await, [1, 2]);
}

#[tokio::test]
async fn a_damaged_record_before_the_tail_refuses_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_with(dir.path(), no_checkpoints()).unwrap();
    let actor = ActorId::new("Account", "damaged");
    store.append(&actor, request(0, "c1", &["Opened"])).await.unwrap();
    store.append(&actor, request(1, "c2", &["Deposited"])).await.unwrap();
    let crashed = crash_copy(dir.path());
    let log = &logs(crashed.path())[0];
    let mut bytes = std::fs::read(log).unwrap();
    bytes[20] ^= 0x01; // inside the first record's payload
    std::fs::write(log, &bytes).unwrap();

    let message = refused(crashed.path());
    assert!(message.contains("a valid record follows") && message.contains("wal-"), "{message}");
    assert_eq!(std::fs::read(log).unwrap(), bytes, "the log is left as it was, for whoever repairs it");
}

#[tokio::test]
async fn a_format_1_directory_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    // Format 1: rows keyed by actor in `events`, `commands` and `command_ids`, no `meta`.
    {
        type Key = (&'static str, &'static str, u64);
        let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        let events: redb::TableDefinition<Key, &[u8]> = redb::TableDefinition::new("events");
        txn.open_table(events).unwrap().insert(("Account", "old", 1), [1u8, 0].as_slice()).unwrap();
        txn.commit().unwrap();
    }
    let message = refused(dir.path());
    assert!(message.contains("format 1") && message.contains("move the directory away"), "{message}");
    assert!(logs(dir.path()).is_empty(), "a refused directory is left as it was");
}

#[tokio::test]
async fn an_unknown_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    EmbeddedStore::open(dir.path()).unwrap().close().await.unwrap();
    {
        let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().insert("format", 3).unwrap();
        txn.commit().unwrap();
    }
    let message = refused(dir.path());
    assert!(message.contains("format 3") && message.contains("reads format 2"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_to_many_actors_all_commit() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig { checkpoint_writes: 17, ..EmbeddedConfig::default() };
    let store = Arc::new(EmbeddedStore::open_with(dir.path(), config).unwrap());
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let actor = ActorId::new("Account", format!("a{i}"));
                for v in 0..5 {
                    store.append(&actor, request(v, &format!("c{i}-{v}"), &["E"])).await?;
                    // Reads race the checkpoints.
                    assert_eq!(store.version(&actor).await?, v + 1);
                    assert_eq!(store.read(&actor, 0, 100).await?.len() as u64, v + 1);
                }
                Ok::<_, StoreError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    for i in 0..200 {
        let events = store.read(&ActorId::new("Account", format!("a{i}")), 0, 10).await.unwrap();
        assert_eq!(events.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2, 3, 4, 5], "actor a{i}");
        assert_eq!(*events[4].provenance.command_id, format!("c{i}-4"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_at_one_version_let_exactly_one_win() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let actor = ActorId::new("Account", "contended");
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (store, actor) = (store.clone(), actor.clone());
            tokio::spawn(async move { store.append(&actor, request(0, &format!("c{i}"), &["Opened"])).await })
        })
        .collect();
    let (mut won, mut conflicts) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(appended) if appended.first_version == 1 && !appended.duplicate => won += 1,
            Err(StoreError::Conflict { expected: 0, actual: 1, .. }) => conflicts += 1,
            other => panic!("expected a win or a conflict, got {other:?}"),
        }
    }
    assert_eq!((won, conflicts), (1, 49));
    assert_eq!(store.version(&actor).await.unwrap(), 1);
}

#[tokio::test]
async fn a_corrupt_event_is_reported_with_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let actor = ActorId::new("Account", "x");
    // Closing checkpoints: one segment per close, versions 1 and 2–3.
    let store = EmbeddedStore::open(dir.path()).unwrap();
    store.append(&actor, request(0, "c1", &["Opened"])).await.unwrap();
    store.close().await.unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    store.append(&actor, request(1, "c2", &["Deposited", "Deposited"])).await.unwrap();
    store.close().await.unwrap();
    {
        let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(SEGMENTS).unwrap().insert(("Account", "x", 2), b"garbage!".as_slice()).unwrap();
        txn.commit().unwrap();
    }

    let store = EmbeddedStore::open(dir.path()).unwrap();
    match store.append(&actor, request(3, "c3", &["Closed"])).await {
        Err(StoreError::Corrupt { version: 2, .. }) => {}
        other => panic!("the head is in the corrupt segment: the append must fail, got {other:?}"),
    }
    match store.read(&actor, 0, 100).await {
        Err(StoreError::Corrupt { actor: a, version: 2, cause }) if a == actor => {
            assert!(cause.contains("format"), "the cause says what is wrong: {cause}")
        }
        other => panic!("a corrupt event must stop the read at version 2, got {other:?}"),
    }
    assert_eq!(store.read(&actor, 0, 1).await.unwrap().len(), 1, "events before it still read");
    assert!(matches!(store.read(&actor, 2, 10).await, Err(StoreError::Corrupt { version: 3, .. })));
}

#[tokio::test]
async fn one_batch_sees_its_own_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (shared, log) = open_parts(dir.path(), &EmbeddedConfig::default()).unwrap();
    let policy = CheckpointPolicy { writes: 1000, interval: Duration::from_secs(60) };
    let mut writer = Writer::new(shared.clone(), log, super::bloom::IdFilter::with_capacity(0), policy).unwrap();
    let actor = ActorId::new("Account", "batched");
    let (mut batch, mut answers) = (Vec::new(), Vec::new());
    for (expected, command_id) in [(0, "b1"), (1, "b2"), (0, "b1"), (1, "b3")] {
        let (reply, answer) = oneshot::channel();
        batch.push(Job::Append { actor: actor.clone(), request: request(expected, command_id, &["E"]), reply });
        answers.push(answer);
    }
    // Written here, on the test's thread, as one batch.
    writer.write_batch(&mut batch);
    let mut answers = answers.into_iter();
    let mut next = async || answers.next().unwrap().await.unwrap();
    assert_eq!(next().await.unwrap(), Appended { first_version: 1, last_version: 1, duplicate: false, position: 1 });
    assert_eq!(next().await.unwrap(), Appended { first_version: 2, last_version: 2, duplicate: false, position: 2 });
    assert_eq!(next().await.unwrap(), Appended { first_version: 1, last_version: 1, duplicate: true, position: 0 });
    assert!(matches!(next().await, Err(StoreError::Conflict { expected: 1, actual: 2, .. })));
    assert_eq!(shared.tail_read().find(|m| m.head(&actor)), Some(2));
}

#[tokio::test]
async fn dropping_the_store_answers_every_queued_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_with(dir.path(), checkpoint_always()).unwrap();
    let actor = ActorId::new("Account", "queued");
    let mut answers = Vec::new();
    for i in 0..100 {
        let (reply, answer) = oneshot::channel();
        let job = Job::Append { actor: actor.clone(), request: request(i, &format!("q{i}"), &["E"]), reply };
        store.queue.as_ref().unwrap().send(job).await.unwrap();
        answers.push(answer);
    }
    drop(store);
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.await.unwrap().unwrap().last_version, i as u64 + 1);
    }
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.version(&actor).await.unwrap(), 100);
}

/// The writer asks redb about a command id only if the id filter says it may
/// be there: the filter must know ids a checkpoint moved out of memory, and
/// ids the file held when it was opened.
#[tokio::test]
async fn a_retry_is_a_duplicate_when_only_redb_holds_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let actor = ActorId::new("Account", "filtered");
    let store = EmbeddedStore::open_with(dir.path(), checkpoint_always()).unwrap();
    store.append(&actor, request(0, "c1", &["Opened"])).await.unwrap();
    // Writes to another actor until checkpoints have taken c1 out of memory.
    let other = ActorId::new("Account", "other");
    let mut version = 0;
    while store.shared.tail_read().actor(&actor).iter().any(Option::is_some) {
        store.append(&other, request(version, &format!("o{version}"), &["Deposited"])).await.unwrap();
        version += 1;
        assert!(version < 10_000, "a checkpoint ran");
    }
    let retried = store.append(&actor, request(1, "c1", &["Opened"])).await.unwrap();
    assert_eq!((retried.first_version, retried.duplicate), (1, true), "answered from redb");
    store.close().await.unwrap();

    let store = EmbeddedStore::open_with(dir.path(), checkpoint_always()).unwrap();
    let retried = store.append(&actor, request(1, "c1", &["Opened"])).await.unwrap();
    assert_eq!((retried.first_version, retried.duplicate), (1, true), "the filter is filled from redb on open");
    let retried = store.append(&other, request(version, "o0", &["Deposited"])).await.unwrap();
    assert!(retried.duplicate);
    let fresh = store.append(&actor, request(1, "c2", &["Deposited"])).await.unwrap();
    assert_eq!((fresh.first_version, fresh.duplicate), (2, false));
}

/// A command accepted with no events occupies no version but keeps its id:
/// in the log (replayed after a crash), in memory, and in redb, where a
/// segment holding only it shares its key with the next command's segment.
#[tokio::test]
async fn a_command_recorded_with_no_events_survives_checkpoints_and_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let actor = ActorId::new("Account", "quiet");
    let other = ActorId::new("Account", "busy");
    let store = EmbeddedStore::open_with(dir.path(), checkpoint_always()).unwrap();
    let mut busy = 0;
    let checkpoint = async |busy: &mut u64| {
        while store.shared.tail_read().actor(&actor).iter().any(Option::is_some) {
            store.append(&other, request(*busy, &format!("o{busy}"), &["Deposited"])).await.unwrap();
            *busy += 1;
            assert!(*busy < 10_000, "a checkpoint ran");
        }
    };
    store.append(&actor, request(0, "open", &["Opened"])).await.unwrap();
    store.append(&actor, request(1, "none-1", &[])).await.unwrap();
    checkpoint(&mut busy).await;
    // A segment of `none-1` alone, at the key version 2 that the next holds too.
    store.append(&actor, request(1, "none-2", &[])).await.unwrap();
    store.append(&actor, request(1, "dep", &["Deposited"])).await.unwrap();
    checkpoint(&mut busy).await;
    store.append(&actor, request(2, "none-3", &[])).await.unwrap();

    let check = async |store: &EmbeddedStore, when: &str| {
        assert_eq!(store.version(&actor).await.unwrap(), 2, "{when}");
        assert_eq!(versions(store, &actor).await, [1, 2], "{when}");
        for (id, range) in [("none-1", (2, 1)), ("none-2", (2, 1)), ("dep", (2, 2)), ("none-3", (3, 2))] {
            let found = store.find_command(&actor, id).await.unwrap().map(|a| (a.first_version, a.last_version));
            assert_eq!(found, Some(range), "{id} {when}");
            let again = store.append(&actor, request(2, id, &[])).await.unwrap();
            assert_eq!((again.first_version, again.last_version, again.duplicate), (range.0, range.1, true));
        }
    };
    check(&store, "running").await;
    store.close().await.unwrap();
    let store = EmbeddedStore::open_with(dir.path(), no_checkpoints()).unwrap();
    check(&store, "after a restart").await;
    store.append(&actor, request(2, "none-4", &[])).await.unwrap();
    let copy = crash_copy(dir.path());
    let crashed = EmbeddedStore::open(copy.path()).unwrap();
    check(&crashed, "after a crash").await;
    let found = crashed.find_command(&actor, "none-4").await.unwrap().map(|a| (a.first_version, a.last_version));
    assert_eq!(found, Some((3, 2)), "replayed from the log");
}

/// The log of appends reads the same from memory, from redb and after a
/// crash, and its positions go on from where they were.
#[tokio::test]
async fn the_log_of_appends_survives_checkpoints_and_crashes() {
    let positions = |logged: &[crate::store::LoggedCommand]| logged.iter().map(|c| c.position).collect::<Vec<_>>();
    let (a, b) = (ActorId::new("Account", "a"), ActorId::new("Account", "b"));
    // Checkpointed after every write: entries in redb and in memory.
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_with(dir.path(), checkpoint_always()).unwrap();
    store.append(&a, request(0, "l1", &["Opened"])).await.unwrap();
    store.append(&b, request(0, "l2", &["Opened", "Deposited"])).await.unwrap();
    store.append(&a, request(1, "l3", &["Deposited"])).await.unwrap();
    let logged = store.read_log(0, 100).await.unwrap();
    assert_eq!(positions(&logged), [1, 2, 3]);
    assert_eq!(logged[1].events, store.read(&b, 0, 10).await.unwrap());
    assert_eq!(positions(&store.read_log(1, 1).await.unwrap()), [2]);
    store.close().await.unwrap();

    // Reopened, then written to the log only, then crashed.
    let store = EmbeddedStore::open_with(dir.path(), no_checkpoints()).unwrap();
    assert_eq!(store.log_head().await.unwrap(), 3, "the head survives a restart");
    let next = store.append(&b, request(2, "l4", &["Withdrawn"])).await.unwrap();
    assert_eq!(next.position, 4, "positions go on");
    store.append(&a, request(2, "l5", &[])).await.unwrap();
    store.append(&a, request(2, "l6", &["Closed"])).await.unwrap();
    let crashed = crash_copy(dir.path());
    let recovered = EmbeddedStore::open(crashed.path()).unwrap();
    assert_eq!(recovered.read_log(0, 100).await.unwrap(), store.read_log(0, 100).await.unwrap());
    assert_eq!(positions(&recovered.read_log(2, 100).await.unwrap()), [3, 4, 5], "no entry for no events");
    assert_eq!(recovered.append(&b, request(3, "l7", &["Closed"])).await.unwrap().position, 6);
}

/// A file written before the log of appends gets its history logged when
/// opened, actor by actor in version order.
#[tokio::test]
async fn history_stored_before_the_log_is_logged_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (ActorId::new("Account", "a"), ActorId::new("Account", "b"));
    let store = EmbeddedStore::open_with(dir.path(), checkpoint_always()).unwrap();
    store.append(&b, request(0, "h1", &["Opened"])).await.unwrap();
    store.append(&a, request(0, "h2", &["Opened", "Deposited"])).await.unwrap();
    store.append(&b, request(1, "h3", &["Closed"])).await.unwrap();
    store.close().await.unwrap();
    // As an older aether-host left it: no log table, no positions.
    {
        let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(redb::TableDefinition::<u64, (&str, &str, u64, u64)>::new("log")).unwrap();
        txn.open_table(super::tables::META).unwrap().remove("positions").unwrap();
        txn.commit().unwrap();
    }
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let logged = store.read_log(0, 100).await.unwrap();
    let seen: Vec<_> = logged.iter().map(|c| (c.position, c.actor.id.as_str(), c.events[0].version)).collect();
    assert_eq!(seen, [(1, "a", 1), (2, "b", 1), (3, "b", 2)]);
    assert_eq!(store.append(&a, request(2, "h4", &["Closed"])).await.unwrap().position, 4);
}
