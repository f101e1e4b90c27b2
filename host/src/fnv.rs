//! FNV-1a 64-bit: stable across processes, builds and languages (unlike
//! `DefaultHasher`), a few cycles per byte. The shard of an actor
//! ([`crate::cluster::shard_of`], documented for clients), the seeds of a
//! guest's randomness and the recent-command filter all hash with it.

/// The offset basis: the hash of no bytes.
pub(crate) const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over `bytes`, continuing from `hash`.
pub(crate) fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// FNV-1a of `bytes` from the offset basis.
pub(crate) fn fnv1a_64(bytes: &[u8]) -> u64 {
    fnv1a(OFFSET, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_test_vectors() {
        // From the FNV reference (http://www.isthe.com/chongo/src/fnv/test_fnv.c).
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a(fnv1a_64(b"foo"), b"bar"), fnv1a_64(b"foobar"), "continues");
    }
}
