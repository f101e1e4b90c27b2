//! The small records the cluster keeps in its KV bucket besides the map:
//! a node's id, its heartbeat, the leader's claim and a shard's release.
//!
//! All are JSON (readable with `nats kv get`), decoded with a size cap, and
//! refused with a [`RecordError`] rather than guessed at.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The longest node id accepted, in bytes.
pub const MAX_NODE_ID_BYTES: usize = 128;

/// The largest heartbeat, leader or release record decoded, in bytes.
const MAX_RECORD_BYTES: usize = 1024;

/// A node of the cluster (`--node-id`): any non-empty string of at most
/// [`MAX_NODE_ID_BYTES`] bytes. Names encode it as a subject token.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(String);

impl NodeId {
    /// # Panics
    ///
    /// If `id` is empty or longer than [`MAX_NODE_ID_BYTES`]; use
    /// [`NodeId::parse`] for ids from outside.
    pub fn new(id: impl Into<String>) -> Self {
        let id = id.into();
        Self::parse(&id).unwrap_or_else(|e| panic!("{e}"))
    }

    /// # Errors
    ///
    /// [`RecordError::NodeId`] if `id` is empty or too long.
    pub fn parse(id: &str) -> Result<Self, RecordError> {
        if id.is_empty() || id.len() > MAX_NODE_ID_BYTES {
            return Err(RecordError::NodeId { len: id.len() });
        }
        Ok(Self(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn check(&self) -> Result<(), RecordError> {
        Self::parse(&self.0).map(drop)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One life of a node: its id and the KV revision that created its member
/// key. A node that is expelled or restarts under the same id comes back as
/// a new incarnation, and grants made to an old one never apply to it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    #[serde(rename = "inc")]
    pub incarnation: u64,
}

/// Why a record from the bucket was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    #[error("a node id must have 1 to {MAX_NODE_ID_BYTES} bytes, not {len}")]
    NodeId { len: usize },
    #[error("a {what} record of {len} bytes is over the {max}-byte limit")]
    TooLong { what: &'static str, len: usize, max: usize },
    #[error("a {what} record is not valid: {cause}")]
    Invalid { what: &'static str, cause: String },
}

/// A node's member key: written with `create` when it joins (incarnation 0,
/// since the creating revision is not known yet), then renewed with
/// `update` at the last revision, carrying the incarnation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Heartbeat {
    /// Picked by the node for this incarnation, so it recognises its own
    /// create when the answer to it was lost.
    pub nonce: u64,
    #[serde(rename = "inc")]
    pub incarnation: u64,
}

/// The leader key: who leads, in which term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LeaderClaim {
    pub leader: Member,
    pub term: u64,
}

/// A shard's release key: `holder` stopped serving the shard under the
/// grant made at epoch `grant` and drained it; the leader may give it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Release {
    pub holder: Member,
    pub grant: u64,
}

pub(crate) fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    // Plain structs of strings and integers always serialise.
    serde_json::to_vec(record).expect("cluster records serialise")
}

fn decode<T: for<'de> Deserialize<'de>>(what: &'static str, bytes: &[u8]) -> Result<T, RecordError> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(RecordError::TooLong { what, len: bytes.len(), max: MAX_RECORD_BYTES });
    }
    serde_json::from_slice(bytes).map_err(|e| RecordError::Invalid { what, cause: e.to_string() })
}

impl Heartbeat {
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        decode("heartbeat", bytes)
    }
}

impl LeaderClaim {
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let claim: Self = decode("leader", bytes)?;
        claim.leader.id.check()?;
        Ok(claim)
    }
}

impl Release {
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let release: Self = decode("release", bytes)?;
        release.holder.id.check()?;
        Ok(release)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_read_well() {
        let member = Member { id: NodeId::new("n1"), incarnation: 7 };
        let claim = LeaderClaim { leader: member.clone(), term: 3 };
        assert_eq!(String::from_utf8(encode(&claim)).unwrap(), r#"{"leader":{"id":"n1","inc":7},"term":3}"#);
        assert_eq!(LeaderClaim::decode(&encode(&claim)), Ok(claim));
        let release = Release { holder: member, grant: 9 };
        assert_eq!(Release::decode(&encode(&release)), Ok(release));
        let beat = Heartbeat { nonce: 1, incarnation: 0 };
        assert_eq!(Heartbeat::decode(&encode(&beat)), Ok(beat));
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert!(matches!(Heartbeat::decode(b"\xff"), Err(RecordError::Invalid { what: "heartbeat", .. })));
        assert!(matches!(Heartbeat::decode(&[b' '; 2000]), Err(RecordError::TooLong { len: 2000, .. })));
        let empty_id = br#"{"leader":{"id":"","inc":1},"term":1}"#;
        assert_eq!(LeaderClaim::decode(empty_id), Err(RecordError::NodeId { len: 0 }));
        assert!(NodeId::parse(&"x".repeat(129)).is_err());
        assert_eq!(RecordError::NodeId { len: 0 }.to_string(), "a node id must have 1 to 128 bytes, not 0");
    }
}
