//! A one-pass parser for the layout nearly every line has, tried before the careful parser.
//!
//! AWS writes single spaces between fields, a requester of one token, and quoted fields that close
//! at their first candidate quote (a `"` followed by a space). On such a line every look-ahead of
//! the careful parser ([`super::tokenizer::parse_line_careful`]) succeeds at its first try, yet it
//! finds the same token ends several times over while it checks. This parser finds every space of
//! the line once and reads the fields by token index, making only the checks the careful parser
//! makes on that first try. Whenever a line leaves the layout (a doubled space, a requester or Host
//! Id of two tokens, a quoted field whose first candidate quote does not fit, anything the careful
//! parser would reject) it answers `None` and the careful parser decides. So it decides nothing on
//! its own: its answer is the careful parser's or none, and a differential test holds it to that.
//!
//! It works in two steps, so that a converter can put a line's values straight into its builders
//! with no cells in between: [`scan`] makes every check and finds what the line's fields are, and
//! [`Common::emit`], which cannot fail, hands each column's value to a [`Row`]. [`parse`] does both
//! into an array of cells, as the careful parser answers.

use std::ops::Range;

use super::fields::{
    field_str, find_spliced_time, is_bucket_name, is_method, is_operation, is_sigv, number_value, starts_quote,
    unquoted_value,
};
use super::line::{Cell, LOG_COLUMNS, ParsedLine};
use super::time::{TIME_FIELD_LEN, Timestamp, parse_time_field};
use crate::schema::col;

/// Lines with more tokens than this (long User-Agents) go to the careful parser. A power of two,
/// so that a masked index needs no bounds check.
const MAX_TOKENS: usize = 128;

/// Where the tokens of a line with single spaces end, and where its last `[` and last `"` are.
/// Kept by the caller across lines, so that its array is not set up again for every line.
pub struct Tokens {
    /// `bounds[0]` is -1 (wrapped); `bounds[i + 1]` is the end of token `i` (a space, or the
    /// line's end), so token `i` is `bounds[i] + 1..bounds[i + 1]`.
    bounds: [u32; MAX_TOKENS + 1],
    count: usize,
    last_bracket: Option<u32>,
    first_quote: Option<u32>,
    last_quote: Option<u32>,
}

impl Default for Tokens {
    fn default() -> Self {
        let mut bounds = [0; MAX_TOKENS + 1];
        bounds[0] = u32::MAX;
        Tokens { bounds, count: 0, last_bracket: None, first_quote: None, last_quote: None }
    }
}

/// Bit `i` set where byte `i` of the block is `byte` (SSE2 on x86-64, through `wide`).
fn byte_mask(block: wide::u8x32, byte: u8) -> u32 {
    block.simd_eq(wide::u8x32::splat(byte)).to_bitmask()
}

impl Tokens {
    /// Finds the tokens of `b`; `false` for an empty line, a space at either end, two spaces in a
    /// row, or too many tokens.
    fn split(&mut self, b: &[u8]) -> bool {
        self.count = 0;
        self.last_bracket = None;
        self.first_quote = None;
        self.last_quote = None;
        if b.first().is_none_or(|&c| c == b' ') || b[b.len() - 1] == b' ' || b.len() >= u32::MAX as usize {
            return false;
        }
        // Whole blocks, then the rest padded with zeros (none of the bytes looked for).
        let blocks = b.chunks_exact(32);
        let mut last = [0u8; 32];
        last[..blocks.remainder().len()].copy_from_slice(blocks.remainder());
        let (mut base, mut carry, mut spaces) = (0u32, 0u64, 0usize);
        for block in blocks.map(|block| block.try_into().expect("32 bytes")).chain([last]) {
            let v = wide::u8x32::new(block);
            let (brackets, quotes) = (byte_mask(v, b'['), byte_mask(v, b'"'));
            if brackets != 0 {
                self.last_bracket = Some(base + 31 - brackets.leading_zeros());
            }
            if quotes != 0 {
                self.first_quote.get_or_insert(base + quotes.trailing_zeros());
                self.last_quote = Some(base + 31 - quotes.leading_zeros());
            }
            if !self.take(byte_mask(v, b' '), base, &mut carry, &mut spaces) {
                return false;
            }
            base += 32;
        }
        self.bounds[spaces + 1] = b.len() as u32;
        self.count = spaces + 1;
        true
    }

    /// Adds the spaces of one block (bit `i` of `m` is byte `base + i`); `false` for two spaces in
    /// a row (also across blocks) or too many tokens.
    fn take(&mut self, mut m: u32, base: u32, carry: &mut u64, spaces: &mut usize) -> bool {
        let pair = u64::from(m) << 1 | *carry >> 32;
        *carry = u64::from(m) << 1;
        if pair & (pair >> 1) != 0 || *spaces + m.count_ones() as usize >= MAX_TOKENS {
            return false;
        }
        let mut n = *spaces;
        while m != 0 {
            n += 1;
            self.bounds[n & (MAX_TOKENS - 1)] = base + m.trailing_zeros();
            m &= m - 1;
        }
        *spaces = n;
        true
    }

    fn span(&self, i: usize) -> Range<usize> {
        debug_assert!(i < self.count);
        let i = i & (MAX_TOKENS - 1);
        self.bounds[i].wrapping_add(1) as usize..self.bounds[i + 1] as usize
    }
}

/// A line and its tokens.
#[derive(Clone, Copy)]
struct View<'a, 't> {
    s: &'a str,
    t: &'t Tokens,
}

impl<'a> View<'a, '_> {
    fn span(&self, i: usize) -> Range<usize> {
        self.t.span(i)
    }

    fn bytes(&self, i: usize) -> &'a [u8] {
        &self.s.as_bytes()[self.span(i)]
    }

    fn str_at(&self, i: usize) -> &'a str {
        &self.s[self.span(i)]
    }

    /// The token holding the closing quote of a field that opens at token `open`: the first token
    /// from `open` on that ends in a quote other than the opening one.
    fn first_closing(&self, open: usize) -> Option<usize> {
        (open..self.t.count).find(|&k| {
            let t = self.span(k);
            self.s.as_bytes()[t.end - 1] == b'"' && (k > open || t.len() >= 2)
        })
    }

    /// The careful parser's test of what follows a User-Agent that ends at token `ua`: no quote
    /// (the User-Agent closes at the line's last one), and nothing, or a Version Id and a Host Id
    /// of one token and then a signature version. (Its allowance for a two-token Host Id is left
    /// out: such a line goes to the careful parser.)
    fn fits_after_user_agent(&self, ua: usize) -> bool {
        let n = self.t.count - ua - 1;
        self.t.last_quote.is_none_or(|q| (q as usize) < self.span(ua).end) && (n < 3 || is_sigv(self.bytes(ua + 3)))
    }
}

/// Where a line's values go, one call per column, each of the column's type; `None` is NULL.
pub trait Row<'a> {
    fn text(&mut self, column: usize, v: Option<&'a str>);
    fn int(&mut self, column: usize, v: Option<i64>);
    fn time(&mut self, column: usize, millis: i64);
}

impl<'a> Row<'a> for [Cell<'a>; LOG_COLUMNS] {
    fn text(&mut self, column: usize, v: Option<&'a str>) {
        self[column] = Cell::text(v);
    }

    fn int(&mut self, column: usize, v: Option<i64>) {
        self[column] = Cell::int(v);
    }

    fn time(&mut self, column: usize, millis: i64) {
        self[column] = Cell::Ts(millis);
    }
}

/// A line of the common layout, checked: what [`Common::emit`] needs to put its cells.
pub struct Common {
    pub time: Timestamp,
    quoted_uri: bool,
    uri_end: usize,
    /// HTTP status, bytes sent, object size, total time, turn-around time.
    numbers: [Option<i64>; 5],
    referer: usize,
    referer_end: usize,
    ua: usize,
    ua_end: usize,
}

/// Checks whether `s` has the common layout, finding its tokens into `tokens`; `None` leaves the
/// line to the careful parser. Every check is made here, so that [`Common::emit`] cannot fail.
pub fn scan(s: &str, tokens: &mut Tokens) -> Option<Common> {
    // Owner, bucket, time (two tokens), IP, requester, request id, operation, key, a Request-URI
    // of at least one token, seven fields after it and a User-Agent: 18 at least.
    if !tokens.split(s.as_bytes()) || tokens.count < 18 {
        return None;
    }
    let t = View { s, t: tokens };
    let b = s.as_bytes();
    if !is_bucket_name(t.str_at(1)) {
        return None;
    }

    // The time is tokens 2 and 3 exactly when it parses: its layout has no other space. A second
    // time further on means spliced records, which the careful parser rejects.
    let time_at = t.span(2).start;
    let time_end = time_at + TIME_FIELD_LEN;
    let time = parse_time_field(b.get(time_at..time_end)?)?;
    if t.span(3).end != time_end
        || tokens.last_bracket.is_some_and(|at| at as usize >= time_end && find_spliced_time(b, time_end).is_some())
    {
        return None;
    }

    // A requester of one token: the operation is the third token after the IP. The fields before
    // the Request-URI hold no quote (the careful parser rejects one, or reads `"-"` as NULL).
    if !is_operation(t.bytes(7)) || tokens.first_quote.is_some_and(|q| (q as usize) < t.span(9).start) {
        return None;
    }

    // The Request-URI closes at its first candidate quote, and the fields after it must fit there:
    // status, error code, four numbers, a quoted or `-` Referer.
    let quoted_uri = starts_quote(t.bytes(9));
    let uri_end = match quoted_uri {
        true => t.first_closing(9)?,
        false if t.bytes(9) == b"-" => 9,
        false => return None,
    };
    let after = uri_end + 1;
    if after + 7 > tokens.count || t.bytes(after + 1).contains(&b'"') {
        return None;
    }
    let numbers = [
        number_value(t.bytes(after), 9)?,
        // AWS writes Bytes Sent as `-` when it is zero.
        number_value(t.bytes(after + 2), 18)?.or(Some(0)),
        number_value(t.bytes(after + 3), 18)?,
        number_value(t.bytes(after + 4), 18)?,
        number_value(t.bytes(after + 5), 18)?,
    ];
    let referer = after + 6;
    let quoted_referer = starts_quote(t.bytes(referer));
    if !quoted_referer && t.bytes(referer) != b"-" {
        return None;
    }

    // The User-Agent. A quoted Referer closes at its first candidate only if a `-` or quoted
    // User-Agent follows that fits there; a quoted User-Agent only where its tail fits.
    let referer_end = if quoted_referer { t.first_closing(referer)? } else { referer };
    let ua = referer_end + 1;
    if ua >= tokens.count {
        return None;
    }
    let ua_end = if starts_quote(t.bytes(ua)) {
        t.first_closing(ua)?
    } else if t.bytes(ua) == b"-" {
        ua
    } else {
        return None;
    };
    if !t.fits_after_user_agent(ua_end) {
        return None;
    }
    Some(Common { time, quoted_uri, uri_end, numbers, referer, referer_end, ua, ua_end })
}

impl Common {
    /// The bucket's name, as its cell holds it.
    pub fn bucket<'a>(&self, s: &'a str, tokens: &Tokens) -> Option<&'a str> {
        unquoted_value(&s[tokens.span(1)])
    }

    /// Puts the line's cells into `row`, each column once, in column order. `tokens` are the ones
    /// [`scan`] found for `s`.
    #[inline]
    pub fn emit<'a>(&self, s: &'a str, tokens: &Tokens, row: &mut impl Row<'a>) {
        let t = View { s, t: tokens };
        row.text(col::BUCKETOWNER, unquoted_value(t.str_at(0)));
        row.text(col::BUCKET, unquoted_value(t.str_at(1)));
        row.time(col::REQUESTDATETIME, self.time.millis);
        row.text(col::REMOTEIP, unquoted_value(t.str_at(4)));
        row.text(col::REQUESTER, unquoted_value(t.str_at(5)));
        row.text(col::REQUESTID, unquoted_value(t.str_at(6)));
        row.text(col::OPERATION, unquoted_value(t.str_at(7)));
        row.text(col::KEY, unquoted_value(t.str_at(8)));
        let [method, path, proto] = request_uri(t, self.quoted_uri, self.uri_end);
        row.text(col::REQUESTURI_OPERATION, method);
        row.text(col::REQUESTURI_KEY, path);
        row.text(col::REQUESTURI_HTTPPROTOVERSION, proto);
        let [status, sent, size, total, turnaround] = self.numbers;
        row.int(col::HTTPSTATUS, status);
        row.text(col::ERRORCODE, unquoted_value(t.str_at(self.uri_end + 2)));
        row.int(col::BYTESSENT, sent);
        row.int(col::OBJECTSIZE, size);
        row.int(col::TOTALTIME, total);
        row.int(col::TURNAROUNDTIME, turnaround);
        row.text(col::REFERRER, field_str(s, t.span(self.referer).start..t.span(self.referer_end).end));
        row.text(col::USERAGENT, field_str(s, t.span(self.ua).start..t.span(self.ua_end).end));

        // Version Id, Host Id, then the fields AWS added over the years, then anything newer as
        // one value; NULL for each the line does not reach.
        let count = tokens.count;
        let mut next = self.ua_end + 1;
        for column in col::VERSIONID..=col::SOURCEREGION {
            if next < count {
                row.text(column, unquoted_value(t.str_at(next)));
                next += 1;
            } else {
                row.text(column, None);
            }
        }
        row.text(col::EXTRAFIELDS, (next < count).then(|| &s[t.span(next).start..]));
    }
}

/// The line's cells when it has the common layout; `None` leaves the line to the careful parser.
pub fn parse(s: &str) -> Option<ParsedLine<'_>> {
    let mut tokens = Tokens::default();
    let common = scan(s, &mut tokens)?;
    let time = common.time;
    let mut cells: [Cell<'_>; LOG_COLUMNS] = std::array::from_fn(|_| Cell::Null);
    common.emit(s, &tokens, &mut cells);
    Some(ParsedLine { cells, time })
}

/// Method, path and protocol of the Request-URI in tokens 9 to `end`, split as the careful
/// parser's `split_request_uri` splits the field's value: the first word is the method only if
/// [`is_method`] says so (else it starts the path), and the last is the protocol when it starts
/// with `HTTP/`. With single spaces those are the token boundaries.
fn request_uri<'a>(t: View<'a, '_>, quoted: bool, end: usize) -> [Option<&'a str>; 3] {
    let s = t.s;
    // The value without its quotes.
    let (from, to) = if quoted { (t.span(9).start + 1, t.span(end).end - 1) } else { (t.span(9).start, t.span(9).end) };
    let first = &s[from..if end == 9 { to } else { t.span(9).end }];
    if end == 9 && (first == "-" || is_method(first.as_bytes())) {
        // A bare `-`, or a quoted value that is `-` (a quoted `"-"` inside stays text, as the
        // careful parser reads it); or a method alone.
        return [(first != "-").then_some(first), None, None];
    }
    let (method, path_from, first_token) = match is_method(first.as_bytes()) {
        true => (Some(first), t.span(10).start, 10),
        false => (None, from, 9),
    };
    let last = t.span(end).start.max(from);
    if end > first_token && s.as_bytes()[last..to].starts_with(b"HTTP/") {
        [method, Some(&s[path_from..t.span(end - 1).end]), Some(&s[last..to])]
    } else if end == first_token && s.as_bytes()[path_from..to].starts_with(b"HTTP/") {
        [method, None, Some(&s[path_from..to])]
    } else {
        [method, Some(&s[path_from..to]), None]
    }
}

#[cfg(test)]
mod tests {
    use super::Tokens;

    /// Against `split(' ')`, for lines of every length across two 32-byte blocks and a remainder,
    /// with a space at every place, two spaces at every place (also across a block boundary), and
    /// `[` and `"` around them.
    #[test]
    fn tokens_are_the_words_between_single_spaces() {
        for len in 1..80 {
            let base: Vec<u8> = (0..len).map(|i| b"ab[c\"de"[i % 7]).collect();
            for at in 0..len {
                for run in 1..=2 {
                    let mut l = base.clone();
                    for c in l.iter_mut().skip(at).take(run) {
                        *c = b' ';
                    }
                    let text = String::from_utf8(l.clone()).unwrap();
                    let mut t = Tokens::default();
                    let words: Vec<&str> = text.split(' ').collect();
                    let clean = !words.iter().any(|w| w.is_empty());
                    assert_eq!(t.split(&l), clean, "{text:?}");
                    if clean {
                        let got: Vec<&str> = (0..t.count).map(|i| &text[t.span(i)]).collect();
                        assert_eq!(got, words, "{text:?}");
                    }
                    let last = |c: u8| l.iter().rposition(|&x| x == c).map(|i| i as u32);
                    if clean {
                        assert_eq!(t.last_bracket, last(b'['), "{text:?}");
                        assert_eq!(t.last_quote, last(b'"'), "{text:?}");
                        let first = l.iter().position(|&x| x == b'"').map(|i| i as u32);
                        assert_eq!(t.first_quote, first, "{text:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn too_many_tokens_is_left_to_the_careful_parser() {
        let fits = vec!["a"; super::MAX_TOKENS].join(" ");
        assert!(Tokens::default().split(fits.as_bytes()));
        let over = vec!["a"; super::MAX_TOKENS + 1].join(" ");
        assert!(!Tokens::default().split(over.as_bytes()));
    }
}
