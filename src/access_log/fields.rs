//! The shape of each field, as both parsers check it: what an operation, a bucket name, a
//! signature version, a number or a server-written text may hold, how a bare or quoted value
//! becomes a cell, and where a second record's time marks two spliced records. One place, so the
//! one-pass parser and the careful one cannot disagree on a field.

use std::borrow::Cow;

use memchr::{memchr, memchr_iter};

use super::time::{TIME_FIELD_LEN, parse_time_field};
use crate::access_log::line::Cell;
use crate::access_log::line::RejectReason;

pub(crate) fn is_num_or_dash(t: &[u8]) -> bool {
    is_dash(t) || (!t.is_empty() && t.iter().all(u8::is_ascii_digit))
}

/// Byte classes for the token checks that run on every line.
const OPERATION_BYTE: u8 = 1;

const BUCKET_BYTE: u8 = 2;

static BYTE_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b'.' {
            t[c] |= OPERATION_BYTE;
        }
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-' {
            t[c] |= BUCKET_BYTE;
        }
        c += 1;
    }
    t
};

/// `REST.GET.OBJECT`, `S3.COMPUTE.OBJECT.CHECKSUM`: upper-case words joined by dots.
pub(crate) fn is_operation(t: &[u8]) -> bool {
    t.first().is_some_and(u8::is_ascii_uppercase)
        && t.iter().all(|&c| BYTE_CLASS[usize::from(c)] & OPERATION_BYTE != 0)
        && memchr(b'.', t).is_some()
}

/// S3 bucket names, legacy ones included: letters, digits, `.`, `_`, `-`, starting with a letter
/// or digit, at most 255 bytes, no `..`. Checked because the name may become a partition folder.
pub fn is_bucket_name(t: &str) -> bool {
    let b = t.as_bytes();
    let mut prev = 0u8;
    !b.is_empty()
        && b.len() <= 255
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|&c| {
            let ok = BYTE_CLASS[usize::from(c)] & BUCKET_BYTE != 0 && !(c == b'.' && prev == b'.');
            prev = c;
            ok
        })
}

pub(crate) fn is_sigv(t: &[u8]) -> bool {
    t == b"-" || t.starts_with(b"SigV")
}

pub(crate) fn starts_quote(t: &[u8]) -> bool {
    t.first() == Some(&b'"')
}

/// Joins the tokens of `v` with single spaces, borrowing when they already are.
pub(crate) fn single_spaced(v: &str) -> Cow<'_, str> {
    let v = v.trim_end_matches(' ');
    if !v.contains("  ") {
        return Cow::Borrowed(v);
    }
    Cow::Owned(v.split(' ').filter(|t| !t.is_empty()).collect::<Vec<_>>().join(" "))
}

/// A bare field's value: `-`, and `"-"` written without separate quotes, are NULL.
pub(super) fn value(v: &str) -> Option<&str> {
    (v != "-" && v != "\"-\"").then_some(v)
}

/// [`value`] for a token known to hold no quote (as every bare token of a line the one-pass
/// parser takes does): only `-` is NULL.
pub(super) fn unquoted_value(v: &str) -> Option<&str> {
    debug_assert!(!v.contains('"'));
    (v != "-").then_some(v)
}

/// A token that stands for "no value" in a bare field.
pub(crate) fn is_dash(t: &[u8]) -> bool {
    t == b"-" || t == b"\"-\""
}

pub(crate) fn text(v: &str) -> Cell<'_> {
    Cell::text(value(v))
}

/// A field S3 writes, which never holds a quote (but for `"-"`, NULL): its cell, or a reject.
pub(crate) fn server_text<'a>(v: &'a str, field: &'static str) -> Result<Cell<'a>, RejectReason> {
    if v.contains('"') && value(v).is_some() {
        return Err(RejectReason::BadField { field, value: v.to_string() });
    }
    Ok(text(v))
}

/// Whether the Request-URI's first word is an HTTP method: an RFC 9110 token (letters, digits
/// and ``!#$%&'*+-.^_`|~``). A path (`/bucket/key`) or an absolute URI in its place is not one, and
/// goes to `requesturi_key` with the method NULL: the method column never holds a path.
pub(crate) fn is_method(v: &[u8]) -> bool {
    !v.is_empty() && v.iter().all(|&c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

/// A number field's value: `-` is NULL; anything else must be 1 to `max_digits` digits.
pub(crate) fn number(v: &str, field: usize, max_digits: usize) -> Result<Cell<'_>, RejectReason> {
    number_cell(v.as_bytes(), max_digits)
        .ok_or_else(|| RejectReason::BadNumber { field: crate::schema::FIELDS[field].name, value: v.to_string() })
}

/// [`number`] without the reason: `None` where that is a reject.
pub(super) fn number_cell(b: &[u8], max_digits: usize) -> Option<Cell<'static>> {
    number_value(b, max_digits).map(Cell::int)
}

/// [`number_cell`]'s value: `Some(None)` for NULL.
pub(super) fn number_value(b: &[u8], max_digits: usize) -> Option<Option<i64>> {
    if b.is_empty() || b.len() > max_digits {
        return None;
    }
    // One pass: each byte is checked and added in; a dash is looked for only past a non-digit.
    let mut n = 0i64;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return is_dash(b).then_some(None);
        }
        n = n * 10 + i64::from(d);
    }
    Some(Some(n))
}

/// The value of a quoted or bare field: quotes stripped, `-` and `"-"` NULL, `""` empty.
pub(crate) fn field_value(s: &str, span: Span) -> Cell<'_> {
    Cell::text(field_str(s, span))
}

/// [`field_value`] as a string.
pub(super) fn field_str(s: &str, span: Span) -> Option<&str> {
    let v = &s[span];
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        let inner = &v[1..v.len() - 1];
        (inner != "-").then_some(inner)
    } else {
        value(v)
    }
}

/// A second record's time inside the line means two records were spliced together.
pub(crate) fn find_spliced_time(b: &[u8], from: usize) -> Option<usize> {
    memchr_iter(b'[', &b[from..]).map(|i| from + i).find(|&i| {
        b[i - 1] == b' ' && i + TIME_FIELD_LEN <= b.len() && parse_time_field(&b[i..i + TIME_FIELD_LEN]).is_some()
    })
}

pub(crate) type Span = std::ops::Range<usize>;
