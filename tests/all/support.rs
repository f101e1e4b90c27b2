//! Building and loading the test components, once per process.

use aether_host::store::{AppendRequest, Appended, RecordedEvent, Snapshot, StoreError};
use aether_host::{ActorId, EngineConfig, EventStore, MemoryStore, RuntimeConfig};
use aether_testkit::{TestKit, build_component};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::Semaphore;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// The built component of a crate in the workspace, e.g. `examples/bank`.
pub fn component(crate_dir: &str) -> PathBuf {
    build_component(workspace().join(crate_dir)).unwrap_or_else(|e| panic!("{e}"))
}

pub async fn bank() -> TestKit {
    TestKit::from_file(&component("examples/bank")).await
}

pub async fn bank_with(runtime: RuntimeConfig) -> TestKit {
    TestKit::with_config(&component("examples/bank"), EngineConfig::default(), runtime).await
}

/// Faults need a short deadline and a small memory cap to be quick.
pub fn fault_engine() -> EngineConfig {
    EngineConfig::default().with_call_timeout(Duration::from_millis(200)).with_max_memory_bytes(8 << 20)
}

pub async fn faulty() -> TestKit {
    TestKit::with_config(&component("tests/guests/faulty"), fault_engine(), RuntimeConfig::default()).await
}

/// A memory store whose appends and reads each wait for a permit the test
/// hands out (`add_permits`), to hold a request at a chosen point. Reads
/// are open unless a test closes them.
#[derive(Debug)]
pub struct GatedStore {
    pub inner: MemoryStore,
    pub appends: Semaphore,
    pub reads: Semaphore,
}

impl Default for GatedStore {
    fn default() -> Self {
        Self { inner: MemoryStore::new(), appends: Semaphore::new(0), reads: Semaphore::new(Semaphore::MAX_PERMITS) }
    }
}

impl GatedStore {
    /// Holds every read from now on until permits are added.
    pub fn close_reads(&self) {
        self.reads.forget_permits(Semaphore::MAX_PERMITS);
    }
}

#[async_trait::async_trait]
impl EventStore for GatedStore {
    async fn append(&self, actor: &ActorId, request: AppendRequest) -> Result<Appended, StoreError> {
        self.appends.acquire().await.expect("the gate stays open").forget();
        self.inner.append(actor, request).await
    }
    async fn read(&self, actor: &ActorId, after: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let _open = self.reads.acquire().await.expect("the gate stays open");
        self.inner.read(actor, after, max).await
    }
    async fn version(&self, actor: &ActorId) -> Result<u64, StoreError> {
        self.inner.version(actor).await
    }
    async fn find_command(&self, actor: &ActorId, command_id: &str) -> Result<Option<Appended>, StoreError> {
        self.inner.find_command(actor, command_id).await
    }
    async fn load_snapshot(&self, actor: &ActorId) -> Result<Option<Snapshot>, StoreError> {
        self.inner.load_snapshot(actor).await
    }
    async fn save_snapshot(&self, actor: &ActorId, snapshot: Snapshot) -> Result<(), StoreError> {
        self.inner.save_snapshot(actor, snapshot).await
    }
}
