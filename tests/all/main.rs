//! End-to-end tests: real components built from `examples/` and
//! `tests/guests/`, loaded by the real host on the in-memory store.
//! One binary, one module per area.

mod api;
mod faults;
mod loading;
mod runtime;
mod sandbox;
mod support;
