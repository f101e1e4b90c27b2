//! Admission control: every bound on what requests can make the host do at
//! once turns the excess away with `503 overloaded` and `Retry-After` after
//! a short wait, instead of queueing it without end or calling it a fault.

use crate::support::{self, GatedStore};
use aether_host::api::{self, ApiConfig};
use aether_host::{
    ActorError, AdmissionConfig, AetherEngine, CommandRequest, DomainComponent, EngineConfig, Runtime, RuntimeConfig,
};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn bank(engine: EngineConfig, store: Arc<GatedStore>, admission: AdmissionConfig) -> Runtime {
    let engine = AetherEngine::new(engine).unwrap();
    let component = DomainComponent::from_file(&engine, &support::component("examples/bank")).unwrap();
    Runtime::new(component, store, RuntimeConfig::default().with_admission(admission))
}

fn open(id: &str) -> CommandRequest {
    CommandRequest {
        aggregate: "Account".into(),
        id: id.into(),
        command: "Open".into(),
        payload: rmp_serde::to_vec_named(&serde_json::json!({ "owner": "ada" })).unwrap(),
        ..CommandRequest::default()
    }
}

fn short_wait() -> AdmissionConfig {
    AdmissionConfig::default().with_max_activations(1).with_max_time_travels(1).with_wait(Duration::from_millis(100))
}

fn is_overloaded(result: &Result<impl std::fmt::Debug, ActorError>, limit_of: &str) -> bool {
    matches!(result, Err(ActorError::Overloaded { what, .. }) if *what == limit_of)
}

#[tokio::test]
async fn activations_beyond_the_bound_are_turned_away() {
    let store = Arc::new(GatedStore::default());
    let runtime = bank(EngineConfig::default().with_max_instances(16), store.clone(), short_wait());
    store.close_reads();
    // Holds the only activation slot: its replay waits on the store.
    let stuck = tokio::spawn({
        let runtime = runtime.clone();
        async move { runtime.execute(open("slow")).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let turned_away = runtime.execute(open("other")).await;
    assert!(is_overloaded(&turned_away, "activations"), "{turned_away:?}");
    assert_eq!(runtime.stats().overloads.load(Ordering::Relaxed), 1);
    assert_eq!(runtime.stats().faults.load(Ordering::Relaxed), 0, "overload is not a fault");

    store.reads.add_permits(1000);
    store.appends.add_permits(1000);
    assert!(stuck.await.unwrap().is_ok(), "the activation that held the slot completes");
    assert!(runtime.execute(open("other")).await.is_ok(), "the slot is free again");
}

#[tokio::test]
async fn time_travel_beyond_the_bound_is_turned_away() {
    let store = Arc::new(GatedStore::default());
    let runtime = bank(EngineConfig::default().with_max_instances(16), store.clone(), short_wait());
    store.appends.add_permits(1000);
    runtime.execute(open("travelled")).await.unwrap();
    store.close_reads();
    let stuck = tokio::spawn({
        let runtime = runtime.clone();
        async move { runtime.state_at("Account", "travelled", 1).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let turned_away = runtime.state_at("Account", "travelled", 1).await;
    assert!(is_overloaded(&turned_away, "time-travel reads"), "{turned_away:?}");
    store.reads.add_permits(1000);
    assert_eq!(stuck.await.unwrap().unwrap().0, 1);
    assert_eq!(runtime.state_at("Account", "travelled", 1).await.unwrap().0, 1);
}

/// A full VM pool was answered `500 fault` and counted as a guest fault.
#[tokio::test]
async fn a_full_vm_pool_is_overload_not_a_fault() {
    let store = Arc::new(GatedStore::default());
    store.appends.add_permits(1000);
    let runtime = bank(EngineConfig::default().with_max_instances(2), store, AdmissionConfig::default());
    runtime.execute(open("a")).await.unwrap();
    runtime.execute(open("b")).await.unwrap();
    let turned_away = runtime.execute(open("c")).await;
    assert!(is_overloaded(&turned_away, "VMs"), "{turned_away:?}");
    assert_eq!(runtime.stats().faults.load(Ordering::Relaxed), 0, "overload is not a fault");
    runtime.passivate_all().await;
    assert!(runtime.execute(open("c")).await.is_ok(), "passivated actors gave their slots back");
}

#[tokio::test]
async fn http_commands_beyond_the_bound_get_503_with_retry_after() {
    let store = Arc::new(GatedStore::default());
    let runtime = bank(EngineConfig::default().with_max_instances(16), store.clone(), short_wait());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/actors/Account", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = ApiConfig::default().with_max_in_flight_commands(1);
    let server = tokio::spawn(api::serve(listener, runtime, config, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let post = |id: &str| http.post(format!("{url}/{id}/commands/Open")).body(r#"{"owner": "ada"}"#).send();

    // Its append waits at the gate, holding the door's only slot.
    let stuck = tokio::spawn(post("first"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let turned_away = post("second").await.unwrap();
    assert_eq!(turned_away.status(), 503);
    assert_eq!(turned_away.headers()["retry-after"], "1");
    let body: serde_json::Value = turned_away.json().await.unwrap();
    assert_eq!((body["error"].as_str(), body["limit"].as_u64()), (Some("overloaded"), Some(1)), "{body}");

    store.appends.add_permits(10);
    assert_eq!(stuck.await.unwrap().unwrap().status(), 200);
    assert_eq!(post("second").await.unwrap().status(), 200, "the slot is free again");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
