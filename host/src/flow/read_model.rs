//! A read model's runner: folds the events it lists into rows kept in the
//! views store, and the queries on those rows.
//!
//! For a batch: one `keys` call, then one `fold` per key with that key's
//! events in log order and the stored row. Each row is stored with the log
//! position of the newest event folded into it, and a deleted row leaves a
//! tombstone with its position: a batch read again after a crash skips the
//! events a row has seen, so nothing is folded twice. An event whose `keys`
//! or `fold` faults is parked with its error and the row goes on without it.

use super::{FlowError, Flows, Kind, RunnerStatus, parked_entry, parked_space};
use crate::store::{ActorId, LoggedCommand, RecordedEvent, StoreError};
use crate::wasm::{DomainComponent, GuestFault, LoggedEvent, ReadModelVm};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

/// One row, as stored: its key and MessagePack value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub key: String,
    /// MessagePack, as the guest's `fold` returned it.
    pub row: Vec<u8>,
}

/// A page of rows, and the key to list after for the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowPage {
    pub rows: Vec<Row>,
    pub next: Option<String>,
}

/// An event the runner owns, with its log position.
#[derive(Debug, Clone)]
struct Event {
    position: u64,
    actor: ActorId,
    event: RecordedEvent,
}

impl Event {
    fn logged(&self) -> LoggedEvent<'_> {
        LoggedEvent { actor: &self.actor, event: &self.event }
    }

    fn describe(&self) -> String {
        format!("{}@{} {}", self.actor, self.event.version, self.event.name)
    }
}

pub(super) struct Slot {
    component: DomainComponent,
    vm: Option<ReadModelVm>,
    announce: bool,
}

pub(super) fn rows_space(name: &str) -> String {
    format!("rows/{name}")
}

/// A stored row: the position it has folded up to, and the row (`None`: a tombstone).
fn decode(bytes: &[u8]) -> Option<(u64, Option<&[u8]>)> {
    let (position, rest) = bytes.split_first_chunk::<8>()?;
    let (present, row) = rest.split_first()?;
    Some((u64::from_be_bytes(*position), (*present == 1).then_some(row)))
}

fn encode(position: u64, row: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + row.map_or(0, <[u8]>::len));
    out.extend_from_slice(&position.to_be_bytes());
    out.push(u8::from(row.is_some()));
    out.extend_from_slice(row.unwrap_or_default());
    out
}

pub(super) async fn drop_rows(flows: &Flows, status: &RunnerStatus) -> Result<(), StoreError> {
    flows.views().clear(&rows_space(&status.name)).await?;
    flows.views().clear(&parked_space(status)).await?;
    status.parked.store(0, Ordering::Relaxed);
    super::save_checkpoint(flows, status, 0).await
}

pub(super) async fn handle(
    flows: &Flows,
    status: &RunnerStatus,
    slot: &mut Option<Slot>,
    batch: Vec<LoggedCommand>,
) -> Result<(), StoreError> {
    let deployment = flows.runtime().component();
    let component = deployment.component();
    let Some(model) = component.model().read_model(&status.name).cloned() else {
        tracing::warn!(read_model = %status.name, "the running component has no such read model any more; passing over");
        return Ok(());
    };
    if slot.as_ref().is_none_or(|s| s.component.hash() != component.hash()) {
        *slot = Some(Slot { component: component.clone(), vm: None, announce: false });
    }
    let slot = slot.as_mut().expect("set above");
    let events: Vec<Event> = batch
        .into_iter()
        .flat_map(|c| {
            let (position, actor) = (c.position, c.actor);
            let wanted: Vec<_> = c.events.into_iter().filter(|e| model.consumes(&actor.aggregate, &e.name)).collect();
            wanted.into_iter().map(move |event| Event { position, actor: actor.clone(), event })
        })
        .collect();
    if events.is_empty() {
        return Ok(());
    }
    status.handled.fetch_add(events.len() as u64, Ordering::Relaxed);
    let keys = keys(slot, &status.name, &events).await;
    // Each key's events, in log order.
    let mut by_key: BTreeMap<String, Vec<&Event>> = BTreeMap::new();
    for (event, keys) in events.iter().zip(keys) {
        match keys {
            Ok(keys) => keys.into_iter().for_each(|k| by_key.entry(k).or_default().push(event)),
            Err(fault) => park(flows, status, event, &fault).await?,
        }
    }
    let space = rows_space(&status.name);
    let mut writes = Vec::with_capacity(by_key.len());
    for (key, events) in by_key {
        let stored = flows.views().get(&space, &key).await?;
        let (seen, row) = match stored.as_deref().map(decode) {
            None => (0, None),
            Some(Some((seen, row))) => (seen, row.map(<[u8]>::to_vec)),
            Some(None) => {
                return Err(StoreError::Corrupt {
                    actor: ActorId::new(format!("read model {}", status.name), key),
                    version: 0,
                    cause: "a stored row is shorter than its header".into(),
                });
            }
        };
        let due: Vec<Event> = events.into_iter().filter(|e| e.position > seen).cloned().collect();
        let Some(newest) = due.last().map(|e| e.position) else { continue };
        let row = fold(flows, status, slot, &key, row, due).await?;
        writes.push((key, Some(encode(newest, row.as_deref()))));
    }
    flows.views().write(&space, writes).await
}

async fn park(
    flows: &Flows,
    status: &RunnerStatus,
    event: &Event,
    error: &(dyn std::fmt::Display + Sync),
) -> Result<(), StoreError> {
    tracing::warn!(read_model = %status.name, event = %event.describe(), %error, "parked a read model's event");
    flows.views().write(&parked_space(status), vec![parked_entry(event.position, &event.describe(), error)]).await?;
    status.parked.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// The keys of each event, or why that event failed; a fault of the whole
/// call is narrowed down event by event.
async fn keys(slot: &mut Slot, name: &str, events: &[Event]) -> Vec<Result<Vec<String>, String>> {
    let all = call(slot, name, events.to_vec(), |vm, events| {
        let refs: Vec<_> = events.iter().map(Event::logged).collect();
        vm.keys(&refs).map(|keys| keys.into_iter().map(|k| k.map_err(|f| f.to_string())).collect::<Vec<_>>())
    })
    .await;
    match all {
        Ok(keys) => keys,
        Err(fault) if events.len() == 1 => vec![Err(fault.to_string())],
        Err(_) => {
            let mut out = Vec::with_capacity(events.len());
            for event in events {
                let one = call(slot, name, vec![event.clone()], |vm, events| {
                    let refs: Vec<_> = events.iter().map(Event::logged).collect();
                    vm.keys(&refs)
                })
                .await;
                out.push(match one {
                    Ok(mut keys) => keys.pop().expect("one key list per event").map_err(|f| f.to_string()),
                    Err(fault) => Err(fault.to_string()),
                });
            }
            out
        }
    }
}

/// Folds `events` into `row`; if that faults, folds them one at a time,
/// parking each that faults and going on without it.
async fn fold(
    flows: &Flows,
    status: &RunnerStatus,
    slot: &mut Slot,
    key: &str,
    row: Option<Vec<u8>>,
    events: Vec<Event>,
) -> Result<Option<Vec<u8>>, StoreError> {
    let folded = fold_call(slot, &status.name, key, row.clone(), events.clone()).await;
    if let Ok(row) = folded {
        return Ok(row);
    }
    let mut row = row;
    for event in events {
        match fold_call(slot, &status.name, key, row.clone(), vec![event.clone()]).await {
            Ok(next) => row = next,
            Err(fault) => park(flows, status, &event, &format!("folding row `{key}`: {fault}")).await?,
        }
    }
    Ok(row)
}

async fn fold_call(
    slot: &mut Slot,
    name: &str,
    key: &str,
    row: Option<Vec<u8>>,
    events: Vec<Event>,
) -> Result<Option<Vec<u8>>, GuestFault> {
    let key = key.to_owned();
    call(slot, name, events, move |vm, events| {
        let refs: Vec<_> = events.iter().map(Event::logged).collect();
        vm.fold(&key, row.as_deref(), &refs).map_err(|(_, fault)| fault)
    })
    .await
}

/// One call on the blocking pool; a VM that faulted is dropped, and one
/// whose folds read the clock is made again announcing every event.
async fn call<T: Send + 'static>(
    slot: &mut Slot,
    name: &str,
    events: Vec<Event>,
    work: impl Fn(&mut ReadModelVm, &[Event]) -> Result<T, GuestFault> + Send + Sync + Clone + 'static,
) -> Result<T, GuestFault> {
    for _ in 0..2 {
        let (vm, announce, name) = (slot.vm.take(), slot.announce, name.to_owned());
        // Cloning a component copies its model, schemas and all (tens of
        // µs, more than a fold): only to make a VM.
        let component = vm.is_none().then(|| slot.component.clone());
        let (events, work) = (events.clone(), work.clone());
        let (vm, out) = super::off_workers(move || {
            let mut vm = match vm {
                Some(vm) => vm,
                None => match component.expect("cloned when there is no VM").read_model_vm(&name) {
                    Ok(mut vm) => {
                        vm.vm().announce_folds(announce);
                        vm
                    }
                    Err(fault) => return (None, Err(fault)),
                },
            };
            let out = work(&mut vm, &events);
            (out.is_ok().then_some(vm), out)
        })
        .await;
        slot.vm = vm;
        match out {
            Err(GuestFault::Unannounced { .. }) if !slot.announce => slot.announce = true,
            out => return out,
        }
    }
    unreachable!("the second call announces every event")
}

impl Flows {
    /// The row under `key`, MessagePack; `None` if there is none.
    ///
    /// # Errors
    ///
    /// [`FlowError::Unknown`] for a read model the model does not have; the store's.
    pub async fn row(&self, read_model: &str, key: &str) -> Result<Option<Vec<u8>>, FlowError> {
        self.status(Kind::ReadModel, read_model)?;
        let stored = self.views().get(&rows_space(read_model), key).await?;
        Ok(stored.as_deref().and_then(decode).and_then(|(_, row)| row.map(<[u8]>::to_vec)))
    }

    /// Rows whose keys start with `prefix`, after the key `after`, in key
    /// order, at most `limit`; with `field`, only rows whose top-level
    /// field of that name equals the value (a declared index, or any field).
    ///
    /// # Errors
    ///
    /// As [`row`](Self::row).
    pub async fn rows(
        &self,
        read_model: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        field: Option<(&str, &str)>,
    ) -> Result<RowPage, FlowError> {
        self.status(Kind::ReadModel, read_model)?;
        let space = rows_space(read_model);
        let limit = limit.max(1);
        let mut rows = Vec::new();
        let mut cursor = after.map(str::to_owned);
        loop {
            let scanned = self.views().scan(&space, prefix, cursor.as_deref(), 256).await?;
            let exhausted = scanned.len() < 256;
            for (key, bytes) in scanned {
                cursor = Some(key.clone());
                let Some((_, Some(row))) = decode(&bytes) else { continue };
                if field.is_some_and(|(name, value)| !field_equals(row, name, value)) {
                    continue;
                }
                rows.push(Row { key, row: row.to_vec() });
                if rows.len() == limit {
                    let next = rows.last().map(|r| r.key.clone());
                    return Ok(RowPage { rows, next });
                }
            }
            if exhausted {
                return Ok(RowPage { rows, next: None });
            }
        }
    }
}

/// Whether the row's top-level field `name` reads `value` (a string as it
/// is, any other value as JSON).
fn field_equals(row: &[u8], name: &str, value: &str) -> bool {
    let Ok(json) = crate::api::json::from_msgpack(row) else { return false };
    match json.get(name) {
        Some(serde_json::Value::String(s)) => s == value,
        Some(other) => *other == serde_json::from_str::<serde_json::Value>(value).unwrap_or_default(),
        None => false,
    }
}
