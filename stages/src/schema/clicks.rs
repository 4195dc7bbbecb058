//! The click-log tables that `synth` and `ingest` write and `split_last_click` reads.
//!
//! `clicks`: `user_id`, `item_id`, `timestamp` (int64, seconds), `seq` (int64,
//! position in the source log: the tie-breaker for equal timestamps).
//! `users`: `user_id` and one utf8 column per categorical user feature.
//! `items` (ingest only): `item_id` and `genre` (utf8), one row per genre of an item.
//!
//! Ids are int64 where the source has integer ids (synth) and utf8 where it has
//! text (ingest): integers are half the work to split and encode at scale.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;

use crate::table;
use dagrun_kind::{Format, OutputSpec, StageError};

/// The outputs of every click-log source (`synth`, `ingest`).
pub const CLICKS_OUTPUT: OutputSpec = OutputSpec { name: "clicks", format: Format::Parquet };
pub const USERS_OUTPUT: OutputSpec = OutputSpec { name: "users", format: Format::Parquet };
/// The item side features of a source that has them (`ingest`).
pub const ITEMS_OUTPUT: OutputSpec = OutputSpec { name: "items", format: Format::Parquet };

pub const USER: &str = "user_id";
pub const ITEM: &str = "item_id";
pub const TIMESTAMP: &str = "timestamp";
pub const SEQ: &str = "seq";
pub const GENRE: &str = "genre";

/// A click log in memory, in source order.
#[derive(Debug, Default)]
pub struct ClickLog {
    pub users: Vec<String>,
    pub items: Vec<String>,
    pub timestamps: Vec<i64>,
}

impl ClickLog {
    pub fn push(&mut self, user: String, item: String, ts: i64) {
        self.users.push(user);
        self.items.push(item);
        self.timestamps.push(ts);
    }

    /// Writes the log with `seq` = source position; returns the row count.
    pub fn write(self, path: &Path) -> Result<u64, StageError> {
        write_clicks(
            path,
            Arc::new(StringArray::from(self.users)),
            Arc::new(StringArray::from(self.items)),
            self.timestamps,
        )
    }
}

/// Writes a click log of user and item id columns (int64 or utf8) in source order,
/// with `seq` = source position; returns the row count.
pub fn write_clicks(path: &Path, users: ArrayRef, items: ArrayRef, timestamps: Vec<i64>) -> Result<u64, StageError> {
    let n = timestamps.len() as i64;
    table::write(
        path,
        vec![
            (USER, users),
            (ITEM, items),
            (TIMESTAMP, Arc::new(Int64Array::from(timestamps))),
            (SEQ, Arc::new(Int64Array::from_iter_values(0..n))),
        ],
    )
}

/// Users and their categorical features, in a fixed column order.
#[derive(Debug)]
pub struct UserTable {
    pub ids: Vec<String>,
    pub features: Vec<(String, Vec<String>)>,
}

impl UserTable {
    pub fn write(self, path: &Path) -> Result<u64, StageError> {
        write_users(path, Arc::new(StringArray::from(self.ids)), self.features)
    }
}

/// Writes users (ids int64 or utf8, like the click log's) and their features.
pub fn write_users(path: &Path, ids: ArrayRef, features: Vec<(String, Vec<String>)>) -> Result<u64, StageError> {
    let features: Vec<(String, ArrayRef)> =
        features.into_iter().map(|(name, values)| (name, Arc::new(StringArray::from(values)) as ArrayRef)).collect();
    let mut columns: Vec<(&str, ArrayRef)> = vec![(USER, ids)];
    columns.extend(features.iter().map(|(name, values)| (name.as_str(), values.clone())));
    table::write(path, columns)
}

/// Items and their genres, one (item, genre) pair per row, in source order.
#[derive(Debug, Default)]
pub struct ItemGenres {
    pub items: Vec<String>,
    pub genres: Vec<String>,
}

impl ItemGenres {
    pub fn push(&mut self, item: &str, genre: &str) {
        self.items.push(item.to_string());
        self.genres.push(genre.to_string());
    }
}

/// Writes the items table with `item_id` of `id_type`, the click log's (so the two
/// join); returns the row count.
pub fn write_item_genres(path: &Path, genres: ItemGenres, id_type: &DataType) -> Result<u64, StageError> {
    let ids = cast(&StringArray::from(genres.items), id_type).map_err(crate::table::failed)?;
    table::write(path, vec![(ITEM, ids), (GENRE, Arc::new(StringArray::from(genres.genres)))])
}
