//! The example tables `sample` writes (`train`, `test`): one row per (user, target)
//! with the history before it, newest first, and the example's age; and their reader.

use std::path::Path;

use dagrun_kind::StageError;
use datafusion::arrow::array::{Array, Float32Array, Int8Array, Int32Array, ListArray};

use crate::schema::encoded::{ITEM_IDX, USER_IDX, check_indices};
use crate::table;

/// Column names of the example tables.
pub const LABEL: &str = "label";
pub const HIST: &str = "hist";
pub const HIST_LEN: &str = "hist_len";
pub const EXAMPLE_AGE: &str = "example_age";

/// Examples column-wise: user, target item, history (CSR), example age.
pub struct Examples {
    pub user: Vec<i32>,
    pub item: Vec<i32>,
    pub hist_offsets: Vec<usize>,
    pub hist: Vec<i32>,
    pub age: Vec<f32>,
}

impl Examples {
    /// Reads a `sample` table whose item indices lie in `0..items` (the item table's
    /// rows); with `positives_only`, rows with label 0 are left out.
    pub fn read(path: &Path, positives_only: bool, items: usize) -> Result<Examples, StageError> {
        let b = table::read(path)?;
        let user = table::column::<Int32Array>(&b, USER_IDX, path)?;
        let item = table::column::<Int32Array>(&b, ITEM_IDX, path)?;
        let label = table::column::<Int8Array>(&b, LABEL, path)?;
        let age = table::column::<Float32Array>(&b, EXAMPLE_AGE, path)?;
        let hist = table::column::<ListArray>(&b, HIST, path)?;
        let values =
            hist.values().as_any().downcast_ref::<Int32Array>().ok_or_else(|| {
                StageError::Failed(format!("{}: column `hist` must be a list of int32", path.display()))
            })?;
        check_indices(path, ITEM_IDX, item.values(), items)?;
        check_indices(path, HIST, values.values(), items)?;
        let offsets = hist.value_offsets();
        let mut ex = Examples { user: vec![], item: vec![], hist_offsets: vec![0], hist: vec![], age: vec![] };
        for r in 0..b.num_rows() {
            if positives_only && label.value(r) != 1 {
                continue;
            }
            ex.user.push(user.value(r));
            ex.item.push(item.value(r));
            ex.age.push(age.value(r));
            let (s, e) = (offsets[r] as usize, offsets[r + 1] as usize);
            ex.hist.extend(values.values()[s..e].iter().filter(|&&h| h != 0));
            ex.hist_offsets.push(ex.hist.len());
        }
        Ok(ex)
    }

    pub fn len(&self) -> usize {
        self.user.len()
    }

    pub fn is_empty(&self) -> bool {
        self.user.is_empty()
    }

    pub fn hist_of(&self, i: usize) -> &[i32] {
        &self.hist[self.hist_offsets[i]..self.hist_offsets[i + 1]]
    }
}
