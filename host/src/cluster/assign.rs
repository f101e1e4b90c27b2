//! Which live node should own each shard: a sticky, capped rendezvous
//! assignment, a pure function of (previous owners, live nodes, shard count).
//!
//! # The rule
//!
//! 1. **Quotas.** With `n` live nodes and `S` shards every node may own
//!    `floor(S / n)` shards, and `S mod n` of them one more. The extra ones go
//!    to the nodes that keep the most shards from the previous map (ties by
//!    the node's hash, then its id), so a change moves as little as it can.
//! 2. **Stickiness.** A shard stays with its previous owner if that owner is
//!    live; an owner over its quota gives up the shards it ranks lowest
//!    (rendezvous score below).
//! 3. **Rendezvous.** Every other shard, in shard order, goes to the node with
//!    the highest score `mix(hash(node) ^ mix(shard))` among the nodes still
//!    under their quota (`hash` = FNV-1a 64 of the node id, `mix` = the
//!    splitmix64 finaliser).
//!
//! Every node ends within one shard of an even share, whatever the count.
//! Adding a node moves exactly the new node's quota (`~S/(n+1)`); removing
//! one moves that node's shards only (and, when `S mod n` changes, none
//! other: quotas only grow). With no previous map this is plain capped
//! rendezvous hashing. The cost is `O(S × n)` score computations for the
//! shards that must move, and `O(S)` for the rest.
//!
//! The leader computes it; because it depends on nothing else, a new leader
//! that reads the same map and sees the same members computes the same
//! assignment.

use super::record::NodeId;
use crate::fnv::fnv1a_64;

/// The splitmix64 finaliser: a cheap bijective mix of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn score(node_hash: u64, shard: u32) -> u64 {
    mix(node_hash ^ mix(u64::from(shard)))
}

/// Assigns `shards` shards to `nodes` (sorted, distinct, live), starting from
/// `previous` (the owner of each shard in the previous map; ignored unless it
/// has exactly `shards` entries). Returns, per shard, an index into `nodes`,
/// or `None` for every shard when there are no nodes.
pub(crate) fn assign(previous: &[Option<&NodeId>], nodes: &[NodeId], shards: u32) -> Vec<Option<usize>> {
    let count = shards as usize;
    if nodes.is_empty() {
        return vec![None; count];
    }
    let hashes: Vec<u64> = nodes.iter().map(|n| fnv1a_64(n.as_str().as_bytes())).collect();
    let mut owners: Vec<Option<usize>> = vec![None; count];
    if previous.len() == count {
        for (owner, prev) in owners.iter_mut().zip(previous) {
            *owner = prev.and_then(|p| nodes.binary_search(p).ok());
        }
    }
    let mut kept = vec![0usize; nodes.len()];
    for owner in owners.iter().flatten() {
        kept[*owner] += 1;
    }

    // Quotas: the extra shards go to the nodes that keep the most.
    let base = count / nodes.len();
    let extra = count % nodes.len();
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by(|&a, &b| kept[b].cmp(&kept[a]).then(hashes[a].cmp(&hashes[b])).then(nodes[a].cmp(&nodes[b])));
    let mut quota = vec![base; nodes.len()];
    for &node in &order[..extra] {
        quota[node] += 1;
    }

    // Owners over quota give up the shards they rank lowest.
    for node in 0..nodes.len() {
        if kept[node] <= quota[node] {
            continue;
        }
        let mut held: Vec<u32> = (0..shards).filter(|&s| owners[s as usize] == Some(node)).collect();
        held.sort_by_key(|&s| (score(hashes[node], s), s));
        for &s in &held[..kept[node] - quota[node]] {
            owners[s as usize] = None;
        }
        kept[node] = quota[node];
    }

    // The rest by rendezvous among the nodes under quota. A plain loop: this
    // is the O(shards × nodes) part, and it runs in debug builds in tests.
    for shard in 0..shards {
        if owners[shard as usize].is_some() {
            continue;
        }
        let shard_mix = mix(u64::from(shard));
        let mut best: Option<(u64, usize)> = None;
        for node in 0..nodes.len() {
            if kept[node] >= quota[node] {
                continue;
            }
            let score = mix(hashes[node] ^ shard_mix);
            if best.is_none_or(|b| (score, node) > b) {
                best = Some((score, node));
            }
        }
        // Total quota equals the shard count, so a node under quota remains.
        if let Some((_, node)) = best {
            kept[node] += 1;
            owners[shard as usize] = Some(node);
        }
    }
    owners
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn nodes(range: std::ops::Range<usize>) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = range.map(|i| NodeId::new(format!("node-{i}"))).collect();
        nodes.sort();
        nodes
    }

    /// The owner's id of every shard.
    fn owners(nodes: &[NodeId], assignment: &[Option<usize>]) -> Vec<Option<NodeId>> {
        assignment.iter().map(|o| o.map(|i| nodes[i].clone())).collect()
    }

    fn reassign(previous: &[Option<NodeId>], nodes: &[NodeId], shards: u32) -> Vec<Option<NodeId>> {
        let previous: Vec<Option<&NodeId>> = previous.iter().map(Option::as_ref).collect();
        owners(nodes, &assign(&previous, nodes, shards))
    }

    fn moved(a: &[Option<NodeId>], b: &[Option<NodeId>]) -> usize {
        a.iter().zip(b).filter(|(x, y)| x != y).count()
    }

    fn shares(map: &[Option<NodeId>], nodes: &[NodeId]) -> Vec<usize> {
        nodes.iter().map(|n| map.iter().filter(|o| o.as_ref() == Some(n)).count()).collect()
    }

    #[test]
    fn every_share_is_within_a_quarter_of_even() {
        for n in [1, 2, 3, 4, 5, 7, 10, 16, 33, 64, 100, 127, 128] {
            let nodes = nodes(0..n);
            let map = reassign(&[], &nodes, 1024);
            assert!(map.iter().all(Option::is_some), "{n} nodes: every shard owned");
            let even = 1024.0 / n as f64;
            for share in shares(&map, &nodes) {
                let off = (share as f64 - even).abs() / even;
                assert!(off <= 0.25, "{n} nodes: share {share} vs even {even:.1}");
                assert!(share == 1024 / n || share == 1024 / n + 1, "{n} nodes: share {share} within one of even");
            }
        }
    }

    #[test]
    fn adding_a_node_moves_at_most_its_share_plus_ten_percent() {
        let mut map = reassign(&[], &nodes(0..1), 1024);
        for n in 1..=130 {
            let next = reassign(&map, &nodes(0..n + 1), 1024);
            let limit = 1024.0 * (1.0 / (n + 1) as f64 + 0.10);
            let moved = moved(&map, &next);
            assert!(moved as f64 <= limit, "{n} -> {} nodes moved {moved} > {limit:.0}", n + 1);
            // Everything that moved went to the new node.
            let new = NodeId::new(format!("node-{n}"));
            assert!(map.iter().zip(&next).all(|(a, b)| a == b || b.as_ref() == Some(&new)));
            map = next;
        }
    }

    #[test]
    fn removing_a_node_moves_only_its_shards() {
        for n in [2, 3, 4, 10, 100, 128] {
            let all = nodes(0..n);
            let map = reassign(&[], &all, 1024);
            for gone in [0, n / 2, n - 1] {
                let rest: Vec<NodeId> = all.iter().filter(|x| **x != all[gone]).cloned().collect();
                let next = reassign(&map, &rest, 1024);
                for (a, b) in map.iter().zip(&next) {
                    if a.as_ref() != Some(&all[gone]) {
                        assert_eq!(a, b, "{n} nodes, removing {gone}: a shard of a staying node moved");
                    }
                }
                for share in shares(&next, &rest) {
                    assert!(share == 1024 / (n - 1) || share == 1024 / (n - 1) + 1);
                }
            }
        }
    }

    #[test]
    fn is_deterministic_and_order_free_in_the_previous_map() {
        let all = nodes(0..10);
        let a = reassign(&[], &all, 1024);
        assert_eq!(a, reassign(&[], &all, 1024));
        let b = reassign(&a, &all, 1024);
        assert_eq!(a, b, "a map for the same members is stable");
    }

    #[test]
    fn no_nodes_owns_nothing_and_one_node_owns_all() {
        assert!(reassign(&[], &[], 16).iter().all(Option::is_none));
        let one = nodes(0..1);
        assert!(reassign(&[], &one, 16).iter().all(|o| o.as_ref() == Some(&one[0])));
        // A previous map of another shard count is ignored.
        let map = reassign(&[], &nodes(0..3), 32);
        assert_eq!(reassign(&map, &nodes(0..3), 16).len(), 16);
    }

    #[test]
    fn two_hundred_nodes_are_fast() {
        let all = nodes(0..200);
        let start = Instant::now();
        let map = reassign(&[], &all, 1024);
        let fresh = start.elapsed();
        let more = nodes(0..201);
        let start = Instant::now();
        reassign(&map, &more, 1024);
        let grow = start.elapsed();
        println!("1024 shards over 200 nodes: {fresh:?} fresh, {grow:?} adding one");
        assert!(fresh.as_millis() < 50 && grow.as_millis() < 50, "{fresh:?} / {grow:?}");
    }
}
