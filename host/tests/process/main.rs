//! The real `aether-host` binary, driven as users drive it: `check`, `load`
//! on a real component with `--listen 127.0.0.1:0`, every HTTP route, the
//! client subcommands, Ctrl-C and SIGKILL.
//!
//! Here rather than in `tests/` because Cargo only hands a package's own
//! tests the path of its binaries.

mod board;
mod chaos;
mod cli;
mod cluster;
mod flows;
mod harness;
mod http;
mod lifecycle;
mod nats;
mod netns;
mod openapi;
mod otlp;
mod secure;
mod support;
mod upgrade;
mod verify;
