//! Long replays in progress: the cursor (and its ordered consumer) an
//! actor's read stopped at, kept for its next read.
//!
//! An actor replays by reading a page at a time, each read starting after
//! the last version of the previous one. A read that ended on a streaming
//! cursor parks it here; a read that starts exactly where it stopped takes
//! it back, so one consumer serves the whole replay instead of one per page.
//! A cursor is used by one read at a time (taken out, parked again).
//!
//! Bounded: at most [`MAX_PARKED`] cursors, none older than [`IDLE`]; an
//! abandoned cursor's consumer is removed by the server once idle (30 s).

use super::fetch::Cursor;
use crate::store::ActorId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Cursors kept at most; more long replays at once read page by page.
const MAX_PARKED: usize = 64;

/// A parked cursor unused this long is dropped.
const IDLE: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Parked {
    cursor: Cursor,
    /// The version the next read must start at to continue.
    due: u64,
    since: Instant,
}

#[derive(Debug, Default)]
pub(super) struct Replays {
    parked: Mutex<HashMap<ActorId, Parked>>,
}

impl Replays {
    /// The actor's parked cursor, if it continues at version `due`.
    pub(super) fn take(&self, actor: &ActorId, due: u64) -> Option<Cursor> {
        let parked = self.lock().remove(actor)?;
        (parked.due == due && parked.since.elapsed() < IDLE).then_some(parked.cursor)
    }

    /// Keeps a cursor whose next message holds version `due`.
    pub(super) fn park(&self, actor: &ActorId, cursor: Cursor, due: u64) {
        let mut parked = self.lock();
        parked.retain(|_, p| p.since.elapsed() < IDLE);
        if parked.len() < MAX_PARKED || parked.contains_key(actor) {
            parked.insert(actor.clone(), Parked { cursor, due, since: Instant::now() });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ActorId, Parked>> {
        // Every update is one insert or remove: a poisoned map is whole.
        self.parked.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_continues_only_where_it_stopped() {
        let replays = Replays::default();
        let actor = ActorId::new("A", "1");
        replays.park(&actor, Cursor::new("s", 10, false), 5);
        assert!(replays.take(&actor, 4).is_none(), "another start drops it");
        assert!(replays.take(&actor, 5).is_none(), "and it is gone");
        replays.park(&actor, Cursor::new("s", 10, false), 5);
        assert!(replays.take(&actor, 5).is_some());
        for i in 0..MAX_PARKED + 10 {
            replays.park(&ActorId::new("A", i.to_string()), Cursor::new("s", 1, false), 1);
        }
        assert_eq!(replays.lock().len(), MAX_PARKED);
    }
}
