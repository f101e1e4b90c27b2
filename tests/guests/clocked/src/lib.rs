//! A guest whose `apply` reads the wall clock and fresh randomness into its
//! state, to prove both are each event's own (WIT `fold.enter-event`): the
//! same when an event is folded as it is decided, replayed in a batch of any
//! size, or replayed after a snapshot.

use aether_guest::{Aggregate, Context, JsonSchema, Rejection};
use serde::{Deserialize, Serialize};

/// What `apply` saw while folding each event.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Stamps {
    pub seen: Vec<Seen>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Seen {
    /// The event's number in the actor's history, from 0.
    pub n: u32,
    /// The wall clock, milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// Eight fresh random bytes.
    pub random: u64,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub enum StampCommand {
    /// Decides `events` events at once.
    Stamp { events: u32 },
}

#[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum StampEvent {
    Stamped { n: u32 },
}

impl Aggregate for Stamps {
    const NAME: &'static str = "Stamps";
    type Command = StampCommand;
    type Event = StampEvent;

    fn handle(&self, _ctx: &Context, command: StampCommand) -> Result<Vec<StampEvent>, Rejection> {
        let StampCommand::Stamp { events } = command;
        let next = self.seen.len() as u32;
        Ok((next..next + events).map(|n| StampEvent::Stamped { n }).collect())
    }

    fn apply(&mut self, event: &StampEvent) {
        let StampEvent::Stamped { n } = *event;
        let now_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).expect("the host grants randomness");
        self.seen.push(Seen { n, now_ms, random: u64::from_le_bytes(random) });
    }
}

aether_guest::domain!(name: "clocked", aggregates: [Stamps]);
