//! `aether-host upgrade`: a running host moves to bank v2 (a fee on large
//! withdrawals) and back to v1 under a steady stream of commands, and
//! refuses components that would break it while the old one keeps serving.

use super::support::{Host, Http, aether_host, bank, component};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Runs `aether-host upgrade <wasm> --url <host> --json <extra>`: success, stdout, stderr.
fn upgrade(host: &Host, wasm: &Path, extra: &[&str]) -> (bool, String, String) {
    upgrade_at(&host.url, wasm, extra)
}

fn upgrade_at(url: &str, wasm: &Path, extra: &[&str]) -> (bool, String, String) {
    let out = aether_host()
        .arg("upgrade")
        .arg(wasm)
        .args(["--url", url, "--json"])
        .args(extra)
        .output()
        .expect("aether-host upgrade runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// The SHA-256 `aether-host check` prints for a component.
fn hash_of(wasm: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(wasm).unwrap()))
}

/// One command of the stream: when it was sent, how it was answered.
#[derive(Debug)]
struct Sent {
    actor: String,
    sent: Instant,
    answered: Instant,
    status: u16,
    version: u64,
    body: String,
}

const ACTORS: usize = 6;

/// Sends deposits and small withdrawals (never over v2's fee threshold)
/// round the actors, each awaited, until `stop`; every answer is kept.
async fn stream(http: Arc<Http>, client: usize, stop: Arc<AtomicBool>, answered: Arc<AtomicUsize>) -> Vec<Sent> {
    let mut sent = Vec::new();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let actor = format!("live-{}", n % ACTORS);
        let (command, body) = if (n / ACTORS).is_multiple_of(2) {
            ("Deposit", r#"{"amount": 3}"#)
        } else {
            ("Withdraw", r#"{"amount": 1}"#)
        };
        let started = Instant::now();
        let answer = http
            .post(
                &format!("/actors/Account/{actor}/commands/{command}"),
                body,
                &[("Idempotency-Key", &format!("c{client}-{n}"))],
            )
            .await;
        answered.fetch_add(1, Ordering::Relaxed);
        sent.push(Sent {
            actor,
            sent: started,
            answered: Instant::now(),
            status: answer.status,
            version: answer.body["version"].as_u64().unwrap_or(0),
            body: answer.body.to_string(),
        });
        n += 1;
    }
    sent
}

/// Every event of an actor, page by page: (version, name, component hash).
async fn history(http: &Http, actor: &str) -> Vec<(u64, String, String)> {
    let mut events = Vec::new();
    let mut from = 1;
    loop {
        let answer = http.get(&format!("/actors/Account/{actor}/events?from={from}&limit=1000")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        events.extend(answer.body["events"].as_array().unwrap().iter().map(|e| {
            (
                e["version"].as_u64().unwrap(),
                e["name"].as_str().unwrap().to_owned(),
                e["provenance"]["component_hash"].as_str().unwrap().to_owned(),
            )
        }));
        match answer.body["next"].as_u64() {
            Some(next) => from = next,
            None => return events,
        }
    }
}

/// Lets the stream run until it has answered `more` further commands.
async fn run_for(stop_after: usize, count: impl Fn() -> usize) {
    let target = count() + stop_after;
    let deadline = Instant::now() + Duration::from_secs(60);
    while count() < target {
        assert!(Instant::now() < deadline, "the stream stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_upgrade_and_a_rollback_under_a_steady_stream_answer_every_command() {
    let (v1, v2) = (bank(), component("tests/guests/bank-v2-fee"));
    let (v1_hash, v2_hash) = (hash_of(&v1), hash_of(&v2));
    let data = tempfile::tempdir().unwrap();
    // Snapshots every few events, so actors move over from snapshots too.
    let host = Host::start(data.path(), &["--snapshot-every", "4"]);
    let http = Arc::new(Http::new(&host));
    assert_eq!(http.get("/healthz").await.body["component_hash"], v1_hash);
    for i in 0..ACTORS {
        let answer = http.post(&format!("/actors/Account/live-{i}/commands/Open"), r#"{"owner": "o"}"#, &[]).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }

    // A stream of commands, each awaited, from two clients at once.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let streams: Vec<_> =
        (0..2).map(|c| tokio::spawn(stream(http.clone(), c, stop.clone(), answered.clone()))).collect();
    let count = || answered.load(Ordering::Relaxed);
    run_for(150, count).await;

    // Upgrade to v2 while the stream runs.
    let upgrading = Instant::now();
    let (ok, stdout, stderr) = tokio::task::spawn_blocking({
        let (host_url, v2) = (host.url.clone(), v2.clone());
        move || {
            let out = aether_host().arg("upgrade").arg(&v2).args(["--url", &host_url, "--json"]).output().unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    })
    .await
    .unwrap();
    let upgraded = Instant::now();
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((report["previous"].as_str(), report["current"].as_str()), (Some(&*v1_hash), Some(&*v2_hash)));
    assert_eq!(report["changed"], true);
    assert_eq!(report["model_changes"]["aggregates"]["Account"]["events_added"], json!(["FeeCharged"]));
    // v2 reads v1's state as it is: v1's snapshots are restored, not replayed over.
    assert_eq!(report["trusted_snapshots"], json!({ v1_hash.clone(): ["Account", "Transfer"] }), "{report:#}");
    assert_eq!(http.get("/healthz").await.body["component_hash"], v2_hash);
    assert_eq!(http.get("/admin/component").await.body["component_hash"], v2_hash);
    run_for(150, count).await;

    // The new rule decides: a large withdrawal now costs a fee.
    let fee = http.post("/actors/Account/fee/commands/Open", r#"{"owner": "f"}"#, &[]).await;
    assert_eq!(fee.status, 200);
    http.post("/actors/Account/fee/commands/Deposit", r#"{"amount": 500}"#, &[]).await;
    let withdrawn = http.post("/actors/Account/fee/commands/Withdraw", r#"{"amount": 200}"#, &[]).await;
    let names: Vec<_> = withdrawn.body["events"].as_array().unwrap().iter().map(|e| e["name"].clone()).collect();
    assert_eq!(names, [json!("Withdrawn"), json!("FeeCharged")], "{}", withdrawn.body);

    // Back to v1, which lacks `FeeCharged`: refused unless forced.
    let rolling_back = Instant::now();
    let (ok, _, stderr) = tokio::task::spawn_blocking({
        let (host_url, v1) = (host.url.clone(), v1.clone());
        move || {
            let out = aether_host().arg("upgrade").arg(&v1).args(["--url", &host_url]).output().unwrap();
            (out.status.success(), String::new(), String::from_utf8_lossy(&out.stderr).into_owned())
        }
    })
    .await
    .unwrap();
    assert!(!ok);
    assert!(stderr.contains("event `Account.FeeCharged`") && stderr.contains("incompatible-component"), "{stderr}");
    assert_eq!(http.get("/healthz").await.body["component_hash"], v2_hash, "a refused rollback changes nothing");
    let (ok, stdout, stderr) = tokio::task::spawn_blocking({
        let (host_url, v1) = (host.url.clone(), v1.clone());
        move || {
            let out =
                aether_host().arg("upgrade").arg(&v1).args(["--url", &host_url, "--json", "--force"]).output().unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    })
    .await
    .unwrap();
    let rolled_back = Instant::now();
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((report["previous"].as_str(), report["current"].as_str()), (Some(&*v2_hash), Some(&*v1_hash)));
    // v2 may have folded fees into Account's snapshots: v1 does not trust
    // them (Transfer's, which v2 did not change, it does).
    assert_eq!(report["trusted_snapshots"], json!({ v2_hash.clone(): ["Transfer"] }), "{report:#}");
    run_for(150, count).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = Vec::new();
    for s in streams {
        sent.extend(s.await.unwrap());
    }

    // Zero errors.
    let failed: Vec<_> = sent.iter().filter(|s| s.status != 200).map(|s| (&s.actor, s.status, &s.body)).collect();
    assert!(failed.is_empty(), "{} of {} commands failed: {failed:?}", failed.len(), sent.len());
    assert!(sent.len() >= 450, "{}", sent.len());

    // Each actor's stream: v1, then v2, then v1 again, switching once each
    // way; a command sent after an upgrade answered carries the new hash.
    for i in 0..ACTORS {
        let actor = format!("live-{i}");
        let events = history(&http, &actor).await;
        let mut phases: Vec<&str> = events.iter().map(|(_, _, h)| h.as_str()).collect();
        phases.dedup();
        assert_eq!(phases, [v1_hash.as_str(), v2_hash.as_str(), v1_hash.as_str()], "{actor}: {events:?}");
        let hash_at = |version: u64| events.iter().find(|(v, _, _)| *v == version).map(|(_, _, h)| h.clone());
        for s in sent.iter().filter(|s| s.actor == actor) {
            let expected = if s.answered < upgrading || s.sent > rolled_back {
                &v1_hash
            } else if s.sent > upgraded && s.answered < rolling_back {
                &v2_hash
            } else {
                continue; // in flight while an upgrade was: either
            };
            assert_eq!(hash_at(s.version).as_ref(), Some(expected), "{actor} version {}", s.version);
        }
    }
    let metrics = http.text("/metrics").await;
    assert!(metrics.contains("\naether_upgrades_total 2\n"), "{metrics}");
    let moved = metrics.lines().find_map(|l| l.strip_prefix("aether_upgrade_moved_actors_total ")).unwrap();
    assert!(moved.parse::<u64>().unwrap() >= 2 * ACTORS as u64, "{moved}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_that_would_break_the_host_is_refused_and_the_old_one_keeps_serving() {
    let v1_hash = hash_of(&bank());
    let host = Host::load(&["--memory"]);
    let http = Http::new(&host);
    assert_eq!(http.post("/actors/Account/a/commands/Open", r#"{"owner": "o"}"#, &[]).await.status, 200);

    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"not a component").unwrap();
    let (ok, _, stderr) = upgrade(&host, &garbage, &[]);
    assert!(!ok);
    assert!(stderr.contains("not a WebAssembly file") && stderr.contains("bad-component, HTTP 400"), "{stderr}");

    let (ok, _, stderr) = upgrade(&host, &component("tests/guests/bad-model"), &[]);
    assert!(!ok);
    assert!(stderr.contains("does not load: invalid model") && stderr.contains("bad-component"), "{stderr}");

    // The rename would leave every stored `Withdrawn` unreadable.
    let (ok, _, stderr) = upgrade(&host, &component("tests/guests/bank-v2-renamed"), &[]);
    assert!(!ok);
    assert!(stderr.contains("no longer declares event `Account.Withdrawn`"), "{stderr}");
    assert!(stderr.contains("incompatible-component, HTTP 409"), "{stderr}");

    // The same component again: nothing to do.
    let (ok, stdout, stderr) = upgrade(&host, &bank(), &[]);
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((report["changed"].clone(), report["current"].clone()), (json!(false), json!(v1_hash)));

    // Still v1, still serving, still deciding as v1.
    let status = http.get("/admin/component").await.body;
    assert_eq!((status["component_hash"].clone(), status["upgrades"].clone()), (json!(v1_hash), json!(0)));
    http.post("/actors/Account/a/commands/Deposit", r#"{"amount": 500}"#, &[]).await;
    let withdrawn = http.post("/actors/Account/a/commands/Withdraw", r#"{"amount": 200}"#, &[]).await;
    assert_eq!(withdrawn.status, 200);
    assert_eq!(withdrawn.body["events"].as_array().unwrap().len(), 1, "no fee under v1: {}", withdrawn.body);
    let events = history(&http, "a").await;
    assert!(events.iter().all(|(_, _, h)| *h == v1_hash), "{events:?}");
}

/// The admin route asks for the token as every other route does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_route_needs_the_token() {
    let host = Host::load(&["--memory", "--http-token", "s3cret"]);
    let (ok, _, stderr) = upgrade(&host, &component("tests/guests/bank-v2-fee"), &[]);
    assert!(!ok);
    assert!(stderr.contains("unauthorized, HTTP 401"), "{stderr}");
    let (ok, stdout, stderr) = upgrade(&host, &component("tests/guests/bank-v2-fee"), &["--token", "s3cret"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("\"changed\": true"), "{stdout}");
}

/// On NATS, an upgrade through one node moves every node of the cluster,
/// a node that joins later runs the cluster's component whatever file it
/// was started with, and a rollback moves them all back; a steady load
/// through both doors sees no error and every answered command is stored
/// once, under the hash of the component that ran when it was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_of_a_cluster_moves_to_the_new_component_and_back() {
    use super::harness::{Load, Outcome, Target, check, node, open_accounts, settled};
    let (v1, v2) = (bank(), component("tests/guests/bank-v2-fee"));
    let (v1_hash, v2_hash) = (hash_of(&v1), hash_of(&v2));
    let server = aether_testkit::nats::NatsServer::start();
    let url = server.url();
    let (a, b) = (node(&url, "a"), node(&url, "b"));
    settled(&[&a, &b], 2).await;
    let accounts = 60;
    open_accounts(&[a.url.clone(), b.url.clone()], accounts).await;
    let load = Load::start(Target::Http(vec![a.url.clone(), b.url.clone()]), accounts, 4, "up");
    load.until_acked(100).await;

    let run = |url: String, wasm: std::path::PathBuf, extra: &'static [&'static str]| {
        tokio::task::spawn_blocking(move || upgrade_at(&url, &wasm, extra))
    };
    let upgrading = Instant::now();
    let (ok, stdout, stderr) = run(b.url.clone(), v2.clone(), &[]).await.unwrap();
    let upgraded = Instant::now();
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["current"], v2_hash);
    assert_eq!(report["nodes"], json!({"a": {"hash": v2_hash}, "b": {"hash": v2_hash}}), "{report:#}");
    for host in [&a, &b] {
        assert_eq!(Http::new(host).get("/healthz").await.body["component_hash"], v2_hash);
    }
    load.until_acked(100).await;

    // A node started with v1's file joins a cluster that runs v2.
    let c = node(&url, "c");
    settled(&[&a, &b, &c], 3).await;
    assert_eq!(Http::new(&c).get("/healthz").await.body["component_hash"], v2_hash, "{}", c.stdout());
    assert!(c.stdout().contains(&format!("cluster component: sha-256 {v2_hash} (the cluster's")), "{}", c.stdout());
    let status = Http::new(&a).get("/cluster").await.body;
    assert_eq!(status["component_hash"], v2_hash);
    for member in status["members"].as_array().unwrap() {
        assert_eq!(member["component_hash"], v2_hash, "{status:#}");
    }
    let out = aether_host().args(["cluster", "status", "--url", &c.url]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("component {v2_hash}")), "{text}");
    assert!(text.lines().any(|l| l.starts_with('c') && l.contains(&v2_hash[..12])), "{text}");
    load.until_acked(100).await;

    // A bad component is refused by the node asked, and reaches no other.
    let (ok, _, stderr) = run(a.url.clone(), component("tests/guests/bank-v2-renamed"), &[]).await.unwrap();
    assert!(!ok);
    assert!(stderr.contains("incompatible-component"), "{stderr}");

    // Rollback through a, forced (v1 lacks `FeeCharged`, of which none was stored).
    let rolling_back = Instant::now();
    let (ok, stdout, stderr) = run(a.url.clone(), v1.clone(), &["--force"]).await.unwrap();
    let rolled_back = Instant::now();
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        report["nodes"],
        json!({"a": {"hash": v1_hash}, "b": {"hash": v1_hash}, "c": {"hash": v1_hash}}),
        "{report:#}"
    );
    load.until_acked(100).await;
    let history = load.finish().await;
    history.assert_no_errors();
    let http = Http::new(&b);
    check(&http, accounts, &history).await.assert_exactly_once();

    // Each command carries the hash of the component that ran when it was sent.
    let mut hashes = std::collections::BTreeMap::new();
    for i in 0..accounts {
        let account = format!("acct-{i}");
        let events = http.get(&format!("/actors/Account/{account}/events?limit=1000")).await.body;
        let by_version: Vec<(u64, String)> = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["version"].as_u64().unwrap(), e["provenance"]["component_hash"].as_str().unwrap().to_owned()))
            .collect();
        let mut phases: Vec<&str> = by_version.iter().map(|(_, h)| h.as_str()).collect();
        phases.dedup();
        let order = [v1_hash.as_str(), v2_hash.as_str(), v1_hash.as_str()];
        assert!(order.starts_with(&phases), "{account}: {phases:?}");
        hashes.insert(account, by_version);
    }
    let (mut on_v2, mut after) = (0, 0);
    for record in &history.records {
        let Outcome::Acked { version } = record.outcome else { continue };
        let expected = if record.answered < upgrading || record.sent > rolled_back {
            &v1_hash
        } else if record.sent > upgraded && record.answered < rolling_back {
            &v2_hash
        } else {
            continue;
        };
        on_v2 += usize::from(*expected == v2_hash);
        after += usize::from(record.sent > rolled_back);
        let stored = hashes[&record.account].iter().find(|(v, _)| *v == version).map(|(_, h)| h);
        assert_eq!(stored, Some(expected), "{} {} at version {version}", record.account, record.key);
    }
    assert!(on_v2 >= 100 && after >= 50, "{on_v2} commands on v2, {after} after the rollback");
}
