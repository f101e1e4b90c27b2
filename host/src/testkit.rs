//! The part of the test kit the crate's own unit tests use: the example
//! bank, engines shared per configuration, a runtime on a memory store.
//! Unit tests cannot use the `aether-testkit` crate, which links its own
//! copy of this crate; domain authors and integration tests use that.

use crate::runtime::{Runtime, RuntimeConfig};
use crate::store::MemoryStore;
use crate::wasm::{AetherEngine, DomainComponent, EngineConfig};
use std::sync::{Arc, Mutex, OnceLock};

pub(crate) use aether_devtools::build_component;

/// A component's runtime on a fresh in-memory store, as
/// `aether_testkit::TestKit` has it.
#[derive(Debug)]
pub(crate) struct TestKit {
    runtime: Runtime,
}

impl TestKit {
    /// Builds (if needed) and loads the component of the crate at `manifest_dir`.
    pub(crate) async fn for_crate(manifest_dir: &str) -> Self {
        let wasm = build_component(manifest_dir).unwrap_or_else(|e| panic!("{e}"));
        let engine = shared_engine(EngineConfig::default());
        let component = DomainComponent::from_file(&engine, &wasm)
            .unwrap_or_else(|e| panic!("cannot load {}: {e}", wasm.display()));
        Self { runtime: Runtime::new(component, Arc::new(MemoryStore::new()), RuntimeConfig::default()) }
    }

    pub(crate) fn runtime(&self) -> &Runtime {
        &self.runtime
    }
}

/// One engine per configuration for the whole test binary: each engine
/// reserves its pool's address space and runs an epoch thread.
pub(crate) fn shared_engine(config: EngineConfig) -> Arc<AetherEngine> {
    type Engines = Mutex<Vec<(String, Arc<AetherEngine>)>>;
    static ENGINES: OnceLock<Engines> = OnceLock::new();
    let key = format!("{config:?}");
    let mut engines = ENGINES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, engine)) = engines.iter().find(|(k, _)| *k == key) {
        return engine.clone();
    }
    let engine = AetherEngine::new(config).unwrap_or_else(|e| panic!("cannot build the engine: {e:#}"));
    engines.push((key, engine.clone()));
    engine
}

/// The example bank's component (`examples/bank`), built if needed.
pub(crate) fn bank() -> DomainComponent {
    let wasm =
        build_component(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/bank")).unwrap_or_else(|e| panic!("{e}"));
    let engine = shared_engine(EngineConfig::default());
    DomainComponent::from_file(&engine, &wasm).unwrap_or_else(|e| panic!("cannot load {}: {e}", wasm.display()))
}
