//! Plain-encoded column chunks for string columns whose values are nearly all distinct, written by
//! hand.
//!
//! `hostid`, `requestid`, `requesturi_key`, `key` and `requester` are most of the bytes a row
//! group holds. The parquet crate's writer takes each value through its generic encoder, compares
//! it with the running min and max, and compresses each page into a fresh buffer sized for the
//! worst case, which then faults its memory in. A [`PlainColumn`] writes each value once into the
//! open page (4-byte length, then bytes), decides most min/max comparisons on the first eight
//! bytes, and compresses a full page with the thread's ZSTD context for its codec
//! ([`super::pages`]); the column chunk is spliced into the row group with `append_column`, as
//! [`super::dictionary`]'s are.

use arrow_array::{Array, StringArray};
use arrow_buffer::{BooleanBuffer, BooleanBufferBuilder};
use bytes::Bytes;
use parquet::basic::{Encoding, ZstdLevel};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::Result;
use parquet::schema::types::ColumnDescPtr;

use super::pages::{ChunkPages, Codec, PageLimits, check_required, put_def_levels, string_statistics};

/// The smallest and largest value so far, each with its first eight bytes as a big-endian number,
/// which orders two values whenever those bytes differ.
struct MinMax {
    min: Vec<u8>,
    min_head: u64,
    max: Vec<u8>,
    max_head: u64,
}

fn head(v: &[u8]) -> u64 {
    match v.first_chunk::<8>() {
        Some(h) => u64::from_be_bytes(*h),
        None => {
            let mut h = [0; 8];
            h[..v.len()].copy_from_slice(v);
            u64::from_be_bytes(h)
        }
    }
}

impl MinMax {
    fn update(this: &mut Option<MinMax>, v: &[u8]) {
        let h = head(v);
        let Some(m) = this else {
            *this = Some(MinMax { min: v.to_vec(), min_head: h, max: v.to_vec(), max_head: h });
            return;
        };
        if h <= m.min_head && (h < m.min_head || v < m.min.as_slice()) {
            m.min.clear();
            m.min.extend_from_slice(v);
            m.min_head = h;
        } else if h >= m.max_head && (h > m.max_head || v > m.max.as_slice()) {
            m.max.clear();
            m.max.extend_from_slice(v);
            m.max_head = h;
        }
    }
}

/// How a column's plain pages are compressed: at level 1 (the default), the columns the field
/// table marks as random text as [`Codec::RandomText`], which is faster and no bigger there; at
/// any other `--zstd-level`, every column at that level.
fn codec_of(column: &str, level: ZstdLevel) -> Codec {
    let random = crate::schema::field(column).is_some_and(|f| f.random_text());
    match level.compression_level() {
        1 if random => Codec::RandomText,
        level => Codec::Level(level),
    }
}

/// The open row group's values of one string column, as finished pages and the open page.
pub struct PlainColumn {
    descr: ColumnDescPtr,
    level: ZstdLevel,
    codec: Codec,
    /// Page and statistics limits, from the writer's properties.
    limits: PageLimits,
    /// Bytes in front of the open page's values, for its definition levels ([`levels_room`]).
    room: usize,
    pages: ChunkPages,
    /// The open page: `room` bytes left for its definition levels, then its values
    /// (4-byte length, then bytes); and one bit per row.
    values: Vec<u8>,
    valid: BooleanBufferBuilder,
    rows: usize,
    nulls: usize,
    min_max: Option<MinMax>,
}

/// Room left in front of a page of `rows` rows at most for its definition levels, so that the
/// page is compressed where it lies instead of being copied behind them first (that copy was
/// every plain value once more). The levels of a page take at most 4 bytes of length, and for
/// each byte of its validity bitmap at most 3 (a run's header and value, or a group's header and
/// the byte), plus a partial last group.
pub(super) fn levels_room(rows: usize) -> usize {
    4 + 3 * rows.div_ceil(8) + 16
}

thread_local! {
    /// Scratch for a page's definition levels, one per thread rather than one per column of every
    /// open file.
    static LEVELS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl PlainColumn {
    pub fn new(descr: ColumnDescPtr, level: ZstdLevel, limits: PageLimits) -> Self {
        let room = levels_room(limits.rows);
        PlainColumn {
            codec: codec_of(descr.name(), level),
            descr,
            level,
            limits,
            room,
            pages: ChunkPages::new(),
            values: vec![0; room],
            valid: BooleanBufferBuilder::new(0),
            rows: 0,
            nulls: 0,
            min_max: None,
        }
    }

    pub fn level(&self) -> ZstdLevel {
        self.level
    }

    pub fn limits(&self) -> PageLimits {
        self.limits
    }

    /// Bytes held: finished pages and the open page.
    pub fn memory_size(&self) -> usize {
        self.pages.memory_size() + self.values.capacity() + self.valid.capacity() / 8
    }

    /// Bytes of values in the open page.
    fn page_bytes(&self) -> usize {
        self.values.len() - self.room
    }

    /// Adds `array`'s rows (a Utf8 array).
    pub fn write(&mut self, array: &dyn Array) -> Result<()> {
        let array = array.as_any().downcast_ref::<StringArray>().expect("plain columns are Utf8");
        let (offsets, data) = (array.value_offsets(), array.value_data());
        let value = |row: usize| &data[offsets[row] as usize..offsets[row + 1] as usize];
        self.write_rows(array.len(), array.nulls().map(|n| n.inner()), value)
    }

    /// Adds `rows` rows: `valid` says which hold a value (all of them if `None`), and `value` is
    /// asked for each of those, in row order.
    pub fn write_rows<'a>(
        &mut self,
        rows: usize,
        valid: Option<&BooleanBuffer>,
        mut value: impl FnMut(usize) -> &'a [u8],
    ) -> Result<()> {
        let nulls = valid.map_or(0, |v| v.len() - v.count_set_bits());
        check_required(&self.descr, nulls)?;
        let mut row = 0;
        while row < rows {
            // Up to the open page's row limit; its byte limit is checked after each value.
            let end = rows.min(row + self.limits.rows - self.valid.len());
            let start = row;
            while row < end {
                if valid.is_none_or(|v| v.value(row)) {
                    let v = value(row);
                    self.values.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    self.values.extend_from_slice(v);
                    MinMax::update(&mut self.min_max, v);
                }
                row += 1;
                if self.page_bytes() >= self.limits.bytes {
                    break;
                }
            }
            match valid {
                Some(v) => self.valid.append_buffer(&v.slice(start, row - start)),
                None => self.valid.append_n(row - start, true),
            }
            if self.valid.len() == self.limits.rows || self.page_bytes() >= self.limits.bytes {
                self.flush_page()?;
            }
        }
        self.rows += rows;
        self.nulls += nulls;
        Ok(())
    }

    fn flush_page(&mut self) -> Result<()> {
        let rows = self.valid.len();
        if rows == 0 {
            return Ok(());
        }
        let valid = self.valid.finish();
        let written = LEVELS.with_borrow_mut(|levels| {
            levels.clear();
            if self.descr.max_def_level() > 0 {
                put_def_levels(&valid, levels);
            }
            // The levels go right in front of the values, in the room left for them.
            let Some(start) = self.room.checked_sub(levels.len()) else {
                // Beyond the bound above, which `put_def_levels` keeps; copied together then.
                levels.extend_from_slice(&self.values[self.room..]);
                return self.pages.data_page(levels, rows, Encoding::PLAIN, self.codec);
            };
            self.values[start..self.room].copy_from_slice(levels);
            self.pages.data_page(&self.values[start..], rows, Encoding::PLAIN, self.codec)
        });
        self.values.truncate(self.room);
        written
    }

    /// Encodes the column chunk: its bytes (which start at offset 0) and what the row group
    /// needs to splice them in.
    pub fn close(mut self) -> Result<(Bytes, ColumnCloseResult)> {
        self.flush_page()?;
        let min_max = self.min_max.as_ref().map(|m| (m.min.as_slice(), m.max.as_slice()));
        let stats = string_statistics(min_max, self.nulls as u64, self.limits.statistics_bytes);
        self.pages.close(self.descr, self.level, self.rows, Encoding::PLAIN, stats)
    }
}

#[cfg(test)]
mod tests {
    use arrow_buffer::BooleanBuffer;
    use parquet::basic::ZstdLevel;

    use super::super::pages::put_def_levels;
    use super::{Codec, MinMax, codec_of, head, levels_room};

    /// The parquet crate's default page row limit, which s3logs keeps.
    const PAGE_ROWS: usize = parquet::file::properties::DEFAULT_DATA_PAGE_ROW_COUNT_LIMIT;

    /// The room left for a page's levels holds them for every validity pattern of a full page:
    /// the patterns that cost the encoder most bytes per bitmap byte (a lone byte of mixed bits
    /// between runs of two equal constant bytes; single constant bytes between mixed ones), and
    /// seeded random ones, with a partial last group.
    #[test]
    fn a_full_page_of_definition_levels_fits_the_room_left_for_it() {
        let mut patterns: Vec<Vec<u8>> = vec![
            [0x55, 0xff, 0xff].repeat(PAGE_ROWS / 24 + 1),
            [0x55, 0x00, 0x00, 0x55, 0xff].repeat(PAGE_ROWS / 40 + 1),
            [0x55, 0xff].repeat(PAGE_ROWS / 16 + 1),
            [0xff, 0x00].repeat(PAGE_ROWS / 16 + 1),
        ];
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        patterns.push(
            (0..PAGE_ROWS / 8 + 1)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    [0x00, 0xff, 0x55, 0x01][(x % 4) as usize]
                })
                .collect(),
        );
        let mut largest = 0;
        for bytes in &patterns {
            for rows in [PAGE_ROWS, PAGE_ROWS - 3] {
                let valid = BooleanBuffer::new(bytes.clone().into(), 0, rows);
                let mut out = Vec::new();
                put_def_levels(&valid, &mut out);
                largest = largest.max(out.len());
            }
        }
        let room = levels_room(PAGE_ROWS);
        assert!(largest <= room, "{largest} bytes of levels, room for {room}");
        // The worst pattern does come near the bound, so the test would see a bound too tight.
        assert!(largest > room / 2, "{largest}");
    }

    #[test]
    fn random_text_columns_get_their_codec_at_the_default_level_only() {
        let level = |l| ZstdLevel::try_new(l).unwrap();
        assert_eq!(codec_of("hostid", level(1)), Codec::RandomText);
        assert_eq!(codec_of("requestid", level(1)), Codec::RandomText);
        assert_eq!(codec_of("hostid", level(3)), Codec::Level(3));
        assert_eq!(codec_of("key", level(1)), Codec::Level(1));
    }

    #[test]
    fn min_and_max_agree_with_byte_order_when_heads_tie_or_are_short() {
        let values: Vec<&[u8]> = vec![
            b"photos/2024/b",
            b"photos/2024/a",
            b"photos/2",
            b"photos/",
            b"",
            b"photos/2024/\xff",
            b"photos/2024/a\x00",
            b"zz",
            b"z",
            b"\x00",
        ];
        let mut m = None;
        for (i, v) in values.iter().enumerate() {
            MinMax::update(&mut m, v);
            let m = m.as_ref().unwrap();
            let seen = &values[..=i];
            assert_eq!(m.min.as_slice(), *seen.iter().min().unwrap(), "after {i}");
            assert_eq!(m.max.as_slice(), *seen.iter().max().unwrap(), "after {i}");
            assert_eq!((m.min_head, m.max_head), (head(&m.min), head(&m.max)));
        }
    }
}
