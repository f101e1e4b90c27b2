//! `aether-host verify`: bank v1 writes a history through the real host,
//! then v1 itself, a v2 that charges a fee on large withdrawals and a v2
//! that renames an event are verified against it, read-only.

use super::support::{Host, Http, aether_host, bank, component};
use serde_json::{Value, json};
use std::path::Path;

/// Runs `aether-host verify <wasm> --data <data> --json`: exit status and report.
fn verify(wasm: &Path, data: &Path, extra: &[&str]) -> (i32, Value) {
    let out = aether_host()
        .arg("verify")
        .arg(wasm)
        .arg("--data")
        .arg(data)
        .arg("--json")
        .args(extra)
        .output()
        .expect("aether-host verify runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("not a JSON report ({e}): {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr))
    });
    (out.status.code().expect("exited"), report)
}

async fn send(http: &Http, actor: &str, command: &str, body: &str) {
    let answer = http.post(&format!("/actors/Account/{actor}/commands/{command}"), body, &[]).await;
    assert_eq!(answer.status, 200, "{actor} {command}: {}", answer.body);
}

/// Bank v1's history: 13 commands, one event each; the last one sent by a
/// host that does not record commands.
async fn write_history(data: &Path) {
    let mut host = Host::start(data, &[]);
    let http = Http::new(&host);
    for (actor, command, body) in [
        ("acc-1", "Open", r#"{"owner": "Ada"}"#),
        ("acc-1", "Deposit", r#"{"amount": 500}"#),
        ("acc-1", "Withdraw", r#"{"amount": 50}"#),
        ("acc-1", "Withdraw", r#"{"amount": 150}"#),
        ("acc-1", "Withdraw", r#"{"amount": 200}"#),
        ("acc-1", "Deposit", r#"{"amount": 10}"#),
        ("acc-2", "Open", r#"{"owner": "Bob"}"#),
        ("acc-2", "Deposit", r#"{"amount": 20}"#),
        ("acc-2", "Withdraw", r#"{"amount": 20}"#),
        ("acc-2", "Close", "null"),
        ("acc-3", "Open", r#"{"owner": "Cy"}"#),
        ("acc-3", "Deposit", r#"{"amount": 5}"#),
    ] {
        send(&http, actor, command, body).await;
    }
    assert!(host.interrupt().success());
    let mut host = Host::start(data, &["--record-commands=false"]);
    send(&Http::new(&host), "acc-3", "Deposit", r#"{"amount": 7}"#).await;
    assert!(host.interrupt().success());
}

fn counts(report: &Value) -> Value {
    let mut counts = report["aggregates"]["Account"].clone();
    counts.as_object_mut().unwrap().remove("actors");
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_exactly_the_changed_decisions_and_the_first_unreadable_events() {
    let data = tempfile::tempdir().unwrap();
    write_history(data.path()).await;

    // v1 against its own history: every recorded command decided alike.
    let (status, report) = verify(&bank(), data.path(), &[]);
    assert_eq!(status, 0, "{report:#}");
    assert_eq!(report["aggregates"]["Account"]["actors"], 3);
    assert_eq!(
        counts(&report),
        json!({"events": 13, "identical": 12, "divergent": 0, "not_redecidable": 1, "unreadable_actors": 0})
    );
    assert_eq!(report["divergences"], json!([]));

    // The fee: exactly the two withdrawals over 100 are decided otherwise.
    let (status, report) = verify(&component("tests/guests/bank-v2-fee"), data.path(), &[]);
    assert_eq!(status, 2, "{report:#}");
    assert_eq!(
        counts(&report),
        json!({"events": 13, "identical": 10, "divergent": 2, "not_redecidable": 1, "unreadable_actors": 0})
    );
    let divergences = report["divergences"].as_array().unwrap();
    let found: Vec<_> = divergences.iter().map(|d| (d["id"].clone(), d["version"].clone())).collect();
    assert_eq!(found, [(json!("acc-1"), json!(4)), (json!("acc-1"), json!(5))]);
    assert_eq!(divergences[0]["command"], "Withdraw");
    assert_eq!(divergences[0]["payload"], json!({"amount": 150}));
    assert_eq!(divergences[0]["stored"], json!([{"name": "Withdrawn", "payload": {"amount": 150}}]));
    assert_eq!(
        divergences[0]["new"],
        json!({"outcome": "accepted", "events": [
            {"name": "Withdrawn", "payload": {"amount": 150}},
            {"name": "FeeCharged", "payload": {"amount": 1}},
        ]})
    );

    // The rename: each actor with a withdrawal stops at its first one.
    let (status, report) = verify(&component("tests/guests/bank-v2-renamed"), data.path(), &[]);
    assert_eq!(status, 3, "{report:#}");
    let unreadable = report["unreadable"].as_array().unwrap();
    let found: Vec<_> = unreadable.iter().map(|u| (u["id"].clone(), u["version"].clone())).collect();
    assert_eq!(found, [(json!("acc-1"), json!(3)), (json!("acc-2"), json!(3))], "{report:#}");
    assert!(unreadable[0]["cause"].as_str().unwrap().contains("Withdrawn"), "{report:#}");
    // The withdrawals decided as `MoneyWithdrawn`; what follows them cannot be judged.
    assert_eq!(
        counts(&report),
        json!({"events": 13, "identical": 6, "divergent": 2, "not_redecidable": 5, "unreadable_actors": 2})
    );

    // What the models say changed, beside what the history says.
    let (_, report) =
        verify(&component("tests/guests/bank-v2-renamed"), data.path(), &["--against", bank().to_str().unwrap()]);
    let account = &report["model_changes"]["aggregates"]["Account"];
    assert_eq!(
        (account["events_added"].clone(), account["events_removed"].clone()),
        (json!(["MoneyWithdrawn"]), json!(["Withdrawn"]))
    );
    assert_eq!((account["commands_added"].clone(), account["commands_removed"].clone()), (json!([]), json!([])));
    assert_eq!(report["model_changes"]["aggregates_removed"], json!([]));

    // Filters, and the summary a person reads.
    let (status, report) = verify(&component("tests/guests/bank-v2-fee"), data.path(), &["--actors", "Account/acc-2"]);
    assert_eq!((status, report["aggregates"]["Account"]["actors"].clone()), (0, json!(1)));
    let (status, report) = verify(&bank(), data.path(), &["--aggregate", "Account", "--limit", "2"]);
    assert_eq!((status, report["aggregates"]["Account"]["events"].clone()), (0, json!(10)));
    let out = aether_host()
        .arg("verify")
        .arg(component("tests/guests/bank-v2-fee"))
        .arg("--data")
        .arg(data.path())
        .arg("--against")
        .arg(bank())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout.contains("Account: events added: FeeCharged"), "{stdout}");
    assert!(stdout.contains("Account/acc-1 at version 4: Withdraw {\"amount\":150}"), "{stdout}");
    assert!(stdout.contains("2 recorded commands are decided otherwise"), "{stdout}");
}

#[test]
fn verify_refuses_a_directory_without_a_store() {
    let data = tempfile::tempdir().unwrap();
    let out = aether_host().arg("verify").arg(bank()).arg("--data").arg(data.path().join("none")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("aether-host: no event store at"), "{stderr}");
    assert!(!data.path().join("none").exists(), "verify creates nothing");
}

/// On JetStream, verify runs beside a live host and lists the actors from
/// the stream's subjects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reads_a_jetstream_history_beside_a_running_host() {
    let server = aether_testkit::nats::NatsServer::start();
    let url = server.url();
    let host = Host::load(&["--nats", &url, "--no-cluster"]);
    let http = Http::new(&host);
    for (actor, command, body) in [
        ("j 1", "Open", r#"{"owner": "Ada"}"#),
        ("j 1", "Deposit", r#"{"amount": 500}"#),
        ("j 1", "Withdraw", r#"{"amount": 300}"#),
        ("j.2", "Open", r#"{"owner": "Bob"}"#),
    ] {
        send(&http, actor, command, body).await;
    }
    let run = |wasm: &Path| {
        let out = aether_host().arg("verify").arg(wasm).args(["--nats", &url, "--json"]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let report: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code().unwrap(), report)
    };
    let (status, report) = run(&bank());
    assert_eq!(status, 0, "{report:#}");
    assert_eq!(report["aggregates"]["Account"]["actors"], 2);
    assert_eq!(report["aggregates"]["Account"]["identical"], 4);
    let (status, report) = run(&component("tests/guests/bank-v2-fee"));
    assert_eq!(status, 2, "{report:#}");
    let d = &report["divergences"][0];
    assert_eq!(
        (d["id"].clone(), d["version"].clone(), d["command"].clone()),
        (json!("j 1"), json!(3), json!("Withdraw"))
    );
    // Read-only: the host goes on where it was.
    send(&http, "j 1", "Deposit", r#"{"amount": 1}"#).await;
    assert_eq!(http.get("/actors/Account/j%201").await.body["version"], 4);
}
