//! Kind `sample`: sliding-window training and test examples over each user's
//! time-ordered clicks, with seeded negative sampling and hot-item subsampling.
//!
//! For a user's clicks p[0..n): for i in 1..n the target is p[i] and the history is
//! the up to `max_hist` clicks before i, most recent first. i = n−1 (the split's test
//! click) is the user's test example; the others are training examples. With the
//! split's validation clicks (input `valid`), a user's validation example has the
//! training clicks as history, and the test example's history ends with the
//! validation click. A history never holds the target's own click or anything after it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::arrow::array::{ArrayRef, Float32Array, Int8Array, Int32Array, Int64Array, ListArray, RecordBatch};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field};
use serde::{Deserialize, Serialize};

use crate::schema::clicks::TIMESTAMP;
use crate::schema::encoded::{ITEM_IDX, USER_IDX, check_indices_at, dense_limit};
use crate::schema::examples::{EXAMPLE_AGE, HIST, HIST_LEN, LABEL};
use rayon::prelude::*;

use crate::hashing::{FastMap, FastSet};
use crate::rng::{Alias, Rng};
use crate::table::{self, TableWriter};
use dagrun_kind::{Format, KindSpec, OutputSpec, Params, Report, StageCtx, StageError, params};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NegMethod {
    #[serde(rename = "uniform")]
    Uniform,
    /// Hot items more often, in proportion to their clicks.
    #[serde(rename = "popularity")]
    Popularity,
    /// In proportion to clicks^0.75 (word2vec).
    #[serde(rename = "unigram_0.75")]
    Unigram075,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SampleParams {
    pub max_hist: u32,
    /// Negative rows (label 0) per training positive.
    pub neg_ratio: u32,
    pub neg_method: NegMethod,
    /// Keep a training positive of an item with click share f with probability
    /// (sqrt(f/t)+1)·t/f; off when absent.
    pub subsample_t: Option<f64>,
    /// Keep at most this many (most recent) training examples per user; off when absent.
    pub max_samples_per_user: Option<u32>,
    pub seed: u64,
}

impl Default for SampleParams {
    fn default() -> Self {
        SampleParams {
            max_hist: 50,
            neg_ratio: 0,
            neg_method: NegMethod::Uniform,
            subsample_t: None,
            max_samples_per_user: None,
            seed: 0,
        }
    }
}

/// The most negative rows per positive. Each is a row with its positive's history, so
/// a user's examples grow with it before they can be written: 4294967295 was an
/// out-of-memory kill, not an error.
const MAX_NEG_RATIO: u32 = 1000;

const TRAIN: OutputSpec = OutputSpec { name: "train", format: Format::Parquet };
const TEST: OutputSpec = OutputSpec { name: "test", format: Format::Parquet };
const VALID: OutputSpec = OutputSpec { name: "valid", format: Format::Parquet };

pub const SPEC: KindSpec = KindSpec {
    name: "sample",
    summary: "sliding-window examples with history, negatives and subsampling",
    inputs: &["train", "test"],
    optional_inputs: &["valid"],
    outputs: &[TRAIN, VALID, TEST],
    fingerprint: crate::fingerprints::SAMPLE,
    params: params::check::<SampleParams>,
    needs: dagrun_kind::needs_nothing,
    run,
};

/// Examples collected column-wise before they are written in one batch.
#[derive(Default)]
struct ExampleBuffer {
    user: Vec<i32>,
    item: Vec<i32>,
    label: Vec<i8>,
    /// Where each row's history ends in `hist`; checked into a list column's i32
    /// offsets when the batch is taken, so an overlong batch is an error, not a wrap.
    offsets: Vec<usize>,
    hist: Vec<i32>,
    age: Vec<f32>,
}

impl ExampleBuffer {
    /// Room for `rows` examples with full histories (of at most 1024 items: longer
    /// ones may grow the buffer), so a batch does not grow its buffers as it is made.
    fn with_capacity(rows: usize, max_hist: u32) -> ExampleBuffer {
        ExampleBuffer {
            user: Vec::with_capacity(rows),
            item: Vec::with_capacity(rows),
            label: Vec::with_capacity(rows),
            offsets: Vec::with_capacity(rows + 1),
            hist: Vec::with_capacity(rows * max_hist.min(1024) as usize),
            age: Vec::with_capacity(rows),
        }
    }

    /// One example; `earlier` is the history in time order (stored most recent first).
    fn push(&mut self, user: i32, item: i32, label: i8, earlier: &[i32], age: f32) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.user.push(user);
        self.item.push(item);
        self.label.push(label);
        self.hist.extend(earlier.iter().rev());
        self.offsets.push(self.hist.len());
        self.age.push(age);
    }

    fn take_batch(&mut self) -> Result<RecordBatch, StageError> {
        let e = std::mem::take(self);
        let offsets = list_offsets(if e.offsets.is_empty() { &[0] } else { &e.offsets })?;
        let hist_len: Int32Array = offsets.windows(2).map(|w| Some(w[1] - w[0])).collect();
        let field = Arc::new(Field::new("item", DataType::Int32, false));
        let hist =
            ListArray::try_new(field, OffsetBuffer::new(offsets.into()), Arc::new(Int32Array::from(e.hist)), None)
                .map_err(table::failed)?;
        table::batch(vec![
            (USER_IDX, Arc::new(Int32Array::from(e.user)) as ArrayRef),
            (ITEM_IDX, Arc::new(Int32Array::from(e.item))),
            (LABEL, Arc::new(Int8Array::from(e.label))),
            (HIST, Arc::new(hist)),
            (HIST_LEN, Arc::new(hist_len)),
            (EXAMPLE_AGE, Arc::new(Float32Array::from(e.age))),
        ])
    }
}

/// A batch's history ends as a list column's offsets, which are i32: a batch whose
/// histories hold more items than that is bad input, with what to lower.
fn list_offsets(ends: &[usize]) -> Result<Vec<i32>, StageError> {
    ends.iter().map(|&end| i32::try_from(end)).collect::<Result<_, _>>().map_err(|_| {
        StageError::BadInput(format!(
            "one batch of examples holds more than {} history items, more than a list column can; \
             lower `max_hist` or `neg_ratio`, or set `max_samples_per_user`",
            i32::MAX
        ))
    })
}

/// The most training rows a user with `n` training clicks gives: one positive per
/// kept click after the first, each with its negatives.
fn max_rows(n: usize, p: &SampleParams) -> usize {
    let kept = p.max_samples_per_user.map_or(n, |cap| n.min(cap as usize)).min(n.saturating_sub(1));
    kept * (1 + p.neg_ratio as usize)
}

/// The history of click `i` of a user's time-ordered clicks `seq`: the up to `max_hist`
/// clicks before it, never the click itself or a later one.
fn history(seq: &[i32], i: usize, max_hist: u32) -> &[i32] {
    &seq[i.saturating_sub(max_hist as usize)..i]
}

/// Rows of the batches a row group of examples is made of.
const BATCH_ROWS: usize = 4096;

/// What every user's examples are drawn from.
struct Draw<'a> {
    p: &'a SampleParams,
    items: &'a [i32],
    timestamps: &'a [i64],
    t_max: i64,
    counts: &'a [f64],
    total: f64,
    neg_table: &'a Option<Alias>,
    n_items: usize,
}

impl Draw<'_> {
    /// One user's training examples from training clicks `start..end` (time order);
    /// negatives avoid the held-out clicks (validation, test) too.
    fn train(&self, user: i32, start: usize, end: usize, held_out: [Option<i32>; 2], train: &mut ExampleBuffer) {
        let p = self.p;
        let seq = &self.items[start..end];
        let times = &self.timestamps[start..end];
        // Seeded per user: the same examples whatever thread builds them.
        let mut rng = Rng::fork(p.seed, user as u64);
        let n = seq.len();
        let first = match p.max_samples_per_user {
            Some(cap) => n.saturating_sub(cap as usize).max(1),
            None => 1,
        };
        let mut clicked: Vec<i32> = Vec::new();
        if p.neg_ratio > 0 {
            clicked.extend(seq.iter().chain(held_out.iter().flatten()));
            clicked.sort_unstable();
        }
        for i in first..n {
            let hist = history(seq, i, p.max_hist);
            let target = seq[i];
            if let Some(t) = p.subsample_t {
                let f = self.counts[target as usize] / self.total;
                let keep = ((f / t).sqrt() + 1.0) * t / f;
                if rng.f64() >= keep {
                    continue;
                }
            }
            let age = ((self.t_max - times[i]) as f64 / 3600.0) as f32;
            train.push(user, target, 1, hist, age);
            for _ in 0..p.neg_ratio {
                if let Some(neg) = draw_negative(self.neg_table, self.n_items, &clicked, &mut rng) {
                    train.push(user, neg, 0, hist, age);
                }
            }
        }
    }
}

impl Params for SampleParams {
    fn validate(&self) -> Result<(), params::ParamError> {
        params::positive_int("max_hist", self.max_hist.into())?;
        let r = self.neg_ratio;
        params::ensure(r <= MAX_NEG_RATIO, "neg_ratio", || {
            format!(
                "must be at most {MAX_NEG_RATIO}, not {r}: each negative is a row of its own, with its positive's \
                 history (the trainer draws its own negatives per batch: `num_sampled`)"
            )
        })?;
        if let Some(t) = self.subsample_t {
            params::positive("subsample_t", t)?;
        }
        if let Some(cap) = self.max_samples_per_user {
            params::positive_int("max_samples_per_user", cap.into())?;
        }
        Ok(())
    }
}

fn run(ctx: &StageCtx) -> Result<Report, StageError> {
    let p: SampleParams = params::typed(ctx.params)?;
    let (train_path, test_path) = (ctx.input("train")?, ctx.input("test")?);
    let (_, test_batches) = table::read_batches(test_path, |_| true)?;
    let (_, train_batches) = table::read_batches(train_path, |_| true)?;
    let valid_path = ctx.optional_input("valid");
    let valid_batches = match valid_path {
        Some(path) => table::read_batches(path, |_| true)?.1,
        None => Vec::new(),
    };
    // Indices are dense over the train, validation and test clicks together.
    let rows: usize = test_batches.iter().chain(&train_batches).chain(&valid_batches).map(RecordBatch::num_rows).sum();
    let one_per_user = |batches: &[RecordBatch], path: &Path| -> Result<(Vec<i32>, Vec<i32>), StageError> {
        let clicks = click_columns(batches, path, dense_limit(rows))?;
        Ok((clicks.iter().flat_map(|c| c.0).copied().collect(), clicks.iter().flat_map(|c| c.1).copied().collect()))
    };
    let (te_user, te_item) = one_per_user(&test_batches, test_path)?;
    let (va_user, va_item) = one_per_user(&valid_batches, valid_path.unwrap_or(test_path))?;
    let ByUser { items: tr_item, timestamps: tr_ts, groups } =
        by_user(&click_columns(&train_batches, train_path, dense_limit(rows))?);
    let n_items = tr_item.iter().chain(&te_item).chain(&va_item).copied().max().unwrap_or(0) as usize;

    // Item click counts in the training data drive subsampling and popularity negatives.
    let mut counts = vec![0f64; n_items + 1];
    for &i in &tr_item {
        counts[i as usize] += 1.0;
    }
    let neg_table = negative_table(&counts, p.neg_method);
    let source = Draw {
        p: &p,
        items: &tr_item,
        timestamps: &tr_ts,
        t_max: tr_ts.iter().copied().max().unwrap_or(0),
        counts: &counts,
        total: tr_item.len() as f64,
        neg_table: &neg_table,
        n_items,
    };

    let test_of: FastMap<i32, i32> = te_user.iter().copied().zip(te_item.iter().copied()).collect();
    let valid_of: FastMap<i32, i32> = va_user.iter().copied().zip(va_item.iter().copied()).collect();
    ctx.progress.set_length(groups.len() as u64);
    let schema = ExampleBuffer::default().take_batch()?.schema();
    let train_w = TableWriter::create(&ctx.output(&TRAIN), schema.clone())?;
    let mut valid_w = TableWriter::create(&ctx.output(&VALID), schema.clone())?;
    let mut test_w = TableWriter::create(&ctx.output(&TEST), schema)?;
    let held_out = Targets { test: &test_of, valid: &valid_of };
    let none = FastMap::default();
    let (train_rows, (valid_rows, test_rows)) = rayon::join(
        || write_train(ctx, train_w, &groups, &source, held_out),
        // The validation and test examples are made and written alongside; a test
        // history ends with the validation click.
        || {
            let examples = |(users, items): (&[i32], &[i32]), of, before| {
                heldout_examples(&groups, &tr_item, (users, items), of, before, p.max_hist)
            };
            let valid = examples((&va_user, &va_item), &valid_of, &none).and_then(|b| valid_w.write(&b));
            let test = examples((&te_user, &te_item), &test_of, &valid_of).and_then(|b| test_w.write(&b));
            (valid.and_then(|_| valid_w.finish()), test.and_then(|_| test_w.finish()))
        },
    );
    let mut report = Report::default();
    report.rows.insert("train".into(), train_rows?);
    report.rows.insert("valid".into(), valid_rows?);
    report.rows.insert("test".into(), test_rows?);
    Ok(report)
}

/// The user, item and timestamp columns of one row group of an encoded click table.
type ClickColumns<'a> = (&'a [i32], &'a [i32], &'a [i64]);

/// The click columns of each row group read, as they are (nothing is copied); user
/// and item indices are checked to lie in `0..limit`, since tables are sized by them.
fn click_columns<'a>(
    batches: &'a [RecordBatch],
    path: &Path,
    limit: usize,
) -> Result<Vec<ClickColumns<'a>>, StageError> {
    let mut first_row = 0;
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let users = table::column::<Int32Array>(b, USER_IDX, path)?.values().as_ref();
        let items = table::column::<Int32Array>(b, ITEM_IDX, path)?.values().as_ref();
        for (column, values) in [(USER_IDX, users), (ITEM_IDX, items)] {
            check_indices_at(path, column, values, limit, first_row)?;
        }
        out.push((users, items, table::column::<Int64Array>(b, TIMESTAMP, path)?.values().as_ref()));
        first_row += b.num_rows();
    }
    Ok(out)
}

/// Each user's held-out clicks (one per user), by user.
#[derive(Clone, Copy)]
struct Targets<'a> {
    test: &'a FastMap<i32, i32>,
    valid: &'a FastMap<i32, i32>,
}

/// Held-out rows (validation or test) are one per user: the held-out click `of[user]`,
/// after the user's training clicks and then the click `before[user]`, if any.
fn heldout_examples(
    groups: &[(i32, usize, usize)],
    tr_item: &[i32],
    (users, items): (&[i32], &[i32]),
    of: &FastMap<i32, i32>,
    before: &FastMap<i32, i32>,
    max_hist: u32,
) -> Result<RecordBatch, StageError> {
    let mut out = ExampleBuffer::default();
    let mut covered = FastSet::default();
    let mut seq = Vec::new();
    for &(user, start, end) in groups {
        if let Some(&item) = of.get(&user) {
            seq.clear();
            seq.extend_from_slice(&tr_item[start..end]);
            seq.extend(before.get(&user));
            out.push(user, item, 1, history(&seq, seq.len(), max_hist), 0.0);
            covered.insert(user);
        }
    }
    // Users without training clicks still get their example, its history the click
    // before it alone, or none.
    for (u, i) in users.iter().zip(items) {
        if !covered.contains(u) {
            let earlier: Vec<i32> = before.get(u).copied().into_iter().collect();
            out.push(*u, *i, 1, history(&earlier, earlier.len(), max_hist), 0.0);
        }
    }
    out.take_batch()
}

/// Training rows: one row group per run of users, made and encoded in one task, a few
/// thousand rows at a time, each batch encoded while it is still in cache.
fn write_train(
    ctx: &StageCtx,
    mut w: TableWriter,
    groups: &[(i32, usize, usize)],
    source: &Draw,
    held_out: Targets,
) -> Result<u64, StageError> {
    let mut parts = Vec::new();
    let (mut from, mut rows) = (0, 0);
    for (k, &(_, start, end)) in groups.iter().enumerate() {
        let more = max_rows(end - start, source.p);
        if rows + more > table::ROW_GROUP && k > from {
            parts.push(&groups[from..k]);
            (from, rows) = (k, 0);
        }
        rows += more;
    }
    parts.push(&groups[from..]);
    let done = AtomicUsize::new(0);
    w.write_row_groups(parts.par_iter().map(|users| {
        let (mut users, done) = (users.iter(), &done);
        std::iter::from_fn(move || {
            let (mut train, mut seen) = (ExampleBuffer::with_capacity(BATCH_ROWS, source.p.max_hist), 0);
            for &(user, start, end) in users.by_ref() {
                let targets = [held_out.test.get(&user).copied(), held_out.valid.get(&user).copied()];
                source.train(user, start, end, targets, &mut train);
                seen += 1;
                if train.user.len() >= BATCH_ROWS {
                    break;
                }
            }
            let so_far = done.fetch_add(seen, Ordering::Relaxed) + seen;
            ctx.progress.set_position(so_far as u64);
            (!train.user.is_empty()).then(|| train.take_batch())
        })
    }))?;
    w.finish()
}

/// Training clicks grouped by user (ascending index) and, within a user, in time order.
struct ByUser {
    items: Vec<i32>,
    timestamps: Vec<i64>,
    /// (user, start, end) of each user's run.
    groups: Vec<(i32, usize, usize)>,
}

/// Groups the training clicks (row groups as read) by user with a counting sort;
/// within a user, clicks are ordered by time, file order breaking ties.
fn by_user(parts: &[ClickColumns]) -> ByUser {
    let users = || parts.iter().flat_map(|p| p.0);
    let n_users = users().copied().max().map_or(0, |m| m as usize + 1);
    let mut start = vec![0usize; n_users + 1];
    for &u in users() {
        start[u as usize + 1] += 1;
    }
    for u in 0..n_users {
        start[u + 1] += start[u];
    }
    // Items and times move straight from the row groups to their user's run (stable:
    // file order within a user), so nothing is gathered afterwards; runs out of time
    // order are rare.
    let rows = start[n_users];
    let mut next = start.clone();
    let (mut by_items, mut by_times) = (vec![0i32; rows], vec![0i64; rows]);
    for (users, items, timestamps) in parts {
        for ((&u, &item), &ts) in users.iter().zip(*items).zip(*timestamps) {
            let at = &mut next[u as usize];
            by_items[*at] = item;
            by_times[*at] = ts;
            *at += 1;
        }
    }
    let mut groups = Vec::new();
    for u in 0..n_users {
        let (from, to) = (start[u], start[u + 1]);
        if from == to {
            continue;
        }
        if !by_times[from..to].is_sorted() {
            let mut run: Vec<(i64, i32)> =
                by_times[from..to].iter().copied().zip(by_items[from..to].iter().copied()).collect();
            run.sort_by_key(|&(ts, _)| ts);
            for (k, (ts, item)) in run.into_iter().enumerate() {
                (by_times[from + k], by_items[from + k]) = (ts, item);
            }
        }
        groups.push((u as i32, from, to));
    }
    ByUser { items: by_items, timestamps: by_times, groups }
}

/// The distribution negatives are drawn from; None means uniform over 1..=n_items.
fn negative_table(counts: &[f64], method: NegMethod) -> Option<Alias> {
    let power = match method {
        NegMethod::Uniform => return None,
        NegMethod::Popularity => 1.0,
        NegMethod::Unigram075 => 0.75,
    };
    let weights: Vec<f64> = counts.iter().enumerate().map(|(i, &c)| if i == 0 { 0.0 } else { c.powf(power) }).collect();
    weights.iter().any(|&w| w > 0.0).then(|| Alias::new(&weights))
}

/// An item the user never clicked (`clicked` sorted), or None when none is found.
fn draw_negative(table: &Option<Alias>, n_items: usize, clicked: &[i32], rng: &mut Rng) -> Option<i32> {
    if n_items == 0 {
        return None;
    }
    for _ in 0..64 {
        let item = match table {
            Some(a) => a.sample(rng) as i32,
            None => 1 + rng.below(n_items as u64) as i32,
        };
        if clicked.binary_search(&item).is_err() {
            return Some(item);
        }
    }
    None
}

#[cfg(test)]
mod tests;
