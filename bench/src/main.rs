//! `aether-bench [--smoke] [--only PHASE,…] [--out FILE]`: runs the benchmarks,
//! prints the table and writes the figures as a flat JSON object
//! (default `target/bench/summary.json` in the workspace). `cargo xtask bench`
//! builds and runs it.

use aether_bench::{Options, fixtures, note, resident};
use anyhow::{Context, bail};
use std::path::PathBuf;

/// The allocator the `aether-host` binary uses, so the figures are its.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: aether-bench [--smoke] [--only activation,replay,verify,flows,memory,embedded,jetstream,cluster,resident] [--out FILE]";

fn main() {
    if let Err(err) = run() {
        eprintln!("aether-bench: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--resident-probe") {
        // The child process of the resident phase: sample, cap, component.
        let [_, sample, cap, wasm] = args.as_slice() else { bail!("--resident-probe SAMPLE CAP WASM") };
        let mut out = std::io::stdout().lock();
        return resident::probe(&mut out, &PathBuf::from(wasm), sample.parse()?, cap.parse()?);
    }
    let mut options = Options { smoke: false, probe_exe: std::env::current_exe().ok(), only: vec![] };
    let mut out = fixtures::root().join("target/bench/summary.json");
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.clone().next()) {
            ("--smoke", _) => options.smoke = true,
            ("--only", Some(phases)) => {
                options.only = phases.split(',').map(str::to_string).collect();
                args.next();
            }
            ("--out", Some(file)) => {
                out = PathBuf::from(file);
                args.next();
            }
            _ => bail!("{USAGE}"),
        }
    }
    let report = aether_bench::run(&options)?;
    print!("{}", report.table());
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(&report.json())?;
    std::fs::write(&out, json + "\n").with_context(|| format!("cannot write {}", out.display()))?;
    note(&format!("figures written to {}", out.display()));
    Ok(())
}
