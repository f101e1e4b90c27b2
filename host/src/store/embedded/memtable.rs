//! The store's tail in memory: every write that is durable in the log but
//! not yet checkpointed into redb.
//!
//! Why it exists: a redb commit costs in proportion to the pages it dirties,
//! and with thousands of actors a commit of a thousand appends dirties
//! thousands of pages. Kept here instead, writes reach redb in checkpoints of
//! tens of thousands of appends, where every dirtied page carries many of
//! them. Readers see the tail at once, so a write is visible as soon as it is
//! answered.
//!
//! A memtable holds, per actor, a contiguous run of its newest commands, so
//! the newest memtable that knows an actor knows its head. There are at most
//! two: the active one the writer adds to, and a frozen one being
//! checkpointed (see [`Tail`]).

use crate::store::{ActorId, Appended, NewEvent, Provenance, RecordedEvent, Snapshot};
use std::sync::Arc;

/// Maps keyed by actor and command ids, hashed with foldhash (seeded per
/// process) rather than SipHash: they sit on every append's path.
pub(super) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// One command's events as stored: they occupy `first_version` onwards.
#[derive(Debug)]
pub(super) struct Command {
    pub first_version: u64,
    pub provenance: Arc<Provenance>,
    /// None for a command accepted with no events, kept so that its id is
    /// recorded (with the empty range `first_version..=first_version - 1`);
    /// it occupies no version.
    pub events: Vec<NewEvent>,
}

impl Command {
    /// `first_version - 1` for a command with no events: the version it was accepted at.
    pub(super) fn last_version(&self) -> u64 {
        self.first_version + self.events.len() as u64 - 1
    }

    /// About the bytes it takes encoded.
    pub(super) fn size_hint(&self) -> usize {
        let p = &self.provenance;
        let provenance = 28 + p.command_id.len() + p.correlation_id.len() + p.causation_id.len();
        let command = p.command.as_ref().map_or(1, |c| 9 + c.name.len() + c.payload.len());
        let events: usize = self.events.iter().map(|e| 8 + e.name.len() + e.payload.len()).sum();
        provenance + p.component_hash.len() + command + events
    }

    fn appended(&self) -> Appended {
        Appended { first_version: self.first_version, last_version: self.last_version(), duplicate: true, position: 0 }
    }
}

/// A decided write: what the log records and a checkpoint stores.
#[derive(Debug, Clone)]
pub(super) enum Write {
    /// `id_key`: the command id's key in redb's index (`tables::id_key`),
    /// computed once. `position`: the command's place in the store's log of
    /// appends, 0 for one with no events (not in the log); not in the log
    /// record, for a log replayed counts positions again, in the same order.
    Append {
        actor: ActorId,
        command: Arc<Command>,
        id_key: u128,
        position: u64,
    },
    Snapshot {
        actor: ActorId,
        snapshot: Arc<Snapshot>,
    },
}

impl Write {
    /// About the bytes it takes in a log record.
    pub(super) fn size_hint(&self) -> usize {
        let actor = |a: &ActorId| 12 + a.aggregate.len() + a.id.len();
        match self {
            Write::Append { actor: a, command, .. } => actor(a) + 8 + command.size_hint(),
            Write::Snapshot { actor: a, snapshot } => {
                actor(a) + 16 + snapshot.component_hash.len() + snapshot.state.len()
            }
        }
    }
}

/// A command in the store's log: its position and actor.
pub(super) type LogEntry = (u64, ActorId, Arc<Command>);

/// One actor's part of a memtable.
#[derive(Debug, Default)]
pub(super) struct ActorTail {
    /// In version order, contiguous.
    pub commands: Vec<Arc<Command>>,
    /// The index keys of `commands`' ids, in the same order.
    pub id_keys: Vec<u128>,
    /// Command id → index into `commands`.
    ids: HashMap<String, usize>,
    pub snapshot: Option<Arc<Snapshot>>,
}

impl ActorTail {
    fn insert(&mut self, write: &Write) {
        match write {
            Write::Append { command, id_key, .. } => {
                self.ids.insert(command.provenance.command_id.to_string(), self.commands.len());
                self.commands.push(command.clone());
                self.id_keys.push(*id_key);
            }
            Write::Snapshot { snapshot, .. } => self.snapshot = Some(snapshot.clone()),
        }
    }

    /// The version of the newest event held here.
    pub(super) fn head(&self) -> Option<u64> {
        self.commands.last().map(|c| c.last_version())
    }

    pub(super) fn command(&self, command_id: &str) -> Option<Appended> {
        self.ids.get(command_id).map(|&i| self.commands[i].appended())
    }
}

/// Writes not yet in redb, by actor.
#[derive(Debug, Default)]
pub(super) struct Memtable {
    pub actors: HashMap<ActorId, ActorTail>,
    /// Appends held, to decide when to checkpoint.
    pub appends: usize,
    /// The appends with events, by position (ascending): the tail of the
    /// store's log.
    pub log: Vec<LogEntry>,
}

impl Memtable {
    pub(super) fn insert(&mut self, write: &Write) {
        let actor = match write {
            Write::Append { actor, .. } | Write::Snapshot { actor, .. } => actor,
        };
        // Lookup first: cloning the key for every write would cost more than a second hash on a miss.
        match self.actors.get_mut(actor) {
            Some(tail) => tail.insert(write),
            None => self.actors.entry(actor.clone()).or_default().insert(write),
        }
        self.appends += usize::from(matches!(write, Write::Append { .. }));
        if let Write::Append { actor, command, position, .. } = write
            && *position > 0
        {
            self.log.push((*position, actor.clone(), command.clone()));
        }
    }

    /// The version of the actor's newest event held here.
    pub(super) fn head(&self, actor: &ActorId) -> Option<u64> {
        self.actors.get(actor)?.head()
    }

    /// The version of the actor's oldest event held here.
    pub(super) fn first(&self, actor: &ActorId) -> Option<u64> {
        self.actors.get(actor)?.commands.first().map(|c| c.first_version)
    }

    pub(super) fn command(&self, actor: &ActorId, command_id: &str) -> Option<Appended> {
        self.actors.get(actor)?.command(command_id)
    }

    pub(super) fn snapshot(&self, actor: &ActorId) -> Option<Arc<Snapshot>> {
        self.actors.get(actor)?.snapshot.clone()
    }

    /// Adds to `out` the actor's events after version `after`, until `out` holds `max`.
    pub(super) fn events_after(&self, actor: &ActorId, after: u64, max: usize, out: &mut Vec<RecordedEvent>) {
        let Some(tail) = self.actors.get(actor) else { return };
        // Commands are in version order: skip those that end at or before `after`.
        let start = tail.commands.partition_point(|c| c.last_version() <= after);
        for command in &tail.commands[start..] {
            for (event, version) in command.events.iter().zip(command.first_version..) {
                if out.len() >= max {
                    return;
                }
                if version > after {
                    out.push(RecordedEvent {
                        version,
                        name: event.name.clone(),
                        payload: event.payload.clone(),
                        provenance: command.provenance.clone(),
                    });
                }
            }
        }
    }
}

/// The memtables readers consult before redb, newest first.
#[derive(Debug, Default)]
pub(super) struct Tail {
    /// Where the writer adds what it has made durable in the log.
    pub active: Memtable,
    /// The previous active memtable, while a checkpoint writes it to redb;
    /// dropped once that commit is durable.
    pub frozen: Option<Arc<Memtable>>,
    /// The newest position of the log, held in memory or not.
    pub positions: u64,
}

impl Tail {
    /// The actor's parts of the active and the frozen memtable, newest first.
    pub(super) fn actor(&self, actor: &ActorId) -> [Option<&ActorTail>; 2] {
        [self.active.actors.get(actor), self.frozen.as_deref().and_then(|f| f.actors.get(actor))]
    }

    /// Adds a logged write to the active memtable.
    pub(super) fn insert(&mut self, write: &Write) {
        self.active.insert(write);
        if let Write::Append { position, .. } = write {
            self.positions = self.positions.max(*position);
        }
    }

    /// The log's entries held in memory after `after`, at most `max`, and
    /// the oldest position memory holds (every later one is here too).
    pub(super) fn log_after(&self, after: u64, max: usize) -> (Vec<LogEntry>, Option<u64>) {
        let logs = || self.frozen.as_deref().into_iter().chain([&self.active]).map(|m| &m.log);
        let first = logs().find_map(|log| log.first()).map(|(position, ..)| *position);
        let held = logs().flat_map(|log| &log[log.partition_point(|(position, ..)| *position <= after)..]);
        (held.take(max).cloned().collect(), first)
    }

    /// The first answer of the active memtable, else of the frozen one.
    pub(super) fn find<T>(&self, f: impl Fn(&Memtable) -> Option<T>) -> Option<T> {
        f(&self.active).or_else(|| self.frozen.as_deref().and_then(f))
    }

    /// The actor's events after `after` held in memory, up to `max`, and the
    /// oldest version memory holds for it (every later one is here too).
    pub(super) fn events_after(&self, actor: &ActorId, after: u64, max: usize) -> (Vec<RecordedEvent>, Option<u64>) {
        let mut out = Vec::new();
        let frozen = self.frozen.as_deref();
        if let Some(frozen) = frozen {
            frozen.events_after(actor, after, max, &mut out);
        }
        let newest_before = out.last().map_or(after, |e| e.version);
        self.active.events_after(actor, newest_before, max, &mut out);
        let first = frozen.and_then(|f| f.first(actor)).or_else(|| self.active.first(actor));
        (out, first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(actor: &ActorId, first_version: u64, command_id: &str, events: usize) -> Write {
        let provenance = Arc::new(Provenance {
            command_id: command_id.into(),
            correlation_id: "".into(),
            causation_id: "".into(),
            timestamp_ms: 0,
            component_hash: "".into(),
            command: None,
        });
        let events = (0..events).map(|i| NewEvent { name: format!("E{i}"), payload: vec![i as u8] }).collect();
        let command = Arc::new(Command { first_version, provenance, events });
        Write::Append { actor: actor.clone(), command, id_key: 0, position: 0 }
    }

    #[test]
    fn the_frozen_and_active_memtables_read_as_one_run() {
        let actor = ActorId::new("A", "1");
        let mut frozen = Memtable::default();
        frozen.insert(&append(&actor, 3, "c1", 2));
        frozen.insert(&append(&actor, 5, "c2", 1));
        let mut tail = Tail { active: Memtable::default(), frozen: Some(Arc::new(frozen)), positions: 0 };
        tail.active.insert(&append(&actor, 6, "c3", 3));

        let versions = |after, max| {
            let (events, first) = tail.events_after(&actor, after, max);
            (events.iter().map(|e| e.version).collect::<Vec<_>>(), first)
        };
        assert_eq!(versions(0, 100), (vec![3, 4, 5, 6, 7, 8], Some(3)));
        assert_eq!(versions(3, 2), (vec![4, 5], Some(3)));
        assert_eq!(versions(6, 100), (vec![7, 8], Some(3)));
        assert_eq!(versions(8, 100), (vec![], Some(3)));
        assert_eq!(tail.find(|m| m.head(&actor)), Some(8), "the active memtable knows the head");
        assert_eq!(tail.find(|m| m.command(&actor, "c1")).map(|a| (a.first_version, a.last_version)), Some((3, 4)));
        assert_eq!(tail.find(|m| m.command(&actor, "nope")), None);
        assert_eq!(tail.find(|m| m.head(&ActorId::new("A", "2"))), None);
    }
}
