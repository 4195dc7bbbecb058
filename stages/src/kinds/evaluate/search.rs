//! The HNSW side of evaluate: the index over the item vectors, built so that the same
//! vectors give the same index file, and searched for every user in parallel.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::{EvaluateParams, Found};
use crate::schema::vectors::Vectors;
use crate::table::failed;
use dagrun_kind::StageError;

/// The index of the item vectors (inner product, f32), keyed by item index. Adds run on one
/// thread in key order: a multi-threaded build links the graph in whatever order the
/// threads get there, and the index file would differ from run to run.
pub fn build(p: &EvaluateParams, items: &Vectors) -> Result<Index, StageError> {
    let d = items.dim;
    let options = IndexOptions {
        dimensions: d,
        metric: MetricKind::IP,
        quantization: ScalarKind::F32,
        connectivity: p.connectivity,
        expansion_add: p.expansion_add,
        expansion_search: p.expansion_search,
        multi: false,
    };
    let index = Index::new(&options).map_err(failed)?;
    index.reserve_capacity_and_threads(items.idx.len(), 1).map_err(failed)?;
    for (row, &key) in items.idx.iter().enumerate() {
        index.add(key as u64, &items.data[row * d..(row + 1) * d]).map_err(failed)?;
    }
    Ok(index)
}

/// The index another evaluate built over the same item vectors (the `index` input),
/// so that validation and test do not build one index twice: at 5M clicks each
/// build is 4–6 s on one thread. It must hold exactly `items`' vectors, checked
/// vector by vector.
pub fn reuse(p: &EvaluateParams, items: &Vectors, path: &Path) -> Result<Index, StageError> {
    let shown = path.display();
    let index = Index::restore(&path.to_string_lossy())
        .map_err(|e| StageError::BadInput(format!("{shown}: input `index` is not a usearch index: {e}")))?;
    let d = items.dim;
    if index.metric_kind() != MetricKind::IP || index.dimensions() != d || index.size() != items.idx.len() {
        return Err(StageError::BadInput(format!(
            "{shown}: input `index` holds {} vectors of {} dimensions (inner product: {}), the items {} of {d}; \
             give it the index of an evaluate over the same items",
            index.size(),
            index.dimensions(),
            index.metric_kind() == MetricKind::IP,
            items.idx.len()
        )));
    }
    let mut v = vec![0f32; d];
    for (row, &key) in items.idx.iter().enumerate() {
        let found = index.get(key as u64, &mut v).map_err(failed)?;
        if found != 1 || v[..] != items.data[row * d..(row + 1) * d] {
            return Err(StageError::BadInput(format!(
                "{shown}: input `index` does not hold item {key}'s vector from `items`; \
                 give it the index of an evaluate over the same items"
            )));
        }
    }
    index.change_expansion_search(p.expansion_search);
    Ok(index)
}

/// Searches the index for each of `rows` (indices into `users`) in parallel, in the
/// order of `rows`; `seen(row)` is that user's sorted training items. `done` is told
/// how many users finished.
pub fn search_all<'s>(
    index: &Index,
    users: &Vectors,
    rows: &[usize],
    k: usize,
    seen: &(dyn Fn(usize) -> &'s [i32] + Sync),
    done: &(dyn Fn(usize) + Sync),
) -> Result<Vec<Found>, StageError> {
    // One search context per thread that searches it, whoever built it.
    index.reserve_capacity_and_threads(index.size(), rayon::current_num_threads()).map_err(failed)?;
    let (d, expansion) = (users.dim, index.expansion_search());
    let finished = AtomicUsize::new(0);
    rows.par_iter()
        .with_min_len(64)
        .map(|&r| {
            let found = search_one(index, &users.data[r * d..(r + 1) * d], k, seen(r), expansion);
            if finished.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
                done(1024);
            }
            found
        })
        .collect()
}

/// One user's search. A user with at most max(K, `expansion_search` − K) seen items
/// gets one search K + |seen| deep, which gives both rankings; a heavier user gets
/// the top K and a filtered search (usearch's predicate search) for the unseen top K,
/// rather than a search thousands deep. usearch searches with a candidate list of
/// max(`expansion_search`, count), so for K = 200 the cost is set by the count: at 5M
/// clicks (26 seen items a user on average) 14.5 s for the search with
/// `expansion_search` 64, 128 or 256 alike, and 24–33 s at 512, where every search
/// paid for 512 candidates.
fn search_one(index: &Index, q: &[f32], k: usize, seen: &[i32], expansion: usize) -> Result<Found, StageError> {
    let is_seen = |key: i32| seen.binary_search(&key).is_ok();
    let deep = k + seen.len() <= expansion.max(2 * k);
    let m = index.search(q, if deep { k + seen.len() } else { k }).map_err(failed)?;
    let keys: Vec<i32> = m.keys.iter().map(|&key| key as i32).collect();
    let top = keys.len().min(k);
    let unseen = if !keys[..top].iter().any(|&key| is_seen(key)) {
        None
    } else if deep {
        Some(keys.iter().copied().filter(|&key| !is_seen(key)).take(k).collect())
    } else {
        let f = index.filtered_search(q, k, |key| !is_seen(key as i32)).map_err(failed)?;
        Some(f.keys.iter().map(|&key| key as i32).collect())
    };
    Ok(Found { keys: keys[..top].to_vec(), scores: m.distances[..top].iter().map(|dist| 1.0 - dist).collect(), unseen })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::evaluate::exact;
    use crate::rng::Rng;

    fn vectors(n: usize, d: usize, seed: u64) -> Vectors {
        let mut rng = Rng::new(seed);
        let mut data: Vec<f32> = (0..n * d).map(|_| rng.normal() as f32).collect();
        for row in data.chunks_mut(d) {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            row.iter_mut().for_each(|x| *x /= norm);
        }
        Vectors { idx: (1..=n as i32).collect(), raw: vec![String::new(); n], data, dim: d }
    }

    #[test]
    fn filtered_search_leaves_seen_items_out_and_matches_exact_search_on_a_small_catalogue() {
        let (users, items) = (vectors(40, 8, 3), vectors(300, 8, 4));
        let p = EvaluateParams { expansion_search: 400, ..EvaluateParams::default() };
        let index = build(&p, &items).unwrap();
        let seen: Vec<Vec<i32>> = (0..40).map(|r| (1..=300).filter(|i| (i + r) % 4 == 0).collect()).collect();
        let rows: Vec<usize> = (0..40).collect();
        let found = search_all(&index, &users, &rows, 10, &|r| &seen[r], &|_| {}).unwrap();
        for (r, f) in found.iter().enumerate() {
            let scores: Vec<f32> = (0..300)
                .map(|j| {
                    users.data[r * 8..(r + 1) * 8].iter().zip(&items.data[j * 8..(j + 1) * 8]).map(|(a, b)| a * b).sum()
                })
                .collect();
            let e = exact::best_of(&scores, &items.idx, 10, &seen[r]);
            assert_eq!(f.unseen.as_ref().unwrap_or(&f.keys), e.unseen.as_ref().unwrap_or(&e.keys), "user {r}");
            assert_eq!(f.keys, e.keys, "user {r}");
        }
    }

    #[test]
    fn users_with_more_seen_items_than_the_candidate_list_go_through_the_filtered_search() {
        let (users, items) = (vectors(20, 8, 5), vectors(300, 8, 6));
        let p = EvaluateParams { expansion_search: 40, ..EvaluateParams::default() };
        let index = build(&p, &items).unwrap();
        let seen: Vec<i32> = (1..=300).filter(|i| i % 3 == 0).collect();
        let rows: Vec<usize> = (0..20).collect();
        for found in search_all(&index, &users, &rows, 10, &|_| &seen, &|_| {}).unwrap() {
            let unseen = found.unseen.unwrap_or(found.keys);
            assert_eq!(unseen.len(), 10);
            assert!(unseen.iter().all(|i| i % 3 != 0), "{unseen:?}");
        }
    }

    #[test]
    fn an_index_is_reused_only_over_the_same_item_vectors() {
        let items = vectors(200, 8, 9);
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("valid.usearch");
        let p = EvaluateParams::default();
        build(&p, &items).unwrap().save(&path.to_string_lossy()).unwrap();
        assert_eq!(reuse(&p, &items, &path).unwrap().size(), 200);
        let mut moved = vectors(200, 8, 9);
        moved.data[17 * 8] += 0.5;
        let e = reuse(&p, &moved, &path).err().expect("item 18 moved").to_string();
        assert!(e.contains("valid.usearch") && e.contains("item 18's vector"), "{e}");
        let e = reuse(&p, &vectors(100, 8, 9), &path).err().expect("fewer items").to_string();
        assert!(e.contains("holds 200 vectors of 8 dimensions"), "{e}");
        std::fs::write(&path, b"not an index").unwrap();
        let e = reuse(&p, &items, &path).err().expect("not an index").to_string();
        assert!(e.contains("is not a usearch index"), "{e}");
    }

    #[test]
    fn the_same_vectors_give_the_same_index_file() {
        let items = vectors(500, 8, 9);
        let d = tempfile::tempdir().unwrap();
        let files: Vec<Vec<u8>> = (0..2)
            .map(|i| {
                let path = d.path().join(format!("{i}.usearch"));
                build(&EvaluateParams::default(), &items).unwrap().save(&path.to_string_lossy()).unwrap();
                std::fs::read(path).unwrap()
            })
            .collect();
        assert_eq!(files[0], files[1]);
    }
}
