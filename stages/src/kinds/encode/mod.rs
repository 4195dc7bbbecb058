//! Kind `encode`: label-encodes user ids, item ids, categorical user features and
//! item genres (sorted unique values → 1..n, 0 = padding/unknown) and normalises
//! dense features.
//!
//! Id vocabularies are fitted on all clicks, train, validation and test, so a test item never
//! seen in training keeps its own index. The vocabularies are an output (`vocab`:
//! feature, index, value), so later stages can speak raw ids again.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Float32Array, Int32Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::compute::{max, min};
use datafusion::arrow::datatypes::DataType;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::hashing::{FastMap, FastSet};
use crate::schema::clicks::{GENRE, ITEM, TIMESTAMP, USER};
use crate::schema::encoded::{GENRE_IDX, ITEM_IDX, USER_IDX, VOCAB_FEATURE, VOCAB_INDEX, VOCAB_VALUE};
use crate::table::{self, TableWriter};
use dagrun_kind::{Format, KindSpec, OutputSpec, Params, Report, StageCtx, StageError, params};

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
pub(crate) const VALID: OutputSpec = OutputSpec { name: "valid", format: Format::Parquet };
pub(crate) const USERS: OutputSpec = OutputSpec { name: "users", format: Format::Parquet };
pub(crate) const VOCAB: OutputSpec = OutputSpec { name: "vocab", format: Format::Parquet };
pub(crate) const ITEMS: OutputSpec = OutputSpec { name: "items", format: Format::Parquet };

pub const SPEC: KindSpec = KindSpec {
    name: "encode",
    summary: "label-encodes ids and user features (0 = padding), normalises dense features",
    inputs: &["train", "test", "users"],
    // The split's validation clicks (`valid` is empty without them) and ingest's item
    // genres (`items` is empty without them).
    optional_inputs: &["valid", "items"],
    outputs: &[TRAIN, VALID, TEST, USERS, VOCAB, ITEMS],
    fingerprint: crate::fingerprints::ENCODE,
    params: params::check::<EncodeParams>,
    needs: dagrun_kind::needs_nothing,
    run,
};

/// One raw id or feature value. Integers sort as numbers, text by its bytes; a
/// column holds one kind only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Value<'a> {
    Int(i64),
    Text(&'a str),
}

impl std::fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Text(v) => f.write_str(v),
        }
    }
}

/// A column of raw values: int64 or utf8.
#[derive(Clone, Copy)]
enum Raw<'a> {
    Int(&'a Int64Array),
    Text(&'a StringArray),
}

impl<'a> Raw<'a> {
    fn of(batch: &'a RecordBatch, name: &str, path: &Path) -> Result<Raw<'a>, StageError> {
        match batch.column_by_name(name).map(|c| c.data_type()) {
            Some(DataType::Int64) => Ok(Raw::Int(table::column(batch, name, path)?)),
            Some(other) if other != &DataType::Utf8 => Err(StageError::BadInput(format!(
                "{}: column `{name}` is {other}; ids and user features must be int64 or utf8",
                path.display()
            ))),
            _ => Ok(Raw::Text(table::column(batch, name, path)?)),
        }
    }

    fn value(self, row: usize) -> Option<Value<'a>> {
        match self {
            Raw::Int(a) => a.is_valid(row).then(|| Value::Int(a.value(row))),
            Raw::Text(a) => a.is_valid(row).then(|| Value::Text(a.value(row))),
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            Raw::Int(_) => "int64",
            Raw::Text(_) => "utf8",
        }
    }
}

/// A fitted vocabulary: sorted unique values, index = position + 1.
struct Vocab<'a> {
    values: Vec<Value<'a>>,
    index: Index<'a>,
}

/// Value → code. Integers and texts of up to 15 bytes are keyed by one u128 (the
/// bytes, then the length; an integer's "length" is 16), so a probe compares
/// integers instead of calling memcmp on string data: for text ids, lookups are the
/// largest part of encode's time.
#[derive(Default)]
struct Index<'a> {
    short: FastMap<u128, i32>,
    long: FastMap<&'a str, i32>,
    /// Integers that span a range not much wider than their count (ids numbered
    /// from 0 or 1, ages) are looked up by position instead: `dense[v - min]`, 0 for
    /// none. Then the maps stay empty.
    dense: Option<(i64, Vec<i32>)>,
}

/// How `Index` keys a value.
enum Key<'a> {
    Short(u128),
    Long(&'a str),
}

impl<'a> Index<'a> {
    fn key(value: Value<'a>) -> Key<'a> {
        match value {
            Value::Int(v) => Key::Short(u128::from(v as u64) | 16 << 120),
            Value::Text(v) if v.len() < 16 => {
                let mut key = [0u8; 16];
                key[..v.len()].copy_from_slice(v.as_bytes());
                key[15] = v.len() as u8;
                Key::Short(u128::from_le_bytes(key))
            }
            Value::Text(v) => Key::Long(v),
        }
    }

    /// The value's code, or `new()`'s when it has none yet.
    fn code_or_insert(&mut self, value: Value<'a>, new: impl FnOnce() -> i32) -> i32 {
        match Self::key(value) {
            Key::Short(key) => *self.short.entry(key).or_insert_with(new),
            Key::Long(text) => *self.long.entry(text).or_insert_with(new),
        }
    }

    fn get(&self, value: Value<'a>) -> Option<i32> {
        if let Some((min, codes)) = &self.dense {
            let Value::Int(v) = value else { return None };
            let at = usize::try_from(v.checked_sub(*min)?).ok()?;
            return codes.get(at).copied().filter(|&c| c > 0);
        }
        match Self::key(value) {
            Key::Short(key) => self.short.get(&key).copied(),
            Key::Long(text) => self.long.get(text).copied(),
        }
    }

    fn codes_mut(&mut self) -> impl Iterator<Item = &mut i32> {
        self.short.values_mut().chain(self.long.values_mut())
    }
}

impl<'a> Vocab<'a> {
    /// Fits the vocabulary of `columns` and encodes them, hashing each value once:
    /// values get provisional codes in order of first sight, renumbered once sorted.
    fn fit(columns: &[Raw<'a>]) -> (Vocab<'a>, Vec<Int32Array>) {
        if let Some(fitted) = Self::fit_dense(columns) {
            return fitted;
        }
        let mut index = Index::default();
        let mut seen: Vec<Value<'a>> = Vec::new();
        let mut code = |v: Value<'a>| {
            index.code_or_insert(v, || {
                seen.push(v);
                seen.len() as i32
            })
        };
        let provisional: Vec<Vec<i32>> = columns
            .iter()
            .map(|c| match c {
                Raw::Int(a) => a.iter().map(|v| v.map_or(0, |v| code(Value::Int(v)))).collect(),
                Raw::Text(a) => a.iter().map(|v| v.map_or(0, |v| code(Value::Text(v)))).collect(),
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

    /// `fit` for integers whose range is at most a few times their count: mark the
    /// values present in a table over the range, number them in table order (which is
    /// sorted order), then look every value up. Nothing is hashed or sorted.
    fn fit_dense(columns: &[Raw<'a>]) -> Option<(Vocab<'a>, Vec<Int32Array>)> {
        let ints: Vec<&Int64Array> =
            columns.iter().map(|c| if let Raw::Int(a) = c { Some(*a) } else { None }).collect::<Option<_>>()?;
        let min = ints.iter().filter_map(|a| min(*a)).min()?;
        let max = ints.iter().filter_map(|a| max(*a)).max()?;
        let count: usize = ints.iter().map(|a| a.len()).sum();
        let span = usize::try_from(max.checked_sub(min)?).ok()?.checked_add(1)?;
        if span > 4 * count + 1024 {
            return None;
        }
        let mut codes = vec![0i32; span];
        for a in &ints {
            for v in a.iter().flatten() {
                codes[(v - min) as usize] = 1;
            }
        }
        let mut values = Vec::new();
        for (at, code) in codes.iter_mut().enumerate() {
            if *code > 0 {
                values.push(Value::Int(min + at as i64));
                *code = values.len() as i32;
            }
        }
        let encoded = ints
            .iter()
            .map(|a| match a.nulls() {
                None => a.values().iter().map(|&v| codes[(v - min) as usize]).collect(),
                Some(_) => a.iter().map(|v| v.map_or(0, |v| codes[(v - min) as usize])).collect(),
            })
            .collect();
        let index = Index { dense: Some((min, codes)), ..Index::default() };
        Some((Vocab { values, index }, encoded))
    }

    fn code(&self, value: Value<'a>) -> i32 {
        self.index.get(value).unwrap_or(0)
    }
}

impl Params for EncodeParams {}

fn run(ctx: &StageCtx) -> Result<Report, StageError> {
    let p: EncodeParams = params::typed(ctx.params)?;
    let (train_path, test_path, users_path) = (ctx.input("train")?, ctx.input("test")?, ctx.input("users")?);
    // Row group by row group, never concatenated; `seq` stays on disk (encoded tables
    // do not carry it).
    let clicks = |path: &Path| -> Result<Vec<RecordBatch>, StageError> {
        let (schema, mut batches) = table::read_batches(path, |c| [USER, ITEM, TIMESTAMP].contains(&c))?;
        if batches.is_empty() {
            batches.push(RecordBatch::new_empty(schema));
        }
        Ok(batches)
    };
    let valid_path = ctx.optional_input("valid");
    let (train, test) = (clicks(train_path)?, clicks(test_path)?);
    // Without validation clicks, one empty row group (the schema of the training clicks).
    let valid = match valid_path {
        Some(path) => clicks(path)?,
        None => vec![train[0].slice(0, 0)],
    };
    let users = table::read(users_path)?;
    // Train's row groups, then validation's, then test's.
    let parts: Vec<(&RecordBatch, &Path)> = train
        .iter()
        .map(|b| (b, train_path))
        .chain(valid.iter().map(|b| (b, valid_path.unwrap_or(train_path))))
        .chain(test.iter().map(|b| (b, test_path)))
        .collect();
    let raw = |name: &str| parts.iter().map(|&(b, path)| Raw::of(b, name, path)).collect::<Result<Vec<_>, _>>();
    let (user_ids, item_ids) = (raw(USER)?, raw(ITEM)?);
    let ((user_vocab, user_codes), (item_vocab, item_codes)) =
        rayon::join(|| Vocab::fit(&user_ids), || Vocab::fit(&item_ids));
    let (genres, genre_rows, genre_note) = encode_genres(ctx, &item_vocab, item_ids[0])?;

    // The encoded clicks and the user and vocabulary tables are written at once; each
    // row group read becomes one row group written.
    let encoded = |k: usize| -> Result<RecordBatch, StageError> {
        let (batch, path) = parts[k];
        let ts = table::column::<Int64Array>(batch, TIMESTAMP, path)?.clone();
        table::batch(vec![
            (USER_IDX, Arc::new(user_codes[k].clone()) as ArrayRef),
            (ITEM_IDX, Arc::new(item_codes[k].clone())),
            (TIMESTAMP, Arc::new(ts)),
        ])
    };
    let write_clicks = |spec: &OutputSpec, groups: std::ops::Range<usize>| -> Result<u64, StageError> {
        let mut w = TableWriter::create(&ctx.output(spec), encoded(groups.start)?.schema())?;
        w.write_row_groups(groups.into_par_iter().map(|k| std::iter::once(encoded(k))))?;
        w.finish()
    };
    let train_users = &user_codes[..train.len()];
    let (tr, va) = (train.len(), train.len() + valid.len());
    let ((train_rows, (valid_rows, test_rows)), tables) = rayon::join(
        || {
            rayon::join(
                || write_clicks(&TRAIN, 0..tr),
                || (write_clicks(&VALID, tr..va), write_clicks(&TEST, va..parts.len())),
            )
        },
        || {
            let vocabs = [&user_vocab, &item_vocab];
            user_and_vocab_tables(ctx, &p, (&users, users_path), vocabs, &genres, (user_ids[0], train_users))
        },
    );
    let mut report = tables?;
    report.rows.insert(TRAIN.name.into(), train_rows?);
    report.rows.insert(VALID.name.into(), valid_rows?);
    report.rows.insert(TEST.name.into(), test_rows?);
    report.rows.insert(ITEMS.name.into(), genre_rows);
    report.notes.extend(genre_note);
    Ok(report)
}

/// Ids of another table (`column` of the file at `path`) that must have the clicks'
/// type, or no id would ever match.
fn same_type((ids, path, column): (Raw, &Path, &str), clicks: Raw) -> Result<(), StageError> {
    if ids.type_name() == clicks.type_name() {
        return Ok(());
    }
    Err(StageError::BadInput(format!(
        "{}: column `{column}` is {} but the clicks' is {}; both must be the same type",
        path.display(),
        ids.type_name(),
        clicks.type_name()
    )))
}

/// Writes `items` from ingest's item genres (one row per item index and genre code,
/// sorted, each pair once; items no click has are left out) and returns the genre
/// vocabulary's values, the rows written and a note of how many clicked items have
/// genres and how many rows were left out. Without the input, `items` is empty.
fn encode_genres(
    ctx: &StageCtx,
    item_vocab: &Vocab,
    click_items: Raw,
) -> Result<(Vec<String>, u64, Option<String>), StageError> {
    let batch = match ctx.optional_input("items") {
        Some(path) => Some((table::read(path)?, path)),
        None => None,
    };
    let (mut pairs, mut values, mut unclicked) = (Vec::new(), Vec::new(), None);
    if let Some((batch, path)) = batch.as_ref().filter(|(b, _)| b.num_rows() > 0) {
        let ids = Raw::of(batch, ITEM, path)?;
        same_type((ids, path, ITEM), click_items)?;
        let (genre_vocab, codes) = Vocab::fit(&[Raw::of(batch, GENRE, path)?]);
        for (row, &genre) in codes[0].values().iter().enumerate() {
            if let Some(item) = ids.value(row).and_then(|id| item_vocab.index.get(id)).filter(|_| genre > 0) {
                pairs.push((item, genre));
            }
        }
        values = genre_vocab.values.iter().map(Value::to_string).collect();
        let clicked = |row: usize| ids.value(row).and_then(|id| item_vocab.index.get(id)).is_some();
        unclicked = Some((0..batch.num_rows()).filter(|&row| !clicked(row)).count());
    }
    pairs.sort_unstable();
    pairs.dedup();
    // A user who turns genres on wants to know how many items get any.
    let note = unclicked.map(|left_out| {
        let with = pairs.iter().map(|p| p.0).collect::<FastSet<_>>().len();
        let mut note = format!("genres for {with} of {} clicked items", item_vocab.values.len());
        if left_out > 0 {
            note += &format!("; {left_out} row(s) of the items table name an item no click has and are left out");
        }
        note
    });
    let rows = table::write(
        &ctx.output(&ITEMS),
        vec![
            (ITEM_IDX, Arc::new(Int32Array::from_iter_values(pairs.iter().map(|p| p.0))) as ArrayRef),
            (GENRE_IDX, Arc::new(Int32Array::from_iter_values(pairs.iter().map(|p| p.1)))),
        ],
    )?;
    Ok((values, rows, note))
}

/// Writes `users` (one row per user index 1..=n, categorical features encoded, dense
/// features normalised) and `vocab` (every vocabulary: feature, index, value), given
/// the genre vocabulary's values and the training clicks' raw user ids and their codes.
fn user_and_vocab_tables(
    ctx: &StageCtx,
    p: &EncodeParams,
    (users, users_path): (&RecordBatch, &Path),
    [user_vocab, item_vocab]: [&Vocab; 2],
    genres: &[String],
    (click_ids, train_users): (Raw, &[Int32Array]),
) -> Result<Report, StageError> {
    let mut report = Report::default();
    let n_users = user_vocab.values.len();
    let ids = Raw::of(users, USER, users_path)?;
    if users.num_rows() > 0 {
        same_type((ids, users_path, USER), click_ids)?;
    }
    let mut row_of_user = vec![None; n_users + 1];
    for row in 0..users.num_rows() {
        if let Some(u) = ids.value(row).and_then(|id| user_vocab.index.get(id)) {
            row_of_user[u as usize] = Some(row);
        }
    }
    let mut vocab_rows: Vec<(String, i32, String)> = Vec::new();
    for (name, v) in [(USER, user_vocab), (ITEM, item_vocab)] {
        vocab_rows.extend(v.values.iter().enumerate().map(|(i, s)| (name.to_string(), i as i32 + 1, s.to_string())));
    }
    vocab_rows.extend(genres.iter().enumerate().map(|(i, g)| (GENRE.to_string(), i as i32 + 1, g.clone())));
    let mut user_columns: Vec<(String, ArrayRef)> =
        vec![(USER_IDX.to_string(), Arc::new(Int32Array::from_iter_values(1..=n_users as i32)))];
    let schema = users.schema();
    let features: Vec<_> = schema.fields().iter().filter(|f| f.name() != USER).collect();
    let encoded = features
        .par_iter()
        .map(|field| {
            let col = Raw::of(users, field.name(), users_path)?;
            let (vocab, _) = Vocab::fit(&[col]);
            let codes: Int32Array = (1..=n_users)
                .map(|u| Some(row_of_user[u].and_then(|r| col.value(r)).map_or(0, |v| vocab.code(v))))
                .collect();
            let rows: Vec<String> = vocab.values.iter().map(Value::to_string).collect();
            Ok((codes, rows))
        })
        .collect::<Result<Vec<_>, StageError>>()?;
    for (field, (codes, values)) in features.iter().zip(encoded) {
        report.metrics.insert(format!("vocab_{}", field.name()), values.len() as f64 + 1.0);
        vocab_rows.extend(values.into_iter().enumerate().map(|(i, v)| (field.name().clone(), i as i32 + 1, v)));
        user_columns.push((field.name().clone(), Arc::new(codes)));
    }
    // Dense: the user's number of training clicks (activity).
    let mut activity = vec![0f64; n_users + 1];
    for u in train_users.iter().flat_map(|codes| codes.values()) {
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
        vec![
            (VOCAB_FEATURE, Arc::new(feature) as ArrayRef),
            (VOCAB_INDEX, Arc::new(index)),
            (VOCAB_VALUE, Arc::new(value)),
        ],
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
mod tests;
