//! What a parsed line is: one [`Cell`] per column of the table contract, in table order
//! ([`ParsedLine`]), or the [`RejectReason`] a line is not a record, with its stable code and
//! message.

use std::borrow::Cow;
use std::fmt;

use super::time::Timestamp;
use crate::schema::col;

/// Cells filled by the parser: every column up to (not including) `source_object`.
pub const LOG_COLUMNS: usize = col::SOURCE_OBJECT;

/// The fewest fields a record may have (old records end after the User-Agent).
pub const MIN_FIELDS: usize = 17;

/// One typed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell<'a> {
    Null,
    Str(Cow<'a, str>),
    Int(i64),
    /// Milliseconds since the epoch, UTC.
    Ts(i64),
}

impl<'a> Cell<'a> {
    /// A text value's cell; `None` is NULL.
    pub fn text(v: Option<&'a str>) -> Self {
        v.map_or(Cell::Null, |v| Cell::Str(Cow::Borrowed(v)))
    }

    /// A number's cell; `None` is NULL.
    pub fn int(v: Option<i64>) -> Self {
        v.map_or(Cell::Null, Cell::Int)
    }
}

/// A line that parsed: its cells in column order and its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedLine<'a> {
    pub cells: [Cell<'a>; LOG_COLUMNS],
    pub time: Timestamp,
}

/// Why a line is a reject. Each names the field and the offending value where there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    Empty,
    TooLong {
        len: usize,
        limit: usize,
    },
    /// The rest of an object past `--max-object-bytes` (decompressed), not read.
    TooLarge {
        limit: u64,
    },
    Truncated {
        fields: usize,
    },
    BadTime {
        value: String,
    },
    UnterminatedQuote {
        field: &'static str,
    },
    BadNumber {
        field: &'static str,
        value: String,
    },
    Spliced {
        byte: usize,
    },
    BadBucket {
        value: String,
    },
    /// A record dated far from its log object's key date (the day in its name): S3 delivers a
    /// record within hours, or days at the most, of its time.
    FarFromKeyDate {
        day: i32,
        first: i32,
        last: i32,
    },
    /// A record of an object whose name has no date, dated far from the object's first record.
    FarFromFirstRecord {
        day: i32,
        first: i32,
        last: i32,
    },
    /// A legacy bucket name too long for a `source_bucket=` partition folder.
    BucketTooLong {
        len: usize,
        limit: usize,
    },
    /// A field that does not have its shape: an operation that is not one, a bare Referer or
    /// User-Agent other than `-`, a server-written field holding a quote, a signature version
    /// field holding something else.
    BadField {
        field: &'static str,
        value: String,
    },
}

impl RejectReason {
    /// A short stable code, for counting rejects by kind.
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::Empty => "empty",
            RejectReason::TooLong { .. } => "too_long",
            RejectReason::TooLarge { .. } => "too_large",
            RejectReason::Truncated { .. } => "truncated",
            RejectReason::BadTime { .. } => "bad_time",
            RejectReason::UnterminatedQuote { .. } => "unterminated_quote",
            RejectReason::BadNumber { .. } => "bad_number",
            RejectReason::Spliced { .. } => "spliced",
            RejectReason::BadBucket { .. } | RejectReason::BucketTooLong { .. } => "bad_bucket",
            RejectReason::FarFromKeyDate { .. } => "far_from_key_date",
            RejectReason::FarFromFirstRecord { .. } => "far_from_first_record",
            RejectReason::BadField { .. } => "bad_field",
        }
    }
}

/// Values quoted in reasons are cut so a garbage line cannot make a huge message.
pub(crate) fn shown(v: &str) -> String {
    const MAX: usize = 64;
    if v.len() <= MAX {
        return v.to_string();
    }
    let mut end = MAX;
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &v[..end])
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::Empty => write!(f, "empty line"),
            RejectReason::TooLong { len, limit } => {
                write!(f, "line is {len} bytes, over the limit of {limit} (raw bytes kept up to the limit)")
            }
            RejectReason::TooLarge { limit } => write!(
                f,
                "the object's content goes on past --max-object-bytes ({limit} bytes after decompression); \
                 the rest was not read (its first bytes kept)"
            ),
            RejectReason::Truncated { fields } => {
                write!(f, "truncated: {fields} fields, a record has at least {MIN_FIELDS}")
            }
            RejectReason::BadTime { value } => write!(f, "field requestdatetime: unparsable time {:?}", shown(value)),
            RejectReason::UnterminatedQuote { field } => write!(f, "field {field}: quoted value has no closing quote"),
            RejectReason::BadNumber { field, value } => write!(f, "field {field}: not a number: {:?}", shown(value)),
            RejectReason::Spliced { byte } => {
                write!(f, "spliced records: a second record's time starts at byte {byte}")
            }
            RejectReason::BadBucket { value } => write!(f, "field bucket: not a bucket name: {:?}", shown(value)),
            RejectReason::FarFromKeyDate { day, first, last } => {
                let d = super::time::format_day;
                write!(
                    f,
                    "field requestdatetime: {} is outside {}..{}, the days its log object's key date allows \
                     (--key-date-slack)",
                    d(*day),
                    d(*first),
                    d(*last)
                )
            }
            RejectReason::FarFromFirstRecord { day, first, last } => {
                let d = super::time::format_day;
                write!(
                    f,
                    "field requestdatetime: {} is outside {}..{}, the days its log object's first record allows \
                     (its name has no date; --key-date-slack)",
                    d(*day),
                    d(*first),
                    d(*last)
                )
            }
            RejectReason::BucketTooLong { len, limit } => write!(
                f,
                "field bucket: a {len}-byte bucket name does not fit a partition folder (at most {limit} bytes); \
                 partition by dt alone to keep such records"
            ),
            RejectReason::BadField { field, value } => {
                write!(f, "field {field}: {:?} does not have the field's shape", shown(value))
            }
        }
    }
}
