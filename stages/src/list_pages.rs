//! Column chunks of required lists of required numbers (sample's histories), encoded
//! page by page without parquet's column writer.
//!
//! parquet's column writer handles levels one value at a time: for the histories
//! (128M values at 5M clicks) that was most of the time it took to write them. A
//! row's levels are two RLE runs whatever its length, and its values are the PLAIN
//! bytes the Arrow buffer already holds, so a page is built from a few runs per row
//! and one copy of its values.

use std::ops::Range;

use datafusion::arrow::array::{Array, ListArray};
use datafusion::arrow::buffer::Buffer;
use datafusion::parquet::basic::{Compression, Encoding, EncodingMask, PageType, Type as PhysicalType, ZstdLevel};
use datafusion::parquet::column::page::{CompressedPage, Page, PageWriter};
use datafusion::parquet::column::writer::ColumnCloseResult;
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::{ColumnChunkMetaData, OffsetIndexBuilder, PageEncodingStats};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use datafusion::parquet::schema::types::ColumnDescPtr;

/// Writes one column chunk of a required list column; pages end at row boundaries,
/// where a row takes the page to the size or row limit, so the bytes depend on the
/// rows alone, not on how they were cut into batches.
pub struct ListChunkWriter {
    descr: ColumnDescPtr,
    level: ZstdLevel,
    compressor: zstd::bulk::Compressor<'static>,
    sink: TrackedWrite<Vec<u8>>,
    page: PageBuffer,
    size_limit: usize,
    row_limit: usize,
    offsets: OffsetIndexBuilder,
    pages: i32,
    rows: u64,
    levels: u64,
    compressed: u64,
    uncompressed: u64,
}

/// The page being filled.
#[derive(Default)]
struct PageBuffer {
    rep: Runs,
    def: Runs,
    /// The page's values: byte ranges of the Arrow buffers written, copied once, when
    /// the page is compressed.
    values: Vec<(Buffer, Range<usize>)>,
    value_bytes: usize,
    /// Level entries: one per value, one per empty list.
    levels: u32,
    rows: u32,
    /// Reused for the page as it is compressed.
    raw: Vec<u8>,
}

impl PageBuffer {
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

    fn len(&self) -> usize {
        self.bytes.len() + 6
    }
}

impl ListChunkWriter {
    pub fn new(descr: ColumnDescPtr, props: &WriterProperties, level: ZstdLevel) -> Result<Self, ParquetError> {
        let compressor =
            zstd::bulk::Compressor::new(level.compression_level()).map_err(|e| ParquetError::External(e.into()))?;
        Ok(ListChunkWriter {
            level,
            size_limit: props.column_data_page_size_limit(descr.path()),
            row_limit: props.data_page_row_count_limit(),
            descr,
            compressor,
            sink: TrackedWrite::new(Vec::new()),
            page: PageBuffer::default(),
            offsets: OffsetIndexBuilder::new(),
            pages: 0,
            rows: 0,
            levels: 0,
            compressed: 0,
            uncompressed: 0,
        })
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
            .filter(|&w| w == self.width())
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
            if bytes >= self.size_limit || page.rows as usize >= self.row_limit {
                page.add(buffer, byte(from)..byte(w[1]));
                from = w[1];
                self.flush_page()?;
            }
        }
        self.page.add(buffer, byte(from)..byte(offsets[offsets.len() - 1]));
        Ok(())
    }

    fn width(&self) -> usize {
        // Four bytes for INT32 and FLOAT, eight for INT64 and DOUBLE: the only leaf
        // types `table` routes here.
        match self.descr.physical_type() {
            PhysicalType::INT64 | PhysicalType::DOUBLE => 8,
            _ => 4,
        }
    }

    fn flush_page(&mut self) -> Result<(), ParquetError> {
        let page = &mut self.page;
        if page.rows == 0 {
            return Ok(());
        }
        page.raw.clear();
        page.raw.reserve(page.value_bytes + page.rep.len() + page.def.len());
        page.rep.take_into(&mut page.raw);
        page.def.take_into(&mut page.raw);
        for (buffer, range) in page.values.drain(..) {
            page.raw.extend_from_slice(&buffer.as_slice()[range]);
        }
        page.value_bytes = 0;
        let mut compressed = Vec::with_capacity(zstd::zstd_safe::compress_bound(page.raw.len()));
        self.compressor.compress_to_buffer(&page.raw, &mut compressed).map_err(|e| ParquetError::External(e.into()))?;
        let data = Page::DataPage {
            buf: compressed.into(),
            num_values: page.levels,
            encoding: Encoding::PLAIN,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let spec = SerializedPageWriter::new(&mut self.sink).write_page(CompressedPage::new(data, page.raw.len()))?;
        self.offsets.append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
        self.offsets.append_row_count(page.rows as i64);
        self.pages += 1;
        self.rows += u64::from(page.rows);
        self.levels += u64::from(page.levels);
        self.compressed += spec.compressed_size as u64;
        self.uncompressed += spec.uncompressed_size as u64;
        (page.levels, page.rows) = (0, 0);
        Ok(())
    }

    /// Writes the last page; returns the chunk's bytes and what its row group needs to
    /// know about them.
    pub fn close(mut self) -> Result<(bytes::Bytes, ColumnCloseResult), ParquetError> {
        self.flush_page()?;
        let metadata = ColumnChunkMetaData::builder(self.descr.clone())
            .set_compression(Compression::ZSTD(self.level))
            .set_encodings_mask(EncodingMask::new_from_encodings([Encoding::PLAIN, Encoding::RLE].iter()))
            .set_page_encoding_stats(vec![PageEncodingStats {
                page_type: PageType::DATA_PAGE,
                encoding: Encoding::PLAIN,
                count: self.pages,
            }])
            .set_total_compressed_size(self.compressed as i64)
            .set_total_uncompressed_size(self.uncompressed as i64)
            .set_num_values(self.levels as i64)
            .set_data_page_offset(0)
            .build()?;
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
