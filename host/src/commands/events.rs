//! `aether-host events <aggregate> <id>`: list an actor's events.

use super::remote::{self, Remote};

/// Prints an actor's stored events as JSON, oldest first, each with its
/// version, payload and provenance (command id, correlation and causation
/// ids, timestamp, the hash of the component that decided it).
#[derive(Debug, clap::Args)]
pub struct EventsCommand {
    /// Aggregate type, e.g. `Account`.
    aggregate: String,
    /// Actor id.
    id: String,
    /// The first version to show.
    #[arg(long, default_value_t = 1)]
    from: u64,
    /// The most events to show (the host caps one page at 1000).
    #[arg(long)]
    limit: Option<usize>,
    #[command(flatten)]
    remote: Remote,
}

impl EventsCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        let client = self.remote.client()?;
        let answer = remote::block_on(client.events(&self.aggregate, &self.id, Some(self.from), self.limit))?;
        remote::print(&answer.map_err(remote::explain)?)
    }
}
