//! The real `aether-host` binary. (Here rather than in `tests/` because
//! Cargo only hands a package's own tests the path of its binaries.)

use std::path::PathBuf;
use std::process::Command;

mod support {
    pub fn component(crate_dir: &str) -> std::path::PathBuf {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        aether_host::testkit::build_component(root.join(crate_dir)).unwrap_or_else(|e| panic!("{e}"))
    }
}

fn aether_host() -> Command {
    Command::new(env!("CARGO_BIN_EXE_aether-host"))
}

#[test]
fn check_prints_the_model_of_a_real_component() {
    let out = aether_host().arg("check").arg(support::component("examples/bank")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("domain `bank`"), "{stdout}");
    assert!(stdout.contains("commands: Open, Deposit, Withdraw, Close"), "{stdout}");
    let json = aether_host().arg("check").arg("--json").arg(support::component("examples/shop")).output().unwrap();
    let model: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(model["name"], "shop");
}

#[test]
fn check_refuses_a_bad_file_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("not.wasm");
    std::fs::write(&path, b"hello").unwrap();
    let out = aether_host().arg("check").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("aether-host: ") && stderr.contains("not a WebAssembly file"), "{stderr}");
}
