//! `dagrun exp`: the last runs of a pipeline side by side: the params that differ
//! between them, the metrics the pipeline's checks name (and any asked for), and how
//! long each took; as a table, JSON, or Markdown for a pull request.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::Serialize;

use crate::Error;
use crate::pipeline::Pipeline;
use crate::pipeline::checks::Operand;
use crate::query::metrics::metric_order;
use crate::store::{RunLog, Store, StoreError};

/// One run, as `exp` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ExpRow {
    pub run: String,
    /// Unix seconds.
    pub started: u64,
    pub duration_s: f64,
    /// `stage.param` → value: the params that differ between the rows shown, and those
    /// any of them overrode.
    pub params: BTreeMap<String, serde_json::Value>,
    /// `stage.metric` → value, for the metrics asked for.
    pub metrics: BTreeMap<String, f64>,
}

/// The logs of the last `n` runs of `p`, newest first; an error when there is none.
pub fn last_runs(p: &Pipeline, store: &Store, n: usize) -> Result<Vec<RunLog>, Error> {
    let file = p.file.display().to_string();
    let runs: Vec<_> = store.list_runs().into_iter().rev().filter(|r| r.pipeline == file).take(n).collect();
    if runs.is_empty() {
        return Err(StoreError::NotFound(format!("no run of {file} in {}; run it first", store.root.display())).into());
    }
    Ok(runs)
}

/// Metrics asked for with `--metric` must be `stage.metric` of a stage of `p`: a
/// misspelt stage showed no column and said nothing.
pub fn check_asked(p: &Pipeline, extra: &[String]) -> Result<(), Error> {
    for m in extra {
        let Some((stage, _)) = m.split_once('.') else {
            return Err(Error::Usage(format!("--metric `{m}`: expected `stage.metric`")));
        };
        crate::exec::stage_indices(p, &[stage.to_string()], &format!("--metric `{m}`: stage"))?;
    }
    Ok(())
}

/// One row per run of `runs`, in their order; `extra` adds metrics to the checks' ones.
pub fn rows(p: &Pipeline, store: &Store, runs: &[RunLog], extra: &[String]) -> Vec<ExpRow> {
    let mut wanted: BTreeSet<String> = extra.iter().cloned().collect();
    for c in &p.checks {
        for o in [&c.lhs, &c.rhs] {
            if let Operand::Metric(m) = o {
                wanted.insert(m.clone());
            }
        }
    }
    let mut all: Vec<ExpRow> = runs
        .iter()
        .map(|run| {
            let mut row = ExpRow {
                run: run.id.clone(),
                started: run.started,
                duration_s: run.duration_s,
                params: BTreeMap::new(),
                metrics: BTreeMap::new(),
            };
            for e in &run.stages {
                let Some(record) = e.key.as_deref().and_then(|k| store.read_record(k)) else { continue };
                for (k, v) in record.fingerprint.params.as_object().into_iter().flatten() {
                    row.params.insert(format!("{}.{k}", e.stage), v.clone());
                }
                for (k, v) in &record.metrics {
                    let name = format!("{}.{k}", e.stage);
                    if wanted.contains(&name) {
                        row.metrics.insert(name, *v);
                    }
                }
            }
            row
        })
        .collect();
    // Only what tells the rows apart, and what a run was asked for with -P or -S.
    let asked: BTreeSet<&str> =
        runs.iter().flat_map(|r| r.overrides.iter().filter_map(|o| o.split_once('=').map(|(k, _)| k))).collect();
    let keys: BTreeSet<String> = all.iter().flat_map(|r| r.params.keys().cloned()).collect();
    let same: Vec<String> = keys
        .into_iter()
        .filter(|k| !asked.contains(k.as_str()) && all.iter().all(|r| r.params.get(k) == all[0].params.get(k)))
        .collect();
    for r in &mut all {
        for k in &same {
            r.params.remove(k);
        }
    }
    all
}

/// The header and the cells of the table of `rows`: run, the params, the metrics
/// (`@K` by K), seconds.
pub fn grid(rows: &[ExpRow]) -> (Vec<String>, Vec<Vec<String>>) {
    let params: BTreeSet<&String> = rows.iter().flat_map(|r| r.params.keys()).collect();
    let mut metrics: Vec<&String> =
        rows.iter().flat_map(|r| r.metrics.keys()).collect::<BTreeSet<_>>().into_iter().collect();
    metrics.sort_by(|a, b| metric_order(a, b));
    let mut header = vec!["run".to_string()];
    header.extend(params.iter().map(|s| s.to_string()));
    header.extend(metrics.iter().map(|s| s.to_string()));
    header.push("seconds".into());
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut line = vec![r.run.clone()];
            line.extend(params.iter().map(|k| r.params.get(*k).map(|v| v.to_string()).unwrap_or_else(|| "-".into())));
            line.extend(
                metrics.iter().map(|k| r.metrics.get(*k).map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into())),
            );
            line.push(format!("{:.2}", r.duration_s));
            line
        })
        .collect();
    (header, cells)
}

/// The rows as a table: `markdown` for GitHub, otherwise aligned text.
pub fn table(rows: &[ExpRow], markdown: bool) -> String {
    let (header, cells) = grid(rows);
    let mut out = String::new();
    if markdown {
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(
            out,
            "|{}",
            header.iter().enumerate().map(|(i, _)| if i == 0 { "---|" } else { "---:|" }).collect::<String>()
        );
        for line in &cells {
            let _ = writeln!(out, "| {} |", line.join(" | "));
        }
        return out;
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| cells.iter().map(|l| l[c].len()).chain([header[c].len()]).max().unwrap_or(0))
        .collect();
    for line in std::iter::once(&header).chain(&cells) {
        let text: Vec<String> = line.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    }
    out
}
