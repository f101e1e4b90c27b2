//! Stopping the host: Ctrl-C finishes what it started; SIGKILL loses
//! nothing that was answered.

use super::support::{Host, Http};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

const ACTORS: usize = 4;
const CLIENTS: usize = 8;

/// Clients deposit 1 into random-ish accounts with unique keys until the
/// host goes away; returns the keys answered `200`, by account.
async fn deposit_until_gone(http: Arc<Http>, answered: Arc<Mutex<BTreeMap<usize, Vec<String>>>>, client: usize) {
    for n in 0.. {
        let account = (client + n) % ACTORS;
        let key = format!("c{client}-n{n}");
        let path = format!("/actors/Account/acct-{account}/commands/Deposit");
        let Ok(response) = http.try_post(&path, r#"{"amount": 1}"#, &key).await else { return };
        assert_eq!(response, 200, "while the host runs every deposit succeeds");
        answered.lock().unwrap().entry(account).or_default().push(key);
    }
}

async fn open_accounts(http: &Http) {
    for account in 0..ACTORS {
        let answer =
            http.post(&format!("/actors/Account/acct-{account}/commands/Open"), r#"{"owner": "o"}"#, &[]).await;
        assert_eq!(answer.status, 200);
    }
}

/// Every answered key is stored exactly once, versions are 1..=n, and the
/// balance is the number of deposits stored.
async fn assert_every_answer_stored_once(http: &Http, answered: &BTreeMap<usize, Vec<String>>) -> usize {
    let mut stored_total = 0;
    for account in 0..ACTORS {
        let mut events = Vec::new();
        let mut from = 1;
        loop {
            let page = http.get(&format!("/actors/Account/acct-{account}/events?from={from}")).await;
            events.extend(page.body["events"].as_array().unwrap().iter().cloned());
            match page.body["next"].as_u64() {
                Some(next) => from = next,
                None => break,
            }
        }
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event["version"], i as u64 + 1, "versions are contiguous");
        }
        let keys: Vec<&str> = events.iter().skip(1).map(|e| e["provenance"]["command_id"].as_str().unwrap()).collect();
        let unique: HashSet<&str> = keys.iter().copied().collect();
        assert_eq!(unique.len(), keys.len(), "acct-{account}: a command stored twice");
        for key in answered.get(&account).into_iter().flatten() {
            assert!(unique.contains(key.as_str()), "acct-{account}: `{key}` was answered 200 but is not stored");
        }
        let state = http.get(&format!("/actors/Account/acct-{account}")).await;
        assert_eq!(state.body["state"]["balance"], keys.len() as u64);
        stored_total += keys.len();
    }
    stored_total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_no_answered_command_and_stores_none_twice() {
    let data = tempfile::tempdir().unwrap();
    let mut host = Host::start(data.path(), &[]);
    let http = Arc::new(Http::new(&host));
    open_accounts(&http).await;
    let answered = Arc::new(Mutex::new(BTreeMap::new()));
    let clients: Vec<_> =
        (0..CLIENTS).map(|c| tokio::spawn(deposit_until_gone(http.clone(), answered.clone(), c))).collect();
    // Kill once a good number are through, with more in flight.
    while answered.lock().unwrap().values().map(Vec::len).sum::<usize>() < 300 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    host.kill();
    for client in clients {
        client.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    let answered_total: usize = answered.values().map(Vec::len).sum();

    let host = Host::start(data.path(), &[]);
    let http = Http::new(&host);
    let stored = assert_every_answer_stored_once(&http, &answered).await;
    eprintln!("answered {answered_total} before SIGKILL; {stored} stored");
    // Commands in flight at the kill may or may not have landed, never more.
    assert!(
        stored >= answered_total && stored <= answered_total + CLIENTS,
        "{stored} stored, {answered_total} answered"
    );
    // Idempotency survives the crash: a retried key appends nothing.
    let (account, keys) = answered.iter().next().unwrap();
    let retry = http
        .post(
            &format!("/actors/Account/acct-{account}/commands/Deposit"),
            r#"{"amount": 1}"#,
            &[("Idempotency-Key", &keys[0])],
        )
        .await;
    assert_eq!((retry.status, retry.body["duplicate"].clone()), (200, json!(true)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_finishes_commands_in_flight_and_flushes_the_store() {
    let data = tempfile::tempdir().unwrap();
    let mut host = Host::start(data.path(), &[]);
    let http = Arc::new(Http::new(&host));
    open_accounts(&http).await;
    let answered = Arc::new(Mutex::new(BTreeMap::new()));
    let clients: Vec<_> =
        (0..CLIENTS).map(|c| tokio::spawn(deposit_until_gone(http.clone(), answered.clone(), c))).collect();
    while answered.lock().unwrap().values().map(Vec::len).sum::<usize>() < 100 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let status = host.interrupt();
    assert!(status.success(), "exit {status}:\n{}", host.stderr());
    assert!(host.stderr().contains("aether-host: stopped"), "{}", host.stderr());
    for client in clients {
        client.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    let host = Host::start(data.path(), &[]);
    assert_every_answer_stored_once(&Http::new(&host), &answered).await;
}
