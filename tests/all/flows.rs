//! Policies and read models hosted on the real runtime: the bank's transfer
//! saga and owners read model, fed from the store's log.

use crate::support;
use aether_host::flow::{FlowConfig, Flows, Kind, MemoryViews, ViewStore};
use aether_testkit::TestKit;
use bank::{Account, AccountCommand, AccountRow, Transfer, TransferCommand, TransferStatus};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const ACCOUNTS: usize = 50;
const TRANSFERS: usize = 1000;

/// A small deterministic generator: the amounts and pairs of a run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

fn start(kit: &TestKit, views: Arc<dyn ViewStore>) -> (Flows, CancellationToken) {
    let stop = CancellationToken::new();
    let config = FlowConfig::default().with_poll(Duration::from_millis(5));
    (Flows::start(kit.runtime().clone(), views, config, stop.clone()), stop)
}

/// Waits until every runner has processed the whole log, and the log has
/// stopped growing (the saga's commands append more).
async fn settle(kit: &TestKit, flows: &Flows) {
    let store = kit.runtime().store();
    for _ in 0..200 {
        let head = store.log_head().await.unwrap();
        for status in flows.statuses() {
            flows.wait_for(status.kind, &status.name, head, Duration::from_secs(30)).await.unwrap();
        }
        if store.log_head().await.unwrap() == head {
            return;
        }
    }
    panic!("the log kept growing");
}

fn account(i: usize) -> String {
    format!("acc-{i}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_conserve_money_and_the_owners_read_model_follows() {
    let kit = support::bank().await;
    let (flows, stop) = start(&kit, Arc::new(MemoryViews::default()));
    let mut rng = Lcg(7);
    let mut total = 0;
    for i in 0..ACCOUNTS {
        let owner = format!("owner-{}", i % 7);
        kit.send("Account", &account(i), &AccountCommand::Open { owner }, None).await.unwrap();
        let amount = rng.next(1_000);
        total += amount;
        kit.send("Account", &account(i), &AccountCommand::Deposit { amount }, None).await.unwrap();
    }
    let mut sends = tokio::task::JoinSet::new();
    for t in 0..TRANSFERS {
        let from = rng.next(ACCOUNTS as u64) as usize;
        let to = (from + 1 + rng.next(ACCOUNTS as u64 - 1) as usize) % ACCOUNTS;
        let start = TransferCommand::Start { from: account(from), to: account(to), amount: rng.next(400) + 1 };
        let runtime = kit.runtime().clone();
        sends.spawn(async move {
            let (name, payload) = aether_guest::codec::split(&start).unwrap();
            let request = aether_host::runtime::CommandRequest {
                aggregate: "Transfer".into(),
                id: format!("t-{t}"),
                command: name,
                payload,
                ..Default::default()
            };
            runtime.execute(request).await.unwrap()
        });
    }
    while let Some(sent) = sends.join_next().await {
        assert!(matches!(sent.unwrap(), aether_host::CommandOutcome::Accepted { .. }));
    }
    settle(&kit, &flows).await;

    let mut balances = 0;
    for i in 0..ACCOUNTS {
        let state: Account = kit.state("Account", &account(i)).await;
        balances += state.balance;
        let row = flows.row("AccountsByOwner", &account(i)).await.unwrap().expect("a row per account");
        let row: AccountRow = rmp_serde::from_slice(&row).unwrap();
        assert_eq!(row, AccountRow { owner: state.owner, balance: state.balance, open: state.open }, "{i}");
    }
    assert_eq!(balances, total, "no money made or lost");
    let (mut completed, mut failed) = (0, 0);
    for t in 0..TRANSFERS {
        let transfer: Transfer = kit.state("Transfer", &format!("t-{t}")).await;
        match transfer.status {
            TransferStatus::Completed => completed += 1,
            TransferStatus::Failed { .. } => failed += 1,
            other => panic!("transfer t-{t} ended {other:?}"),
        }
    }
    println!("{completed} transfers completed, {failed} failed");
    assert!(completed > 0 && failed > 0, "both paths taken: {completed} completed, {failed} failed");
    let saga = flows.status(Kind::Policy, "TransferSaga").unwrap();
    assert_eq!(saga.parked(), 0);
    // Listing by owner (an index of the read model's), a page of 2 at a time.
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let page = flows.rows("AccountsByOwner", "", after.as_deref(), 2, Some(("owner", "owner-3"))).await.unwrap();
        listed.extend(page.rows.into_iter().map(|r| r.key));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut expected: Vec<String> = (0..ACCOUNTS).filter(|i| i % 7 == 3).map(account).collect();
    expected.sort();
    assert_eq!(listed, expected, "listing by owner");
    stop.cancel();
    flows.stopped().await;
}

/// A runner restarted on the same views goes on from its checkpoint, and a
/// rebuild folds the same rows again from the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_go_on_from_their_checkpoints_and_a_rebuild_refolds() {
    let kit = support::bank().await;
    let views: Arc<dyn ViewStore> = Arc::new(MemoryViews::default());
    let (flows, stop) = start(&kit, views.clone());
    kit.send("Account", "a", &AccountCommand::Open { owner: "ada".into() }, None).await.unwrap();
    kit.send("Account", "a", &AccountCommand::Deposit { amount: 10 }, None).await.unwrap();
    settle(&kit, &flows).await;
    stop.cancel();
    flows.stopped().await;

    kit.send("Account", "a", &AccountCommand::Deposit { amount: 5 }, None).await.unwrap();
    let (flows, stop) = start(&kit, views.clone());
    settle(&kit, &flows).await;
    let row = |flows: Flows| async move {
        let row = flows.row("AccountsByOwner", "a").await.unwrap().unwrap();
        rmp_serde::from_slice::<AccountRow>(&row).unwrap()
    };
    assert_eq!(row(flows.clone()).await.balance, 15, "each deposit folded once");
    // A row no event made: a rebuild drops it.
    let stale = [&[0; 8][..], &[1, 0xc0]].concat();
    views.write("rows/AccountsByOwner", vec![("stale".into(), Some(stale))]).await.unwrap();
    flows.rebuild("AccountsByOwner").await.unwrap();
    settle(&kit, &flows).await;
    assert_eq!(row(flows.clone()).await.balance, 15, "refolded from the start");
    let page = flows.rows("AccountsByOwner", "", None, 10, None).await.unwrap();
    assert_eq!(page.rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["a"], "the stale row is gone");
    stop.cancel();
    flows.stopped().await;
}

/// A policy that faults on one event parks that event, with its error, and
/// goes on with the others; so does a read model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulting_input_is_parked_and_the_rest_go_on() {
    #[derive(serde::Serialize)]
    enum TrapperCommand {
        Ping,
    }
    let kit = support::faulty().await;
    let (flows, stop) = start(&kit, Arc::new(MemoryViews::default()));
    for id in ["stray", "garble", "panic", "ok"] {
        kit.send("Trapper", id, &TrapperCommand::Ping, None).await.unwrap();
    }
    // `ok` is answered with a ping of `ok-echo`, whose event is answered in turn.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let rogue = flows.status(Kind::Policy, "Rogue").unwrap();
    while rogue.parked() < 3
        || kit.runtime().store().version(&aether_host::ActorId::new("Trapper", "ok-echo")).await.unwrap() == 0
    {
        assert!(std::time::Instant::now() < deadline, "parked {}", rogue.parked());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    flows.stopped().await;
    let parked = flows.parked(Kind::Policy, "Rogue", None, 100).await.unwrap();
    let errors: Vec<String> = parked.iter().map(|(_, p)| format!("{} {}", p["input"], p["error"])).collect();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].contains("Trapper/stray@1") && errors[0].contains("which it does not declare"), "{errors:#?}");
    assert!(errors[1].contains("Trapper/garble@1") && errors[1].contains("payload that is"), "{errors:#?}");
    assert!(errors[2].contains("Trapper/panic@1") && errors[2].contains("panic"), "{errors:#?}");

    let pings = flows.parked(Kind::ReadModel, "Pings", None, 100).await.unwrap();
    assert_eq!(pings.len(), 1, "{pings:?}");
    assert!(pings[0].1["input"].as_str().unwrap().contains("garble"), "{pings:?}");
    for id in ["stray", "panic", "ok", "ok-echo"] {
        let row = flows.row("Pings", id).await.unwrap().unwrap_or_else(|| panic!("a row for {id}"));
        assert_eq!(rmp_serde::from_slice::<u64>(&row).unwrap(), 1, "{id}");
    }
    assert_eq!(flows.row("Pings", "garble").await.unwrap(), None, "the faulting fold left no row");
}

/// A read model declared otherwise than its rows were folded by (another
/// component's) is folded again from the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_model_declared_otherwise_is_folded_again() {
    let kit = support::bank().await;
    let views: Arc<dyn ViewStore> = Arc::new(MemoryViews::default());
    let (flows, stop) = start(&kit, views.clone());
    kit.send("Account", "a", &AccountCommand::Open { owner: "ada".into() }, None).await.unwrap();
    settle(&kit, &flows).await;
    stop.cancel();
    flows.stopped().await;
    // As if an older component had folded them, with a row it made.
    views.write("definitions/read-model", vec![("AccountsByOwner".into(), Some(b"older".to_vec()))]).await.unwrap();
    // A row folded up to position 0, holding MessagePack nil.
    let stale = [&[0; 8][..], &[1, 0xc0]].concat();
    views.write("rows/AccountsByOwner", vec![("stale".into(), Some(stale))]).await.unwrap();

    let (flows, stop) = start(&kit, views);
    settle(&kit, &flows).await;
    let page = flows.rows("AccountsByOwner", "", None, 10, None).await.unwrap();
    assert_eq!(page.rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["a"], "the stale row is gone");
    stop.cancel();
    flows.stopped().await;
}

/// What every views store must do: spaces apart, keys in order, listings
/// by prefix and after a key, deletes and clears.
async fn views_keep_their_contract(views: &dyn ViewStore) {
    let keys = ["b", "a.b", "a", "ü x", "a\0z", "c"];
    let put: Vec<_> = keys.iter().map(|k| (k.to_string(), Some(k.as_bytes().to_vec()))).collect();
    views.write("one", put).await.unwrap();
    views.write("one.two", vec![("a".into(), Some(b"other".to_vec()))]).await.unwrap();
    assert_eq!(views.get("one", "a.b").await.unwrap().as_deref(), Some(&b"a.b"[..]));
    assert_eq!(views.get("one", "nope").await.unwrap(), None);
    let listed = |entries: Vec<(String, Vec<u8>)>| entries.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(listed(views.scan("one", "", None, 100).await.unwrap()), ["a", "a\0z", "a.b", "b", "c", "ü x"]);
    assert_eq!(listed(views.scan("one", "a", None, 100).await.unwrap()), ["a", "a\0z", "a.b"]);
    assert_eq!(listed(views.scan("one", "a", Some("a"), 1).await.unwrap()), ["a\0z"]);
    assert_eq!(listed(views.scan("one", "", Some("b"), 100).await.unwrap()), ["c", "ü x"]);
    assert_eq!(listed(views.scan("one.two", "", None, 100).await.unwrap()), ["a"], "spaces are apart");
    views.write("one", vec![("b".into(), None), ("c".into(), Some(b"new".to_vec()))]).await.unwrap();
    assert_eq!(views.get("one", "b").await.unwrap(), None);
    assert_eq!(views.get("one", "c").await.unwrap().as_deref(), Some(&b"new"[..]));
    assert_eq!(
        listed(views.scan("one", "", Some("a.b"), 100).await.unwrap()),
        ["c", "ü x"],
        "deleted keys are not listed"
    );
    views.clear("one").await.unwrap();
    assert!(views.scan("one", "", None, 100).await.unwrap().is_empty());
    assert_eq!(views.get("one.two", "a").await.unwrap().as_deref(), Some(&b"other"[..]), "a clear keeps to its space");
    assert!(views.scan("empty", "", None, 100).await.unwrap().is_empty());
}

#[tokio::test]
async fn every_views_store_keeps_the_contract() {
    views_keep_their_contract(&MemoryViews::default()).await;
    let dir = tempfile::tempdir().unwrap();
    views_keep_their_contract(&aether_host::flow::EmbeddedViews::open(dir.path()).unwrap()).await;
    let server = aether_testkit::nats::NatsServer::start();
    let js = async_nats::jetstream::new(server.client().await);
    let names = aether_host::names::NatsNames::new(None);
    let open = |domain| aether_host::flow::JetStreamViews::open(&js, &names, domain, 1);
    views_keep_their_contract(&open("contract").await.unwrap()).await;
    // Another domain's views share the bucket, not the keys.
    let other = open("other").await.unwrap();
    other.write("one.two", vec![("b".into(), Some(vec![1]))]).await.unwrap();
    assert_eq!(other.scan("one.two", "", None, 10).await.unwrap(), [("b".to_string(), vec![1])]);
}

/// A policy's batch read again (its checkpoint lost, as after a crash
/// before it was written) does not send again a command that was rejected:
/// the recorded rejection stands, though the target would take it now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_command_is_not_sent_again_when_its_batch_is_read_again() {
    let kit = support::bank().await;
    let views: Arc<dyn ViewStore> = Arc::new(MemoryViews::default());
    let (flows, stop) = start(&kit, views.clone());
    kit.send("Account", "poor", &AccountCommand::Open { owner: "p".into() }, None).await.unwrap();
    kit.send("Account", "rich", &AccountCommand::Open { owner: "r".into() }, None).await.unwrap();
    let transfer = TransferCommand::Start { from: "poor".into(), to: "rich".into(), amount: 50 };
    kit.send("Transfer", "t", &transfer, None).await.unwrap();
    settle(&kit, &flows).await;
    let failed: Transfer = kit.state("Transfer", "t").await;
    assert!(matches!(failed.status, TransferStatus::Failed { .. }), "{:?}", failed.status);
    assert_eq!(flows.status(Kind::Policy, "TransferSaga").unwrap().json()["commands_rejected"], 1);
    stop.cancel();
    flows.stopped().await;

    // The money is there now, and the saga reads its whole log again.
    kit.send("Account", "poor", &AccountCommand::Deposit { amount: 100 }, None).await.unwrap();
    views.write("checkpoints", vec![("policy/TransferSaga".into(), Some(0u64.to_be_bytes().to_vec()))]).await.unwrap();
    let (flows, stop) = start(&kit, views);
    settle(&kit, &flows).await;
    let poor: Account = kit.state("Account", "poor").await;
    assert_eq!(poor.balance, 100, "the rejected debit was not sent again");
    let transfer: Transfer = kit.state("Transfer", "t").await;
    assert!(matches!(transfer.status, TransferStatus::Failed { .. }), "{:?}", transfer.status);
    stop.cancel();
    flows.stopped().await;
}
