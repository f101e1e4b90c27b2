//! End-to-end tests: real components built from `examples/` and
//! `tests/guests/`, loaded by the real host on the in-memory store.
//! One binary, one module per area.

mod admission;
mod api;
mod cluster;
mod faults;
mod flows;
mod jetstream;
mod loading;
mod nats_api;
mod nats_cluster;
mod policies;
mod runtime;
mod sandbox;
mod support;
mod upgrade;
mod verify;
