//! The `AccountsByOwner` read model: a preloaded log of account events,
//! accounts taking turns (as a bank's log looks: consecutive entries are
//! mostly different accounts), folded until the runner has caught up.
//!
//! - **Hosted**: the host's read-model runner (guest `keys` for a batch,
//!   then per row touched a views read, a guest `fold`, each call off the
//!   workers, one views write per batch and a checkpoint).
//! - **Native runner**: the same loop here with `AccountsByOwner::keys` and
//!   `fold` called natively behind the same boundary (events decoded from
//!   their bytes for each call, rows kept as MessagePack with the host's
//!   position header in the same kind of views store).
//! - **Raw**: `ReadModelVm::keys` + `fold` on the same batches (256 events,
//!   one `fold` per row touched), beside the native calls.

use super::{BATCH, Pair, append, envelope, hosted_run, in_set, spawned, whole_log};
use crate::util::median;
use aether_guest::{Messages, ReadModel, codec};
use aether_host::flow::{Kind, MemoryViews, ViewStore};
use aether_host::store::{ActorId, RecordedEvent};
use aether_host::wasm::LoggedEvent;
use aether_host::{DomainComponent, EventStore, MemoryStore, Runtime, RuntimeConfig};
use bank::owners::OwnersEvent;
use bank::{AccountEvent, AccountRow, AccountsByOwner};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

/// The figures of the read-model half.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadModelFigures {
    pub events: Pair,
    pub fold: Pair,
    pub views_us_per_event: f64,
    pub rows_per_batch: f64,
    /// The mean round trip of a hand-off to the blocking pool, µs.
    pub handoff_us: f64,
    /// The raw calls, each handed to the blocking pool with copies of its
    /// events, as the runner makes them: events per second.
    pub fold_handed_off: f64,
    /// One `DomainComponent::clone`, µs: the runners clone the component
    /// for every guest call, and the clone copies the model with its schemas.
    pub component_clone_us: f64,
    pub events_total: u64,
}

/// A memory store whose log holds `events` account events of `accounts`
/// accounts in turn: opened, then deposits and withdrawals.
async fn preloaded(accounts: usize, events: usize) -> anyhow::Result<Arc<MemoryStore>> {
    let store = Arc::new(MemoryStore::new());
    for n in 0..events {
        let (i, version) = (n % accounts, (n / accounts) as u64);
        let event = match version {
            0 => AccountEvent::Opened { owner: format!("owner-{}", i % 7) },
            v if v % 2 == 1 => AccountEvent::Deposited { amount: 2 + v % 1000 },
            _ => AccountEvent::Withdrawn { amount: 1 },
        };
        let event = codec::split(&event).map_err(anyhow::Error::msg)?;
        append(&*store, &ActorId::new("Account", format!("acc-{i}")), version, vec![event]).await?;
    }
    Ok(store)
}

/// `AccountsByOwner::keys` behind the guest's boundary: each event decoded.
fn keys_natively(events: &[(u64, &ActorId, &RecordedEvent)]) -> anyhow::Result<Vec<Vec<String>>> {
    events.iter().map(|(_, actor, e)| Ok(AccountsByOwner::keys(&envelope::<OwnersEvent>(actor, e)?))).collect()
}

/// `AccountsByOwner::fold` behind the guest's boundary: the row decoded,
/// each event decoded and folded, the row encoded.
fn fold_natively(
    key: &str,
    row: Option<&[u8]>,
    events: &[(u64, &ActorId, &RecordedEvent)],
) -> anyhow::Result<Option<Vec<u8>>> {
    let mut row: Option<AccountRow> = row.map(rmp_serde::from_slice).transpose()?;
    for (_, actor, e) in events {
        row = AccountsByOwner::fold(key, row, &envelope::<OwnersEvent>(actor, e)?);
    }
    Ok(row.map(|r| codec::encode_named(&r)))
}

/// Events of a batch grouped by the row they touch, in log order.
type ByKey<'a> = BTreeMap<String, Vec<(u64, &'a ActorId, &'a RecordedEvent)>>;

fn group<'a>(events: &[(u64, &'a ActorId, &'a RecordedEvent)], keys: Vec<Vec<String>>) -> ByKey<'a> {
    let mut by_key = ByKey::new();
    for (event, keys) in events.iter().zip(keys) {
        for key in keys {
            by_key.entry(key).or_default().push(*event);
        }
    }
    by_key
}

/// The host's runner loop with the read model called natively: events
/// folded, seconds.
async fn native_runner(store: Arc<MemoryStore>) -> anyhow::Result<(u64, f64)> {
    const SPACE: &str = "rows/AccountsByOwner";
    let views = MemoryViews::default();
    let parts = OwnersEvent::parts();
    let started = Instant::now();
    let (mut checkpoint, mut handled) = (0, 0);
    loop {
        store.log_head().await?;
        let batch = store.read_log(checkpoint, BATCH).await?;
        let Some(last) = batch.last().map(|c| c.position) else { break };
        let events: Vec<_> = batch
            .iter()
            .flat_map(|c| c.events.iter().map(move |e| (c.position, &c.actor, e)))
            .filter(|(_, actor, e)| in_set(&parts, &actor.aggregate, &e.name))
            .collect();
        handled += events.len() as u64;
        let mut writes = Vec::new();
        for (key, events) in group(&events, keys_natively(&events)?) {
            let stored = views.get(SPACE, &key).await?;
            let (seen, row) = match stored.as_deref() {
                Some(bytes) if bytes.len() >= 9 => {
                    (u64::from_be_bytes(bytes[..8].try_into()?), (bytes[8] == 1).then(|| &bytes[9..]))
                }
                _ => (0, None),
            };
            let due: Vec<_> = events.into_iter().filter(|(p, ..)| *p > seen).collect();
            let Some(newest) = due.last().map(|(p, ..)| *p) else { continue };
            let row = fold_natively(&key, row, &due)?;
            let mut value = newest.to_be_bytes().to_vec();
            value.push(u8::from(row.is_some()));
            value.extend(row.unwrap_or_default());
            writes.push((key, Some(value)));
        }
        views.write(SPACE, writes).await?;
        views
            .write("checkpoints", vec![("read-model/AccountsByOwner".into(), Some(last.to_be_bytes().to_vec()))])
            .await?;
        checkpoint = last;
    }
    Ok((handled, started.elapsed().as_secs_f64()))
}

/// Runs the hosted and the native runner `rounds` times each on the same
/// log (alternating which goes first), then the raw calls on its events.
///
/// # Errors
///
/// A guest fault, or the two sides folding different counts or rows.
pub fn run(
    tokio: &tokio::runtime::Runtime,
    component: &DomainComponent,
    accounts: usize,
    events: usize,
    rounds: usize,
) -> anyhow::Result<ReadModelFigures> {
    let store = tokio.block_on(preloaded(accounts, events))?;
    let expected = events as u64;
    let (mut hosted, mut native, mut views, mut handoffs) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        for side in [round % 2, 1 - round % 2] {
            if side == 0 {
                // The runtime spawns its tasks where it is made.
                let _inside = tokio.enter();
                let runtime = Runtime::new(component.clone(), store.clone(), RuntimeConfig::default());
                let h = tokio.block_on(hosted_run(&runtime, Kind::ReadModel, AccountsByOwner::NAME))?;
                anyhow::ensure!(
                    h.handled == expected,
                    "the hosted read model folded {} events, not {expected}",
                    h.handled
                );
                hosted.push(h.handled as f64 / h.seconds);
                views.push(h.views_seconds * 1e6 / h.handled as f64);
            } else {
                let (handled, seconds) = tokio.block_on(spawned(native_runner(store.clone())))?;
                anyhow::ensure!(handled == expected, "the native read model folded {handled} events, not {expected}");
                native.push(handled as f64 / seconds);
            }
        }
        let calls = (events / 20).max(100);
        handoffs.push(tokio.block_on(spawned(async move { Ok(super::handoff_us(calls).await) }))?);
    }
    let log = tokio.block_on(whole_log(&*store))?;
    let log: Vec<_> = log.iter().map(|(p, actor, e)| (*p, actor, e)).collect();
    let (mut raw, mut raw_native, mut handed_off, mut rows_per_batch) = (vec![], vec![], vec![], 0.0);
    for _ in 0..rounds {
        let owned: Vec<(u64, ActorId, RecordedEvent)> =
            log.iter().map(|(p, actor, e)| (*p, (*actor).clone(), (*e).clone())).collect();
        let (seconds, rows) = tokio.block_on(spawned(fold_handed_off(component.clone(), owned)))?;
        handed_off.push(log.len() as f64 / seconds);
        let (seconds, guest_rows, folds) = fold_in_guest(component, &log)?;
        anyhow::ensure!(rows == guest_rows, "the guest folded different rows handed off and not");
        let rows = guest_rows;
        raw.push(log.len() as f64 / seconds);
        rows_per_batch = folds as f64 / log.len().div_ceil(BATCH) as f64;
        let (seconds, native_rows) = fold_natively_all(&log)?;
        raw_native.push(log.len() as f64 / seconds);
        anyhow::ensure!(rows == native_rows, "the guest and the native read model folded different rows");
    }
    Ok(ReadModelFigures {
        events: Pair { hosted: median(&hosted), native: median(&native) },
        fold: Pair { hosted: median(&raw), native: median(&raw_native) },
        views_us_per_event: median(&views),
        rows_per_batch,
        handoff_us: median(&handoffs),
        fold_handed_off: median(&handed_off),
        component_clone_us: clone_us(component),
        events_total: expected,
    })
}

type Log<'a> = [(u64, &'a ActorId, &'a RecordedEvent)];

/// `ReadModelVm::keys` and `fold` on the log, `BATCH` events at a time, the
/// rows kept here: seconds, the rows, the fold calls made.
fn fold_in_guest(component: &DomainComponent, log: &Log<'_>) -> anyhow::Result<(f64, HashMap<String, Vec<u8>>, u64)> {
    let mut vm = component.read_model_vm(AccountsByOwner::NAME)?;
    let mut rows: HashMap<String, Vec<u8>> = HashMap::new();
    let started = Instant::now();
    let mut folds = 0;
    for chunk in log.chunks(BATCH) {
        let logged: Vec<_> = chunk.iter().map(|(_, actor, event)| LoggedEvent { actor, event }).collect();
        let keys = vm.keys(&logged)?.into_iter().collect::<Result<Vec<_>, _>>()?;
        for (key, events) in group(chunk, keys) {
            let logged: Vec<_> = events.iter().map(|(_, actor, event)| LoggedEvent { actor, event }).collect();
            let row = vm.fold(&key, rows.get(&key).map(Vec::as_slice), &logged).map_err(|(_, fault)| fault)?;
            folds += 1;
            match row {
                Some(row) => rows.insert(key, row),
                None => rows.remove(&key),
            };
        }
    }
    Ok((started.elapsed().as_secs_f64(), rows, folds))
}

/// The same natively.
fn fold_natively_all(log: &Log<'_>) -> anyhow::Result<(f64, HashMap<String, Vec<u8>>)> {
    let mut rows: HashMap<String, Vec<u8>> = HashMap::new();
    let started = Instant::now();
    for chunk in log.chunks(BATCH) {
        let chunk = std::hint::black_box(chunk);
        for (key, events) in group(chunk, keys_natively(chunk)?) {
            match fold_natively(&key, rows.get(&key).map(Vec::as_slice), &events)? {
                Some(row) => rows.insert(key, row),
                None => rows.remove(&key),
            };
        }
    }
    Ok((started.elapsed().as_secs_f64(), rows))
}

/// [`fold_in_guest`] with each call handed to the blocking pool, the VM
/// and copies of the call's events moved in and back, as the runner does
/// (`flow::vm::Slot::call`): seconds, the rows.
async fn fold_handed_off(
    component: DomainComponent,
    log: Vec<(u64, ActorId, RecordedEvent)>,
) -> anyhow::Result<(f64, HashMap<String, Vec<u8>>)> {
    async fn off<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
        Ok(tokio::task::spawn_blocking(work).await?)
    }
    let mut vm = component.read_model_vm(AccountsByOwner::NAME)?;
    let mut rows: HashMap<String, Vec<u8>> = HashMap::new();
    let started = Instant::now();
    for chunk in log.chunks(BATCH) {
        let events = chunk.to_vec();
        let (back, keys) = off(move || {
            let logged: Vec<_> = events.iter().map(|(_, actor, event)| LoggedEvent { actor, event }).collect();
            let keys = vm.keys(&logged);
            (vm, keys)
        })
        .await?;
        vm = back;
        let keys = keys?.into_iter().collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<_> = chunk.iter().map(|(p, actor, e)| (*p, actor, e)).collect();
        for (key, events) in group(&refs, keys) {
            let events: Vec<(u64, ActorId, RecordedEvent)> =
                events.into_iter().map(|(p, actor, e)| (p, actor.clone(), e.clone())).collect();
            let row = rows.get(&key).cloned();
            let (back, folded) = off(move || {
                let logged: Vec<_> = events.iter().map(|(_, actor, event)| LoggedEvent { actor, event }).collect();
                let folded = vm.fold(&key, row.as_deref(), &logged).map_err(|(_, fault)| fault);
                (vm, folded.map(|row| (key, row)))
            })
            .await?;
            vm = back;
            match folded? {
                (key, Some(row)) => rows.insert(key, row),
                (key, None) => rows.remove(&key),
            };
        }
    }
    Ok((started.elapsed().as_secs_f64(), rows))
}

/// The mean time of a `DomainComponent::clone` (and its drop), µs.
fn clone_us(component: &DomainComponent) -> f64 {
    const CLONES: u32 = 2_000;
    let started = Instant::now();
    for _ in 0..CLONES {
        drop(std::hint::black_box(component.clone()));
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(CLONES)
}
