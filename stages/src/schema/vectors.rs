//! The vector tables `export` and `ensemble` write: one row per test user (`users`:
//! raw id, index, target item, vector) or per item (`items`: raw id, index, vector),
//! vectors L2-normalised as a fixed-size list of float32; and their reader.

use std::path::Path;
use std::sync::Arc;

use dagrun_kind::StageError;
use datafusion::arrow::array::{Array, FixedSizeListArray, Float32Array, Int32Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field};

use crate::schema::encoded::{ITEM_IDX, USER_IDX};
use crate::table::{self, failed};

/// The vector column of both tables.
pub const EMBEDDING: &str = "embedding";

/// A fixed-size-list column of `dim` float32s per row.
pub fn embedding_column(values: Vec<f32>, dim: usize) -> Result<FixedSizeListArray, StageError> {
    let field = Arc::new(Field::new("item", DataType::Float32, false));
    FixedSizeListArray::try_new(field, dim as i32, Arc::new(Float32Array::from(values)), None).map_err(failed)
}

/// Vectors of an export table: (ids, raw ids, row-major vectors, dim, extra int column).
pub struct Vectors {
    pub idx: Vec<i32>,
    pub raw: Vec<String>,
    pub data: Vec<f32>,
    pub dim: usize,
}

/// Reads an export table keyed by `id`, with raw ids in `raw`; a users table also
/// gives each user's target item. Every vector must be unit-length (or zero, for a
/// user with nothing to go on), since readers rank by inner product.
pub fn read_vectors(path: &Path, id: &str, raw: &str) -> Result<(Vectors, Option<Vec<i32>>), StageError> {
    let b = table::read(path)?;
    let idx = table::column::<Int32Array>(&b, id, path)?.values().to_vec();
    let raw_col = table::column::<StringArray>(&b, raw, path)?;
    let raw = (0..raw_col.len()).map(|i| raw_col.value(i).to_string()).collect();
    let emb = table::column::<FixedSizeListArray>(&b, EMBEDDING, path)?;
    let dim = emb.value_length() as usize;
    let values = emb
        .values()
        .as_any()
        .downcast_ref::<Float32Array>()
        .ok_or_else(|| StageError::Failed(format!("{}: `embedding` must hold float32", path.display())))?;
    let data = values.values()[..idx.len() * dim].to_vec();
    check_unit_length(path, &data, dim)?;
    let target =
        if id == USER_IDX { Some(table::column::<Int32Array>(&b, ITEM_IDX, path)?.values().to_vec()) } else { None };
    Ok((Vectors { idx, raw, data, dim }, target))
}

/// The first row whose vector is neither unit-length nor zero fails, naming the row.
fn check_unit_length(path: &Path, data: &[f32], dim: usize) -> Result<(), StageError> {
    let off = data.chunks(dim.max(1)).map(|v| v.iter().map(|x| x * x).sum::<f32>()).position(|sq| {
        let unit = (sq - 1.0).abs() <= 1e-3;
        !(unit || sq == 0.0)
    });
    match off {
        None => Ok(()),
        Some(row) => Err(StageError::bad_value(
            path,
            EMBEDDING,
            row,
            "the vector is not L2-normalised (nor zero); point this input at `export`'s output, \
             or divide each vector by its norm",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_must_be_unit_length_or_zero() {
        let p = Path::new("users.parquet");
        assert!(check_unit_length(p, &[0.6, 0.8, 0.0, 0.0, 1.0, 0.0], 2).is_ok());
        let e = check_unit_length(p, &[1.0, 0.0, 0.5, 0.5, 0.0, 1.0], 2).unwrap_err().to_string();
        assert!(e.starts_with("users.parquet: column `embedding`, row 1: the vector is not L2-normalised"), "{e}");
        let e = check_unit_length(p, &[f32::NAN, 0.0], 2).unwrap_err().to_string();
        assert!(e.contains("row 0"), "{e}");
    }
}
