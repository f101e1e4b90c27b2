//! The `aether-host` binary: maps command-line flags onto the library.

use clap::{Parser, Subcommand};

mod commands;

/// mimalloc rather than glibc's malloc: a command allocates and frees many
/// small buffers across threads (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Hosts event-sourced actors written as WebAssembly components.
///
/// Start a host with `aether-host load model.wasm`, then talk to it with
/// `send`, `state`, `events`, `model`, `query`, `rebuild` and `cluster
/// status` (they find it at --url, by default the address `load` listens
/// on). Before deploying new
/// domain code, `verify` it against the stored history, then `upgrade` the
/// running hosts to it.
#[derive(Debug, Parser)]
#[command(name = "aether-host", version)]
struct Cli {
    /// Log filter, e.g. `info` or `aether_host=debug` (also `RUST_LOG`).
    #[arg(long, global = true, env = "RUST_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Load(Box<commands::load::LoadCommand>),
    Send(commands::send::SendCommand),
    State(commands::state::StateCommand),
    Events(commands::events::EventsCommand),
    Model(commands::model::ModelCommand),
    Check(commands::check::CheckCommand),
    Cluster(commands::cluster::ClusterCommand),
    Verify(Box<commands::verify::VerifyCommand>),
    Upgrade(commands::upgrade::UpgradeCommand),
    Query(commands::query::QueryCommand),
    Rebuild(commands::query::RebuildCommand),
}

fn main() {
    let mut cli = Cli::parse();
    let exporter = match &mut cli.command {
        Command::Load(cmd) => cmd.exporter().unwrap_or_else(|err| fail(&err)),
        _ => None,
    };
    let filter = tracing_subscriber::EnvFilter::new(&cli.log);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    match &exporter {
        None => tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init(),
        // Each layer filters for itself: --log decides what is printed,
        // and spans at `info` and above are exported whatever it says.
        Some(exporter) => {
            use tracing_subscriber::prelude::*;
            let print = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
            tracing_subscriber::registry()
                .with(print.with_filter(filter))
                .with(exporter.layer().with_filter(tracing_subscriber::filter::LevelFilter::INFO))
                .init();
        }
    }
    let result = match cli.command {
        Command::Load(cmd) => cmd.execute(),
        Command::Send(cmd) => cmd.execute(),
        Command::State(cmd) => cmd.execute(),
        Command::Events(cmd) => cmd.execute(),
        Command::Model(cmd) => cmd.execute(),
        Command::Check(cmd) => cmd.execute(),
        Command::Cluster(cmd) => cmd.execute(),
        Command::Upgrade(cmd) => cmd.execute(),
        Command::Query(cmd) => cmd.execute(),
        Command::Rebuild(cmd) => cmd.execute(),
        Command::Verify(cmd) => match cmd.execute() {
            // The verdict is the exit status: CI gates on it.
            Ok(0) => Ok(()),
            Ok(status) => std::process::exit(status),
            Err(err) => Err(err),
        },
    };
    if let Some(exporter) = exporter {
        exporter.shutdown();
    }
    if let Err(err) = result {
        fail(&err);
    }
}

fn fail(err: &anyhow::Error) -> ! {
    eprintln!("aether-host: {err:#}");
    std::process::exit(1);
}
