//! `aether-host load --nats`: hosts on one JetStream, as separate processes.

use super::support::{Host, Http};
use aether_testkit::nats::NatsServer;
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_on_one_jetstream_append_to_one_actor_without_losing_or_doubling_a_version() {
    let server = NatsServer::start();
    let url = server.url();
    let hosts = [Host::load(&["--nats", &url]), Host::load(&["--nats", &url])];
    let http: Vec<Http> = hosts.iter().map(Http::new).collect();
    assert!(hosts[0].stdout().contains("event store: JetStream at"), "{}", hosts[0].stdout());
    assert_eq!(http[0].post("/actors/Account/shared/commands/Open", r#"{"owner": "both"}"#, &[]).await.status, 200);

    let mut tasks = Vec::new();
    for i in 0..60 {
        let (base, key) = (hosts[i % 2].url.clone(), format!("dep-{i}"));
        tasks.push(tokio::spawn(async move {
            let response = reqwest::Client::new()
                .post(format!("{base}/actors/Account/shared/commands/Deposit"))
                .header("Idempotency-Key", key)
                .body(r#"{"amount": 1}"#)
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        }));
    }
    let mut accepted = HashSet::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            200 => _ = accepted.insert(format!("dep-{i}")),
            // Retries exhausted under contention: not stored, safe to retry.
            409 => {}
            status => panic!("deposit {i} answered {status}"),
        }
    }
    assert!(accepted.len() >= 55, "conflicts are resolved by retries almost always ({} of 60)", accepted.len());
    let n = accepted.len() as u64;
    // Both hosts see the final state.
    for http in &http {
        let state = http.get("/actors/Account/shared").await;
        assert_eq!((state.body["version"].clone(), state.body["state"]["balance"].clone()), (json!(n + 1), json!(n)));
    }
    let events = http[1].get("/actors/Account/shared/events?from=2").await;
    let events = events.body["events"].as_array().unwrap();
    let versions: Vec<u64> = events.iter().map(|e| e["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, (2..=n + 1).collect::<Vec<_>>(), "no version lost or written twice");
    let keys: HashSet<String> =
        events.iter().map(|e| e["provenance"]["command_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(keys, accepted, "exactly the accepted commands are stored, each once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_retries_cannot_resolve_answers_409() {
    let server = NatsServer::start();
    let url = server.url();
    // Outside a cluster both serve the actor: the store's check is all
    // that keeps them apart (the last guard of fencing).
    let a = Host::load(&["--nats", &url, "--no-cluster", "--conflict-retries", "0"]);
    let b = Host::load(&["--nats", &url, "--no-cluster"]);
    let (a, b) = (Http::new(&a), Http::new(&b));
    assert_eq!(a.post("/actors/Account/c/commands/Open", r#"{"owner": "c"}"#, &[]).await.status, 200);
    // `b` appends behind the back of `a`'s live actor, which still holds version 1.
    assert_eq!(b.post("/actors/Account/c/commands/Deposit", r#"{"amount": 2}"#, &[]).await.status, 200);
    let conflict = a.post("/actors/Account/c/commands/Deposit", r#"{"amount": 1}"#, &[]).await;
    assert_eq!((conflict.status, conflict.body["error"].clone()), (409, json!("conflict")));
    assert!(conflict.body["message"].as_str().unwrap().contains("expected version 1, store at 2"), "{}", conflict.body);
    // The actor caught up: the caller's retry goes through.
    let retry = a.post("/actors/Account/c/commands/Deposit", r#"{"amount": 1}"#, &[]).await;
    assert_eq!((retry.status, retry.body["version"].clone()), (200, json!(3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_fail_clearly_while_nats_is_down_and_work_again_after() {
    let mut server = NatsServer::start();
    let host = Host::load(&["--nats", &server.url()]);
    let http = Http::new(&host);
    assert_eq!(http.post("/actors/Account/o/commands/Open", r#"{"owner": "o"}"#, &[]).await.status, 200);

    server.stop();
    let started = Instant::now();
    let down =
        http.post("/actors/Account/o/commands/Deposit", r#"{"amount": 1}"#, &[("Idempotency-Key", "during")]).await;
    assert_eq!((down.status, down.body["error"].clone()), (503, json!("unavailable")), "{}", down.body);
    assert!(started.elapsed() < Duration::from_secs(20), "failed fast enough: {:?}", started.elapsed());

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    let up = loop {
        let answer =
            http.post("/actors/Account/o/commands/Deposit", r#"{"amount": 1}"#, &[("Idempotency-Key", "after")]).await;
        if answer.status == 200 || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(up.status, 200, "the host reconnected: {}", up.body);
    let state = http.get("/actors/Account/o").await;
    let balance = state.body["state"]["balance"].as_u64().unwrap();
    // The command during the outage may or may not have landed; never twice.
    assert!(balance == 1 || balance == 2, "{}", state.body);
}

/// A `nats-server -js` with options of its own (auth, TLS), killed on drop.
struct ConfiguredNats {
    child: std::process::Child,
    port: u16,
    _store: tempfile::TempDir,
}

impl ConfiguredNats {
    fn start(options: &[&std::ffi::OsStr]) -> Self {
        let store = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new(aether_testkit::nats::find_binary())
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "--store_dir"])
            .arg(store.path())
            .args(options)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port, _store: store }
    }
}

impl Drop for ConfiguredNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `aether-host load --nats url`, expected to fail; its stderr.
fn load_refused(url: &str) -> String {
    let out = super::support::aether_host()
        .arg("load")
        .arg(super::support::bank())
        .args(["--listen", "127.0.0.1:0", "--nats", url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains(&format!("aether-host: cannot connect to NATS at {url}")), "{stderr}");
    stderr
}

fn open_account(host: &Host, id: &str) -> u16 {
    let path = format!("/actors/Account/{id}/commands/Open");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { Http::new(host).post(&path, r#"{"owner": "o"}"#, &[]).await })
        .status
}

#[test]
fn credentials_are_passed_to_nats_and_a_refusal_is_explained() {
    let server = ConfiguredNats::start(&["--user", "aether", "--pass", "s3cret"].map(std::ffi::OsStr::new));
    let url = format!("nats://127.0.0.1:{}", server.port);
    assert!(load_refused(&url).to_lowercase().contains("authorization"));
    let host = Host::load(&["--nats", &url, "--nats-user", "aether", "--nats-password", "s3cret"]);
    assert_eq!(open_account(&host, "cred"), 200);
}

#[test]
fn tls_options_are_passed_to_nats() {
    // A CA and a server certificate for 127.0.0.1, test-only (see certs/README.md).
    let certs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/process/certs");
    let (cert, key, ca) = (certs.join("server.pem"), certs.join("server.key"), certs.join("ca.pem"));
    let server = ConfiguredNats::start(&[
        "--tls".as_ref(),
        "--tlscert".as_ref(),
        cert.as_os_str(),
        "--tlskey".as_ref(),
        key.as_os_str(),
    ]);
    let url = format!("tls://127.0.0.1:{}", server.port);
    // Without the CA the server's certificate is not trusted.
    load_refused(&url);
    let host = Host::load(&["--nats", &url, "--nats-tls-ca", ca.to_str().unwrap(), "--nats-require-tls"]);
    assert_eq!(open_account(&host, "tls"), 200);
}
