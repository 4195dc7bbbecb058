//! Exact top-K by brute force, as a matrix product: a block of users is scored
//! against a tile of items at a time with one GEMM (candle's CPU matmul), and each
//! user's best K, with and without the items the user has seen, are picked as the
//! tiles' scores go by, blocks in parallel. Memory is one tile of scores per thread,
//! never users × items.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::Found;
use crate::rng::Rng;
use crate::schema::vectors::Vectors;
use crate::table::failed;
use dagrun_kind::StageError;

/// Users scored by one GEMM, and items: 256 × 1024 × 4 bytes is 1 MB of scores, which
/// stay in cache between the GEMM that writes them and the scan that reads them. At
/// 5M clicks ranking every user took 11.4–13.3 s with these, 15.8–16.5 s with 64
/// users × 4096 items (candle's GEMM packs the item tile once per block of users),
/// 23.5 s with whole rows of 32 users, and 12–15 s with 512 × 512, 256 × 2048 or
/// 1024 × 256 (within the noise).
const BLOCK: usize = 256;
const TILE: usize = 1024;

/// Scores tested at once against the k-th best so far.
const CHUNK: usize = 16;

/// Both rankings of one user from its scores (one per item, in `keys`' order): the
/// best `k` items, and the best `k` of those not in `seen` (sorted), best first;
/// equal scores rank the smaller key first, so the result does not depend on the
/// order of work.
#[cfg(test)]
pub fn best_of(scores: &[f32], keys: &[i32], k: usize, seen: &[i32]) -> Found {
    let mut picker = Picker::new(k, seen);
    picker.scan(scores, keys);
    picker.finish()
}

/// One user's two rankings, built by scanning its scores a tile at a time. An item
/// goes further than one comparison only when it could beat the k-th best so far
/// (see `Best`).
struct Picker<'s> {
    k: usize,
    seen: &'s [i32],
    /// The best k + |seen| items while the user has seen at most `k` items: the best
    /// `k` unseen items are among them, so one selection gives both rankings. The
    /// best `k` otherwise.
    all: Best,
    /// The best `k` unseen items, kept apart for users who have seen more than `k`.
    unseen: Option<Best>,
}

impl<'s> Picker<'s> {
    fn new(k: usize, seen: &'s [i32]) -> Picker<'s> {
        let deep = seen.len() <= k;
        let all = Best::new(if deep { k + seen.len() } else { k });
        Picker { k, seen, all, unseen: (!deep).then(|| Best::new(k)) }
    }

    fn scan(&mut self, scores: &[f32], keys: &[i32]) {
        let whole = scores.len() / CHUNK * CHUNK;
        for (scores, keys) in scores[..whole].chunks_exact(CHUNK).zip(keys.chunks_exact(CHUNK)) {
            // An item below the k-th best unseen item so far is below the k-th best
            // item overall at the end, so it can enter neither ranking. Most chunks
            // hold no item that could; a branch-free test of the whole chunk finds
            // those that might.
            let bar = self.bar();
            let mut may = scores.iter().enumerate().fold(0u32, |m, (i, &score)| m | (u32::from(score >= bar) << i));
            while may != 0 {
                let i = may.trailing_zeros() as usize;
                self.offer(Candidate::new(scores[i], keys[i]));
                may &= may - 1;
            }
        }
        for (&score, &key) in scores[whole..].iter().zip(&keys[whole..]) {
            self.offer(Candidate::new(score, key));
        }
    }

    /// The score an item needs to enter either ranking (+∞ when nothing is wanted).
    fn bar(&self) -> f32 {
        self.unseen.as_ref().unwrap_or(&self.all).bar()
    }

    fn offer(&mut self, c: Candidate) {
        match &mut self.unseen {
            None => self.all.offer(c),
            Some(unseen) => {
                if !unseen.could_take(c.score) {
                    return;
                }
                self.all.offer(c);
                if self.seen.binary_search(&c.key).is_err() {
                    unseen.offer(c);
                }
            }
        }
    }

    fn finish(self) -> Found {
        let is_seen = |c: &Candidate| self.seen.binary_search(&c.key).is_ok();
        let mut all = self.all.into_sorted();
        let unseen: Vec<Candidate> = match self.unseen {
            Some(unseen) => unseen.into_sorted(),
            None => all.iter().filter(|c| !is_seen(c)).take(self.k).copied().collect(),
        };
        all.truncate(self.k);
        let any_seen = all.iter().any(is_seen);
        Found {
            keys: all.iter().map(|c| c.key).collect(),
            scores: all.iter().map(|c| c.score).collect(),
            unseen: any_seen.then(|| unseen.iter().map(|c| c.key).collect()),
        }
    }
}

/// The best `k` candidates offered so far, kept as a buffer that is cut back to the
/// best `k` (a partial sort) whenever it fills: linear whatever the order of the
/// scores. With a binary heap instead, ranking every user at 5M clicks took 41.5 s
/// against 35.3 s (blocks of 128 users), sifts a fifth of the cycles.
struct Best {
    k: usize,
    buf: Vec<Candidate>,
    /// The k-th best score at the last cut, −∞ before: anything below it cannot be kept.
    worst: f32,
}

impl Best {
    fn new(k: usize) -> Best {
        Best { k, buf: Vec::with_capacity(2 * k), worst: f32::NEG_INFINITY }
    }

    /// The k-th best score so far, which a candidate must reach (+∞ when nothing is
    /// wanted).
    fn bar(&self) -> f32 {
        if self.k == 0 { f32::INFINITY } else { self.worst }
    }

    /// False when `score` is below the bar (an equal score may still win on its key).
    /// NaN is never kept, nor anything when nothing is wanted.
    fn could_take(&self, score: f32) -> bool {
        self.k > 0 && score >= self.bar()
    }

    fn offer(&mut self, c: Candidate) {
        if self.could_take(c.score) {
            self.buf.push(c);
            if self.buf.len() >= 2 * self.k {
                self.cut();
            }
        }
    }

    fn cut(&mut self) {
        if self.buf.len() > self.k {
            self.buf.select_nth_unstable(self.k - 1);
            self.buf.truncate(self.k);
            self.worst = self.buf[self.k - 1].score;
        }
    }

    fn into_sorted(mut self) -> Vec<Candidate> {
        self.cut();
        self.buf.sort_unstable();
        self.buf
    }
}

/// An item and its score, ordered best first: a higher score, then a smaller key, is
/// less.
#[derive(Clone, Copy)]
struct Candidate {
    score: f32,
    key: i32,
}

impl Candidate {
    /// −0 and +0 are equal scores, but `total_cmp` ranks −0 below: adding +0 turns
    /// −0 into +0 and leaves every other score as it is.
    fn new(score: f32, key: i32) -> Candidate {
        Candidate { score: score + 0.0, key }
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.score.total_cmp(&self.score).then(self.key.cmp(&other.key))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Candidate {}

/// Both exact rankings (see [`best_of`]) of each of `rows` (indices into `users`) by
/// inner product, in the order of `rows`; `seen(row)` is that user's sorted seen
/// items. `done` is told how many users each block finished.
pub fn rank<'s>(
    users: &Vectors,
    rows: &[usize],
    items: &Vectors,
    k: usize,
    seen: &(dyn Fn(usize) -> &'s [i32] + Sync),
    done: &(dyn Fn(usize) + Sync),
) -> Result<Vec<Found>, StageError> {
    let (d, n) = (items.dim, items.idx.len());
    let tiles: Vec<(std::ops::Range<usize>, Tensor)> = (0..n)
        .step_by(TILE)
        .map(|start| {
            let r = start..(start + TILE).min(n);
            let t = Tensor::from_slice(&items.data[r.start * d..r.end * d], (r.len(), d), &Device::Cpu)?.t()?;
            Ok((r, t))
        })
        .collect::<candle_core::Result<_>>()
        .map_err(failed)?;
    let blocks: Vec<Vec<Found>> = rows
        .par_chunks(BLOCK)
        .map(|block| {
            let mut q = Vec::with_capacity(block.len() * d);
            for &r in block {
                q.extend_from_slice(&users.data[r * d..(r + 1) * d]);
            }
            let q = Tensor::from_vec(q, (block.len(), d), &Device::Cpu).map_err(failed)?;
            let mut pickers: Vec<Picker> = block.iter().map(|&r| Picker::new(k, seen(r))).collect();
            for (r, tile) in &tiles {
                let scores = q.matmul(tile).map_err(failed)?;
                in_place(&scores, |scores| {
                    for (picker, row) in pickers.iter_mut().zip(scores.chunks(r.len())) {
                        picker.scan(row, &items.idx[r.clone()]);
                    }
                })
                .map_err(failed)?;
            }
            done(block.len());
            Ok(pickers.into_iter().map(Picker::finish).collect())
        })
        .collect::<Result<_, StageError>>()?;
    Ok(blocks.into_iter().flatten().collect())
}

/// Runs `f` on a CPU tensor's values where they lie: copying each block of scores out
/// (`to_vec1`) was 5% of the cycles of ranking every user at 5M clicks.
fn in_place(t: &Tensor, f: impl FnOnce(&[f32])) -> candle_core::Result<()> {
    let (storage, layout) = t.storage_and_layout();
    let (candle_core::Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets()) else {
        candle_core::bail!("exact search scores a contiguous tensor on the CPU");
    };
    f(&cpu.as_slice::<f32>()?[start..end]);
    Ok(())
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
        all.sort_by(|a, b| b.0.partial_cmp(&a.0).expect("no NaN").then(a.1.cmp(&b.1)));
        all.into_iter().take(k).map(|(_, key)| key).collect()
    }

    #[test]
    fn blocked_rankings_equal_a_full_sort_with_ties_with_and_without_seen_items() {
        // Two blocks of users, three tiles of items; half the users have seen more
        // items than K (two selections), half fewer (one selection K + |seen| deep).
        let (users, items) = (vectors(300, 4, 1), vectors(2500, 4, 2));
        let rows: Vec<usize> = (0..300).collect();
        let every = |r: usize| if r.is_multiple_of(2) { 5 } else { 300 };
        let seen: Vec<Vec<i32>> =
            (0..300).map(|r| (1..=2500).filter(|&i| (i as usize + r).is_multiple_of(every(r))).collect()).collect();
        assert!(seen[1].len() < 20 && seen[0].len() > 20);
        let got = rank(&users, &rows, &items, 20, &|r| &seen[r], &|_| {}).unwrap();
        for (r, found) in got.iter().enumerate() {
            let q = &users.data[r * 4..(r + 1) * 4];
            assert_eq!(found.keys, brute_force(q, &items, 20, |_| true), "user {r}");
            let unseen = brute_force(q, &items, 20, |key| seen[r].binary_search(&key).is_err());
            assert_eq!(found.unseen.as_ref().unwrap_or(&found.keys), &unseen, "user {r}");
        }
        let some = got.iter().filter(|f| f.unseen.is_some()).count();
        assert!(some > 100, "most top-20s hold a seen item: {some}");
    }

    #[test]
    fn exclusion_matches_a_brute_force_filter() {
        let items = vectors(200, 3, 5);
        let q = [1.0, -1.0, 0.5];
        let scores: Vec<f32> =
            (0..200).map(|j| q.iter().zip(&items.data[j * 3..(j + 1) * 3]).map(|(a, b)| a * b).sum()).collect();
        let mut seen: Vec<i32> = (1..=200).filter(|key| key % 3 == 0).collect();
        seen.sort_unstable();
        let got = best_of(&scores, &items.idx, 15, &seen);
        let unseen = got.unseen.expect("the top 15 holds a seen item");
        assert_eq!(unseen, brute_force(&q, &items, 15, |key| key % 3 != 0));
        assert_eq!(got.keys, brute_force(&q, &items, 15, |_| true));
        assert!(got.scores.windows(2).all(|w| w[0] >= w[1]), "{:?}", got.scores);
    }

    #[test]
    fn more_than_there_is_returns_everything_ranked() {
        let got = best_of(&[0.5, 0.9, 0.5], &[7, 8, 3], 10, &[]);
        assert_eq!(got.keys, [8, 3, 7]);
        assert_eq!(got.scores, [0.9, 0.5, 0.5]);
        assert!(got.unseen.is_none(), "nothing seen: the ranking is the unseen one too");
        assert!(best_of(&[0.5], &[7], 0, &[]).keys.is_empty());
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
