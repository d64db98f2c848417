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
//! A column whose dictionary passes the budget while its values keep being new is drained into a
//! [`super::plain`] column (its values read back from dictionary and keys), which takes the column
//! over with nothing lost; [`DictionaryColumn::write`] says when.

use std::collections::HashMap;

use arrow_array::{Array, StringArray};
use arrow_buffer::BooleanBufferBuilder;
use bytes::Bytes;
use parquet::basic::{Encoding, ZstdLevel};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::Result;
use parquet::schema::types::ColumnDescPtr;

use super::pages::{ChunkPages, Codec, PageLimits, check_required, encode_hybrid, put_def_levels, string_statistics};
use super::plain::PlainColumn;

/// Past its byte budget, a dictionary is kept while it holds at most one value per this many rows
/// (`source_object` when thousands of small objects share a row group), up to [`MAX_BYTES`].
const ROWS_PER_VALUE: usize = 16;
const MAX_BYTES: usize = 1 << 20;

/// Whether `a` and `b` hold the same bytes. Asked for every value against the row before's, which
/// mostly differ in length or in their first or last bytes, or are short: those are decided by
/// loads of up to eight bytes instead of a call to `memcmp`.
#[inline(always)]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |x: &[u8], at: usize| u64::from_ne_bytes(x[at..at + 8].try_into().expect("eight bytes"));
    let half = |x: &[u8], at: usize| u32::from_ne_bytes(x[at..at + 4].try_into().expect("four bytes"));
    match n {
        0..4 => a.iter().zip(b).all(|(x, y)| x == y),
        4..8 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        _ => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8) && (n <= 16 || a[8..n - 8] == b[8..n - 8]),
    }
}

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
    /// Bytes of entries past which the dictionary is given up (unless its values repeat).
    limit: usize,
    limits: PageLimits,
}

/// What [`DictionaryColumn::write`] did.
pub enum Written {
    Kept,
    /// The dictionary passed its budget: its rows, this batch's included, are to be drained
    /// into a plain encoder ([`DictionaryColumn::drain_to_plain`]).
    GaveUp,
}

impl DictionaryColumn {
    /// A column that gives up once its dictionary holds more than `limits.dictionary_bytes`,
    /// unless its values repeat (see [`ROWS_PER_VALUE`]); its pages and statistics follow `limits`.
    pub fn new(limits: PageLimits) -> Self {
        DictionaryColumn {
            values: Vec::new(),
            ends: Vec::new(),
            lookup: HashMap::default(),
            keys: Vec::new(),
            valid: BooleanBufferBuilder::new(0),
            last: None,
            limit: limits.dictionary_bytes,
            limits,
        }
    }

    pub fn limits(&self) -> PageLimits {
        self.limits
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
        let (offsets, data) = (array.value_offsets(), array.value_data());
        for row in 0..array.len() {
            if array.is_null(row) {
                continue;
            }
            let v = &data[offsets[row] as usize..offsets[row + 1] as usize];
            let key = match self.last {
                Some((key, start, end)) if same(&self.values[start..end], v) => key,
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
        if bytes > MAX_BYTES || (bytes > self.limit && !repeats) { Written::GaveUp } else { Written::Kept }
    }

    /// A plain column (for `descr`, at `level`) holding every row so far; this column is empty
    /// afterwards.
    pub fn drain_to_plain(&mut self, descr: ColumnDescPtr, level: ZstdLevel) -> Result<PlainColumn> {
        let mut plain = PlainColumn::new(descr, level, self.limits);
        let valid = self.valid.finish();
        let mut keys = self.keys.iter();
        let this = &*self;
        plain.write_rows(valid.len(), Some(&valid), |_| this.entry(*keys.next().expect("a key per value")))?;
        *self = DictionaryColumn::new(self.limits);
        Ok(plain)
    }

    /// Encodes the column chunk: its bytes (which start at offset 0) and what the row group
    /// needs to splice them in. The column is empty afterwards.
    pub fn close(&mut self, descr: ColumnDescPtr, level: ZstdLevel) -> Result<(Bytes, ColumnCloseResult)> {
        let rows = self.rows();
        // One key per value: what is not a key is a NULL.
        let nulls = rows - self.non_null();
        check_required(&descr, nulls)?;
        let valid = self.valid.finish();
        let nullable = descr.max_def_level() > 0;
        let codec = Codec::Level(level.compression_level());
        let mut pages = ChunkPages::new();
        let mut dict = Vec::with_capacity(self.values.len() + 4 * self.ends.len());
        for i in 0..self.ends.len() as u32 {
            let v = self.entry(i);
            dict.extend_from_slice(&(v.len() as u32).to_le_bytes());
            dict.extend_from_slice(v);
        }
        pages.dictionary_page(&dict, self.ends.len(), codec)?;

        let bit_width = (u32::BITS - (self.ends.len().max(1) as u32 - 1).leading_zeros()) as u8;
        let (mut key_at, mut buf) = (0, Vec::new());
        for first in (0..rows).step_by(self.limits.rows) {
            let page_rows = self.limits.rows.min(rows - first);
            let page_valid = valid.slice(first, page_rows);
            let values = page_valid.count_set_bits();
            buf.clear();
            if nullable {
                put_def_levels(&page_valid, &mut buf);
            }
            buf.push(bit_width);
            encode_hybrid(&self.keys[key_at..key_at + values], bit_width, &mut buf);
            key_at += values;
            pages.data_page(&buf, page_rows, Encoding::RLE_DICTIONARY, codec)?;
        }

        let (min, max) = (0..self.ends.len() as u32).map(|i| self.entry(i)).fold((None, None), |(lo, hi), v| {
            (Some(lo.map_or(v, |lo: &[u8]| lo.min(v))), Some(hi.map_or(v, |hi: &[u8]| hi.max(v))))
        });
        let stats = string_statistics(min.zip(max), nulls as u64, self.limits.statistics_bytes);
        let chunk = pages.close(descr, level, rows, Encoding::RLE_DICTIONARY, stats)?;
        *self = DictionaryColumn::new(self.limits);
        Ok(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::same;

    /// The word-at-a-time comparison says what `==` says: for every length up to past two words,
    /// equal bytes, one byte changed at each position (first, middle and last words), and one
    /// byte more or less.
    #[test]
    fn same_agrees_with_byte_equality() {
        for n in 0..40usize {
            let a: Vec<u8> = (0..n).map(|i| (i * 7 + 1) as u8).collect();
            assert!(same(&a, &a.clone()), "{n} bytes");
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 0x20;
                assert!(!same(&a, &b), "{n} bytes, byte {i} differs");
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!same(&a, &longer) && !same(&longer, &a), "{n} bytes and one more");
        }
    }
}
