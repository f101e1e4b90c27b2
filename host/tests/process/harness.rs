//! What the cluster and chaos tests share: nodes of one cluster on a real
//! `nats-server`, waiting for a settled map, a load generator whose clients
//! record the history of every command they send (account, idempotency key,
//! when, and the answer), and the checker that reads every actor's stream
//! back and holds it against that history.

use super::support::{Host, Http};
use aether_host::api::client::CommandIds;
use aether_host::api::nats::NatsClient;
use aether_host::cluster::{Key, ShardMap};
use aether_host::names::NatsNames;
use aether_testkit::nats::NatsServer;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const SHARDS: u32 = 1024;

/// `aether-host load --nats <url> --node-id <id>` on the bank example.
pub fn node(url: &str, id: &str) -> Host {
    Host::load(&node_args(url, id))
}

/// The arguments of [`node`] after `load <bank.wasm> --listen …`.
pub fn node_args<'a>(url: &'a str, id: &'a str) -> [&'a str; 4] {
    ["--nats", url, "--node-id", id]
}

/// A node of a cluster on a NATS cluster: `urls` comma-separated, and the
/// events stream and the cluster's bucket kept on three servers.
pub fn node_on_nats_cluster(urls: &str, id: &str) -> Host {
    Host::load(&["--nats", urls, "--node-id", id, "--js-replicas", "3"])
}

pub async fn status(host: &Host) -> Value {
    Http::new(host).get("/cluster").await.body
}

/// Waits until every host sees the same settled map: `members` members,
/// every shard owned and served by its owner, and none moving.
pub async fn settled(hosts: &[&Host], members: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut views = Vec::new();
        for host in hosts {
            views.push(status(host).await);
        }
        let epoch = &views[0]["epoch"];
        let serving: u64 = views.iter().map(|v| v["serving"].as_u64().unwrap()).sum();
        let quiet = views.iter().all(|v| {
            v["epoch"] == *epoch
                && v["moving"] == 0
                && v["unowned"] == 0
                && v["members"].as_array().unwrap().len() == members
                && v["shards"] == SHARDS
        });
        if quiet && serving == u64::from(SHARDS) {
            return views;
        }
        assert!(Instant::now() < deadline, "the cluster did not settle: {views:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Shards each node owns, from one settled view.
pub fn owned(view: &Value) -> BTreeMap<String, u64> {
    view["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["node"].as_str().unwrap().to_owned(), m["owned"].as_u64().unwrap()))
        .collect()
}

/// The map in the bucket, read as any client can.
pub async fn map(server: &NatsServer) -> ShardMap {
    let js = async_nats::jetstream::new(server.client().await);
    let names = NatsNames::new(None).cluster("bank");
    let kv = js.get_key_value(names.bucket()).await.unwrap();
    ShardMap::decode(&kv.get(names.key(&Key::Map)).await.unwrap().unwrap()).unwrap()
}

/// Opens `acct-0` .. `acct-{accounts-1}` through the hosts in turn, eight
/// at a time; each must answer `200`.
pub async fn open_accounts(urls: &[String], accounts: usize) {
    let mut opens = Vec::new();
    for chunk in 0..8 {
        let urls = urls.to_vec();
        opens.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in (chunk..accounts).step_by(8) {
                let response = http
                    .post(format!("{}/actors/Account/acct-{i}/commands/Open", urls[i % urls.len()]))
                    .body(r#"{"owner": "o"}"#)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
            }
        }));
    }
    for open in opens {
        open.await.unwrap();
    }
}

/// How one attempt of a command ended, as its client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `200`, with the version the answer reported.
    Acked { version: u64 },
    /// Any other status, or no answer (the connection failed).
    Failed(String),
}

/// One attempt of a deposit: what was sent, when, and its answer.
#[derive(Debug, Clone)]
pub struct Record {
    pub account: String,
    /// The idempotency key: unique per command, the same on a retry.
    pub key: String,
    pub sent: Instant,
    pub answered: Instant,
    pub outcome: Outcome,
}

/// Every attempt the clients made, in the order they were answered.
#[derive(Debug, Default, Clone)]
pub struct History {
    pub records: Vec<Record>,
}

impl History {
    pub fn acked(&self) -> impl Iterator<Item = &Record> {
        self.records.iter().filter(|r| matches!(r.outcome, Outcome::Acked { .. }))
    }

    pub fn errors(&self) -> impl Iterator<Item = &Record> {
        self.records.iter().filter(|r| matches!(r.outcome, Outcome::Failed(_)))
    }

    /// Fails the test if any attempt was answered with an error.
    pub fn assert_no_errors(&self) {
        let errors: Vec<String> =
            self.errors().take(5).map(|r| format!("{} {}: {:?}", r.account, r.key, r.outcome)).collect();
        assert!(errors.is_empty(), "clients saw {} errors, e.g. {errors:?}", self.errors().count());
    }

    /// Sends every command that was answered with an error again, once,
    /// with its idempotency key, through `url`: each must now answer `200`
    /// (stored once, whether or not the first attempt ran). The attempts
    /// join the history.
    pub async fn retry_errors(&mut self, url: &str) {
        let failed: BTreeSet<(String, String)> = self.errors().map(|r| (r.account.clone(), r.key.clone())).collect();
        let acked: BTreeSet<&str> = self.acked().map(|r| r.key.as_str()).collect();
        let http = client();
        let mut again = Vec::new();
        for (account, key) in failed {
            if acked.contains(key.as_str()) {
                continue;
            }
            let record = deposit_http(&http, url, &account, &key).await;
            assert!(matches!(record.outcome, Outcome::Acked { .. }), "a retry of {account} {key}: {record:?}");
            again.push(record);
        }
        self.records.extend(again);
    }
}

/// Where the clients send their deposits.
#[allow(clippy::large_enum_variant)]
pub enum Target {
    /// The HTTP doors, in turn, while they are up (see [`Load::add_door`]).
    Http(Vec<String>),
    Nats(NatsClient),
}

/// Deposits of 1 with unique idempotency keys, by concurrent clients over
/// the target, until stopped; every attempt goes into the history.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    history: Arc<Mutex<History>>,
    acked: Arc<AtomicUsize>,
    doors: Doors,
    /// One [`readiness`] poller per HTTP door.
    pollers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The HTTP doors of a load and whether each is up, as a load balancer
/// sees them: a door whose connection fails is taken out at once, and
/// each door's [`readiness`] poller takes it out or puts it back as its
/// `/readyz` answers; [`Load::add_door`] puts a new one in.
type Doors = Arc<Mutex<Vec<(String, bool)>>>;

/// Polls `url`'s `GET /readyz` every 100 ms (each given 500 ms) and marks
/// the door up while it answers `200`, down otherwise.
async fn readiness(doors: Doors, url: String) {
    let http = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().unwrap();
    loop {
        let ready = matches!(http.get(format!("{url}/readyz")).send().await, Ok(r) if r.status() == 200);
        for door in doors.lock().unwrap().iter_mut().filter(|(u, _)| *u == url) {
            door.1 = ready;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(40)).build().unwrap()
}

/// One deposit of 1 to `account` through the HTTP door at `url`.
async fn deposit_http(http: &reqwest::Client, url: &str, account: &str, key: &str) -> Record {
    let sent = Instant::now();
    let response = http
        .post(format!("{url}/actors/Account/{account}/commands/Deposit"))
        .header("Idempotency-Key", key)
        .body(r#"{"amount": 1}"#)
        .send()
        .await;
    let outcome = match response {
        Ok(response) => {
            let status = response.status();
            match response.text().await {
                Ok(text) if status == 200 => acked(serde_json::from_str(&text).unwrap_or(Value::Null)),
                Ok(text) => Outcome::Failed(format!("{status} {text}")),
                Err(e) => Outcome::Failed(format!("{status}, then the body failed: {e}")),
            }
        }
        Err(e) => Outcome::Failed(format!("no answer: {e}")),
    };
    Record { account: account.to_owned(), key: key.to_owned(), sent, answered: Instant::now(), outcome }
}

/// A `200`'s version: that of its last event (a repeat answers the
/// original events), else the actor's.
fn acked(body: Value) -> Outcome {
    let last_event = body["events"].as_array().and_then(|e| e.last()).and_then(|e| e["version"].as_u64());
    match last_event.or(body["version"].as_u64()) {
        Some(version) => Outcome::Acked { version },
        None => Outcome::Failed(format!("200 without a version: {body}")),
    }
}

impl Load {
    /// `clients` clients depositing into `acct-0` .. `acct-{accounts-1}`;
    /// keys are `<tag><client>-<n>`.
    pub fn start(target: Target, accounts: usize, clients: usize, tag: &str) -> Load {
        let doors: Doors = Arc::new(Mutex::new(match &target {
            Target::Http(urls) => urls.iter().map(|u| (u.clone(), true)).collect(),
            Target::Nats(_) => Vec::new(),
        }));
        let target = Arc::new(target);
        let stop = Arc::new(AtomicBool::new(false));
        let history: Arc<Mutex<History>> = Arc::default();
        let acked_count = Arc::new(AtomicUsize::new(0));
        let tasks = (0..clients)
            .map(|c| {
                let (target, stop, history, doors, acked_count) =
                    (target.clone(), stop.clone(), history.clone(), doors.clone(), acked_count.clone());
                let tag = format!("{tag}{c}");
                tokio::spawn(async move {
                    let http = client();
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let account = format!("acct-{}", (i * 7 + c * 13) % accounts);
                        let key = format!("{tag}-{i}");
                        let record = match &*target {
                            Target::Http(_) => {
                                // A door that is up; none (a probe timed out on a
                                // loaded machine): wait, as a balancer would.
                                let url = loop {
                                    let up: Vec<String> = doors
                                        .lock()
                                        .unwrap()
                                        .iter()
                                        .filter(|(_, up)| *up)
                                        .map(|(u, _)| u.clone())
                                        .collect();
                                    if !up.is_empty() {
                                        break up[i % up.len()].clone();
                                    }
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                };
                                let record = deposit_http(&http, &url, &account, &key).await;
                                if matches!(&record.outcome, Outcome::Failed(e) if e.starts_with("no answer")) {
                                    for door in doors.lock().unwrap().iter_mut().filter(|(u, _)| *u == url) {
                                        door.1 = false;
                                    }
                                }
                                record
                            }
                            Target::Nats(client) => {
                                let sent = Instant::now();
                                let ids = CommandIds { idempotency_key: Some(&key), ..CommandIds::default() };
                                let outcome = match client
                                    .send("Account", &account, "Deposit", Some(&json!({"amount": 1})), ids)
                                    .await
                                {
                                    Ok(body) => acked(body),
                                    Err(e) => Outcome::Failed(e.to_string()),
                                };
                                Record { account, key, sent, answered: Instant::now(), outcome }
                            }
                        };
                        if matches!(record.outcome, Outcome::Acked { .. }) {
                            acked_count.fetch_add(1, Ordering::Relaxed);
                        }
                        history.lock().unwrap().records.push(record);
                    }
                })
            })
            .collect();
        let urls: Vec<String> = doors.lock().unwrap().iter().map(|(url, _)| url.clone()).collect();
        let pollers = Mutex::new(urls.into_iter().map(|url| tokio::spawn(readiness(doors.clone(), url))).collect());
        Load { stop, tasks, history, acked: acked_count, doors, pollers }
    }

    /// Sends through this HTTP door too from now on (a node that started).
    pub fn add_door(&self, url: &str) {
        self.doors.lock().unwrap().push((url.to_owned(), true));
        self.pollers.lock().unwrap().push(tokio::spawn(readiness(self.doors.clone(), url.to_owned())));
    }

    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    /// The history so far.
    pub fn history(&self) -> History {
        self.history.lock().unwrap().clone()
    }

    /// Runs until `enough` more deposits were acknowledged.
    pub async fn until_acked(&self, enough: usize) {
        let target = self.acked() + enough;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.acked() < target {
            if Instant::now() >= deadline {
                let history = self.history();
                let errors: Vec<&Record> = history.errors().collect();
                let last = &errors[errors.len().saturating_sub(5)..];
                panic!("the load stalled at {} of {target}; the last errors: {last:#?}", self.acked());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the clients (each finishes the command it is sending) and
    /// returns the history.
    pub async fn finish(self) -> History {
        self.stop.store(true, Ordering::Relaxed);
        for poller in self.pollers.lock().unwrap().iter() {
            poller.abort();
        }
        for task in self.tasks {
            task.await.unwrap();
        }
        self.history.lock().unwrap().clone()
    }
}

/// What the checker found: every figure is of commands (idempotency keys).
#[derive(Debug, Default)]
pub struct Verdict {
    /// Commands sent (a retry of a key is the same command).
    pub sent: usize,
    /// Commands with at least one `200`.
    pub acked: usize,
    /// Attempts answered with an error.
    pub errors: usize,
    /// Commands answered `200` but not stored.
    pub lost: usize,
    /// Commands stored more than once.
    pub doubled: usize,
    /// Commands answered only with errors that were stored (once): they ran.
    pub errors_stored: usize,
    /// Everything that breaks the rules, one line each.
    pub problems: Vec<String>,
}

impl Verdict {
    /// Fails the test on any problem found.
    pub fn assert_exactly_once(&self) {
        let shown: Vec<&String> = self.problems.iter().take(10).collect();
        assert!(self.problems.is_empty(), "{} problems in the history: {shown:#?}\n{self}", self.problems.len());
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {}, acknowledged {}, errors {} ({} of those stored once), lost {}, doubled {}",
            self.sent, self.acked, self.errors, self.errors_stored, self.lost, self.doubled
        )
    }
}

/// Reads every account's stream through `http` (from any live node) and
/// holds it against the history: versions run 1, 2, 3, … without a gap;
/// after the `Open` at version 1 each event is a deposit the history sent
/// to that account; no command is stored twice; each command answered
/// `200` is stored, at the version its answer reported.
pub async fn check(http: &Http, accounts: usize, history: &History) -> Verdict {
    let mut verdict = Verdict { errors: history.errors().count(), ..Verdict::default() };
    // Per account: key → the versions its `200`s reported.
    let mut sent: BTreeMap<String, BTreeMap<String, BTreeSet<u64>>> = BTreeMap::new();
    for record in &history.records {
        let versions = sent.entry(record.account.clone()).or_default().entry(record.key.clone()).or_default();
        if let Outcome::Acked { version } = record.outcome {
            versions.insert(version);
        }
    }
    for a in 0..accounts {
        let account = format!("acct-{a}");
        let expected = sent.remove(&account).unwrap_or_default();
        let mut stored: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let (mut from, mut next_version) = (1, 1);
        loop {
            let page = http.get(&format!("/actors/Account/{account}/events?from={from}")).await;
            assert_eq!(page.status, 200, "{}", page.body);
            for event in page.body["events"].as_array().unwrap() {
                let version = event["version"].as_u64().unwrap();
                if version != next_version {
                    verdict.problems.push(format!("{account}: version {version} where {next_version} was due"));
                }
                next_version = version + 1;
                if version == 1 {
                    continue;
                }
                let key = event["provenance"]["command_id"].as_str().unwrap().to_owned();
                if !expected.contains_key(&key) {
                    verdict.problems.push(format!("{account}: v{version} stores {key}, never sent to it"));
                }
                stored.entry(key).or_default().push(version);
            }
            match page.body["next"].as_u64() {
                Some(next) => from = next,
                None => break,
            }
        }
        for (key, answered) in &expected {
            verdict.sent += 1;
            let at = stored.get(key).map_or(&[][..], Vec::as_slice);
            if !answered.is_empty() {
                verdict.acked += 1;
            }
            match at {
                [] if !answered.is_empty() => {
                    verdict.lost += 1;
                    verdict.problems.push(format!("{account}: {key} answered 200 {answered:?} but not stored"));
                }
                [] => {}
                [version] => {
                    if answered.is_empty() {
                        verdict.errors_stored += 1;
                    } else if answered.iter().any(|v| v != version) {
                        verdict.problems.push(format!("{account}: {key} stored at v{version}, answered {answered:?}"));
                    }
                }
                _ => {
                    verdict.doubled += 1;
                    verdict.problems.push(format!("{account}: {key} stored at {at:?}"));
                }
            }
        }
    }
    for (account, keys) in sent {
        verdict.problems.push(format!("{account} is not one of the {accounts} accounts checked ({} keys)", keys.len()));
    }
    verdict
}

/// Reads the whole events stream and returns, for every actor whose map
/// epoch (recorded on each append) goes back along its stream, what went
/// back: an append made under a grant that had already been superseded by
/// the time an earlier message was stored, i.e. by a node fenced too late.
pub async fn epochs_going_back(client: async_nats::Client) -> (usize, Vec<String>) {
    use aether_host::store::jetstream::EPOCH_HEADER;
    use futures_util::StreamExt;
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(NatsNames::new(None).events_stream()).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let consumer =
        stream.create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default()).await.unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut newest: BTreeMap<String, u64> = BTreeMap::new();
    let (mut read, mut back) = (0, Vec::new());
    while read < last {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("the events stream is read to its end")
            .unwrap()
            .unwrap();
        read = message.info().unwrap().stream_sequence;
        let epoch = message.headers.as_ref().and_then(|h| h.get(EPOCH_HEADER)).and_then(|e| e.as_str().parse().ok());
        let Some(epoch) = epoch else { continue };
        let subject = message.subject.to_string();
        let seen = newest.entry(subject.clone()).or_default();
        if epoch < *seen {
            back.push(format!("{subject}: sequence {read} at epoch {epoch} after epoch {seen}"));
        }
        *seen = (*seen).max(epoch);
    }
    (newest.len(), back)
}
