//! Given/when/then for domain components, against the real `.wasm` on the
//! in-memory store: the guest runs exactly as the host runs it in production.
//!
//! ```no_run
//! # async fn demo() {
//! use aether_testkit::TestKit;
//! # #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)] enum AccountEvent { Opened { owner: String }, Deposited { amount: u64 } }
//! # #[derive(serde::Serialize, serde::Deserialize)] enum AccountCommand { Deposit { amount: u64 } }
//! // Builds the calling crate's component if it is missing or stale, then loads it.
//! let kit = TestKit::for_crate(env!("CARGO_MANIFEST_DIR")).await;
//! kit.given("Account", "a-1", [AccountEvent::Opened { owner: "ada".into() }])
//!     .await
//!     .when(AccountCommand::Deposit { amount: 5 })
//!     .await
//!     .then_expect_events([AccountEvent::Deposited { amount: 5 }]);
//! # }
//! ```
//!
//! Policies and read models too: `kit.policy("TransferSaga").given(..)
//! .await.then_expect_commands(..)` and `kit.read_model("AccountsByOwner")
//! .given(..).await.then_expect_row(..)`; the events are stored, then
//! offered to the guest in one batch, as a runner would.
//!
//! Building uses `cargo build --release --target wasm32-wasip2` in a target
//! directory of its own (next to the test binary's), so it never waits on
//! the lock of the `cargo test` that runs it; Cargo decides what is stale.
//!
//! A domain crate takes this crate as its one dev-dependency: it brings the
//! host's library (`aether-host` without default features), not the
//! binary's command line, allocator, log output or OTLP exporter.
//!
//! # Layout
//!
//! - [`TestKit`]: a component on a fresh in-memory store; [`Given`] /
//!   [`Then`] for aggregates, [`PolicyKit`] and [`ReadModelKit`] for
//!   policies and read models.
//! - [`nats`]: a real `nats-server` (or a cluster of three) on ephemeral
//!   ports, killed on drop.
//! - [`contract`]: the behaviour every `EventStore` must show, as checks a
//!   store's tests run.
//! - [`build_component`]: a domain crate built as a component (`aether-devtools`).

pub mod contract;
pub mod nats;
mod policy;
mod read_model;

pub use policy::PolicyKit;
pub use read_model::ReadModelKit;

use aether_host::runtime::{CommandRequest, Runtime, RuntimeConfig};
use aether_host::store::{ActorId, AppendRequest, EventStore, MemoryStore, NewEvent, Provenance, RecordedEvent};
use aether_host::wasm::{AetherEngine, DomainComponent, EngineConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

pub use aether_devtools::{build_component, guest_target_dir};
/// The answer and the error a command gets, as [`Then::outcome`] gives them.
pub use aether_host::{ActorError, CommandOutcome};

/// A component loaded on a fresh in-memory store.
#[derive(Debug, Clone)]
pub struct TestKit {
    runtime: Runtime,
    store: Arc<MemoryStore>,
}

impl TestKit {
    /// Builds (if needed) and loads the component of the crate at `manifest_dir`.
    ///
    /// # Panics
    ///
    /// If the build or the load fails, with the reason.
    pub async fn for_crate(manifest_dir: &str) -> Self {
        let path = build_component(manifest_dir).unwrap_or_else(|e| panic!("{e}"));
        Self::from_file(&path).await
    }

    /// Loads a built component.
    ///
    /// # Panics
    ///
    /// If the component cannot be loaded, with the reason.
    pub async fn from_file(path: &Path) -> Self {
        Self::with_config(path, EngineConfig::default(), RuntimeConfig::default()).await
    }

    /// Loads a built component with explicit engine and runtime settings.
    ///
    /// # Panics
    ///
    /// If the component cannot be loaded, with the reason.
    pub async fn with_config(path: &Path, engine: EngineConfig, runtime: RuntimeConfig) -> Self {
        let engine = shared_engine(engine);
        let component =
            DomainComponent::from_file(&engine, path).unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()));
        let store = Arc::new(MemoryStore::new());
        let runtime = Runtime::new(component, store.clone(), runtime);
        Self { runtime, store }
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub fn store(&self) -> &Arc<MemoryStore> {
        &self.store
    }

    /// Starts a scenario: these events are already stored for the actor.
    ///
    /// # Panics
    ///
    /// If an event does not serialise as an enum variant.
    pub async fn given<E: Serialize>(
        &self,
        aggregate: &str,
        id: &str,
        events: impl IntoIterator<Item = E>,
    ) -> Given<'_> {
        self.store_events(aggregate, id, events).await;
        Given { kit: self, actor: ActorId::new(aggregate, id) }
    }

    /// Stores events for an actor, after those it has, as if a command had
    /// decided them, and returns them as stored.
    ///
    /// # Panics
    ///
    /// If an event does not serialise as an enum variant.
    pub async fn store_events<E: Serialize>(
        &self,
        aggregate: &str,
        id: &str,
        events: impl IntoIterator<Item = E>,
    ) -> Vec<RecordedEvent> {
        let actor = ActorId::new(aggregate, id);
        let events: Vec<NewEvent> = events
            .into_iter()
            .map(|e| {
                let (name, payload) = aether_guest::codec::split(&e).unwrap_or_else(|err| panic!("given event: {err}"));
                NewEvent { name, payload }
            })
            .collect();
        if events.is_empty() {
            return Vec::new();
        }
        let version = self.store.version(&actor).await.expect("memory store");
        let provenance = Provenance {
            command_id: format!("given-{}", uuid::Uuid::new_v4()).into(),
            correlation_id: "given".into(),
            causation_id: "given".into(),
            timestamp_ms: 0,
            component_hash: self.runtime.component().hash().clone(),
            command: None,
        };
        let count = events.len();
        // A given is minted here, never retried.
        let request = AppendRequest {
            expected_version: version,
            provenance: Arc::new(provenance),
            events,
            id_from_caller: false,
            shard_epoch: None,
        };
        self.store.append(&actor, request).await.expect("memory store append");
        self.store.read(&actor, version, count).await.expect("memory store read")
    }

    /// A policy of the component, driven through the real `.wasm`: given
    /// events, expect commands.
    ///
    /// # Panics
    ///
    /// If the model has no such policy or no VM can be made.
    pub fn policy(&self, name: &str) -> PolicyKit<'_> {
        PolicyKit::new(self, name)
    }

    /// A read model of the component, driven through the real `.wasm`:
    /// given events, expect rows.
    ///
    /// # Panics
    ///
    /// If the model has no such read model or no VM can be made.
    pub fn read_model(&self, name: &str) -> ReadModelKit<'_> {
        ReadModelKit::new(self, name)
    }

    /// Sends a command outside a scenario.
    ///
    /// # Errors
    ///
    /// As [`Runtime::execute`].
    pub async fn send<C: Serialize>(
        &self,
        aggregate: &str,
        id: &str,
        command: &C,
        command_id: Option<&str>,
    ) -> Result<CommandOutcome, ActorError> {
        let (name, payload) = aether_guest::codec::split(command).unwrap_or_else(|e| panic!("command: {e}"));
        self.runtime
            .execute(CommandRequest {
                aggregate: aggregate.into(),
                id: id.into(),
                command: name,
                payload,
                command_id: command_id.map(str::to_string),
                ..CommandRequest::default()
            })
            .await
    }

    /// An actor's state, decoded.
    ///
    /// # Panics
    ///
    /// If the state cannot be read or decoded.
    pub async fn state<S: DeserializeOwned>(&self, aggregate: &str, id: &str) -> S {
        let (_, bytes) = self.runtime.state(aggregate, id).await.unwrap_or_else(|e| panic!("state: {e}"));
        rmp_serde::from_slice(&bytes).unwrap_or_else(|e| panic!("state does not decode: {e}"))
    }
}

/// One engine per process and configuration: engines are heavy (the pool
/// reserves address space) and tests create many kits.
pub(crate) fn shared_engine(config: EngineConfig) -> Arc<AetherEngine> {
    type Engines = Mutex<Vec<(String, Arc<AetherEngine>)>>;
    static ENGINES: OnceLock<Engines> = OnceLock::new();
    let key = format!("{config:?}");
    let mut engines = ENGINES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, engine)) = engines.iter().find(|(k, _)| *k == key) {
        return engine.clone();
    }
    let engine = AetherEngine::new(config).unwrap_or_else(|e| panic!("cannot build the engine: {e:#}"));
    engines.push((key, engine.clone()));
    engine
}

/// An actor with its past events stored.
#[derive(Debug)]
pub struct Given<'a> {
    kit: &'a TestKit,
    actor: ActorId,
}

impl<'a> Given<'a> {
    /// Sends a command to the actor through the real component.
    pub async fn when<C: Serialize>(self, command: C) -> Then<'a> {
        let outcome = self.kit.send(&self.actor.aggregate, &self.actor.id, &command, None).await;
        Then { kit: self.kit, actor: self.actor, outcome }
    }
}

/// The outcome of a command, to assert on.
#[derive(Debug)]
pub struct Then<'a> {
    kit: &'a TestKit,
    actor: ActorId,
    outcome: Result<CommandOutcome, ActorError>,
}

impl Then<'_> {
    /// Asserts the command was accepted with exactly these events.
    ///
    /// # Panics
    ///
    /// If it was rejected, failed, or produced other events.
    pub fn then_expect_events<E: DeserializeOwned + PartialEq + Debug>(
        self,
        expected: impl IntoIterator<Item = E>,
    ) -> Self {
        let expected: Vec<E> = expected.into_iter().collect();
        match &self.outcome {
            Ok(CommandOutcome::Accepted { events, .. }) => {
                let actual: Vec<E> = decode_events(events);
                assert_eq!(actual, expected, "{}: unexpected events", self.actor);
            }
            other => panic!("{}: expected events {expected:?}, got {other:?}", self.actor),
        }
        self
    }

    /// Asserts the command was rejected with this code.
    ///
    /// # Panics
    ///
    /// If it was accepted, failed, or rejected with another code.
    pub fn then_expect_rejection(self, code: &str) -> Self {
        match &self.outcome {
            Ok(CommandOutcome::Rejected { code: actual, message }) => {
                assert_eq!(actual, code, "{}: rejected with another code ({message})", self.actor);
            }
            other => panic!("{}: expected rejection `{code}`, got {other:?}", self.actor),
        }
        self
    }

    /// Asserts the command failed with an error whose message contains `text`.
    ///
    /// # Panics
    ///
    /// If the command did not fail, or failed otherwise.
    pub fn then_expect_error(self, text: &str) -> Self {
        match &self.outcome {
            Err(e) => assert!(e.to_string().contains(text), "{}: error {e} does not mention {text:?}", self.actor),
            Ok(o) => panic!("{}: expected an error mentioning {text:?}, got {o:?}", self.actor),
        }
        self
    }

    /// The raw outcome.
    pub fn outcome(&self) -> &Result<CommandOutcome, ActorError> {
        &self.outcome
    }

    /// The actor's state after the command, decoded.
    pub async fn state<S: DeserializeOwned>(&self) -> S {
        self.kit.state(&self.actor.aggregate, &self.actor.id).await
    }
}

/// Decodes stored events into the domain's event enum.
///
/// # Panics
///
/// If an event does not decode.
pub fn decode_events<E: DeserializeOwned>(events: &[RecordedEvent]) -> Vec<E> {
    events
        .iter()
        .map(|e| {
            aether_guest::codec::join(&e.name, &e.payload)
                .unwrap_or_else(|err| panic!("event {} ({}) does not decode: {err}", e.version, e.name))
        })
        .collect()
}
