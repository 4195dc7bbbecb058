//! Reading and writing the Parquet tables stages exchange, with fixed writer
//! properties so the same rows always give the same bytes.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use datafusion::parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves,
};
use datafusion::parquet::arrow::{ArrowSchemaConverter, ArrowWriter, ProjectionMask};
use datafusion::parquet::basic::{Compression, Encoding, Type as PhysicalType, ZstdLevel};
use datafusion::parquet::column::writer::ColumnCloseResult;
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use datafusion::parquet::file::writer::SerializedFileWriter;
use datafusion::parquet::schema::types::ColumnDescriptor;
use rayon::prelude::*;

use crate::pages::ListChunkWriter;
use dagrun_kind::StageError;

/// Rows per row group: big enough for fast scans, small enough to stream.
pub const ROW_GROUP: usize = 256 * 1024;

fn properties(schema: &Schema) -> Result<WriterProperties, StageError> {
    let mut builder = WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("zstd level 1 exists")))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_created_by("dagrun".to_string())
        .set_dictionary_enabled(false);
    for leaf in ArrowSchemaConverter::new().convert(schema).map_err(failed)?.columns() {
        // No min/max for list items (histories): no query prunes on them, and computing
        // them is a tenth of the time it takes to write the examples.
        if leaf.max_rep_level() > 0 {
            builder = builder.set_column_statistics_enabled(leaf.path().clone(), EnabledStatistics::None);
        }
        if leaf.max_rep_level() == 0 {
            builder = match leaf.physical_type() {
                // Int64 columns are timestamps and row numbers, mostly in order: deltas
                // pack them into a few bits before ZSTD sees them (split's train file is
                // 20% smaller).
                PhysicalType::INT64 => builder.set_column_encoding(leaf.path().clone(), Encoding::DELTA_BINARY_PACKED),
                // Floats are features, scores and vectors: with each byte of the values in
                // its own stream ZSTD finds what repeats. BYTE_STREAM_SPLIT on floats is
                // read by every reader we test (tests/readers); on integers it needs a
                // reader from 2024 on (DuckDB 2.0, pyarrow 17), so int32 stays PLAIN.
                PhysicalType::FLOAT | PhysicalType::DOUBLE => {
                    builder.set_column_encoding(leaf.path().clone(), Encoding::BYTE_STREAM_SPLIT)
                }
                _ => builder,
            };
        }
    }
    Ok(builder.build())
}

/// Streams record batches into one Parquet file, encoding row groups in parallel.
///
/// With `write`, row groups are always `ROW_GROUP` rows (the last one fewer); with
/// `write_row_groups`, each iterator is one. Numbers and lists of numbers are paged by
/// their rows alone; strings and nullable columns go through parquet's Arrow writer,
/// whose pages break where batches do. So the bytes depend on the batches written,
/// never on the thread count or timing.
pub struct TableWriter {
    file: SerializedFileWriter<File>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// Rows not yet encoded, as slices of the batches written.
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    row_groups: usize,
    rows: u64,
}

impl TableWriter {
    pub fn create(path: &Path, schema: SchemaRef) -> Result<TableWriter, StageError> {
        let file = File::create(path)?;
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(properties(&schema)?)).map_err(failed)?;
        let (file, factory) = writer.into_serialized_writer().map_err(failed)?;
        if factory.create_column_writers(0).map_err(failed)?.len() != schema.fields().len() {
            return Err(StageError::Failed(format!("{}: struct columns cannot be written", path.display())));
        }
        Ok(TableWriter { file, factory, schema, pending: Vec::new(), pending_rows: 0, row_groups: 0, rows: 0 })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), StageError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows() as u64;
        self.pending_rows += batch.num_rows();
        self.pending.push(batch.clone());
        // Enough full row groups to keep every thread busy, but never more than eight
        // held back: they are the caller's memory until they are encoded.
        if self.pending_rows >= ROW_GROUP * rayon::current_num_threads().min(8) {
            self.flush(false)?;
        }
        Ok(())
    }

    /// Finishes the file; returns the rows written.
    pub fn finish(mut self) -> Result<u64, StageError> {
        self.flush(true)?;
        self.file.close().map_err(failed)?;
        Ok(self.rows)
    }

    /// Encodes the pending full row groups (with `all`, the short last one too) in
    /// parallel, one task per row group, and appends them in order.
    fn flush(&mut self, all: bool) -> Result<(), StageError> {
        let mut groups: Vec<Vec<RecordBatch>> = Vec::new();
        let mut current: Vec<RecordBatch> = Vec::new();
        let mut current_rows = 0;
        for batch in std::mem::take(&mut self.pending) {
            let mut offset = 0;
            while offset < batch.num_rows() {
                let take = (ROW_GROUP - current_rows).min(batch.num_rows() - offset);
                current.push(batch.slice(offset, take));
                current_rows += take;
                offset += take;
                if current_rows == ROW_GROUP {
                    groups.push(std::mem::take(&mut current));
                    current_rows = 0;
                }
            }
        }
        if all && current_rows > 0 {
            groups.push(std::mem::take(&mut current));
            current_rows = 0;
        }
        self.pending = current;
        self.pending_rows = current_rows;

        let base = self.row_groups;
        let encoded = groups
            .par_iter()
            .enumerate()
            .map(|(g, slices)| Ok(self.encode_stream(base + g, slices.iter().map(|s| Ok(s.clone())))?.1))
            .collect::<Result<Vec<_>, StageError>>()?;
        self.append(encoded)
    }

    /// Writes row groups made by parallel tasks (after the rows written so far): each
    /// group is the batches its iterator yields, and each batch goes to every column's
    /// encoder as soon as it is made, while it is still in cache. Only the encoded
    /// (compressed) row groups wait for their turn. Groups without rows are skipped.
    pub fn write_row_groups<G>(&mut self, groups: impl IndexedParallelIterator<Item = G>) -> Result<(), StageError>
    where
        G: Iterator<Item = Result<RecordBatch, StageError>>,
    {
        self.flush(true)?;
        let (this, base) = (&*self, self.row_groups);
        let encoded: Vec<(u64, Vec<ColumnChunk>)> =
            groups.enumerate().map(|(g, batches)| this.encode_stream(base + g, batches)).collect::<Result<_, _>>()?;
        let encoded: Vec<_> = encoded.into_iter().filter(|(rows, _)| *rows > 0).collect();
        self.rows += encoded.iter().map(|(rows, _)| rows).sum::<u64>();
        self.append(encoded.into_iter().map(|(_, chunks)| chunks).collect())
    }

    /// Encodes one row group from batches that arrive one after another; returns its
    /// rows and column chunks.
    fn encode_stream(
        &self,
        index: usize,
        batches: impl Iterator<Item = Result<RecordBatch, StageError>>,
    ) -> Result<(u64, Vec<ColumnChunk>), StageError> {
        let fields = self.schema.fields();
        let (props, parquet) = (self.file.properties(), self.file.schema_descr());
        let arrow = self.factory.create_column_writers(index).map_err(failed)?;
        let mut writers: Vec<Writer> = arrow
            .into_iter()
            .enumerate()
            .map(|(c, arrow)| {
                let descr = parquet.column(c);
                Ok(match route(&descr, fields[c].data_type()) {
                    Route::Arrow => Writer::Arrow(Box::new(arrow)),
                    Route::Lists => Writer::Lists(ListChunkWriter::new(descr, props)?),
                })
            })
            .collect::<Result<_, ParquetError>>()
            .map_err(failed)?;
        let mut rows = 0;
        for batch in batches {
            let batch = batch?;
            rows += batch.num_rows() as u64;
            for (c, writer) in writers.iter_mut().enumerate() {
                match writer {
                    Writer::Lists(writer) => match batch.column(c).as_list_opt() {
                        Some(lists) => writer.write(lists),
                        None => Err(ParquetError::General(format!("column {c} is not a list"))),
                    },
                    Writer::Arrow(arrow) => compute_leaves(&fields[c], batch.column(c))
                        .and_then(|leaves| leaves.iter().try_for_each(|leaf| arrow.write(leaf))),
                }
                .map_err(failed)?;
            }
        }
        let chunks = writers
            .into_iter()
            .map(|w| match w {
                Writer::Arrow(arrow) => arrow.close().map(ColumnChunk::Arrow),
                Writer::Lists(writer) => writer.close().map(|(bytes, close)| ColumnChunk::Encoded(bytes, close)),
            })
            .collect::<Result<_, _>>()
            .map_err(failed)?;
        Ok((rows, chunks))
    }

    /// Appends encoded row groups to the file, in order.
    fn append(&mut self, groups: Vec<Vec<ColumnChunk>>) -> Result<(), StageError> {
        for chunks in groups {
            let mut row_group = self.file.next_row_group().map_err(failed)?;
            for chunk in chunks {
                match chunk {
                    ColumnChunk::Arrow(chunk) => chunk.append_to_row_group(&mut row_group),
                    ColumnChunk::Encoded(bytes, close) => row_group.append_column(&bytes, close),
                }
                .map_err(failed)?;
            }
            row_group.close().map_err(failed)?;
            self.row_groups += 1;
        }
        Ok(())
    }
}

/// One encoded column chunk of a row group.
enum ColumnChunk {
    Arrow(ArrowColumnChunk),
    Encoded(Bytes, ColumnCloseResult),
}

/// How a column of a row group is encoded.
enum Writer {
    Arrow(Box<ArrowColumnWriter>),
    Lists(ListChunkWriter),
}

#[derive(Debug, PartialEq)]
enum Route {
    /// parquet's Arrow writer: numbers, strings, nullable columns, nested types.
    Arrow,
    /// `ListChunkWriter`: required lists of required numbers as wide as their
    /// physical type (sample's histories).
    Lists,
}

/// Which writer encodes a column: lists of numbers go to `ListChunkWriter` (parquet's
/// Arrow writer handles each list item's levels on its own), everything else to
/// parquet's Arrow writer.
fn route(descr: &ColumnDescriptor, data_type: &DataType) -> Route {
    let numeric = |leaf: &DataType| {
        matches!(
            (descr.physical_type(), leaf),
            (PhysicalType::INT32, DataType::Int8 | DataType::Int32)
                | (PhysicalType::INT64, DataType::Int64)
                | (PhysicalType::FLOAT, DataType::Float32)
                | (PhysicalType::DOUBLE, DataType::Float64)
        )
    };
    match data_type {
        // Required only: a list's one definition level says "has items", its one
        // repetition level "continues the row".
        DataType::List(item)
            if numeric(item.data_type())
                && item.data_type() != &DataType::Int8
                && descr.max_def_level() == 1
                && descr.max_rep_level() == 1 =>
        {
            Route::Lists
        }
        _ => Route::Arrow,
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

/// Reads a whole Parquet file into one batch, decoding its row groups in parallel.
pub fn read(path: &Path) -> Result<RecordBatch, StageError> {
    let (schema, batches) = read_batches(path, |_| true)?;
    concat_batches(&schema, &batches).map_err(failed)
}

/// The schema of a Parquet file, every column of it.
pub fn schema(path: &Path) -> Result<SchemaRef, StageError> {
    Ok(metadata(path)?.schema().clone())
}

fn metadata(path: &Path) -> Result<ArrowReaderMetadata, StageError> {
    ArrowReaderMetadata::load(&File::open(path)?, Default::default()).map_err(failed)
}

/// Reads the kept columns (those the file has: `column` reports a missing one) as one
/// batch per row group, in order, decoding row groups in parallel; the data stages
/// work row group by row group and skip `read`'s concatenation.
pub fn read_batches(path: &Path, keep: impl Fn(&str) -> bool) -> Result<(SchemaRef, Vec<RecordBatch>), StageError> {
    let metadata = metadata(path)?;
    let roots: Vec<usize> =
        (0..metadata.schema().fields().len()).filter(|&i| keep(metadata.schema().field(i).name())).collect();
    let schema = Arc::new(metadata.schema().project(&roots).map_err(failed)?);
    let mask = ProjectionMask::roots(metadata.parquet_schema(), roots);
    let groups = metadata.metadata().num_row_groups();
    // Each task opens its own handle: clones of one would share the file offset.
    let parts: Vec<Vec<RecordBatch>> = (0..groups)
        .into_par_iter()
        .map(|g| {
            let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(File::open(path)?, metadata.clone())
                .with_row_groups(vec![g])
                .with_projection(mask.clone())
                .with_batch_size(ROW_GROUP)
                .build()
                .map_err(failed)?;
            reader.collect::<Result<Vec<_>, _>>().map_err(failed)
        })
        .collect::<Result<_, StageError>>()?;
    Ok((schema, parts.into_iter().flatten().collect()))
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

#[cfg(test)]
mod tests;
