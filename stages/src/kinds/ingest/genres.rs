//! The items' genres of each layout that has them: RecBole's `.item` (a `token_seq`
//! field), MovieLens-100k's `u.item` (19 flags named by `u.genre`), MovieLens-1M's
//! `movies.dat` (`|`-separated names), a column of a CSV/TSV/Parquet log, and a
//! CSV/TSV/Parquet items table of its own (input `items`). A missing layout file
//! means no genres, not an error.

use std::path::Path;

use datafusion::arrow::array::{Array, ArrayRef, ListArray};

use super::text::Records;
use super::{IngestParams, Text, as_text, canonical_i64, column_named, first_rows, header_index, parquet_columns};
use crate::schema::clicks::ItemGenres;
use dagrun_kind::StageError;

/// A log's genres column (`|`-separated names, or a list of names) at each item's
/// first click, items in the order they first appear; a null or empty value names no
/// genre.
pub(super) fn at_first_clicks(items: &ArrayRef, column: &ArrayRef, path: &Path) -> Result<ItemGenres, StageError> {
    of_rows(items, column, first_rows(items).into_iter().map(|r| r as usize), path)
}

/// What a genres table whose id is not an integer, where the log's are, is told.
fn not_an_integer(id: &str) -> String {
    format!("item id `{id}` is not an integer, as the click log's ids are")
}

/// The genres of `rows` of an (item id, genres) pair of columns: `|`-separated names,
/// or a list of them.
fn of_rows(
    items: &ArrayRef,
    column: &ArrayRef,
    rows: impl Iterator<Item = usize>,
    path: &Path,
) -> Result<ItemGenres, StageError> {
    let text =
        |a: &dyn Array| as_text(a).map_err(|e| StageError::BadInput(format!("{}: genres column: {e}", path.display())));
    let ids = text(items)?;
    let mut genres = ItemGenres::default();
    if let Some(lists) = column.as_any().downcast_ref::<ListArray>() {
        let names = text(lists.values())?;
        let offsets = lists.value_offsets();
        for row in rows.filter(|&r| lists.is_valid(r) && ids.is_valid(r)) {
            let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
            for name in (start..end).filter(|&k| names.is_valid(k)).map(|k| names.value(k).trim()) {
                if !name.is_empty() {
                    genres.push(ids.value(row), name);
                }
            }
        }
        return Ok(genres);
    }
    let values = text(column)?;
    for row in rows.filter(|&r| values.is_valid(r) && ids.is_valid(r)) {
        for name in values.value(row).split('|').map(str::trim).filter(|g| !g.is_empty()) {
            genres.push(ids.value(row), name);
        }
    }
    Ok(genres)
}

/// Input `items`: a CSV, TSV or Parquet file with a header, its item id column named
/// by `p.item` and its genres column by `p.genres` (absent: `genre`). Every row
/// counts, so an item may have one row a genre or one row with all of them. Its ids
/// must be of the log's type: `integer_ids` when the log's are integers.
pub(super) fn item_file(path: &Path, p: &IngestParams, integer_ids: bool) -> Result<ItemGenres, StageError> {
    let field = p.genres.as_deref().unwrap_or("genre");
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let genres = match ext.as_deref() {
        Some("parquet") => {
            let batch = parquet_columns(path, &[(&p.item, "item"), (field, "genres")])?;
            let ids = column_named(&batch, &p.item)?;
            if integer_ids && !ids.data_type().is_integer() {
                let text = as_text(ids).map_err(|e| StageError::BadInput(format!("{}: {e}", path.display())))?;
                let canonical = |r: usize| canonical_i64(text.value(r)).is_some();
                if let Some(row) = (0..text.len()).find(|&r| text.is_valid(r) && !canonical(r)) {
                    return Err(StageError::bad_value(path, &p.item, row, not_an_integer(text.value(row))));
                }
            }
            of_rows(ids, column_named(&batch, field)?, 0..batch.num_rows(), path)?
        }
        Some(e @ ("csv" | "tsv")) => {
            let text = Text::open(path, if e == "csv" { "," } else { "\t" });
            text_item_file(&text, &p.item, field, integer_ids)?
        }
        _ => {
            return Err(StageError::BadInput(format!(
                "{}: input `items` must be a .csv, .tsv or .parquet file",
                path.display()
            )));
        }
    };
    Ok(genres)
}

/// The (item, genres) rows of a CSV or TSV items file, genres `|`-separated.
fn text_item_file(text: &Text, item: &str, field: &str, integer_ids: bool) -> Result<ItemGenres, StageError> {
    let (header, rows) = text.header_and_rows()?;
    let header: Vec<&str> = header.iter().collect();
    let idx = header_index(text, &header, &[(item, "item"), (field, "genres")])?;
    text_genres(text, rows, [idx[0], idx[1]], (field, '|'), integer_ids)
}

/// The (item, genre) pairs of a text file's rows: the item id in column `at[0]`, its
/// genres in column `at[1]` (named `field`) split on `sep`. With `integer_ids`, an id
/// that is not a canonical integer is an error at its line and column.
fn text_genres(
    text: &Text,
    rows: Records,
    at: [usize; 2],
    (field, sep): (&str, char),
    integer_ids: bool,
) -> Result<ItemGenres, StageError> {
    let mut genres = ItemGenres::default();
    for row in rows {
        let (line, record) = row?;
        let fields: Vec<&str> = record.iter().collect();
        let id = text.field(line, &fields, at[0], "item")?;
        if integer_ids && canonical_i64(id).is_none() {
            return Err(text.at(line, &fields, at[0], not_an_integer(id)));
        }
        for genre in text.field(line, &fields, at[1], field)?.split(sep).map(str::trim).filter(|g| !g.is_empty()) {
            genres.push(id, genre);
        }
    }
    Ok(genres)
}

/// RecBole: the genres field named by `p.genres`, or `genre` / `class`, split on spaces
/// (RecBole's `token_seq`).
pub(super) fn recbole(path: &Path, p: &IngestParams) -> Result<ItemGenres, StageError> {
    if !path.is_file() {
        return Ok(ItemGenres::default());
    }
    let text = Text::open(path, "\t");
    let (header, rows) = text.header_and_rows()?;
    let names: Vec<&str> = header.iter().map(|h| h.split(':').next().unwrap_or(h)).collect();
    let field = match &p.genres {
        Some(name) => name.as_str(),
        None => match ["genre", "class"].into_iter().find(|n| names.contains(n)) {
            Some(name) => name,
            None => return Ok(ItemGenres::default()),
        },
    };
    let idx = header_index(&text, &names, &[(&p.item, "item"), (field, "genres")])?;
    // RecBole's ids are tokens, whatever they look like.
    text_genres(&text, rows, [idx[0], idx[1]], (field, ' '), false)
}

/// The genre names of MovieLens-100k's flags, in order, as its README lists them;
/// `u.genre` (name|position), when present, names them instead.
const GROUPLENS_100K: [&str; 19] = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
];

/// Where `u.item`'s genre flags start: after id, title, release date, video release
/// date and IMDb URL.
const FIRST_FLAG: usize = 5;

/// MovieLens-100k: `u.item` rows `id|title|date|video date|url|flag × 19`.
pub(super) fn movielens_100k(dir: &Path) -> Result<ItemGenres, StageError> {
    let mut genres = ItemGenres::default();
    let path = dir.join("u.item");
    if !path.is_file() {
        return Ok(genres);
    }
    let names = genre_names(&dir.join("u.genre"))?;
    for (line, text) in latin1_lines(&path)? {
        let fields: Vec<&str> = text.split('|').collect();
        // Unset flags (and a trailing empty field) name no genre, so only a set one
        // needs a name.
        for (k, flag) in fields.iter().enumerate().skip(FIRST_FLAG).filter(|(_, f)| !matches!(**f, "0" | "")) {
            let name = names.get(k - FIRST_FLAG).ok_or_else(|| {
                bad_line(&path, line, format!("field {} is past the {} genre flags", k + 1, names.len()))
            })?;
            if *flag != "1" {
                return Err(bad_line(&path, line, format!("genre flag `{flag}` of {name} is not 0 or 1")));
            }
            genres.push(fields[0], name);
        }
    }
    Ok(genres)
}

/// `u.genre`'s names by position, or the README's when there is no such file.
fn genre_names(path: &Path) -> Result<Vec<String>, StageError> {
    if !path.is_file() {
        return Ok(GROUPLENS_100K.iter().map(|g| g.to_string()).collect());
    }
    let mut names: Vec<String> = Vec::new();
    for (line, text) in latin1_lines(path)? {
        let (name, position) = text.split_once('|').unwrap_or((&text, ""));
        if position.trim().parse::<usize>().ok() != Some(names.len()) {
            return Err(bad_line(path, line, format!("expected `name|{}`, found `{text}`", names.len())));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

/// MovieLens-1M: `movies.dat` rows `id::title::Genre|Genre`.
pub(super) fn movielens_1m(path: &Path) -> Result<ItemGenres, StageError> {
    let mut genres = ItemGenres::default();
    if !path.is_file() {
        return Ok(genres);
    }
    for (line, text) in latin1_lines(path)? {
        let fields: Vec<&str> = text.split("::").collect();
        let [id, _, names] = fields[..] else {
            return Err(bad_line(path, line, format!("expected `id::title::genres`, found {} field(s)", fields.len())));
        };
        for name in names.split('|').filter(|g| !g.is_empty()) {
            genres.push(id, name);
        }
    }
    Ok(genres)
}

/// The non-blank lines of a GroupLens item file with their numbers. Those files are
/// ISO-8859-1 (titles such as `Misérables` are one byte a letter), where every byte is
/// the character of the same number, so decoding cannot fail.
fn latin1_lines(path: &Path) -> Result<Vec<(usize, String)>, StageError> {
    let bytes =
        std::fs::read(path).map_err(|e| StageError::BadInput(format!("{}: cannot read ({e})", path.display())))?;
    let text: String = bytes.iter().map(|&b| b as char).collect();
    Ok(text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r').to_string()))
        .filter(|(_, l)| !l.trim().is_empty())
        .collect())
}

fn bad_line(path: &Path, line: usize, message: String) -> StageError {
    StageError::BadInput(format!("{}:{line}: {message}", path.display()))
}
