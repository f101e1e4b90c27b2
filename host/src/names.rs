//! Every NATS name Aether uses, for one namespace, in one place: streams,
//! buckets, subjects and keys. Nothing else formats a NATS name; tests ask
//! here rather than spelling names out.
//!
//! ```text
//!                  default namespace              namespace <ns>
//! root             aether                         aether.ns.<ns>
//! event stream     AETHER_EVENTS                  AETHER_EVENTS_<ns>
//! event subjects   <root>.ev.<domain>.<aggregate>.<id>
//! command index    <root>.ix.<domain>.<aggregate>.<id>.<command id hash>
//! snapshot bucket  aether_snapshots               aether_snapshots_<ns>
//!   keys           <domain>.<aggregate>.<id>
//! bus              <root>.bus.<domain>.<aggregate>.<id>
//! commands door    <root>.cmd.<domain>.<aggregate>        (queue group aether-hosts)
//! cluster bucket   aether_cluster                 aether_cluster_<ns>
//!   keys           <domain>.member.<node>, <domain>.leader, <domain>.map, <domain>.release.<shard>
//! node subjects    <root>.node.<domain>.<node>            (see ClusterNames)
//! component bucket aether_components              aether_components_<ns>
//!   keys           <domain>.current, <domain>.wasm.<sha-256>.<chunk>, <domain>.node.<node>
//! ```
//!
//! Namespaces, domains, aggregates, ids and node ids are each encoded as one
//! subject token ([`encode_token`]), so every name parses back and no two
//! namespaces share one. The root of a namespace (`aether.ns.…`) never
//! overlaps the default's (`aether.ev`, `aether.bus`, …), so tenants can share
//! a server.

use crate::bus::Filter;
use crate::cluster::ClusterNames;
pub use crate::store::jetstream::subject::{decode_token, encode_token};

/// The NATS names of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsNames {
    /// `aether` or `aether.ns.<ns>`.
    root: String,
    /// `""` or `_<ns>`, appended to stream and bucket names.
    suffix: String,
}

impl NatsNames {
    /// `None`: the default namespace.
    pub fn new(namespace: Option<&str>) -> Self {
        match namespace {
            None => Self { root: "aether".into(), suffix: String::new() },
            Some(ns) => {
                let ns = encode_token(ns);
                Self { root: format!("aether.ns.{ns}"), suffix: format!("_{ns}") }
            }
        }
    }

    /// The first tokens of every subject of the namespace.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The JetStream stream holding every domain's events.
    pub fn events_stream(&self) -> String {
        format!("AETHER_EVENTS{}", self.suffix)
    }

    /// The event subjects without the trailing `.>`: `<root>.ev`.
    pub fn events_prefix(&self) -> String {
        format!("{}.ev", self.root)
    }

    /// The subject an actor's events are stored on.
    pub fn event_subject(&self, domain: &str, aggregate: &str, id: &str) -> String {
        format!("{}.{}.{}.{}", self.events_prefix(), encode_token(domain), encode_token(aggregate), encode_token(id))
    }

    /// The command index's subjects without the trailing `.>`: `<root>.ix`,
    /// beside the events' (a consumer of `<root>.ev.>` sees events only);
    /// one subject per actor and caller-chosen command id,
    /// `<root>.ix.<domain>.<aggregate>.<id>.<hash of the command id>`.
    pub fn index_prefix(&self) -> String {
        format!("{}.ix", self.root)
    }

    /// The subjects of every actor of an aggregate: `<root>.ev.<domain>.<aggregate>.*`.
    pub fn events_filter(&self, domain: &str, aggregate: &str) -> String {
        format!("{}.{}.{}.*", self.events_prefix(), encode_token(domain), encode_token(aggregate))
    }

    /// The KV bucket of snapshots.
    pub fn snapshots_bucket(&self) -> String {
        format!("aether_snapshots{}", self.suffix)
    }

    /// Where an actor's stored events are published on the bus.
    pub fn bus(&self, domain: &str, aggregate: &str, id: &str) -> String {
        format!("{}.bus.{}.{}.{}", self.root, encode_token(domain), encode_token(aggregate), encode_token(id))
    }

    /// The subscription subject for a bus filter (wildcards where it is open).
    pub fn bus_filter(&self, domain: &str, filter: &Filter) -> String {
        let aggregate = filter.aggregate.as_deref().map_or("*".to_owned(), encode_token);
        let id = filter.id.as_deref().map_or("*".to_owned(), encode_token);
        format!("{}.bus.{}.{aggregate}.{id}", self.root, encode_token(domain))
    }

    /// Where an aggregate's commands are requested (`*` for all aggregates).
    pub fn commands(&self, domain: &str, aggregate: &str) -> String {
        let aggregate = if aggregate == "*" { "*".to_owned() } else { encode_token(aggregate) };
        format!("{}.cmd.{}.{aggregate}", self.root, encode_token(domain))
    }

    /// The KV bucket of what every domain's policies and read models
    /// derive (checkpoints, rows, outcomes), keyed `<domain>.<space>.<key>`.
    pub fn views_bucket(&self) -> String {
        format!("aether_views{}", self.suffix)
    }

    /// The KV bucket of every domain's cluster (members, leader, map, releases).
    pub fn cluster_bucket(&self) -> String {
        format!("aether_cluster{}", self.suffix)
    }

    /// The KV bucket of the components a domain's cluster runs (live upgrades).
    pub fn components_bucket(&self) -> String {
        format!("aether_components{}", self.suffix)
    }

    /// The key naming the component every node of a domain's cluster runs.
    pub fn component_current(&self, domain: &str) -> String {
        format!("{}.current", encode_token(domain))
    }

    /// The key of one chunk of a component's bytes (by its SHA-256, hex).
    pub fn component_chunk(&self, domain: &str, hash: &str, chunk: u32) -> String {
        format!("{}.wasm.{}.{chunk}", encode_token(domain), encode_token(hash))
    }

    /// The key where a node says which component it runs.
    pub fn component_node(&self, domain: &str, node: &str) -> String {
        format!("{}.node.{}", encode_token(domain), encode_token(node))
    }

    /// The names of one domain's cluster: its keys and node subjects.
    pub fn cluster(&self, domain: &str) -> ClusterNames {
        ClusterNames::new(self, domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Key, NodeId};

    #[test]
    fn names_of_the_default_namespace() {
        let names = NatsNames::new(None);
        assert_eq!(names.events_stream(), "AETHER_EVENTS");
        assert_eq!(names.event_subject("bank", "Account", "a.b"), "aether.ev.bank.Account.a_2Eb");
        assert_eq!(names.events_filter("bank", "Account"), "aether.ev.bank.Account.*");
        assert_eq!(names.index_prefix(), "aether.ix");
        assert_eq!(names.snapshots_bucket(), "aether_snapshots");
        assert_eq!(names.bus("bank", "Account", "a"), "aether.bus.bank.Account.a");
        assert_eq!(names.bus_filter("bank", &Filter::default()), "aether.bus.bank.*.*");
        assert_eq!(names.commands("bank", "*"), "aether.cmd.bank.*");
        assert_eq!(names.cluster_bucket(), "aether_cluster");
        assert_eq!(names.components_bucket(), "aether_components");
        assert_eq!(names.component_current("bank"), "bank.current");
        assert_eq!(names.component_chunk("bank", "ab12", 3), "bank.wasm.ab12.3");
        assert_eq!(names.component_node("bank", "n.1"), "bank.node.n_2E1");
        let cluster = names.cluster("bank");
        assert_eq!((cluster.bucket(), cluster.key(&Key::Map).as_str()), ("aether_cluster", "bank.map"));
        assert_eq!(cluster.node_subject(&NodeId::new("n1")), "aether.node.bank.n1");
    }

    #[test]
    fn a_namespace_has_names_of_its_own() {
        let names = NatsNames::new(Some("acme.eu"));
        assert_eq!(names.events_stream(), "AETHER_EVENTS_acme_2Eeu");
        assert_eq!(names.events_prefix(), "aether.ns.acme_2Eeu.ev");
        assert_eq!(names.snapshots_bucket(), "aether_snapshots_acme_2Eeu");
        assert_eq!(names.commands("bank", "Acc.ount"), "aether.ns.acme_2Eeu.cmd.bank.Acc_2Eount");
        assert_eq!(names.cluster_bucket(), "aether_cluster_acme_2Eeu");
        assert_eq!(names.cluster("bank").node_subject(&NodeId::new("n1")), "aether.ns.acme_2Eeu.node.bank.n1");
        assert_ne!(NatsNames::new(Some("a.b")).events_stream(), NatsNames::new(Some("a_b")).events_stream());
    }
}
