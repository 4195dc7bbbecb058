//! Kind `evaluate`: builds a usearch HNSW index (cosine, f32) over the item vectors,
//! retrieves the top K for every test user, and scores the lists against the held-out
//! clicks. Exact search over the same vectors measures the index's recall.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, FixedSizeListArray, Float32Array, Int32Array, StringArray};
use serde::{Deserialize, Serialize};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::clicks::{ITEM, USER};
use crate::kinds::encode::{ITEM_IDX, USER_IDX};
use crate::kinds::export::EMBEDDING;
use crate::metrics::{self, Ranked};
use crate::table::{self, failed};
use crate::{Format, KindSpec, OutputSpec, Report, StageCtx, StageError, params};

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

/// Vectors of an export table: (ids, raw ids, row-major vectors, dim, extra int column).
struct Vectors {
    idx: Vec<i32>,
    raw: Vec<String>,
    data: Vec<f32>,
    dim: usize,
}

fn read_vectors(path: &Path, id: &str, raw: &str) -> Result<(Vectors, Option<Vec<i32>>), StageError> {
    let b = table::read(path)?;
    let idx = table::column::<Int32Array>(&b, id, path)?.values().to_vec();
    let raw_col = table::column::<StringArray>(&b, raw, path)?;
    let raw = (0..raw_col.len()).map(|i| raw_col.value(i).to_string()).collect();
    let emb = table::column::<FixedSizeListArray>(&b, EMBEDDING, path)?;
    let dim = emb.value_length() as usize;
    let values = emb
        .values()
        .as_any()
        .downcast_ref::<Float32Array>()
        .ok_or_else(|| StageError::Failed(format!("{}: `embedding` must hold float32", path.display())))?;
    let data = values.values()[..idx.len() * dim].to_vec();
    let target =
        if id == USER_IDX { Some(table::column::<Int32Array>(&b, ITEM_IDX, path)?.values().to_vec()) } else { None };
    Ok((Vectors { idx, raw, data, dim }, target))
}

/// Each user's training items, sorted, indexed by user index.
pub fn seen_items(path: &Path) -> Result<Vec<Vec<i32>>, StageError> {
    let b = table::read(path)?;
    let users = table::column::<Int32Array>(&b, USER_IDX, path)?;
    let items = table::column::<Int32Array>(&b, ITEM_IDX, path)?;
    let n = users.values().iter().copied().max().unwrap_or(0) as usize + 1;
    let mut seen = vec![Vec::new(); n];
    for (u, i) in users.values().iter().zip(items.values()) {
        seen[*u as usize].push(*i);
    }
    for s in &mut seen {
        s.sort_unstable();
        s.dedup();
    }
    Ok(seen)
}

fn run(ctx: &StageCtx) -> Result<Report, StageError> {
    let p: EvaluateParams = params::typed(ctx.params)?;
    if p.ks.is_empty() || p.ks.contains(&0) {
        return Err(StageError::BadInput("evaluate: `ks` must list positive cut-offs".into()));
    }
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
    let d = items.dim;
    let n = items.idx.len();
    let k_max = p.ks.iter().copied().max().unwrap_or(1);

    // Built single-threaded, in key order: the same vectors give the same index file.
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
    index.reserve_capacity_and_threads(n, 1).map_err(failed)?;
    for (row, &key) in items.idx.iter().enumerate() {
        index.add(key as u64, &items.data[row * d..(row + 1) * d]).map_err(failed)?;
    }
    let path = ctx.output(&INDEX);
    index.save(&path.to_string_lossy()).map_err(failed)?;

    ctx.progress.set_length(users.idx.len() as u64);
    let mut hnsw: Vec<Vec<i32>> = Vec::with_capacity(users.idx.len());
    let mut scores: Vec<Vec<f32>> = Vec::with_capacity(users.idx.len());
    let mut exact: Vec<Vec<i32>> = Vec::with_capacity(users.idx.len());
    let mut all = vec![0f32; n];
    let mut order: Vec<usize> = (0..n).collect();
    for (r, &u) in users.idx.iter().enumerate() {
        let q = &users.data[r * d..(r + 1) * d];
        // Deep enough that k_max items remain after the user's seen items are removed.
        let depth = (k_max + seen_of(u).len()).min(n);
        let m = index.search(q, depth).map_err(failed)?;
        hnsw.push(m.keys.iter().map(|&k| k as i32).collect());
        scores.push(m.distances.iter().map(|dist| 1.0 - dist).collect());
        for (j, s) in all.iter_mut().enumerate() {
            *s = dot(q, &items.data[j * d..(j + 1) * d]);
        }
        order.sort_unstable_by(|&a, &b| all[b].total_cmp(&all[a]).then(items.idx[a].cmp(&items.idx[b])));
        exact.push(order[..depth].iter().map(|&j| items.idx[j]).collect());
        if r % 256 == 0 {
            ctx.progress.set_position(r as u64);
        }
    }
    let ranked: Vec<Ranked> = (0..users.idx.len())
        .map(|r| Ranked { ranking: &hnsw[r], target: targets[r], seen: seen_of(users.idx[r]) })
        .collect();
    let mut m = metrics::compute(&ranked, &p.ks, n);
    for &k in &p.ks {
        let k_eff = k.min(n).max(1);
        let overlap: f64 = (0..users.idx.len())
            .map(|r| {
                let e: std::collections::HashSet<i32> = exact[r].iter().take(k_eff).copied().collect();
                hnsw[r].iter().take(k_eff).filter(|i| e.contains(i)).count() as f64 / k_eff as f64
            })
            .sum();
        m.insert(format!("index_recall@{k}"), overlap / users.idx.len().max(1) as f64);
    }
    m.insert("users".into(), users.idx.len() as f64);
    std::fs::write(ctx.output(&METRICS), serde_json::to_vec_pretty(&m).map_err(failed)?)?;

    // The top-K lists, for people to look at.
    let item_raw: std::collections::HashMap<i32, &str> =
        items.idx.iter().zip(&items.raw).map(|(i, r)| (*i, r.as_str())).collect();
    let (mut uid, mut uidx, mut rank, mut iid, mut iidx, mut score) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    for r in 0..users.idx.len() {
        for (k, (&item, &s)) in hnsw[r].iter().zip(&scores[r]).take(k_max).enumerate() {
            uid.push(users.raw[r].clone());
            uidx.push(users.idx[r]);
            rank.push(k as i32 + 1);
            iid.push(item_raw.get(&item).copied().unwrap_or("").to_string());
            iidx.push(item);
            score.push(s);
        }
    }
    let rows = table::write(
        &ctx.output(&TOPK),
        vec![
            (USER, Arc::new(StringArray::from(uid)) as ArrayRef),
            (USER_IDX, Arc::new(Int32Array::from(uidx))),
            ("rank", Arc::new(Int32Array::from(rank))),
            (ITEM, Arc::new(StringArray::from(iid))),
            (ITEM_IDX, Arc::new(Int32Array::from(iidx))),
            ("score", Arc::new(Float32Array::from(score))),
        ],
    )?;
    let mut report = Report { metrics: m, ..Default::default() };
    report.rows.insert("topk".into(), rows);
    Ok(report)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
