//! Resident actors: how much memory a live actor costs and how many one
//! process holds.
//!
//! The probe opens bank accounts through the runtime (each a live VM with
//! one event) in chunks, reading `VmRSS` and the number of memory mappings
//! as it goes, until the cap, a failure, or the machine's memory runs low.
//! It runs in a child process of its own: running out of mappings
//! (`vm.max_map_count`) can make any allocation fail, which would abort the
//! benchmark with it, and a fresh process measures only the actors.

use crate::fixtures;
use crate::util::{map_count, max_map_count, mem_available_bytes, rss_bytes, settled_rss_bytes};
use aether_host::wasm::MemoryLayout;
use aether_host::{CommandOutcome, CommandRequest, EngineConfig, MemoryStore, Runtime, RuntimeConfig};
use bank::AccountCommand;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Stop opening actors when the machine has less than this left.
const MEMORY_FLOOR: u64 = 2 << 30;
const CHUNK: usize = 1000;

/// Why the probe stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StopReason {
    /// It reached the cap it was given: the process could hold more.
    #[default]
    Cap,
    /// Creating or using a VM failed (the pool, a mapping, the memory cap).
    Failed,
    /// The machine's memory ran low.
    Memory,
    /// The probe process died.
    Died,
}

impl StopReason {
    pub fn code(self) -> u8 {
        self as u8
    }
    fn parse(s: &str) -> Self {
        match s {
            "cap" => Self::Cap,
            "failed" => Self::Failed,
            "memory" => Self::Memory,
            _ => Self::Died,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Self::Cap => "cap",
            Self::Failed => "failed",
            Self::Memory => "memory",
            Self::Died => "died",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Resident {
    /// Actors live when memory was sampled.
    pub sampled: u64,
    pub rss_per_actor: f64,
    pub maps_per_actor: f64,
    pub max_actors: u64,
    pub reason: StopReason,
    pub detail: String,
    pub seconds: f64,
    pub max_map_count: u64,
}

/// Runs the probe in `exe --resident-probe` (or in this process if `exe` is
/// `None`) and reads its report.
///
/// # Errors
///
/// If the probe cannot be started or reports nothing.
pub fn run(exe: Option<&Path>, wasm: &Path, sample_at: usize, cap: usize) -> anyhow::Result<Resident> {
    let started = Instant::now();
    let lines: Vec<String> = match exe {
        Some(exe) => {
            let mut child = Command::new(exe)
                .args(["--resident-probe", &sample_at.to_string(), &cap.to_string()])
                .arg(wasm)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()?;
            let out = BufReader::new(child.stdout.take().expect("piped"));
            let lines = out.lines().map_while(Result::ok).collect();
            let _ = child.wait();
            lines
        }
        None => {
            let mut buf = Vec::new();
            probe(&mut buf, wasm, sample_at, cap)?;
            String::from_utf8(buf)?.lines().map(str::to_string).collect()
        }
    };
    let mut r = Resident { max_map_count: max_map_count(), reason: StopReason::Died, ..Default::default() };
    let (mut base_rss, mut base_maps) = (0.0, 0.0);
    for line in &lines {
        let fields: std::collections::HashMap<&str, &str> =
            line.split_whitespace().filter_map(|f| f.split_once('=')).collect();
        let num = |k: &str| fields.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        match line.split_whitespace().next() {
            Some("baseline") => (base_rss, base_maps) = (num("rss"), num("maps")),
            Some("sample") => {
                r.sampled = num("n") as u64;
                r.rss_per_actor = (num("rss") - base_rss) / num("n").max(1.0);
                r.maps_per_actor = (num("maps") - base_maps) / num("n").max(1.0);
            }
            Some("progress") => r.max_actors = num("n") as u64,
            Some("stop") => {
                r.max_actors = num("n") as u64;
                r.reason = StopReason::parse(fields.get("reason").copied().unwrap_or(""));
                r.detail = line.split_once("detail=").map(|(_, d)| d.to_string()).unwrap_or_default();
            }
            _ => {}
        }
    }
    anyhow::ensure!(!lines.is_empty(), "the resident probe reported nothing");
    r.seconds = started.elapsed().as_secs_f64();
    Ok(r)
}

/// The probe itself: opens actors and reports, one line per fact, on `out`.
///
/// # Errors
///
/// If the component cannot be loaded.
pub fn probe(out: &mut dyn Write, wasm: &Path, sample_at: usize, cap: usize) -> anyhow::Result<()> {
    let bytes = std::fs::read(wasm)?;
    // AETHER_BENCH_LAYOUT=guarded shows what the guarded layout allows.
    let layout = match std::env::var("AETHER_BENCH_LAYOUT").as_deref() {
        Ok("guarded") => MemoryLayout::Guarded,
        _ => MemoryLayout::Dense,
    };
    let config = EngineConfig::default().with_max_instances((cap + 64) as u32).with_layout(layout);
    let component = fixtures::load(&bytes, config)?;
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    tokio.block_on(async move {
        let config =
            RuntimeConfig::default().with_max_live_actors(cap + 64).with_idle_timeout(Duration::from_secs(24 * 3600));
        let runtime = Runtime::new(component, Arc::new(MemoryStore::new()), config);
        let (name, payload) = fixtures::command(&AccountCommand::Open { owner: "ada lovelace".into() });
        let open = |i: usize| CommandRequest {
            aggregate: "Account".into(),
            id: format!("acc-{i:07}"),
            command: name.clone(),
            payload: payload.clone(),
            ..Default::default()
        };
        writeln!(out, "baseline rss={} maps={}", settled_rss_bytes(), map_count())?;
        let mut n = 0;
        while n < cap {
            let end = (n + CHUNK).min(cap).min(if n < sample_at { sample_at } else { cap });
            let mut tasks = Vec::new();
            for client in 0..8 {
                let runtime = runtime.clone();
                let requests: Vec<_> = (n + client..end).step_by(8).map(open).collect();
                tasks.push(tokio::spawn(async move {
                    for request in requests {
                        match runtime.execute(request).await {
                            Ok(CommandOutcome::Accepted { .. }) => {}
                            Ok(CommandOutcome::Rejected { code, .. }) => return Err(format!("rejected: {code}")),
                            Err(e) => return Err(e.to_string()),
                        }
                    }
                    Ok(())
                }));
            }
            let mut failure = None;
            for task in tasks {
                if let Err(e) = task.await.map_err(|e| e.to_string()).and_then(|r| r) {
                    failure.get_or_insert(e);
                }
            }
            let live = runtime.live_actors();
            if let Some(e) = failure {
                writeln!(out, "stop n={live} reason=failed detail={}", e.replace('\n', " "))?;
                return Ok(());
            }
            n = end;
            if n == sample_at {
                writeln!(out, "sample n={live} rss={} maps={}", settled_rss_bytes(), map_count())?;
            }
            writeln!(out, "progress n={live} rss={} maps={}", rss_bytes(), map_count())?;
            out.flush()?;
            if mem_available_bytes() < MEMORY_FLOOR {
                writeln!(out, "stop n={live} reason=memory detail=less than {MEMORY_FLOOR} bytes left")?;
                return Ok(());
            }
        }
        writeln!(
            out,
            "stop n={} reason={} detail=reached the cap of {cap}",
            runtime.live_actors(),
            StopReason::Cap.name()
        )?;
        anyhow::Ok(())
    })
}
