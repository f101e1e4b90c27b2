//! What every benchmark feeds the host: the bank component, its events,
//! commands and a snapshot of about 1 KiB.

use aether_guest::codec;
use aether_host::store::{Provenance, RecordedEvent};
use aether_host::{AetherEngine, DomainComponent, EngineConfig};
use bank::{Account, AccountCommand, AccountEvent};
use std::path::PathBuf;
use std::sync::Arc;

/// The workspace root (the bench crate's parent).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Which build of the bank component to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestProfile {
    /// `--profile guest`, the build the docs recommend for production.
    Guest,
    /// `--release`, as the test kit builds it (shared with the tests, so
    /// usually built already).
    Release,
}

/// Builds the bank example's component (if missing or stale).
///
/// # Errors
///
/// If the build fails; the message carries Cargo's output.
pub fn bank_wasm(profile: GuestProfile) -> anyhow::Result<PathBuf> {
    let crate_dir = root().join("examples/bank");
    if profile == GuestProfile::Release {
        return aether_testkit::build_component(crate_dir).map_err(anyhow::Error::msg);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let target = target.join("aether-guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["build", "--profile", "guest", "--lib", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(crate_dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "building the bank component failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(target.join("wasm32-wasip2/guest/bank.wasm"))
}

/// Loads the bank component on a fresh engine.
///
/// # Errors
///
/// If the engine or the component cannot be created.
pub fn load(wasm: &[u8], config: EngineConfig) -> anyhow::Result<DomainComponent> {
    let engine: Arc<AetherEngine> = AetherEngine::new(config)?;
    Ok(DomainComponent::from_bytes(&engine, wasm)?)
}

/// An account whose MessagePack snapshot is about 1 KiB.
pub fn account_1k() -> Account {
    Account { owner: "o".repeat(1000), balance: 123_456_789, open: true }
}

pub fn snapshot_1k() -> Vec<u8> {
    codec::encode_named(&account_1k())
}

/// An account's history: opened, then deposits and withdrawals in turn
/// (the balance never goes negative).
pub fn account_events(count: usize) -> Vec<AccountEvent> {
    (0..count)
        .map(|i| match i {
            0 => AccountEvent::Opened { owner: "ada lovelace".into() },
            i if i % 2 == 1 => AccountEvent::Deposited { amount: 2 + (i as u64 % 1000) },
            _ => AccountEvent::Withdrawn { amount: 1 },
        })
        .collect()
}

/// The same history as stored events, as the host hands them to `apply`.
pub fn recorded(events: &[AccountEvent]) -> Vec<RecordedEvent> {
    let provenance = Arc::new(Provenance {
        command_id: uuid::Uuid::new_v4().to_string().into(),
        correlation_id: uuid::Uuid::new_v4().to_string().into(),
        causation_id: uuid::Uuid::new_v4().to_string().into(),
        timestamp_ms: 1_700_000_000_000,
        component_hash: "0".repeat(64).into(),
        command: None,
    });
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let (name, payload) = codec::split(e).expect("bank events serialise");
            RecordedEvent { version: i as u64 + 1, name, payload, provenance: provenance.clone() }
        })
        .collect()
}

/// A command as name and MessagePack payload.
pub fn command(command: &AccountCommand) -> (String, Vec<u8>) {
    codec::split(command).expect("bank commands serialise")
}
