//! A guest whose model is invalid: its aggregate's name has a dot, which the
//! host cannot route by. Loading it must fail with a message naming that.

use aether_guest::{Aggregate, Context, JsonSchema, Rejection};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct Dotted;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub enum DottedCommand {
    Touch,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub enum DottedEvent {
    Touched,
}

impl Aggregate for Dotted {
    const NAME: &'static str = "Not.A.Name";
    type Command = DottedCommand;
    type Event = DottedEvent;

    fn handle(&self, _: &Context, _: DottedCommand) -> Result<Vec<DottedEvent>, Rejection> {
        Ok(vec![DottedEvent::Touched])
    }

    fn apply(&mut self, _: &DottedEvent) {}
}

aether_guest::domain!(name: "bad-model", aggregates: [Dotted]);
