//! `aether-host check <model.wasm>`: load a component the way the host
//! would, and print its EventStorming model.

use super::model::ModelFormat;
use aether_host::{AetherEngine, DomainComponent, EngineConfig};
use std::path::PathBuf;

/// Validates a component against the contract and prints its model.
///
/// Refuses files that are not wasm, core modules, components with missing
/// or mistyped exports, and invalid models, with a message naming the
/// problem and a non-zero exit.
#[derive(Debug, clap::Args)]
pub struct CheckCommand {
    /// The component, e.g. target/wasm32-wasip2/release/bank.wasm.
    model: PathBuf,
    /// Print the model as JSON (with payload schemas) instead of a summary; `--format json`.
    #[arg(long, conflicts_with = "format")]
    json: bool,
    /// What to print: a summary, the model as JSON, or the EventStorming
    /// board as an HTML page or an SVG drawing.
    #[arg(long, value_enum, default_value_t = ModelFormat::Summary)]
    format: ModelFormat,
}

impl CheckCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        let engine = AetherEngine::new(EngineConfig::default().with_max_instances(4))?;
        let component = DomainComponent::from_file(&engine, &self.model)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.model.display()))?;
        let model = component.model();
        let format = if self.json { ModelFormat::Json } else { self.format };
        if format == ModelFormat::Summary {
            println!("{}\nsha-256 {}", self.model.display(), component.hash());
        }
        print!("{}", format.render(model)?);
        Ok(())
    }
}
