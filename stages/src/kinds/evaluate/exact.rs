//! Exact top-K by brute force, as a matrix product: blocks of users are scored
//! against every item with one GEMM (candle's CPU matmul), and each user's best K
//! are picked by partial selection, blocks in parallel. Memory is one block of
//! scores per thread, never users × items.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::rng::Rng;
use crate::schema::vectors::Vectors;
use crate::table::failed;
use dagrun_kind::StageError;

/// Users scored by one GEMM: 128 × 50k items × 4 bytes is 25 MB of scores a block.
const BLOCK: usize = 128;

/// The `k` best item keys of `scores` (one per item, in `keys`' order), best first;
/// equal scores rank the smaller key first, so the result does not depend on the
/// order of work. `keep` says which items may be ranked at all.
pub fn top_k(scores: &[f32], keys: &[i32], k: usize, keep: impl Fn(i32) -> bool, buf: &mut Vec<u32>) -> Vec<i32> {
    buf.clear();
    buf.extend((0..scores.len() as u32).filter(|&j| keep(keys[j as usize])));
    let better = |a: &u32, b: &u32| {
        let (a, b) = (*a as usize, *b as usize);
        scores[b].total_cmp(&scores[a]).then(keys[a].cmp(&keys[b]))
    };
    if buf.len() > k && k > 0 {
        buf.select_nth_unstable_by(k - 1, better);
    }
    buf.truncate(k);
    buf.sort_unstable_by(better);
    buf.iter().map(|&j| keys[j as usize]).collect()
}

/// Each of `rows` (indices into `users`)'s exact top `k` items by inner product,
/// in the order of `rows`. `done` is told how many users each block finished.
pub fn top_k_of(
    users: &Vectors,
    rows: &[usize],
    items: &Vectors,
    k: usize,
    done: &(dyn Fn(usize) + Sync),
) -> Result<Vec<Vec<i32>>, StageError> {
    let d = items.dim;
    let items_t =
        Tensor::from_slice(&items.data, (items.idx.len(), d), &Device::Cpu).and_then(|t| t.t()).map_err(failed)?;
    let blocks: Vec<Vec<Vec<i32>>> = rows
        .par_chunks(BLOCK)
        .map(|block| {
            let mut q = Vec::with_capacity(block.len() * d);
            for &r in block {
                q.extend_from_slice(&users.data[r * d..(r + 1) * d]);
            }
            let scores = Tensor::from_vec(q, (block.len(), d), &Device::Cpu)
                .and_then(|q| q.matmul(&items_t))
                .and_then(|s| s.flatten_all())
                .and_then(|s| s.to_vec1::<f32>())
                .map_err(failed)?;
            let mut buf = Vec::new();
            let n = items.idx.len();
            let lists = (0..block.len()).map(|b| top_k(&scores[b * n..(b + 1) * n], &items.idx, k, |_| true, &mut buf));
            let lists = lists.collect();
            done(block.len());
            Ok(lists)
        })
        .collect::<Result<_, StageError>>()?;
    Ok(blocks.into_iter().flatten().collect())
}

/// Which of `n` users the exact check covers: all when there are at most `m`,
/// otherwise `m` drawn without replacement with `seed`, in ascending order.
pub fn sample(n: usize, m: usize, seed: u64) -> Vec<usize> {
    if n <= m {
        return (0..n).collect();
    }
    let mut rng = Rng::new(seed);
    let mut all: Vec<usize> = (0..n).collect();
    for i in 0..m {
        let j = i + rng.below((n - i) as u64) as usize;
        all.swap(i, j);
    }
    all.truncate(m);
    all.sort_unstable();
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors whose inner products tie often: coordinates from a few values.
    fn vectors(n: usize, d: usize, seed: u64) -> Vectors {
        let mut rng = Rng::new(seed);
        let data = (0..n * d).map(|_| rng.below(3) as f32 - 1.0).collect();
        Vectors { idx: (1..=n as i32).rev().collect(), raw: vec![String::new(); n], data, dim: d }
    }

    /// Every item scored and fully sorted: score descending, then key ascending.
    fn brute_force(q: &[f32], items: &Vectors, k: usize, keep: impl Fn(i32) -> bool) -> Vec<i32> {
        let d = items.dim;
        let mut all: Vec<(f32, i32)> = (0..items.idx.len())
            .filter(|&j| keep(items.idx[j]))
            .map(|j| (q.iter().zip(&items.data[j * d..(j + 1) * d]).map(|(a, b)| a * b).sum(), items.idx[j]))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        all.into_iter().take(k).map(|(_, key)| key).collect()
    }

    #[test]
    fn blocked_top_k_equals_a_full_sort_with_ties() {
        let (users, items) = (vectors(300, 4, 1), vectors(500, 4, 2));
        let rows: Vec<usize> = (0..300).collect();
        let got = top_k_of(&users, &rows, &items, 20, &|_| {}).unwrap();
        for (r, list) in got.iter().enumerate() {
            assert_eq!(list, &brute_force(&users.data[r * 4..(r + 1) * 4], &items, 20, |_| true), "user {r}");
        }
    }

    #[test]
    fn exclusion_matches_a_brute_force_filter() {
        let items = vectors(200, 3, 5);
        let q = [1.0, -1.0, 0.5];
        let scores: Vec<f32> =
            (0..200).map(|j| q.iter().zip(&items.data[j * 3..(j + 1) * 3]).map(|(a, b)| a * b).sum()).collect();
        let seen = |key: i32| key % 3 == 0;
        let got = top_k(&scores, &items.idx, 15, |key| !seen(key), &mut Vec::new());
        assert_eq!(got, brute_force(&q, &items, 15, |key| !seen(key)));
        assert!(got.iter().all(|&key| !seen(key)));
    }

    #[test]
    fn more_than_there_is_returns_everything_ranked() {
        let got = top_k(&[0.5, 0.9, 0.5], &[7, 8, 3], 10, |_| true, &mut Vec::new());
        assert_eq!(got, [8, 3, 7]);
    }

    #[test]
    fn the_sample_is_deterministic_for_a_seed() {
        let a = sample(10_000, 100, 7);
        assert_eq!(a, sample(10_000, 100, 7));
        assert_ne!(a, sample(10_000, 100, 8));
        assert_eq!(a.len(), 100);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "ascending, without repeats");
        assert_eq!(sample(50, 100, 7), (0..50).collect::<Vec<_>>(), "all users when they are few");
        assert_eq!(&a[..5], [23, 434, 454, 529, 532], "pinned: the sample stays the same across versions");
    }
}
