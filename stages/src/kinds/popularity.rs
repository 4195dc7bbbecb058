//! Kind `popularity`: the most-clicked training items, recommended to every test user
//! and scored by the same code and metric names as `evaluate`.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int32Array, Int64Array, StringArray};
use serde::{Deserialize, Serialize};

use crate::ranking::{self, Ranked, Unseen};
use crate::schema::clicks::ITEM;
use crate::schema::encoded::{ALSO_SEEN, ITEM_IDX, USER_IDX, check_indices, raw_ids, seen_items_of};
use crate::table::{self, failed};
use dagrun_kind::{Format, KindSpec, OutputSpec, Params, Report, StageCtx, StageError, params};

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
/// The same name and format as `evaluate`'s metrics, so the two compare by name.
const METRICS: OutputSpec = OutputSpec { name: "metrics", format: Format::Json };

pub const SPEC: KindSpec = KindSpec {
    name: "popularity",
    summary: "most-clicked training items for everyone: the baseline, with evaluate's metrics",
    inputs: &["train", "test", "vocab"],
    // As evaluate's: more clicks to leave out of the `_excl` rankings.
    optional_inputs: &[ALSO_SEEN],
    outputs: &[RANKING, METRICS],
    fingerprint: crate::fingerprints::POPULARITY,
    params: params::check::<PopularityParams>,
    needs: dagrun_kind::needs_nothing,
    run,
};

impl Params for PopularityParams {
    fn validate(&self) -> Result<(), params::ParamError> {
        crate::ranking::check_ks("ks", &self.ks)
    }
}

fn run(ctx: &StageCtx) -> Result<Report, StageError> {
    let p: PopularityParams = params::typed(ctx.params)?;
    let (train_path, test_path, vocab) = (ctx.input("train")?, ctx.input("test")?, ctx.input("vocab")?);
    let item_raw = raw_ids(vocab, ITEM)?;
    let catalogue = item_raw.len();
    let train = table::read(train_path)?;
    let train_items = table::column::<Int32Array>(&train, ITEM_IDX, train_path)?.values();
    check_indices(train_path, ITEM_IDX, train_items, catalogue + 1)?;
    let mut counts = vec![0i64; catalogue + 1];
    for &i in train_items {
        counts[i as usize] += 1;
    }
    // Most clicks first; equal counts by item index, so the list is deterministic.
    let mut ranking: Vec<i32> = (1..=catalogue as i32).collect();
    ranking.sort_by(|a, b| counts[*b as usize].cmp(&counts[*a as usize]).then(a.cmp(b)));
    let seen = seen_items_of(ctx, "train")?;
    let test = table::read(test_path)?;
    let users = table::column::<Int32Array>(&test, USER_IDX, test_path)?;
    let targets = table::column::<Int32Array>(&test, ITEM_IDX, test_path)?;
    let no_seen = Vec::new();
    let ranked: Vec<Ranked> = users
        .values()
        .iter()
        .zip(targets.values())
        .map(|(u, t)| Ranked {
            ranking: &ranking,
            target: *t,
            unseen: Unseen::Filter(seen.get(*u as usize).unwrap_or(&no_seen)),
        })
        .collect();
    let mut m = ranking::compute(&ranked, &p.ks, catalogue);
    m.insert("users".into(), ranked.len() as f64);
    std::fs::write(ctx.output(&METRICS), serde_json::to_vec_pretty(&m).map_err(failed)?)?;
    let k_max = p.ks.iter().copied().max().unwrap_or(0).min(ranking.len());
    let top = &ranking[..k_max];
    let rows = table::write(
        &ctx.output(&RANKING),
        vec![
            ("rank", Arc::new(Int32Array::from_iter_values(1..=k_max as i32)) as ArrayRef),
            (
                ITEM,
                Arc::new(top.iter().map(|i| Some(item_raw.get(i).map_or("", String::as_str))).collect::<StringArray>()),
            ),
            (ITEM_IDX, Arc::new(Int32Array::from(top.to_vec()))),
            ("clicks", Arc::new(Int64Array::from_iter_values(top.iter().map(|i| counts[*i as usize])))),
        ],
    )?;
    let mut report = Report { metrics: m, ..Default::default() };
    report.rows.insert("ranking".into(), rows);
    Ok(report)
}
