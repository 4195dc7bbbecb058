//! Kind `split_last_click`: per user, the last click by time becomes the test target,
//! the rest is training data. Equal timestamps are broken by source order (`seq`):
//! the later row is "last".

use datafusion::arrow::array::{BooleanArray, Int64Array, RecordBatch, UInt64Array};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::clicks::{ITEM, SEQ, TIMESTAMP, USER};
use crate::table::{self, TableWriter, failed};
use crate::{Format, KindSpec, OutputSpec, Report, StageCtx, StageError, params};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitParams {
    /// Users with fewer clicks are dropped (they have no training data).
    pub min_clicks: u32,
}

impl Default for SplitParams {
    fn default() -> Self {
        SplitParams { min_clicks: 2 }
    }
}

const TRAIN: OutputSpec = OutputSpec { name: "train", format: Format::Parquet };
const TEST: OutputSpec = OutputSpec { name: "test", format: Format::Parquet };

pub const SPEC: KindSpec = KindSpec {
    name: "split_last_click",
    summary: "per user, the last click is the test target, the rest is train",
    inputs: &["clicks"],
    outputs: &[TRAIN, TEST],
    fingerprint: crate::fingerprints::SPLIT_LAST_CLICK,
    params: params::check::<SplitParams>,
    run,
};

fn run(ctx: &StageCtx) -> Result<Report, StageError> {
    let p: SplitParams = params::typed(ctx.params)?;
    let clicks = ctx.input("clicks")?;
    let mut writers: Option<(TableWriter, TableWriter)> = None;
    let mut dropped = 0;
    // Batch by batch as DataFusion streams them, so the ranked log is never held whole.
    rank(clicks, |batch| {
        let pos = table::column::<UInt64Array>(batch, "pos", clicks)?;
        let n = table::column::<Int64Array>(batch, "n", clicks)?;
        let last = |i: usize| pos.value(i) as i64 == n.value(i);
        let kept = |i: usize| n.value(i) >= p.min_clicks as i64;
        let columns = batch.project(&[0, 1, 2, 3]).map_err(failed)?;
        let (train, test) = match &mut writers {
            Some(w) => w,
            None => writers.insert((
                TableWriter::create(&ctx.output(&TRAIN), columns.schema())?,
                TableWriter::create(&ctx.output(&TEST), columns.schema())?,
            )),
        };
        let is_test: BooleanArray = (0..batch.num_rows()).map(|i| Some(kept(i) && last(i))).collect();
        let is_train: BooleanArray = (0..batch.num_rows()).map(|i| Some(kept(i) && !last(i))).collect();
        train.write(&filter_record_batch(&columns, &is_train).map_err(failed)?)?;
        test.write(&filter_record_batch(&columns, &is_test).map_err(failed)?)?;
        dropped += (0..batch.num_rows()).filter(|&i| last(i) && !kept(i)).count();
        Ok(())
    })?;
    let Some((train, test)) = writers else {
        return Err(StageError::BadInput(format!("{}: no clicks", clicks.display())));
    };
    let mut report = Report::default();
    report.rows.insert(TRAIN.name.into(), train.finish()?);
    report.rows.insert(TEST.name.into(), test.finish()?);
    report.metrics.insert("dropped_users".into(), dropped as f64);
    report.metrics.insert("test_users".into(), report.rows["test"] as f64);
    if dropped > 0 {
        report.notes.push(format!("{dropped} user(s) with fewer than {} clicks dropped", p.min_clicks));
    }
    Ok(report)
}

/// Streams the clicks ordered by (user, time, seq) into `each`, with each row's
/// position in its user's history (`pos`, 1 = first) and the user's click count (`n`):
/// the last click has pos = n. The window's order is the output's order, so DataFusion
/// sorts once.
fn rank(
    clicks: &std::path::Path,
    mut each: impl FnMut(&RecordBatch) -> Result<(), StageError>,
) -> Result<(), StageError> {
    // Two workers: the window's partitions are sorted in parallel.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build()?;
    rt.block_on(async {
        // Plain Utf8 out, as every other table of the pipeline has it (not Utf8View).
        let config = SessionConfig::new()
            .with_target_partitions(2)
            .set_bool("datafusion.execution.parquet.schema_force_view_types", false);
        let sc = SessionContext::new_with_config(config);
        let path = clicks.to_string_lossy().into_owned();
        sc.register_parquet("clicks", &path, ParquetReadOptions::default().file_extension("")).await.map_err(failed)?;
        let sql = format!(
            "SELECT {USER}, {ITEM}, {TIMESTAMP}, {SEQ}, \
               ROW_NUMBER() OVER (PARTITION BY {USER} ORDER BY {TIMESTAMP}, {SEQ}) AS pos, \
               COUNT(*) OVER (PARTITION BY {USER}) AS n \
             FROM clicks ORDER BY {USER}, {TIMESTAMP}, {SEQ}"
        );
        let mut stream = sc.sql(&sql).await.map_err(failed)?.execute_stream().await.map_err(failed)?;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(failed)?;
            if batch.num_rows() > 0 {
                each(&batch)?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoProgress;
    use crate::clicks::ClickLog;
    use datafusion::arrow::array::{Array, StringArray};
    use std::collections::BTreeMap;

    fn split(log: ClickLog, min_clicks: u32) -> (RecordBatch, RecordBatch, Report) {
        let d = tempfile::tempdir().unwrap();
        let clicks = d.path().join("clicks.parquet");
        log.write(&clicks).unwrap();
        let inputs = BTreeMap::from([("clicks".to_string(), clicks)]);
        let params = serde_json::json!({"min_clicks": min_clicks});
        let ctx = StageCtx { inputs: &inputs, params: &params, out_dir: d.path(), progress: &NoProgress };
        let report = run(&ctx).unwrap();
        (
            table::read(&d.path().join("train.parquet")).unwrap(),
            table::read(&d.path().join("test.parquet")).unwrap(),
            report,
        )
    }

    fn items(b: &RecordBatch) -> Vec<String> {
        let c = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        (0..c.len()).map(|i| c.value(i).to_string()).collect()
    }

    #[test]
    fn last_click_by_time_is_the_target() {
        let mut log = ClickLog::default();
        log.push("a".into(), "x".into(), 30);
        log.push("a".into(), "y".into(), 10);
        log.push("a".into(), "z".into(), 20);
        log.push("b".into(), "w".into(), 5);
        log.push("b".into(), "v".into(), 6);
        let (train, test, _) = split(log, 2);
        assert_eq!(items(&test), ["x", "v"]);
        assert_eq!(items(&train), ["y", "z", "w"], "train in time order per user");
    }

    #[test]
    fn equal_timestamps_fall_to_the_later_row() {
        let mut log = ClickLog::default();
        log.push("a".into(), "first".into(), 7);
        log.push("a".into(), "second".into(), 7);
        log.push("a".into(), "early".into(), 1);
        let (train, test, _) = split(log, 2);
        assert_eq!(items(&test), ["second"]);
        assert_eq!(items(&train), ["early", "first"]);
    }

    #[test]
    fn users_below_min_clicks_are_dropped_and_counted() {
        let mut log = ClickLog::default();
        log.push("a".into(), "x".into(), 1);
        log.push("b".into(), "y".into(), 1);
        log.push("b".into(), "z".into(), 2);
        let (train, test, report) = split(log, 2);
        assert_eq!(items(&test), ["z"]);
        assert_eq!(items(&train), ["y"]);
        assert_eq!(report.metrics["dropped_users"], 1.0);
    }
}
