//! What the report shows, read from the store: stage states, the runs `exp` lists,
//! curves from every table with `epoch` and `loss` columns, and every `name@K` metric.

use std::collections::BTreeMap;
use std::path::Path;

use dagrun_engine::Error;
use dagrun_engine::exec::freshness::{self, StageStatus};
use dagrun_engine::pipeline::Pipeline;
use dagrun_engine::query::exp::{self, ExpRow};
use dagrun_engine::store::content::InputIndex;
use dagrun_engine::store::{Record, Store};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// One line of a plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// A stage as the DAG shows it.
pub struct Node {
    pub name: String,
    pub kind: String,
    pub upstream: Vec<usize>,
    pub status: StageStatus,
    /// From the record that makes it fresh, or its newest one.
    pub duration_s: Option<f64>,
    pub rows: Vec<(String, u64)>,
}

pub struct Report {
    pub pipeline: String,
    pub nodes: Vec<Node>,
    pub runs: Vec<ExpRow>,
    /// `stage.output` → one series per distinct record of the last runs.
    pub curves: BTreeMap<String, Vec<Series>>,
    /// Metric name before `@` (`hr`, `ndcg`, …) → one series per stage and record.
    pub at_k: BTreeMap<String, Vec<Series>>,
}

pub fn gather(p: &Pipeline, store: &Store, index: &mut InputIndex, n: usize) -> Result<Report, Error> {
    let logs = exp::last_runs(p, store, n)?;
    let runs = exp::rows(p, store, &logs, &[]);
    let statuses = freshness::compute(p, store, index, &vec![false; p.stages.len()])?;
    let nodes = p
        .stages
        .iter()
        .zip(statuses)
        .map(|(s, status)| {
            let record = status.record.clone().or_else(|| store.latest_record(&s.name));
            Node {
                name: s.name.clone(),
                kind: s.kind.name().to_string(),
                upstream: s.upstream.clone(),
                duration_s: record.as_ref().map(|r| r.duration_s),
                rows: record
                    .iter()
                    .flat_map(|r| r.outputs.iter().filter_map(|(o, x)| Some((o.clone(), x.rows?))))
                    .collect(),
                status,
            }
        })
        .collect();
    let (mut curves, mut at_k) = (BTreeMap::new(), BTreeMap::new());
    // Oldest first, so lines keep their colour as runs are added.
    let mut seen: Vec<String> = Vec::new();
    for (log, row) in logs.iter().zip(&runs).rev() {
        for entry in &log.stages {
            let Some(record) = entry.key.as_deref().and_then(|k| store.read_record(k)) else { continue };
            if seen.contains(&record.key) {
                continue;
            }
            seen.push(record.key.clone());
            let label = label(&entry.stage, row, shared(&logs, &entry.stage));
            add_curves(&mut curves, store, &record, &label)?;
            add_at_k(&mut at_k, &record, &label);
        }
    }
    Ok(Report { pipeline: p.file.display().to_string(), nodes, runs, curves, at_k })
}

/// True when every run listed used one record of `stage` (a baseline above the sweep).
fn shared(logs: &[dagrun_engine::store::RunLog], stage: &str) -> bool {
    let keys: Vec<Option<&String>> =
        logs.iter().map(|l| l.stages.iter().find(|e| e.stage == stage).and_then(|e| e.key.as_ref())).collect();
    keys.windows(2).all(|w| w[0] == w[1])
}

/// `stage` alone when all runs share it, else `stage · the run's differing params`.
fn label(stage: &str, row: &ExpRow, shared: bool) -> String {
    if shared {
        return stage.to_string();
    }
    let params: Vec<String> = row.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let run = if params.is_empty() { format!("run {}", row.run) } else { params.join(" ") };
    format!("{stage} · {run}")
}

fn add_curves(
    curves: &mut BTreeMap<String, Vec<Series>>,
    store: &Store,
    record: &Record,
    label: &str,
) -> Result<(), Error> {
    for (name, out) in record.outputs.iter().filter(|(_, o)| o.ext == "parquet") {
        let path = store.object_path(&out.hash, &out.ext);
        if let Some(points) = epoch_loss(&path)? {
            let series = Series { label: label.to_string(), points };
            curves.entry(format!("{}.{name}", record.stage)).or_default().push(series);
        }
    }
    Ok(())
}

/// The (epoch, loss) rows of a table that has both columns; None for other tables.
fn epoch_loss(path: &Path) -> Result<Option<Vec<(f64, f64)>>, Error> {
    let file = std::fs::File::open(path).map_err(Error::io(path))?;
    let bad = |e: &dyn std::fmt::Display| Error::Internal(format!("{}: {e}", path.display()));
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(&e))?;
    let schema = builder.schema().clone();
    let (Ok(epoch), Ok(loss)) = (schema.index_of("epoch"), schema.index_of("loss")) else { return Ok(None) };
    let mut points = Vec::new();
    for batch in builder.build().map_err(|e| bad(&e))? {
        let batch = batch.map_err(|e| bad(&e))?;
        let column = |i: usize| cast(batch.column(i), &DataType::Float64).map_err(|e| bad(&e));
        let (x, y) = (column(epoch)?, column(loss)?);
        let (x, y) = (x.as_primitive::<Float64Type>(), y.as_primitive::<Float64Type>());
        points.extend(
            (0..batch.num_rows()).filter(|&i| x.is_valid(i) && y.is_valid(i)).map(|i| (x.value(i), y.value(i))),
        );
    }
    Ok(Some(points))
}

/// Every `name@K` metric of the record, as one series per name over K.
fn add_at_k(at_k: &mut BTreeMap<String, Vec<Series>>, record: &Record, label: &str) {
    let mut by_name: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for (metric, value) in &record.metrics {
        if let Some((name, k)) = metric.split_once('@').and_then(|(n, k)| Some((n, k.parse::<f64>().ok()?))) {
            by_name.entry(name).or_default().push((k, *value));
        }
    }
    for (name, mut points) in by_name {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        at_k.entry(name.to_string()).or_default().push(Series { label: label.to_string(), points });
    }
}
