//! The client subcommands and `check`, as a user types them.

use super::support::{Host, aether_host, component};
use serde_json::Value;
use std::path::PathBuf;

#[test]
fn check_prints_the_model_of_a_real_component() {
    let out = aether_host().arg("check").arg(component("examples/bank")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("domain `bank`"), "{stdout}");
    assert!(stdout.contains("commands: Open, Deposit, Withdraw, Close"), "{stdout}");
    let json = aether_host().arg("check").arg("--json").arg(component("examples/shop")).output().unwrap();
    let model: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(model["name"], "shop");
}

#[test]
fn check_refuses_a_bad_file_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("not.wasm");
    std::fs::write(&path, b"hello").unwrap();
    let out = aether_host().arg("check").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("aether-host: ") && stderr.contains("not a WebAssembly file"), "{stderr}");
}

/// Runs a client subcommand against `host`; (exit ok, stdout, stderr).
fn client(host: &Host, args: &[&str]) -> (bool, String, String) {
    let out = aether_host().args(args).args(["--url", &host.url]).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn send_state_events_and_model_talk_to_a_running_host() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(data.path(), &[]);
    assert!(host.stdout().contains("commands: Open, Deposit, Withdraw, Close"), "{}", host.stdout());

    let (ok, out, err) = client(&host, &["send", "Account", "ada lovelace", "Open", r#"{"owner": "Ada"}"#]);
    assert!(ok, "{err}");
    assert_eq!(json(&out)["events"][0]["name"], "Opened");
    let (ok, out, _) =
        client(&host, &["send", "Account", "ada lovelace", "Deposit", r#"{"amount": 70}"#, "--key", "d1"]);
    assert!(ok);
    assert_eq!(json(&out)["version"], 2);
    // The same key again: the original answer, nothing appended.
    let (ok, out, _) =
        client(&host, &["send", "Account", "ada lovelace", "Deposit", r#"{"amount": 70}"#, "--key", "d1"]);
    assert!(ok);
    assert_eq!((json(&out)["version"].clone(), json(&out)["duplicate"].clone()), (2.into(), true.into()));

    let (ok, out, _) = client(&host, &["state", "Account", "ada lovelace"]);
    assert!(ok);
    assert_eq!(json(&out)["state"], serde_json::json!({"owner": "Ada", "balance": 70, "open": true}));
    let (ok, out, _) = client(&host, &["state", "Account", "ada lovelace", "--at-version", "1"]);
    assert!(ok);
    assert_eq!((json(&out)["version"].clone(), json(&out)["state"]["balance"].clone()), (1.into(), 0.into()));

    let (ok, out, _) = client(&host, &["events", "Account", "ada lovelace", "--from", "2"]);
    assert!(ok);
    let events = json(&out)["events"].clone();
    assert_eq!(events.as_array().unwrap().len(), 1);
    assert_eq!(events[0]["provenance"]["command_id"], "d1");

    let (ok, out, _) = client(&host, &["model"]);
    assert!(ok);
    assert_eq!(json(&out)["name"], "bank");

    // Failures: the host's reason on stderr, exit status 1.
    let (ok, _, err) = client(&host, &["send", "Account", "ada lovelace", "Withdraw", r#"{"amount": 1000}"#]);
    assert!(!ok);
    assert!(err.starts_with("aether-host: rejected (insufficient-funds): cannot withdraw 1000"), "{err}");
    let (ok, _, err) = client(&host, &["send", "Account", "x", "Fly"]);
    assert!(!ok && err.contains("unknown command `Account.Fly`; `Account` accepts: Open, Deposit"), "{err}");
    let (ok, _, err) = client(&host, &["send", "Account", "x", "Open", "{owner"]);
    assert!(!ok && err.starts_with("aether-host: the payload is not JSON"), "{err}");
}

#[test]
fn a_client_without_a_host_says_where_it_looked() {
    let out = aether_host().args(["state", "Account", "a", "--url", "http://127.0.0.1:9"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("aether-host: cannot reach the host at http://127.0.0.1:9/"), "{stderr}");
    assert!(stderr.contains("is `aether-host load` running there?"), "{stderr}");
}

#[test]
fn load_refuses_a_bad_component_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("core.wasm");
    std::fs::write(&path, wat::parse_str("(module)").unwrap()).unwrap();
    let out = aether_host().arg("load").arg(&path).arg("--memory").args(["--listen", "127.0.0.1:0"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("aether-host: ") && stderr.contains("core WebAssembly module, not a component"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
}

/// Cluster timings that would let a slow clock serve what the leader gave
/// away are refused up front, naming the rule, before anything connects.
#[test]
fn load_refuses_cluster_timings_that_break_fencing() {
    let args = ["load", "unused.wasm", "--nats", "nats://127.0.0.1:9", "--lease-ms", "3000"];
    let out = aether_host().args(args).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--failure-timeout-ms"), "{stderr}");
    assert!(stderr.contains("failure_timeout (2500 ms) must be at least member_lease"), "{stderr}");
    let out = aether_host().args(["cluster", "status", "--url", "http://127.0.0.1:9"]).output().unwrap();
    assert!(!out.status.success(), "no host there");
}

#[test]
fn query_and_rebuild_talk_to_a_running_hosts_read_models() {
    let host = Host::load(&["--memory"]);
    let (ok, out, err) = client(&host, &["send", "Account", "q1", "Open", r#"{"owner": "ada"}"#]);
    assert!(ok, "{err}");
    let position = json(&out)["position"].as_str().expect("a position token").to_owned();
    let (ok, out, err) = client(&host, &["query", "AccountsByOwner", "q1", "--position", &position]);
    assert!(ok, "{err}");
    assert_eq!(json(&out)["row"], serde_json::json!({ "owner": "ada", "balance": 0, "open": true }));
    let (ok, out, err) = client(&host, &["query", "AccountsByOwner", "--where", "owner=ada", "--limit", "10"]);
    assert!(ok, "{err}");
    assert_eq!(json(&out)["rows"][0]["key"], "q1");

    let (ok, out, err) = client(&host, &["rebuild", "AccountsByOwner"]);
    assert!(ok, "{err}");
    assert_eq!(json(&out)["rebuilding"], true);
    let (ok, _, err) = client(&host, &["query", "AccountsByOwner", "nobody"]);
    assert!(!ok);
    assert!(err.contains("not-found") && err.contains("no row `nobody`"), "{err}");
    let (ok, _, err) = client(&host, &["query", "AccountsByOwner", "--where", "owner"]);
    assert!(!ok && err.contains("FIELD=VALUE"), "{err}");
}
