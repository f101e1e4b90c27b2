//! Checking a new component against stored history before it is deployed
//! (`aether-host verify`): does it still read every event, and does it
//! still decide every recorded command as the old code did?
//!
//! For each actor, two VMs of the new component walk the actor's events:
//! - the *reader* folds them through `apply`, in batches, as an activation
//!   would; the first event it cannot apply is reported with its version and
//!   cause (invariant: nothing-skipped), and the actor's history is then
//!   unreadable to the new code;
//! - the *decider* decides each recorded command again (see
//!   [`RecordedCommand`](crate::store::RecordedCommand)) against the state
//!   before it, with the command's recorded ids and time and the seed of its
//!   version, so a deterministic guest that still decides alike returns the
//!   same events byte for byte. An identical decision is kept (the guest
//!   folded those very events); a divergent one is reported, and the decider
//!   is rebuilt from the stored events, so each command is judged against
//!   the history as it was, not as the new code would have made it.
//!
//! Commands stored without their payload (written before commands were
//! recorded, or with `record_commands` off) are not re-decidable: their
//! events are folded and counted. It reads, and never writes: no append, no
//! snapshot (snapshots are not even read; every actor replays from its
//! first event, since a snapshot is the old code's state).
//!
//! Cost: per event, one fold in the reader and one in the decider; per
//! command, one `handle`. A divergence costs a replay of the actor up to
//! that command, so an actor with many divergent commands replays often:
//! bounded by [`VerifyConfig::max_rebuilds`] per actor, after which its
//! remaining commands are counted as not re-decided.

use crate::api::json;
use crate::store::{ActorId, EventStore, RecordedEvent, StoreError};
use crate::wasm::{CommandContext, DomainComponent, GuestFault, GuestInstance, HandleResult};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// How often a long verification says how far it is.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// What to verify and how much to report.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifyConfig {
    /// Only this aggregate's actors.
    pub aggregate: Option<String>,
    /// Only these actors (ids of [`aggregate`](Self::aggregate), or
    /// `Aggregate/id`).
    pub actors: Option<Vec<String>>,
    /// At most this many actors, in the store's order.
    pub limit: Option<usize>,
    /// Divergences and unreadable actors reported in full (counts are always whole).
    pub max_reported: usize,
    /// Events read and applied per call.
    pub replay_batch: usize,
    /// Times one actor's decider is rebuilt after divergences.
    pub max_rebuilds: usize,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self { aggregate: None, actors: None, limit: None, max_reported: 10, replay_batch: 512, max_rebuilds: 1000 }
    }
}

/// Counts for one aggregate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AggregateCounts {
    pub actors: u64,
    pub events: u64,
    /// Recorded commands the new component decided with the same events.
    pub identical: u64,
    /// Recorded commands it decided otherwise (other events, a rejection, a fault).
    pub divergent: u64,
    /// Commands stored without their payload, or after the point where the
    /// new component could no longer read the actor's history.
    pub not_redecidable: u64,
    /// Actors with an event the new component cannot apply.
    pub unreadable_actors: u64,
}

/// An event as the report shows it: its payload as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventView {
    pub name: String,
    pub payload: serde_json::Value,
}

/// What the new component made of a recorded command.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Decision {
    Accepted { events: Vec<EventView> },
    Rejected { code: String, message: String },
    Fault { cause: String },
}

/// A recorded command the new component decides otherwise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Divergence {
    pub aggregate: String,
    pub id: String,
    /// The version of the command's first event.
    pub version: u64,
    pub command_id: String,
    pub command: String,
    pub payload: serde_json::Value,
    pub stored: Vec<EventView>,
    pub new: Decision,
}

/// The first event of an actor the new component cannot apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    pub aggregate: String,
    pub id: String,
    pub version: u64,
    pub cause: String,
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyReport {
    /// SHA-256 of the component verified.
    pub component_hash: String,
    pub aggregates: BTreeMap<String, AggregateCounts>,
    /// The first divergences, in full.
    pub divergences: Vec<Divergence>,
    /// The first unreadable actors, each at its first unreadable event.
    pub unreadable: Vec<Unreadable>,
    pub elapsed_ms: u64,
    pub events_per_s: u64,
    pub commands_per_s: u64,
    /// What changed from an older component's model, when one is given
    /// (`verify --against old.wasm`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_changes: Option<crate::model::ModelDiff>,
}

impl VerifyReport {
    /// The totals over every aggregate.
    pub fn totals(&self) -> AggregateCounts {
        let mut t = AggregateCounts::default();
        for c in self.aggregates.values() {
            t.actors += c.actors;
            t.events += c.events;
            t.identical += c.identical;
            t.divergent += c.divergent;
            t.not_redecidable += c.not_redecidable;
            t.unreadable_actors += c.unreadable_actors;
        }
        t
    }

    /// No divergence and every event readable: safe to deploy, as far as
    /// the history tells.
    pub fn is_clean(&self) -> bool {
        let t = self.totals();
        t.divergent == 0 && t.unreadable_actors == 0
    }
}

/// Why a verification could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cannot create a VM of the new component for {actor}: {fault}")]
    Instantiate { actor: ActorId, fault: GuestFault },
}

/// Verifies `component` against the history in `store`. See the [module docs](self).
///
/// # Errors
///
/// [`VerifyError::Store`] if the store cannot list or read (a corrupt event
/// is not an error: it is reported as unreadable), [`VerifyError::Instantiate`]
/// if no VM can be made.
pub async fn verify(
    component: &DomainComponent,
    store: &dyn EventStore,
    config: &VerifyConfig,
) -> Result<VerifyReport, VerifyError> {
    let started = Instant::now();
    let mut report = VerifyReport {
        component_hash: component.hash().to_string(),
        aggregates: BTreeMap::new(),
        divergences: Vec::new(),
        unreadable: Vec::new(),
        elapsed_ms: 0,
        events_per_s: 0,
        commands_per_s: 0,
        model_changes: None,
    };
    let actors = selected_actors(store, config).await?;
    let mut last_report = started;
    for (done, actor) in actors.iter().enumerate() {
        let counts = report.aggregates.entry(actor.aggregate.clone()).or_default();
        counts.actors += 1;
        let mut walk = Walk { component, store, config, actor, report: &mut report };
        walk.run().await?;
        // A long run is never silent: where it is, every few seconds.
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            let events = report.totals().events;
            tracing::info!(actors = done + 1, of = actors.len(), events, "verifying");
        }
    }
    let elapsed = started.elapsed();
    let totals = report.totals();
    let per_s = |n: u64| (n as f64 / elapsed.as_secs_f64().max(1e-9)) as u64;
    report.elapsed_ms = elapsed.as_millis() as u64;
    report.events_per_s = per_s(totals.events);
    report.commands_per_s = per_s(totals.identical + totals.divergent);
    Ok(report)
}

/// The actors the configuration selects, in the store's order.
async fn selected_actors(store: &dyn EventStore, config: &VerifyConfig) -> Result<Vec<ActorId>, StoreError> {
    let mut actors = match &config.actors {
        Some(listed) => {
            let mut actors = Vec::new();
            for entry in listed {
                let actor = match (entry.split_once('/'), &config.aggregate) {
                    (_, Some(aggregate)) => ActorId::new(aggregate.clone(), entry.clone()),
                    (Some((aggregate, id)), None) => ActorId::new(aggregate, id),
                    (None, None) => {
                        let reason = format!("`{entry}` names no aggregate: give Aggregate/id, or --aggregate");
                        return Err(StoreError::Invalid { actor: ActorId::new("", entry.clone()), reason });
                    }
                };
                actors.push(actor);
            }
            actors
        }
        None => store.actors(config.aggregate.as_deref()).await?,
    };
    if let Some(limit) = config.limit {
        actors.truncate(limit);
    }
    Ok(actors)
}

/// One actor's verification.
struct Walk<'a> {
    component: &'a DomainComponent,
    store: &'a dyn EventStore,
    config: &'a VerifyConfig,
    actor: &'a ActorId,
    report: &'a mut VerifyReport,
}

impl Walk<'_> {
    fn counts(&mut self) -> &mut AggregateCounts {
        self.report.aggregates.get_mut(&self.actor.aggregate).expect("entered before the walk")
    }

    async fn run(&mut self) -> Result<(), VerifyError> {
        let mut reader = Some(self.vm()?);
        let mut decider = Some(self.vm()?);
        let mut rebuilds = 0;
        let mut after = 0;
        // Events read but not yet walked: a store may cut a read inside a
        // command, and a command is decided with all of its events, so the
        // last command of a read waits for the next one.
        let mut pending: Vec<RecordedEvent> = Vec::new();
        loop {
            let read = match self.store.read(self.actor, after, self.config.replay_batch.max(1)).await {
                Ok(read) => read,
                Err(StoreError::Corrupt { version, cause, .. }) => {
                    self.unreadable(version, format!("the store cannot read it: {cause}"));
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            let done = read.is_empty();
            after = read.last().map_or(after, |e| e.version);
            pending.extend(read);
            let cut = match pending.last() {
                None => return Ok(()),
                Some(_) if done => pending.len(),
                Some(last) => {
                    let id = &last.provenance.command_id;
                    pending.len() - pending.iter().rev().take_while(|e| e.provenance.command_id == *id).count()
                }
            };
            if cut == 0 {
                continue;
            }
            let batch: Vec<RecordedEvent> = pending.drain(..cut).collect();
            let last_version = batch[batch.len() - 1].version;
            self.counts().events += batch.len() as u64;
            if let Some(vm) = &mut reader
                && let Err((index, fault)) = vm.apply(&batch)
            {
                reader = None;
                let version = match index {
                    Some(i) => batch[i].version,
                    // A trap cannot say which event of the batch caused it.
                    None => self.pinpoint(last_version).await?.unwrap_or(batch[0].version),
                };
                self.unreadable(version, fault.to_string());
            }
            for command in commands(&batch) {
                let first = command[0].version;
                let Some(vm) = &mut decider else {
                    self.counts().not_redecidable += 1;
                    continue;
                };
                let Some(recorded) = &command[0].provenance.command else {
                    self.counts().not_redecidable += 1;
                    if vm.apply(command).is_err() {
                        decider = None;
                    }
                    continue;
                };
                let p = &command[0].provenance;
                let ctx = CommandContext {
                    command_id: &p.command_id,
                    correlation_id: &p.correlation_id,
                    causation_id: &p.causation_id,
                    timestamp_ms: p.timestamp_ms,
                    version: first - 1,
                };
                let decided = vm.handle(&ctx, &recorded.name, &recorded.payload);
                let same = matches!(&decided, Ok(HandleResult::Accepted(events))
                    if events.len() == command.len()
                        && events.iter().zip(command).all(|(new, old)| new.name == old.name && new.payload == old.payload));
                if same {
                    vm.confirm();
                    self.counts().identical += 1;
                    continue;
                }
                self.counts().divergent += 1;
                self.divergence(command, decided);
                // The VM folded what the new code decided; the next command
                // is judged against the stored history.
                decider = None;
                if rebuilds < self.config.max_rebuilds {
                    rebuilds += 1;
                    decider = self.replayed(command[command.len() - 1].version).await?;
                }
            }
        }
    }

    /// A VM of the new component bound to the actor. Folds are announced
    /// event by event: a guest whose `apply` reads the clock sees each
    /// event's own time, with no redo to find that out.
    fn vm(&self) -> Result<GuestInstance, VerifyError> {
        let fault = |fault| VerifyError::Instantiate { actor: self.actor.clone(), fault };
        let mut vm = self.component.instantiate().map_err(fault)?;
        vm.announce_folds(true);
        vm.init(&self.actor.aggregate, &self.actor.id).map_err(fault)?;
        Ok(vm)
    }

    /// A VM with the stored events up to `version` applied, `None` if one
    /// of them cannot be (the reader reports which).
    async fn replayed(&self, version: u64) -> Result<Option<GuestInstance>, VerifyError> {
        let mut vm = self.vm()?;
        let mut after = 0;
        while after < version {
            let max = self.config.replay_batch.min((version - after) as usize);
            let mut batch = self.store.read(self.actor, after, max).await?;
            batch.retain(|e| e.version <= version);
            let Some(last) = batch.last() else { break };
            after = last.version;
            if vm.apply(&batch).is_err() {
                return Ok(None);
            }
        }
        Ok(Some(vm))
    }

    /// Replays from the start one event at a time, to name the event a
    /// batch trapped on. Only on the failure path.
    async fn pinpoint(&self, up_to: u64) -> Result<Option<u64>, VerifyError> {
        let mut vm = self.vm()?;
        let mut after = 0;
        while after < up_to {
            let Some(event) = self.store.read(self.actor, after, 1).await?.into_iter().next() else { break };
            if vm.apply(std::slice::from_ref(&event)).is_err() {
                return Ok(Some(event.version));
            }
            after = event.version;
        }
        Ok(None)
    }

    fn unreadable(&mut self, version: u64, cause: String) {
        tracing::debug!(actor = %self.actor, version, %cause, "the new component cannot read an event");
        self.counts().unreadable_actors += 1;
        if self.report.unreadable.len() < self.config.max_reported {
            let (aggregate, id) = (self.actor.aggregate.clone(), self.actor.id.clone());
            self.report.unreadable.push(Unreadable { aggregate, id, version, cause });
        }
    }

    fn divergence(&mut self, command: &[RecordedEvent], decided: Result<HandleResult, GuestFault>) {
        if self.report.divergences.len() >= self.config.max_reported {
            return;
        }
        let provenance = &command[0].provenance;
        let recorded = provenance.command.as_ref().expect("only recorded commands are decided");
        let new = match decided {
            Ok(HandleResult::Accepted(events)) => {
                Decision::Accepted { events: events.iter().map(|e| view(&e.name, &e.payload)).collect() }
            }
            Ok(HandleResult::Rejected { code, message }) => Decision::Rejected { code, message },
            Err(fault) => Decision::Fault { cause: fault.to_string() },
        };
        self.report.divergences.push(Divergence {
            aggregate: self.actor.aggregate.clone(),
            id: self.actor.id.clone(),
            version: command[0].version,
            command_id: provenance.command_id.to_string(),
            command: recorded.name.clone(),
            payload: as_json(&recorded.payload),
            stored: command.iter().map(|e| view(&e.name, &e.payload)).collect(),
            new,
        });
    }
}

/// A batch's events, split into commands (runs of one command id).
fn commands(batch: &[RecordedEvent]) -> impl Iterator<Item = &[RecordedEvent]> {
    batch.chunk_by(|a, b| a.provenance.command_id == b.provenance.command_id)
}

fn view(name: &str, payload: &[u8]) -> EventView {
    EventView { name: name.to_string(), payload: as_json(payload) }
}

/// A MessagePack payload as JSON; one that does not convert shows as its bytes.
fn as_json(payload: &[u8]) -> serde_json::Value {
    if payload.is_empty() {
        return serde_json::Value::Null;
    }
    json::from_msgpack(payload).unwrap_or_else(|_| serde_json::json!({ "msgpack_bytes": payload }))
}
