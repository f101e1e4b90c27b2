//! The Aether host: runs event-sourced actors whose behaviour is a
//! WebAssembly component, one sandboxed VM per actor.
//!
//! Layout:
//! - [`model`]: the EventStorming model a component describes, and its validation.
//! - [`board`]: the model drawn as an EventStorming board (SVG, or an HTML page).
//! - [`wasm`]: the wasmtime engine, loaded components, and the VMs an embedder may
//!   hold ([`Replica`], policy and read-model VMs); the sandbox and the actor's own VM stay inside.
//! - [`store`]: the [`EventStore`] trait; in-memory, embedded and JetStream stores.
//! - [`actor`]: one actor: activation (snapshot + replay), commands, snapshots.
//! - [`runtime`]: the registry of live actors, routing, passivation; typed commands
//!   ([`Runtime::execute_typed`]) beside raw ones.
//! - [`admission`]: bounds on activations and time travel; overload is `503`, not a queue.
//! - [`bus`]: stored events published in process and on NATS.
//! - [`cluster`]: membership, leader, shard map and handoff as an I/O-free state machine.
//! - [`metrics`]: counters and latency histograms, rendered for Prometheus.
//! - [`api`]: the front doors, HTTP and NATS (JSON in and out), and their clients.
//! - [`upgrade`]: a new component swapped into a running host, and which snapshots it trusts.
//! - [`verify`]: a new component against stored history: replay and re-decide every recorded command.
//!
//! Configs are values: `XxxConfig::default()` with `with_*` setters. Public
//! configs and errors are `#[non_exhaustive]`, so fields and variants can be
//! added without breaking an embedder. To test a domain component against
//! this host, use the `aether-testkit` crate.
//!
//! # Cargo features
//!
//! - `cli` (default): the `aether-host` binary's own dependencies (clap,
//!   mimalloc, tracing-subscriber, the OTLP exporter); the library needs none
//!   of them. Depend on `aether-host` with `default-features = false`.
//! - `fuzzing`: a hidden `fuzz` module with one entry per decoder of outside
//!   bytes, for the fuzz targets in `fuzz/` (see `docs/fuzzing.md`); not API.

pub mod actor;
pub mod admission;
pub mod api;
pub mod board;
pub mod bus;
pub mod cluster;
pub mod flow;
mod fnv;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
pub mod metrics;
pub mod model;
pub mod names;
pub mod runtime;
mod setters;
pub mod store;
#[cfg(test)]
mod testkit;
mod typed;
pub mod upgrade;
pub mod verify;
pub mod wasm;

pub use actor::{ActorConfig, ActorError, CommandOutcome};
pub use admission::AdmissionConfig;
pub use runtime::{CommandRequest, Runtime, RuntimeConfig};
pub use store::{ActorId, EventStore, MemoryStore};
pub use typed::{Decided, TypedError};
pub use wasm::{AetherEngine, DomainComponent, EngineConfig, GuestFault, LoadError, Replica};
