//! A read model's runner: folds the events it lists into rows kept in the
//! views store, and the queries on those rows.
//!
//! For a batch: one `keys` call, then one `fold` per key with that key's
//! events in log order and the stored row. Each row is stored with the log
//! position of the newest event folded into it, and a deleted row leaves a
//! tombstone with its position: a batch read again after a crash skips the
//! events a row has seen, so nothing is folded twice. An event whose `keys`
//! or `fold` faults is parked with its error and the row goes on without it.

use super::vm::{self, Logged};
use super::{FlowError, Flows, Kind, RunnerStatus, parked_entry, parked_space};
use crate::store::{ActorId, LoggedCommand, StoreError};
use crate::wasm::{GuestFault, ReadModelVm};
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

/// The runner's VM.
pub(super) type Slot = vm::Slot<ReadModelVm>;

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

/// Whether the read model is declared otherwise than when its rows were
/// folded (other events, row schema or indexes): then it is folded again
/// from the start. Records the definition the rows follow from now on.
pub(super) async fn definition_changed(
    flows: &Flows,
    status: &RunnerStatus,
    model: &crate::model::DomainModel,
) -> Result<bool, StoreError> {
    let Some(read_model) = model.read_model(&status.name) else { return Ok(false) };
    let definition = serde_json::to_vec(read_model).expect("a model serialises");
    let definition = format!("{:016x}", crate::fnv::fnv1a_64(&definition)).into_bytes();
    let stored = flows.views().get(DEFINITIONS, &status.name).await?;
    if stored.as_ref() == Some(&definition) {
        return Ok(false);
    }
    flows.views().write(DEFINITIONS, vec![(status.name.clone(), Some(definition))]).await?;
    if stored.is_some() {
        tracing::info!(read_model = %status.name, "the read model is declared otherwise: folding it again from the start");
    }
    Ok(stored.is_some())
}

/// Where each read model's definition, as its rows were folded, is kept.
const DEFINITIONS: &str = "definitions/read-model";

pub(super) async fn drop_rows(flows: &Flows, status: &RunnerStatus) -> Result<(), StoreError> {
    flows.views().clear(&rows_space(&status.name)).await?;
    let indexes = flows.runtime().component().component().model().read_model(&status.name).map(|m| m.indexes.clone());
    for index in indexes.unwrap_or_default() {
        flows.views().clear(&index_space(&status.name, &index)).await?;
    }
    flows.views().clear(&parked_space(status)).await?;
    status.parked.store(0, Ordering::Relaxed);
    super::save_checkpoint(flows, status, 0).await?;
    flows.views().write(super::REBUILDS, vec![(status.name.clone(), None)]).await
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
    let slot = Slot::of(slot, component, &status.name);
    let events = Logged::select(batch, |aggregate, event| model.consumes(aggregate, event));
    if events.is_empty() {
        return Ok(());
    }
    status.handled.fetch_add(events.len() as u64, Ordering::Relaxed);
    let keys = keys(slot, &events).await;
    // Each key's events, in log order.
    let mut by_key: BTreeMap<String, Vec<&Logged>> = BTreeMap::new();
    for (event, keys) in events.iter().zip(keys) {
        match keys {
            Ok(keys) => keys.into_iter().for_each(|k| by_key.entry(k).or_default().push(event)),
            Err(fault) => park(flows, status, event, &fault).await?,
        }
    }
    let space = rows_space(&status.name);
    // Each row with the events it has not seen, in log order.
    let mut jobs: Vec<FoldJob> = Vec::with_capacity(by_key.len());
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
        let due: Vec<Logged> = events.into_iter().filter(|e| e.position > seen).cloned().collect();
        if !due.is_empty() {
            jobs.push(FoldJob { key, row, events: due });
        }
    }
    // Every row's fold in one hand-off to the blocking pool (a hand-off costs
    // more than a fold); if one faults, row by row, event by event.
    let folded = match slot.call(&jobs, fold_all).await {
        Ok(folded) => folded,
        Err(_) => {
            let mut folded = Vec::with_capacity(jobs.len());
            for job in &jobs {
                folded.push(fold(flows, status, slot, &job.key, job.row.clone(), job.events.clone()).await?);
            }
            folded
        }
    };
    let mut writes = Vec::with_capacity(jobs.len());
    let mut index_writes: BTreeMap<String, Vec<super::views::ViewWrite>> = BTreeMap::new();
    for (job, folded) in jobs.into_iter().zip(folded) {
        let FoldJob { key, row, events } = job;
        let newest = events.last().map_or(0, |e| e.position);
        for index in &model.indexes {
            let (old, new) = (field_text(row.as_deref(), index), field_text(folded.as_deref(), index));
            if old != new {
                let entries = index_writes.entry(index.clone()).or_default();
                entries.extend(old.map(|old| (index_key(&old, &key), None)));
                entries.extend(new.map(|new| (index_key(&new, &key), Some(Vec::new()))));
            }
        }
        writes.push((key, Some(encode(newest, folded.as_deref()))));
    }
    // The indexes first: a batch read again after a crash between the two
    // writes skips the rows it wrote, but not the index entries; a listing
    // checks each row it finds through an index.
    for (index, entries) in index_writes {
        flows.views().write(&index_space(&status.name, &index), entries).await?;
    }
    flows.views().write(&space, writes).await
}

/// The space of a read model's index on a field: keys `<value>\0<row key>`.
fn index_space(name: &str, field: &str) -> String {
    format!("index/{name}/{field}")
}

fn index_key(value: &str, key: &str) -> String {
    format!("{value}\0{key}")
}

/// A row's top-level field as the index keeps it: a string as it is, any
/// other value as JSON; `None` without a row or that field.
fn field_text(row: Option<&[u8]>, field: &str) -> Option<String> {
    let json = crate::api::json::from_msgpack(row?).ok()?;
    match json.get(field)? {
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

async fn park(
    flows: &Flows,
    status: &RunnerStatus,
    event: &Logged,
    error: &(dyn std::fmt::Display + Sync),
) -> Result<(), StoreError> {
    tracing::warn!(read_model = %status.name, event = %event.describe(), %error, "parked a read model's event");
    flows.views().write(&parked_space(status), vec![parked_entry(event.position, &event.describe(), error)]).await?;
    status.parked.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// The keys of each event, or why that event failed; a fault of the whole
/// call is narrowed down event by event.
async fn keys(slot: &mut Slot, events: &[Logged]) -> Vec<Result<Vec<String>, String>> {
    let call = |vm: &mut ReadModelVm, events: &[Logged]| {
        let refs: Vec<_> = events.iter().map(Logged::as_logged).collect();
        vm.keys(&refs)
    };
    match slot.call(events, call).await {
        Ok(keys) => keys.into_iter().map(|k| k.map_err(|f| f.to_string())).collect(),
        Err(fault) if events.len() == 1 => vec![Err(fault.to_string())],
        Err(_) => {
            let mut out = Vec::with_capacity(events.len());
            for event in events {
                out.push(match slot.call(std::slice::from_ref(event), call).await {
                    Ok(mut keys) => keys.pop().expect("one key list per event").map_err(|f| f.to_string()),
                    Err(fault) => Err(fault.to_string()),
                });
            }
            out
        }
    }
}

/// A row to fold: its key, the row as stored, the events it has not seen.
#[derive(Debug, Clone)]
struct FoldJob {
    key: String,
    row: Option<Vec<u8>>,
    events: Vec<Logged>,
}

/// Folds every job's events into its row, in one call of the blocking pool.
fn fold_all(vm: &mut ReadModelVm, jobs: &[FoldJob]) -> Result<Vec<Option<Vec<u8>>>, GuestFault> {
    jobs.iter()
        .map(|job| {
            let refs: Vec<_> = job.events.iter().map(Logged::as_logged).collect();
            vm.fold(&job.key, job.row.as_deref(), &refs).map_err(|(_, fault)| fault)
        })
        .collect()
}

/// Folds `events` into `row`; if that faults, folds them one at a time,
/// parking each that faults and going on without it.
async fn fold(
    flows: &Flows,
    status: &RunnerStatus,
    slot: &mut Slot,
    key: &str,
    row: Option<Vec<u8>>,
    events: Vec<Logged>,
) -> Result<Option<Vec<u8>>, StoreError> {
    if let Ok(row) = fold_call(slot, key, row.clone(), &events).await {
        return Ok(row);
    }
    let mut row = row;
    for event in events {
        match fold_call(slot, key, row.clone(), std::slice::from_ref(&event)).await {
            Ok(next) => row = next,
            Err(fault) => park(flows, status, &event, &format!("folding row `{key}`: {fault}")).await?,
        }
    }
    Ok(row)
}

async fn fold_call(
    slot: &mut Slot,
    key: &str,
    row: Option<Vec<u8>>,
    events: &[Logged],
) -> Result<Option<Vec<u8>>, GuestFault> {
    let key = key.to_owned();
    slot.call(events, move |vm: &mut ReadModelVm, events: &[Logged]| {
        let refs: Vec<_> = events.iter().map(Logged::as_logged).collect();
        vm.fold(&key, row.as_deref(), &refs).map_err(|(_, fault)| fault)
    })
    .await
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
        let indexed = field.filter(|(name, _)| {
            let deployment = self.runtime().component();
            deployment.component().model().read_model(read_model).is_some_and(|m| m.indexes.iter().any(|i| i == name))
        });
        if let Some((name, value)) = indexed {
            return self.rows_by_index(read_model, name, value, prefix, after, limit).await;
        }
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

impl Flows {
    /// Rows whose indexed field `name` has `value`, through the index: each
    /// row found is read and checked (an entry may be ahead of its row).
    async fn rows_by_index(
        &self,
        read_model: &str,
        name: &str,
        value: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RowPage, FlowError> {
        let space = index_space(read_model, name);
        let mut cursor = after.map(|after| index_key(value, after));
        let mut rows = Vec::new();
        loop {
            let entries = self.views().scan(&space, &index_key(value, prefix), cursor.as_deref(), 256).await?;
            let exhausted = entries.len() < 256;
            for (entry, _) in entries {
                cursor = Some(entry.clone());
                let key = &entry[value.len() + 1..];
                let Some(row) = self.row(read_model, key).await? else { continue };
                if !field_equals(&row, name, value) {
                    continue;
                }
                rows.push(Row { key: key.to_owned(), row });
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
