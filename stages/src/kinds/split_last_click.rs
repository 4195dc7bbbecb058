//! Kind `split_last_click`: per user, the last click by time becomes the test target,
//! the rest is training data; with `valid`, the second-to-last click becomes the
//! validation target (leave-one-out with a validation holdout, as RecBole and SASRec
//! split). Equal timestamps are broken by source order (`seq`): the later row is
//! "last". The outputs keep the source order of the log.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, Int64Array, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::schema::clicks::{ITEM, SEQ, TIMESTAMP, USER};
use crate::table::{self, TableWriter, failed};
use dagrun_kind::{Format, KindSpec, OutputSpec, Params, Report, StageCtx, StageError, params};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitParams {
    /// Users with fewer clicks are dropped (they have no training data).
    pub min_clicks: u32,
    /// Each user's second-to-last click goes to `valid` (users with at least one
    /// training click left, so three clicks or more); off, `valid` is empty.
    pub valid: bool,
}

impl Default for SplitParams {
    fn default() -> Self {
        SplitParams { min_clicks: 2, valid: false }
    }
}

const TRAIN: OutputSpec = OutputSpec { name: "train", format: Format::Parquet };
const TEST: OutputSpec = OutputSpec { name: "test", format: Format::Parquet };
const VALID: OutputSpec = OutputSpec { name: "valid", format: Format::Parquet };

pub const SPEC: KindSpec = KindSpec {
    name: "split_last_click",
    summary: "per user, the last click is the test target (the one before it the validation target, with `valid`), the rest is train",
    inputs: &["clicks"],
    optional_inputs: &[],
    outputs: &[TRAIN, VALID, TEST],
    fingerprint: crate::fingerprints::SPLIT_LAST_CLICK,
    params: params::check::<SplitParams>,
    needs: dagrun_kind::needs_nothing,
    run,
};

/// Rows per batch DataFusion is handed.
const SLICE: usize = 64 * 1024;

/// What becomes of a click, indexed by its `seq`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Train,
    Valid,
    Test,
    Dropped,
}

impl Params for SplitParams {
    fn validate(&self) -> Result<(), params::ParamError> {
        params::positive_int("min_clicks", self.min_clicks.into())
    }
}

fn run(ctx: &StageCtx) -> Result<Report, StageError> {
    let p: SplitParams = params::typed(ctx.params)?;
    let path = ctx.input("clicks")?;
    // Row group by row group, never concatenated: each becomes a training row group.
    let (schema, clicks) = table::read_batches(path, |_| true)?;
    let rows: usize = clicks.iter().map(|b| b.num_rows()).sum();
    if rows == 0 {
        return Err(StageError::BadInput(format!("{}: no clicks", path.display())));
    }
    let bad_seq = || {
        StageError::BadInput(format!(
            "{}: column `{SEQ}` must number the rows 0..{rows} without repeats (as synth and ingest write it)",
            path.display(),
        ))
    };
    let slot = |s: i64| usize::try_from(s).ok().filter(|&s| s < rows);
    let indices = [USER, ITEM, TIMESTAMP, SEQ]
        .map(|c| schema.index_of(c).map_err(|_| failed(format!("{}: column `{c}` is missing", path.display()))));
    let indices = indices.into_iter().collect::<Result<Vec<_>, _>>()?;
    let clicks: Vec<RecordBatch> =
        clicks.iter().map(|b| b.project(&indices)).collect::<Result<_, _>>().map_err(failed)?;
    let mut seqs = Vec::with_capacity(clicks.len());
    let mut times = Vec::with_capacity(clicks.len());
    for b in &clicks {
        seqs.push(table::column::<Int64Array>(b, SEQ, path)?);
        times.push(table::column::<Int64Array>(b, TIMESTAMP, path)?);
    }

    // The last click of every user, found by DataFusion; the rows stay in source order.
    let order = last_by(&times, &seqs, rows);
    let users = last_clicks(&clicks, path, p.min_clicks, order)?;
    let mut role = vec![Role::Train; rows];
    let mut dropped = 0;
    for &(last, n) in &users.last {
        let keep = n >= p.min_clicks as i64;
        dropped += usize::from(!keep);
        role[slot(last).ok_or_else(bad_seq)?] = if keep { Role::Test } else { Role::Dropped };
    }
    if dropped == users.last.len() {
        return Err(StageError::BadInput(format!(
            "{}: no user has {} click(s) or more, so there is no test click to split off; lower `min_clicks` or give a longer log",
            path.display(),
            p.min_clicks
        )));
    }
    for &s in &users.dropped_seqs {
        role[slot(s).ok_or_else(bad_seq)?] = Role::Dropped;
    }
    let mut roles = roles_by_row_group(&seqs, &role, &slot).ok_or_else(bad_seq)?;
    if p.valid {
        // The last of what is left to train on is the validation click: the same
        // search once more, over the training rows (still in source order).
        let rest = rows_with(&clicks, &roles, Role::Train)?;
        let second = last_clicks(&rest, path, 1, order)?;
        for &(last, _) in second.last.iter().filter(|&&(_, n)| n >= 2) {
            role[slot(last).ok_or_else(bad_seq)?] = Role::Valid;
        }
        roles = roles_by_row_group(&seqs, &role, &slot).ok_or_else(bad_seq)?;
    }
    let [train, valid, test] = write_split(ctx, &clicks, &roles)?;
    let mut report = Report::default();
    report.rows.insert(TRAIN.name.into(), train);
    report.rows.insert(VALID.name.into(), valid);
    report.rows.insert(TEST.name.into(), test);
    report.metrics.insert("dropped_users".into(), dropped as f64);
    report.metrics.insert("test_users".into(), test as f64);
    report.metrics.insert("valid_users".into(), valid as f64);
    if dropped > 0 {
        report.notes.push(format!("{dropped} user(s) with fewer than {} clicks dropped", p.min_clicks));
    }
    Ok(report)
}

/// The role of every row, row group by row group, from the role of every `seq`;
/// None when a `seq` is missing, out of range or repeated.
fn roles_by_row_group(
    seqs: &[&Int64Array],
    role: &[Role],
    slot: &dyn Fn(i64) -> Option<usize>,
) -> Option<Vec<Vec<Role>>> {
    let mut seen = vec![false; role.len()];
    let mut roles: Vec<Vec<Role>> = Vec::with_capacity(seqs.len());
    for seq in seqs {
        let mut part = Vec::with_capacity(seq.len());
        for s in seq.iter() {
            let s = s.and_then(slot)?;
            if std::mem::replace(&mut seen[s], true) {
                return None;
            }
            part.push(role[s]);
        }
        roles.push(part);
    }
    Some(roles)
}

fn rows_of(clicks: &[RecordBatch], roles: &[Vec<Role>], k: usize, wanted: Role) -> Result<RecordBatch, StageError> {
    let mask: BooleanArray = roles[k].iter().map(|&r| Some(r == wanted)).collect();
    filter_record_batch(&clicks[k], &mask).map_err(failed)
}

/// The rows of one role, row group by row group.
fn rows_with(clicks: &[RecordBatch], roles: &[Vec<Role>], wanted: Role) -> Result<Vec<RecordBatch>, StageError> {
    (0..clicks.len()).into_par_iter().map(|k| rows_of(clicks, roles, k, wanted)).collect()
}

/// Writes the training, validation and test rows; returns their counts.
fn write_split(ctx: &StageCtx, clicks: &[RecordBatch], roles: &[Vec<Role>]) -> Result<[u64; 3], StageError> {
    let schema = clicks[0].schema();
    let mut train = TableWriter::create(&ctx.output(&TRAIN), schema.clone())?;
    let mut valid = TableWriter::create(&ctx.output(&VALID), schema.clone())?;
    let mut test = TableWriter::create(&ctx.output(&TEST), schema)?;
    // One training row group per row group read, each filtered in the task that
    // encodes it; the validation and test rows (one per user) are written alongside.
    let one_per_user = |w: &mut TableWriter, role: Role| -> Result<(), StageError> {
        for k in 0..clicks.len() {
            w.write(&rows_of(clicks, roles, k, role)?)?;
        }
        Ok(())
    };
    let (train, (valid, test)) = rayon::join(
        || {
            train.write_row_groups(
                (0..clicks.len()).into_par_iter().map(|k| std::iter::once(rows_of(clicks, roles, k, Role::Train))),
            )?;
            train.finish()
        },
        || {
            let valid = one_per_user(&mut valid, Role::Valid).and_then(|_| valid.finish());
            (valid, one_per_user(&mut test, Role::Test).and_then(|_| test.finish()))
        },
    );
    Ok([train?, valid?, test?])
}

/// Whether the rows are ordered by (timestamp, seq), nulls in neither.
/// How each user's last click (by time, then `seq`) is found.
#[derive(Debug, Clone, Copy, PartialEq)]
enum LastBy {
    /// The log is in (timestamp, seq) order, as synth writes it and most logs come:
    /// the last click is the largest `seq`.
    Seq,
    /// `(timestamp - min) * rows + seq` fits in an i64 and orders clicks as
    /// (timestamp, seq) do: its maximum gives the last click, in one plain `max`
    /// (a log in no order: 0.55 s for DataFusion's ordered `last_value` at 5M clicks).
    Packed { min: i64, rows: i64 },
    /// Otherwise: `last_value(seq ORDER BY timestamp, seq)`.
    Ordered,
}

fn last_by(times: &[&Int64Array], seqs: &[&Int64Array], rows: usize) -> LastBy {
    if times.iter().chain(seqs).any(|c| c.null_count() > 0) {
        return LastBy::Ordered;
    }
    let mut pairs = times.iter().zip(seqs).flat_map(|(t, s)| t.values().iter().zip(s.values().iter()));
    let Some(mut prev) = pairs.next() else { return LastBy::Seq };
    if pairs.all(|pair| std::mem::replace(&mut prev, pair) <= pair) {
        return LastBy::Seq;
    }
    let (lo, hi) =
        times.iter().flat_map(|t| t.values().iter()).fold((i64::MAX, i64::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)));
    let span = (hi as i128 - lo as i128 + 1) * rows as i128;
    if span <= i64::MAX as i128 { LastBy::Packed { min: lo, rows: rows as i64 } } else { LastBy::Ordered }
}

/// Per user, the `seq` of the last click (by time, then `seq`) and the click count;
/// and the `seq` of every click of a user below `min_clicks` with more than one.
struct LastClicks {
    last: Vec<(i64, i64)>,
    dropped_seqs: Vec<i64>,
}

/// Finds each user's last click with one grouped aggregation (an ordered
/// `last_value` with the full tie-breaker) instead of sorting the whole log.
/// A log already ordered by (timestamp, seq), as synth writes it and most logs
/// come, needs no ordering at all: the last click is the largest `seq`; a log in
/// no order mostly takes a plain `max` too (see [`LastBy`]). It reads the log already in memory
/// (`path` names it in errors).
fn last_clicks(
    clicks: &[RecordBatch],
    path: &Path,
    min_clicks: u32,
    last_by: LastBy,
) -> Result<LastClicks, StageError> {
    // As many partitions and workers as rayon has threads: the aggregation uses every core.
    let threads = rayon::current_num_threads();
    let slices: Vec<RecordBatch> = clicks
        .iter()
        .flat_map(|b| (0..b.num_rows()).step_by(SLICE).map(|at| b.slice(at, SLICE.min(b.num_rows() - at))))
        .collect();
    if slices.is_empty() {
        // Nothing to group (the validation search over users who all had one click).
        return Ok(LastClicks { last: Vec::new(), dropped_seqs: Vec::new() });
    }
    let partitions: Vec<Vec<RecordBatch>> = slices.chunks(slices.len().div_ceil(threads)).map(<[_]>::to_vec).collect();
    let table = MemTable::try_new(clicks[0].schema(), partitions).map_err(failed)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).build()?;
    rt.block_on(async {
        let sc = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(threads));
        sc.register_table("clicks", Arc::new(table)).map_err(failed)?;
        let query = |sql: String| {
            let sc = &sc;
            async move { sc.sql(&sql).await.map_err(failed)?.collect().await.map_err(failed) }
        };
        let batches = query(format!(
            "SELECT {last} AS last, COUNT(*) AS n FROM clicks GROUP BY {USER}",
            last = match last_by {
                LastBy::Seq => format!("max({SEQ})"),
                LastBy::Packed { min, rows } => format!("max(({TIMESTAMP} - ({min})) * {rows} + {SEQ}) % {rows}"),
                LastBy::Ordered => format!("last_value({SEQ} ORDER BY {TIMESTAMP}, {SEQ})"),
            }
        ))
        .await?;
        let mut out = LastClicks { last: Vec::new(), dropped_seqs: Vec::new() };
        for b in &batches {
            let last = table::column::<Int64Array>(b, "last", path)?;
            let n = table::column::<Int64Array>(b, "n", path)?;
            out.last.extend(last.values().iter().copied().zip(n.values().iter().copied()));
        }
        // Users below the threshold with several clicks lose all of them, not only the last.
        if out.last.iter().any(|&(_, n)| n > 1 && n < min_clicks as i64) {
            let batches = query(format!(
                "SELECT {SEQ} FROM clicks WHERE {USER} IN \
                   (SELECT {USER} FROM clicks GROUP BY {USER} HAVING COUNT(*) < {min_clicks})"
            ))
            .await?;
            for b in &batches {
                out.dropped_seqs.extend(table::column::<Int64Array>(b, SEQ, path)?.values());
            }
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::clicks::ClickLog;
    use dagrun_kind::NoProgress;
    use datafusion::arrow::array::StringArray;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    /// Runs the stage on the clicks table at `clicks`, writing into `dir`.
    fn run_on(clicks: PathBuf, dir: &Path, min_clicks: u32) -> Result<Report, StageError> {
        let inputs = BTreeMap::from([("clicks".to_string(), clicks)]);
        let params = serde_json::json!({"min_clicks": min_clicks});
        run(&StageCtx { inputs: &inputs, params: &params, out_dir: dir, progress: &NoProgress })
    }

    /// A log of (user, item, timestamp) rows, `seq` numbering them in this order.
    fn log(rows: &[(&str, &str, i64)]) -> ClickLog {
        let mut log = ClickLog::default();
        for &(user, item, ts) in rows {
            log.push(user.into(), item.into(), ts);
        }
        log
    }

    fn split(rows: &[(&str, &str, i64)], min_clicks: u32) -> (RecordBatch, RecordBatch, Report) {
        let d = tempfile::tempdir().unwrap();
        let clicks = d.path().join("clicks.parquet");
        log(rows).write(&clicks).unwrap();
        let report = run_on(clicks, d.path(), min_clicks).unwrap();
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
    fn with_valid_the_second_to_last_click_is_held_out_for_validation() {
        let d = tempfile::tempdir().unwrap();
        let clicks = d.path().join("clicks.parquet");
        // a: four clicks out of time order; b: two clicks, too few for a validation click.
        log(&[("a", "x", 30), ("a", "y", 10), ("b", "w", 5), ("a", "z", 20), ("a", "u", 25), ("b", "v", 6)])
            .write(&clicks)
            .unwrap();
        let inputs = BTreeMap::from([("clicks".to_string(), clicks)]);
        let params = serde_json::json!({"valid": true});
        let params = (SPEC.params)(params).unwrap();
        let report = run(&StageCtx { inputs: &inputs, params: &params, out_dir: d.path(), progress: &NoProgress });
        assert_eq!(report.unwrap().rows["valid"], 1);
        let read = |name: &str| items(&table::read(&d.path().join(format!("{name}.parquet"))).unwrap());
        assert_eq!(read("test"), ["x", "v"]);
        assert_eq!(read("valid"), ["u"], "a's click before its last; b has none");
        assert_eq!(read("train"), ["y", "w", "z"], "the rest, in source order");
    }

    #[test]
    fn without_valid_the_validation_table_is_empty() {
        let (_, test, report) = split(&[("a", "x", 1), ("a", "y", 2), ("a", "z", 3)], 2);
        assert_eq!(items(&test), ["z"]);
        assert_eq!(report.rows["valid"], 0);
        assert_eq!(report.rows["train"], 2);
    }

    #[test]
    fn last_click_by_time_is_the_target() {
        let (train, test, _) =
            split(&[("a", "x", 30), ("a", "y", 10), ("a", "z", 20), ("b", "w", 5), ("b", "v", 6)], 2);
        assert_eq!(items(&test), ["x", "v"]);
        assert_eq!(items(&train), ["y", "z", "w"], "train in source order");
    }

    #[test]
    fn equal_timestamps_fall_to_the_later_row() {
        let (train, test, _) = split(&[("a", "first", 7), ("a", "second", 7), ("a", "early", 1)], 2);
        assert_eq!(items(&test), ["second"]);
        assert_eq!(items(&train), ["first", "early"]);
    }

    #[test]
    fn users_below_min_clicks_are_dropped_and_counted() {
        let (train, test, report) = split(&[("a", "x", 1), ("b", "y", 1), ("b", "z", 2)], 2);
        assert_eq!(items(&test), ["z"]);
        assert_eq!(items(&train), ["y"]);
        assert_eq!(report.metrics["dropped_users"], 1.0);
    }

    #[test]
    fn users_below_min_clicks_lose_every_click() {
        let (train, test, report) =
            split(&[("a", "a1", 1), ("b", "b1", 1), ("a", "a2", 2), ("b", "b2", 2), ("b", "b3", 3)], 3);
        assert_eq!(items(&test), ["b3"]);
        assert_eq!(items(&train), ["b1", "b2"], "none of a's two clicks is kept");
        assert_eq!(report.metrics["dropped_users"], 1.0);
    }

    #[test]
    fn seq_that_does_not_number_the_rows_is_bad_input() {
        let d = tempfile::tempdir().unwrap();
        let clicks = d.path().join("clicks.parquet");
        table::write(
            &clicks,
            vec![
                (USER, Arc::new(StringArray::from(vec!["a", "a"])) as _),
                (ITEM, Arc::new(StringArray::from(vec!["x", "y"]))),
                (TIMESTAMP, Arc::new(Int64Array::from(vec![1, 2]))),
                (SEQ, Arc::new(Int64Array::from(vec![0, 0]))),
            ],
        )
        .unwrap();
        match run_on(clicks, d.path(), 2) {
            Err(StageError::BadInput(m)) => assert!(m.contains("must number the rows 0..2 without repeats"), "{m}"),
            other => panic!("expected bad input, got {other:?}"),
        }
    }

    #[test]
    fn a_log_in_time_order_takes_the_largest_seq() {
        let (train, test, _) = split(&[("a", "x", 1), ("a", "y", 2), ("b", "u", 2), ("a", "z", 2), ("b", "v", 3)], 2);
        assert_eq!(items(&test), ["z", "v"], "z is a's last: same second as y, later row");
        assert_eq!(items(&train), ["x", "y", "u"]);
    }

    #[test]
    fn time_order_is_checked_across_row_groups() {
        let col = |v: Vec<Option<i64>>| Int64Array::from(v);
        let (t1, s1) = (col(vec![Some(1), Some(2)]), col(vec![Some(0), Some(1)]));
        let (t2, s2) = (col(vec![Some(2), Some(3)]), col(vec![Some(2), Some(3)]));
        assert_eq!(last_by(&[&t1, &t2], &[&s1, &s2], 4), LastBy::Seq, "equal times, seq increasing");
        let (late, late_seq) = (col(vec![Some(1)]), col(vec![Some(2)]));
        assert_eq!(
            last_by(&[&t1, &late], &[&s1, &late_seq], 3),
            LastBy::Packed { min: 1, rows: 3 },
            "each group ordered, not the two"
        );
        let with_null = col(vec![Some(3), None]);
        assert_eq!(last_by(&[&t1, &with_null], &[&s1, &s2], 4), LastBy::Ordered);
        let (huge, huge_seq) = (col(vec![Some(i64::MAX), Some(i64::MIN)]), col(vec![Some(0), Some(1)]));
        assert_eq!(last_by(&[&huge], &[&huge_seq], 2), LastBy::Ordered, "a span too wide to pack");
        assert_eq!(last_by(&[], &[], 0), LastBy::Seq);
    }

    #[test]
    fn every_query_agrees_on_a_log_in_time_order() {
        agree(|rng, ts| *ts += rng.below(3) as i64, true);
    }

    #[test]
    fn the_packed_and_the_ordered_query_agree_on_a_log_in_no_order() {
        agree(|rng, ts| *ts = rng.below(40) as i64 - 20, false);
    }

    /// The last clicks of a 2,000-click log whose times `next` makes, by each query that
    /// applies (`by_seq`: the log is in time order); all must agree.
    fn agree(next: impl Fn(&mut crate::rng::Rng, &mut i64), by_seq: bool) {
        let mut log = ClickLog::default();
        let mut rng = crate::rng::Rng::new(7);
        let mut ts = 0;
        for _ in 0..2000 {
            next(&mut rng, &mut ts);
            log.push(format!("u{}", rng.below(50)), format!("i{}", rng.below(100)), ts);
        }
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("clicks.parquet");
        log.write(&path).unwrap();
        let clicks = table::read(&path).unwrap();
        // Cut in two, as row groups are.
        let clicks = [clicks.slice(0, 700), clicks.slice(700, 1300)];
        let last = |by| {
            let mut l = last_clicks(&clicks, &path, 3, by).unwrap();
            l.last.sort_unstable();
            l.dropped_seqs.sort_unstable();
            (l.last, l.dropped_seqs)
        };
        let ordered = last(LastBy::Ordered);
        assert_eq!(last(LastBy::Packed { min: -20, rows: 2000 }), ordered);
        if by_seq {
            assert_eq!(last(LastBy::Seq), ordered);
        }
    }
}
