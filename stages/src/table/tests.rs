//! Tests of the table module: bytes, row groups, encodings and statistics.

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
    let lists = ListArray::from_iter_primitive::<Int32Type, _, _>((0..100).map(|i| Some(vec![Some(i), Some(i + 1)])));
    write(&path, vec![("ts", Arc::new(Int64Array::from_iter_values(0..100)) as ArrayRef), ("hist", Arc::new(lists))])
        .unwrap();
    let meta = ArrowReaderMetadata::load(&File::open(&path).unwrap(), Default::default()).unwrap();
    let group = meta.metadata().row_group(0);
    assert!(group.column(0).encodings().any(|e| e == Encoding::DELTA_BINARY_PACKED));
    assert!(group.column(0).statistics().is_some());
    assert!(group.column(1).statistics().is_none());
}
