//! Write event-sourced domain behaviour for the [Aether] host.
//!
//! A domain is a set of *aggregates*, with *policies* and *read models*.
//! Each aggregate is a plain Rust type that decides commands (`handle`) and
//! folds events into its state (`apply`); a policy turns events into
//! commands; a read model folds events into rows the host keeps.
//! Commands and events are ordinary serde enums. One macro, [`domain!`],
//! exports the aggregates as a WebAssembly component (`wasm32-wasip2`) that
//! the host loads, and describes them as an EventStorming model the host
//! reads at load time.
//!
//! The host keeps one sandboxed instance per actor (one aggregate id), rebuilds
//! it by replaying stored events through `apply`, calls `handle` for each
//! command and appends the events it returns; the state that folds them is
//! kept only once they are durable (a failed append discards the instance,
//! which is rebuilt from the store). Guests are
//! deterministic: they see the command's recorded time and no ambient
//! authority (no files, network, environment or real randomness).
//!
//! # Example
//!
//! ```
//! use aether_guest::{Aggregate, Context, JsonSchema, Rejection};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
//! pub struct Counter {
//!     value: u64,
//! }
//!
//! #[derive(Debug, Serialize, Deserialize, JsonSchema)]
//! pub enum CounterCommand {
//!     Increment { by: u64 },
//!     Reset,
//! }
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
//! pub enum CounterEvent {
//!     Incremented { by: u64 },
//!     WasReset,
//! }
//!
//! impl Aggregate for Counter {
//!     const NAME: &'static str = "Counter";
//!     type Command = CounterCommand;
//!     type Event = CounterEvent;
//!
//!     fn handle(&self, _ctx: &Context, command: CounterCommand) -> Result<Vec<CounterEvent>, Rejection> {
//!         match command {
//!             CounterCommand::Increment { by: 0 } => Err(Rejection::new("zero", "increment by at least 1")),
//!             CounterCommand::Increment { by } => Ok(vec![CounterEvent::Incremented { by }]),
//!             CounterCommand::Reset => Ok(vec![CounterEvent::WasReset]),
//!         }
//!     }
//!
//!     fn apply(&mut self, event: &CounterEvent) {
//!         match event {
//!             CounterEvent::Incremented { by } => self.value += by,
//!             CounterEvent::WasReset => self.value = 0,
//!         }
//!     }
//! }
//!
//! // Exports the component (on wasm32) and a native `describe()` (everywhere).
//! aether_guest::domain!(name: "counting", aggregates: [Counter]);
//!
//! // Native given/when/then, no wasm needed:
//! use aether_guest::testing::given;
//! given::<Counter>([CounterEvent::Incremented { by: 2 }])
//!     .when(CounterCommand::Increment { by: 3 })
//!     .then_expect_events([CounterEvent::Incremented { by: 3 }]);
//! given::<Counter>([])
//!     .when(CounterCommand::Increment { by: 0 })
//!     .then_expect_rejection("zero");
//!
//! let model = describe();
//! assert_eq!(model.aggregates[0].name, "Counter");
//! assert_eq!(model.aggregates[0].commands[0].name, "Increment");
//! ```
//!
//! A domain crate depends on `aether-guest`, `serde` and `schemars` (for the
//! payload schemas in the model) and has `crate-type = ["cdylib", "rlib"]`.
//!
//! Build the component with
//! `cargo build --target wasm32-wasip2 --profile guest` (or `--release`) and
//! load the `.wasm` with `aether-host`. To test it as the host runs it, use
//! `aether_testkit::TestKit` (crate `aether-testkit`) from your crate's
//! dev-dependencies.
//!
//! # Layout
//!
//! - [`Aggregate`], [`Context`], [`Rejection`]: what a domain author implements.
//! - [`Policy`] ("whenever X happened, send Y"; a saga compensates in
//!   [`Policy::rejected`]) and [`ReadModel`] (rows folded from events under
//!   keys it chooses), over sets of messages made by [`messages!`]
//!   ([`Envelope`], [`SendCommand`], [`Rejected`]).
//! - [`domain!`]: exports aggregates, policies and read models as a component.
//! - [`testing`]: native given/when/then (aggregates; policies: given
//!   events, expect commands; read models: given events, expect rows).
//! - [`log`]: logging into the host's `tracing`.
//! - [`model`]: the EventStorming model description.
//!
//! This crate depends on neither wasmtime nor NATS. It has no Cargo features.
//!
//! [Aether]: https://github.com/aether-actors/aether

extern crate self as aether_guest;

mod aggregate;
pub mod codec;
mod dispatch;
mod export;
pub mod log;
mod messages;
pub mod model;
mod policy;
mod read_model;
pub mod testing;

pub use aggregate::{Aggregate, Context, Rejection};
pub use messages::{Envelope, MessagePart, Messages, Rejected, SendCommand};
pub use model::{AggregateModel, DomainModel, MessageModel, PolicyModel, ReadModelModel};
pub use policy::Policy;
pub use read_model::ReadModel;
pub use schemars::JsonSchema;

/// The version of this SDK, recorded in every component's model.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Bindings generated from `wit/`; used by [`domain!`], not by domain authors.
#[doc(hidden)]
#[allow(missing_debug_implementations, unsafe_code, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "domain",
        pub_export_macro: true,
        export_macro_name: "__export_domain_world",
        default_bindings_module: "aether_guest::bindings",
        runtime_path: "aether_guest::__private::wit_bindgen_rt",
    });
}

#[doc(hidden)]
pub mod __private {
    pub use crate::dispatch::*;
    pub use crate::export::*;
    pub use crate::messages::{decode_part, encode_part};
    pub use wit_bindgen::rt as wit_bindgen_rt;
}
