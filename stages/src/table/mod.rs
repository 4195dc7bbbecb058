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
    let metadata = ArrowReaderMetadata::load(&File::open(path)?, Default::default()).map_err(failed)?;
    Ok(metadata.schema().clone())
}

/// Reads the kept columns (those the file has: `column` reports a missing one) as one
/// batch per row group, in order, decoding row groups in parallel; the data stages
/// work row group by row group and skip `read`'s concatenation.
pub fn read_batches(path: &Path, keep: impl Fn(&str) -> bool) -> Result<(SchemaRef, Vec<RecordBatch>), StageError> {
    let metadata = ArrowReaderMetadata::load(&File::open(path)?, Default::default()).map_err(failed)?;
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
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, ListArray, StringArray};
    use datafusion::arrow::buffer::OffsetBuffer;
    use datafusion::arrow::datatypes::Int32Type;
    use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
    use datafusion::parquet::file::metadata::PageIndexPolicy;

    fn rows(n: i32) -> RecordBatch {
        batch(vec![
            ("id", Arc::new(Int32Array::from_iter_values(0..n)) as ArrayRef),
            ("name", Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("v{}", i % 977))))),
        ])
        .unwrap()
    }

    /// Writes `all` in batches of the given sizes (cycled) with `threads` encoding threads.
    fn write_in(path: &Path, all: &RecordBatch, sizes: &[usize], threads: usize) -> Vec<u8> {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut w = TableWriter::create(path, all.schema()).unwrap();
            let mut at = 0;
            for size in sizes.iter().cycle() {
                let size = (*size).min(all.num_rows() - at);
                w.write(&all.slice(at, size)).unwrap();
                at += size;
                if at == all.num_rows() {
                    break;
                }
            }
            assert_eq!(w.finish().unwrap(), all.num_rows() as u64);
        });
        std::fs::read(path).unwrap()
    }

    #[test]
    fn bytes_do_not_depend_on_the_thread_count() {
        let d = tempfile::tempdir().unwrap();
        let all = rows(ROW_GROUP as i32 * 5 + 1000);
        let path = d.path().join("t.parquet");
        let sizes = [1, 70_000, 0, 300_000];
        let one = write_in(&path, &all, &sizes, 1);
        assert_eq!(write_in(&path, &all, &sizes, 2), one);
        assert_eq!(write_in(&path, &all, &sizes, 3), one);

        let meta = ArrowReaderMetadata::load(&File::open(&path).unwrap(), Default::default()).unwrap();
        let sizes: Vec<i64> = meta.metadata().row_groups().iter().map(|g| g.num_rows()).collect();
        assert_eq!(sizes, [[ROW_GROUP as i64; 5].as_slice(), &[1000]].concat());
        assert_eq!(read(&path).unwrap(), all, "row groups read back in order");
        let (_, groups) = read_batches(&path, |c| ["name", "absent"].contains(&c)).unwrap();
        assert_eq!(groups.len(), 6, "a batch per row group");
        let names = concat_batches(&groups[0].schema(), &groups).unwrap();
        assert_eq!(names, all.project(&[1]).unwrap(), "kept columns only");
    }

    #[test]
    fn row_groups_made_in_parallel_come_back_in_order() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("t.parquet");
        let all = rows(10_000);
        let cuts = [(0, 10), (10, 0), (10, 4000), (4010, 5990)];
        let write = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut w = TableWriter::create(&path, all.schema()).unwrap();
                // A group of one batch, an empty one, and groups cut into several batches.
                let all = &all;
                let groups = cuts.par_iter().map(move |&(at, n)| {
                    (at..at + n).step_by(1500).map(move |from| Ok(all.slice(from, 1500.min(at + n - from))))
                });
                w.write_row_groups(groups).unwrap();
                assert_eq!(w.finish().unwrap(), 10_000);
            });
            std::fs::read(&path).unwrap()
        };
        let one = write(1);
        assert_eq!(write(3), one, "bytes do not depend on the thread count");
        let meta = ArrowReaderMetadata::load(&File::open(&path).unwrap(), Default::default()).unwrap();
        let sizes: Vec<i64> = meta.metadata().row_groups().iter().map(|g| g.num_rows()).collect();
        assert_eq!(sizes, [10, 4000, 5990], "one row group per batch, empty ones skipped");
        assert_eq!(read(&path).unwrap(), all);
    }

    #[test]
    fn an_empty_table_has_its_schema() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("empty.parquet");
        let schema = rows(0).schema();
        assert_eq!(TableWriter::create(&path, schema.clone()).unwrap().finish().unwrap(), 0);
        let back = read(&path).unwrap();
        assert_eq!((back.num_rows(), back.schema()), (0, schema));
    }

    #[test]
    fn every_column_type_round_trips_with_or_without_nulls() {
        use datafusion::arrow::array::{Float32Array, Float64Array, Int8Array, Int64Array};
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("t.parquet");
        let n = ROW_GROUP as i32 + 10;
        // Empty lists, lists spanning the batch cut below, and a list with a null item
        // (which the direct encoder leaves to parquet's Arrow writer).
        let lists = |null_item: bool| {
            let mut offsets = vec![0];
            let mut items = Vec::new();
            for i in 0..n {
                for k in 0..i % 7 {
                    items.push((!(null_item && i == 5 && k == 1)).then_some(i * 10 + k));
                }
                offsets.push(items.len() as i32);
            }
            let field = Arc::new(Field::new("item", DataType::Int32, null_item));
            let items = Arc::new(Int32Array::from(items));
            ListArray::try_new(field, OffsetBuffer::new(offsets.into()), items, None).unwrap()
        };
        let cast = |to: DataType| {
            let lists = lists(false);
            let (_, offsets, items, _) = lists.into_parts();
            let items = datafusion::arrow::compute::cast(&items, &to).unwrap();
            Arc::new(ListArray::new(Arc::new(Field::new("item", to, false)), offsets, items, None)) as ArrayRef
        };
        let all = batch(vec![
            ("i8", Arc::new(Int8Array::from_iter_values((0..n).map(|i| (i % 200 - 100) as i8))) as ArrayRef),
            ("i32", Arc::new(Int32Array::from_iter_values((0..n).map(|i| i.wrapping_mul(7919))))),
            ("i64", Arc::new(Int64Array::from_iter_values((0..n as i64).map(|i| i << 33)))),
            ("f32", Arc::new(Float32Array::from_iter_values((0..n).map(|i| i as f32 / 3.0)))),
            ("f64", Arc::new(Float64Array::from_iter_values((0..n).map(|i| -(i as f64) / 7.0)))),
            ("nullable", Arc::new(Int32Array::from_iter((0..n).map(|i| (i % 3 != 0).then_some(i)))) as ArrayRef),
            ("hist", Arc::new(lists(false))),
            ("hist_i64", cast(DataType::Int64)),
            ("hist_f64", cast(DataType::Float64)),
            ("hist_with_null", Arc::new(lists(true))),
        ])
        .unwrap();
        write_in(&path, &all, &[1000, 70_001], 2);
        assert_eq!(read(&path).unwrap(), all);

        let parquet = ArrowSchemaConverter::new().convert(&all.schema()).unwrap();
        let routes: Vec<Route> =
            all.schema().fields().iter().enumerate().map(|(c, f)| route(&parquet.column(c), f.data_type())).collect();
        use Route::*;
        assert_eq!(
            routes,
            [Arrow, Arrow, Arrow, Arrow, Arrow, Arrow, Lists, Lists, Lists, Arrow],
            "nulls go to the Arrow writer"
        );
    }

    #[test]
    fn number_statistics_leave_out_nan_and_sign_zeros() {
        use datafusion::arrow::array::{Float32Array, Float64Array, Int8Array, Int64Array};
        use datafusion::parquet::file::statistics::Statistics;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("t.parquet");
        let nan = f32::NAN;
        let all = batch(vec![
            ("f32", Arc::new(Float32Array::from(vec![0.0, nan, 2.5, -1.0, nan])) as ArrayRef),
            ("zeros", Arc::new(Float64Array::from(vec![0.0, f64::NAN, -0.0, 0.0, 0.0]))),
            ("nans", Arc::new(Float32Array::from(vec![nan; 5]))),
            ("i8", Arc::new(Int8Array::from(vec![3, -7, 0, 5, 1]))),
            ("i64", Arc::new(Int64Array::from(vec![i64::MAX, 0, i64::MIN, 1, 2]))),
        ])
        .unwrap();
        // Two batches: the minimum and maximum span both.
        write_in(&path, &all, &[2, 3], 1);
        assert_eq!(read(&path).unwrap().num_rows(), 5);
        let meta = ArrowReaderMetadata::load(&File::open(&path).unwrap(), Default::default()).unwrap();
        let group = meta.metadata().row_group(0);
        let float = |c: usize| match group.column(c).statistics() {
            Some(Statistics::Float(s)) => (s.min_opt().copied(), s.max_opt().copied()),
            other => panic!("{other:?}"),
        };
        assert_eq!(float(0), (Some(-1.0), Some(2.5)));
        match group.column(1).statistics() {
            Some(Statistics::Double(s)) => {
                assert!(s.min_opt().unwrap().is_sign_negative() && *s.min_opt().unwrap() == 0.0);
                assert!(s.max_opt().unwrap().is_sign_positive() && *s.max_opt().unwrap() == 0.0);
            }
            other => panic!("{other:?}"),
        }
        match group.column(2).statistics() {
            None => {}
            Some(Statistics::Float(s)) => {
                assert_eq!((s.min_opt(), s.max_opt()), (None, None), "only NaN: no min or max")
            }
            other => panic!("{other:?}"),
        }
        match group.column(3).statistics() {
            Some(Statistics::Int32(s)) => assert_eq!((s.min_opt(), s.max_opt()), (Some(&-7), Some(&5))),
            other => panic!("{other:?}"),
        }
        match group.column(4).statistics() {
            Some(Statistics::Int64(s)) => {
                assert_eq!((s.min_opt(), s.max_opt()), (Some(&i64::MIN), Some(&i64::MAX)));
                assert_eq!(s.null_count_opt(), Some(0));
            }
            other => panic!("{other:?}"),
        }
        let encodings: Vec<Vec<Encoding>> = (0..5).map(|c| group.column(c).encodings().collect()).collect();
        assert!(encodings[..3].iter().all(|e| e.contains(&Encoding::BYTE_STREAM_SPLIT)), "{encodings:?}");
        // Readers before 2024 read BYTE_STREAM_SPLIT on floats only.
        assert!(!encodings[3].contains(&Encoding::BYTE_STREAM_SPLIT), "{encodings:?}");
        assert!(encodings[4].contains(&Encoding::DELTA_BINARY_PACKED));
    }

    #[test]
    fn list_pages_depend_on_the_rows_not_the_batches() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("t.parquet");
        // 3M items: pages end on the size limit and, for the short lists, on the row limit.
        let lengths: Vec<i32> = (0..200_000).map(|i| if i < 100_000 { i % 3 } else { i % 50 }).collect();
        let mut offsets = vec![0];
        for len in &lengths {
            offsets.push(offsets.last().unwrap() + len);
        }
        let items = Int32Array::from_iter_values(0..*offsets.last().unwrap());
        let field = Arc::new(Field::new("item", DataType::Int32, false));
        let lists = ListArray::try_new(field, OffsetBuffer::new(offsets.into()), Arc::new(items), None).unwrap();
        let all = batch(vec![("hist", Arc::new(lists) as ArrayRef)]).unwrap();
        let one = write_in(&path, &all, &[200_000], 1);
        assert_eq!(write_in(&path, &all, &[1, 4096, 70_001, 3], 2), one);
        assert_eq!(read(&path).unwrap(), all);
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
        let meta = ArrowReaderMetadata::load(&File::open(&path).unwrap(), options).unwrap();
        // One level per item, and one per empty list.
        let levels: i64 = lengths.iter().map(|&len| len.max(1) as i64).sum();
        assert_eq!(meta.metadata().row_group(0).column(0).num_values(), levels);
        let pages = &meta.metadata().offset_index().unwrap()[0][0].page_locations;
        assert!(pages.len() > 10, "{} pages", pages.len());
        assert!(pages.windows(2).all(|p| p[0].first_row_index < p[1].first_row_index));
        assert!(pages.windows(2).all(|p| p[0].offset + p[0].compressed_page_size as i64 == p[1].offset));
    }

    #[test]
    fn int64_columns_are_delta_encoded_and_list_items_have_no_statistics() {
        use datafusion::arrow::array::{Int64Array, ListArray};
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("t.parquet");
        let lists =
            ListArray::from_iter_primitive::<Int32Type, _, _>((0..100).map(|i| Some(vec![Some(i), Some(i + 1)])));
        write(
            &path,
            vec![("ts", Arc::new(Int64Array::from_iter_values(0..100)) as ArrayRef), ("hist", Arc::new(lists))],
        )
        .unwrap();
        let meta = ArrowReaderMetadata::load(&File::open(&path).unwrap(), Default::default()).unwrap();
        let group = meta.metadata().row_group(0);
        assert!(group.column(0).encodings().any(|e| e == Encoding::DELTA_BINARY_PACKED));
        assert!(group.column(0).statistics().is_some());
        assert!(group.column(1).statistics().is_none());
    }
}
