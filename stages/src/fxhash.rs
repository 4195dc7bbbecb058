//! FxHash, the multiply-rotate hash rustc uses (with a finaliser, below): several times faster than std's
//! SipHash on the short id strings the data stages look up millions of times. It is
//! not DoS-resistant; a crafted click log could only make a batch job slower.

use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("chunks of 8")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    fn write_u8(&mut self, b: u8) {
        self.add(b as u64);
    }

    fn write_u32(&mut self, v: u32) {
        self.add(v as u64);
    }

    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }

    fn write_usize(&mut self, v: usize) {
        self.add(v as u64);
    }

    /// The multiply only carries bits upwards, so ids that differ past a common prefix
    /// ("u1…") would share their low bits, which pick the bucket; a murmur3 finaliser
    /// mixes the high bits back down.
    fn finish(&self) -> u64 {
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

pub type FxBuild = BuildHasherDefault<FxHasher>;
pub type FxHashMap<K, V> = std::collections::HashMap<K, V, FxBuild>;
pub type FxHashSet<K> = std::collections::HashSet<K, FxBuild>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn ids_with_a_common_prefix_spread_over_buckets() {
        // Regression: without the finaliser, "u100000".."u199999" fell into a few
        // dozen of 65,536 buckets and vocabulary fitting crawled.
        let build = FxBuild::default();
        let buckets: FxHashSet<u64> = (100_000..200_000).map(|i| build.hash_one(format!("u{i}")) & 0xffff).collect();
        assert!(buckets.len() > 50_000, "{} buckets used", buckets.len());
    }
}
