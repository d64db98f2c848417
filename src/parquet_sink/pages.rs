//! What the hand-written column chunks ([`super::dictionary`], [`super::plain`]) share: ZSTD with
//! contexts reused per thread (and a faster setting for random text), Parquet's RLE/bit-packing
//! hybrid, definition levels, statistics truncated as the parquet crate truncates them, and a
//! column chunk's pages and metadata.
//!
//! The parquet crate compresses each page into a new buffer sized for the worst case (a little
//! over the page itself), and fresh memory costs a page fault per huge page touched; here a page
//! is compressed into one scratch buffer per thread and only its compressed bytes are kept.

use arrow_buffer::BooleanBuffer;
use bytes::Bytes;
use parquet::basic::{Compression, Encoding, EncodingMask, PageType, ZstdLevel};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::ByteArray;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnChunkMetaData, PageEncodingStats};
use parquet::file::properties::WriterProperties;
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::{ColumnDescPtr, ColumnPath};

/// What the hand-written encoders take from the writer's properties, so that they cut pages,
/// give dictionaries up and truncate statistics as the crate's writer would for that column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimits {
    /// Rows per data page at most.
    pub rows: usize,
    /// Bytes of values per data page, about.
    pub bytes: usize,
    /// Bytes a dictionary may hold before it is given up (unless its values repeat).
    pub dictionary_bytes: usize,
    /// String statistics longer than this are truncated; `None`: never.
    pub statistics_bytes: Option<usize>,
}

impl PageLimits {
    /// The limits `props` sets for `column`.
    pub fn of(props: &WriterProperties, column: &ColumnPath) -> Self {
        PageLimits {
            rows: props.column_data_page_row_count_limit(column).max(1),
            bytes: props.column_data_page_size_limit(column).max(1),
            dictionary_bytes: props.column_dictionary_page_size_limit(column),
            statistics_bytes: props.statistics_truncate_length(),
        }
    }
}

/// How a page is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// ZSTD at this level.
    Level(i32),
    /// ZSTD's fast level -3 with its literals still Huffman-coded, for random text (Host Ids,
    /// request and version ids): such values repeat nothing, so all ZSTD can do is code their
    /// bytes, and level 1 spends most of its time looking for repeats: the fast level is faster
    /// there, and no bigger (docs/performance.md). The fast levels leave literals uncoded by
    /// default, which leaves such values nearly their raw size, so the switch is set (one of
    /// zstd's experimental parameters).
    RandomText,
}

impl Codec {
    fn compressor(self) -> std::io::Result<zstd::bulk::Compressor<'static>> {
        use zstd::zstd_safe::{CParameter, ParamSwitch};
        match self {
            Codec::Level(level) => zstd::bulk::Compressor::new(level),
            Codec::RandomText => {
                let mut c = zstd::bulk::Compressor::new(-3)?;
                c.set_parameter(CParameter::LiteralCompressionMode(ParamSwitch::Enable))?;
                Ok(c)
            }
        }
    }
}

struct Zstd {
    /// A context per codec in use on this thread (one or two).
    compressors: Vec<(Codec, zstd::bulk::Compressor<'static>)>,
    scratch: Vec<u8>,
}

thread_local! {
    /// ZSTD contexts and an output buffer per thread: a new context per page cost a fresh
    /// allocation (and its page faults) for every page.
    static ZSTD: std::cell::RefCell<Zstd> = const { std::cell::RefCell::new(Zstd { compressors: Vec::new(), scratch: Vec::new() }) };
}

/// `buf` compressed with `codec`.
pub fn compress(buf: &[u8], codec: Codec) -> Result<Bytes> {
    let external = |e: std::io::Error| ParquetError::External(e.into());
    ZSTD.with_borrow_mut(|z| {
        let i = match z.compressors.iter().position(|(c, _)| *c == codec) {
            Some(i) => i,
            None => {
                z.compressors.push((codec, codec.compressor().map_err(external)?));
                z.compressors.len() - 1
            }
        };
        z.scratch.clear();
        z.scratch.reserve(zstd::zstd_safe::compress_bound(buf.len()));
        z.compressors[i].1.compress_to_buffer(buf, &mut z.scratch).map_err(external)?;
        Ok(Bytes::copy_from_slice(&z.scratch))
    })
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// How many of `values[i..]` (at most `cap`) equal `values[i]`.
fn run_at(values: &[u32], i: usize, cap: usize) -> usize {
    let v = values[i];
    values[i..].iter().take(cap).take_while(|&&x| x == v).count()
}

/// Parquet's RLE/bit-packing hybrid: a run of 8 or more equal values is one RLE run; the values
/// between such runs are bit-packed in groups of 8 (the last group padded with zeros).
pub fn encode_hybrid(values: &[u32], bit_width: u8, out: &mut Vec<u8>) {
    let value_bytes = (bit_width as usize).div_ceil(8);
    let mut i = 0;
    while i < values.len() {
        let run = run_at(values, i, usize::MAX);
        if run >= 8 {
            put_varint(out, (run as u64) << 1);
            out.extend_from_slice(&values[i].to_le_bytes()[..value_bytes]);
            i += run;
            continue;
        }
        let start = i;
        loop {
            i += 8;
            if i >= values.len() || run_at(values, i, 8) == 8 {
                break;
            }
        }
        let groups = (i - start) / 8;
        put_varint(out, ((groups as u64) << 1) | 1);
        let (mut acc, mut bits) = (0u64, 0u32);
        for k in start..start + groups * 8 {
            acc |= (values.get(k).copied().unwrap_or(0) as u64) << bits;
            bits += bit_width as u32;
            while bits >= 8 {
                out.push(acc as u8);
                acc >>= 8;
                bits -= 8;
            }
        }
        i = i.min(values.len());
    }
}

/// A v1 data page's definition levels (0 for NULL, 1 for a value), with their 4-byte length in
/// front, encoded straight from the validity bitmap: at width 1, a bit-packed group of 8 levels
/// is one byte of the bitmap, and a run of all-set or all-clear bytes is an RLE run.
pub fn put_def_levels(valid: &BooleanBuffer, out: &mut Vec<u8>) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    let rows = valid.len();
    let set = valid.count_set_bits();
    if set == rows || set == 0 {
        put_varint(out, (rows as u64) << 1);
        out.push(u8::from(set > 0));
    } else {
        let bits = valid.sliced();
        let (full, bytes) = (rows / 8, bits.as_slice());
        let constant = |i: usize| bytes[i] == 0 || bytes[i] == 0xff;
        let mut i = 0;
        while i < full {
            if constant(i) {
                let run = bytes[i..full].iter().take_while(|&&b| b == bytes[i]).count();
                put_varint(out, (run as u64 * 8) << 1);
                out.push(bytes[i] & 1);
                i += run;
            } else {
                // Bytes as they are, up to a run of two constant bytes.
                let start = i;
                while i < full && !(constant(i) && i + 1 < full && bytes[i + 1] == bytes[i]) {
                    i += 1;
                }
                put_varint(out, ((i - start) as u64) << 1 | 1);
                out.extend_from_slice(&bytes[start..i]);
            }
        }
        if !rows.is_multiple_of(8) {
            // The last levels, padded with zeros to a group of 8.
            put_varint(out, 1 << 1 | 1);
            out.push(bytes[full] & ((1u8 << (rows % 8)) - 1));
        }
    }
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// The longest prefix of `v` of at most `len` bytes that ends on a character boundary.
fn utf8_prefix(v: &str, len: usize) -> &str {
    let end = (0..=len.min(v.len())).rev().find(|&i| v.is_char_boundary(i)).unwrap_or(0);
    &v[..end]
}

/// `v` with its last character that can be raised (to one of the same width) raised, and what
/// follows it cut off: the shortest bound above every string that starts with `v`.
fn raise_last_char(v: &str) -> Option<Vec<u8>> {
    v.char_indices().rev().find_map(|(i, c)| {
        let next = char::from_u32(c as u32 + 1).filter(|n| n.len_utf8() == c.len_utf8())?;
        let mut out = v.as_bytes()[..i + c.len_utf8()].to_vec();
        next.encode_utf8(&mut out[i..]);
        Some(out)
    })
}

/// `v` as text if it is longer than statistics keep (values are UTF-8: they come from Arrow
/// strings).
fn too_long(v: &[u8], limit: usize) -> Option<&str> {
    (v.len() > limit).then(|| std::str::from_utf8(v).ok()).flatten()
}

/// A string column chunk's statistics: min and max of its values (`None` when all are NULL),
/// cut to 64 bytes as the parquet crate cuts them (a cut max is raised so that it stays an upper
/// bound, and marked inexact), and its NULL count.
pub fn string_statistics(min_max: Option<(&[u8], &[u8])>, nulls: u64, limit: Option<usize>) -> Statistics {
    let Some((min, max)) = min_max else {
        return Statistics::ByteArray(ValueStatistics::new(None, None, None, Some(nulls), false));
    };
    let limit = limit.unwrap_or(usize::MAX);
    let cut_min = too_long(min, limit).map(|s| utf8_prefix(s, limit)).filter(|cut| !cut.is_empty());
    // A character is at most 4 bytes: the cut ends within the last 3 bytes of the limit.
    let cut_max = too_long(max, limit)
        .map(|s| utf8_prefix(s, limit))
        .filter(|cut| cut.len() + 3 >= limit)
        .and_then(raise_last_char);
    let (lo, min_exact) = cut_min.map_or((min.to_vec(), true), |cut| (cut.as_bytes().to_vec(), false));
    let (hi, max_exact) = cut_max.map_or((max.to_vec(), true), |raised| (raised, false));
    let stats = ValueStatistics::new(Some(ByteArray::from(lo)), Some(ByteArray::from(hi)), None, Some(nulls), false)
        .with_min_is_exact(min_exact)
        .with_max_is_exact(max_exact);
    Statistics::ByteArray(stats)
}

/// Fails when a column that may not hold NULLs was given `nulls` of them.
pub fn check_required(descr: &ColumnDescPtr, nulls: usize) -> Result<()> {
    if nulls > 0 && descr.max_def_level() == 0 {
        return Err(ParquetError::General(format!("null in required column {}", descr.name())));
    }
    Ok(())
}

/// One column chunk's pages, written one after the other into memory, and what its metadata
/// needs of them.
pub struct ChunkPages {
    sink: TrackedWrite<Vec<u8>>,
    dictionary_offset: Option<u64>,
    data_offset: Option<u64>,
    data_pages: i32,
    compressed: u64,
    uncompressed: u64,
}

impl ChunkPages {
    pub fn new() -> Self {
        ChunkPages {
            sink: TrackedWrite::new(Vec::new()),
            dictionary_offset: None,
            data_offset: None,
            data_pages: 0,
            compressed: 0,
            uncompressed: 0,
        }
    }

    /// Bytes held: the pages written so far.
    pub fn memory_size(&self) -> usize {
        self.sink.bytes_written()
    }

    /// Compresses `buf` and writes it as a PLAIN dictionary page of `entries` values.
    pub fn dictionary_page(&mut self, buf: &[u8], entries: usize, codec: Codec) -> Result<()> {
        let page = Page::DictionaryPage {
            buf: compress(buf, codec)?,
            num_values: entries as u32,
            encoding: Encoding::PLAIN,
            is_sorted: false,
        };
        let offset = self.write(CompressedPage::new(page, buf.len()))?;
        self.dictionary_offset = Some(offset);
        Ok(())
    }

    /// Compresses `buf` (levels, then values) and writes it as a v1 data page of `rows` rows.
    pub fn data_page(&mut self, buf: &[u8], rows: usize, encoding: Encoding, codec: Codec) -> Result<()> {
        let page = Page::DataPage {
            buf: compress(buf, codec)?,
            num_values: rows as u32,
            encoding,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let offset = self.write(CompressedPage::new(page, buf.len()))?;
        self.data_offset.get_or_insert(offset);
        self.data_pages += 1;
        Ok(())
    }

    fn write(&mut self, page: CompressedPage) -> Result<u64> {
        let mut pages = SerializedPageWriter::new(&mut self.sink);
        let spec = pages.write_page(page)?;
        pages.close()?;
        self.compressed += spec.compressed_size as u64;
        self.uncompressed += spec.uncompressed_size as u64;
        Ok(spec.offset)
    }

    /// The chunk's bytes (which start at offset 0) and what the row group needs to splice them
    /// in: `rows` rows whose data pages are all `encoding`.
    pub fn close(
        self,
        descr: ColumnDescPtr,
        level: ZstdLevel,
        rows: usize,
        encoding: Encoding,
        statistics: Statistics,
    ) -> Result<(Bytes, ColumnCloseResult)> {
        let page_stats = |page_type, encoding, count| PageEncodingStats { page_type, encoding, count };
        let mut stats = vec![page_stats(PageType::DATA_PAGE, encoding, self.data_pages)];
        let mut encodings = vec![Encoding::RLE, encoding];
        if self.dictionary_offset.is_some() {
            stats.insert(0, page_stats(PageType::DICTIONARY_PAGE, Encoding::PLAIN, 1));
            encodings.push(Encoding::PLAIN);
        }
        let data_offset = self.data_offset.or(self.dictionary_offset).unwrap_or(0);
        let metadata = ColumnChunkMetaData::builder(descr)
            .set_compression(Compression::ZSTD(level))
            .set_encodings_mask(EncodingMask::new_from_encodings(encodings.iter()))
            .set_page_encoding_stats(stats)
            .set_total_compressed_size(self.compressed as i64)
            .set_total_uncompressed_size(self.uncompressed as i64)
            .set_num_values(rows as i64)
            .set_dictionary_page_offset(self.dictionary_offset.map(|o| o as i64))
            .set_data_page_offset(data_offset as i64)
            .set_statistics(statistics)
            .build()?;
        let bytes = Bytes::from(self.sink.into_inner()?);
        let close = ColumnCloseResult {
            bytes_written: bytes.len() as u64,
            rows_written: rows as u64,
            metadata,
            bloom_filter: None,
            column_index: None,
            offset_index: None,
        };
        Ok((bytes, close))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Codec, check_required, compress, encode_hybrid, string_statistics};
    use parquet::basic::Type as PhysicalType;
    use parquet::file::statistics::Statistics;
    use parquet::schema::types::{ColumnDescriptor, ColumnPath, Type};

    #[test]
    fn nulls_are_refused_only_in_required_columns() {
        let column = |max_def_level| {
            let t = Type::primitive_type_builder("c", PhysicalType::BYTE_ARRAY).build().unwrap();
            Arc::new(ColumnDescriptor::new(Arc::new(t), max_def_level, 0, ColumnPath::from("c")))
        };
        assert!(check_required(&column(1), 3).is_ok());
        assert!(check_required(&column(0), 0).is_ok());
        let err = check_required(&column(0), 1).unwrap_err();
        assert_eq!(err.to_string(), "Parquet error: null in required column c");
    }

    /// Random base64 values, as Host Ids are: both codecs give the bytes back, and the one for
    /// random text still Huffman-codes them (6 bits of 8 at best; without the literal switch the
    /// fast level left them at 95% of their size).
    #[test]
    fn random_text_pages_are_entropy_coded_and_read_back() {
        const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut page = Vec::new();
        for _ in 0..2_000 {
            page.extend_from_slice(&76u32.to_le_bytes());
            for _ in 0..76 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                page.push(B64[(x >> 58) as usize]);
            }
        }
        for codec in [Codec::RandomText, Codec::Level(1), Codec::RandomText] {
            let z = compress(&page, codec).unwrap();
            assert_eq!(zstd::bulk::decompress(&z, page.len()).unwrap(), page, "{codec:?}");
            let ratio = z.len() as f64 / page.len() as f64;
            assert!(ratio < 0.8, "{codec:?}: {ratio:.3}");
        }
    }

    /// Decodes the hybrid encoding back, for `n` values.
    pub fn decode(mut b: &[u8], bit_width: u8, n: usize) -> Vec<u32> {
        let varint = |b: &mut &[u8]| {
            let (mut v, mut shift) = (0u64, 0);
            loop {
                let byte = b[0];
                *b = &b[1..];
                v |= ((byte & 0x7f) as u64) << shift;
                shift += 7;
                if byte < 0x80 {
                    return v;
                }
            }
        };
        let mut out = Vec::new();
        while out.len() < n {
            let h = varint(&mut b);
            if h & 1 == 0 {
                let bytes = (bit_width as usize).div_ceil(8);
                let mut v = [0u8; 4];
                v[..bytes].copy_from_slice(&b[..bytes]);
                b = &b[bytes..];
                out.extend(std::iter::repeat_n(u32::from_le_bytes(v), (h >> 1) as usize));
            } else {
                let count = (h >> 1) as usize * 8;
                let (mut acc, mut bits) = (0u64, 0u32);
                for _ in 0..count {
                    while bits < bit_width as u32 {
                        acc |= (b[0] as u64) << bits;
                        b = &b[1..];
                        bits += 8;
                    }
                    out.push((acc & ((1u64 << bit_width) - 1)) as u32);
                    acc >>= bit_width;
                    bits -= bit_width as u32;
                }
            }
        }
        assert!(b.is_empty(), "{} bytes left over", b.len());
        out.truncate(n);
        out
    }

    #[test]
    fn runs_and_packed_groups_decode_back() {
        let cases: Vec<(Vec<u32>, u8)> = vec![
            (vec![], 1),
            (vec![1], 1),
            (vec![0; 7], 0),
            (vec![0; 20_000], 0),
            (vec![1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0], 1),
            ((0..100).map(|i| i % 5).collect(), 3),
            ((0..100).map(|i| if i < 8 { i } else { 7 }).collect(), 3),
            ((0..1000).map(|i| (i * 7919) % 1000).collect(), 10),
            ((0..64).map(|i| if i % 16 < 9 { 2 } else { i }).collect(), 6),
        ];
        for (values, width) in cases {
            let mut out = Vec::new();
            encode_hybrid(&values, width, &mut out);
            assert_eq!(decode(&out, width, values.len()), values, "width {width}");
        }
    }

    #[test]
    fn definition_levels_from_the_bitmap_decode_back() {
        use arrow_buffer::BooleanBuffer;
        let patterns: Vec<Vec<bool>> = vec![
            vec![true; 20_000],
            vec![false; 13],
            (0..20_000).map(|i| i % 7 != 3).collect(),
            // Runs of set and clear bytes between mixed ones, and a partial last byte.
            (0..1_003).map(|i| !(100..300).contains(&i) && i % 97 != 5).collect(),
            (0..64).map(|i| i == 63).collect(),
            (0..9).map(|i| i == 8).collect(),
            (0..17).map(|i| i % 2 == 0).collect(),
        ];
        for valid in patterns {
            for offset in [0, 3] {
                // A page's bitmap can start within a byte of a longer one.
                let padded: Vec<bool> = std::iter::repeat_n(true, offset).chain(valid.iter().copied()).collect();
                let buffer = BooleanBuffer::from(padded).slice(offset, valid.len());
                let mut out = Vec::new();
                super::put_def_levels(&buffer, &mut out);
                let len = u32::from_le_bytes(out[..4].try_into().unwrap()) as usize;
                assert_eq!(len, out.len() - 4);
                let levels = decode(&out[4..], 1, valid.len());
                assert_eq!(levels, valid.iter().map(|&v| u32::from(v)).collect::<Vec<_>>(), "{} rows", valid.len());
            }
        }
    }

    #[test]
    fn long_statistics_are_cut_to_64_bytes_and_the_max_stays_an_upper_bound() {
        let stats = |min: &str, max: &str| match string_statistics(Some((min.as_bytes(), max.as_bytes())), 0, Some(64))
        {
            Statistics::ByteArray(s) => (
                String::from_utf8(s.min_bytes_opt().unwrap().to_vec()).unwrap(),
                String::from_utf8(s.max_bytes_opt().unwrap().to_vec()).unwrap(),
                s.min_is_exact(),
                s.max_is_exact(),
            ),
            other => panic!("{other:?}"),
        };
        let a64 = "a".repeat(64);
        assert_eq!(stats(&a64, &a64), (a64.clone(), a64.clone(), true, true));
        let (min, max) = (format!("{a64}xyz"), format!("{}b{}", "a".repeat(63), "z".repeat(10)));
        assert_eq!(stats(&min, &max), (a64.clone(), format!("{}c", "a".repeat(63)), false, false));
        // A 3-byte character across the limit is left out whole; the max's last character
        // before the cut is raised.
        let wide = format!("{}日本", "a".repeat(62));
        assert_eq!(stats(&wide, &wide), ("a".repeat(62), format!("{}b", "a".repeat(61)), false, false));
        // A max whose characters cannot be raised within their width stays whole and exact.
        let top = "\u{7f}".repeat(70);
        assert_eq!(stats(&top, &top).1, top);
        assert!(stats(&top, &top).3);
    }
}
