//! One wasmtime engine tuned for very many small, short-lived instances.
//!
//! - The pooling allocator pre-reserves slots for instances and memories, so
//!   creating a VM is a slot reuse, not a fresh mapping.
//! - Each memory is reserved at the actor's cap, not 4 GiB: slots stay small
//!   and the cap is enforced by the reservation as well as the store limiter.
//! - A freed slot is reset by asking the kernel which pages the VM wrote
//!   (`PAGEMAP_SCAN`, Linux 6.7+) and restoring only those, so they stay
//!   mapped: the next VM in the slot takes no page faults. Without it every
//!   activation paid a fault per touched page (~2 µs each under a hypervisor)
//!   and an `madvise` to drop them again: 30 µs instead of 10 µs.
//! - [`MemoryLayout::Dense`] (the default) never changes memory protections
//!   after start-up, so a live actor costs no memory mapping of its own and
//!   `vm.max_map_count` does not cap the number of actors.
//! - Epoch interruption bounds every call (invariant 5) at a few percent of
//!   call cost, where fuel would cost far more; a thread ticks the epoch.
//! - Only the component-model features guests need: no async, no GC, no
//!   threads, no concurrency support in stores.
//!
//! `docs/performance.md` has the measurements behind each choice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

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
    /// How linear memories sit in the pool.
    pub layout: MemoryLayout,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_memory_bytes: 16 << 20,
            max_instances: 10_000,
            call_timeout: Duration::from_secs(1),
            epoch_interval: Duration::from_millis(5),
            layout: MemoryLayout::default(),
        }
    }
}

/// How actors' linear memories are laid out, and what that trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryLayout {
    /// Every memory is bounds-checked by the guest's code, with no guard
    /// pages; every slot of the pool is made readable and writable once, when
    /// the engine starts (virtual space only: untouched pages cost nothing),
    /// so creating and dropping VMs never changes a protection. The slots
    /// merge into one mapping: a live actor costs no mapping of its own and
    /// one process holds as many actors as memory allows. A component's
    /// static data is copied into each VM (about 1 µs for 25 KiB).
    ///
    /// The bounds checks are not hardened against Spectre (a guest could
    /// speculatively read past its memory, e.g. another actor's state): run
    /// components you would trust with the process's data.
    #[default]
    Dense,
    /// Guard pages after every memory and traps raised by the hardware,
    /// Spectre-hardened bounds checks, static data mapped copy-on-write. Each
    /// live actor maps about four regions, so a process holds at most
    /// `vm.max_map_count / 4` actors (about 16,000 with Linux's default of
    /// 65,530; raise the sysctl for more).
    Guarded,
}

/// Bytes of a freed memory slot kept mapped and reset in place (when the
/// kernel can say which pages were written). A small actor dirties 10–15
/// pages; the rest of a slot is released.
const KEEP_RESIDENT: usize = 64 << 10;
/// Likewise for a table slot: a component's tables fill a page or two.
const TABLE_KEEP_RESIDENT: usize = 16 << 10;

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
        // Without the page scan, "keep resident" would mean zeroing the first
        // bytes of every slot (a guest's stack, never touched) on every reset.
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            pool.pagemap_scan(Enabled::Yes)
                .linear_memory_keep_resident(KEEP_RESIDENT)
                .table_keep_resident(TABLE_KEEP_RESIDENT);
        }
        let mut wasm = Config::new();
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .wasm_component_model(true)
            .concurrency_support(false)
            .epoch_interruption(true)
            .memory_reservation(memory as u64)
            .memory_reservation_for_growth(0);
        // For profiling: `perf` names the guests' functions from the map
        // wasmtime then writes to /tmp/perf-<pid>.map (docs/performance.md).
        if std::env::var_os("AETHER_PERFMAP").is_some() {
            wasm.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        match config.layout {
            // Protections change only where the guest's code does not check
            // bounds itself: with explicit checks and no guard, wasmtime
            // leaves a slot's protections as they are when it reuses it.
            MemoryLayout::Dense => wasm.signals_based_traps(false).memory_guard_size(0).memory_init_cow(false),
            MemoryLayout::Guarded => wasm.memory_guard_size(64 << 10),
        };
        let engine = Engine::new(&wasm).map_err(|e| anyhow::anyhow!("cannot configure wasmtime: {e:#}"))?;
        if config.layout == MemoryLayout::Dense {
            open_slots(&engine, config.max_instances, memory);
        }
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

/// `(module (memory (export "m") 0))`.
const EMPTY_MEMORY_MODULE: &[u8] = &[0, b'a', b's', b'm', 1, 0, 0, 0, 5, 3, 1, 0, 0, 7, 5, 1, 1, b'm', 2, 0];

/// Makes every memory slot of the pool readable and writable, for
/// [`MemoryLayout::Dense`]: holds a VM with an empty memory in each slot at
/// once and grows it to the slot's size. That only changes protections
/// (nothing is touched, so nothing becomes resident); afterwards the slots
/// are one mapping, which actors' VMs reuse without splitting it.
///
/// Best effort: a slot left out only costs its actor two mappings.
fn open_slots(engine: &Engine, slots: u32, slot_bytes: usize) {
    let started = std::time::Instant::now();
    let module = match wasmtime::Module::new(engine, EMPTY_MEMORY_MODULE) {
        Ok(module) => module,
        Err(e) => return tracing::warn!(cause = %e, "memory slots left closed"),
    };
    let pages = (slot_bytes / (64 << 10)) as u64;
    let mut held = Vec::with_capacity(slots as usize);
    let mut failure = None;
    for _ in 0..slots {
        let mut store = wasmtime::Store::new(engine, ());
        let grown = wasmtime::Instance::new(&mut store, &module, &[]).and_then(|instance| {
            let memory = instance.get_memory(&mut store, "m").ok_or_else(|| wasmtime::format_err!("no memory"))?;
            memory.grow(&mut store, pages)
        });
        match grown {
            Ok(_) => held.push(store),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if let Some(e) = failure {
        tracing::warn!(opened = held.len(), slots, cause = %e, "not every memory slot could be opened");
    }
    if std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").is_ok_and(|s| s.contains("[always]")) {
        tracing::warn!(
            "transparent huge pages are `always`: actors' memories may be backed by 2 MiB pages; \
             set /sys/kernel/mm/transparent_hugepage/enabled to `madvise`"
        );
    }
    tracing::debug!(slots = held.len(), elapsed = ?started.elapsed(), "memory slots opened");
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Instance, Module, Store, TypedFunc};

    /// A module with a 17-page memory and static data, like a small Rust guest.
    const GUEST_LIKE: &str = r#"
        (module
          (memory (export "m") 17)
          (data (i32.const 1048576) "hello")
          (func (export "load") (param i32) (result i32) local.get 0 i32.load8_u)
          (func (export "store") (param i32 i32) local.get 0 local.get 1 i32.store8))
    "#;

    fn module(engine: &AetherEngine) -> Module {
        Module::new(engine.engine(), wat::parse_str(GUEST_LIKE).unwrap()).unwrap()
    }

    fn store(engine: &AetherEngine) -> Store<()> {
        let mut store = Store::new(engine.engine(), ());
        store.set_epoch_deadline(1_000);
        store
    }

    fn mappings() -> usize {
        std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count())
    }

    #[test]
    fn dense_vms_add_no_memory_mappings() {
        if !std::path::Path::new("/proc/self/maps").exists() {
            return;
        }
        let engine = AetherEngine::new(EngineConfig { max_instances: 300, ..EngineConfig::default() }).unwrap();
        let module = module(&engine);
        let mut live = Vec::new();
        let before = mappings();
        for _ in 0..200 {
            let mut store = store(&engine);
            Instance::new(&mut store, &module, &[]).unwrap();
            live.push(store);
        }
        let added = mappings().saturating_sub(before);
        // Opened one by one, each slot would add two mappings (Guarded: four).
        assert!(added < 20, "200 live VMs added {added} mappings");
    }

    #[test]
    fn a_reused_dense_slot_is_clean_and_still_bounds_checked() {
        // One slot: the second VM gets the memory the first one grew and wrote.
        let config = EngineConfig { max_instances: 1, max_memory_bytes: 2 << 20, ..EngineConfig::default() };
        let engine = AetherEngine::new(config).unwrap();
        let module = module(&engine);
        let end = 17 * 65536;
        {
            let mut store = store(&engine);
            let instance = Instance::new(&mut store, &module, &[]).unwrap();
            let memory = instance.get_memory(&mut store, "m").unwrap();
            memory.grow(&mut store, 15).unwrap();
            assert!(memory.grow(&mut store, 1).is_err(), "grew past the 2 MiB cap");
            let store_fn: TypedFunc<(i32, i32), ()> = instance.get_typed_func(&mut store, "store").unwrap();
            store_fn.call(&mut store, (end, 42)).unwrap();
            store_fn.call(&mut store, (1048576, b'j'.into())).unwrap();
        }
        let mut store = store(&engine);
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        let load: TypedFunc<i32, i32> = instance.get_typed_func(&mut store, "load").unwrap();
        assert_eq!(load.call(&mut store, 1048576).unwrap(), i32::from(b'h'), "static data restored");
        assert_eq!(load.call(&mut store, end - 1).unwrap(), 0);
        // The slot is still read-write past 17 pages, but the code checks bounds.
        let err = load.call(&mut store, end).unwrap_err();
        assert_eq!(err.downcast_ref::<wasmtime::Trap>(), Some(&wasmtime::Trap::MemoryOutOfBounds));
        let memory = instance.get_memory(&mut store, "m").unwrap();
        memory.grow(&mut store, 1).unwrap();
        assert_eq!(load.call(&mut store, end).unwrap(), 0, "the previous VM's write was reset");
    }
}
