//! One wasmtime engine tuned for very many small, short-lived instances.
//!
//! - The pooling allocator pre-reserves slots for instances and memories, so
//!   creating a VM is a slot reuse, not a fresh mapping.
//! - Each memory is reserved at the actor's cap, not 4 GiB: slots stay small
//!   and the cap is enforced by the reservation as well as the store limiter.
//! - A freed slot is reset by asking the kernel which pages the VM wrote
//!   (`PAGEMAP_SCAN`, Linux 6.7+) and restoring only those, so they stay
//!   mapped: the next VM in the slot takes no page faults. Without it every
//!   activation paid a fault per touched page and an `madvise` to drop them
//!   again, three times the activation (`docs/performance.md`, "Measurements
//!   behind the design").
//! - [`MemoryLayout::Dense`] (the default) never changes memory protections
//!   after start-up, so a live actor costs no memory mapping of its own and
//!   `vm.max_map_count` does not cap the number of actors.
//! - Epoch interruption bounds every call (invariant: fault-isolation) at a few percent of
//!   call cost, where fuel would cost far more; a thread ticks the epoch.
//! - Guest calls are synchronous and start on the caller's thread (a Tokio
//!   worker): no hand-off on the command path. An actor's call may hold that
//!   thread for [`EngineConfig::inline_budget`] only; one that needs longer
//!   is interrupted and the actor's calls move off the I/O threads
//!   ([`Placement`]), so spinning guests cannot starve the runtime's I/O
//!   (heartbeats, leases, other actors, `/healthz`). Wasmtime's async
//!   support (calls on fibers that yield at each epoch tick) was ruled out
//!   by its code: a store keeps its last fiber stack until it is dropped, so
//!   one store per actor means a pooled stack, two mappings and its resident
//!   pages, per live actor. Handing every call to another thread
//!   (`spawn_blocking`) would cost two thread wake-ups per command.
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
#[non_exhaustive]
pub struct EngineConfig {
    /// The most linear memory one actor's VM may use. A guest that grows past
    /// it traps; that command fails and the VM is rebuilt.
    pub max_memory_bytes: usize,
    /// VMs that can exist at once (pool slots). The runtime keeps its live
    /// actors below this.
    pub max_instances: u32,
    /// The longest one call into a guest may run before it is interrupted.
    pub call_timeout: Duration,
    /// How often the epoch advances; the granularity of `call_timeout`
    /// and `inline_budget`.
    pub epoch_interval: Duration,
    /// The longest an actor's call may run on the thread that made it (a
    /// Tokio worker, which also serves I/O). A call that needs longer is
    /// interrupted, its VM rebuilt, and the actor's calls run off the
    /// workers from then on (bounded by `max_offloaded_calls`). Rounded up to
    /// whole epoch ticks, at least two.
    pub inline_budget: Duration,
    /// Guest calls that may run off the workers at once; more wait their
    /// turn (on threads of their own, not on workers). Bounds the cores
    /// slow or spinning guests can take from everything else.
    pub max_offloaded_calls: usize,
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
            inline_budget: Duration::from_millis(10),
            max_offloaded_calls: 16,
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
    /// static data is copied into each VM (cheap for the sizes guests have:
    /// `docs/performance.md`, "Measurements behind the design").
    ///
    /// The bounds checks are hardened against Spectre: each is a branch to a
    /// trap and, for the access itself, an address chosen without a branch
    /// (`select_spectre_guard`: null when out of bounds), so a CPU that
    /// speculates past the branch loads from null, never from another
    /// actor's memory. Wasmtime emits that guard only with signals-based
    /// traps; `third_party/wasmtime-internal-cranelift` carries the patch
    /// that emits it for explicit checks too (`docs/performance.md` has its
    /// cost, and a test reads the machine code for it).
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
    offloaded: Arc<OffloadedCalls>,
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
        let offloaded = Arc::new(OffloadedCalls::new(config.max_offloaded_calls));
        Ok(Arc::new(Self { engine, config, stop, offloaded }))
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Epoch ticks a call may run.
    pub(crate) fn deadline_ticks(&self) -> u64 {
        self.ticks(self.config.call_timeout).max(1) + 1
    }

    /// Epoch ticks a call may run on the caller's thread: at least two, so
    /// a call that starts just before a tick is not cut short by it.
    pub(crate) fn inline_ticks(&self) -> u64 {
        self.ticks(self.config.inline_budget).max(2).min(self.deadline_ticks())
    }

    fn ticks(&self, span: Duration) -> u64 {
        (span.as_nanos().div_ceil(self.config.epoch_interval.as_nanos().max(1))) as u64
    }

    pub(crate) fn offloaded_calls(&self) -> &Arc<OffloadedCalls> {
        &self.offloaded
    }
}

/// Where a VM's calls run, and so how long each may hold its thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Placement {
    /// On the caller's thread, up to the call timeout: for tools, tests and
    /// benchmarks that own their thread.
    #[default]
    Caller,
    /// On the caller's thread (a Tokio worker) for at most the engine's
    /// inline budget; a call that needs longer fails with
    /// [`GuestFault::Preempted`](super::GuestFault::Preempted), and the VM
    /// must be rebuilt and the work redone [`Offloaded`](Self::Offloaded).
    Inline,
    /// Off the Tokio workers: the calling thread hands its worker's queue to
    /// another thread first (`block_in_place`), then runs the call when one
    /// of the engine's `max_offloaded_calls` is free. On a current-thread
    /// runtime, which has no other worker, it runs as `Caller` does.
    Offloaded,
}

/// Counts the guest calls running off the workers; a call past the bound
/// waits on its own (non-worker) thread.
#[derive(Debug)]
pub(crate) struct OffloadedCalls {
    running: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
    max: usize,
}

impl OffloadedCalls {
    fn new(max: usize) -> Self {
        Self { running: std::sync::Mutex::new(0), freed: std::sync::Condvar::new(), max: max.max(1) }
    }

    /// Runs `call` off the Tokio workers, within the bound.
    pub(crate) fn run<R>(&self, call: impl FnOnce() -> R) -> R {
        let on_worker_pool = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let bounded = || {
            let _slot = self.take_slot();
            call()
        };
        if on_worker_pool { tokio::task::block_in_place(bounded) } else { bounded() }
    }

    fn take_slot(&self) -> Slot<'_> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= self.max {
            running = self.freed.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running += 1;
        Slot(self)
    }
}

struct Slot<'a>(&'a OffloadedCalls);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.running.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.0.freed.notify_one();
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

    #[test]
    fn offloaded_calls_run_at_most_the_bound_at_once() {
        use std::sync::atomic::AtomicUsize;
        let calls = Arc::new(OffloadedCalls::new(2));
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (calls, running, most) = (calls.clone(), running.clone(), most.clone());
                std::thread::spawn(move || {
                    calls.run(|| {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2, "six calls, two at a time");
    }

    #[test]
    fn the_inline_budget_is_whole_ticks_at_least_two_and_within_the_deadline() {
        let engine = |inline_budget, call_timeout| {
            let config = EngineConfig {
                max_instances: 1,
                inline_budget,
                call_timeout,
                epoch_interval: Duration::from_millis(5),
                ..EngineConfig::default()
            };
            AetherEngine::new(config).unwrap()
        };
        let e = engine(Duration::from_millis(10), Duration::from_secs(1));
        assert_eq!((e.inline_ticks(), e.deadline_ticks()), (2, 201));
        assert_eq!(engine(Duration::from_millis(1), Duration::from_secs(1)).inline_ticks(), 2);
        assert_eq!(engine(Duration::from_millis(21), Duration::from_secs(1)).inline_ticks(), 5);
        assert_eq!(engine(Duration::from_secs(5), Duration::from_millis(20)).inline_ticks(), 5);
    }
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

/// The bounds checks' Spectre guard, read in the machine code wasmtime
/// compiles (x86-64: `select_spectre_guard` is a `cmov`).
#[cfg(all(test, target_arch = "x86_64"))]
mod spectre {
    use super::*;
    use object::{Object, ObjectSection};

    /// A function summing `LOADS` loads at addresses it is given: each needs
    /// a bounds check, and nothing else in it selects.
    const LOADS: usize = 64;

    fn conditional_moves(layout: MemoryLayout) -> usize {
        // Each at its own index (offsets would share one check), all used.
        let loads: String = (0..LOADS)
            .map(|i| format!("(i32.add (i32.load (i32.add (local.get 0) (i32.const {}))))\n", i * 4))
            .collect();
        let wat = format!("(module (memory 1) (func (export \"f\") (param i32) (result i32) (i32.const 0) {loads}))");
        let config = EngineConfig { max_instances: 1, layout, ..EngineConfig::default() };
        let engine = AetherEngine::new(config).unwrap();
        let compiled = engine.engine().precompile_module(&wat::parse_str(&wat).unwrap()).unwrap();
        let elf = object::File::parse(&*compiled).unwrap();
        let text = elf.section_by_name(".text").unwrap().data().unwrap();
        // `cmovcc r, r/m` is 0F 40+cc; count the opcodes.
        text.windows(2).filter(|w| w[0] == 0x0f && (0x40..=0x4f).contains(&w[1])).count()
    }

    /// Fails on wasmtime as published (no conditional move at all: explicit
    /// bounds checks get no guard); holds with
    /// third_party/wasmtime-internal-cranelift.
    #[test]
    fn every_bounds_checked_load_of_the_dense_layout_has_a_spectre_guard() {
        let guards = conditional_moves(MemoryLayout::Dense);
        assert!(guards >= LOADS, "{guards} conditional moves for {LOADS} bounds-checked loads");
    }
}
