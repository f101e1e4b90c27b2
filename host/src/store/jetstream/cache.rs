//! What the store remembers about actors' places in the stream, so that an
//! append needs no lookup and a read after a snapshot no scan.
//!
//! Actor versions count an actor's events; JetStream sequences count every
//! message of the stream. A [`Mark`] ties the two together for one message.
//! Marks are facts (a stored message never changes), but a stream can be
//! deleted and recreated, so every use of one is checked against the server:
//! an append by `Nats-Expected-Last-Subject-Sequence`, a read by the versions
//! of the first message it gets. A mark that turns out wrong is dropped.
//!
//! Bounded: the least recently used actors are forgotten, and each actor
//! keeps a few marks. The `std` mutex is held only for map operations.

use crate::store::ActorId;
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::Mutex;

/// The message at stream sequence `seq` holds the actor's events up to
/// `version`. `Mark::START` is before the actor's first message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mark {
    pub version: u64,
    pub seq: u64,
}

impl Mark {
    pub const START: Mark = Mark { version: 0, seq: 0 };
}

/// The last message on an actor's subject, when last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Head {
    pub mark: Mark,
    pub first_version: u64,
    pub command_id: String,
}

/// Marks kept per actor besides the head.
const MARKS: usize = 8;

#[derive(Debug, Default)]
struct Known {
    head: Option<Head>,
    /// Sorted by version.
    marks: Vec<Mark>,
}

impl Known {
    fn add(&mut self, mark: Mark) {
        if mark == Mark::START {
            return;
        }
        match self.marks.binary_search_by_key(&mark.version, |m| m.version) {
            Ok(i) => self.marks[i] = mark,
            Err(i) => self.marks.insert(i, mark),
        }
        if self.marks.len() > MARKS {
            // Reads move forward: the oldest place is the least useful.
            self.marks.remove(0);
        }
    }
}

#[derive(Debug)]
pub(super) struct Positions {
    actors: Mutex<LruCache<ActorId, Known, foldhash::fast::RandomState>>,
}

impl Positions {
    pub(super) fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        // foldhash rather than SipHash: the cache is asked on every append.
        Self { actors: Mutex::new(LruCache::with_hasher(capacity, foldhash::fast::RandomState::default())) }
    }

    fn with<R>(&self, actor: &ActorId, f: impl FnOnce(&mut Known) -> R) -> R {
        // Every update is a single assignment or insert, so a panic elsewhere
        // cannot leave an entry half-written: a poisoned lock is safe to use.
        let mut actors = self.actors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = actors.get_mut(actor) {
            return f(known);
        }
        let mut known = Known::default();
        let result = f(&mut known);
        if known.head.is_some() || !known.marks.is_empty() {
            actors.put(actor.clone(), known);
        }
        result
    }

    pub(super) fn head(&self, actor: &ActorId) -> Option<Head> {
        self.with(actor, |k| k.head.clone())
    }

    /// Records the last message on the actor's subject; `None` forgets it.
    pub(super) fn set_head(&self, actor: &ActorId, head: Option<Head>) {
        self.with(actor, |k| {
            if let Some(h) = &head {
                k.add(h.mark);
            }
            k.head = head;
        });
    }

    pub(super) fn add_mark(&self, actor: &ActorId, mark: Mark) {
        self.with(actor, |k| k.add(mark));
    }

    /// The latest known mark at or before `version`: a read of the events
    /// after `version` may start just after it.
    pub(super) fn at_or_before(&self, actor: &ActorId, version: u64) -> Option<Mark> {
        self.with(actor, |k| k.marks.iter().rev().find(|m| m.version <= version).copied())
    }

    /// Forgets everything about the actor, after the server contradicted it.
    pub(super) fn forget(&self, actor: &ActorId) {
        self.actors.lock().unwrap_or_else(|e| e.into_inner()).pop(actor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_latest_mark_at_or_before_a_version() {
        let positions = Positions::new(10);
        let a = ActorId::new("A", "1");
        assert_eq!(positions.at_or_before(&a, 5), None);
        positions.add_mark(&a, Mark { version: 3, seq: 30 });
        positions.add_mark(&a, Mark { version: 7, seq: 70 });
        positions.add_mark(&a, Mark::START);
        assert_eq!(positions.at_or_before(&a, 2), None);
        assert_eq!(positions.at_or_before(&a, 5), Some(Mark { version: 3, seq: 30 }));
        assert_eq!(positions.at_or_before(&a, 7), Some(Mark { version: 7, seq: 70 }));
        for v in 10..30 {
            positions.add_mark(&a, Mark { version: v, seq: v * 10 });
        }
        assert_eq!(positions.at_or_before(&a, 5), None, "old marks make room for new ones");
        assert_eq!(positions.at_or_before(&a, 100), Some(Mark { version: 29, seq: 290 }));
        positions.forget(&a);
        assert_eq!(positions.at_or_before(&a, 100), None);
    }

    #[test]
    fn remembers_a_bounded_number_of_actors() {
        let positions = Positions::new(2);
        let head = |v| Head { mark: Mark { version: v, seq: v }, first_version: v, command_id: "c".into() };
        for i in 0..3 {
            positions.set_head(&ActorId::new("A", i.to_string()), Some(head(i + 1)));
        }
        assert_eq!(positions.head(&ActorId::new("A", "0")), None);
        assert_eq!(positions.head(&ActorId::new("A", "2")), Some(head(3)));
        assert_eq!(positions.at_or_before(&ActorId::new("A", "2"), 3), Some(Mark { version: 3, seq: 3 }));
        assert_eq!(positions.head(&ActorId::new("A", "unknown")), None);
        assert_eq!(positions.actors.lock().unwrap().len(), 2, "lookups of unknown actors add nothing");
    }
}
