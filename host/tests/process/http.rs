//! Every route of the HTTP API on the real binary, each success and each
//! error status.

use super::support::{Host, Http};
use serde_json::{Value, json};

#[tokio::test]
async fn commands_answer_200_422_404_400_and_413() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(data.path(), &["--max-body-bytes", "512"]);
    let http = Http::new(&host);

    let opened = http.post("/actors/Account/a1/commands/Open", r#"{"owner": "Ada"}"#, &[]).await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    assert_eq!(opened.body["version"], 1);
    assert_eq!(opened.body["events"], json!([{"name": "Opened", "version": 1, "payload": {"owner": "Ada"}}]));

    // Idempotency-Key is the command id: a repeat appends nothing.
    let key = [("Idempotency-Key", "deposit-1")];
    let first = http.post("/actors/Account/a1/commands/Deposit", r#"{"amount": 40}"#, &key).await;
    assert_eq!(
        (first.status, first.body["version"].clone(), first.body["duplicate"].clone()),
        (200, 2.into(), false.into())
    );
    let again = http.post("/actors/Account/a1/commands/Deposit", r#"{"amount": 40}"#, &key).await;
    assert_eq!(
        (again.status, again.body["version"].clone(), again.body["duplicate"].clone()),
        (200, 2.into(), true.into())
    );
    assert_eq!(again.body["events"], first.body["events"]);
    assert_eq!(again.body["command_id"], "deposit-1");

    // A command without fields takes an empty body or `{}`.
    let b = http.post("/actors/Account/b1/commands/Open", r#"{"owner": "Bo"}"#, &[]).await;
    assert_eq!(b.status, 200);
    assert_eq!(http.post("/actors/Account/b1/commands/Close", "", &[]).await.status, 200);
    assert_eq!(http.post("/actors/Account/b1/commands/Close", "{}", &[]).await.status, 422);

    let rejected = http.post("/actors/Account/a1/commands/Withdraw", r#"{"amount": 1000}"#, &[]).await;
    assert_eq!(rejected.status, 422);
    assert_eq!(rejected.body["error"], "rejected");
    assert_eq!(rejected.body["code"], "insufficient-funds");
    assert_eq!(rejected.body["message"], "cannot withdraw 1000: the balance is 40");

    let unknown = http.post("/actors/Account/a1/commands/Fly", "{}", &[]).await;
    assert_eq!((unknown.status, unknown.body["error"].clone()), (404, "unknown-command".into()));
    assert_eq!(unknown.body["known"], json!(["Open", "Deposit", "Withdraw", "Close", "Debit", "Credit", "Refund"]));
    let unknown = http.post("/actors/Acount/a1/commands/Open", "{}", &[]).await;
    assert_eq!((unknown.status, unknown.body["error"].clone()), (404, "unknown-aggregate".into()));
    assert_eq!(unknown.body["known"], json!(["Account", "Transfer"]));
    assert!(unknown.body["message"].as_str().unwrap().contains("`Acount`"));

    let bad = http.post("/actors/Account/a1/commands/Deposit", r#"{"amount": "lots"}"#, &[]).await;
    assert_eq!((bad.status, bad.body["error"].clone()), (400, "bad-payload".into()));
    let message = bad.body["message"].as_str().unwrap();
    assert!(message.contains(r#"`Deposit`: amount: invalid type: string "lots", expected u64"#), "{message}");
    let bad = http.post("/actors/Account/a1/commands/Deposit", r#"{"amount": 5"#, &[]).await;
    assert_eq!((bad.status, bad.body["error"].clone()), (400, "bad-json".into()));
    let bad = http
        .post("/actors/Account/a1/commands/Deposit", r#"{"amount": 5}"#, &[("Idempotency-Key", &"k".repeat(300))])
        .await;
    assert_eq!((bad.status, bad.body["error"].clone()), (400, "bad-request".into()));

    let owner = "x".repeat(600);
    let large = http.post("/actors/Account/c1/commands/Open", &json!({ "owner": owner }).to_string(), &[]).await;
    assert_eq!(
        (large.status, large.body["error"].clone(), large.body["limit"].clone()),
        (413, "too-large".into(), 512.into())
    );

    // None of the failures appended anything or hurt the actor.
    let state = http.get("/actors/Account/a1").await;
    assert_eq!(
        (state.status, state.body["version"].clone(), state.body["state"]["balance"].clone()),
        (200, 2.into(), 40.into())
    );
    assert_eq!(http.get("/actors/Account/c1").await.body["version"], 0);
}

#[tokio::test]
async fn state_time_travels_to_every_earlier_version() {
    let data = tempfile::tempdir().unwrap();
    // Snapshots every 3 events: time travel must not use a later snapshot.
    let host = Host::start(data.path(), &["--snapshot-every", "3"]);
    let http = Http::new(&host);
    assert_eq!(http.post("/actors/Account/tt/commands/Open", r#"{"owner": "T"}"#, &[]).await.status, 200);
    let mut balances = vec![0, 0];
    for (command, amount) in [("Deposit", 10), ("Deposit", 5), ("Withdraw", 7), ("Deposit", 100), ("Withdraw", 8)] {
        let answer = http
            .post(&format!("/actors/Account/tt/commands/{command}"), &json!({ "amount": amount }).to_string(), &[])
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let last = *balances.last().unwrap();
        balances.push(if command == "Deposit" { last + amount } else { last - amount });
    }
    for (version, balance) in balances.iter().enumerate() {
        let state = http.get(&format!("/actors/Account/tt?at_version={version}")).await;
        assert_eq!(state.status, 200);
        assert_eq!(state.body["version"], version as u64);
        assert_eq!(state.body["state"]["balance"], *balance, "at version {version}");
        assert_eq!(state.body["state"]["open"], version >= 1);
    }
    // Beyond the end: the latest state, with the version it really has.
    let beyond = http.get("/actors/Account/tt?at_version=99").await;
    assert_eq!((beyond.body["version"].clone(), beyond.body["state"]["balance"].clone()), (6.into(), 100.into()));
    let current = http.get("/actors/Account/tt").await;
    assert_eq!(current.body["state"]["balance"], 100);
    let bad = http.get("/actors/Account/tt?at_version=yesterday").await;
    assert_eq!((bad.status, bad.body["error"].clone()), (400, "bad-request".into()));
    assert_eq!(http.get("/actors/Nope/tt").await.status, 404);
}

#[tokio::test]
async fn events_come_in_pages_with_their_provenance() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(data.path(), &[]);
    let http = Http::new(&host);
    // Any string is an id: slashes, spaces, unicode, percent signs.
    let id = "ü/ 50%?#";
    let path = format!("/actors/Account/{}", urlencode(id));
    let headers = [("Idempotency-Key", "open-1"), ("Correlation-Id", "journey-7"), ("Causation-Id", "click-3")];
    assert_eq!(http.post(&format!("{path}/commands/Open"), r#"{"owner": "U"}"#, &headers).await.status, 200);
    for i in 1..=4 {
        let key = format!("dep-{i}");
        let answer = http
            .post(&format!("{path}/commands/Deposit"), &json!({"amount": i}).to_string(), &[("Idempotency-Key", &key)])
            .await;
        assert_eq!(answer.status, 200);
    }
    let page = http.get(&format!("{path}/events?from=1&limit=2")).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body["id"], id);
    let events = page.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(page.body["next"], 3);
    let provenance = &events[0]["provenance"];
    assert_eq!(
        (provenance["command_id"].clone(), provenance["correlation_id"].clone()),
        ("open-1".into(), "journey-7".into())
    );
    assert_eq!(provenance["causation_id"], "click-3");
    assert_eq!(provenance["component_hash"].as_str().unwrap().len(), 64);
    assert!(provenance["timestamp_ms"].as_u64().unwrap() > 1_700_000_000_000);
    assert_eq!(events[1]["provenance"]["command_id"], "dep-1");
    // Without a correlation id, the command id is its own correlation.
    assert_eq!(events[1]["provenance"]["correlation_id"], "dep-1");

    let rest = http.get(&format!("{path}/events?from=3")).await;
    let versions: Vec<Value> = rest.body["events"].as_array().unwrap().iter().map(|e| e["version"].clone()).collect();
    assert_eq!(versions, [json!(3), json!(4), json!(5)]);
    assert_eq!(rest.body["next"], Value::Null);
    assert_eq!(rest.body["events"][2]["payload"], json!({"amount": 4}));
    let none = http.get("/actors/Account/nobody/events").await;
    assert_eq!((none.status, none.body["events"].clone()), (200, json!([])));
    assert_eq!(http.get("/actors/Nope/x/events").await.status, 404);
}

#[tokio::test]
async fn model_health_and_metrics() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(data.path(), &[]);
    let http = Http::new(&host);
    let model = http.get("/model").await;
    assert_eq!((model.status, model.body["name"].clone()), (200, "bank".into()));
    let account = &model.body["aggregates"][0];
    assert_eq!(account["name"], "Account");
    assert!(account["commands"].as_array().unwrap().iter().any(|c| c["name"] == "Deposit" && c["schema"].is_object()));

    let health = http.get("/healthz").await;
    assert_eq!(
        (health.status, health.body["status"].clone(), health.body["domain"].clone()),
        (200, "ok".into(), "bank".into())
    );
    let ready = http.get("/readyz").await;
    assert_eq!((ready.status, ready.body["status"].clone()), (200, "ready".into()), "not in a cluster: always");

    http.post("/actors/Account/m/commands/Open", r#"{"owner": "M"}"#, &[]).await;
    http.post("/actors/Account/m/commands/Deposit", r#"{"amount": 1}"#, &[]).await;
    http.post("/actors/Account/m/commands/Withdraw", r#"{"amount": 5}"#, &[]).await;
    let metrics = http.text("/metrics").await;
    let figure = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    assert_eq!(figure("aether_commands_total"), 3.0);
    assert_eq!(figure("aether_rejections_total"), 1.0);
    assert_eq!(figure("aether_activations_total"), 1.0);
    assert_eq!(figure("aether_live_actors"), 1.0);
    assert_eq!(figure("aether_command_duration_seconds_count"), 3.0);
    assert_eq!(figure("aether_command_duration_seconds_bucket{le=\"+Inf\"}"), 3.0);
    assert!(figure("aether_command_duration_seconds_sum") > 0.0);
    assert!(metrics.contains("# TYPE aether_command_duration_seconds histogram"));

    let unknown = http.get("/nowhere").await;
    assert_eq!((unknown.status, unknown.body["error"].clone()), (404, "not-found".into()));
    // A host on its embedded store is in no cluster, and says so.
    let cluster = http.get("/cluster").await;
    assert_eq!((cluster.status, cluster.body["error"].clone()), (404, "not-found".into()));
    assert!(cluster.body["message"].as_str().unwrap().contains("--nats"), "{}", cluster.body);
    assert!(!metrics.contains("aether_cluster_"), "no cluster figures outside a cluster");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
