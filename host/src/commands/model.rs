//! `aether-host model`: print the model a running host serves, as JSON or
//! drawn as an EventStorming board.

use super::remote::{self, Remote};
use aether_host::model::DomainModel;
use anyhow::Context;

/// Prints the EventStorming model of the component a running host serves:
/// aggregates with their commands and events, policies and read models, and
/// each payload's JSON schema; or the model drawn as a board (`--format
/// html` is the page `GET /board` serves; `--format svg` the drawing alone).
/// (`aether-host check <model.wasm>` prints it from a file instead.)
#[derive(Debug, clap::Args)]
pub struct ModelCommand {
    #[command(flatten)]
    remote: Remote,
    /// What to print: the model as JSON, or the board as an HTML page or an SVG drawing.
    #[arg(long, value_enum, default_value_t = ModelFormat::Json)]
    format: ModelFormat,
}

/// How `model` and `check` print a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelFormat {
    /// A summary for people (`check`'s default).
    Summary,
    /// The model as JSON, with payload schemas (`model`'s default).
    Json,
    /// The EventStorming board as an HTML page.
    Html,
    /// The EventStorming board as an SVG drawing.
    Svg,
}

impl ModelFormat {
    /// The model as this format prints it.
    ///
    /// # Errors
    ///
    /// Never, but for JSON that cannot be written (it always can).
    pub fn render(self, model: &DomainModel) -> anyhow::Result<String> {
        Ok(match self {
            ModelFormat::Summary => model.to_string(),
            ModelFormat::Json => serde_json::to_string_pretty(model)? + "\n",
            ModelFormat::Html => aether_host::board::html(model),
            ModelFormat::Svg => aether_host::board::svg(model),
        })
    }
}

impl ModelCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        let client = self.remote.client()?;
        let answer = remote::block_on(client.model())?.map_err(remote::explain)?;
        if self.format == ModelFormat::Json {
            // As the host said it, fields this build does not know included.
            return remote::print(&answer);
        }
        let model: DomainModel =
            serde_json::from_value(answer).context("the host's model is not one this build can read")?;
        print!("{}", self.format.render(&model)?);
        Ok(())
    }
}
