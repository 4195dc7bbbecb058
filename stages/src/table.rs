//! Reading and writing the Parquet tables stages exchange, with fixed writer
//! properties so the same rows always give the same bytes.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchReader};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};

use crate::StageError;

/// Rows per row group: big enough for fast scans, small enough to stream.
const ROW_GROUP: usize = 256 * 1024;

fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("zstd level 1 exists")))
        .set_max_row_group_row_count(Some(ROW_GROUP))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_created_by("dagrun".to_string())
        .set_dictionary_enabled(false)
        .build()
}

/// Streams record batches into one Parquet file.
pub struct TableWriter {
    writer: ArrowWriter<File>,
    rows: u64,
}

impl TableWriter {
    pub fn create(path: &Path, schema: SchemaRef) -> Result<TableWriter, StageError> {
        let file = File::create(path)?;
        let writer = ArrowWriter::try_new(file, schema, Some(properties())).map_err(failed)?;
        Ok(TableWriter { writer, rows: 0 })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), StageError> {
        self.rows += batch.num_rows() as u64;
        self.writer.write(batch).map_err(failed)
    }

    /// Finishes the file; returns the rows written.
    pub fn finish(self) -> Result<u64, StageError> {
        self.writer.close().map_err(failed)?;
        Ok(self.rows)
    }
}

/// Writes columns as one table; returns the row count.
pub fn write(path: &Path, columns: Vec<(&str, ArrayRef)>) -> Result<u64, StageError> {
    let batch = batch(columns)?;
    let mut w = TableWriter::create(path, batch.schema())?;
    w.write(&batch)?;
    w.finish()
}

/// Builds a record batch from named columns (nullability taken from the data).
pub fn batch(columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch, StageError> {
    let fields: Vec<Field> =
        columns.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), a.null_count() > 0)).collect();
    let schema = Arc::new(Schema::new(fields));
    RecordBatch::try_new(schema, columns.into_iter().map(|(_, a)| a).collect()).map_err(failed)
}

/// Reads a whole Parquet file into one batch.
pub fn read(path: &Path) -> Result<RecordBatch, StageError> {
    let file = File::open(path)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(failed)?
        .with_batch_size(ROW_GROUP)
        .build()
        .map_err(failed)?;
    let schema = reader.schema();
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().map_err(failed)?;
    concat_batches(&schema, &batches).map_err(failed)
}

/// A column of `batch` by name, downcast to the array type `A`.
pub fn column<'b, A: Array + 'static>(batch: &'b RecordBatch, name: &str, path: &Path) -> Result<&'b A, StageError> {
    batch.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<A>()).ok_or_else(|| {
        StageError::Failed(format!(
            "{}: column `{name}` is missing or of the wrong type (schema: {})",
            path.display(),
            batch.schema()
        ))
    })
}

pub fn failed(e: impl std::fmt::Display) -> StageError {
    StageError::Failed(e.to_string())
}
