//! Live upgrades: a running host takes a new component without a restart.
//!
//! The runtime holds its component as a [`Deployment`] behind an
//! `ArcSwap`: each command reads it once, after taking its actor's lock,
//! and keeps it to the end, so a command in flight finishes on the code it
//! started with while the next one sees the new component. An actor whose
//! VM runs another component than the current one drops that VM at its next
//! command and is rebuilt: from its snapshot if the new component trusts
//! it, else by replaying its events.
//!
//! Snapshots are the old code's state. A component restores a snapshot
//! written under another component only if the models say they are
//! compatible ([`snapshot_compatible`]): the aggregate's state schema is the
//! same and every event the old model declared is declared alike. The
//! runtime knows the models of the components it has run in this process;
//! a snapshot written by any other component (before a restart, by another
//! node) is not trusted and the actor replays. A change of how `apply`
//! folds that keeps every schema is invisible to the model: give the state
//! schema a change (or check with `aether-host verify`) when it matters.
//!
//! Before it is swapped in, a component is checked ([`check`]): the same
//! domain (its name is in every NATS name and stream), and neither an
//! aggregate nor an event removed, since stored events of a removed type
//! could no longer be replayed, unless the upgrade is forced (a rollback to
//! a component that lacks an event the newer one added, once `verify` says
//! no such event is stored). What changed is reported as `verify --against`
//! reports it ([`ModelDiff`]).

use crate::api::ErrorKind;
use crate::model::{AggregateModel, DomainModel, ModelDiff};
use crate::wasm::{DomainComponent, LoadError};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// The component a runtime runs, with the snapshots it may restore from.
#[derive(Debug)]
pub struct Deployment {
    component: DomainComponent,
    /// Other components' hashes, each with the aggregates whose snapshots
    /// this component restores.
    trusted: HashMap<Arc<str>, BTreeSet<String>>,
}

impl Deployment {
    /// A component that trusts only its own snapshots.
    pub fn new(component: DomainComponent) -> Self {
        Self { component, trusted: HashMap::new() }
    }

    pub fn component(&self) -> &DomainComponent {
        &self.component
    }

    /// Whether a snapshot of `aggregate` written under `component_hash` may
    /// be restored by this component.
    pub fn trusts_snapshot(&self, component_hash: &str, aggregate: &str) -> bool {
        component_hash == &**self.component.hash()
            || self.trusted.get(component_hash).is_some_and(|aggregates| aggregates.contains(aggregate))
    }

    /// The components whose snapshots this one restores, with the aggregates.
    pub fn trusted_snapshots(&self) -> BTreeMap<String, Vec<String>> {
        self.trusted.iter().map(|(hash, aggregates)| (hash.to_string(), aggregates.iter().cloned().collect())).collect()
    }
}

impl std::ops::Deref for Deployment {
    type Target = DomainComponent;

    fn deref(&self) -> &DomainComponent {
        &self.component
    }
}

/// How an upgrade is checked.
#[derive(Debug, Clone, Default)]
pub struct UpgradeOptions {
    /// Swap in a component that removes aggregates or events.
    pub force: bool,
}

/// What an upgrade did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpgradeReport {
    pub domain: String,
    /// SHA-256 of the component that ran before.
    pub previous: String,
    /// SHA-256 of the component that runs now.
    pub current: String,
    /// False when the component was already running (nothing was done).
    pub changed: bool,
    /// From the previous model to the current one.
    pub model_changes: ModelDiff,
    /// Components whose snapshots the current one restores, with the
    /// aggregates; every other snapshot is replayed over.
    pub trusted_snapshots: BTreeMap<String, Vec<String>>,
}

/// Why a component is not swapped in; the old one keeps serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// It does not load: not a component, another contract, a failing
    /// `describe()`, an invalid model.
    #[error("the new component does not load: {0}")]
    Load(#[from] LoadError),
    #[error("the new component is of domain `{new}`, this host runs `{running}`; a host serves one domain")]
    OtherDomain { running: String, new: String },
    #[error(
        "the new component no longer declares {}: stored events of those types could not be replayed; \
         check the history with `aether-host verify`, then force the upgrade if none is stored",
        .removed.join(", ")
    )]
    Removes { removed: Vec<String> },
}

impl UpgradeError {
    /// A stable name for the kind of error, as the API answers it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Load(_) => ErrorKind::BadComponent,
            Self::OtherDomain { .. } => ErrorKind::OtherDomain,
            Self::Removes { .. } => ErrorKind::IncompatibleComponent,
        }
    }
}

/// Checks `new` may replace `running` and says what changes.
///
/// # Errors
///
/// [`UpgradeError::OtherDomain`]; [`UpgradeError::Removes`] if `new`
/// removes an aggregate or an event and the upgrade is not forced.
pub fn check(running: &DomainModel, new: &DomainModel, options: &UpgradeOptions) -> Result<ModelDiff, UpgradeError> {
    if running.name != new.name {
        return Err(UpgradeError::OtherDomain { running: running.name.clone(), new: new.name.clone() });
    }
    let diff = ModelDiff::between(running, new);
    let mut removed: Vec<String> = diff.aggregates_removed.iter().map(|a| format!("aggregate `{a}`")).collect();
    for (aggregate, changes) in &diff.aggregates {
        removed.extend(changes.events_removed.iter().map(|e| format!("event `{aggregate}.{e}`")));
    }
    if !removed.is_empty() && !options.force {
        return Err(UpgradeError::Removes { removed });
    }
    Ok(diff)
}

/// Whether a snapshot of `old`'s state can be restored by code with the
/// model `new`: the same state schema, and every event of `old` declared
/// by `new` with the same payload schema (events `new` adds do not matter:
/// the snapshot holds none of them).
pub fn snapshot_compatible(old: &AggregateModel, new: &AggregateModel) -> bool {
    old.name == new.name
        && old.state_schema == new.state_schema
        && old.events.iter().all(|e| new.events.iter().any(|n| n.name == e.name && n.schema == e.schema))
}

/// The models of the components a runtime has run, newest last: what a new
/// component's snapshot trust is computed from.
#[derive(Debug, Default)]
pub(crate) struct History {
    models: Vec<(Arc<str>, DomainModel)>,
}

impl History {
    pub(crate) fn remember(&mut self, component: &DomainComponent) {
        let hash = component.hash();
        if !self.models.iter().any(|(h, _)| h == hash) {
            self.models.push((hash.clone(), component.model().clone()));
        }
    }

    /// `component` as a deployment trusting every snapshot the models say it can restore.
    pub(crate) fn deploy(&self, component: DomainComponent) -> Deployment {
        let mut trusted: HashMap<Arc<str>, BTreeSet<String>> = HashMap::new();
        for (hash, model) in &self.models {
            if hash == component.hash() {
                continue;
            }
            for old in &model.aggregates {
                if component.model().aggregate(&old.name).is_some_and(|new| snapshot_compatible(old, new)) {
                    trusted.entry(hash.clone()).or_default().insert(old.name.clone());
                }
            }
        }
        Deployment { component, trusted }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MessageModel;

    fn msg(name: &str) -> MessageModel {
        MessageModel { name: name.into(), schema: serde_json::json!({"type": "object"}) }
    }

    fn model(events: &[&str]) -> DomainModel {
        DomainModel {
            name: "bank".into(),
            sdk_version: "0.1.0".into(),
            aggregates: vec![AggregateModel {
                name: "Account".into(),
                commands: vec![msg("Open")],
                events: events.iter().map(|e| msg(e)).collect(),
                state_schema: serde_json::json!({"type": "object"}),
            }],
            policies: vec![],
            read_models: vec![],
        }
    }

    #[test]
    fn removing_an_event_is_refused_unless_forced() {
        let v1 = model(&["Opened", "Withdrawn"]);
        let renamed = model(&["Opened", "MoneyWithdrawn"]);
        let err = check(&v1, &renamed, &UpgradeOptions::default()).unwrap_err();
        assert!(err.to_string().contains("event `Account.Withdrawn`"), "{err}");
        assert_eq!(err.kind(), ErrorKind::IncompatibleComponent);
        let diff = check(&v1, &renamed, &UpgradeOptions { force: true }).unwrap();
        assert_eq!(diff.aggregates["Account"].events_added, ["MoneyWithdrawn"]);
        // Adding an event removes nothing.
        assert!(check(&v1, &model(&["Opened", "Withdrawn", "FeeCharged"]), &UpgradeOptions::default()).is_ok());
    }

    #[test]
    fn another_domain_is_refused_even_forced() {
        let mut shop = model(&["Opened"]);
        shop.name = "shop".into();
        let err = check(&model(&["Opened"]), &shop, &UpgradeOptions { force: true }).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::OtherDomain);
    }

    #[test]
    fn snapshots_are_compatible_only_with_the_same_state_and_events() {
        let v1 = &model(&["Opened", "Withdrawn"]).aggregates[0];
        assert!(snapshot_compatible(v1, &model(&["Opened", "Withdrawn", "FeeCharged"]).aggregates[0]));
        assert!(!snapshot_compatible(v1, &model(&["Opened", "MoneyWithdrawn"]).aggregates[0]));
        let mut reshaped = model(&["Opened", "Withdrawn"]);
        reshaped.aggregates[0].state_schema = serde_json::json!({"type": "array"});
        assert!(!snapshot_compatible(v1, &reshaped.aggregates[0]));
        let mut event_reshaped = model(&["Opened", "Withdrawn"]);
        event_reshaped.aggregates[0].events[1].schema = serde_json::json!({"type": "integer"});
        assert!(!snapshot_compatible(v1, &event_reshaped.aggregates[0]));
    }
}
