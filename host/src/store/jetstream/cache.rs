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
//! The cache only ever saves a request: nothing it says is acted on
//! without the server confirming it. In particular a duplicate is answered
//! from the server's last message, never from the cache.
//!
//! Keys are 128-bit hashes of the actor (two hashes with per-process random
//! seeds), so a lookup on an append's path compares no strings; two of
//! 100,000 actors would share an entry with probability ~10⁻²⁹, and even
//! then the server's checks turn the wrong entry into one more request.
//!
//! Bounded, in two generations: entries live in the current map until it
//! holds half the capacity, which then becomes the previous one (dropping
//! the one before); an entry used again moves back to the current map. So
//! an actor is forgotten after between half and all of the capacity in
//! newer actors, and a lookup touches one hash map entry. (An exact LRU
//! relinks two neighbours on every use: cache misses on an append's path
//! for nothing a store needs.) Each actor keeps its head and a few marks
//! besides; an append moves the head and leaves the marks alone, so its
//! path touches the entry and nothing it points to. The `std` mutex is held
//! only for map operations.

use crate::store::ActorId;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

type Key = u128;
type Map = HashMap<Key, Known, foldhash::fast::RandomState>;

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

/// Marks kept per actor besides the head.
const MARKS: usize = 8;

#[derive(Debug, Default)]
struct Known {
    /// The last message on the actor's subject, when last seen; a mark too.
    head: Option<Mark>,
    /// Other known places, sorted by version (allocated only once a read or
    /// the server tells of one).
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
    generations: Mutex<Generations>,
    /// Entries per generation.
    half: usize,
    seeds: [foldhash::quality::RandomState; 2],
}

#[derive(Debug, Default)]
struct Generations {
    current: Map,
    previous: Map,
}

impl Positions {
    pub(super) fn new(capacity: usize) -> Self {
        Self { generations: Mutex::default(), half: (capacity / 2).max(1), seeds: Default::default() }
    }

    fn key(&self, actor: &ActorId) -> Key {
        let [low, high] = &self.seeds;
        u128::from(low.hash_one(actor)) | u128::from(high.hash_one(actor)) << 64
    }

    fn with<R>(&self, actor: &ActorId, f: impl FnOnce(&mut Known) -> R) -> R {
        let key = self.key(actor);
        // Every update is a single assignment or insert, so a panic elsewhere
        // cannot leave an entry half-written: a poisoned lock is safe to use.
        let mut generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        let Generations { current, previous } = &mut *generations;
        if let Some(known) = current.get_mut(&key) {
            return f(known);
        }
        let mut known = previous.remove(&key).unwrap_or_default();
        let result = f(&mut known);
        if known.head.is_some() || !known.marks.is_empty() {
            if current.len() >= self.half {
                *previous = std::mem::take(current);
            }
            current.insert(key, known);
        }
        result
    }

    /// The last message on the actor's subject, when last seen.
    pub(super) fn head(&self, actor: &ActorId) -> Option<Mark> {
        self.with(actor, |k| k.head)
    }

    /// Records the last message on the actor's subject, as the server told
    /// it; `None` forgets it. The place the head held stays known as a mark:
    /// an actor overtaken by another writer reads on from it.
    pub(super) fn set_head(&self, actor: &ActorId, head: Option<Mark>) {
        self.with(actor, |k| {
            if let Some(old) = k.head
                && Some(old) != head
            {
                k.add(old);
            }
            k.head = head;
        });
    }

    /// Records this store's own append: the message `head` follows the head
    /// it expected. The place the head held is not kept; the actor that
    /// appended already holds the events up to it.
    pub(super) fn advance_head(&self, actor: &ActorId, head: Mark) {
        self.with(actor, |k| k.head = Some(head));
    }

    pub(super) fn add_mark(&self, actor: &ActorId, mark: Mark) {
        self.with(actor, |k| k.add(mark));
    }

    /// The latest known mark at or before `version`: a read of the events
    /// after `version` may start just after it.
    pub(super) fn at_or_before(&self, actor: &ActorId, version: u64) -> Option<Mark> {
        self.with(actor, |k| {
            let mark = k.marks.iter().rev().find(|m| m.version <= version).copied();
            let head = k.head.filter(|h| h.version <= version);
            mark.into_iter().chain(head).max_by_key(|m| m.version)
        })
    }

    /// Forgets everything about the actor, after the server contradicted it.
    pub(super) fn forget(&self, actor: &ActorId) {
        let key = self.key(actor);
        let mut generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        generations.current.remove(&key);
        generations.previous.remove(&key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let generations = self.generations.lock().unwrap();
        generations.current.len() + generations.previous.len()
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
    fn the_head_is_a_mark_and_a_head_the_server_replaces_stays_one() {
        let positions = Positions::new(10);
        let a = ActorId::new("A", "1");
        let at = |v| Mark { version: v, seq: v * 10 };
        positions.advance_head(&a, at(1));
        positions.advance_head(&a, at(2));
        assert_eq!(positions.at_or_before(&a, 5), Some(at(2)), "the head is the latest place");
        // Another writer moved on: the server's head replaces ours, whose
        // place a catch-up reads on from.
        positions.set_head(&a, Some(at(4)));
        assert_eq!(positions.at_or_before(&a, 3), Some(at(2)));
        assert_eq!(positions.at_or_before(&a, 4), Some(at(4)));
        positions.set_head(&a, None);
        assert_eq!(positions.head(&a), None);
        assert_eq!(positions.at_or_before(&a, 9), Some(at(4)), "a forgotten head is still a place");
    }

    #[test]
    fn remembers_a_bounded_number_of_actors() {
        let positions = Positions::new(2);
        let head = |v| Mark { version: v, seq: v };
        for i in 0..3 {
            positions.set_head(&ActorId::new("A", i.to_string()), Some(head(i + 1)));
        }
        assert_eq!(positions.head(&ActorId::new("A", "0")), None);
        assert_eq!(positions.head(&ActorId::new("A", "2")), Some(head(3)));
        assert_eq!(positions.at_or_before(&ActorId::new("A", "2"), 3), Some(Mark { version: 3, seq: 3 }));
        assert_eq!(positions.head(&ActorId::new("A", "unknown")), None);
        assert_eq!(positions.len(), 2, "lookups of unknown actors add nothing");
    }

    #[test]
    fn an_actor_in_use_is_kept_and_one_out_of_use_forgotten() {
        let positions = Positions::new(100);
        let head = Mark { version: 1, seq: 1 };
        let busy = ActorId::new("A", "busy");
        positions.set_head(&busy, Some(head));
        for i in 0..1_000 {
            positions.set_head(&ActorId::new("A", i.to_string()), Some(head));
            if i % 25 == 0 {
                assert_eq!(positions.head(&busy), Some(head), "used within the last 25 actors");
            }
            assert!(positions.len() <= 100, "never more than the capacity");
        }
        assert_eq!(positions.head(&ActorId::new("A", "999")), Some(head));
        assert_eq!(positions.head(&ActorId::new("A", "0")), None, "1,000 newer actors pushed it out");
        assert_eq!(positions.head(&ActorId::new("A", "1")), None);
    }

    #[test]
    fn actors_whose_parts_join_alike_are_apart() {
        let positions = Positions::new(10);
        positions.set_head(&ActorId::new("ab", "c"), Some(Mark { version: 1, seq: 1 }));
        assert_eq!(positions.head(&ActorId::new("a", "bc")), None);
        assert_eq!(positions.head(&ActorId::new("ab", "c")), Some(Mark { version: 1, seq: 1 }));
    }
}
