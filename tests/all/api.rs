//! The HTTP API in process, where a test needs more than one host on one
//! store: a conflict that retries cannot resolve answers `409`, and the
//! actor has caught up for the caller's retry. (The binary's routes are
//! driven in `host/tests/process`.)

use super::support;
use aether_host::api::{self, ApiConfig};
use aether_host::{
    ActorConfig, AetherEngine, CommandRequest, DomainComponent, EngineConfig, MemoryStore, Runtime, RuntimeConfig,
};
use std::sync::Arc;

#[tokio::test]
async fn an_unresolved_conflict_answers_409_and_the_retry_succeeds() {
    let engine = AetherEngine::new(EngineConfig::default().with_max_instances(64)).unwrap();
    let wasm = support::component("examples/bank");
    let store: Arc<dyn aether_host::EventStore> = Arc::new(MemoryStore::new());
    let runtime = |retries| {
        let config = RuntimeConfig::default().with_actor(ActorConfig::default().with_conflict_retries(retries));
        Runtime::new(DomainComponent::from_file(&engine, &wasm).unwrap(), store.clone(), config)
    };
    // The served host gives up at the first conflict; the other writes behind its back.
    let (served, other) = (runtime(0), runtime(5));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(listener, served, ApiConfig::default(), async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let post = |command: &str, body: &str| {
        http.post(format!("{url}/actors/Account/shared/commands/{command}")).body(body.to_owned()).send()
    };

    assert_eq!(post("Open", r#"{"owner": "ada"}"#).await.unwrap().status(), 200);
    let deposit = rmp_serde::to_vec_named(&serde_json::json!({ "amount": 5 })).unwrap();
    let request = CommandRequest {
        aggregate: "Account".into(),
        id: "shared".into(),
        command: "Deposit".into(),
        payload: deposit,
        ..Default::default()
    };
    other.execute(request).await.unwrap();

    let conflict = post("Deposit", r#"{"amount": 1}"#).await.unwrap();
    assert_eq!(conflict.status(), 409);
    let body: serde_json::Value = conflict.json().await.unwrap();
    assert_eq!(body["error"], "conflict");
    assert!(body["message"].as_str().unwrap().contains("expected version 1, store at 2"), "{body}");

    let retry = post("Deposit", r#"{"amount": 1}"#).await.unwrap();
    assert_eq!(retry.status(), 200);
    let body: serde_json::Value = retry.json().await.unwrap();
    assert_eq!(body["version"], 3);
    let state: serde_json::Value =
        http.get(format!("{url}/actors/Account/shared")).send().await.unwrap().json().await.unwrap();
    assert_eq!(state["state"]["balance"], 6);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
