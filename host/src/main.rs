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
/// `send`, `state`, `events`, `model` and `cluster status` (they find it at
/// --url, by default the address `load` listens on).
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
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Load(cmd) => cmd.execute(),
        Command::Send(cmd) => cmd.execute(),
        Command::State(cmd) => cmd.execute(),
        Command::Events(cmd) => cmd.execute(),
        Command::Model(cmd) => cmd.execute(),
        Command::Check(cmd) => cmd.execute(),
        Command::Cluster(cmd) => cmd.execute(),
    };
    if let Err(err) = result {
        eprintln!("aether-host: {err:#}");
        std::process::exit(1);
    }
}
