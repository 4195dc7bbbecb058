//! Kind `evaluate`: builds a usearch HNSW index (cosine, f32) over the item vectors,
//! retrieves the top K for every test user, and scores the lists against the held-out
//! clicks. Exact search over the same vectors measures the index's recall.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float32Array, Int32Array, StringArray};
use serde::{Deserialize, Serialize};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::ranking::{self, Ranked};
use crate::schema::clicks::{ITEM, USER};
use crate::schema::encoded::{ITEM_IDX, USER_IDX, seen_items};
use crate::schema::vectors::{Vectors, read_vectors};
use crate::table::{self, failed};
use dagrun_kind::{Format, KindSpec, OutputSpec, Params, Report, StageCtx, StageError, params};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluateParams {
    pub ks: Vec<usize>,
    /// HNSW graph degree (usearch `connectivity`).
    pub connectivity: usize,
    pub expansion_add: usize,
    pub expansion_search: usize,
}

impl Default for EvaluateParams {
    fn default() -> Self {
        EvaluateParams { ks: vec![10, 50, 100, 200], connectivity: 16, expansion_add: 128, expansion_search: 512 }
    }
}

const INDEX: OutputSpec = OutputSpec { name: "index", format: Format::Usearch };
const TOPK: OutputSpec = OutputSpec { name: "topk", format: Format::Parquet };
pub(crate) const METRICS: OutputSpec = OutputSpec { name: "metrics", format: Format::Json };

pub const SPEC: KindSpec = KindSpec {
    name: "evaluate",
    summary: "usearch HNSW index over item vectors; top-K per test user; HR, NDCG, MRR, coverage, index recall",
    inputs: &["users", "items", "seen"],
    outputs: &[INDEX, TOPK, METRICS],
    fingerprint: crate::fingerprints::EVALUATE,
    params: params::check::<EvaluateParams>,
    run,
};

impl Params for EvaluateParams {
    fn validate(&self) -> Result<(), params::ParamError> {
        crate::ranking::check_ks("ks", &self.ks)?;
        params::positive_int("connectivity", self.connectivity as u64)?;
        params::positive_int("expansion_add", self.expansion_add as u64)?;
        params::positive_int("expansion_search", self.expansion_search as u64)
    }
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
    let seen = seen_items(ctx.input("seen")?)?;
    let no_seen = Vec::new();
    let seen_of = |u: i32| seen.get(u as usize).unwrap_or(&no_seen);
    let index = build_index(&p, &items)?;
    index.save(&ctx.output(&INDEX).to_string_lossy()).map_err(failed)?;
    let k_max = p.ks.iter().copied().max().unwrap_or(1);
    let found = search(ctx, &index, &users, &items, |u| k_max + seen_of(u).len())?;
    let ranked: Vec<Ranked> = (0..users.idx.len())
        .map(|r| Ranked { ranking: &found.hnsw[r], target: targets[r], seen: seen_of(users.idx[r]) })
        .collect();
    let mut m = ranking::compute(&ranked, &p.ks, items.idx.len());
    for &k in &p.ks {
        m.insert(format!("index_recall@{k}"), index_recall(&found, k.min(items.idx.len()).max(1)));
    }
    m.insert("users".into(), users.idx.len() as f64);
    std::fs::write(ctx.output(&METRICS), serde_json::to_vec_pretty(&m).map_err(failed)?)?;
    let rows = write_topk(ctx, &users, &items, &found, k_max)?;
    let mut report = Report { metrics: m, ..Default::default() };
    report.rows.insert("topk".into(), rows);
    Ok(report)
}

/// The HNSW index of the item vectors, built single-threaded in key order: the same
/// vectors give the same index file.
fn build_index(p: &EvaluateParams, items: &Vectors) -> Result<Index, StageError> {
    let d = items.dim;
    let options = IndexOptions {
        dimensions: d,
        metric: MetricKind::Cos,
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

/// Per user: what the index found, its scores, and what exact search finds.
struct Found {
    hnsw: Vec<Vec<i32>>,
    scores: Vec<Vec<f32>>,
    exact: Vec<Vec<i32>>,
}

/// Searches the index and scores every item exactly for each user, `depth(user)`
/// deep (deep enough that the cut-offs remain after the user's seen items go).
fn search(
    ctx: &StageCtx,
    index: &Index,
    users: &Vectors,
    items: &Vectors,
    depth: impl Fn(i32) -> usize,
) -> Result<Found, StageError> {
    let (d, n) = (items.dim, items.idx.len());
    ctx.progress.set_length(users.idx.len() as u64);
    let mut found = Found {
        hnsw: Vec::with_capacity(users.idx.len()),
        scores: Vec::with_capacity(users.idx.len()),
        exact: Vec::with_capacity(users.idx.len()),
    };
    let mut all = vec![0f32; n];
    let mut order: Vec<usize> = (0..n).collect();
    for (r, &u) in users.idx.iter().enumerate() {
        let q = &users.data[r * d..(r + 1) * d];
        let depth = depth(u).min(n);
        let m = index.search(q, depth).map_err(failed)?;
        found.hnsw.push(m.keys.iter().map(|&k| k as i32).collect());
        found.scores.push(m.distances.iter().map(|dist| 1.0 - dist).collect());
        for (j, s) in all.iter_mut().enumerate() {
            *s = dot(q, &items.data[j * d..(j + 1) * d]);
        }
        order.sort_unstable_by(|&a, &b| all[b].total_cmp(&all[a]).then(items.idx[a].cmp(&items.idx[b])));
        found.exact.push(order[..depth].iter().map(|&j| items.idx[j]).collect());
        if r % 256 == 0 {
            ctx.progress.set_position(r as u64);
        }
    }
    Ok(found)
}

/// The share of exact search's top `k` that the index found, over all users.
fn index_recall(found: &Found, k: usize) -> f64 {
    let overlap: f64 = (0..found.hnsw.len())
        .map(|r| {
            let e: std::collections::HashSet<i32> = found.exact[r].iter().take(k).copied().collect();
            found.hnsw[r].iter().take(k).filter(|i| e.contains(i)).count() as f64 / k as f64
        })
        .sum();
    overlap / found.hnsw.len().max(1) as f64
}

/// The top-K lists, for people to look at.
fn write_topk(
    ctx: &StageCtx,
    users: &Vectors,
    items: &Vectors,
    found: &Found,
    k_max: usize,
) -> Result<u64, StageError> {
    let item_raw: std::collections::HashMap<i32, &str> =
        items.idx.iter().zip(&items.raw).map(|(i, r)| (*i, r.as_str())).collect();
    let (mut uid, mut uidx, mut rank, mut iid, mut iidx, mut score) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    for r in 0..users.idx.len() {
        for (k, (&item, &s)) in found.hnsw[r].iter().zip(&found.scores[r]).take(k_max).enumerate() {
            uid.push(users.raw[r].clone());
            uidx.push(users.idx[r]);
            rank.push(k as i32 + 1);
            iid.push(item_raw.get(&item).copied().unwrap_or("").to_string());
            iidx.push(item);
            score.push(s);
        }
    }
    table::write(
        &ctx.output(&TOPK),
        vec![
            (USER, Arc::new(StringArray::from(uid)) as ArrayRef),
            (USER_IDX, Arc::new(Int32Array::from(uidx))),
            ("rank", Arc::new(Int32Array::from(rank))),
            (ITEM, Arc::new(StringArray::from(iid))),
            (ITEM_IDX, Arc::new(Int32Array::from(iidx))),
            ("score", Arc::new(Float32Array::from(score))),
        ],
    )
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
