//! Everything wasmtime: the engine, loading and validating components, the
//! deterministic sandbox each actor runs in, and calls into a guest.
//!
//! Layout:
//! - `bindings`: generated from `wit/` (private).
//! - [`engine`]: one wasmtime engine for many small instances.
//! - [`sandbox`]: the imports an instance gets (deterministic WASI, logging).
//! - [`component`]: a loaded, validated domain component.
//! - [`instance`]: one actor's VM and the calls into it.
//! - [`policy`]: a VM serving one policy; what it sends, checked against the model.
//! - [`read_model`]: a VM serving one read model: row keys and folds.

mod bindings;
pub mod component;
pub mod engine;
pub mod instance;
pub mod policy;
pub mod read_model;
pub mod sandbox;

pub use component::{DomainComponent, LoadError};
pub use engine::{AetherEngine, EngineConfig, MemoryLayout, Placement};
pub use instance::{CommandContext, GuestFault, GuestInstance, HandleResult, RefusalKind};
pub use policy::{CommandToSend, LoggedEvent, PolicyInput, PolicyVm, Reaction, RejectedCommand};
pub use read_model::{ReadModelVm, RowKeys};
