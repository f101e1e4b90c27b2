//! Given/then for a read model against the real `.wasm`: events are
//! stored, offered in one batch (those it consumes, as a runner would):
//! one `keys` call, then one `fold` per key touched, rows kept here.

use super::TestKit;
use aether_host::store::ActorId;
use aether_host::wasm::{GuestFault, LoggedEvent, ReadModelVm};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;

/// A read model in a scenario: its rows (MessagePack, by key), and faults.
#[derive(Debug)]
pub struct ReadModelKit<'a> {
    kit: &'a TestKit,
    vm: ReadModelVm,
    rows: BTreeMap<String, Vec<u8>>,
    faults: Vec<GuestFault>,
}

impl<'a> ReadModelKit<'a> {
    pub(super) fn new(kit: &'a TestKit, name: &str) -> Self {
        let vm = kit.runtime.component().read_model_vm(name).unwrap_or_else(|e| panic!("read model `{name}`: {e}"));
        Self { kit, vm, rows: BTreeMap::new(), faults: Vec::new() }
    }

    /// Stores these events for the actor, then folds those the read model
    /// consumes into its rows: one `keys` call, then one `fold` per key.
    ///
    /// # Panics
    ///
    /// If an event does not serialise as an enum variant.
    pub async fn given<E: Serialize>(mut self, aggregate: &str, id: &str, events: impl IntoIterator<Item = E>) -> Self {
        let stored = self.kit.store_events(aggregate, id, events).await;
        let actor = ActorId::new(aggregate, id);
        let events: Vec<LoggedEvent<'_>> = stored
            .iter()
            .filter(|e| self.vm.model().consumes(aggregate, &e.name))
            .map(|event| LoggedEvent { actor: &actor, event })
            .collect();
        let keys = match self.vm.keys(&events) {
            Ok(keys) => keys,
            Err(fault) => {
                self.faults.push(fault);
                return self;
            }
        };
        // Each key's events, in log order; keys in the order first touched.
        let mut by_key: Vec<(String, Vec<LoggedEvent<'_>>)> = Vec::new();
        for (event, keys) in events.iter().zip(keys) {
            match keys {
                Ok(keys) => {
                    for key in keys {
                        match by_key.iter_mut().find(|(k, _)| *k == key) {
                            Some((_, list)) => list.push(*event),
                            None => by_key.push((key, vec![*event])),
                        }
                    }
                }
                Err(fault) => self.faults.push(fault),
            }
        }
        for (key, events) in by_key {
            match self.vm.fold(&key, self.rows.get(&key).map(Vec::as_slice), &events) {
                Ok(Some(row)) => {
                    self.rows.insert(key, row);
                }
                Ok(None) => {
                    self.rows.remove(&key);
                }
                Err((_, fault)) => self.faults.push(fault),
            }
        }
        self
    }

    /// Asserts the row under `key` (`None`: no row), and that nothing faulted.
    ///
    /// # Panics
    ///
    /// If the row differs or does not decode, or something faulted.
    pub fn then_expect_row<R: DeserializeOwned + PartialEq + Debug>(self, key: &str, expected: Option<R>) -> Self {
        assert!(self.faults.is_empty(), "read model `{}` faulted: {:?}", self.vm.model().name, self.faults);
        assert_eq!(self.row::<R>(key), expected, "read model `{}`: unexpected row `{key}`", self.vm.model().name);
        self
    }

    /// Asserts the read model holds exactly these rows, and nothing faulted.
    ///
    /// # Panics
    ///
    /// If there are other rows, a row differs or does not decode, or something faulted.
    pub fn then_expect_rows<R: DeserializeOwned + PartialEq + Debug>(
        self,
        expected: impl IntoIterator<Item = (impl Into<String>, R)>,
    ) -> Self {
        let name = &self.vm.model().name;
        assert!(self.faults.is_empty(), "read model `{name}` faulted: {:?}", self.faults);
        let expected: BTreeMap<String, R> = expected.into_iter().map(|(k, r)| (k.into(), r)).collect();
        let rows: BTreeMap<String, R> = self.rows.keys().filter_map(|k| Some((k.clone(), self.row(k)?))).collect();
        assert_eq!(rows, expected, "read model `{name}`: unexpected rows");
        self
    }

    /// Asserts something faulted with an error whose message contains `text`.
    ///
    /// # Panics
    ///
    /// If nothing did.
    pub fn then_expect_fault(self, text: &str) -> Self {
        assert!(
            self.faults.iter().any(|f| f.to_string().contains(text)),
            "read model `{}`: no fault mentions {text:?}; faults: {:?}",
            self.vm.model().name,
            self.faults
        );
        self
    }

    /// The row under `key`, decoded.
    ///
    /// # Panics
    ///
    /// If it does not decode as `R`.
    pub fn row<R: DeserializeOwned>(&self, key: &str) -> Option<R> {
        self.rows.get(key).map(|bytes| {
            rmp_serde::from_slice(bytes).unwrap_or_else(|e| panic!("the row `{key}` does not decode: {e}"))
        })
    }

    /// The rows, MessagePack, by key.
    pub fn rows(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.rows
    }
}
