//! Calls into a guest's read models: a VM that serves one read model.
//!
//! The rows live in the host; the guest only says which rows an event
//! touches (`keys`) and folds events into a row it is handed (`fold`).

use super::instance::{GuestFault, GuestInstance, refused};
use super::policy::{LoggedEvent, stored_event};
use crate::actor::msgpack::check_one_value;
use crate::model::ReadModelModel;

/// A VM serving one read model. Read models are stateless: after a fault,
/// drop it and make another.
#[derive(Debug)]
pub struct ReadModelVm {
    vm: GuestInstance,
    read_model: ReadModelModel,
}

/// The keys of the rows one event touches, or the fault of that event alone.
pub type RowKeys = Result<Vec<String>, GuestFault>;

impl ReadModelVm {
    pub(super) fn new(mut vm: GuestInstance, read_model: ReadModelModel) -> Self {
        vm.seed_for(&format!("read-model/{}", read_model.name));
        Self { vm, read_model }
    }

    /// The read model as the model declares it.
    pub fn model(&self) -> &ReadModelModel {
        &self.read_model
    }

    /// The VM, to place it or to have every event announced (as for an actor).
    #[allow(dead_code)] // for the runners that host policies and read models
    pub(crate) fn vm(&mut self) -> &mut GuestInstance {
        &mut self.vm
    }

    /// The keys of the rows each event touches, one entry per event, in one call.
    ///
    /// # Errors
    ///
    /// A fault of the whole call (a trap, a timeout, a refused read model,
    /// a count other than the events').
    pub fn keys(&mut self, events: &[LoggedEvent<'_>]) -> Result<Vec<RowKeys>, GuestFault> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let wit_events: Vec<_> = events.iter().map(stored_event).collect();
        let stored = events.iter().map(|e| (e.event.provenance.timestamp_ms, e.event.version));
        let name = self.read_model.name.as_str();
        let out = self.vm.call_with(
            "keys",
            |sandbox| sandbox.prepare_replay(stored),
            |b, s| b.aether_domain_read_model().call_keys(s, name, &wit_events),
        )?;
        let keys = out.map_err(|e| refused("keys", e))?;
        if keys.len() != events.len() {
            return Err(GuestFault::InvalidOutput {
                call: "keys",
                reason: format!("{} key lists for {} events", keys.len(), events.len()),
            });
        }
        Ok(keys.into_iter().map(|k| k.map_err(|e| refused("keys", e))).collect())
    }

    /// Folds events, in order, into the row under `key` (`None`: no row
    /// yet), in one call. Returns the new row, MessagePack (`None`: delete it).
    ///
    /// # Errors
    ///
    /// The fault, and the index in `events` of the event that caused it
    /// when the guest could tell.
    pub fn fold(
        &mut self,
        key: &str,
        row: Option<&[u8]>,
        events: &[LoggedEvent<'_>],
    ) -> Result<Option<Vec<u8>>, (Option<usize>, GuestFault)> {
        let wit_events: Vec<_> = events.iter().map(stored_event).collect();
        let stored = events.iter().map(|e| (e.event.provenance.timestamp_ms, e.event.version));
        let name = self.read_model.name.as_str();
        let out = self
            .vm
            .call_with(
                "fold",
                |sandbox| sandbox.prepare_replay(stored),
                |b, s| b.aether_domain_read_model().call_fold(s, name, key, row, &wit_events),
            )
            .map_err(|fault| (None, fault))?;
        let row = out.map_err(|e| (Some(e.index as usize), refused("fold", e.error)))?;
        if let Some(bytes) = &row {
            check_one_value(bytes).map_err(|m| {
                let reason = format!("read model `{}` folded the row `{key}` into a value that is {m}", name);
                (None, GuestFault::InvalidOutput { call: "fold", reason })
            })?;
        }
        Ok(row)
    }
}
