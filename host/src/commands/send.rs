//! `aether-host send <aggregate> <id> <command> [payload]`: send a command.

use super::remote::{self, Remote};
use aether_host::api::client::CommandIds;
use anyhow::Context;

/// Sends a command to an actor of a running host and prints the events it
/// produced and the actor's new version.
///
/// Example: aether-host send Account alice Deposit '{"amount": 100}'
///
/// A business rejection, an unknown command or a bad payload prints the
/// host's reason and exits with status 1.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct SendCommand {
    /// Aggregate type, e.g. `Account`.
    aggregate: String,
    /// Actor id: any string.
    id: String,
    /// Command name, e.g. `Deposit`.
    command: String,
    /// The command's payload as JSON; omit it for a command without fields.
    payload: Option<String>,
    /// Command id: sending again with the same key appends nothing new and
    /// prints the original events.
    #[arg(long)]
    key: Option<String>,
    /// Correlation id to record in the events' provenance.
    #[arg(long)]
    correlation_id: Option<String>,
    #[command(flatten)]
    remote: Remote,
}

impl SendCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        let payload = match &self.payload {
            Some(text) => Some(serde_json::from_str(text).with_context(|| format!("the payload is not JSON: {text}"))?),
            None => None,
        };
        let client = self.remote.client()?;
        let ids = CommandIds {
            idempotency_key: self.key.as_deref(),
            correlation_id: self.correlation_id.as_deref(),
            causation_id: None,
        };
        let answer = remote::block_on(client.send(&self.aggregate, &self.id, &self.command, payload.as_ref(), ids))?;
        remote::print(&answer.map_err(remote::explain)?)
    }
}
