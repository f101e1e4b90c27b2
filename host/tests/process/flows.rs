//! Policies and read models in the real binary: the bank's transfer saga
//! and owners read model on the embedded store and on JetStream, across a
//! SIGKILL; read-your-writes with a command's position.

use super::support::{Host, Http};
use aether_testkit::nats::NatsServer;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const ACCOUNTS: usize = 50;
const TRANSFERS: usize = 1000;
const CLIENTS: usize = 16;

/// A small deterministic generator: the amounts and pairs of a run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

fn account(i: usize) -> String {
    format!("acc-{i}")
}

/// Opens the accounts with random deposits; returns the money put in.
async fn open_accounts(http: &Http, rng: &mut Lcg) -> u64 {
    let mut total = 0;
    for i in 0..ACCOUNTS {
        let path = format!("/actors/Account/{}/commands", account(i));
        let owner = format!("owner-{}", i % 7);
        let key = format!("open-{i}");
        assert_eq!(
            http.post(&format!("{path}/Open"), &json!({ "owner": owner }).to_string(), &[("Idempotency-Key", &key)])
                .await
                .status,
            200
        );
        let amount = rng.next(1_000);
        total += amount;
        let key = format!("deposit-{i}");
        let body = json!({ "amount": amount }).to_string();
        assert_eq!(http.post(&format!("{path}/Deposit"), &body, &[("Idempotency-Key", &key)]).await.status, 200);
    }
    total
}

/// The transfers of a run: (from, to, amount).
fn transfers(rng: &mut Lcg) -> Vec<(usize, usize, u64)> {
    (0..TRANSFERS)
        .map(|_| {
            let from = rng.next(ACCOUNTS as u64) as usize;
            let to = (from + 1 + rng.next(ACCOUNTS as u64 - 1) as usize) % ACCOUNTS;
            (from, to, rng.next(400) + 1)
        })
        .collect()
}

/// Starts transfers from `next` on, from several clients at once, each
/// with its idempotency key; stops at the first that gets no answer (the
/// host is gone). Returns how many were answered `200`.
async fn start_transfers(http: Arc<Http>, all: Arc<Vec<(usize, usize, u64)>>, next: Arc<AtomicUsize>) -> usize {
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (http, all, next) = (http.clone(), all.clone(), next.clone());
        clients.spawn(async move {
            let mut answered = 0;
            loop {
                let t = next.fetch_add(1, Ordering::Relaxed);
                let Some((from, to, amount)) = all.get(t) else { return answered };
                let body = json!({ "from": account(*from), "to": account(*to), "amount": amount }).to_string();
                let path = format!("/actors/Transfer/t-{t}/commands/Start");
                // A cluster answers 503 while a shard fails over: ask again.
                let mut attempts = 0;
                loop {
                    match http.try_post(&path, &body, &format!("start-{t}")).await {
                        Ok(200) => break answered += 1,
                        Ok(503) if attempts < 20 => {
                            attempts += 1;
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                        Ok(status) => panic!("transfer t-{t} answered {status}"),
                        Err(_) => return answered,
                    }
                }
            }
        });
    }
    clients.join_all().await.into_iter().sum()
}

/// Waits until every policy and read model has processed the whole log
/// and the log has stopped growing.
async fn settle(http: &Http) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last: Option<Value> = None;
    loop {
        let flows = http.get("/flows").await.body["flows"].clone();
        let idle = flows.as_array().unwrap().iter().all(|f| f["lag"] == 0 && f["running_here"] == true);
        if idle && last.as_ref() == Some(&flows) {
            return;
        }
        assert!(Instant::now() < deadline, "the flows did not settle: {flows}");
        last = idle.then_some(flows);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Money is conserved, every transfer ended, and each account's row in the
/// owners read model is its state.
async fn assert_consistent(http: &Http, total: u64) {
    let mut balances = 0;
    for i in 0..ACCOUNTS {
        let state = http.get(&format!("/actors/Account/{}", account(i))).await.body["state"].clone();
        balances += state["balance"].as_u64().unwrap();
        let row = http.get(&format!("/read-models/AccountsByOwner/{}", account(i))).await;
        assert_eq!(row.status, 200, "{}", row.body);
        assert_eq!(row.body["row"], state, "the owners read model shows {}", account(i));
    }
    assert_eq!(balances, total, "no money made or lost");
    let (mut completed, mut failed) = (0, 0);
    for t in 0..TRANSFERS {
        let state = http.get(&format!("/actors/Transfer/t-{t}")).await.body["state"].clone();
        match &state["status"] {
            Value::String(s) if s == "Completed" => completed += 1,
            Value::Object(o) if o.contains_key("Failed") => failed += 1,
            other => panic!("transfer t-{t} ended {other}"),
        }
    }
    println!("{completed} transfers completed, {failed} failed");
    assert!(completed > 0 && failed > 0, "both paths taken");
    let flows = http.get("/flows").await.body;
    assert!(flows["flows"].as_array().unwrap().iter().all(|f| f["parked"] == 0), "nothing parked: {flows}");
}

/// 1,000 concurrent transfers among 50 accounts, the host killed with
/// SIGKILL part-way and started again on the same store.
async fn transfers_survive_a_sigkill(start: impl Fn() -> Host) {
    let mut rng = Lcg(11);
    let mut host = start();
    let http = Arc::new(Http::new(&host));
    let total = open_accounts(&http, &mut rng).await;
    let all = Arc::new(transfers(&mut rng));
    let next = Arc::new(AtomicUsize::new(0));
    let sending = tokio::spawn(start_transfers(http.clone(), all.clone(), next.clone()));
    while next.load(Ordering::Relaxed) < TRANSFERS / 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    host.kill();
    let before = sending.await.unwrap();
    println!("{before} transfers answered before the SIGKILL");

    // All again: every key is idempotent, the answered ones are duplicates.
    let host = start();
    let http = Arc::new(Http::new(&host));
    next.store(0, Ordering::Relaxed);
    start_transfers(http.clone(), all, next).await;
    settle(&http).await;
    assert_consistent(&http, total).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_conserve_money_on_the_embedded_store_across_a_sigkill() {
    let data = tempfile::tempdir().unwrap();
    transfers_survive_a_sigkill(|| Host::start(data.path(), &[])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_conserve_money_on_jetstream_across_a_sigkill() {
    let server = NatsServer::start();
    let url = server.url();
    transfers_survive_a_sigkill(|| Host::load(&["--nats", &url, "--no-cluster"])).await;
}

/// A query that carries a command's position sees that command's effect.
#[tokio::test]
async fn a_query_with_a_commands_position_sees_its_effect() {
    let host = Host::load(&["--memory"]);
    let http = Http::new(&host);
    let opened = http.post("/actors/Account/ryw/commands/Open", r#"{"owner": "ada"}"#, &[]).await;
    assert_eq!(opened.status, 200);
    for amount in 1..=20 {
        let answer =
            http.post("/actors/Account/ryw/commands/Deposit", &json!({ "amount": amount }).to_string(), &[]).await;
        let position = answer.body["position"].as_str().expect("a position token").to_owned();
        let row = http.get(&format!("/read-models/AccountsByOwner/ryw?position={position}")).await;
        assert_eq!(row.status, 200, "{}", row.body);
        assert_eq!(row.body["row"]["balance"], (1..=amount).sum::<u64>(), "the deposit of {amount} is seen");
    }
    let listed = http.get("/read-models/AccountsByOwner?where=owner=ada").await;
    assert_eq!(listed.body["rows"][0]["key"], "ryw");
    let missing = http.get("/read-models/AccountsByOwner/nobody").await;
    assert_eq!((missing.status, missing.body["error"].as_str()), (404, Some("not-found")));
    let unknown = http.get("/read-models/Nope/x").await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.body["message"].as_str().unwrap().contains("AccountsByOwner"), "{}", unknown.body);
    let metrics = http.text("/metrics").await;
    assert!(metrics.contains("aether_flow_lag{kind=\"read-model\",name=\"AccountsByOwner\"}"), "{metrics}");
}

/// In a cluster the runners run once, on the leader, and move with the
/// lead: the leader is killed with SIGKILL while transfers run, the other
/// node takes the lead and finishes them from the checkpoints in the
/// cluster's bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_the_flows_run_on_the_leader_and_move_with_it() {
    use super::harness::{node, settled};
    let server = NatsServer::start();
    let url = server.url();
    let (mut a, mut b) = (node(&url, "a"), node(&url, "b"));
    let views = settled(&[&a, &b], 2).await;
    let leader = views[0]["leader"].as_str().unwrap().to_owned();
    let (leader, follower) = if leader == "a" { (&mut a, &mut b) } else { (&mut b, &mut a) };
    let (to_leader, to_follower) = (Arc::new(Http::new(leader)), Arc::new(Http::new(follower)));
    // Only the leader runs them; the follower answers queries all the same.
    let running = |flows: &Value| flows["flows"].as_array().unwrap().iter().all(|f| f["running_here"] == true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !running(&to_leader.get("/flows").await.body) {
        assert!(Instant::now() < deadline, "the leader does not run the flows");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let idle = |flows: &Value| flows["flows"].as_array().unwrap().iter().all(|f| f["running_here"] == false);
    assert!(idle(&to_follower.get("/flows").await.body), "the follower runs nothing");

    let mut rng = Lcg(23);
    let total = open_accounts(&to_follower, &mut rng).await + 1;
    let deposit = to_follower.post("/actors/Account/acc-0/commands/Deposit", r#"{"amount": 1}"#, &[]).await;
    let position = deposit.body["position"].as_str().unwrap_or_else(|| panic!("{}", deposit.body)).to_owned();
    let row = to_follower.get(&format!("/read-models/AccountsByOwner/acc-0?position={position}")).await;
    assert_eq!(row.status, 200, "read-your-writes through a follower: {}", row.body);

    let all = Arc::new(transfers(&mut rng));
    let next = Arc::new(AtomicUsize::new(0));
    let sending = tokio::spawn(start_transfers(to_follower.clone(), all.clone(), next.clone()));
    while next.load(Ordering::Relaxed) < TRANSFERS / 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    leader.kill();
    sending.await.unwrap();
    next.store(0, Ordering::Relaxed);
    start_transfers(to_follower.clone(), all, next).await;
    settle(&to_follower).await;
    assert_consistent(&to_follower, total).await;
}
