//! What one node has seen of the cluster's bucket: the newest revision of
//! every key, decoded, with the local time each member's key last changed.
//!
//! Watch events may come late, twice, out of order, or not at all until a
//! re-read; an event for a key is applied only if its revision is newer than
//! the one held, so the view only moves forward and a re-read repairs it.

use super::map::ShardMap;
use super::names::Key;
use super::record::{Heartbeat, LeaderClaim, Member, NodeId, Release};
use super::shard::ShardId;
use bytes::Bytes;
use std::collections::BTreeMap;

/// The newest entry seen of one member's key.
#[derive(Debug, Clone)]
pub(crate) struct MemberEntry {
    pub revision: u64,
    /// The entry as stored: renewals repeat the same bytes, decoded once.
    raw: Option<Bytes>,
    /// `None`: deleted (left or expelled), or not a readable heartbeat.
    pub heartbeat: Option<Heartbeat>,
    /// Local time this node saw the revision change.
    pub seen_at: u64,
}

impl MemberEntry {
    /// The incarnation the entry belongs to: a create carries 0, and its
    /// revision is the incarnation; renewals carry it.
    pub(crate) fn incarnation(&self) -> Option<u64> {
        let beat = self.heartbeat.as_ref()?;
        Some(if beat.incarnation == 0 { self.revision } else { beat.incarnation })
    }
}

/// The newest entry seen of the leader key.
#[derive(Debug, Clone)]
pub(crate) struct LeaderEntry {
    pub revision: u64,
    raw: Option<Bytes>,
    pub claim: Option<LeaderClaim>,
    pub seen_at: u64,
}

/// What changed when an event was applied, for the node to react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Stale or duplicate: nothing.
    None,
    /// A member's key changed; `alive` when its incarnation came or went
    /// (not for a mere renewal).
    Member {
        node: NodeId,
        alive: bool,
    },
    Leader,
    /// A newer map (its epoch).
    Map(u64),
    /// The map key holds something this node cannot read.
    BadMap,
    Release(ShardId),
}

#[derive(Debug, Default)]
pub(crate) struct View {
    pub members: BTreeMap<NodeId, MemberEntry>,
    pub leader: Option<LeaderEntry>,
    /// The newest readable map and its revision.
    pub map: Option<(u64, ShardMap)>,
    /// The newest revision of the map key, readable or not.
    pub map_revision: u64,
    pub releases: BTreeMap<ShardId, (u64, Option<Release>)>,
}

impl View {
    /// Applies one entry of the bucket seen at local time `now`.
    pub(crate) fn apply(&mut self, now: u64, key: &Key, value: Option<&Bytes>, revision: u64) -> Change {
        match key {
            Key::Member(node) => {
                if self.members.get(node).is_some_and(|e| e.revision >= revision) {
                    return Change::None;
                }
                let before = self.members.get(node);
                let heartbeat = match before {
                    Some(e) if e.raw.as_ref() == value => e.heartbeat.clone(),
                    _ => value.and_then(|v| Heartbeat::decode(v).ok()),
                };
                let before = before.and_then(MemberEntry::incarnation);
                let entry = MemberEntry { revision, raw: value.cloned(), heartbeat, seen_at: now };
                let alive = before != entry.incarnation();
                self.members.insert(node.clone(), entry);
                Change::Member { node: node.clone(), alive }
            }
            Key::Leader => {
                if self.leader.as_ref().is_some_and(|e| e.revision >= revision) {
                    return Change::None;
                }
                let claim = match &self.leader {
                    Some(e) if e.raw.as_ref() == value => e.claim.clone(),
                    _ => value.and_then(|v| LeaderClaim::decode(v).ok()),
                };
                self.leader = Some(LeaderEntry { revision, raw: value.cloned(), claim, seen_at: now });
                Change::Leader
            }
            Key::Map => {
                if self.map_revision >= revision {
                    return Change::None;
                }
                self.map_revision = revision;
                let Some(map) = value.and_then(|v| ShardMap::decode(v).ok()) else { return Change::BadMap };
                if self.map.as_ref().is_some_and(|(_, held)| held.epoch() >= map.epoch()) {
                    // A write under CAS always raises the epoch: this is not one.
                    return Change::BadMap;
                }
                let epoch = map.epoch();
                self.map = Some((revision, map));
                Change::Map(epoch)
            }
            Key::Release(shard) => {
                if self.releases.get(shard).is_some_and(|(r, _)| *r >= revision) {
                    return Change::None;
                }
                let release = value.and_then(|v| Release::decode(v).ok());
                self.releases.insert(*shard, (revision, release));
                Change::Release(*shard)
            }
        }
    }

    pub(crate) fn shard_map(&self) -> Option<&ShardMap> {
        self.map.as_ref().map(|(_, m)| m)
    }

    /// Whether the map key holds something newer than the readable map.
    pub(crate) fn map_unreadable(&self) -> bool {
        self.map_revision > self.map.as_ref().map_or(0, |(r, _)| *r)
    }

    /// Whether `member`'s incarnation has certainly ended: its key changed
    /// after the incarnation began and no longer carries it. Only a delete
    /// ends an incarnation (a clean leave after draining, or the leader's
    /// expulsion after the member's lease ran out), so a dead incarnation
    /// serves nothing.
    pub(crate) fn is_dead(&self, member: &Member) -> bool {
        self.members
            .get(&member.id)
            .is_some_and(|e| e.revision > member.incarnation && e.incarnation() != Some(member.incarnation))
    }

    /// The members whose key holds a heartbeat, with their incarnation.
    pub(crate) fn live_members(&self) -> Vec<Member> {
        self.members
            .iter()
            .filter_map(|(id, e)| Some(Member { id: id.clone(), incarnation: e.incarnation()? }))
            .collect()
    }

    /// Whether the shard's release key holds exactly this release.
    pub(crate) fn is_released(&self, shard: ShardId, holder: &Member, grant: u64) -> bool {
        self.releases.get(&shard).and_then(|(_, r)| r.as_ref()).is_some_and(|r| r.holder == *holder && r.grant == grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::record::encode;

    fn beat(nonce: u64, incarnation: u64) -> Bytes {
        encode(&Heartbeat { nonce, incarnation }).into()
    }

    #[test]
    fn only_newer_revisions_apply() {
        let mut view = View::default();
        let key = Key::Member(NodeId::new("a"));
        assert_eq!(view.apply(1, &key, Some(&beat(1, 0)), 5), Change::Member { node: NodeId::new("a"), alive: true });
        assert_eq!(view.apply(1, &key, Some(&beat(1, 5)), 6), Change::Member { node: NodeId::new("a"), alive: false });
        assert_eq!(view.apply(2, &key, Some(&beat(1, 5)), 6), Change::None);
        assert_eq!(view.apply(3, &key, None, 4), Change::None);
        assert_eq!(view.members[&NodeId::new("a")].incarnation(), Some(5));
        assert_eq!(view.members[&NodeId::new("a")].seen_at, 1);
    }

    #[test]
    fn an_incarnation_is_dead_once_its_key_moved_on() {
        let mut view = View::default();
        let key = Key::Member(NodeId::new("a"));
        let old = Member { id: NodeId::new("a"), incarnation: 5 };
        assert!(!view.is_dead(&old), "never seen: unknown, not dead");
        view.apply(0, &key, Some(&beat(1, 0)), 5);
        view.apply(0, &key, Some(&beat(1, 5)), 9);
        assert!(!view.is_dead(&old));
        view.apply(0, &key, None, 12);
        assert!(view.is_dead(&old));
        view.apply(0, &key, Some(&beat(2, 0)), 20);
        assert!(view.is_dead(&old));
        assert!(!view.is_dead(&Member { id: NodeId::new("a"), incarnation: 20 }));
        assert_eq!(view.live_members(), vec![Member { id: NodeId::new("a"), incarnation: 20 }]);
    }

    #[test]
    fn maps_only_move_forward_and_garbage_is_flagged() {
        let mut view = View::default();
        let map = |epoch| Bytes::from(ShardMap::build(epoch, 1, &[None], &[None]).encode());
        assert_eq!(view.apply(0, &Key::Map, Some(&map(2)), 10), Change::Map(2));
        assert_eq!(view.apply(0, &Key::Map, Some(&map(1)), 9), Change::None);
        assert_eq!(view.apply(0, &Key::Map, Some(&Bytes::from_static(b"junk")), 11), Change::BadMap);
        assert!(view.map_unreadable());
        assert_eq!(view.shard_map().map(ShardMap::epoch), Some(2));
        assert_eq!(view.apply(0, &Key::Map, Some(&map(3)), 12), Change::Map(3));
        assert!(!view.map_unreadable());
    }
}
