//! Activation: create an actor's VM and restore a 1 KiB snapshot into it,
//! in process (no store), as an actor does when it wakes up from a snapshot.
//! Baseline: decoding the same snapshot natively. [`from_store`] measures
//! the same wake-up through the runtime, the snapshot read from a store.

use crate::fixtures;
use crate::util::{median, quantile};
use aether_guest::Aggregate;
use aether_host::store::{ActorId, AppendRequest, NewEvent, Provenance, Snapshot};
use aether_host::{DomainComponent, EventStore, Runtime, RuntimeConfig};
use bank::{Account, AccountEvent};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, Default)]
pub struct Activation {
    pub p50_us: f64,
    pub p99_us: f64,
    pub native_p50_us: f64,
    pub native_p99_us: f64,
}

/// Activates `per_round` actors one after another, `rounds` times.
///
/// # Errors
///
/// A guest fault (none is expected).
pub fn run(component: &DomainComponent, per_round: usize, rounds: usize) -> anyhow::Result<Activation> {
    let snapshot = fixtures::snapshot_1k();
    let ids: Vec<String> = (0..per_round).map(|i| format!("acc-{i}")).collect();
    let activate = |id: &str| -> anyhow::Result<()> {
        let mut vm = component.replica("Account", id)?;
        vm.restore(&snapshot)?;
        Ok(())
    };
    // Warm up: fault in the pool's first slots and the code.
    for id in ids.iter().take(per_round.min(1000)) {
        activate(id)?;
    }
    let (mut p50, mut p99, mut native_p50, mut native_p99) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let mut samples = Vec::with_capacity(per_round);
        for id in &ids {
            let started = Instant::now();
            let mut vm = component.replica("Account", id)?;
            vm.restore(&snapshot)?;
            samples.push(started.elapsed().as_nanos() as u64);
            // Returning the slot to the pool is not part of activation.
            drop(vm);
        }
        samples.sort_unstable();
        p50.push(quantile(&samples, 0.5) as f64 / 1e3);
        p99.push(quantile(&samples, 0.99) as f64 / 1e3);

        let mut native = Vec::with_capacity(per_round);
        for _ in &ids {
            let started = Instant::now();
            let account = Account::restore(&snapshot).map_err(anyhow::Error::msg)?;
            native.push(started.elapsed().as_nanos() as u64);
            std::hint::black_box(account);
        }
        native.sort_unstable();
        native_p50.push(quantile(&native, 0.5) as f64 / 1e3);
        native_p99.push(quantile(&native, 0.99) as f64 / 1e3);
    }
    Ok(Activation {
        p50_us: median(&p50),
        p99_us: median(&p99),
        native_p50_us: median(&native_p50),
        native_p99_us: median(&native_p99),
    })
}

/// Activation through the runtime from a store, as an actor wakes up after
/// passivation: its snapshot (a 1 KiB state) and the events after it (none)
/// read from `store`, a VM restored, its state answered. Each of `actors`
/// actors is passivated before it is timed; `rounds` times.
#[derive(Debug, Clone, Copy, Default)]
pub struct FromStore {
    pub p50_us: f64,
    pub p99_us: f64,
}

/// # Errors
///
/// A store or guest failure (none is expected).
pub async fn from_store(
    component: &DomainComponent,
    store: Arc<dyn EventStore>,
    actors: usize,
    rounds: usize,
) -> anyhow::Result<FromStore> {
    let ids: Vec<String> = (0..actors).map(|i| format!("woken-{i}")).collect();
    let (name, payload) =
        aether_guest::codec::split(&AccountEvent::Opened { owner: "ada".into() }).map_err(anyhow::Error::msg)?;
    for id in &ids {
        let actor = ActorId::new("Account", id.as_str());
        let provenance = Arc::new(Provenance {
            command_id: format!("open-{id}").into(),
            correlation_id: format!("open-{id}").into(),
            causation_id: format!("open-{id}").into(),
            timestamp_ms: 1_700_000_000_000,
            component_hash: component.hash().clone(),
            command: None,
        });
        let events = vec![NewEvent { name: name.clone(), payload: payload.clone() }];
        store
            .append(
                &actor,
                AppendRequest { expected_version: 0, provenance, events, id_from_caller: false, shard_epoch: None },
            )
            .await?;
        let snapshot =
            Snapshot { version: 1, component_hash: component.hash().to_string(), state: fixtures::snapshot_1k() };
        store.save_snapshot(&actor, snapshot).await?;
    }
    let config =
        RuntimeConfig::default().with_max_live_actors(actors + 64).with_idle_timeout(Duration::from_secs(3600));
    let runtime = Runtime::new(component.clone(), store, config);
    let (mut p50, mut p99) = (vec![], vec![]);
    // The first round warms the store's caches of the stream and the pool's slots.
    for round in 0..=rounds {
        runtime.passivate_all().await;
        let mut samples = Vec::with_capacity(actors);
        for id in &ids {
            let started = Instant::now();
            let (version, _) = runtime.state("Account", id).await?;
            samples.push(started.elapsed().as_nanos() as u64);
            anyhow::ensure!(version == 1, "{id} woke up at version {version}");
        }
        if round == 0 {
            continue;
        }
        samples.sort_unstable();
        p50.push(quantile(&samples, 0.5) as f64 / 1e3);
        p99.push(quantile(&samples, 0.99) as f64 / 1e3);
    }
    anyhow::ensure!(runtime.stats().activations.load(Ordering::Relaxed) > 0, "no actor was activated");
    Ok(FromStore { p50_us: median(&p50), p99_us: median(&p99) })
}
