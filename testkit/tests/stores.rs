//! The host's own stores against the contract's checks. (JetStream's run
//! in the workspace's integration tests, which start a `nats-server`.)

use aether_host::MemoryStore;
use aether_host::store::EmbeddedStore;
use aether_host::store::embedded::EmbeddedConfig;
use aether_testkit::contract;

#[tokio::test]
async fn the_memory_store_keeps_the_contract() {
    contract::check_all(&MemoryStore::new()).await;
}

#[tokio::test]
async fn the_embedded_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    contract::check_all(&store).await;
    store.close().await.unwrap();

    // Batches of one and a queue of one, a checkpoint after every write:
    // the backpressure path.
    let dir = tempfile::tempdir().unwrap();
    let tiny = EmbeddedConfig::default()
        .with_max_batch(1)
        .with_queue_capacity(1)
        .with_cache_size_bytes(1024 * 1024)
        .with_checkpoint_writes(1);
    contract::check_all(&EmbeddedStore::open_with(dir.path(), tiny).unwrap()).await;
}
