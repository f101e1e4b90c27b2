//! How commands and events cross the boundary: a name and a MessagePack
//! payload, and the packed batches `apply` takes.
//!
//! The `aether-codec` crate, re-exported: the host encodes with the same
//! code, so the two sides of the contract cannot drift apart.

pub use aether_codec::*;
