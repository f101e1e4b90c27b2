//! `aether-host verify <new.wasm>`: a new component against the stored
//! history, before it is deployed (see `aether_host::verify`).

use super::nats_args::NatsArgs;
use aether_host::model::ModelDiff;
use aether_host::store::{EmbeddedStore, JetStreamEventStore};
use aether_host::verify::{Decision, EventView, VerifyConfig, VerifyReport};
use aether_host::{AetherEngine, DomainComponent, EngineConfig, EventStore};
use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;

/// Exit status when a recorded command is decided otherwise.
pub const DIVERGENT: i32 = 2;
/// Exit status when the new component cannot read an event (worse than a divergence).
pub const UNREADABLE: i32 = 3;

/// Checks a new component against the stored history, read-only: replays
/// every actor's events through its `apply` (the first event it cannot
/// read, with actor, version and cause), and decides every recorded command
/// again against the state before it, with its recorded time and seed,
/// comparing the events with the stored ones.
///
/// Exits 0 when every recorded command is decided alike and every event
/// reads, 2 when some command is decided otherwise, 3 when some event
/// cannot be read, 1 on an error. Commands stored without their payload
/// (before commands were recorded, or under --record-commands=false) are
/// counted as not re-decidable.
///
/// The embedded store must not be open in a running host (the file is
/// locked); on JetStream, verify runs beside live hosts.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct VerifyCommand {
    /// The new component, e.g. target/wasm32-wasip2/release/bank.wasm.
    model: PathBuf,
    /// Directory of the embedded event store to verify against.
    #[arg(long, env = "AETHER_DATA", default_value = "aether-data")]
    data: PathBuf,
    #[command(flatten)]
    nats: NatsArgs,
    /// Only this aggregate's actors.
    #[arg(long)]
    aggregate: Option<String>,
    /// Only these actors, comma-separated: ids of --aggregate, or Aggregate/id.
    #[arg(long, value_delimiter = ',')]
    actors: Option<Vec<String>>,
    /// At most this many actors.
    #[arg(long)]
    limit: Option<usize>,
    /// The component deployed today: report what the new one's model
    /// changes (aggregates, commands, events added, removed or reshaped).
    #[arg(long)]
    against: Option<PathBuf>,
    /// Divergences and unreadable actors shown in full.
    #[arg(long, default_value_t = VerifyConfig::default().max_reported)]
    show: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

impl VerifyCommand {
    /// Runs the verification; the exit status CI gates on.
    pub fn execute(self) -> anyhow::Result<i32> {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(self.run())
    }

    async fn run(self) -> anyhow::Result<i32> {
        let engine = AetherEngine::new(EngineConfig::default().with_max_instances(16))?;
        let component = DomainComponent::from_file(&engine, &self.model)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.model.display()))?;
        let domain = component.model().name.clone();
        let model_changes = match &self.against {
            Some(old) => {
                let old =
                    DomainComponent::from_file(&engine, old).map_err(|e| anyhow::anyhow!("{}: {e}", old.display()))?;
                anyhow::ensure!(
                    old.model().name == domain,
                    "--against is a component of domain `{}`, the new one of `{domain}`",
                    old.model().name
                );
                Some(ModelDiff::between(old.model(), component.model()))
            }
            None => None,
        };
        let (store, embedded, against): (Arc<dyn EventStore>, _, _) = match &self.nats.nats {
            Some(url) => {
                let client = self.nats.connect(url).await?;
                let store = JetStreamEventStore::connect(client, &domain, self.nats.store_config())
                    .await
                    .context("cannot open the JetStream event store")?;
                (Arc::new(store), None, format!("JetStream at {url}"))
            }
            None => {
                let file = self.data.join(aether_host::store::embedded::FILE_NAME);
                anyhow::ensure!(file.exists(), "no event store at {} (no {})", self.data.display(), file.display());
                let store = Arc::new(EmbeddedStore::open(&self.data).context("cannot open the event store")?);
                (store.clone() as Arc<dyn EventStore>, Some(store), format!("the store at {}", self.data.display()))
            }
        };
        let config = VerifyConfig::default()
            .with_aggregate(self.aggregate.clone())
            .with_actors(self.actors.clone())
            .with_limit(self.limit)
            .with_max_reported(self.show);
        let report = aether_host::verify::verify(&component, &*store, &config).await;
        drop(store);
        if let Some(store) = embedded.and_then(|s| Arc::try_unwrap(s).ok()) {
            store.close().await?;
        }
        let mut report = report?;
        report.model_changes = model_changes;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print_report(&self.model.display().to_string(), &against, &report);
        }
        let totals = report.totals();
        Ok(if totals.unreadable_actors > 0 {
            UNREADABLE
        } else if totals.divergent > 0 {
            DIVERGENT
        } else {
            0
        })
    }
}

fn print_report(model: &str, against: &str, report: &VerifyReport) {
    println!("{model} (sha-256 {}) against {against}", report.component_hash);
    println!(
        "{:<20} {:>8} {:>10} {:>10} {:>10} {:>17} {:>11}",
        "aggregate", "actors", "events", "identical", "divergent", "not re-decidable", "unreadable"
    );
    let totals = report.totals();
    for (name, c) in report.aggregates.iter().chain([(&"total".to_string(), &totals)]) {
        println!(
            "{name:<20} {:>8} {:>10} {:>10} {:>10} {:>17} {:>11}",
            c.actors, c.events, c.identical, c.divergent, c.not_redecidable, c.unreadable_actors
        );
    }
    if let Some(diff) = &report.model_changes {
        print_model_changes(diff);
    }
    if !report.unreadable.is_empty() {
        println!("\nunreadable history (each actor's first event the new component cannot apply):");
        for u in &report.unreadable {
            println!("  {}/{} at version {}: {}", u.aggregate, u.id, u.version, u.cause);
        }
    }
    if !report.divergences.is_empty() {
        println!("\ncommands decided otherwise:");
        for d in &report.divergences {
            println!(
                "  {}/{} at version {}: {} {} (command {})",
                d.aggregate, d.id, d.version, d.command, d.payload, d.command_id
            );
            println!("    stored: {}", events(&d.stored));
            match &d.new {
                Decision::Accepted { events: new } => println!("    new:    {}", events(new)),
                Decision::Rejected { code, message } => println!("    new:    rejected, {code}: {message}"),
                Decision::Fault { cause } => println!("    new:    fault: {cause}"),
            }
        }
    }
    println!(
        "\n{} events and {} commands in {:.1} s ({} events/s, {} commands/s)",
        totals.events,
        totals.identical + totals.divergent,
        report.elapsed_ms as f64 / 1000.0,
        report.events_per_s,
        report.commands_per_s
    );
    let verdict = match (totals.unreadable_actors, totals.divergent) {
        (0, 0) => "every recorded command is decided alike and every event reads".to_string(),
        (0, n) => format!("{n} recorded commands are decided otherwise"),
        (n, _) => format!("{n} actors have events the new component cannot read"),
    };
    println!("{verdict}");
}

fn events(events: &[EventView]) -> String {
    serde_json::to_string(events).unwrap_or_default()
}

fn print_model_changes(diff: &ModelDiff) {
    if diff.is_empty() {
        println!("\nthe model is unchanged");
        return;
    }
    println!("\nmodel changes:");
    let line = |what: &str, names: &[String]| {
        if !names.is_empty() {
            println!("  {what}: {}", names.join(", "));
        }
    };
    line("aggregates added", &diff.aggregates_added);
    line("aggregates removed", &diff.aggregates_removed);
    for (name, a) in &diff.aggregates {
        line(&format!("{name}: commands added"), &a.commands_added);
        line(&format!("{name}: commands removed"), &a.commands_removed);
        line(&format!("{name}: command schemas changed"), &a.commands_changed);
        line(&format!("{name}: events added"), &a.events_added);
        line(&format!("{name}: events removed"), &a.events_removed);
        line(&format!("{name}: event schemas changed"), &a.events_changed);
        if a.state_changed {
            println!("  {name}: the state's schema changed");
        }
    }
    line("policies added", &diff.policies_added);
    line("policies removed", &diff.policies_removed);
    line("policies reacting or sending otherwise", &diff.policies_changed);
    line("read models added", &diff.read_models_added);
    line("read models removed", &diff.read_models_removed);
    line("read models changed (folded again from the start)", &diff.read_models_changed);
}
