//! Kind `popularity`: the most-clicked training items, recommended to every test user
//! and scored by the same code and metric names as `evaluate`.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int32Array, Int64Array, StringArray};
use serde::{Deserialize, Serialize};

use crate::clicks::ITEM;
use crate::kinds::encode::{ITEM_IDX, USER_IDX};
use crate::kinds::evaluate::{METRICS, seen_items};
use crate::kinds::export::raw_ids;
use crate::metrics::{self, Ranked};
use crate::table::{self, failed};
use crate::{Format, KindSpec, OutputSpec, Report, StageCtx, StageError, params};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PopularityParams {
    pub ks: Vec<usize>,
}

impl Default for PopularityParams {
    fn default() -> Self {
        PopularityParams { ks: vec![10, 50, 100, 200] }
    }
}

const RANKING: OutputSpec = OutputSpec { name: "ranking", format: Format::Parquet };

pub const SPEC: KindSpec = KindSpec {
    name: "popularity",
    summary: "most-clicked training items for everyone: the baseline, with evaluate's metrics",
    inputs: &["train", "test", "vocab"],
    outputs: &[RANKING, METRICS],
    fingerprint: crate::fingerprints::POPULARITY,
    params: params::check::<PopularityParams>,
    run,
};

fn run(ctx: &StageCtx) -> Result<Report, StageError> {
    let p: PopularityParams = params::typed(ctx.params)?;
    if p.ks.is_empty() || p.ks.contains(&0) {
        return Err(StageError::BadInput("popularity: `ks` must list positive cut-offs".into()));
    }
    let (train_path, test_path, vocab) = (ctx.input("train")?, ctx.input("test")?, ctx.input("vocab")?);
    let item_raw = raw_ids(vocab, ITEM)?;
    let catalogue = item_raw.len();
    let train = table::read(train_path)?;
    let mut counts = vec![0i64; catalogue + 1];
    for &i in table::column::<Int32Array>(&train, ITEM_IDX, train_path)?.values() {
        if let Some(c) = counts.get_mut(i as usize) {
            *c += 1;
        }
    }
    // Most clicks first; equal counts by item index, so the list is deterministic.
    let mut ranking: Vec<i32> = (1..=catalogue as i32).collect();
    ranking.sort_by(|a, b| counts[*b as usize].cmp(&counts[*a as usize]).then(a.cmp(b)));
    let seen = seen_items(train_path)?;
    let test = table::read(test_path)?;
    let users = table::column::<Int32Array>(&test, USER_IDX, test_path)?;
    let targets = table::column::<Int32Array>(&test, ITEM_IDX, test_path)?;
    let no_seen = Vec::new();
    let ranked: Vec<Ranked> = users
        .values()
        .iter()
        .zip(targets.values())
        .map(|(u, t)| Ranked { ranking: &ranking, target: *t, seen: seen.get(*u as usize).unwrap_or(&no_seen) })
        .collect();
    let mut m = metrics::compute(&ranked, &p.ks, catalogue);
    m.insert("users".into(), ranked.len() as f64);
    std::fs::write(ctx.output(&METRICS), serde_json::to_vec_pretty(&m).map_err(failed)?)?;
    let k_max = p.ks.iter().copied().max().unwrap_or(0).min(ranking.len());
    let top = &ranking[..k_max];
    let rows = table::write(
        &ctx.output(&RANKING),
        vec![
            ("rank", Arc::new(Int32Array::from_iter_values(1..=k_max as i32)) as ArrayRef),
            (ITEM, Arc::new(top.iter().map(|i| Some(item_raw[i].as_str())).collect::<StringArray>())),
            (ITEM_IDX, Arc::new(Int32Array::from(top.to_vec()))),
            ("clicks", Arc::new(Int64Array::from_iter_values(top.iter().map(|i| counts[*i as usize])))),
        ],
    )?;
    let mut report = Report { metrics: m, ..Default::default() };
    report.rows.insert("ranking".into(), rows);
    Ok(report)
}
