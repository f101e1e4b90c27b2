//! Every NATS name the cluster uses, for one namespace and domain: its KV
//! bucket, the keys in it, and the per-shard command subjects.
//!
//! ```text
//! bucket   aether_cluster | aether_cluster_<ns>
//! keys     <domain>.member.<node>     a node's heartbeat (one per node)
//!          <domain>.leader            the leader's claim
//!          <domain>.map               the shard map
//!          <domain>.release.<shard>   the last release of a shard
//! subjects <root>.node.<domain>.<node>  requests for the shards a node serves
//! ```
//!
//! `<root>` is the namespace's (`aether` or `aether.ns.<ns>`, see
//! [`NatsNames`], which names everything else); domains, namespaces and node ids
//! are encoded as one token with the event store's
//! [encoding](crate::store::jetstream::subject), so keys only hold
//! `[A-Za-z0-9_.-]` and every name parses back. The namespace picks the
//! bucket, the domain the key prefix: each domain of a namespace has its own
//! cluster (members, leader and map), and one watch of `<domain>.>` sees it.

use super::record::NodeId;
use super::shard::{MAX_SHARDS, ShardId};
use crate::names::NatsNames;
use crate::store::jetstream::subject::{decode_token, encode_token};

/// A key of the cluster's bucket, as the protocol sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// A node's heartbeat.
    Member(NodeId),
    /// The leader's claim.
    Leader,
    /// The shard map.
    Map,
    /// The last release of a shard.
    Release(ShardId),
}

/// The names of one domain's cluster in one namespace:
///
/// ```text
/// bucket   aether_cluster | aether_cluster_<ns>
/// keys     <domain>.member.<node>     a node's heartbeat (one per node)
///          <domain>.leader            the leader's claim
///          <domain>.map               the shard map
///          <domain>.release.<shard>   the last release of a shard
/// subjects <root>.node.<domain>.<node>  requests for the shards a node serves
/// ```
///
/// `<root>` is the bus's (`aether` or `aether.ns.<ns>`); names are encoded
/// as one token each, so keys only hold `[A-Za-z0-9_.-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNames {
    bucket: String,
    /// `<domain>.`, the prefix of every key.
    prefix: String,
    /// `<root>.node.<domain>`.
    node_prefix: String,
}

impl ClusterNames {
    /// The names of `domain`'s cluster in a namespace; see also
    /// [`NatsNames::cluster`].
    pub fn new(names: &NatsNames, domain: &str) -> Self {
        let domain = encode_token(domain);
        Self {
            bucket: names.cluster_bucket(),
            prefix: format!("{domain}."),
            node_prefix: format!("{}.node.{domain}", names.root()),
        }
    }

    /// The KV bucket holding members, the leader, the map and releases.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key filter a node watches: every key of this domain's cluster.
    pub fn watch_filter(&self) -> String {
        format!("{}>", self.prefix)
    }

    pub fn key(&self, key: &Key) -> String {
        let prefix = &self.prefix;
        match key {
            Key::Member(node) => format!("{prefix}member.{}", encode_token(node.as_str())),
            Key::Leader => format!("{prefix}leader"),
            Key::Map => format!("{prefix}map"),
            Key::Release(shard) => format!("{prefix}release.{}", shard.0),
        }
    }

    /// The protocol's key for a key of the bucket; `None` for keys of other
    /// domains and anything [`key`](Self::key) cannot produce.
    pub fn parse_key(&self, key: &str) -> Option<Key> {
        let rest = key.strip_prefix(&self.prefix)?;
        match rest {
            "leader" => return Some(Key::Leader),
            "map" => return Some(Key::Map),
            _ => {}
        }
        if let Some(token) = rest.strip_prefix("member.") {
            return NodeId::parse(&decode_token(token)?).ok().map(Key::Member);
        }
        let number = rest.strip_prefix("release.")?;
        // Canonical decimal only, so one shard has one key.
        if number.is_empty() || number.len() > 5 || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if number.len() > 1 && number.starts_with('0') {
            return None;
        }
        let shard: u32 = number.parse().ok()?;
        (shard < MAX_SHARDS).then_some(Key::Release(ShardId(shard)))
    }

    /// Where a node takes requests (commands, reads) for the shards it
    /// serves. Each node subscribes to its own for as long as it runs, so a
    /// handoff never unsubscribes anything (an unsubscribe loses the requests
    /// the server already sent); senders pick the node by the shard map.
    pub fn node_subject(&self, node: &NodeId) -> String {
        format!("{}.{}", self.node_prefix, encode_token(node.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv_safe(key: &str) -> bool {
        !key.is_empty()
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"_=./-".contains(&b))
            && !key.starts_with('.')
            && !key.ends_with('.')
    }

    #[test]
    fn names_of_the_default_namespace() {
        let names = ClusterNames::new(&NatsNames::new(None), "bank");
        assert_eq!(names.bucket(), "aether_cluster");
        assert_eq!(names.watch_filter(), "bank.>");
        assert_eq!(names.key(&Key::Member(NodeId::new("host-1"))), "bank.member.host-1");
        assert_eq!(names.key(&Key::Leader), "bank.leader");
        assert_eq!(names.key(&Key::Map), "bank.map");
        assert_eq!(names.key(&Key::Release(ShardId(17))), "bank.release.17");
        assert_eq!(names.node_subject(&NodeId::new("host-1")), "aether.node.bank.host-1");
    }

    #[test]
    fn namespaces_and_awkward_names_are_encoded() {
        let names = ClusterNames::new(&NatsNames::new(Some("acme.eu")), "bank v2");
        assert_eq!(names.bucket(), "aether_cluster_acme_2Eeu");
        assert_eq!(names.key(&Key::Map), "bank_20v2.map");
        assert_eq!(names.node_subject(&NodeId::new("a.b")), "aether.ns.acme_2Eeu.node.bank_20v2.a_2Eb");
        assert_ne!(
            ClusterNames::new(&NatsNames::new(Some("a.b")), "d").bucket(),
            ClusterNames::new(&NatsNames::new(Some("a_b")), "d").bucket()
        );
    }

    #[test]
    fn every_key_is_kv_safe_and_parses_back() {
        let names = ClusterNames::new(&NatsNames::new(Some("ns")), "dom.ain");
        let keys = [
            Key::Leader,
            Key::Map,
            Key::Release(ShardId(0)),
            Key::Release(ShardId(MAX_SHARDS - 1)),
            Key::Member(NodeId::new("n")),
            Key::Member(NodeId::new("a.b c/ü*>")),
            Key::Member(NodeId::new("release.1")),
        ];
        for key in keys {
            let text = names.key(&key);
            assert!(kv_safe(&text), "{text:?}");
            assert_eq!(names.parse_key(&text), Some(key), "{text:?}");
        }
    }

    #[test]
    fn foreign_and_malformed_keys_are_ignored() {
        let names = ClusterNames::new(&NatsNames::new(None), "bank");
        for key in [
            "shop.map",
            "bank",
            "bank.",
            "bank.maps",
            "bank.member.",
            "bank.member.a.b",
            "bank.member._2e",
            "bank.release.",
            "bank.release.01",
            "bank.release.-1",
            "bank.release.65536",
            "bank.release.99999999999",
        ] {
            assert_eq!(names.parse_key(key), None, "{key:?}");
        }
    }
}
