//! The `aether-host` binary: maps command-line flags onto the library.

use clap::{Parser, Subcommand};

mod commands;

/// Hosts event-sourced actors written as WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "aether-host", version, about, long_about = None)]
struct Cli {
    /// Log filter, e.g. `info` or `aether_host=debug` (also `RUST_LOG`).
    #[arg(long, global = true, env = "RUST_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Check(commands::check::CheckCommand),
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Check(cmd) => cmd.execute(),
    };
    if let Err(err) = result {
        eprintln!("aether-host: {err:#}");
        std::process::exit(1);
    }
}
