//! Kind `evaluate`: ranks the items for every test user by inner product of the
//! exported unit vectors, with and without the user's training items (the `_excl`
//! metrics), and scores the lists against the held-out clicks. It builds a usearch
//! HNSW index over the item vectors, the artifact a service would search, and
//! measures its recall against exact search (`index_recall@K`). The rankings come
//! from exact search by GEMM (`exact`), or from the index (`search`) with
//! `ranking: index`; the other one runs on a seeded sample of users.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::arrow::array::{ArrayRef, Float32Array, Int32Array, RecordBatch, StringBuilder};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::hashing::{FastMap, FastSet};
use crate::ranking::{self, Ranked, Unseen};
use crate::schema::clicks::{ITEM, USER};
use crate::schema::encoded::{ALSO_SEEN, ITEM_IDX, USER_IDX, seen_items_of};
use crate::schema::vectors::{Vectors, read_vectors};
use crate::table::{self, TableWriter, failed};
use dagrun_kind::{Format, KindSpec, OutputSpec, Params, Report, StageCtx, StageError, params};

mod exact;
mod search;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluateParams {
    pub ks: Vec<usize>,
    /// Where the rankings (metrics and `topk`) come from: `exact` search, so that the
    /// metrics do not depend on the index, or the `index`, as a service would serve
    /// them. Exact by default since it is also the faster: at 5M clicks (187k users ×
    /// 50k items, `benches/evaluate.sh`, each building its own index) evaluate took
    /// 14.2–20.1 s (median 15.8) ranking exactly against 21.5–24.7 s (median 23.8) by
    /// the index, whose build (one thread) then runs beside the exact ranking instead
    /// of before the search.
    pub ranking: RankingSource,
    /// HNSW graph degree (usearch `connectivity`).
    pub connectivity: usize,
    /// 128: at 5M clicks index_recall@50 is 0.9998; at 64 it was 0.9546 for 1.9 s less.
    pub expansion_add: usize,
    /// The shortest candidate list of a search. 256: at 5M clicks index_recall@200 is
    /// 0.9938 (0.9894 at 64 and 128) for the same seconds, since a search for the top
    /// 200 and the user's seen items is longer than the list anyway (see `search`).
    pub expansion_search: usize,
    /// Users on whom the index is checked against exact search (`index_recall@K`):
    /// every user while there are at most this many, otherwise a sample of this many
    /// drawn with `seed`. 5,000 users: at 5M clicks the per-user recall@50 has a
    /// spread near 0.005, so the sampled mean is within 0.0001 of the full one.
    pub exact_users: usize,
    pub seed: u64,
}

/// The `ranking` param.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RankingSource {
    Index,
    Exact,
}

impl Default for EvaluateParams {
    fn default() -> Self {
        EvaluateParams {
            ks: vec![10, 50, 100, 200],
            ranking: RankingSource::Exact,
            connectivity: 16,
            expansion_add: 128,
            expansion_search: 256,
            exact_users: 5_000,
            seed: 0,
        }
    }
}

const INDEX: OutputSpec = OutputSpec { name: "index", format: Format::Usearch };
const TOPK: OutputSpec = OutputSpec { name: "topk", format: Format::Parquet };
const METRICS: OutputSpec = OutputSpec { name: "metrics", format: Format::Json };

pub const SPEC: KindSpec = KindSpec {
    name: "evaluate",
    summary: "usearch HNSW index over item vectors; top-K per test user; HR, NDCG, MRR, coverage, index recall",
    inputs: &["users", "items", "seen"],
    // More clicks to leave out of the `_excl` rankings: the validation clicks, when
    // test users are evaluated; and the index of another evaluate over the same
    // items, to search instead of building it again.
    optional_inputs: &[ALSO_SEEN, INDEX.name],
    outputs: &[INDEX, TOPK, METRICS],
    fingerprint: crate::fingerprints::EVALUATE,
    params: params::check::<EvaluateParams>,
    needs: dagrun_kind::needs_nothing,
    run,
};

impl Params for EvaluateParams {
    fn validate(&self) -> Result<(), params::ParamError> {
        crate::ranking::check_ks("ks", &self.ks)?;
        params::positive_int("connectivity", self.connectivity as u64)?;
        params::positive_int("expansion_add", self.expansion_add as u64)?;
        params::positive_int("expansion_search", self.expansion_search as u64)?;
        params::positive_int("exact_users", self.exact_users as u64)
    }
}

/// A user's seen items, sorted, by the user's row.
type Seen<'s> = dyn Fn(usize) -> &'s [i32] + Sync + 's;

/// What a ranking found for one user.
pub struct Found {
    /// The top K, best first, with their scores (inner products).
    pub keys: Vec<i32>,
    pub scores: Vec<f32>,
    /// The top K without the user's training items, when the top K held one of them;
    /// None when it held none, so that `keys` is the unseen ranking too.
    pub unseen: Option<Vec<i32>>,
}

fn run(ctx: &StageCtx) -> Result<Report, StageError> {
    let p: EvaluateParams = params::typed(ctx.params)?;
    let (users, targets) = read_vectors(ctx.input("users")?, USER_IDX, USER)?;
    let targets = targets.unwrap_or_default();
    let (items, _) = read_vectors(ctx.input("items")?, ITEM_IDX, ITEM)?;
    if users.dim != items.dim {
        return Err(StageError::Failed(format!(
            "evaluate: user vectors have {} dimensions, item vectors {}",
            users.dim, items.dim
        )));
    }
    let seen = seen_items_of(ctx, "seen")?;
    let no_seen = Vec::new();
    let seen_of = |r: usize| seen.get(users.idx[r] as usize).map_or(no_seen.as_slice(), Vec::as_slice);
    let (m_users, n) = (users.idx.len(), items.idx.len());
    let k_max = p.ks.iter().copied().max().unwrap_or(1).min(n);
    let exactly = p.ranking == RankingSource::Exact;
    let sample = exact::sample(m_users, p.exact_users, p.seed);
    let (found, checked) = rankings(ctx, &p, &users, &items, k_max, &seen_of, &sample)?;

    let ranked: Vec<Ranked> = (0..m_users)
        .map(|r| Ranked {
            ranking: &found[r].keys,
            target: targets[r],
            unseen: Unseen::Ranked(found[r].unseen.as_ref().unwrap_or(&found[r].keys)),
        })
        .collect();
    let mut m = ranking::compute(&ranked, &p.ks, n);
    // Pairs of (the index's list, exact search's list) for the sampled users.
    let pairs: Vec<(&[i32], &[i32])> = sample
        .iter()
        .zip(&checked)
        .map(|(&r, c)| (&found[r].keys[..], &c.keys[..]))
        .map(|(ours, theirs)| if exactly { (theirs, ours) } else { (ours, theirs) })
        .collect();
    for &k in &p.ks {
        m.insert(format!("index_recall@{k}"), index_recall(&pairs, k.min(n).max(1)));
    }
    m.insert("index_recall_users".into(), sample.len() as f64);
    m.insert("users".into(), m_users as f64);
    m.insert("ranked_exactly".into(), if exactly { 1.0 } else { 0.0 });
    std::fs::write(ctx.output(&METRICS), serde_json::to_vec_pretty(&m).map_err(failed)?)?;
    let rows = write_topk(ctx, &users, &items, &found, k_max)?;
    let mut report = Report { metrics: m, ..Default::default() };
    report.rows.insert("topk".into(), rows);
    let how = if exactly { "exactly; index checked" } else { "by the index; exact check" };
    report.notes.push(format!("ranked {m_users} users against {n} items {how} on {} users", sample.len()));
    if ctx.optional_input(INDEX.name).is_some() {
        report.notes.push("searched the index given as input `index`".into());
    }
    Ok(report)
}

/// The rankings of every user, and those of the `sample` by the other search: exact
/// search's for the sample and the index's for all users, or with `ranking: exact`
/// the other way round.
fn rankings(
    ctx: &StageCtx,
    p: &EvaluateParams,
    users: &Vectors,
    items: &Vectors,
    k_max: usize,
    seen_of: &Seen,
    sample: &[usize],
) -> Result<(Vec<Found>, Vec<Found>), StageError> {
    let exactly = p.ranking == RankingSource::Exact;
    let all: Vec<usize> = (0..users.idx.len()).collect();
    ctx.progress.set_length((all.len() + sample.len()) as u64);
    let done = AtomicUsize::new(0);
    let tick = |k: usize| ctx.progress.set_position((done.fetch_add(k, Ordering::Relaxed) + k) as u64);
    let (exact_rows, index_rows) = if exactly { (&all[..], sample) } else { (sample, &all[..]) };
    let (exact_seen, index_seen): (&Seen, &Seen) = if exactly { (seen_of, &|_| &[]) } else { (&|_| &[], seen_of) };
    ctx.progress.set_message(if exactly {
        "building the index, ranking exactly"
    } else {
        "building the index, exact check"
    });
    // The index is built on one thread (see `search::build`); exact search, which
    // does not need it, keeps the other cores busy meanwhile.
    let given = ctx.optional_input(INDEX.name);
    let index = || given.map_or_else(|| search::build(p, items), |path| search::reuse(p, items, path));
    let (index, by_exact) = rayon::join(index, || exact::rank(users, exact_rows, items, k_max, exact_seen, &tick));
    let index = index?;
    match given {
        Some(path) => std::fs::copy(path, ctx.output(&INDEX)).map(|_| ())?,
        None => index.save(&ctx.output(&INDEX).to_string_lossy()).map_err(failed)?,
    }
    ctx.progress.set_message(if exactly { "checking the index" } else { "searching" });
    let by_index = search::search_all(&index, users, index_rows, k_max, index_seen, &tick)?;
    Ok(if exactly { (by_exact?, by_index) } else { (by_index, by_exact?) })
}

/// The share of exact search's top `k` that the index found, over (index, exact)
/// list pairs.
fn index_recall(pairs: &[(&[i32], &[i32])], k: usize) -> f64 {
    let overlap: f64 = pairs
        .iter()
        .map(|(index, exact)| {
            let e: FastSet<i32> = exact.iter().take(k).copied().collect();
            index.iter().take(k).filter(|i| e.contains(i)).count() as f64 / k as f64
        })
        .sum();
    overlap / pairs.len().max(1) as f64
}

/// The top-K lists, for people to look at: one row group per run of users, encoded
/// in parallel.
fn write_topk(
    ctx: &StageCtx,
    users: &Vectors,
    items: &Vectors,
    found: &[Found],
    k_max: usize,
) -> Result<u64, StageError> {
    let item_raw: FastMap<i32, &str> = items.idx.iter().zip(&items.raw).map(|(i, r)| (*i, r.as_str())).collect();
    let batch = |rows: std::ops::Range<usize>| -> Result<RecordBatch, StageError> {
        let (mut uid, mut uidx, mut rank, mut iid, mut iidx, mut score) =
            (StringBuilder::new(), vec![], vec![], StringBuilder::new(), vec![], vec![]);
        for r in rows {
            for (k, (&item, &s)) in found[r].keys.iter().zip(&found[r].scores).enumerate() {
                uid.append_value(&users.raw[r]);
                uidx.push(users.idx[r]);
                rank.push(k as i32 + 1);
                iid.append_value(item_raw.get(&item).copied().unwrap_or(""));
                iidx.push(item);
                score.push(s);
            }
        }
        table::batch(vec![
            (USER, Arc::new(uid.finish()) as ArrayRef),
            (USER_IDX, Arc::new(Int32Array::from(uidx))),
            ("rank", Arc::new(Int32Array::from(rank))),
            (ITEM, Arc::new(iid.finish())),
            (ITEM_IDX, Arc::new(Int32Array::from(iidx))),
            ("score", Arc::new(Float32Array::from(score))),
        ])
    };
    let per_group = (table::ROW_GROUP / k_max.max(1)).max(1);
    let groups: Vec<std::ops::Range<usize>> =
        (0..users.idx.len()).step_by(per_group).map(|s| s..(s + per_group).min(users.idx.len())).collect();
    let mut w = TableWriter::create(&ctx.output(&TOPK), batch(0..0)?.schema())?;
    w.write_row_groups(groups.into_par_iter().map(|rows| std::iter::once(batch(rows))))?;
    w.finish()
}
