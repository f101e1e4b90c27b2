//! Shards: the fixed buckets actors fall into, and the documented hash that
//! puts an actor in one.
//!
//! # The hash, for any client in any language
//!
//! ```text
//! h = FNV-1a 64-bit over: UTF-8(aggregate) ++ [0x00] ++ UTF-8(id)
//!     (offset basis 0xcbf29ce484222325, prime 0x100000001b3,
//!      for each byte: h ^= byte; h *= prime (wrapping))
//! shard = h mod shards
//! ```
//!
//! The `0x00` separator keeps `("ab", "c")` and `("a", "bc")` apart
//! (aggregate names are identifiers and never hold a NUL). The domain is not hashed:
//! each domain's cluster has its own map. The test vectors at the bottom of
//! this file are the contract; a client library should copy them.

use crate::fnv::{fnv1a, fnv1a_64};
use std::fmt;

/// Shards a cluster uses unless it is created with another count: many more
/// than nodes, so an even share and a small move are both possible (with
/// 128 nodes each still owns 8), and few enough that the map stays a few KiB.
pub const DEFAULT_SHARDS: u32 = 1024;

/// The most shards a cluster may have (the map's decoder refuses more).
pub const MAX_SHARDS: u32 = 65_536;

/// One shard of a cluster: `0..shards`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(pub u32);

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The shard an actor lives in. The hash, for any client in any language:
///
/// ```text
/// h = FNV-1a 64-bit over: UTF-8(aggregate) ++ [0x00] ++ UTF-8(id)
///     (offset basis 0xcbf29ce484222325, prime 0x100000001b3,
///      for each byte: h ^= byte; h *= prime (wrapping))
/// shard = h mod shards
/// ```
///
/// `shard_of("Account", "acc-1", 1024)` is shard 843; more vectors are in
/// this file's tests.
///
/// # Panics
///
/// If `shards` is zero.
pub fn shard_of(aggregate: &str, id: &str, shards: u32) -> ShardId {
    assert!(shards > 0, "a cluster has at least one shard");
    let hash = fnv1a(fnv1a(fnv1a_64(aggregate.as_bytes()), &[0]), id.as_bytes());
    ShardId((hash % u64::from(shards)) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contract for clients in other languages: copy these.
    #[test]
    fn test_vectors() {
        let vectors: [(&str, &str, u32, u64, u32); 6] = [
            ("Account", "acc-1", 1024, 0xd240_5677_91db_974b, 843),
            ("Account", "acc-2", 1024, 0xd240_5777_91db_98fe, 254),
            ("Order", "order-42", 1024, 0x66d0_be3e_eb62_eb44, 836),
            ("Account", "", 1024, 0xe48b_86e6_c2a2_8394, 916),
            ("", "", 1024, 0xaf63_bd4c_8601_b7df, 991),
            ("Account", "ünï/cødé", 16, 0x8b15_6431_d3c9_169c, 12),
        ];
        for (aggregate, id, shards, hash, shard) in vectors {
            let mut bytes = aggregate.as_bytes().to_vec();
            bytes.push(0);
            bytes.extend_from_slice(id.as_bytes());
            assert_eq!(fnv1a_64(&bytes), hash, "hash of {aggregate:?}/{id:?}");
            assert_eq!(shard_of(aggregate, id, shards), ShardId(shard), "shard of {aggregate:?}/{id:?}");
        }
    }

    #[test]
    fn the_separator_keeps_splits_apart() {
        assert_ne!(shard_of("ab", "c", MAX_SHARDS), shard_of("a", "bc", MAX_SHARDS));
    }

    #[test]
    fn shards_fill_evenly() {
        let mut counts = vec![0u32; 64];
        for i in 0..64_000 {
            counts[shard_of("Account", &format!("acc-{i}"), 64).0 as usize] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 850 && *max < 1150, "uneven: {min}..{max}");
    }
}
