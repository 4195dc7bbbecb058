//! The hash maps of the data stages: foldhash's fast hasher (several times faster than
//! std's SipHash on the short ids the stages look up millions of times), with a fixed
//! seed so that the same inputs are hashed the same way in every run. It is not
//! DoS-resistant; a crafted click log could only make a batch job slower.

use std::collections::{HashMap, HashSet};

pub type FastState = foldhash::fast::FixedState;
pub type FastMap<K, V> = HashMap<K, V, FastState>;
pub type FastSet<K> = HashSet<K, FastState>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn ids_with_a_common_prefix_spread_over_buckets() {
        // Regression (with the FxHash this replaces): "u100000".."u199999" fell into a
        // few dozen of 65,536 buckets and vocabulary fitting crawled.
        let build = FastState::default();
        let buckets: FastSet<u64> = (100_000..200_000).map(|i| build.hash_one(format!("u{i}")) & 0xffff).collect();
        assert!(buckets.len() > 50_000, "{} buckets used", buckets.len());
    }
}
