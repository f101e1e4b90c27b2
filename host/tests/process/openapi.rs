//! `GET /openapi.json` probed by a stranger: schemathesis (PyPI) reads the
//! document a real host serves and throws generated requests, valid and
//! not, at every operation it lists. It must find no server error, no
//! answer outside the document (status, content type, headers, schema) and
//! no bad input accepted.
//!
//! schemathesis is `$AETHER_SCHEMATHESIS`, else the one `cargo xtask
//! install-schemathesis` puts in `~/.cache/aether-tools`, else it is
//! installed there now with pip; the test is skipped, loudly, only if
//! python3 has no pip.

use super::support::Host;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

/// What the checks are told beyond their defaults.
const CONFIG: &str = r#"
# A command that fits its schema may still be refused by the domain
# (`422 rejected`, e.g. a deposit to an account never opened): business
# rules, not a schema the host fails to honour.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "404", "409", "422"]
"#;

#[test]
fn schemathesis_finds_nothing_to_complain_about() {
    let Some(schemathesis) = schemathesis() else { return };
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&data.path().join("events"), &[]);
    run(&schemathesis, &host, data.path(), &[]);
}

/// With a token, the document declares it, and every operation but
/// `/healthz` answers `401` without it (the `ignored_auth` check).
#[test]
fn schemathesis_finds_nothing_behind_a_token() {
    let Some(schemathesis) = schemathesis() else { return };
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&data.path().join("events"), &["--http-token", "probe-token"]);
    run(&schemathesis, &host, data.path(), &["-H", "Authorization: Bearer probe-token"]);
}

fn run(schemathesis: &Path, host: &Host, dir: &Path, extra: &[&str]) {
    let config = dir.join("schemathesis.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let started = Instant::now();
    let out = Command::new(schemathesis)
        .arg("--config-file")
        .arg(&config)
        .arg("--no-color")
        .args(["run", &format!("{}/openapi.json", host.url)])
        .args(["--checks", "all", "--mode", "all", "--phases", "examples,coverage,fuzzing,stateful"])
        // Bounded and reproducible: a fixed seed, few examples, one worker
        // (hypothesis's lambda introspection is not thread-safe).
        .args(["--max-examples", "25", "--seed", "20240519", "--workers", "1", "--request-timeout", "10"])
        .args(extra)
        .arg("--report-dir")
        .arg(dir.join("report"))
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("schemathesis ran for {:.1} s", started.elapsed().as_secs_f64());
    assert!(out.status.success(), "schemathesis found problems:\n{stdout}\n{stderr}\nhost log:\n{}", host.stderr());
    // It tested every operation of the document but itself (schemathesis
    // leaves out the route it loaded the document from).
    assert!(stdout.contains("Tested: 25"), "{stdout}");
    assert!(!stdout.contains("ST2") && !stdout.contains("failures"), "{stdout}");
}

/// The schemathesis binary, installed if need be; `None` (after saying so)
/// only when there is no pip to install it with.
fn schemathesis() -> Option<PathBuf> {
    // Once per test binary: both tests would install into the same place.
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND.get_or_init(find_or_install).clone()
}

fn find_or_install() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("AETHER_SCHEMATHESIS") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "AETHER_SCHEMATHESIS={} is not a file", path.display());
        return Some(path);
    }
    let binary = aether_devtools::schemathesis().expect("HOME is set");
    if binary.is_file() {
        return Some(binary);
    }
    let pip = Command::new("python3").args(["-m", "pip", "--version"]).output();
    if !pip.is_ok_and(|out| out.status.success()) {
        eprintln!(
            "\n\n!!! SKIPPED: schemathesis is not installed and python3 has no pip to install it;\n\
             !!! run `cargo xtask install-schemathesis` or set AETHER_SCHEMATHESIS\n\n"
        );
        return None;
    }
    Some(aether_devtools::install_schemathesis().unwrap_or_else(|e| panic!("{e}")))
}
