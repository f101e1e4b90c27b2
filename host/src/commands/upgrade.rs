//! `aether-host upgrade <new.wasm>`: a live upgrade of a running host.

use super::remote::{self, Remote};
use anyhow::Context;
use serde_json::Value;
use std::fmt::Write;
use std::path::PathBuf;

/// Swaps a running host over to a new component, without a restart.
///
/// The host compiles and checks the component (it loads, its describe()
/// works, it is of the same domain and removes no aggregate or event)
/// before swapping it in; a refused component leaves the running one
/// serving. Commands in flight finish on the old code; every later command
/// runs on the new one, and each live actor is rebuilt on it at its next
/// command (from its snapshot if the models say the state is unchanged,
/// else by replaying its events). Events record the new component's hash.
///
/// A rollback is the same command with the old file. Check the new code
/// against the history first with `aether-host verify new.wasm --against old.wasm`.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct UpgradeCommand {
    /// The new component, e.g. target/wasm32-wasip2/release/bank.wasm.
    model: PathBuf,
    /// Swap it in even if it removes aggregates or events: only once
    /// `aether-host verify` shows none of them is stored (a rollback to a
    /// component without an event the newer one added).
    #[arg(long)]
    force: bool,
    /// Print the host's JSON answer as is.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

impl UpgradeCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        let wasm = std::fs::read(&self.model).with_context(|| format!("cannot read {}", self.model.display()))?;
        let client = self.remote.client()?;
        let answer = match remote::block_on(client.upgrade(wasm, self.force))? {
            Ok(answer) => answer,
            Err(err) => {
                // In a cluster: which nodes did not move.
                if let aether_host::api::ClientError::Api { body, .. } = &err
                    && let Some(rollout) = body.get("rollout")
                {
                    eprint!("{}", nodes(rollout));
                }
                anyhow::bail!("{}: {}", self.model.display(), remote::explain(err));
            }
        };
        if self.json {
            return remote::print(&answer);
        }
        print!("{}", render(&answer));
        Ok(())
    }
}

/// The answer for people: the hashes, then what the model changes.
fn render(report: &Value) -> String {
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    let mut out = String::new();
    if report["changed"] == Value::Bool(false) {
        let _ = writeln!(
            out,
            "already running {} (domain `{}`): nothing to do",
            text(&report["current"]),
            text(&report["domain"])
        );
        return out;
    }
    let _ = writeln!(out, "domain `{}`", text(&report["domain"]));
    let _ = writeln!(out, "  was     {}", text(&report["previous"]));
    let _ = writeln!(out, "  now     {}", text(&report["current"]));
    let changes = &report["model_changes"];
    let mut lines = Vec::new();
    let names = |lines: &mut Vec<String>, what: &str, list: &Value| {
        let list: Vec<String> = list.as_array().into_iter().flatten().map(text).collect();
        if !list.is_empty() {
            lines.push(format!("  {what}: {}", list.join(", ")));
        }
    };
    names(&mut lines, "aggregates added", &changes["aggregates_added"]);
    names(&mut lines, "aggregates removed", &changes["aggregates_removed"]);
    for (aggregate, diff) in changes["aggregates"].as_object().into_iter().flatten() {
        for (key, what) in [
            ("commands_added", "commands added"),
            ("commands_removed", "commands removed"),
            ("commands_changed", "command schemas changed"),
            ("events_added", "events added"),
            ("events_removed", "events removed"),
            ("events_changed", "event schemas changed"),
        ] {
            names(&mut lines, &format!("{aggregate}: {what}"), &diff[key]);
        }
        if diff["state_changed"] == Value::Bool(true) {
            lines.push(format!("  {aggregate}: the state's schema changed"));
        }
    }
    if lines.is_empty() {
        let _ = writeln!(out, "the model is unchanged");
    } else {
        let _ = writeln!(out, "model changes:");
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
    }
    out.push_str(&nodes(report));
    let trusted = report["trusted_snapshots"].as_object().map_or(0, serde_json::Map::len);
    let _ = writeln!(
        out,
        "live actors move over at their next command ({})",
        if trusted == 0 {
            "replaying their events: no older snapshot is trusted".to_string()
        } else {
            format!("from snapshots of {trusted} earlier components the models say are compatible, else by replay")
        }
    );
    out
}

/// In a cluster: the component each node runs, or why it could not move.
fn nodes(report: &Value) -> String {
    let mut out = String::new();
    let Some(nodes) = report["nodes"].as_object() else { return out };
    let _ = writeln!(out, "nodes:");
    for (node, status) in nodes {
        let hash = status["hash"].as_str().unwrap_or("-");
        match status["error"].as_str() {
            Some(error) => {
                let _ = writeln!(out, "  {node:<32} {hash} (cannot move: {error})");
            }
            None if status.is_null() => {
                let _ = writeln!(out, "  {node:<32} has not said yet");
            }
            None => {
                let _ = writeln!(out, "  {node:<32} {hash}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_answer_names_the_hashes_and_the_changes() {
        let report = serde_json::json!({
            "domain": "bank", "previous": "aa", "current": "bb", "changed": true,
            "model_changes": {"aggregates_added": [], "aggregates_removed": [], "aggregates": {
                "Account": {"commands_added": [], "commands_removed": [], "commands_changed": [],
                    "events_added": ["FeeCharged"], "events_removed": [], "events_changed": [], "state_changed": false}}},
            "trusted_snapshots": {"aa": ["Account"]},
        });
        let text = super::render(&report);
        assert!(text.contains("was     aa\n  now     bb"), "{text}");
        assert!(text.contains("Account: events added: FeeCharged"), "{text}");
        assert!(text.contains("snapshots of 1 earlier components"), "{text}");
    }
}
