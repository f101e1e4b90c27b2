//! The command ids an actor remembers, to answer a repeated command without
//! asking the store (invariant: idempotent-commands; the store is the final guard).
//!
//! Every command looks here first, and with thousands of actors in rotation
//! the ring is cold in the cache: comparing against 32 strings, each in its
//! own allocation, costs a cache miss per entry. So each id's hash sits in a
//! flat array (32 × 8 bytes, four cache lines) and a string is compared only
//! when its hash matches.

use crate::store::Appended;
use std::collections::VecDeque;
use std::sync::Arc;

/// A bounded ring of command ids, newest last.
#[derive(Debug)]
pub(crate) struct RecentCommands {
    hashes: VecDeque<u64>,
    entries: VecDeque<(Arc<str>, Appended)>,
    capacity: usize,
}

impl RecentCommands {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { hashes: VecDeque::new(), entries: VecDeque::new(), capacity: capacity.max(1) }
    }

    pub(crate) fn clear(&mut self) {
        self.hashes.clear();
        self.entries.clear();
    }

    /// Where the command was stored, if it is remembered.
    pub(crate) fn find(&self, command_id: &str) -> Option<Appended> {
        let hash = fnv1a(command_id);
        // Newest first: a retry usually follows its original closely.
        (0..self.hashes.len())
            .rev()
            .filter(|&i| self.hashes[i] == hash)
            .find_map(|i| (*self.entries[i].0 == *command_id).then_some(self.entries[i].1))
    }

    /// Remembers a command, forgetting the oldest beyond the capacity.
    pub(crate) fn remember(&mut self, command_id: Arc<str>, appended: Appended) {
        if self.entries.len() >= self.capacity {
            self.hashes.pop_front();
            self.entries.pop_front();
        }
        self.hashes.push_back(fnv1a(&command_id));
        self.entries.push_back((command_id, appended));
    }

    /// Extends the newest command's range if `command_id` is it (replay
    /// meets a command's events one at a time), else remembers it.
    pub(crate) fn extend_or_remember(&mut self, command_id: &str, version: u64) {
        match self.entries.back_mut() {
            Some((last, range)) if **last == *command_id => range.last_version = version,
            _ => self.remember(
                command_id.into(),
                Appended { first_version: version, last_version: version, duplicate: true, position: 0 },
            ),
        }
    }
}

/// FNV-1a: a few cycles per byte, enough to tell ids apart before comparing them.
fn fnv1a(s: &str) -> u64 {
    crate::fnv::fnv1a_64(s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(v: u64) -> Appended {
        Appended { first_version: v, last_version: v, duplicate: true, position: 0 }
    }

    #[test]
    fn finds_what_it_remembers_and_forgets_the_oldest() {
        let mut recent = RecentCommands::new(3);
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            recent.remember((*id).into(), at(i as u64 + 1));
        }
        assert_eq!(recent.find("a"), None, "the oldest is forgotten past the capacity");
        assert_eq!(recent.find("b"), Some(at(2)));
        assert_eq!(recent.find("d"), Some(at(4)));
        assert_eq!(recent.find("e"), None);
        recent.clear();
        assert_eq!(recent.find("d"), None);
    }

    #[test]
    fn a_command_met_event_by_event_keeps_one_range() {
        let mut recent = RecentCommands::new(4);
        recent.extend_or_remember("x", 1);
        recent.extend_or_remember("x", 2);
        recent.extend_or_remember("y", 3);
        recent.extend_or_remember("x", 4);
        assert_eq!(recent.find("y"), Some(at(3)));
        // The newest `x` wins: a command id reused after another command.
        assert_eq!(recent.find("x"), Some(at(4)));
        assert_eq!(recent.entries.len(), 3);
    }

    #[test]
    fn equal_hashes_still_compare_the_ids() {
        let mut recent = RecentCommands::new(4);
        recent.remember("a".into(), at(1));
        // Forge a collision: same hash, different id.
        recent.hashes[0] = fnv1a("z");
        assert_eq!(recent.find("z"), None);
    }
}
