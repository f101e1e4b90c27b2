//! Replay: stored events pushed through the guest's `apply` in batches, on
//! one core, as an actor catches up with its stream. Baseline: the same
//! aggregate code compiled natively, decoding the same stored events.

use crate::fixtures;
use crate::util::median;
use aether_guest::{Aggregate, codec};
use aether_host::DomainComponent;
use aether_host::store::RecordedEvent;
use bank::{Account, AccountEvent};
use std::time::Instant;

#[derive(Debug, Clone, Copy, Default)]
pub struct Replay {
    pub events_per_s: f64,
    pub native_events_per_s: f64,
}

/// Replays `events` account events, `batch` per call, `rounds` times.
///
/// # Errors
///
/// A guest fault (none is expected).
pub fn run(component: &DomainComponent, events: usize, batch: usize, rounds: usize) -> anyhow::Result<Replay> {
    let stored = fixtures::recorded(&fixtures::account_events(events));
    let (mut wasm, mut native) = (vec![], vec![]);
    let mut expected = None;
    for _ in 0..rounds {
        let mut vm = component.replica("Account", "replayed")?;
        let started = Instant::now();
        for chunk in stored.chunks(batch) {
            vm.apply(chunk)?;
        }
        wasm.push(stored.len() as f64 / started.elapsed().as_secs_f64());
        let state = vm.state()?;

        let started = Instant::now();
        let account = replay_natively(&stored, batch)?;
        native.push(stored.len() as f64 / started.elapsed().as_secs_f64());
        // Both did the same work: the states agree.
        let native_state = codec::encode_named(&account);
        anyhow::ensure!(state == native_state, "the guest and the native replay disagree");
        expected.get_or_insert(state);
    }
    Ok(Replay { events_per_s: median(&wasm), native_events_per_s: median(&native) })
}

fn replay_natively(stored: &[RecordedEvent], batch: usize) -> anyhow::Result<Account> {
    let mut account = Account::default();
    for chunk in stored.chunks(batch) {
        for e in std::hint::black_box(chunk) {
            let event: AccountEvent = codec::join(&e.name, &e.payload).map_err(anyhow::Error::msg)?;
            account.apply(&event);
        }
    }
    Ok(account)
}
