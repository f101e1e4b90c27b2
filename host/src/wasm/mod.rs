//! Everything wasmtime: the engine, loading and validating components, the
//! deterministic sandbox each actor runs in, and calls into a guest.
//!
//! Only the engine, components and the VMs an embedder may hold safely are
//! public (re-exported here); the sandbox and the raw actor VM, whose calls
//! must follow the actor's protocol (decide, append, then confirm), are not.
//!
//! Layout:
//! - `bindings`: generated from `wit/` (private).
//! - `engine`: one wasmtime engine for many small instances.
//! - `sandbox`: the imports an instance gets (deterministic WASI, logging).
//! - `component`: a loaded, validated domain component.
//! - `instance`: one actor's VM and the calls into it (crate-private).
//! - `replica`: an actor's state rebuilt outside the runtime ([`Replica`]).
//! - `policy`: a VM serving one policy; what it sends, checked against the model.
//! - `read_model`: a VM serving one read model: row keys and folds.

mod bindings;
mod component;
mod engine;
mod instance;
mod policy;
mod read_model;
mod replica;
pub(crate) mod sandbox;

pub use component::{DomainComponent, LoadError, contract_version};
pub(crate) use engine::Placement;
pub use engine::{AetherEngine, EngineConfig, MemoryLayout};
pub(crate) use instance::{CommandContext, GuestInstance, HandleResult};
pub use instance::{GuestFault, RefusalKind};
pub use policy::{CommandToSend, LoggedEvent, PolicyInput, PolicyVm, Reaction, RejectedCommand};
pub use read_model::{ReadModelVm, RowKeys};
pub use replica::Replica;
