//! Building and loading the test components, once per process.

use aether_host::testkit::{TestKit, build_component};
use aether_host::{EngineConfig, RuntimeConfig};
use std::path::PathBuf;
use std::time::Duration;

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
    EngineConfig { call_timeout: Duration::from_millis(200), max_memory_bytes: 8 << 20, ..EngineConfig::default() }
}

pub async fn faulty() -> TestKit {
    TestKit::with_config(&component("tests/guests/faulty"), fault_engine(), RuntimeConfig::default()).await
}
