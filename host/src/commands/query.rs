//! `aether-host query <read-model> [key]`: rows of a read model.

use super::remote::{self, Remote};

/// Prints a read model's row under a key, or lists its rows a page at a
/// time (by key prefix, or where a field has a value), as JSON.
///
/// With `--position` (the `position` of a command's answer) the host first
/// waits until the read model has folded that command's events
/// (read-your-writes), at most `--wait-ms`.
#[derive(Debug, clap::Args)]
pub struct QueryCommand {
    /// The read model, e.g. `AccountsByOwner`.
    read_model: String,
    /// The row's key; without it, rows are listed.
    key: Option<String>,
    /// List the rows whose keys start with this.
    #[arg(long, conflicts_with = "key")]
    prefix: Option<String>,
    /// List the rows after this key (the `next` of the previous page).
    #[arg(long, conflicts_with = "key")]
    after: Option<String>,
    /// Rows per page.
    #[arg(long, conflicts_with = "key")]
    limit: Option<usize>,
    /// List the rows whose field has a value: `owner=ada`.
    #[arg(long = "where", value_name = "FIELD=VALUE", conflicts_with = "key")]
    filter: Option<String>,
    /// Wait until the read model has seen this position.
    #[arg(long)]
    position: Option<String>,
    /// How long to wait for `--position`, in milliseconds.
    #[arg(long)]
    wait_ms: Option<u64>,
    #[command(flatten)]
    remote: Remote,
}

impl QueryCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        let mut query: Vec<(&str, String)> = Vec::new();
        let optional = [("prefix", self.prefix), ("after", self.after), ("position", self.position)];
        query.extend(optional.into_iter().filter_map(|(name, value)| Some((name, value?))));
        query.extend(self.limit.map(|l| ("limit", l.to_string())));
        query.extend(self.wait_ms.map(|w| ("wait_ms", w.to_string())));
        if let Some(filter) = self.filter {
            if !filter.contains('=') {
                anyhow::bail!("--where takes FIELD=VALUE, e.g. owner=ada; got `{filter}`");
            }
            query.push(("where", filter));
        }
        let client = self.remote.client()?;
        let answer = remote::block_on(client.query(&self.read_model, self.key.as_deref(), &query))?;
        remote::print(&answer.map_err(remote::explain)?)
    }
}

/// Folds a read model again from the start of the log: its rows are
/// dropped and built anew while the host keeps serving (queries see the
/// rows grow back; pass a command's `--position` to wait for them).
#[derive(Debug, clap::Args)]
pub struct RebuildCommand {
    /// The read model, e.g. `AccountsByOwner`.
    read_model: String,
    #[command(flatten)]
    remote: Remote,
}

impl RebuildCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        let client = self.remote.client()?;
        let answer = remote::block_on(client.rebuild(&self.read_model))?;
        remote::print(&answer.map_err(remote::explain)?)
    }
}
