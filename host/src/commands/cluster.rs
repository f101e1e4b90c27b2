//! `aether-host cluster status`: the cluster as a running host sees it.

use super::remote::{self, Remote};
use serde_json::Value;
use std::fmt::Write;

/// Commands about the cluster a host (started with `--nats`) is in.
#[derive(Debug, clap::Args)]
pub struct ClusterCommand {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// The nodes, the leader, the shard map's epoch and how many shards
    /// each node owns, as the host at --url sees them.
    Status {
        /// Print the host's JSON answer as is.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

impl ClusterCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        let Action::Status { json, remote } = self.action;
        let client = remote.client()?;
        let answer = remote::block_on(client.cluster())?.map_err(remote::explain)?;
        if json {
            return remote::print(&answer);
        }
        print!("{}", render(&answer));
        Ok(())
    }
}

/// The status as a few lines and a table of members.
fn render(status: &Value) -> String {
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    let mut out = String::new();
    let _ = writeln!(out, "node     {} (incarnation {})", text(&status["node"]), status["incarnation"]);
    let _ = writeln!(out, "leader   {} (term {})", text(&status["leader"]), status["leader_term"]);
    let _ = writeln!(
        out,
        "map      epoch {}, {} shards, {} moving, {} without an owner",
        status["epoch"], status["shards"], status["moving"], status["unowned"]
    );
    if let Some(hash) = status["component_hash"].as_str() {
        let _ = writeln!(out, "component {hash}");
    }
    let _ = writeln!(out, "\n{:<32} {:>11} {:>6} {:>8}  COMPONENT", "MEMBER", "INCARNATION", "OWNED", "GRANTED");
    for member in status["members"].as_array().into_iter().flatten() {
        let me = if member["node"] == status["node"] { " *" } else { "" };
        // The first 12 hex digits name a component well enough in a table.
        let component = match (member["component_hash"].as_str(), member["component_error"].as_str()) {
            (Some(hash), None) => hash.chars().take(12).collect(),
            (Some(hash), Some(error)) => {
                format!("{} (cannot move: {error})", hash.chars().take(12).collect::<String>())
            }
            _ => "-".to_string(),
        };
        let _ = writeln!(
            out,
            "{:<32} {:>11} {:>6} {:>8}  {component}{me}",
            text(&member["node"]),
            member["incarnation"],
            member["owned"],
            member["granted"]
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_status_reads_as_a_table() {
        let status = json!({
            "node": "a", "incarnation": 3, "leader": "b", "leader_term": 2, "is_leader": false,
            "epoch": 9, "shards": 1024, "serving": 512, "moving": 0, "unowned": 0, "left": false,
            "component_hash": "0123456789abcdef",
            "members": [
                {"node": "a", "incarnation": 3, "owned": 512, "granted": 512, "component_hash": "0123456789abcdef"},
                {"node": "b", "incarnation": 1, "owned": 512, "granted": 512, "component_hash": "fedcba9876543210",
                 "component_error": "invalid model"},
            ],
        });
        let text = render(&status);
        assert!(text.contains("leader   b (term 2)"), "{text}");
        assert!(text.contains("epoch 9, 1024 shards, 0 moving"), "{text}");
        assert!(text.contains("component 0123456789abcdef\n"), "{text}");
        assert!(text.lines().any(|l| l.starts_with('a') && l.ends_with("512  0123456789ab *")), "{text}");
        assert!(
            text.lines().any(|l| l.starts_with('b') && l.ends_with("fedcba987654 (cannot move: invalid model)")),
            "{text}"
        );
    }
}
