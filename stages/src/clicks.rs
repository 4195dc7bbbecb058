//! The click-log tables that `synth` and `ingest` write and `split_last_click` reads.
//!
//! `clicks`: `user_id` (utf8), `item_id` (utf8), `timestamp` (int64, seconds),
//! `seq` (int64, position in the source log: the tie-breaker for equal timestamps).
//! `users`: `user_id` (utf8) and one utf8 column per categorical user feature.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};

use crate::table;
use crate::{Format, OutputSpec, StageError};

/// The outputs of every click-log source (`synth`, `ingest`).
pub const CLICKS_OUTPUT: OutputSpec = OutputSpec { name: "clicks", format: Format::Parquet };
pub const USERS_OUTPUT: OutputSpec = OutputSpec { name: "users", format: Format::Parquet };

pub const USER: &str = "user_id";
pub const ITEM: &str = "item_id";
pub const TIMESTAMP: &str = "timestamp";
pub const SEQ: &str = "seq";

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
        let n = self.users.len() as i64;
        table::write(
            path,
            vec![
                (USER, Arc::new(StringArray::from(self.users)) as ArrayRef),
                (ITEM, Arc::new(StringArray::from(self.items))),
                (TIMESTAMP, Arc::new(Int64Array::from(self.timestamps))),
                (SEQ, Arc::new(Int64Array::from_iter_values(0..n))),
            ],
        )
    }
}

/// Users and their categorical features, in a fixed column order.
#[derive(Debug)]
pub struct UserTable {
    pub ids: Vec<String>,
    pub features: Vec<(String, Vec<String>)>,
}

impl UserTable {
    pub fn write(self, path: &Path) -> Result<u64, StageError> {
        let mut columns: Vec<(&str, ArrayRef)> = vec![(USER, Arc::new(StringArray::from(self.ids)))];
        for (name, values) in &self.features {
            columns.push((name.as_str(), Arc::new(StringArray::from(values.clone()))));
        }
        table::write(path, columns)
    }
}
