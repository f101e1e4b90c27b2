//! The shard map: which node should own each shard, and which node may
//! serve it now, under an epoch that only grows.
//!
//! Each shard has an **owner**, where [`assign`](super::assign) wants it, and
//! a **grant**: the one member incarnation allowed to serve it, and the epoch
//! the grant was made at. A node serves a shard while the map both owns and
//! grants it to that node. When the owner moves, the grant stays with the old
//! holder until it releases the shard (after draining it) or its incarnation
//! is gone; only then does the leader grant the shard on, in a later epoch.
//! So at every epoch at most one incarnation holds each grant.
//!
//! # Wire format (version 1)
//!
//! JSON, readable with `nats kv get`:
//!
//! ```text
//! {"v":1,"epoch":7,"term":2,"shards":4,
//!  "nodes":[{"id":"a","inc":3},{"id":"b","inc":5}],
//!  "owners":[0,1,1,0],                     node index per shard, or null
//!  "grants":[[0,1],[0,1],[1,7],null]}      [node index, epoch granted] or null
//! ```
//!
//! [`ShardMap::decode`] caps the input size, the shard and node counts, and
//! checks every index, so garbage from the bucket is an error, never a panic
//! or a large allocation.

use super::record::{Member, RecordError};
use super::shard::{MAX_SHARDS, ShardId};
use serde::{Deserialize, Serialize};

/// The only map format this build reads and writes.
const VERSION: u64 = 1;

/// The largest encoded map decoded, in bytes.
pub const MAX_MAP_BYTES: usize = 4 * 1024 * 1024;

/// The most node incarnations one map may name.
pub const MAX_MAP_NODES: usize = 4096;

/// Why a map read from the bucket was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MapError {
    #[error("a shard map of {len} bytes is over the {MAX_MAP_BYTES}-byte limit")]
    TooLong { len: usize },
    #[error("a shard map is not valid JSON of the expected shape: {0}")]
    Syntax(String),
    #[error("shard map version {0} is not supported (this build reads version {VERSION}); upgrade this node")]
    Version(u64),
    #[error("a shard map must have 1 to {MAX_SHARDS} shards, not {0}")]
    Shards(u32),
    #[error("a shard map may name at most {MAX_MAP_NODES} nodes, not {0}")]
    Nodes(usize),
    #[error("a shard map's nodes must be sorted and distinct ({0} is out of place)")]
    NodeOrder(String),
    #[error("a shard map has {len} {what} for {shards} shards")]
    Length { what: &'static str, len: usize, shards: u32 },
    #[error("shard {shard} names node index {index}, but the map has {nodes} nodes")]
    NodeIndex { shard: u32, index: u32, nodes: usize },
    #[error("shard {shard} was granted at epoch {since}, after the map's epoch {epoch}")]
    GrantEpoch { shard: u32, since: u64, epoch: u64 },
    #[error("a shard map's epoch must be at least 1")]
    Epoch,
    #[error("a shard map names a bad node: {0}")]
    Node(#[from] RecordError),
}

/// Who may serve a shard, since which epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grant {
    /// Index into the map's nodes.
    pub node: u32,
    /// The epoch the grant was made at: a new grant always has a new epoch.
    pub since: u64,
}

/// One published assignment of shards to nodes: each shard's owner (where
/// it should live) and grant (the one incarnation allowed to serve it, and
/// the epoch of the grant), under an epoch that only grows. Stored as JSON:
///
/// ```text
/// {"v":1,"epoch":7,"term":2,"shards":4,
///  "nodes":[{"id":"a","inc":3},{"id":"b","inc":5}],
///  "owners":[0,1,1,0],                     node index per shard, or null
///  "grants":[[0,1],[0,1],[1,7],null]}      [node index, epoch granted] or null
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    epoch: u64,
    leader_term: u64,
    nodes: Vec<Member>,
    owners: Vec<Option<u32>>,
    grants: Vec<Option<Grant>>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    v: u64,
    epoch: u64,
    term: u64,
    shards: u32,
    nodes: Vec<Member>,
    owners: Vec<Option<u32>>,
    grants: Vec<Option<(u32, u64)>>,
}

impl ShardMap {
    /// Builds a map from each shard's owner and grant (`(holder, since)`).
    pub(crate) fn build(
        epoch: u64,
        leader_term: u64,
        owners: &[Option<Member>],
        grants: &[Option<(Member, u64)>],
    ) -> Self {
        let mut nodes: Vec<Member> =
            owners.iter().flatten().chain(grants.iter().flatten().map(|(m, _)| m)).cloned().collect();
        nodes.sort();
        nodes.dedup();
        let index = |m: &Member| nodes.binary_search(m).expect("every member was interned") as u32;
        let owners = owners.iter().map(|o| o.as_ref().map(index)).collect();
        let grants =
            grants.iter().map(|g| g.as_ref().map(|(m, since)| Grant { node: index(m), since: *since })).collect();
        Self { epoch, leader_term, nodes, owners, grants }
    }

    /// Grows with every map the leader publishes; never goes back.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The term of the leader that published the map.
    pub fn leader_term(&self) -> u64 {
        self.leader_term
    }

    pub fn shard_count(&self) -> u32 {
        self.owners.len() as u32
    }

    /// The node the shard should live on (it serves it once the grant
    /// follows).
    pub fn owner(&self, shard: ShardId) -> Option<&Member> {
        let index = (*self.owners.get(shard.0 as usize)?)?;
        Some(&self.nodes[index as usize])
    }

    /// The incarnation allowed to serve the shard and the epoch of its grant.
    pub fn grant(&self, shard: ShardId) -> Option<(&Member, u64)> {
        let grant = (*self.grants.get(shard.0 as usize)?)?;
        Some((&self.nodes[grant.node as usize], grant.since))
    }

    /// Whether the shard is granted to its owner (no handoff under way).
    pub fn is_settled(&self, shard: ShardId) -> bool {
        match (self.owners.get(shard.0 as usize), self.grants.get(shard.0 as usize)) {
            (Some(Some(owner)), Some(Some(grant))) => *owner == grant.node,
            _ => false,
        }
    }

    /// Every incarnation the map names, and how many shards each owns.
    pub fn shares(&self) -> Vec<(&Member, usize)> {
        let mut counts = vec![0usize; self.nodes.len()];
        for owner in self.owners.iter().flatten() {
            counts[*owner as usize] += 1;
        }
        self.nodes.iter().zip(counts).collect()
    }

    pub(crate) fn grant_raw(&self, shard: ShardId) -> Option<Grant> {
        *self.grants.get(shard.0 as usize)?
    }

    /// The index of a member among the map's nodes.
    pub(crate) fn index_of(&self, member: &Member) -> Option<u32> {
        self.nodes.binary_search(member).ok().map(|i| i as u32)
    }

    /// The owner index of the shard, for the owner's comparison to its grant.
    pub(crate) fn owner_raw(&self, shard: ShardId) -> Option<u32> {
        *self.owners.get(shard.0 as usize)?
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let wire = Wire {
            v: VERSION,
            epoch: self.epoch,
            term: self.leader_term,
            shards: self.shard_count(),
            nodes: self.nodes.clone(),
            owners: self.owners.clone(),
            grants: self.grants.iter().map(|g| g.map(|g| (g.node, g.since))).collect(),
        };
        serde_json::to_vec(&wire).expect("a shard map serialises")
    }

    /// Reads a map from the bucket.
    ///
    /// # Errors
    ///
    /// A [`MapError`] naming the first thing wrong with it.
    pub fn decode(bytes: &[u8]) -> Result<Self, MapError> {
        if bytes.len() > MAX_MAP_BYTES {
            return Err(MapError::TooLong { len: bytes.len() });
        }
        // JSON carries no counts, so the decoder grows its vectors as it
        // reads elements: never more than the (capped) input allows.
        let wire: Wire = serde_json::from_slice(bytes).map_err(|e| MapError::Syntax(e.to_string()))?;
        if wire.v != VERSION {
            return Err(MapError::Version(wire.v));
        }
        if wire.shards == 0 || wire.shards > MAX_SHARDS {
            return Err(MapError::Shards(wire.shards));
        }
        if wire.epoch == 0 {
            return Err(MapError::Epoch);
        }
        if wire.nodes.len() > MAX_MAP_NODES {
            return Err(MapError::Nodes(wire.nodes.len()));
        }
        for node in &wire.nodes {
            crate::cluster::record::NodeId::parse(node.id.as_str())?;
        }
        if let Some(pair) = wire.nodes.windows(2).find(|w| w[0] >= w[1]) {
            return Err(MapError::NodeOrder(pair[1].id.to_string()));
        }
        for (what, len) in [("owners", wire.owners.len()), ("grants", wire.grants.len())] {
            if len != wire.shards as usize {
                return Err(MapError::Length { what, len, shards: wire.shards });
            }
        }
        let nodes = wire.nodes.len();
        let check = |shard: usize, index: u32| {
            if index as usize >= nodes {
                return Err(MapError::NodeIndex { shard: shard as u32, index, nodes });
            }
            Ok(())
        };
        for (shard, owner) in wire.owners.iter().enumerate() {
            if let Some(index) = owner {
                check(shard, *index)?;
            }
        }
        for (shard, grant) in wire.grants.iter().enumerate() {
            if let Some((index, since)) = grant {
                check(shard, *index)?;
                if *since > wire.epoch {
                    return Err(MapError::GrantEpoch { shard: shard as u32, since: *since, epoch: wire.epoch });
                }
            }
        }
        Ok(Self {
            epoch: wire.epoch,
            leader_term: wire.term,
            nodes: wire.nodes,
            owners: wire.owners,
            grants: wire.grants.into_iter().map(|g| g.map(|(node, since)| Grant { node, since })).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::record::NodeId;

    fn member(id: &str, incarnation: u64) -> Member {
        Member { id: NodeId::new(id), incarnation }
    }

    fn sample() -> ShardMap {
        let (a, b) = (member("a", 3), member("b", 5));
        ShardMap::build(
            7,
            2,
            &[Some(a.clone()), Some(b.clone()), Some(b.clone()), None],
            &[Some((a.clone(), 1)), Some((a, 1)), Some((b, 7)), None],
        )
    }

    #[test]
    fn round_trips_in_the_documented_shape() {
        let map = sample();
        let text = String::from_utf8(map.encode()).unwrap();
        assert_eq!(
            text,
            r#"{"v":1,"epoch":7,"term":2,"shards":4,"nodes":[{"id":"a","inc":3},{"id":"b","inc":5}],"owners":[0,1,1,null],"grants":[[0,1],[0,1],[1,7],null]}"#
        );
        assert_eq!(ShardMap::decode(text.as_bytes()), Ok(map.clone()));
        assert!(map.is_settled(ShardId(0)) && !map.is_settled(ShardId(1)) && map.is_settled(ShardId(2)));
        assert!(!map.is_settled(ShardId(3)) && !map.is_settled(ShardId(99)));
        assert_eq!(map.owner(ShardId(1)), Some(&member("b", 5)));
        assert_eq!(map.grant(ShardId(1)), Some((&member("a", 3), 1)));
        assert_eq!(map.shares(), vec![(&member("a", 3), 1), (&member("b", 5), 2)]);
    }

    #[test]
    fn refuses_garbage_with_a_clear_error() {
        let good = String::from_utf8(sample().encode()).unwrap();
        let cases: Vec<(String, MapError)> = vec![
            (good.replace(r#""v":1"#, r#""v":2"#), MapError::Version(2)),
            (good.replace(r#""shards":4"#, r#""shards":0"#), MapError::Shards(0)),
            (good.replace(r#""shards":4"#, r#""shards":3"#), MapError::Length { what: "owners", len: 4, shards: 3 }),
            (good.replace(r#""epoch":7"#, r#""epoch":0"#), MapError::Epoch),
            (good.replace("[1,7]", "[2,7]"), MapError::NodeIndex { shard: 2, index: 2, nodes: 2 }),
            (good.replace("[1,7]", "[1,8]"), MapError::GrantEpoch { shard: 2, since: 8, epoch: 7 }),
            (good.replace(r#"{"id":"b","inc":5}"#, r#"{"id":"a","inc":3}"#), MapError::NodeOrder("a".into())),
            (good.replace(r#""id":"b""#, r#""id":"""#), MapError::Node(RecordError::NodeId { len: 0 })),
        ];
        for (text, error) in cases {
            assert_eq!(ShardMap::decode(text.as_bytes()), Err(error), "{text}");
        }
        assert!(matches!(ShardMap::decode(b"{\"v\":1"), Err(MapError::Syntax(_))));
        assert!(matches!(ShardMap::decode(b"\x93\x01\x02"), Err(MapError::Syntax(_))));
        assert!(matches!(ShardMap::decode(&vec![b' '; MAX_MAP_BYTES + 1]), Err(MapError::TooLong { .. })));
        let many =
            format!(r#"{{"v":1,"epoch":1,"term":1,"shards":{},"nodes":[],"owners":[],"grants":[]}}"#, MAX_SHARDS + 1);
        assert_eq!(ShardMap::decode(many.as_bytes()), Err(MapError::Shards(MAX_SHARDS + 1)));
    }

    #[test]
    fn a_map_of_1024_shards_stays_small() {
        let nodes: Vec<Member> = (0..10).map(|i| member(&format!("node-{i}"), 100 + i)).collect();
        let owners: Vec<Option<Member>> = (0..1024).map(|s| Some(nodes[s % 10].clone())).collect();
        let grants: Vec<Option<(Member, u64)>> = owners.iter().map(|o| o.clone().map(|m| (m, 12_345))).collect();
        let bytes = ShardMap::build(12_345, 3, &owners, &grants).encode();
        assert!(bytes.len() < 16 * 1024, "{} bytes", bytes.len());
    }
}
