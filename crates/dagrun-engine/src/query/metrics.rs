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

/// A table of metrics, with the reference and the change when one is given.
pub fn table(now: &Metrics, before: Option<&Metrics>) -> String {
    let width = now.keys().chain(before.into_iter().flat_map(|b| b.keys())).map(String::len).max().unwrap_or(6).max(6);
    let mut out = String::new();
    match before {
        None => {
            for (k, v) in now {
                let _ = writeln!(out, "{k:<width$}  {v:>12.6}");
            }
        }
        Some(before) => {
            let _ = writeln!(out, "{:<width$}  {:>12}  {:>12}  {:>12}", "metric", "now", "reference", "delta");
            let keys: std::collections::BTreeSet<&String> = now.keys().chain(before.keys()).collect();
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
