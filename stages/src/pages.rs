//! Column chunks of required lists of numbers (sample's histories), encoded as PLAIN
//! pages without parquet's column writer.
//!
//! parquet's column writer handles every value on its own: its levels and its
//! encoder's buffer. For the histories of `sample` (128M values at 5M clicks) that
//! was most of the time it took to write them (sample 1.0–1.2 s → 0.7–0.8 s). Here a
//! list row's levels are two RLE runs whatever its length, and values are copied
//! once from the Arrow buffers. Pages end at row boundaries where a row reaches the
//! row or size limit, so a chunk's bytes depend on its rows alone, not on how they
//! were batched. PLAIN pages with RLE levels are what every Parquet reader reads.

use std::ops::Range;

use datafusion::arrow::array::{Array, ListArray};
use datafusion::arrow::buffer::Buffer;
use datafusion::parquet::basic::{Compression, Encoding, EncodingMask, PageType, Type as PhysicalType, ZstdLevel};
use datafusion::parquet::column::page::{CompressedPage, Page, PageWriter};
use datafusion::parquet::column::writer::ColumnCloseResult;
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::{ColumnChunkMetaData, OffsetIndexBuilder, PageEncodingStats};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::file::statistics::Statistics;
use datafusion::parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use datafusion::parquet::schema::types::ColumnDescPtr;

/// The pages of one column chunk as they are written, and what its metadata needs.
struct PageSink {
    descr: ColumnDescPtr,
    level: ZstdLevel,
    compressor: zstd::bulk::Compressor<'static>,
    encoding: Encoding,
    sink: TrackedWrite<Vec<u8>>,
    offsets: OffsetIndexBuilder,
    size_limit: usize,
    row_limit: usize,
    pages: i32,
    rows: u64,
    values: u64,
    compressed: u64,
    uncompressed: u64,
    /// The uncompressed and compressed page, reused.
    raw: Vec<u8>,
    packed: Vec<u8>,
}

impl PageSink {
    fn new(descr: ColumnDescPtr, props: &WriterProperties, encoding: Encoding) -> Result<PageSink, ParquetError> {
        let Compression::ZSTD(level) = props.compression(descr.path()) else {
            return Err(ParquetError::General(format!("{}: only ZSTD pages are written here", descr.path())));
        };
        let compressor = zstd::bulk::Compressor::new(level.compression_level()).map_err(external)?;
        Ok(PageSink {
            size_limit: props.column_data_page_size_limit(descr.path()),
            row_limit: props.data_page_row_count_limit(),
            descr,
            level,
            compressor,
            encoding,
            sink: TrackedWrite::new(Vec::new()),
            offsets: OffsetIndexBuilder::new(),
            pages: 0,
            rows: 0,
            values: 0,
            compressed: 0,
            uncompressed: 0,
            raw: Vec::new(),
            packed: Vec::new(),
        })
    }

    /// Compresses `self.raw` and writes it as a data page of `rows` rows and `values`
    /// level entries (values, for a flat column).
    fn write_page(&mut self, rows: u32, values: u32) -> Result<(), ParquetError> {
        // Into a buffer kept from page to page, then copied out at its compressed size:
        // a fresh buffer of the worst-case size per page cost a mapping and page faults.
        self.packed.clear();
        self.packed.reserve(zstd::zstd_safe::compress_bound(self.raw.len()));
        self.compressor.compress_to_buffer(&self.raw, &mut self.packed).map_err(external)?;
        let page = Page::DataPage {
            buf: bytes::Bytes::copy_from_slice(&self.packed),
            num_values: values,
            encoding: self.encoding,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let spec = SerializedPageWriter::new(&mut self.sink).write_page(CompressedPage::new(page, self.raw.len()))?;
        self.offsets.append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
        self.offsets.append_row_count(rows.into());
        self.pages += 1;
        self.rows += u64::from(rows);
        self.values += u64::from(values);
        self.compressed += spec.compressed_size as u64;
        self.uncompressed += spec.uncompressed_size as u64;
        Ok(())
    }

    fn close(self, statistics: Option<Statistics>) -> Result<(bytes::Bytes, ColumnCloseResult), ParquetError> {
        // Levels are RLE, for required columns too (as the page headers say).
        let encodings = [self.encoding, Encoding::RLE];
        let mut metadata = ColumnChunkMetaData::builder(self.descr.clone())
            .set_compression(Compression::ZSTD(self.level))
            .set_encodings_mask(EncodingMask::new_from_encodings(encodings.iter()))
            .set_page_encoding_stats(vec![PageEncodingStats {
                page_type: PageType::DATA_PAGE,
                encoding: self.encoding,
                count: self.pages,
            }])
            .set_total_compressed_size(self.compressed as i64)
            .set_total_uncompressed_size(self.uncompressed as i64)
            .set_num_values(self.values as i64)
            .set_data_page_offset(0);
        if let Some(statistics) = statistics {
            metadata = metadata.set_statistics(statistics);
        }
        let metadata = metadata.build()?;
        let bytes = self.sink.into_inner()?;
        let close = ColumnCloseResult {
            bytes_written: bytes.len() as u64,
            rows_written: self.rows,
            metadata,
            bloom_filter: None,
            column_index: None,
            offset_index: Some(self.offsets.build()),
        };
        Ok((bytes.into(), close))
    }
}

fn external(e: std::io::Error) -> ParquetError {
    ParquetError::External(e.into())
}

/// Bytes of a value: four for INT32 and FLOAT, eight for INT64 and DOUBLE, the only
/// physical types `table` routes here.
fn width(descr: &ColumnDescPtr) -> usize {
    match descr.physical_type() {
        PhysicalType::INT64 | PhysicalType::DOUBLE => 8,
        _ => 4,
    }
}

/// Writes one column chunk of a required list of required numbers as PLAIN pages.
pub struct ListChunkWriter {
    chunk: PageSink,
    page: ListPage,
}

/// The list page being filled.
#[derive(Default)]
struct ListPage {
    rep: Runs,
    def: Runs,
    /// The page's values: byte ranges of the Arrow buffers written, copied once, when
    /// the page is compressed.
    values: Vec<(Buffer, Range<usize>)>,
    value_bytes: usize,
    /// Level entries: one per value, one per empty list.
    levels: u32,
    rows: u32,
}

impl ListPage {
    fn add(&mut self, buffer: &Buffer, range: Range<usize>) {
        if !range.is_empty() {
            self.value_bytes += range.len();
            self.values.push((buffer.clone(), range));
        }
    }
}

/// Levels of bit width 1 as runs of the RLE/bit-packing hybrid encoding.
#[derive(Default)]
struct Runs {
    bytes: Vec<u8>,
    value: u8,
    count: u64,
}

impl Runs {
    fn push(&mut self, value: u8, count: u64) {
        if count == 0 {
            return;
        }
        if value != self.value && self.count > 0 {
            self.flush();
        }
        self.value = value;
        self.count += count;
    }

    fn flush(&mut self) {
        // An RLE run: its length shifted left once (low bit 0: not bit-packed) as a
        // ULEB128 varint, then the value in one byte.
        let mut header = self.count << 1;
        while header >= 0x80 {
            self.bytes.push(header as u8 | 0x80);
            header >>= 7;
        }
        self.bytes.push(header as u8);
        self.bytes.push(self.value);
        self.count = 0;
    }

    /// Appends the runs as a data page v1 level block (byte length, then the runs).
    fn take_into(&mut self, out: &mut Vec<u8>) {
        if self.count > 0 {
            self.flush();
        }
        out.extend_from_slice(&(self.bytes.len() as u32).to_le_bytes());
        out.append(&mut self.bytes);
    }

    /// Bytes the runs will take, about: the length prefix and the open run included.
    fn len(&self) -> usize {
        self.bytes.len() + 6
    }
}

impl ListChunkWriter {
    pub fn new(descr: ColumnDescPtr, props: &WriterProperties) -> Result<Self, ParquetError> {
        Ok(ListChunkWriter { chunk: PageSink::new(descr, props, Encoding::PLAIN)?, page: ListPage::default() })
    }

    /// Appends the rows of `lists`, whose items must be non-null numbers of the
    /// column's physical width.
    pub fn write(&mut self, lists: &ListArray) -> Result<(), ParquetError> {
        if lists.null_count() > 0 || lists.values().null_count() > 0 {
            return Err(ParquetError::General("nulls in a column declared non-nullable".into()));
        }
        let data = lists.values().to_data();
        let width = data
            .data_type()
            .primitive_width()
            .filter(|&w| w == width(&self.chunk.descr))
            .ok_or_else(|| ParquetError::General(format!("no list encoding for {} items", data.data_type())))?;
        let buffer = &data.buffers()[0];
        let byte = |item: i32| (data.offset() + item as usize) * width;
        let offsets = lists.value_offsets();
        // The current page's values in this array start at this item.
        let mut from = offsets[0];
        for w in offsets.windows(2) {
            let len = (w[1] - w[0]) as u64;
            let page = &mut self.page;
            page.rep.push(0, 1);
            if len == 0 {
                page.def.push(0, 1);
                page.levels += 1;
            } else {
                page.rep.push(1, len - 1);
                page.def.push(1, len);
                page.levels += len as u32;
            }
            page.rows += 1;
            let bytes = page.value_bytes + byte(w[1]) - byte(from) + page.rep.len() + page.def.len();
            if bytes >= self.chunk.size_limit || page.rows as usize >= self.chunk.row_limit {
                page.add(buffer, byte(from)..byte(w[1]));
                from = w[1];
                self.flush_page()?;
            }
        }
        self.page.add(buffer, byte(from)..byte(offsets[offsets.len() - 1]));
        Ok(())
    }

    fn flush_page(&mut self) -> Result<(), ParquetError> {
        let page = &mut self.page;
        if page.rows == 0 {
            return Ok(());
        }
        let raw = &mut self.chunk.raw;
        raw.clear();
        raw.reserve(page.value_bytes + page.rep.len() + page.def.len());
        page.rep.take_into(raw);
        page.def.take_into(raw);
        for (buffer, range) in page.values.drain(..) {
            raw.extend_from_slice(&buffer.as_slice()[range]);
        }
        page.value_bytes = 0;
        let (rows, levels) = (page.rows, page.levels);
        (page.levels, page.rows) = (0, 0);
        self.chunk.write_page(rows, levels)
    }

    /// Writes the last page; returns the chunk's bytes and what its row group needs to
    /// know about them.
    pub fn close(mut self) -> Result<(bytes::Bytes, ColumnCloseResult), ParquetError> {
        self.flush_page()?;
        self.chunk.close(None)
    }
}
