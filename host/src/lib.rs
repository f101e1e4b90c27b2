//! The Aether host: runs event-sourced actors whose behaviour is a
//! WebAssembly component, one sandboxed VM per actor.
//!
//! Layout:
//! - [`model`]: the EventStorming model a component describes, and its validation.
//! - [`wasm`]: wasmtime engine, component loading, the deterministic sandbox, guest calls.
//! - [`store`]: the [`EventStore`](store::EventStore) trait, in-memory and embedded stores.
//! - [`actor`]: one actor: activation (snapshot + replay), commands, snapshots.
//! - [`runtime`]: the registry of live actors, routing, passivation.
//! - [`testkit`]: given/when/then against a real `.wasm` (feature `testkit`, on by default).
//!
//! # Cargo features
//!
//! - `testkit` (default): the [`testkit`] module for domain authors' tests.

pub mod model;
pub mod store;
pub mod wasm;
