//! Parsed lines into Arrow record batches, routed to their UTC day while parsing.
//!
//! [`Rows`] is the unit of parallel work: it walks newline-aligned pieces of log objects (one
//! chunk of a large object, or several small objects one after the other), parses every line,
//! appends each row to the builder of its day and each failure to the rejects builder, and returns
//! the counts the report is built from, then the finished batches. [`parse_chunk`] does this for
//! one piece. Every line ends as exactly one row or one reject. A line of the common layout goes
//! from the one-pass parser straight into its day's builders ([`Row`]); any other line is parsed
//! into cells by the careful parser first.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, Int32Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_buffer::{BooleanBufferBuilder, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};

use crate::access_log::common_layout::Row;
use crate::access_log::{Cell, LineParser, Parsed, ParsedLine, RejectReason};
use crate::rows::lines::{Frame, Line, for_each_line};
use crate::rows::partition::MAX_BUCKET_FOLDER_NAME;
use crate::rows::partition::PartitionKey;
use crate::rows::partition::too_long_for_a_folder;
use crate::schema::{FIELDS, FieldDef, Kind, arrow_schema, col, reject_schema};

/// Rough bytes per log line, to size builders before filling them.
const BYTES_PER_LINE: usize = 300;

/// A string column's values laid out as Arrow's `Utf8` array is (bytes, then where each value
/// ends), appended inline: Arrow's `StringBuilder` was a call per value, over 25 string columns
/// (docs/performance.md, "Figures behind the code"). Most columns see long runs of rows without a
/// null, so validity is kept only from the first null on.
struct TextBuilder {
    values: Vec<u8>,
    /// Where each value ends in `values`, after a leading 0: one more than the rows.
    offsets: Vec<i32>,
    /// One bit per row, from the first null on; `None` while every row holds a value.
    valid: Option<BooleanBufferBuilder>,
}

impl TextBuilder {
    fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        TextBuilder { values: Vec::with_capacity(bytes), offsets, valid: None }
    }

    fn rows(&self) -> usize {
        self.offsets.len() - 1
    }

    #[inline(always)]
    fn push(&mut self, v: &str) {
        self.values.extend_from_slice(v.as_bytes());
        // Wraps past 2 GiB, which `finish` refuses: the ends only grow, so the last one tells.
        self.offsets.push(self.values.len() as i32);
        if let Some(valid) = &mut self.valid {
            valid.append(true);
        }
    }

    #[inline(always)]
    fn push_null(&mut self) {
        match &mut self.valid {
            Some(valid) => valid.append(false),
            None => self.first_null(),
        }
        self.offsets.push(self.values.len() as i32);
    }

    /// Starts the validity bits: every row so far holds a value, the next does not.
    #[cold]
    fn first_null(&mut self) {
        let mut valid = BooleanBufferBuilder::new(self.offsets.capacity());
        valid.append_n(self.rows(), true);
        valid.append(false);
        self.valid = Some(valid);
    }

    fn finish(self) -> StringArray {
        assert!(i32::try_from(self.values.len()).is_ok(), "a batch's string column holds more than 2 GiB");
        // SAFETY: each value was appended whole from a `&str`, so the bytes are UTF-8 and every
        // end lies on a character boundary; the ends start at 0, never fall (no value makes one
        // smaller, and none wrapped, as the assertion says) and the last is the bytes' length.
        let offsets = unsafe { OffsetBuffer::new_unchecked(ScalarBuffer::from(self.offsets)) };
        let nulls = self.valid.map(|mut v| NullBuffer::new(v.finish()));
        unsafe { StringArray::new_unchecked(offsets, Buffer::from_vec(self.values), nulls) }
    }
}

enum ColumnBuilder {
    Str(TextBuilder),
    I32(Int32Builder),
    I64(Int64Builder),
    Ts(TimestampMillisecondBuilder),
}

impl ColumnBuilder {
    fn new(f: &FieldDef, rows: usize) -> Self {
        match f.kind {
            Kind::Utf8 => ColumnBuilder::Str(TextBuilder::with_capacity(rows, rows * f.width)),
            Kind::Int32 => ColumnBuilder::I32(Int32Builder::with_capacity(rows)),
            Kind::Int64 => ColumnBuilder::I64(Int64Builder::with_capacity(rows)),
            Kind::TimestampMs => {
                ColumnBuilder::Ts(TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC"))
            }
            Kind::Binary => unreachable!("the data table has no binary column"),
        }
    }

    fn append_null(&mut self) {
        match self {
            ColumnBuilder::Str(b) => b.push_null(),
            ColumnBuilder::I32(b) => b.append_null(),
            ColumnBuilder::I64(b) => b.append_null(),
            ColumnBuilder::Ts(b) => b.append_null(),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            ColumnBuilder::Str(b) => Arc::new(b.finish()),
            ColumnBuilder::I32(mut b) => Arc::new(b.finish()),
            ColumnBuilder::I64(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Ts(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Builders for the rows of one day.
struct DayBuilder {
    columns: Vec<ColumnBuilder>,
}

impl DayBuilder {
    fn new(rows: usize) -> Self {
        DayBuilder { columns: FIELDS.iter().map(|f| ColumnBuilder::new(f, rows)).collect() }
    }

    /// Appends the careful parser's cells, through the same typed appends as the one-pass parser.
    fn append(&mut self, line: &ParsedLine<'_>) {
        for (column, cell) in line.cells.iter().enumerate() {
            match cell {
                Cell::Str(v) => self.text(column, Some(v)),
                Cell::Int(v) => self.int(column, Some(*v)),
                Cell::Ts(v) => self.time(column, *v),
                Cell::Null => self.columns[column].append_null(),
            }
        }
    }

    /// Ends a row whose cells were put: the object and line it came from.
    fn end_row(&mut self, source: &str, number: u64) {
        if let ColumnBuilder::Str(b) = &mut self.columns[col::SOURCE_OBJECT] {
            b.push(source);
        }
        if let ColumnBuilder::I64(b) = &mut self.columns[col::SOURCE_LINE] {
            b.append_value(number as i64);
        }
    }

    fn finish(self) -> RecordBatch {
        let arrays = self.columns.into_iter().map(ColumnBuilder::finish).collect();
        RecordBatch::try_new(arrow_schema(), arrays).expect("builders follow the field table")
    }
}

impl<'a> Row<'a> for DayBuilder {
    #[inline(always)]
    fn text(&mut self, column: usize, v: Option<&'a str>) {
        let ColumnBuilder::Str(b) = &mut self.columns[column] else { unreachable!("column {column} is not text") };
        match v {
            Some(v) => b.push(v),
            None => b.push_null(),
        }
    }

    #[inline(always)]
    fn int(&mut self, column: usize, v: Option<i64>) {
        match (&mut self.columns[column], v) {
            (ColumnBuilder::I32(b), Some(v)) => b.append_value(v as i32),
            (ColumnBuilder::I64(b), Some(v)) => b.append_value(v),
            (ColumnBuilder::I32(b), None) => b.append_null(),
            (ColumnBuilder::I64(b), None) => b.append_null(),
            _ => unreachable!("column {column} is not a number"),
        }
    }

    #[inline(always)]
    fn time(&mut self, column: usize, millis: i64) {
        let ColumnBuilder::Ts(b) = &mut self.columns[column] else { unreachable!("column {column} is not a time") };
        b.append_value(millis);
    }
}

/// Builders for rejected lines.
struct RejectBuilder {
    source: StringBuilder,
    line: Int64Builder,
    code: StringBuilder,
    reason: StringBuilder,
    raw: BinaryBuilder,
}

impl RejectBuilder {
    fn new() -> Self {
        RejectBuilder {
            source: StringBuilder::new(),
            line: Int64Builder::new(),
            code: StringBuilder::new(),
            reason: StringBuilder::new(),
            raw: BinaryBuilder::new(),
        }
    }

    fn append(&mut self, source: &str, number: u64, reason: &RejectReason, raw: &[u8]) {
        self.source.append_value(source);
        self.line.append_value(number as i64);
        self.code.append_value(reason.code());
        self.reason.append_value(reason.to_string());
        self.raw.append_value(raw);
    }

    fn finish(mut self) -> Option<RecordBatch> {
        if self.line.len() == 0 {
            return None;
        }
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(self.source.finish()),
            Arc::new(self.line.finish()),
            Arc::new(self.code.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.raw.finish()),
        ];
        Some(RecordBatch::try_new(reject_schema(), arrays).expect("builders follow the reject table"))
    }
}

/// The first rejects of a run, kept to show on stderr and in the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RejectSample {
    pub source_object: String,
    pub source_line: u64,
    pub reason: String,
}

/// How lines are parsed and routed.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions {
    /// A longer line is a reject.
    pub max_line_bytes: usize,
    /// Route rows by source bucket as well as by day.
    pub partition_by_bucket: bool,
    /// The days a record of this object may fall on (first, last), from its key date, or from
    /// its first record's day when its name has no date: a record outside is a reject
    /// (`far_from_key_date`, `far_from_first_record`), so one object cannot open a file per day
    /// for thousands of days. `None`: no bound.
    pub key_days: Option<(i32, i32)>,
    /// The bound is from the object's first record, its name having no date.
    pub days_from_first_record: bool,
}

fn far_from(day: i32, opts: &ParseOptions) -> Option<RejectReason> {
    let (first, last) = opts.key_days?;
    if (first..=last).contains(&day) {
        return None;
    }
    Some(match opts.days_from_first_record {
        true => RejectReason::FarFromFirstRecord { day, first, last },
        false => RejectReason::FarFromKeyDate { day, first, last },
    })
}

/// How far into an object [`first_record_day`] looks.
const FIRST_RECORD_LINES: usize = 100;

const FIRST_RECORD_BYTES: usize = 1 << 20;

/// The day of the first record among the first lines of `head` (the start of an object's
/// content): what bounds the days of an object whose name has no date. `None` when none of them
/// is a record.
pub fn first_record_day(head: &[u8]) -> Option<i32> {
    let mut parser = LineParser::default();
    let head = &head[..head.len().min(FIRST_RECORD_BYTES)];
    head.split(|&b| b == b'\n').take(FIRST_RECORD_LINES).find_map(|line| {
        let text = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line));
        parser.parse(&text).ok().map(|p| p.day())
    })
}

/// What one chunk produced.
#[derive(Default)]
pub struct ChunkOutput {
    /// Finished batches by partition, in partition order.
    pub partitions: Vec<(PartitionKey, RecordBatch)>,
    pub rejects: Option<RecordBatch>,
    pub lines: u64,
    pub rows: u64,
    pub lossy_utf8: u64,
    /// Rejects by reason code.
    pub reject_codes: BTreeMap<&'static str, u64>,
    pub samples: Vec<RejectSample>,
}

impl ChunkOutput {
    pub fn rejected(&self) -> u64 {
        self.reject_codes.values().sum()
    }

    /// These batches, with the counts of `counts` (batches come from [`Rows::finish`], counts
    /// from parsing).
    fn with_counts(self, counts: ChunkOutput) -> ChunkOutput {
        ChunkOutput { partitions: self.partitions, rejects: self.rejects, ..counts }
    }

    /// Adds the counts of another piece parsed into the same builders.
    pub(crate) fn add_counts(&mut self, other: ChunkOutput) {
        self.lines += other.lines;
        self.rows += other.rows;
        self.lossy_utf8 += other.lossy_utf8;
        for (code, n) in other.reject_codes {
            *self.reject_codes.entry(code).or_default() += n;
        }
        let room = MAX_SAMPLES.saturating_sub(self.samples.len());
        self.samples.extend(other.samples.into_iter().take(room));
    }

    /// Counts a reject by its reason code, and keeps it as a sample while there is room.
    fn count_reject(&mut self, source: &str, number: u64, reason: &RejectReason) {
        *self.reject_codes.entry(reason.code()).or_default() += 1;
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(RejectSample {
                source_object: source.to_string(),
                source_line: number,
                reason: reason.to_string(),
            });
        }
    }
}

/// How many reject samples a chunk keeps.
pub const MAX_SAMPLES: usize = 5;

/// Builders filled by consecutive pieces of input on one thread: many small objects parsed into
/// one `Rows` make one batch per partition, not one per object, which is what per-object
/// overhead mostly was (builders, finished arrays, then joining them again).
pub struct Rows {
    parts: Vec<(PartitionKey, DayBuilder)>,
    rejects: RejectBuilder,
    /// Rows the first partition's builders are sized for.
    expected_rows: usize,
}

impl Rows {
    /// Builders sized for about `bytes` of input.
    pub fn with_capacity(bytes: usize) -> Self {
        Rows { parts: Vec::new(), rejects: RejectBuilder::new(), expected_rows: bytes / BYTES_PER_LINE + 1 }
    }

    /// Parses every line of `chunk` (lines numbered from `first_line`) from the object `source` into
    /// these builders, and returns its counts; the batches come from [`Rows::finish`].
    pub fn parse(&mut self, chunk: &[u8], first_line: u64, source: &str, opts: ParseOptions) -> ChunkOutput {
        let max_line = opts.max_line_bytes;
        let (parts, rejects, expected_rows) = (&mut self.parts, &mut self.rejects, self.expected_rows);
        let mut out = ChunkOutput::default();
        let mut parser = LineParser::default();
        let mut reject = |out: &mut ChunkOutput, number: u64, reason: RejectReason, raw: &[u8]| {
            rejects.append(source, number, &reason, raw);
            out.count_reject(source, number, &reason);
        };
        for_each_line(chunk, first_line, max_line, |line| {
            out.lines += 1;
            match line {
                Line::TooLong { number, len, head } => {
                    reject(&mut out, number, RejectReason::TooLong { len, limit: max_line }, head)
                }
                Line::Text { number, text, raw, lossy } => {
                    out.lossy_utf8 += lossy as u64;
                    // Matched in place, not moved out: a parsed line is large.
                    let result = parser.parse(&text);
                    let parsed = match result {
                        Ok(ref parsed) => parsed,
                        Err(reason) => return reject(&mut out, number, reason, raw),
                    };
                    let day = parsed.day();
                    if let Some(reason) = far_from(day, &opts) {
                        return reject(&mut out, number, reason, raw);
                    }
                    let bucket = if opts.partition_by_bucket { parsed.bucket() } else { None };
                    if let Some(long) = bucket.filter(|b| b.len() > MAX_BUCKET_FOLDER_NAME) {
                        return reject(&mut out, number, too_long_for_a_folder(long), raw);
                    }
                    let builder = partition(parts, day, bucket, expected_rows);
                    // A common line's values go straight from the line into its day's builders;
                    // the careful parser's come as cells.
                    match parsed {
                        Parsed::Common { line, text, tokens } => line.emit(text, tokens, builder),
                        Parsed::Careful(cells) => builder.append(cells),
                    }
                    builder.end_row(source, number);
                    out.rows += 1;
                }
            }
        });
        out
    }

    /// Takes one frame of an object's lines: parses a piece, or rejects a line too long to hold.
    pub(crate) fn frame(&mut self, frame: Frame<'_>, source: &str, opts: ParseOptions) -> ChunkOutput {
        match frame {
            Frame::Lines { bytes, first_line } => self.parse(bytes, first_line, source, opts),
            Frame::TooLong { number, len, head } => {
                self.reject(source, number, RejectReason::TooLong { len, limit: opts.max_line_bytes }, head)
            }
        }
    }

    /// Rejects one line (of which `raw` is kept) without parsing it, and returns its counts.
    fn reject(&mut self, source: &str, number: u64, reason: RejectReason, raw: &[u8]) -> ChunkOutput {
        self.rejects.append(source, number, &reason, raw);
        let mut out = ChunkOutput { lines: 1, ..ChunkOutput::default() };
        out.count_reject(source, number, &reason);
        out
    }

    /// The finished batches, by partition in partition order, with no counts (those came from
    /// [`Rows::parse`]).
    pub fn finish(mut self) -> ChunkOutput {
        self.parts.sort_by(|a, b| a.0.cmp(&b.0));
        ChunkOutput {
            partitions: self.parts.into_iter().map(|(k, b)| (k, b.finish())).collect(),
            rejects: self.rejects.finish(),
            ..ChunkOutput::default()
        }
    }
}

/// The builders of the partition of `day` and `bucket`, added when it is new.
fn partition<'p>(
    parts: &'p mut Vec<(PartitionKey, DayBuilder)>,
    day: i32,
    bucket: Option<&str>,
    expected_rows: usize,
) -> &'p mut DayBuilder {
    match parts.iter().position(|(k, _)| k.day == day && k.bucket.as_deref() == bucket) {
        Some(i) => &mut parts[i].1,
        None => {
            let rows = if parts.is_empty() { expected_rows } else { 64 };
            let key = PartitionKey { bucket: bucket.map(str::to_string), day };
            parts.push((key, DayBuilder::new(rows)));
            &mut parts.last_mut().expect("just pushed").1
        }
    }
}

/// Parses every line of `chunk` (lines numbered from `first_line`) from the object `source`.
pub fn parse_chunk(chunk: &[u8], first_line: u64, source: &str, opts: ParseOptions) -> ChunkOutput {
    parse_frame(Frame::Lines { bytes: chunk, first_line }, source, opts)
}

/// One frame of the object `source`, parsed into builders of its own.
pub(crate) fn parse_frame(frame: Frame<'_>, source: &str, opts: ParseOptions) -> ChunkOutput {
    let bytes = match &frame {
        Frame::Lines { bytes, .. } => bytes.len(),
        Frame::TooLong { .. } => 0,
    };
    let mut rows = Rows::with_capacity(bytes);
    let counts = rows.frame(frame, source, opts);
    rows.finish().with_counts(counts)
}

/// A chunk holding one reject and nothing else: the rest of an object past `--max-object-bytes`,
/// of which only the first `head` bytes are kept.
pub fn reject_only(source: &str, number: u64, reason: RejectReason, head: &[u8]) -> ChunkOutput {
    let mut rows = Rows::with_capacity(0);
    let counts = rows.reject(source, number, reason, head);
    rows.finish().with_counts(counts)
}

#[cfg(test)]
mod tests {
    use arrow_array::Array;
    use arrow_array::builder::StringBuilder;
    use proptest::prelude::*;

    use super::TextBuilder;

    proptest! {
        /// The inline builder makes the array Arrow's own builder makes, with nulls first, last,
        /// anywhere or nowhere, growing past the room it was given.
        #[test]
        fn text_columns_match_arrows_string_builder(
            values in proptest::collection::vec(proptest::option::weighted(0.8, "[a-zé/ -]{0,20}"), 0..200)
        ) {
            let mut ours = TextBuilder::with_capacity(4, 8);
            let mut arrows = StringBuilder::new();
            for v in &values {
                match v {
                    Some(v) => {
                        ours.push(v);
                        arrows.append_value(v);
                    }
                    None => {
                        ours.push_null();
                        arrows.append_null();
                    }
                }
            }
            let (ours, arrows) = (ours.finish(), arrows.finish());
            ours.to_data().validate_full().expect("a valid Utf8 array");
            prop_assert_eq!(ours.null_count(), values.iter().filter(|v| v.is_none()).count());
            prop_assert_eq!(ours, arrows);
        }
    }
}
