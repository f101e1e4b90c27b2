//! A Bloom filter over the command-id keys the store holds, so a new
//! command id (nearly every append) is known to be new without a lookup in
//! redb's `command_ids` index: those keys are random, so each lookup walked
//! pages that were rarely cached (a read and a zeroed page per miss), and it
//! was the largest part of the writer's time per append.
//!
//! "Maybe present" still asks redb, so the filter can only save work, never
//! change an answer: it must hold every key redb holds (it is filled from
//! redb when the store opens and with every append the writer decides), and
//! a false positive costs the lookup it would have cost anyway.
//!
//! The keys are already uniform (a SHA-256 prefix, see `tables::id_key`), so
//! the bit positions come from the key itself by double hashing. The filter
//! grows in layers: when the newest is full, a layer twice its size starts,
//! each at ~1% false positives (10–20 bits per key), so no rebuild is ever
//! needed and a lookup checks a handful of layers.

/// Bits set per key; with 10–20 bits per key, 7 gives 0.8% false positives or fewer.
const HASHES: u64 = 7;

#[derive(Debug)]
pub(super) struct IdFilter {
    layers: Vec<Layer>,
}

#[derive(Debug)]
struct Layer {
    words: Vec<u64>,
    /// Bits - 1; the number of bits is a power of two.
    mask: u64,
    capacity: usize,
    len: usize,
}

impl Layer {
    fn new(capacity: usize) -> Self {
        let bits = (capacity.max(64) * 10).next_power_of_two();
        Self { words: vec![0; bits / 64], mask: bits as u64 - 1, capacity, len: 0 }
    }

    /// The `i`th bit of `key`: double hashing over the key's two halves.
    fn bit(&self, key: u128, i: u64) -> (usize, u64) {
        let (h1, h2) = (key as u64, (key >> 64) as u64 | 1);
        let bit = h1.wrapping_add(i.wrapping_mul(h2)) & self.mask;
        ((bit / 64) as usize, 1 << (bit % 64))
    }

    fn insert(&mut self, key: u128) {
        for i in 0..HASHES {
            let (word, mask) = self.bit(key, i);
            self.words[word] |= mask;
        }
        self.len += 1;
    }

    fn may_contain(&self, key: u128) -> bool {
        (0..HASHES).all(|i| {
            let (word, mask) = self.bit(key, i);
            self.words[word] & mask != 0
        })
    }
}

impl IdFilter {
    /// An empty filter sized for `expected` keys before its first new layer.
    pub(super) fn with_capacity(expected: usize) -> Self {
        Self { layers: vec![Layer::new(expected.max(1 << 16))] }
    }

    pub(super) fn insert(&mut self, key: u128) {
        let newest = self.layers.last_mut().expect("a filter has a layer");
        if newest.len >= newest.capacity {
            let capacity = newest.capacity * 2;
            self.layers.push(Layer::new(capacity));
        }
        self.layers.last_mut().expect("just checked").insert(key);
    }

    /// `false`: the key was never inserted. `true`: it may have been.
    pub(super) fn may_contain(&self, key: u128) -> bool {
        self.layers.iter().any(|layer| layer.may_contain(key))
    }

    /// Keys inserted.
    pub(super) fn len(&self) -> usize {
        self.layers.iter().map(|l| l.len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::IdFilter;

    /// Keys as uniform as SHA-256 prefixes, reproducibly (splitmix64).
    fn keys(seed: u64, n: usize) -> impl Iterator<Item = u128> {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        (0..n).map(move |_| (u128::from(next()) << 64) | u128::from(next()))
    }

    #[test]
    fn every_inserted_key_is_found_across_layers() {
        let mut filter = IdFilter::with_capacity(0);
        let inserted: Vec<u128> = keys(1, 300_000).collect();
        inserted.iter().for_each(|k| filter.insert(*k));
        assert!(filter.layers.len() >= 3, "the filter grew in layers: {}", filter.layers.len());
        assert_eq!(filter.len(), inserted.len());
        assert!(inserted.iter().all(|k| filter.may_contain(*k)), "a Bloom filter has no false negatives");
    }

    #[test]
    fn few_new_keys_are_reported_as_maybe_present() {
        let mut filter = IdFilter::with_capacity(100_000);
        keys(1, 400_000).for_each(|k| filter.insert(k));
        let false_positives = keys(2, 100_000).filter(|k| filter.may_contain(*k)).count();
        // Three layers at under 1% each.
        assert!(false_positives < 3_000, "{false_positives} of 100,000 new keys looked present");
    }
}
