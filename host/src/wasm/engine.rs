//! One wasmtime engine tuned for very many small, short-lived instances.
//!
//! - The pooling allocator pre-reserves slots for instances and memories, so
//!   creating a VM is a slot reuse plus copy-on-write of initial memory.
//! - Each memory is reserved at the actor's cap, not 4 GiB: slots stay small
//!   and the cap is enforced by the reservation as well as the store limiter.
//! - Epoch interruption bounds every call (invariant 5) at a few percent of
//!   call cost, where fuel would cost far more; a thread ticks the epoch.
//! - Only the component-model features guests need: no async, no GC, no
//!   threads, no concurrency support in stores.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How the engine sizes and bounds actors' VMs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The most linear memory one actor's VM may use. A guest that grows past
    /// it traps; that command fails and the VM is rebuilt.
    pub max_memory_bytes: usize,
    /// VMs that can exist at once (pool slots). The runtime keeps its live
    /// actors below this.
    pub max_instances: u32,
    /// The longest one call into a guest may run before it is interrupted.
    pub call_timeout: Duration,
    /// How often the epoch advances; the granularity of `call_timeout`.
    pub epoch_interval: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_memory_bytes: 16 << 20,
            max_instances: 10_000,
            call_timeout: Duration::from_secs(1),
            epoch_interval: Duration::from_millis(5),
        }
    }
}

/// The engine and its epoch ticker. Shared by every component and actor.
#[derive(Debug)]
pub struct AetherEngine {
    engine: Engine,
    config: EngineConfig,
    stop: Arc<AtomicBool>,
}

impl AetherEngine {
    /// Builds the engine and starts its epoch ticker.
    ///
    /// # Errors
    ///
    /// If wasmtime refuses the configuration (e.g. the pool does not fit in
    /// the address space).
    pub fn new(config: EngineConfig) -> anyhow::Result<Arc<Self>> {
        let mut pool = PoolingAllocationConfig::new();
        let memory = config.max_memory_bytes.next_multiple_of(64 << 10);
        pool.total_component_instances(config.max_instances)
            // A Rust component has its main module plus a few adapter shims.
            .total_core_instances(config.max_instances.saturating_mul(4))
            .total_memories(config.max_instances)
            .total_tables(config.max_instances.saturating_mul(4))
            .max_memory_size(memory);
        let mut wasm = Config::new();
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .wasm_component_model(true)
            .concurrency_support(false)
            .epoch_interruption(true)
            .memory_reservation(memory as u64)
            .memory_guard_size(64 << 10)
            .memory_reservation_for_growth(0);
        let engine = Engine::new(&wasm).map_err(|e| anyhow::anyhow!("cannot configure wasmtime: {e:#}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = engine.clone();
        let interval = config.epoch_interval;
        let stopped = stop.clone();
        std::thread::Builder::new().name("aether-epoch".into()).spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                std::thread::sleep(interval);
                ticker.increment_epoch();
            }
        })?;
        Ok(Arc::new(Self { engine, config, stop }))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Epoch ticks a call may run.
    pub(crate) fn deadline_ticks(&self) -> u64 {
        let ticks = self.config.call_timeout.as_nanos() / self.config.epoch_interval.as_nanos().max(1);
        (ticks as u64).max(1) + 1
    }
}

impl Drop for AetherEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
