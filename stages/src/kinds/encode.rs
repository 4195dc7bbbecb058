//! Kind `encode`: label-encodes user ids, item ids and categorical user features
//! (sorted unique values → 1..n, 0 = padding/unknown) and normalises dense features.
//!
//! Id vocabularies are fitted on all clicks, train and test, so a test item never
//! seen in training keeps its own index. The vocabularies are an output (`vocab`:
//! feature, index, value), so later stages can speak raw ids again.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Float32Array, Int32Array, Int64Array, RecordBatch, StringArray};
use serde::{Deserialize, Serialize};

use crate::clicks::{ITEM, TIMESTAMP, USER};
use crate::fxhash::FxHashMap;
use crate::table;
use crate::{Format, KindSpec, OutputSpec, Report, StageCtx, StageError, params};

/// How a dense feature `x` (scaled to [0, 1] by its maximum) enters the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    X,
    X2,
    Log,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncodeParams {
    /// Transforms of each dense feature (YouTubeDNN feeds x, x² and √x / log x).
    pub dense: Vec<Transform>,
}

impl Default for EncodeParams {
    fn default() -> Self {
        EncodeParams { dense: vec![Transform::X, Transform::X2, Transform::Log] }
    }
}

pub(crate) const TRAIN: OutputSpec = OutputSpec { name: "train", format: Format::Parquet };
pub(crate) const TEST: OutputSpec = OutputSpec { name: "test", format: Format::Parquet };
pub(crate) const USERS: OutputSpec = OutputSpec { name: "users", format: Format::Parquet };
pub(crate) const VOCAB: OutputSpec = OutputSpec { name: "vocab", format: Format::Parquet };

pub const SPEC: KindSpec = KindSpec {
    name: "encode",
    summary: "label-encodes ids and user features (0 = padding), normalises dense features",
    inputs: &["train", "test", "users"],
    outputs: &[TRAIN, TEST, USERS, VOCAB],
    fingerprint: crate::fingerprints::ENCODE,
    params: params::check::<EncodeParams>,
    run,
};

/// Column names of the encoded tables.
pub const USER_IDX: &str = "user";
pub const ITEM_IDX: &str = "item";

/// A fitted vocabulary: sorted unique values, index = position + 1.
struct Vocab<'a> {
    values: Vec<&'a str>,
    index: Index<'a>,
}

/// Value → code. Values of up to 15 bytes are keyed by one integer (bytes, then the
/// length) so a probe compares integers instead of calling memcmp on string data:
/// ids are mostly that short, and lookups are the largest part of encode's time.
#[derive(Default)]
struct Index<'a> {
    short: FxHashMap<u128, i32>,
    long: FxHashMap<&'a str, i32>,
}

impl<'a> Index<'a> {
    fn short_key(value: &str) -> Option<u128> {
        let bytes = value.as_bytes();
        (bytes.len() < 16).then(|| {
            let mut key = [0u8; 16];
            key[..bytes.len()].copy_from_slice(bytes);
            key[15] = bytes.len() as u8;
            u128::from_le_bytes(key)
        })
    }

    /// The value's code, or `new()`'s when it has none yet.
    fn code_or_insert(&mut self, value: &'a str, new: impl FnOnce() -> i32) -> i32 {
        match Self::short_key(value) {
            Some(key) => *self.short.entry(key).or_insert_with(new),
            None => *self.long.entry(value).or_insert_with(new),
        }
    }

    fn get(&self, value: &str) -> Option<i32> {
        match Self::short_key(value) {
            Some(key) => self.short.get(&key).copied(),
            None => self.long.get(value).copied(),
        }
    }

    fn codes_mut(&mut self) -> impl Iterator<Item = &mut i32> {
        self.short.values_mut().chain(self.long.values_mut())
    }
}

impl<'a> Vocab<'a> {
    /// Fits the vocabulary of `columns` and encodes them, hashing each value once:
    /// values get provisional codes in order of first sight, renumbered once sorted.
    fn fit(columns: &[&'a StringArray]) -> (Vocab<'a>, Vec<Int32Array>) {
        let mut index = Index::default();
        let mut seen: Vec<&str> = Vec::new();
        let provisional: Vec<Vec<i32>> = columns
            .iter()
            .map(|c| {
                c.iter()
                    .map(|v| match v {
                        Some(v) => index.code_or_insert(v, || {
                            seen.push(v);
                            seen.len() as i32
                        }),
                        None => 0,
                    })
                    .collect()
            })
            .collect();
        let mut order: Vec<usize> = (0..seen.len()).collect();
        order.sort_unstable_by_key(|&i| seen[i]);
        // final_code[provisional] (0 stays 0).
        let mut final_code = vec![0i32; seen.len() + 1];
        for (pos, &i) in order.iter().enumerate() {
            final_code[i + 1] = pos as i32 + 1;
        }
        for code in index.codes_mut() {
            *code = final_code[*code as usize];
        }
        let codes = provisional.into_iter().map(|p| p.into_iter().map(|c| final_code[c as usize]).collect()).collect();
        (Vocab { values: order.iter().map(|&i| seen[i]).collect(), index }, codes)
    }

    fn code(&self, value: &str) -> i32 {
        self.index.get(value).unwrap_or(0)
    }
}

fn run(ctx: &StageCtx) -> Result<Report, StageError> {
    let p: EncodeParams = params::typed(ctx.params)?;
    let (train_path, test_path, users_path) = (ctx.input("train")?, ctx.input("test")?, ctx.input("users")?);
    // `seq` stays on disk: encoded tables do not carry it.
    let train = table::read_only(train_path, &[USER, ITEM, TIMESTAMP])?;
    let test = table::read_only(test_path, &[USER, ITEM, TIMESTAMP])?;
    let users = table::read(users_path)?;
    let strings = |b: &'_ RecordBatch, name: &str, path: &Path| -> Result<StringArray, StageError> {
        Ok(table::column::<StringArray>(b, name, path)?.clone())
    };
    let (tr_u, tr_i) = (strings(&train, USER, train_path)?, strings(&train, ITEM, train_path)?);
    let (te_u, te_i) = (strings(&test, USER, test_path)?, strings(&test, ITEM, test_path)?);
    let ((user_vocab, user_codes), (item_vocab, item_codes)) =
        rayon::join(|| Vocab::fit(&[&tr_u, &te_u]), || Vocab::fit(&[&tr_i, &te_i]));

    let mut report = Report::default();
    for (k, (spec, batch, path)) in [(&TRAIN, &train, train_path), (&TEST, &test, test_path)].into_iter().enumerate() {
        let ts = table::column::<Int64Array>(batch, TIMESTAMP, path)?.clone();
        let rows = table::write(
            &ctx.output(spec),
            vec![
                (USER_IDX, Arc::new(user_codes[k].clone()) as ArrayRef),
                (ITEM_IDX, Arc::new(item_codes[k].clone())),
                (TIMESTAMP, Arc::new(ts)),
            ],
        )?;
        report.rows.insert(spec.name.into(), rows);
    }

    // Users: one row per user index 1..=n, categorical features encoded, dense normalised.
    let n_users = user_vocab.values.len();
    let ids = strings(&users, USER, users_path)?;
    let mut row_of_user = vec![None; n_users + 1];
    for (row, id) in ids.iter().enumerate() {
        if let Some(u) = id.and_then(|id| user_vocab.index.get(id)) {
            row_of_user[u as usize] = Some(row);
        }
    }
    let mut vocab_rows: Vec<(String, i32, String)> = Vec::new();
    for (name, v) in [(USER, &user_vocab), (ITEM, &item_vocab)] {
        vocab_rows.extend(v.values.iter().enumerate().map(|(i, s)| (name.to_string(), i as i32 + 1, s.to_string())));
    }
    let mut user_columns: Vec<(String, ArrayRef)> =
        vec![(USER_IDX.to_string(), Arc::new(Int32Array::from_iter_values(1..=n_users as i32)))];
    let schema = users.schema();
    for field in schema.fields().iter().filter(|f| f.name() != USER) {
        let col = strings(&users, field.name(), users_path)?;
        let (vocab, _) = Vocab::fit(&[&col]);
        let codes: Int32Array = (1..=n_users)
            .map(|u| Some(row_of_user[u].and_then(|r| col.is_valid(r).then(|| vocab.code(col.value(r)))).unwrap_or(0)))
            .collect();
        vocab_rows
            .extend(vocab.values.iter().enumerate().map(|(i, s)| (field.name().clone(), i as i32 + 1, s.to_string())));
        report.metrics.insert(format!("vocab_{}", field.name()), vocab.values.len() as f64 + 1.0);
        user_columns.push((field.name().clone(), Arc::new(codes)));
    }
    // Dense: the user's number of training clicks (activity).
    let mut activity = vec![0f64; n_users + 1];
    for u in user_codes[0].values() {
        activity[*u as usize] += 1.0;
    }
    for (name, values) in dense_columns("activity", &activity[1..], &p.dense) {
        user_columns.push((name, Arc::new(values)));
    }
    let cols: Vec<(&str, ArrayRef)> = user_columns.iter().map(|(n, a)| (n.as_str(), a.clone())).collect();
    report.rows.insert("users".into(), table::write(&ctx.output(&USERS), cols)?);

    report.metrics.insert("vocab_user_id".into(), n_users as f64 + 1.0);
    report.metrics.insert("vocab_item_id".into(), item_vocab.values.len() as f64 + 1.0);
    let feature: StringArray = vocab_rows.iter().map(|r| Some(r.0.as_str())).collect();
    let index: Int32Array = vocab_rows.iter().map(|r| Some(r.1)).collect();
    let value: StringArray = vocab_rows.iter().map(|r| Some(r.2.as_str())).collect();
    let rows = table::write(
        &ctx.output(&VOCAB),
        vec![("feature", Arc::new(feature) as ArrayRef), ("index", Arc::new(index)), ("value", Arc::new(value))],
    )?;
    report.rows.insert("vocab".into(), rows);
    Ok(report)
}

/// `name_x`, `name_x2`, `name_log` columns of `values` scaled by their maximum.
pub fn dense_columns(name: &str, values: &[f64], transforms: &[Transform]) -> Vec<(String, Float32Array)> {
    let max = values.iter().cloned().fold(0.0, f64::max).max(f64::MIN_POSITIVE);
    transforms
        .iter()
        .map(|t| {
            let (suffix, f): (&str, fn(f64, f64) -> f64) = match t {
                Transform::X => ("x", |v, m| v / m),
                Transform::X2 => ("x2", |v, m| (v / m).powi(2)),
                Transform::Log => ("log", |v, m| (1.0 + v).ln() / (1.0 + m).ln()),
            };
            (format!("{name}_{suffix}"), values.iter().map(|&v| f(v, max) as f32).collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocab_is_sorted_and_starts_at_one() {
        let long = "an id longer than fifteen bytes";
        let a = StringArray::from(vec!["b", "a", "c", "a"]);
        let b = StringArray::from(vec!["d", long, "a\0", long]);
        let (v, codes) = Vocab::fit(&[&a, &b]);
        assert_eq!(v.values, ["a", "a\0", long, "b", "c", "d"]);
        assert_eq!(codes[0].values(), &[4, 1, 5, 1]);
        assert_eq!(codes[1].values(), &[6, 3, 2, 3], "\"a\\0\" is not \"a\"");
        assert_eq!((v.code("c"), v.code(long)), (5, 3));
        assert_eq!(v.code("zz"), 0, "unknown is 0");
    }

    #[test]
    fn dense_transforms() {
        let cols = dense_columns("a", &[0.0, 1.0, 3.0], &[Transform::X, Transform::X2, Transform::Log]);
        assert_eq!(cols[0].0, "a_x");
        assert_eq!(cols[0].1.values(), &[0.0, 1.0 / 3.0, 1.0]);
        assert!((cols[1].1.value(1) - 1.0 / 9.0).abs() < 1e-6);
        assert!((cols[2].1.value(1) - (2f64.ln() / 4f64.ln()) as f32).abs() < 1e-6);
    }
}
