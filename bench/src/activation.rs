//! Activation: create an actor's VM and restore a 1 KiB snapshot into it,
//! in process (no store), as an actor does when it wakes up from a snapshot.
//! Baseline: decoding the same snapshot natively.

use crate::fixtures;
use crate::util::{median, quantile};
use aether_guest::Aggregate;
use aether_host::DomainComponent;
use bank::Account;
use std::time::Instant;

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
        let mut vm = component.instantiate()?;
        vm.init("Account", id)?;
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
            let mut vm = component.instantiate()?;
            vm.init("Account", id)?;
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
