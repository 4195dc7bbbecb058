//! The tables `encode` writes and most kinds below it read: clicks with user and
//! item indices (`train`, `test`), `users`, and `vocab` (feature, index, raw value).
//!
//! Indices are dense: 1..=n for n distinct values, 0 for padding or unknown. The
//! readers here check that before anything is sized by an index, so a table from
//! elsewhere fails with the file, column and row instead of a panic or a huge
//! allocation.

use std::collections::HashMap;
use std::path::Path;

use dagrun_kind::{StageCtx, StageError};
use datafusion::arrow::array::{Int32Array, StringArray};

use crate::table;

/// Column names of the encoded tables.
pub const USER_IDX: &str = "user";
pub const ITEM_IDX: &str = "item";
/// `encode.items`: a genre's code, one row per (item, genre).
pub const GENRE_IDX: &str = "genre";

/// Column names of `encode.vocab`.
pub const VOCAB_FEATURE: &str = "feature";
pub const VOCAB_INDEX: &str = "index";
pub const VOCAB_VALUE: &str = "value";

/// Checks that every index of `column` lies in `0..limit`; the error names the first
/// row that does not.
pub fn check_indices(path: &Path, column: &str, values: &[i32], limit: usize) -> Result<(), StageError> {
    check_indices_at(path, column, values, limit, 0)
}

/// [`check_indices`] for the part of a column that starts at row `first_row`.
pub fn check_indices_at(
    path: &Path,
    column: &str,
    values: &[i32],
    limit: usize,
    first_row: usize,
) -> Result<(), StageError> {
    match values.iter().position(|&v| v < 0 || v as usize >= limit) {
        None => Ok(()),
        Some(row) => Err(StageError::bad_value(
            path,
            column,
            first_row + row,
            format!(
                "index {} lies outside 0..{limit} (encoded indices run from 1 to the vocabulary's size); \
                 point this input at `encode`'s output or re-encode the table",
                values[row]
            ),
        )),
    }
}

/// A bound on the indices of an encoded table of `rows` rows, for readers without a
/// vocabulary: every index is one distinct value of the table, so `encode`'s output
/// never exceeds the number of rows. Small tables get room for sparse indices of
/// their own (up to `SPARSE_ROOM`); what is sized by an index then stays within a
/// constant of the data's size.
pub fn dense_limit(rows: usize) -> usize {
    rows.max(SPARSE_ROOM) + 1
}

/// Indices any table may use, however few rows it has.
pub const SPARSE_ROOM: usize = 1 << 16;

/// Index → raw value of one vocabulary (`feature`) in `encode.vocab`.
pub fn raw_ids(vocab: &Path, feature: &str) -> Result<HashMap<i32, String>, StageError> {
    let b = table::read(vocab)?;
    let f = table::column::<StringArray>(&b, VOCAB_FEATURE, vocab)?;
    let i = table::column::<Int32Array>(&b, VOCAB_INDEX, vocab)?;
    let v = table::column::<StringArray>(&b, VOCAB_VALUE, vocab)?;
    check_indices(vocab, VOCAB_INDEX, i.values(), dense_limit(b.num_rows()))?;
    Ok((0..b.num_rows()).filter(|&r| f.value(r) == feature).map(|r| (i.value(r), v.value(r).to_string())).collect())
}

/// The number of entries of vocabulary `feature`, plus one for padding: the rows of
/// an embedding table over it.
pub fn vocab_rows(vocab: &Path, feature: &str) -> Result<usize, StageError> {
    let b = table::read(vocab)?;
    let f = table::column::<StringArray>(&b, VOCAB_FEATURE, vocab)?;
    Ok(f.iter().filter(|x| *x == Some(feature)).count() + 1)
}

/// The optional input of `evaluate` and `popularity` that adds clicks to leave out of
/// the `_excl` rankings: the validation clicks, when test users are ranked.
pub const ALSO_SEEN: &str = "also_seen";

/// Each user's items in the click table of `ctx`'s input `input`, and in `ALSO_SEEN`'s
/// when the pipeline gives it.
pub fn seen_items_of(ctx: &StageCtx, input: &str) -> Result<Vec<Vec<i32>>, StageError> {
    let paths: Vec<&Path> = std::iter::once(ctx.input(input)?).chain(ctx.optional_input(ALSO_SEEN)).collect();
    seen_items(&paths)
}

/// Each user's items in the click tables at `paths` (training clicks, and the
/// validation clicks when test is evaluated), sorted, indexed by user index. Indices
/// are dense over the tables together: the validation table has a row per user with a
/// validation click, fewer than the users, so its own row count does not bound them.
fn seen_items(paths: &[&Path]) -> Result<Vec<Vec<i32>>, StageError> {
    let tables = paths.iter().map(|path| table::read(path)).collect::<Result<Vec<_>, _>>()?;
    let limit = dense_limit(tables.iter().map(|b| b.num_rows()).sum());
    let mut seen: Vec<Vec<i32>> = Vec::new();
    for (path, b) in paths.iter().zip(&tables) {
        let users = table::column::<Int32Array>(b, USER_IDX, path)?.values();
        let items = table::column::<Int32Array>(b, ITEM_IDX, path)?.values();
        check_indices(path, USER_IDX, users, limit)?;
        let n = users.iter().copied().max().unwrap_or(0) as usize + 1;
        if seen.len() < n {
            seen.resize(n, Vec::new());
        }
        for (u, i) in users.iter().zip(items) {
            seen[*u as usize].push(*i);
        }
    }
    for s in &mut seen {
        s.sort_unstable();
        s.dedup();
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_outside_the_vocabulary_name_their_row() {
        let p = Path::new("t.parquet");
        assert!(check_indices(p, "item", &[0, 1, 3], 4).is_ok());
        let e = check_indices(p, "item", &[1, -5, 9], 4).unwrap_err().to_string();
        assert!(e.starts_with("t.parquet: column `item`, row 1: index -5 lies outside 0..4"), "{e}");
        let e = check_indices(p, "item", &[1, 2_000_000_000], 4).unwrap_err().to_string();
        assert!(e.contains("row 1: index 2000000000"), "{e}");
    }

    /// At 5M synthetic clicks `evaluate` and `baseline` failed: the validation table
    /// (174,046 rows, one per user with a validation click) holds user 183,216, which
    /// its own row count was taken to bound.
    #[test]
    fn a_validation_table_with_fewer_rows_than_its_largest_user_index_is_read() {
        let d = tempfile::tempdir().unwrap();
        let users = SPARSE_ROOM as i32 + 10;
        let write = |name: &str, u: Vec<i32>, i: Vec<i32>| {
            let path = d.path().join(name);
            table::write(
                &path,
                vec![
                    (USER_IDX, std::sync::Arc::new(Int32Array::from(u)) as _),
                    (ITEM_IDX, std::sync::Arc::new(Int32Array::from(i)) as _),
                ],
            )
            .unwrap();
            path
        };
        let train = write("train.parquet", (1..=users).collect(), vec![3; users as usize]);
        let valid = write("valid.parquet", vec![users - 1, users], vec![1, 2]);
        let seen = seen_items(&[&train, &valid]).unwrap();
        assert_eq!(seen.len(), users as usize + 1);
        assert_eq!(seen[users as usize], [2, 3]);
        assert_eq!(seen[1], [3]);
        let e = seen_items(&[&valid]).unwrap_err().to_string();
        assert!(e.contains("valid.parquet: column `user`, row 0"), "alone, the bound still holds: {e}");
    }
}
