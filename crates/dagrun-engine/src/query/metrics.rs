//! `dagrun metrics`: the metrics of the newest execution of every stage, as
//! `"<stage>.<metric>"` → number; diffs against an earlier run or a JSON baseline.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use crate::Error;
use crate::pipeline::Pipeline;
use crate::store::{Store, StoreError};

pub type Metrics = BTreeMap<String, f64>;

/// Metrics of the newest record of every stage of the pipeline.
pub fn current(p: &Pipeline, store: &Store) -> Metrics {
    let mut out = Metrics::new();
    for s in &p.stages {
        if let Some(r) = store.latest_record(&s.name) {
            out.extend(r.metrics.iter().map(|(k, v)| (format!("{}.{k}", s.name), *v)));
        }
    }
    out
}

/// Metrics to compare with: a JSON file of the same shape, or a run id from `runs/`.
pub fn reference(store: &Store, reference: &str) -> Result<Metrics, Error> {
    let path = Path::new(reference);
    if path.is_file() {
        let text = std::fs::read(path).map_err(Error::io(path))?;
        return serde_json::from_slice(&text)
            .map_err(|e| Error::Usage(format!("{reference}: expected a JSON object of numbers ({e})")));
    }
    let run =
        store.list_runs().into_iter().find(|r| r.id == reference || r.id.starts_with(reference)).ok_or_else(|| {
            StoreError::NotFound(format!("`{reference}` is neither a file nor a run id in {}", store.runs().display()))
        })?;
    let mut out = Metrics::new();
    for e in &run.stages {
        if let Some(r) = e.key.as_deref().and_then(|k| store.read_record(k)) {
            out.extend(r.metrics.iter().map(|(k, v)| (format!("{}.{k}", e.stage), *v)));
        }
    }
    Ok(out)
}

/// Metric names in reading order: by name, and `…@K` by K as a number (`@10` before
/// `@50` before `@100`).
pub fn metric_order(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |m: &str| match m.rsplit_once('@') {
        Some((name, k)) => (name.to_string(), k.parse::<u64>().ok(), k.to_string()),
        None => (m.to_string(), None, String::new()),
    };
    split(a).cmp(&split(b))
}

/// The metrics as a GitHub-flavoured table, with the reference and the change when one
/// is given (for a pull-request comment).
pub fn markdown(now: &Metrics, before: Option<&Metrics>) -> String {
    let mut keys: Vec<&String> = now.keys().chain(before.into_iter().flat_map(|b| b.keys())).collect();
    keys.sort_by(|a, b| metric_order(a, b));
    keys.dedup();
    let cell =
        |m: Option<&Metrics>, k: &str| m.and_then(|m| m.get(k)).map_or_else(|| "-".into(), |v| format!("{v:.4}"));
    let mut out = String::new();
    match before {
        None => out.push_str("| metric | value |\n|---|---:|\n"),
        Some(_) => out.push_str("| metric | now | reference | delta |\n|---|---:|---:|---:|\n"),
    }
    for k in keys {
        match before {
            None => writeln!(out, "| {k} | {} |", cell(Some(now), k)),
            Some(b) => {
                let delta = match (now.get(k), b.get(k)) {
                    (Some(x), Some(y)) => format!("{:+.4}", x - y),
                    _ => "-".into(),
                };
                writeln!(out, "| {k} | {} | {} | {delta} |", cell(Some(now), k), cell(Some(b), k))
            }
        }
        .ok();
    }
    out
}

/// A table of metrics, with the reference and the change when one is given.
pub fn table(now: &Metrics, before: Option<&Metrics>) -> String {
    let width = now.keys().chain(before.into_iter().flat_map(|b| b.keys())).map(String::len).max().unwrap_or(6).max(6);
    let mut out = String::new();
    match before {
        None => {
            let mut keys: Vec<&String> = now.keys().collect();
            keys.sort_by(|a, b| metric_order(a, b));
            for k in keys {
                let _ = writeln!(out, "{k:<width$}  {:>12.6}", now[k]);
            }
        }
        Some(before) => {
            let _ = writeln!(out, "{:<width$}  {:>12}  {:>12}  {:>12}", "metric", "now", "reference", "delta");
            let mut keys: Vec<&String> =
                now.keys().chain(before.keys()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
            keys.sort_by(|a, b| metric_order(a, b));
            for k in keys {
                let cell = |m: &Metrics| m.get(k).map(|v| format!("{v:.6}")).unwrap_or_else(|| "-".into());
                let delta = match (now.get(k), before.get(k)) {
                    (Some(a), Some(b)) => format!("{:+.6}", a - b),
                    _ => "-".into(),
                };
                let _ = writeln!(out, "{k:<width$}  {:>12}  {:>12}  {:>12}", cell(now), cell(before), delta);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_diff_has_one_row_per_metric_in_k_order() {
        let now = Metrics::from([("e.hr@50".into(), 0.5), ("e.hr@10".into(), 0.25)]);
        let before = Metrics::from([("e.hr@50".into(), 0.4)]);
        assert_eq!(
            markdown(&now, Some(&before)),
            "| metric | now | reference | delta |\n|---|---:|---:|---:|\n| e.hr@10 | 0.2500 | - | - |\n| e.hr@50 | 0.5000 | 0.4000 | +0.1000 |\n"
        );
    }

    #[test]
    fn at_k_metrics_sort_by_k_as_a_number() {
        let mut names = vec!["e.hr@200", "e.hr@50", "e.mrr", "e.hr@10", "e.hr@100", "e.ndcg@50", "b.hr@50"];
        names.sort_by(|a, b| metric_order(a, b));
        assert_eq!(names, ["b.hr@50", "e.hr@10", "e.hr@50", "e.hr@100", "e.hr@200", "e.mrr", "e.ndcg@50"]);
    }
}
