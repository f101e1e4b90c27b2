//! `aether-host state <aggregate> <id>`: show an actor's state.

use super::remote::{self, Remote};

/// Prints an actor's state and version as JSON.
///
/// With `--at-version N` the host replays the actor's events up to version N
/// in a scratch VM and prints that state instead (time travel); the live
/// actor is not touched.
#[derive(Debug, clap::Args)]
pub struct StateCommand {
    /// Aggregate type, e.g. `Account`.
    aggregate: String,
    /// Actor id.
    id: String,
    /// Show the state as it was at this version.
    #[arg(long)]
    at_version: Option<u64>,
    #[command(flatten)]
    remote: Remote,
}

impl StateCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        let client = self.remote.client()?;
        let answer = remote::block_on(client.state(&self.aggregate, &self.id, self.at_version))?;
        remote::print(&answer.map_err(remote::explain)?)
    }
}
