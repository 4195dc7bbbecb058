//! Ranking metrics shared by `evaluate` and `popularity`, so both report the same
//! names computed the same way: hr@K, ndcg@K, mrr, coverage@K and, with the user's
//! already-clicked items removed from the ranking, hr_excl@K and ndcg_excl@K.

use std::collections::BTreeMap;

use dagrun_kind::params::{self, ParamError};
use rayon::prelude::*;

use crate::hashing::FastMap;

/// The largest cut-off a ranking is cut at: every user's top-K is held in memory.
pub const MAX_K: usize = 100_000;

/// A `ks` param: a non-empty list of cut-offs in 1..=MAX_K.
pub fn check_ks(key: &str, ks: &[usize]) -> Result<(), ParamError> {
    params::ensure(!ks.is_empty(), key, || "must list at least one cut-off, e.g. [10, 50]".into())?;
    match ks.iter().find(|&&k| k == 0 || k > MAX_K) {
        Some(k) => Err(ParamError::at(key, format!("cut-off {k} must lie in 1..={MAX_K}"))),
        None => Ok(()),
    }
}

/// One test user: the ranked candidates (best first), the held-out target, and the
/// ranking with the items the user clicked in training left out, for the `_excl`
/// metrics.
pub struct Ranked<'a> {
    pub ranking: &'a [i32],
    pub target: i32,
    pub unseen: Unseen<'a>,
}

/// How a user's ranking without the items seen in training is known.
#[derive(Clone, Copy)]
pub enum Unseen<'a> {
    /// The user's training items, sorted: the ranking without them is the unseen one
    /// (the ranking must then be deep enough that `k` items remain).
    Filter(&'a [i32]),
    /// A ranking of its own, from a search that left the seen items out.
    Ranked(&'a [i32]),
}

/// 0-based rank of `target` in `ranking`, looking at the first `k` entries.
fn rank_of(ranking: impl Iterator<Item = i32>, target: i32, k: usize) -> Option<usize> {
    ranking.take(k).position(|i| i == target)
}

/// The metrics over all users; `catalogue` is the number of items (for coverage).
pub fn compute(users: &[Ranked], ks: &[usize], catalogue: usize) -> BTreeMap<String, f64> {
    let n = users.len().max(1) as f64;
    let mut m = BTreeMap::new();
    let k_max = ks.iter().copied().max().unwrap_or(0);
    let mut mrr = 0.0;
    for u in users {
        if let Some(r) = rank_of(u.ranking.iter().copied(), u.target, k_max) {
            mrr += 1.0 / (r as f64 + 1.0);
        }
    }
    m.insert("mrr".to_string(), mrr / n);
    let best = best_ranks(users, k_max);
    for &k in ks {
        let (mut hr, mut ndcg, mut hr_x, mut ndcg_x) = (0.0, 0.0, 0.0, 0.0);
        for u in users {
            if let Some(r) = rank_of(u.ranking.iter().copied(), u.target, k) {
                hr += 1.0;
                ndcg += 1.0 / (r as f64 + 2.0).log2();
            }
            let unseen_rank = match u.unseen {
                Unseen::Filter(seen) => {
                    rank_of(u.ranking.iter().copied().filter(|i| seen.binary_search(i).is_err()), u.target, k)
                }
                Unseen::Ranked(list) => rank_of(list.iter().copied(), u.target, k),
            };
            if let Some(r) = unseen_rank {
                hr_x += 1.0;
                ndcg_x += 1.0 / (r as f64 + 2.0).log2();
            }
        }
        m.insert(format!("hr@{k}"), hr / n);
        m.insert(format!("ndcg@{k}"), ndcg / n);
        m.insert(format!("hr_excl@{k}"), hr_x / n);
        m.insert(format!("ndcg_excl@{k}"), ndcg_x / n);
        let covered = best.values().filter(|&&r| r < k).count();
        m.insert(format!("coverage@{k}"), covered as f64 / catalogue.max(1) as f64);
    }
    m
}

/// Each recommended item's best 0-based rank over all users' top `k_max`, from one
/// pass in parallel: a set per cut-off over 37M entries (187k users × 200) took more
/// than a second.
fn best_ranks(users: &[Ranked], k_max: usize) -> FastMap<i32, usize> {
    let keep = |best: &mut FastMap<i32, usize>, item: i32, r: usize| {
        best.entry(item).and_modify(|b| *b = (*b).min(r)).or_insert(r);
    };
    users
        .par_chunks(4096)
        .map(|chunk| {
            let mut best = FastMap::default();
            for u in chunk {
                for (r, &item) in u.ranking.iter().take(k_max).enumerate() {
                    keep(&mut best, item, r);
                }
            }
            best
        })
        .reduce(FastMap::default, |mut a, b| {
            b.into_iter().for_each(|(item, r)| keep(&mut a, item, r));
            a
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn hand_computed_rankings() {
        let none: [i32; 0] = [];
        let users = [
            Ranked { ranking: &[5, 3, 9, 1], target: 3, unseen: Unseen::Filter(&none) }, // rank 1
            Ranked { ranking: &[2, 4, 6, 8], target: 8, unseen: Unseen::Filter(&none) }, // rank 3
            Ranked { ranking: &[7, 1, 2, 3], target: 5, unseen: Unseen::Filter(&none) }, // miss
        ];
        let m = compute(&users, &[1, 2, 4], 10);
        close(m["hr@1"], 0.0);
        close(m["hr@2"], 1.0 / 3.0);
        close(m["hr@4"], 2.0 / 3.0);
        close(m["ndcg@2"], (1.0 / 3f64.log2()) / 3.0);
        close(m["ndcg@4"], (1.0 / 3f64.log2() + 1.0 / 5f64.log2()) / 3.0);
        close(m["mrr"], (0.5 + 0.25) / 3.0);
        close(m["coverage@1"], 3.0 / 10.0);
        close(m["coverage@4"], 9.0 / 10.0);
    }

    #[test]
    fn k_larger_than_the_catalogue() {
        let users = [Ranked { ranking: &[2, 1], target: 1, unseen: Unseen::Filter(&[]) }];
        let m = compute(&users, &[100], 2);
        close(m["hr@100"], 1.0);
        close(m["ndcg@100"], 1.0 / 3f64.log2());
        close(m["coverage@100"], 1.0);
    }

    #[test]
    fn exclusion_moves_the_target_up() {
        let users = [Ranked { ranking: &[4, 6, 7, 9], target: 7, unseen: Unseen::Filter(&[4, 6]) }];
        let m = compute(&users, &[1, 3], 10);
        close(m["hr@1"], 0.0);
        close(m["hr_excl@1"], 1.0);
        close(m["ndcg_excl@1"], 1.0);
        close(m["ndcg@3"], 0.5);
    }

    #[test]
    fn a_ranking_of_unseen_items_counts_like_the_filtered_one() {
        let seen = [4, 6];
        let filtered = Ranked { ranking: &[4, 6, 7, 9, 2], target: 9, unseen: Unseen::Filter(&seen) };
        let searched = Ranked { ranking: &[4, 6, 7, 9, 2], target: 9, unseen: Unseen::Ranked(&[7, 9, 2]) };
        assert_eq!(compute(&[filtered], &[1, 2, 3], 10), compute(&[searched], &[1, 2, 3], 10));
    }

    #[test]
    fn ties_are_ranked_as_given() {
        // A popularity list with tied counts is broken by item index before it gets
        // here; the metric then takes the order as it is.
        let users = [
            Ranked { ranking: &[1, 2, 3], target: 2, unseen: Unseen::Filter(&[]) },
            Ranked { ranking: &[1, 2, 3], target: 3, unseen: Unseen::Filter(&[]) },
        ];
        let m = compute(&users, &[2], 3);
        close(m["hr@2"], 0.5);
        close(m["ndcg@2"], 0.5 / 3f64.log2());
    }
}
