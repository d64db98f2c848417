//! Dictionary-encoded column chunks for string columns with few distinct values, written by hand.
//!
//! Most string columns of an access log hold a handful of values (`bucket`, `operation`,
//! `tlsversion`, `source_object`, ...). The parquet crate's writer hashes every value of such a
//! column into its dictionary and compares it with the running min and max, and that was a fifth
//! of the whole conversion's CPU. A [`DictionaryColumn`] keeps the value of the row before and only
//! looks a value up when it changes, computes min and max over the dictionary once, and writes the
//! pages itself: a PLAIN dictionary page, then v1 data pages of RLE definition levels and
//! RLE/bit-packed keys, each ZSTD-compressed, the same layout the parquet crate writes. The
//! column chunk is spliced into the row group with `append_column`.
//!
//! A column whose dictionary passes the budget while its values keep being new is given back as
//! a plain Arrow array (its values rebuilt from dictionary and keys), so the parquet crate's
//! writer takes over the column with nothing lost; [`DictionaryColumn::write`] says when.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, StringArray};
use arrow_buffer::BooleanBufferBuilder;
use bytes::Bytes;
use parquet::basic::{Compression, Encoding, EncodingMask, PageType, ZstdLevel};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::ByteArray;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnChunkMetaData, PageEncodingStats};
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

/// Rows per data page, as the parquet crate's default.
const PAGE_ROWS: usize = 20_000;

/// Past its byte budget, a dictionary is kept while it holds at most one value per this many rows
/// (`source_object` when thousands of small objects share a row group), up to [`MAX_BYTES`].
const ROWS_PER_VALUE: usize = 16;
const MAX_BYTES: usize = 1 << 20;

/// The open row group's values of one string column, as dictionary and keys.
pub struct DictionaryColumn {
    /// Dictionary entries, concatenated; entry `i` ends at `ends[i]`.
    values: Vec<u8>,
    ends: Vec<u32>,
    lookup: HashMap<Box<[u8]>, u32, ahash::RandomState>,
    /// The key of each non-null value, in row order.
    keys: Vec<u32>,
    /// One bit per row: whether it holds a value.
    valid: BooleanBufferBuilder,
    /// The entry of the last value seen, and its bytes' range in `values`.
    last: Option<(u32, usize, usize)>,
    limit: usize,
}

/// What [`DictionaryColumn::write`] did.
pub enum Written {
    Kept,
    /// The dictionary passed its budget: every row so far, this batch's included, as one array
    /// for the parquet crate's writer. The column is empty again.
    GaveUp(ArrayRef),
}

impl DictionaryColumn {
    /// A column that gives up once its dictionary holds more than `limit` bytes, unless its values
    /// repeat (see [`ROWS_PER_VALUE`]).
    pub fn new(limit: usize) -> Self {
        DictionaryColumn {
            values: Vec::new(),
            ends: Vec::new(),
            lookup: HashMap::default(),
            keys: Vec::new(),
            valid: BooleanBufferBuilder::new(0),
            last: None,
            limit,
        }
    }

    pub fn rows(&self) -> usize {
        self.valid.len()
    }

    /// Rows that hold a value.
    pub fn non_null(&self) -> usize {
        self.keys.len()
    }

    /// Bytes held: dictionary, keys and validity.
    pub fn memory_size(&self) -> usize {
        2 * self.values.capacity() + self.keys.capacity() * 4 + self.valid.capacity() / 8 + self.ends.capacity() * 4
    }

    /// Where entry `i` lies in `values`.
    fn span(&self, i: u32) -> (usize, usize) {
        let start = if i == 0 { 0 } else { self.ends[i as usize - 1] as usize };
        (start, self.ends[i as usize] as usize)
    }

    fn entry(&self, i: u32) -> &[u8] {
        let (start, end) = self.span(i);
        &self.values[start..end]
    }

    /// Adds `array`'s rows (a Utf8 array).
    pub fn write(&mut self, array: &dyn Array) -> Written {
        let array = array.as_any().downcast_ref::<StringArray>().expect("dictionary columns are Utf8");
        self.keys.reserve(array.len() - array.null_count());
        match array.nulls() {
            Some(n) => self.valid.append_buffer(n.inner()),
            None => self.valid.append_n(array.len(), true),
        }
        for v in array.iter().flatten() {
            let v = v.as_bytes();
            let key = match self.last {
                Some((key, start, end)) if &self.values[start..end] == v => key,
                _ => match self.lookup.get(v) {
                    Some(&key) => {
                        let (start, end) = self.span(key);
                        self.last = Some((key, start, end));
                        key
                    }
                    None => {
                        let key = self.ends.len() as u32;
                        let start = self.values.len();
                        self.values.extend_from_slice(v);
                        self.ends.push(self.values.len() as u32);
                        self.lookup.insert(v.into(), key);
                        self.last = Some((key, start, self.values.len()));
                        key
                    }
                },
            };
            self.keys.push(key);
        }
        let bytes = self.values.len();
        let repeats = self.ends.len() * ROWS_PER_VALUE <= self.rows();
        if bytes > MAX_BYTES || (bytes > self.limit && !repeats) {
            Written::GaveUp(self.take_array())
        } else {
            Written::Kept
        }
    }

    /// Every row so far as a plain array; the column is empty afterwards.
    pub fn take_array(&mut self) -> ArrayRef {
        let valid = self.valid.finish();
        let mut keys = self.keys.iter();
        let array: StringArray = valid
            .iter()
            .map(|v| v.then(|| std::str::from_utf8(self.entry(*keys.next().expect("a key per value"))).expect("utf8")))
            .collect();
        *self = DictionaryColumn::new(self.limit);
        Arc::new(array)
    }

    /// Encodes the column chunk: its bytes (which start at offset 0) and what the row group
    /// needs to splice them in. The column is empty afterwards.
    pub fn close(&mut self, descr: ColumnDescPtr, level: ZstdLevel) -> Result<(Bytes, ColumnCloseResult)> {
        let rows = self.rows();
        // One key per value: what is not a key is a NULL.
        let nulls = rows - self.non_null();
        let valid = self.valid.finish();
        let nullable = descr.max_def_level() > 0;
        if !nullable && nulls > 0 {
            return Err(ParquetError::General(format!("null in required column {}", descr.name())));
        }
        let mut sink = TrackedWrite::new(Vec::new());
        let mut pages = SerializedPageWriter::new(&mut sink);
        let compress = |buf: &[u8]| compress(buf, level.compression_level());

        let mut dict = Vec::with_capacity(self.values.len() + 4 * self.ends.len());
        for i in 0..self.ends.len() as u32 {
            let v = self.entry(i);
            dict.extend_from_slice(&(v.len() as u32).to_le_bytes());
            dict.extend_from_slice(v);
        }
        let page = Page::DictionaryPage {
            buf: compress(&dict)?,
            num_values: self.ends.len() as u32,
            encoding: Encoding::PLAIN,
            is_sorted: false,
        };
        let dict_spec = pages.write_page(CompressedPage::new(page, dict.len()))?;

        let bit_width = (u32::BITS - (self.ends.len().max(1) as u32 - 1).leading_zeros()) as u8;
        let (mut compressed, mut uncompressed) = (dict_spec.compressed_size, dict_spec.uncompressed_size);
        let (mut data_offset, mut data_pages) = (None, 0);
        let (mut key_at, mut levels, mut buf) = (0, Vec::new(), Vec::new());
        for first in (0..rows).step_by(PAGE_ROWS) {
            let page_rows = PAGE_ROWS.min(rows - first);
            let page_valid = valid.slice(first, page_rows);
            let values = page_valid.count_set_bits();
            buf.clear();
            if nullable {
                levels.clear();
                levels.extend(page_valid.iter().map(u32::from));
                let at = buf.len();
                buf.extend_from_slice(&[0; 4]);
                encode_hybrid(&levels, 1, &mut buf);
                let len = (buf.len() - at - 4) as u32;
                buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
            }
            buf.push(bit_width);
            encode_hybrid(&self.keys[key_at..key_at + values], bit_width, &mut buf);
            key_at += values;
            let page = Page::DataPage {
                buf: compress(&buf)?,
                num_values: page_rows as u32,
                encoding: Encoding::RLE_DICTIONARY,
                def_level_encoding: Encoding::RLE,
                rep_level_encoding: Encoding::RLE,
                statistics: None,
            };
            let spec = pages.write_page(CompressedPage::new(page, buf.len()))?;
            data_offset.get_or_insert(spec.offset);
            data_pages += 1;
            compressed += spec.compressed_size;
            uncompressed += spec.uncompressed_size;
        }
        pages.close()?;
        let bytes = Bytes::from(sink.into_inner()?);

        let (min, max) = (0..self.ends.len() as u32).map(|i| self.entry(i)).fold((None, None), |(lo, hi), v| {
            (Some(lo.map_or(v, |lo: &[u8]| lo.min(v))), Some(hi.map_or(v, |hi: &[u8]| hi.max(v))))
        });
        let stats = ValueStatistics::new(
            min.map(|v| ByteArray::from(v.to_vec())),
            max.map(|v| ByteArray::from(v.to_vec())),
            None,
            Some(nulls as u64),
            false,
        );
        let page_stats = |page_type, encoding, count| PageEncodingStats { page_type, encoding, count };
        let metadata = ColumnChunkMetaData::builder(descr)
            .set_compression(Compression::ZSTD(level))
            .set_encodings_mask(EncodingMask::new_from_encodings(
                [Encoding::PLAIN, Encoding::RLE, Encoding::RLE_DICTIONARY].iter(),
            ))
            .set_page_encoding_stats(vec![
                page_stats(PageType::DICTIONARY_PAGE, Encoding::PLAIN, 1),
                page_stats(PageType::DATA_PAGE, Encoding::RLE_DICTIONARY, data_pages),
            ])
            .set_total_compressed_size(compressed as i64)
            .set_total_uncompressed_size(uncompressed as i64)
            .set_num_values(rows as i64)
            .set_dictionary_page_offset(Some(dict_spec.offset as i64))
            .set_data_page_offset(data_offset.unwrap_or(dict_spec.offset + dict_spec.compressed_size as u64) as i64)
            .set_statistics(Statistics::ByteArray(stats))
            .build()?;
        let close = ColumnCloseResult {
            bytes_written: bytes.len() as u64,
            rows_written: rows as u64,
            metadata,
            bloom_filter: None,
            column_index: None,
            offset_index: None,
        };
        *self = DictionaryColumn::new(self.limit);
        Ok((bytes, close))
    }
}

thread_local! {
    /// One ZSTD context per thread and level: a new one per page cost a fresh allocation (and
    /// its page faults) for every page.
    static ZSTD: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

fn compress(buf: &[u8], level: i32) -> Result<Bytes> {
    let external = |e: std::io::Error| ParquetError::External(e.into());
    ZSTD.with_borrow_mut(|z| {
        if !matches!(z, Some((l, _)) if *l == level) {
            *z = Some((level, zstd::bulk::Compressor::new(level).map_err(external)?));
        }
        let (_, c) = z.as_mut().expect("set above");
        Ok(c.compress(buf).map_err(external)?.into())
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
fn encode_hybrid(values: &[u32], bit_width: u8, out: &mut Vec<u8>) {
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

#[cfg(test)]
mod tests {
    use super::encode_hybrid;

    /// Decodes the hybrid encoding back, for `n` values.
    fn decode(mut b: &[u8], bit_width: u8, n: usize) -> Vec<u32> {
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
}
