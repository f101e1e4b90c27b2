//! `cargo xtask fuzz [--minutes N | --seconds N] [--target NAME]`: runs the
//! fuzz targets in `fuzz/` (one after another, each for the time given) and
//! prints how long each ran and how many inputs it tried; `ci` runs each for
//! a few seconds. See `docs/fuzzing.md`.
//!
//! cargo-fuzz drives libFuzzer, which needs unstable compiler flags
//! (sanitizers, coverage passes). On a stable toolchain they are allowed
//! with `RUSTC_BOOTSTRAP=1`, set for the fuzz build only. cargo-fuzz itself
//! is installed, pinned, into `~/.cache/aether-tools` when it is missing.
//!
//! An input that makes a target fail is copied to `fuzz/regressions/<target>/`,
//! where `kept_inputs_replay` (a unit test of `aether_host::fuzz`) replays it
//! on every test run from then on: commit it with the fix.

use super::{cargo, root, status};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The targets, as in `fuzz/Cargo.toml`.
const TARGETS: &[&str] = &[
    "jetstream_message",
    "jetstream_snapshot",
    "embedded_value",
    "embedded_log",
    "msgpack_walker",
    "msgpack_json",
    "bus_event",
    "nats_request",
];

const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Seconds per target in `cargo xtask ci`: under a minute for all of them.
const CI_SECONDS: u64 = 5;

/// `cargo xtask fuzz …`.
pub(super) fn run(args: &[String]) -> anyhow::Result<()> {
    let usage = "usage: cargo xtask fuzz [--minutes N | --seconds N] [--target NAME]";
    let (mut seconds, mut only) = (60, None);
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args.next().with_context(|| format!("{flag} needs a value; {usage}"))?;
        match flag.as_str() {
            "--minutes" => seconds = value.parse::<u64>().with_context(|| format!("--minutes {value:?}"))? * 60,
            "--seconds" => seconds = value.parse().with_context(|| format!("--seconds {value:?}"))?,
            "--target" if TARGETS.contains(&value.as_str()) => only = Some(value.clone()),
            "--target" => bail!("no fuzz target {value:?}; the targets are {}", TARGETS.join(", ")),
            _ => bail!("{usage}"),
        }
    }
    let fuzz = Fuzz::prepare()?;
    fuzz.build()?;
    let targets: Vec<&str> = match &only {
        Some(target) => vec![target.as_str()],
        None => TARGETS.to_vec(),
    };
    let runs = targets.iter().map(|target| fuzz.run(target, seconds)).collect::<anyhow::Result<Vec<_>>>()?;
    report(&runs);
    Ok(())
}

/// `cargo xtask ci`'s part: every target for a few seconds, or a printed
/// reason to skip (no C++ compiler for libFuzzer, cargo-fuzz cannot be
/// installed, `AETHER_SKIP_FUZZ=1`: the first instrumented build takes a
/// while on two cores). A failed build or target fails CI.
pub(super) fn smoke() -> anyhow::Result<()> {
    if std::env::var_os("AETHER_SKIP_FUZZ").is_some_and(|v| v != "0") {
        eprintln!("xtask: fuzz targets not run: AETHER_SKIP_FUZZ is set");
        return Ok(());
    }
    let fuzz = match Fuzz::prepare() {
        Ok(fuzz) => fuzz,
        Err(err) => {
            eprintln!("xtask: fuzz targets not run: {err:#}");
            return Ok(());
        }
    };
    fuzz.build()?;
    let runs = TARGETS.iter().map(|target| fuzz.run(target, CI_SECONDS)).collect::<anyhow::Result<Vec<_>>>()?;
    report(&runs);
    Ok(())
}

struct Fuzz {
    cargo_fuzz: PathBuf,
    dir: PathBuf,
    target_dir: PathBuf,
}

/// What one target's run did.
struct Run {
    target: String,
    seconds: f64,
    executions: u64,
    corpus: u64,
}

impl Fuzz {
    /// Finds or installs cargo-fuzz and checks for a C++ compiler.
    fn prepare() -> anyhow::Result<Self> {
        let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
        if !Command::new(&cxx).arg("--version").output().is_ok_and(|o| o.status.success()) {
            bail!("libFuzzer needs a C++ compiler and `{cxx}` does not run (apt-get install g++, or set CXX)");
        }
        let cargo_fuzz = install_cargo_fuzz()?;
        let dir = root().join("fuzz");
        // Beside the workspace's builds, not in their directory: the fuzz
        // build has its own flags and need not wait for their lock.
        let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => PathBuf::from(dir).join("fuzz"),
            None => dir.join("target"),
        };
        Ok(Self { cargo_fuzz, dir, target_dir })
    }

    /// Builds the targets. Unlike a missing tool, a failed build fails the
    /// run: it is the code that is broken.
    fn build(&self) -> anyhow::Result<()> {
        status(self.command("build").arg("--codegen-units").arg("16"))
            .context("building the fuzz targets (cargo fuzz build)")
    }

    /// `cargo fuzz <subcommand>` on the stable toolchain.
    fn command(&self, subcommand: &str) -> Command {
        let mut cmd = Command::new(&self.cargo_fuzz);
        cmd.current_dir(root())
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", subcommand, "--target-dir"])
            .arg(&self.target_dir);
        cmd
    }

    /// Runs `target` for `seconds`; a failure keeps the input and fails.
    fn run(&self, target: &str, seconds: u64) -> anyhow::Result<Run> {
        let corpus = self.dir.join("corpus").join(target);
        let artifacts = self.dir.join("artifacts").join(target);
        let regressions = self.dir.join("regressions").join(target);
        let logs = self.dir.join("logs");
        for dir in [&corpus, &artifacts, &regressions, &logs] {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let before = crashes(&artifacts);
        let log_path = logs.join(format!("{target}.log"));
        let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut cmd = self.command("run");
        cmd.args(["--codegen-units", "16", target])
            // New inputs go to the first directory; seeds and kept failures are read.
            .arg(&corpus)
            .arg(self.dir.join("seeds").join(target))
            .arg(&regressions)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            // A decoder that sizes a buffer from a header fails here, not by luck.
            .args(["-malloc_limit_mb=256", "-rss_limit_mb=2048", "-timeout=10", "-max_len=65536"])
            .arg("-print_final_stats=1")
            .stdout(Stdio::null())
            .stderr(log);
        eprintln!("xtask: fuzzing {target} for {seconds} s (log: {})", log_path.display());
        let started = Instant::now();
        let exit = cmd.status().with_context(|| format!("cannot run {cmd:?}"))?;
        let elapsed = started.elapsed().as_secs_f64();
        let output = std::fs::read_to_string(&log_path).unwrap_or_default();
        if !exit.success() {
            let kept = keep_crashes(&artifacts, &before, &regressions)?;
            let tail: Vec<&str> = output.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "fuzz target {target} failed ({exit}); input kept as {kept:?}: fix the cause and commit it\n{}",
                tail.join("\n")
            );
        }
        Ok(Run {
            target: target.to_owned(),
            seconds: elapsed,
            executions: stat(&output, "stat::number_of_executed_units"),
            corpus: stat(&output, "stat::new_units_added"),
        })
    }
}

/// cargo-fuzz on PATH, or the pinned one in the tools cache (installed there once).
fn install_cargo_fuzz() -> anyhow::Result<PathBuf> {
    let works = |path: &Path| Command::new(path).arg("--version").output().is_ok_and(|o| o.status.success());
    let on_path = PathBuf::from("cargo-fuzz");
    if works(&on_path) {
        return Ok(on_path);
    }
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let dir = PathBuf::from(home).join(format!(".cache/aether-tools/cargo-fuzz-{CARGO_FUZZ_VERSION}"));
    let binary = dir.join("bin/cargo-fuzz");
    if !works(&binary) {
        status(
            cargo().args(["install", "cargo-fuzz", "--locked", "--version", CARGO_FUZZ_VERSION, "--root"]).arg(&dir),
        )
        .context("installing cargo-fuzz")?;
    }
    Ok(binary)
}

fn crashes(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    found.retain(|p| p.is_file());
    found
}

/// Copies the inputs libFuzzer left in `artifacts` since `before` to `regressions`.
fn keep_crashes(artifacts: &Path, before: &[PathBuf], regressions: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(regressions)?;
    let mut kept = Vec::new();
    for path in crashes(artifacts).into_iter().filter(|p| !before.contains(p)) {
        let to = regressions.join(path.file_name().context("an artifact without a name")?);
        std::fs::copy(&path, &to).with_context(|| format!("cannot copy {} to {}", path.display(), to.display()))?;
        kept.push(to);
    }
    Ok(kept)
}

/// A `stat::name: value` line of `-print_final_stats`.
fn stat(output: &str, name: &str) -> u64 {
    output
        .lines()
        .filter_map(|line| line.strip_prefix(name)?.trim_start_matches(':').trim().parse().ok())
        .next_back()
        .unwrap_or(0)
}

fn report(runs: &[Run]) {
    eprintln!(
        "xtask: {:<20} {:>9} {:>14} {:>10} {:>11}",
        "fuzz target", "seconds", "executions", "per second", "new inputs"
    );
    for run in runs {
        let rate = run.executions as f64 / run.seconds.max(0.001);
        eprintln!(
            "xtask: {:<20} {:>9.0} {:>14} {:>10.0} {:>11}",
            run.target, run.seconds, run.executions, rate, run.corpus
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_stats_are_read_from_the_log() {
        let log = "#1024 pulse cov: 10\nstat::number_of_executed_units: 123456\nstat::new_units_added: 7\n";
        assert_eq!(stat(log, "stat::number_of_executed_units"), 123456);
        assert_eq!(stat(log, "stat::new_units_added"), 7);
        assert_eq!(stat(log, "stat::peak_rss_mb"), 0);
    }

    #[test]
    fn every_target_is_in_the_fuzz_crate() {
        let manifest = std::fs::read_to_string(root().join("fuzz/Cargo.toml")).unwrap();
        for target in TARGETS {
            assert!(manifest.contains(&format!("name = \"{target}\"")), "{target}");
        }
    }
}
