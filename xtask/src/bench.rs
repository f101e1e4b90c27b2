//! `cargo xtask bench [--smoke] [--only PHASE,…]`: builds and runs the
//! benchmark suite (`bench/`), which prints a table and writes
//! `target/bench/summary.json`. `docs/performance.md` explains the figures.
//!
//! The benchmarks are built in the dev profile, whose dependencies the tests
//! already compiled at `opt-level = 2`, with three overrides given on the
//! command line (so they change nobody else's build): the workspace crates on
//! the hot path optimised too, and wasmtime without debug assertions (they
//! re-check every type on every call into a guest and triple the cost of
//! replay). The first run compiles wasmtime once more (~4 minutes on two
//! cores); later runs reuse it.

use crate::{cargo, install_nats, root, status};

/// `--config` overrides of the dev profile for the benchmark build.
const PROFILE: &[&str] = &[
    "profile.dev.package.wasmtime.debug-assertions=false",
    "profile.dev.package.wasmtime.overflow-checks=false",
    "profile.dev.package.aether-host.opt-level=2",
    "profile.dev.package.aether-guest.opt-level=2",
    "profile.dev.package.bank.opt-level=2",
    "profile.dev.package.aether-bench.opt-level=2",
];

pub fn run(args: &[String]) -> anyhow::Result<()> {
    crate::ensure_wasm_target()?;
    let mut run = cargo();
    run.current_dir(root()).args(["run", "--quiet", "--package", "aether-bench", "--bin", "aether-bench"]);
    for setting in PROFILE {
        run.args(["--config", setting]);
    }
    match install_nats() {
        Ok(nats) => {
            run.env("AETHER_NATS_SERVER", nats);
        }
        Err(e) => eprintln!("xtask: no nats-server ({e:#}); the JetStream figures are skipped"),
    }
    run.arg("--").args(args);
    if !args.iter().any(|a| a == "--out") {
        run.arg("--out").arg(root().join("target/bench/summary.json"));
    }
    status(&mut run)
}
