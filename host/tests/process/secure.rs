//! A host secured as its operator would: a bearer token (`--http-token`,
//! `--http-token-file`) and HTTPS (`--tls-cert`/`--tls-key`), with clients
//! that have the right credentials, the wrong ones and none.

use super::support::{Host, aether_host};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const TOKEN: &str = "s3cret-t0ken";

fn certs() -> PathBuf {
    // A CA and a server certificate for 127.0.0.1, test-only (see certs/README.md).
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/process/certs")
}

/// A request's status, `WWW-Authenticate` header and JSON body.
async fn call(request: reqwest::RequestBuilder) -> (u16, Option<String>, Value) {
    let response = request.send().await.expect("the host answers");
    let status = response.status().as_u16();
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.expect("a JSON body");
    (status, challenge, body)
}

/// A client subcommand with extra environment; (exit ok, stdout, stderr).
fn cli(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = aether_host().args(args).env_remove("AETHER_HTTP_TOKEN").envs(env.iter().copied()).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[tokio::test]
async fn a_token_guards_every_route_but_health() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(data.path(), &["--http-token", TOKEN]);
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", host.url);
    let open = || http.post(url("/actors/Account/t/commands/Open")).body(r#"{"owner": "T"}"#);

    // No token, a wrong one, another scheme: 401 with a challenge, and nothing done.
    for request in [
        open(),
        open().bearer_auth("wrong"),
        open().bearer_auth(format!("{TOKEN}x")),
        open().basic_auth("user", Some(TOKEN)),
        http.get(url("/actors/Account/t")),
        http.get(url("/actors/Account/t/events")),
        http.get(url("/model")),
        http.get(url("/board")),
        http.get(url("/metrics")),
        http.get(url("/openapi.json")),
        http.get(url("/nowhere")),
    ] {
        let (status, challenge, body) = call(request).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("unauthorized")), "{body}");
        assert!(challenge.as_deref().is_some_and(|c| c.starts_with("Bearer")), "{challenge:?}");
    }
    // Health stays open to probes without credentials.
    let (status, _, body) = call(http.get(url("/healthz"))).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, _, body) = call(http.get(url("/readyz"))).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));

    // The right token, with the scheme in any case.
    let (status, _, body) = call(http.get(url("/actors/Account/t")).bearer_auth(TOKEN)).await;
    assert_eq!((status, body["version"].clone()), (200, json!(0)), "the refused Open appended");
    let (status, _, body) = call(open().bearer_auth(TOKEN)).await;
    assert_eq!((status, body["version"].clone()), (200, json!(1)));
    let lower = http.get(url("/model")).header("authorization", format!("bearer {TOKEN}"));
    assert_eq!(call(lower).await.0, 200);
    let (status, _, doc) = call(http.get(url("/openapi.json")).bearer_auth(TOKEN)).await;
    assert_eq!((status, doc["security"].clone()), (200, json!([{ "bearer": [] }])));

    // The CLI: --token, AETHER_HTTP_TOKEN, and nothing.
    let (ok, out, err) = cli(&["state", "Account", "t", "--url", &host.url, "--token", TOKEN], &[]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["state"]["owner"], "T");
    let deposit = ["send", "Account", "t", "Deposit", r#"{"amount": 3}"#, "--url", &host.url];
    let (ok, out, err) = cli(&deposit, &[("AETHER_HTTP_TOKEN", TOKEN)]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["version"], 2);
    let (ok, _, err) = cli(&["model", "--url", &host.url], &[]);
    assert!(!ok);
    assert!(err.contains("unauthorized") && err.contains("401"), "{err}");
    let (ok, out, err) = cli(&["model", "--format", "html", "--url", &host.url, "--token", TOKEN], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("<g class=\"command\" data-name=\"Account.Open\""), "{out}");
}

#[tokio::test]
async fn the_token_may_come_from_a_file() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let host = Host::start(data.path().join("events").as_path(), &["--http-token-file", file.to_str().unwrap()]);
    let http = reqwest::Client::new();
    let model = format!("{}/model", host.url);
    assert_eq!(call(http.get(&model)).await.0, 401);
    let (status, _, body) = call(http.get(&model).bearer_auth(TOKEN)).await;
    assert_eq!((status, body["name"].as_str()), (200, Some("bank")));

    // An empty token file is refused at start-up, not served as "no token".
    let empty = data.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let bank = super::support::bank();
    let out = aether_host()
        .args(["load", bank.to_str().unwrap(), "--memory", "--listen", "127.0.0.1:0", "--http-token-file"])
        .arg(&empty)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the HTTP token is empty"), "{stderr}");
}

#[tokio::test]
async fn https_with_a_certificate_and_key() {
    let data = tempfile::tempdir().unwrap();
    let (cert, key, ca) = (certs().join("server.pem"), certs().join("server.key"), certs().join("ca.pem"));
    let mut host =
        Host::start(data.path(), &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    assert!(host.url.starts_with("https://127.0.0.1:"), "{}", host.url);

    let trusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let url = |path: &str| format!("{}{path}", host.url);
    let (status, _, body) = call(trusting.post(url("/actors/Account/s/commands/Open")).body(r#"{"owner": "S"}"#)).await;
    assert_eq!((status, body["version"].clone()), (200, json!(1)), "{body}");
    assert_eq!(call(trusting.get(url("/healthz"))).await.0, 200);

    // A client that does not trust the CA, and one speaking plain HTTP, get nothing.
    let untrusting = reqwest::Client::builder().tls_built_in_root_certs(false).build().unwrap();
    let err = untrusting.get(url("/healthz")).send().await.unwrap_err();
    assert!(format!("{err:?}").to_lowercase().contains("certificate"), "{err:?}");
    let plain = url("/healthz").replacen("https://", "http://", 1);
    assert!(reqwest::get(plain).await.is_err(), "plain HTTP was answered");

    // The CLI with --ca-cert.
    let ca = ca.to_str().unwrap();
    let (ok, out, err) = cli(&["state", "Account", "s", "--url", &host.url, "--ca-cert", ca], &[]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["state"]["owner"], "S");
    let (ok, _, err) = cli(&["state", "Account", "s", "--url", &host.url], &[]);
    assert!(!ok && err.contains("cannot reach the host"), "{err}");

    // Graceful shutdown over TLS as over plain HTTP.
    assert!(host.interrupt().success(), "{}", host.stderr());
}

#[test]
fn tls_needs_both_a_certificate_and_a_key() {
    let cert = certs().join("server.pem");
    let bank = super::support::bank();
    let out = aether_host()
        .args(["load", bank.to_str().unwrap(), "--memory", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--tls-key"), "{stderr}");
    // A certificate where the key should be: a clear error at start-up.
    let out = aether_host()
        .args(["load", bank.to_str().unwrap(), "--memory", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no PEM private key"), "{stderr}");
}
