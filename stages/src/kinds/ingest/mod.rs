//! Kind `ingest`: reads a real click log (its input `data`, a file or a directory)
//! into the `clicks`, `users` and `items` tables. Every rating counts as an implicit
//! click.
//!
//! Layouts: RecBole atomic files (`*.inter` + `*.user` + `*.item`), GroupLens
//! MovieLens-100k (`u.data` + `u.user` + `u.item`), MovieLens-1M (`ratings.dat` +
//! `users.dat` + `movies.dat`), and CSV/TSV/Parquet files with a column mapping (the
//! genres, if any, a column of the log). The optional input `items`, a CSV/TSV/Parquet
//! table of item genres, replaces the layout's own genres.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::compute::{cast, concat_batches, take};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::util::display::array_value_to_string;
use serde::{Deserialize, Serialize};

use crate::hashing::FastSet;
use crate::schema::clicks::{
    CLICKS_OUTPUT, ClickLog, ITEMS_OUTPUT, ItemGenres, USERS_OUTPUT, UserTable, write_clicks, write_item_genres,
    write_users,
};
use crate::table::{self, failed};
use dagrun_kind::{KindSpec, OutputSpec, Params, Report, StageCtx, StageError, params};
use text::{Named, Text, header_index, no_column};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Decide from the file names.
    Auto,
    Recbole,
    Movielens100k,
    Movielens1m,
    Csv,
    Tsv,
    Parquet,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestParams {
    pub format: Layout,
    /// Column names for CSV/TSV/Parquet (and RecBole field names without `:type`).
    pub user: String,
    pub item: String,
    pub timestamp: String,
    /// Columns of a CSV/TSV/Parquet log that are categorical user features.
    pub user_features: Vec<String>,
    /// Where items' genres are. RecBole: the field of the `.item` file that holds
    /// them (a `token_seq`); absent: `genre` or `class`, whichever the file has.
    /// CSV/TSV/Parquet: a column of the log, its value at an item's first click
    /// (`|`-separated names, or a Parquet list of them); absent: no genres. With
    /// input `items` (any layout): its genres column, which every row of it adds to;
    /// absent: `genre`.
    pub genres: Option<String>,
}

impl IngestParams {
    /// The columns of a CSV/TSV/Parquet log the params name, each with its param:
    /// user, item, timestamp, then the user features and the genres.
    fn log_columns(&self) -> Vec<Named<'_>> {
        let mut wanted = vec![(self.user.as_str(), "user"), (&self.item, "item"), (&self.timestamp, "timestamp")];
        wanted.extend(self.user_features.iter().map(|f| (f.as_str(), "user_features")));
        wanted.extend(self.genres.as_deref().map(|g| (g, "genres")));
        wanted
    }
}

impl Default for IngestParams {
    fn default() -> Self {
        IngestParams {
            format: Layout::Auto,
            user: "user_id".into(),
            item: "item_id".into(),
            timestamp: "timestamp".into(),
            user_features: Vec::new(),
            genres: None,
        }
    }
}

const CLICKS: OutputSpec = CLICKS_OUTPUT;
const USERS: OutputSpec = USERS_OUTPUT;
const ITEMS: OutputSpec = ITEMS_OUTPUT;

pub const SPEC: KindSpec = KindSpec {
    name: "ingest",
    summary: "reads a click log: RecBole, MovieLens-100k/1M, CSV/TSV/Parquet",
    inputs: &["data"],
    // A table of item genres, where the log's own files have none.
    optional_inputs: &["items"],
    outputs: &[CLICKS, USERS, ITEMS],
    fingerprint: crate::fingerprints::INGEST,
    params: params::check::<IngestParams>,
    needs: dagrun_kind::needs_nothing,
    run,
};

impl Params for IngestParams {
    fn validate(&self) -> Result<(), params::ParamError> {
        for (key, column) in [("user", &self.user), ("item", &self.item), ("timestamp", &self.timestamp)] {
            params::ensure(!column.trim().is_empty(), key, || "must name a column".into())?;
        }
        Ok(())
    }
}

fn run(ctx: &StageCtx) -> Result<Report, StageError> {
    let p: IngestParams = params::typed(ctx.params)?;
    let data = ctx.input("data")?;
    let got = read_with(data, &p, ctx.optional_input("items"))?;
    if got.timestamps.is_empty() {
        return Err(StageError::BadInput(format!("{}: the click log has no rows", data.display())));
    }
    let mut report = Report::default();
    report.rows.insert("items".into(), write_item_genres(&ctx.output(&ITEMS), got.genres, got.items.data_type())?);
    let clicks = write_clicks(&ctx.output(&CLICKS), got.users, got.items, got.timestamps)?;
    report.rows.insert("clicks".into(), clicks);
    report.rows.insert("users".into(), write_users(&ctx.output(&USERS), got.user_ids, got.features)?);
    Ok(report)
}

/// What ingest writes: the click log's columns in source order (ids int64 where the
/// source has integers, utf8 where it has text), each user's features, and each
/// item's genres.
#[derive(Debug)]
pub struct Ingested {
    pub users: ArrayRef,
    pub items: ArrayRef,
    pub timestamps: Vec<i64>,
    pub user_ids: ArrayRef,
    pub features: Vec<(String, Vec<String>)>,
    pub genres: ItemGenres,
}

impl Ingested {
    /// User and item ids as int64 where every one of them is an integer written the
    /// way Rust writes it (so `007` and `7` never merge).
    fn with_integer_ids(mut self) -> Ingested {
        if let Some(users) = integers(&self.users) {
            self.user_ids = integers(&self.user_ids).unwrap_or(self.user_ids);
            self.users = users;
        }
        self.items = integers(&self.items).unwrap_or(self.items);
        self
    }

    fn from_text((log, users, genres): (ClickLog, UserTable, ItemGenres)) -> Ingested {
        Ingested {
            users: Arc::new(StringArray::from(log.users)),
            items: Arc::new(StringArray::from(log.items)),
            timestamps: log.timestamps,
            user_ids: Arc::new(StringArray::from(users.ids)),
            features: users.features,
            genres,
        }
    }
}

/// Reads `data` in the layout `p.format` names (or finds it), with the layout's genres.
pub fn read(data: &Path, p: &IngestParams) -> Result<Ingested, StageError> {
    read_with(data, p, None)
}

/// [`read`], the genres from the table `items` instead when there is one; the
/// layout's own are then not read (a broken `.item` file it does not use is no error).
pub fn read_with(data: &Path, p: &IngestParams, items: Option<&Path>) -> Result<Ingested, StageError> {
    let layout = if p.format == Layout::Auto { detect(data)? } else { p.format };
    let own = items.is_none();
    // With a table of genres, param `genres` names its column, not one of the log's.
    let log = IngestParams { genres: if own { p.genres.clone() } else { None }, ..p.clone() };
    let mut got = match layout {
        Layout::Parquet => mapped_parquet(&single_file(data, "parquet")?, &log),
        // A CSV's types are the values': ids that are all integers are integers.
        Layout::Csv => mapped_text(&single_file(data, "csv")?, ",", &log).map(Ingested::with_integer_ids),
        Layout::Tsv => mapped_text(&single_file(data, "tsv")?, "\t", &log).map(Ingested::with_integer_ids),
        // RecBole and MovieLens declare their ids as tokens: they stay text.
        _ => read_text(data, layout, &log, own).map(Ingested::from_text),
    }?;
    if let Some(items) = items {
        got.genres = genres::item_file(items, p, got.items.data_type().is_integer())?;
    }
    Ok(got)
}

/// The click log, the users and the items' genres of a RecBole or MovieLens folder.
type TextTables = (ClickLog, UserTable, ItemGenres);

/// RecBole and MovieLens: every id as it is written; the item file's genres when
/// `with_genres`.
fn read_text(data: &Path, layout: Layout, p: &IngestParams, with_genres: bool) -> Result<TextTables, StageError> {
    let dir = dir_of(data);
    let genres = |read: &dyn Fn() -> Result<ItemGenres, StageError>| {
        if with_genres { read() } else { Ok(ItemGenres::default()) }
    };
    match layout {
        Layout::Recbole => {
            let (log, users, inter) = recbole(data, p)?;
            Ok((log, users, genres(&|| genres::recbole(&inter.with_extension("item"), p))?))
        }
        Layout::Movielens100k => Ok((
            plain_log(&dir.join("u.data"), "\t", [0, 1, 3])?,
            plain_users(&dir.join("u.user"), "|", &[("age", 1), ("gender", 2), ("occupation", 3), ("zip_code", 4)])?,
            genres(&|| genres::movielens_100k(&dir))?,
        )),
        Layout::Movielens1m => Ok((
            plain_log(&dir.join("ratings.dat"), "::", [0, 1, 3])?,
            plain_users(
                &dir.join("users.dat"),
                "::",
                &[("gender", 1), ("age", 2), ("occupation", 3), ("zip_code", 4)],
            )?,
            genres(&|| genres::movielens_1m(&dir.join("movies.dat")))?,
        )),
        _ => Err(StageError::Failed(format!("{}: {layout:?} is not a RecBole or MovieLens layout", data.display()))),
    }
}

fn dir_of(data: &Path) -> PathBuf {
    if data.is_dir() { data.to_path_buf() } else { data.parent().unwrap_or(Path::new(".")).to_path_buf() }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    files.sort();
    files
}

fn detect(data: &Path) -> Result<Layout, StageError> {
    let ext = |p: &Path| p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    if data.is_file() {
        return match ext(data).as_deref() {
            Some("csv") => Ok(Layout::Csv),
            Some("tsv") => Ok(Layout::Tsv),
            Some("parquet") => Ok(Layout::Parquet),
            Some("inter") => Ok(Layout::Recbole),
            _ if data.file_name().is_some_and(|n| n == "u.data") => Ok(Layout::Movielens100k),
            _ if data.file_name().is_some_and(|n| n == "ratings.dat") => Ok(Layout::Movielens1m),
            _ => Err(StageError::BadInput(format!(
                "{}: cannot tell the layout from the name; set param `format` (recbole, movielens_100k, movielens_1m, csv, tsv, parquet)",
                data.display()
            ))),
        };
    }
    let files = files_in(data);
    let has = |name: &str| files.iter().any(|f| f.file_name().is_some_and(|n| n == name));
    if files.iter().any(|f| ext(f).as_deref() == Some("inter")) {
        Ok(Layout::Recbole)
    } else if has("u.data") {
        Ok(Layout::Movielens100k)
    } else if has("ratings.dat") {
        Ok(Layout::Movielens1m)
    } else {
        Err(StageError::BadInput(format!(
            "{}: no click log found (expected *.inter, u.data or ratings.dat); set param `format` for CSV/TSV/Parquet",
            data.display()
        )))
    }
}

fn single_file(data: &Path, ext: &str) -> Result<PathBuf, StageError> {
    if data.is_file() {
        return Ok(data.to_path_buf());
    }
    let found: Vec<PathBuf> =
        files_in(data).into_iter().filter(|f| f.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))).collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(StageError::BadInput(format!("{}: no .{ext} file in the directory", data.display()))),
        _ => Err(StageError::BadInput(format!("{}: several .{ext} files; point input `data` at one", data.display()))),
    }
}

/// RecBole's click log and users, and the `.inter` file they came from (its `.item`
/// sibling holds the genres).
fn recbole(data: &Path, p: &IngestParams) -> Result<(ClickLog, UserTable, PathBuf), StageError> {
    let dir = dir_of(data);
    let files = files_in(&dir);
    let inter = if data.is_file() {
        data.to_path_buf()
    } else {
        files
            .iter()
            .find(|f| f.extension().is_some_and(|e| e == "inter"))
            .cloned()
            .ok_or_else(|| StageError::BadInput(format!("{}: no *.inter file", dir.display())))?
    };
    let text = Text::open(&inter, "\t");
    let (header, rows) = text.header_and_rows()?;
    let names: Vec<&str> = header.iter().map(|h| h.split(':').next().unwrap_or(h)).collect();
    let idx = header_index(&text, &names, &[(&p.user, "user"), (&p.item, "item"), (&p.timestamp, "timestamp")])?;
    let mut log = ClickLog::default();
    for row in rows {
        let (line, record) = row?;
        let fields: Vec<&str> = record.iter().collect();
        let user = text.field(line, &fields, idx[0], "user")?;
        let item = text.field(line, &fields, idx[1], "item")?;
        let ts = text.timestamp(line, &fields, idx[2])?;
        log.push(user.to_string(), item.to_string(), ts);
    }
    // The users file shares the .inter file's stem.
    let user_file = inter.with_extension("user");
    let users = if user_file.is_file() {
        let text = Text::open(&user_file, "\t");
        let (header, rows) = text.header_and_rows()?;
        let names: Vec<&str> = header.iter().map(|h| h.split(':').next().unwrap_or(h)).collect();
        let id = header_index(&text, &names, &[(&p.user, "user")])?[0];
        // Categorical features: every `token` field besides the id.
        let feats: Vec<(usize, &str)> = header
            .iter()
            .enumerate()
            .filter(|(i, h)| *i != id && h.ends_with(":token"))
            .map(|(i, _)| (i, names[i]))
            .collect();
        let mut table =
            UserTable { ids: Vec::new(), features: feats.iter().map(|(_, n)| (n.to_string(), Vec::new())).collect() };
        for row in rows {
            let (line, record) = row?;
            let fields: Vec<&str> = record.iter().collect();
            table.ids.push(text.field(line, &fields, id, "user")?.to_string());
            for (k, (i, name)) in feats.iter().enumerate() {
                table.features[k].1.push(text.field(line, &fields, *i, name)?.to_string());
            }
        }
        table
    } else {
        UserTable { ids: Vec::new(), features: Vec::new() }
    };
    Ok((log, users, inter))
}

/// A headerless log whose user, item and timestamp sit at fixed positions.
fn plain_log(path: &Path, sep: &'static str, pos: [usize; 3]) -> Result<ClickLog, StageError> {
    let text = Text::open(path, sep);
    let mut log = ClickLog::default();
    for row in text.rows()? {
        let (line, record) = row?;
        let fields: Vec<&str> = record.iter().collect();
        let user = text.field(line, &fields, pos[0], "user")?;
        let item = text.field(line, &fields, pos[1], "item")?;
        let ts = text.timestamp(line, &fields, pos[2])?;
        log.push(user.to_string(), item.to_string(), ts);
    }
    Ok(log)
}

/// A headerless users file: the id first, features at the given positions.
fn plain_users(path: &Path, sep: &'static str, feats: &[(&str, usize)]) -> Result<UserTable, StageError> {
    if !path.is_file() {
        return Ok(UserTable { ids: Vec::new(), features: Vec::new() });
    }
    let text = Text::open(path, sep);
    let mut table =
        UserTable { ids: Vec::new(), features: feats.iter().map(|(n, _)| (n.to_string(), Vec::new())).collect() };
    for row in text.rows()? {
        let (line, record) = row?;
        let fields: Vec<&str> = record.iter().collect();
        table.ids.push(text.field(line, &fields, 0, "user")?.to_string());
        for (k, (name, i)) in feats.iter().enumerate() {
            table.features[k].1.push(text.field(line, &fields, *i, name)?.to_string());
        }
    }
    Ok(table)
}

/// A CSV/TSV log with a header, its columns named by the params; the users table is
/// each user's features at their first click.
fn mapped_text(path: &Path, sep: &'static str, p: &IngestParams) -> Result<Ingested, StageError> {
    let text = Text::open(path, sep);
    let (header, rows) = text.header_and_rows()?;
    let header: Vec<&str> = header.iter().collect();
    let wanted = p.log_columns();
    let idx = header_index(&text, &header, &wanted)?;
    let mut log = ClickLog::default();
    // The user features' values, then the genres', row by row.
    let mut values: Vec<Vec<String>> = vec![Vec::new(); wanted.len() - 3];
    for row in rows {
        let (line, record) = row?;
        let fields: Vec<&str> = record.iter().collect();
        let user = text.field(line, &fields, idx[0], "user")?;
        let item = text.field(line, &fields, idx[1], "item")?;
        let ts = text.timestamp(line, &fields, idx[2])?;
        log.push(user.to_string(), item.to_string(), ts);
        for (k, &i) in idx[3..].iter().enumerate() {
            values[k].push(text.field(line, &fields, i, wanted[k + 3].0)?.to_string());
        }
    }
    let users: ArrayRef = Arc::new(StringArray::from(log.users));
    let items: ArrayRef = Arc::new(StringArray::from(log.items));
    let mut columns: Vec<ArrayRef> = values.into_iter().map(|v| Arc::new(StringArray::from(v)) as ArrayRef).collect();
    let genres = match p.genres {
        Some(_) => genres::at_first_clicks(&items, &columns.pop().expect("the genres column was asked for"), path)?,
        None => ItemGenres::default(),
    };
    let (user_ids, features) = users_at_first_clicks(&users, p.user_features.iter().cloned().zip(columns).collect())?;
    Ok(Ingested { users, items, timestamps: log.timestamps, user_ids, features, genres })
}

/// A Parquet log, read by the parquet crate, its columns named by the params. Integer
/// id columns stay integers (int64), so split and encode work on numbers as they do
/// for synth's, unless one does not fit an int64 (a uint64 hash); other ids become
/// text. Timestamp and date columns count their own units: they become seconds.
fn mapped_parquet(path: &Path, p: &IngestParams) -> Result<Ingested, StageError> {
    let wanted = p.log_columns();
    let batch = parquet_columns(path, &wanted)?;
    let ids = |name: &str| -> Result<ArrayRef, StageError> {
        let col = column_named(&batch, name)?;
        let what = ("an id", "an id is null");
        // Cast once: the int64 ids, if every one fits (the cast nulls none), are kept.
        let ints = col.data_type().is_integer().then(|| cast(col, &DataType::Int64).ok()).flatten();
        match ints.filter(|c| c.null_count() == col.null_count()) {
            Some(ints) => checked(col, ints, (path, name), what),
            None => cast_checked(col, &DataType::Utf8, (path, name), what),
        }
    };
    let (users, items) = (ids(&p.user)?, ids(&p.item)?);
    let ts_col = column_named(&batch, &p.timestamp)?;
    let bad_cast = |e: ArrowError| StageError::BadInput(format!("{}: column `{}`: {e}", path.display(), p.timestamp));
    let seconds = match ts_col.data_type() {
        // The time zone stays, so the cast changes the unit and not the instant.
        DataType::Timestamp(_, zone) => cast(ts_col, &DataType::Timestamp(TimeUnit::Second, zone.clone())),
        DataType::Date32 | DataType::Date64 => cast(ts_col, &DataType::Timestamp(TimeUnit::Second, None)),
        _ => Ok(ts_col.clone()),
    }
    .map_err(bad_cast)?;
    let what = ("a whole number of seconds since 1970", "the timestamp is null");
    let ts = cast_checked(&seconds, &DataType::Int64, (path, &p.timestamp), what)?;
    let ts = ts.as_any().downcast_ref::<Int64Array>().expect("cast to int64 gives an int64 array");
    let columns = p.user_features.iter().map(|name| Ok((name.clone(), column_named(&batch, name)?.clone())));
    let (user_ids, features) = users_at_first_clicks(&users, columns.collect::<Result<_, StageError>>()?)?;
    let genres = match &p.genres {
        Some(name) => genres::at_first_clicks(&items, column_named(&batch, name)?, path)?,
        None => ItemGenres::default(),
    };
    Ok(Ingested { users, items, timestamps: ts.values().to_vec(), user_ids, features, genres })
}

/// The users table of a log that has none: every user once, in the order they first
/// appear, with each feature column's value at their first click (as text).
fn users_at_first_clicks(
    users: &ArrayRef,
    features: Vec<(String, ArrayRef)>,
) -> Result<(ArrayRef, Vec<(String, Vec<String>)>), StageError> {
    let firsts = UInt32Array::from(first_rows(users));
    let user_ids = take(users, &firsts, None).map_err(failed)?;
    let features = features
        .into_iter()
        .map(|(name, col)| {
            let col = as_text(&col).map_err(failed)?;
            let at =
                |r: &u32| if col.is_null(*r as usize) { String::new() } else { col.value(*r as usize).to_string() };
            Ok((name, firsts.values().iter().map(at).collect()))
        })
        .collect::<Result<_, StageError>>()?;
    Ok((user_ids, features))
}

/// Column `name` of `path` cast to `to`. A value the cast cannot take (a safe cast
/// makes it null) is bad input at its row, saying that it is not `what.0`, and a null
/// says `what.1`.
fn cast_checked(
    col: &ArrayRef,
    to: &DataType,
    (path, name): (&Path, &str),
    what: (&str, &str),
) -> Result<ArrayRef, StageError> {
    let out = cast(col, to)
        .map_err(|e| StageError::BadInput(format!("{}: column `{name}` ({}): {e}", path.display(), col.data_type())))?;
    checked(col, out, (path, name), what)
}

/// `out`, column `name` of `path` as cast from `col`, checked as `cast_checked` says.
fn checked(
    col: &ArrayRef,
    out: ArrayRef,
    (path, name): (&Path, &str),
    what: (&str, &str),
) -> Result<ArrayRef, StageError> {
    if out.null_count() == 0 {
        return Ok(out);
    }
    match (0..col.len()).find(|&i| out.is_null(i)) {
        None => Ok(out),
        Some(row) if col.is_null(row) => Err(StageError::bad_value(path, name, row, what.1)),
        Some(row) => {
            let value = array_value_to_string(col, row).unwrap_or_default();
            Err(StageError::bad_value(path, name, row, format!("`{value}` is not {}", what.0)))
        }
    }
}

/// The columns `wanted` of a Parquet file, as one batch. A file without one of them,
/// or one the parquet crate cannot read, is bad input; the first names the param to
/// set and the file's columns.
fn parquet_columns(path: &Path, wanted: &[Named]) -> Result<RecordBatch, StageError> {
    let bad = |e: &dyn std::fmt::Display| StageError::BadInput(format!("{}: {e}", path.display()));
    let (schema, batches) = table::read_batches(path, |c| wanted.iter().any(|w| w.0 == c)).map_err(|e| bad(&e))?;
    if let Some(&(column, param)) = wanted.iter().find(|w| schema.field_with_name(w.0).is_err()) {
        // The file's columns, not only those read: the one meant may be among the others.
        let all = table::schema(path).map_err(|e| bad(&e))?;
        let names: Vec<&str> = all.fields().iter().map(|f| f.name().as_str()).collect();
        return Err(bad(&no_column(column, param, &names)));
    }
    concat_batches(&schema, &batches).map_err(|e| bad(&e))
}

/// `a`'s values as text.
fn as_text(a: &dyn Array) -> Result<StringArray, ArrowError> {
    Ok(cast(a, &DataType::Utf8)?.as_string::<i32>().clone())
}

/// `v` as an int64 if it is an integer written the way Rust writes it, so `007` and
/// `7` never merge.
fn canonical_i64(v: &str) -> Option<i64> {
    v.parse::<i64>().ok().filter(|n| n.to_string() == v)
}

/// `ids` (utf8) as int64, if every value is an integer in its canonical form.
fn integers(ids: &ArrayRef) -> Option<ArrayRef> {
    let text = ids.as_any().downcast_ref::<StringArray>()?;
    let values: Option<Vec<i64>> = text.iter().map(|v| v.and_then(canonical_i64)).collect();
    Some(Arc::new(Int64Array::from(values?)))
}

/// The row of each user's (or item's) first click, in the order they first appear.
fn first_rows(users: &ArrayRef) -> Vec<u32> {
    let mut firsts = Vec::new();
    if let Some(ints) = users.as_any().downcast_ref::<Int64Array>() {
        let mut seen = FastSet::default();
        for (row, u) in ints.values().iter().enumerate() {
            if seen.insert(*u) {
                firsts.push(row as u32);
            }
        }
    } else if let Some(text) = users.as_any().downcast_ref::<StringArray>() {
        let mut seen = FastSet::default();
        for row in 0..text.len() {
            if seen.insert(text.value(row)) {
                firsts.push(row as u32);
            }
        }
    }
    firsts
}

/// Column `name` of a batch `parquet_columns` read, which has every column it was
/// asked for.
fn column_named<'b>(batch: &'b RecordBatch, name: &str) -> Result<&'b ArrayRef, StageError> {
    batch.column_by_name(name).ok_or_else(|| failed(format!("column `{name}` was asked for but not read")))
}

mod genres;
#[cfg(test)]
mod tests;
mod text;
