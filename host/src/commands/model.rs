//! `aether-host model`: print the model a running host serves.

use super::remote::{self, Remote};

/// Prints the EventStorming model of the component a running host serves:
/// aggregates with their commands and events, and each payload's JSON schema.
/// (`aether-host check <model.wasm>` prints it from a file instead.)
#[derive(Debug, clap::Args)]
pub struct ModelCommand {
    #[command(flatten)]
    remote: Remote,
}

impl ModelCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        let client = self.remote.client()?;
        let answer = remote::block_on(client.model())?;
        remote::print(&answer.map_err(remote::explain)?)
    }
}
