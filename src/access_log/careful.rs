//! The careful parser: any access log line into the typed cells of the table contract, or a reason.
//!
//! The format is space-separated, but not cleanly: the time holds a space, a requester ARN may
//! hold spaces, quoted fields hold unescaped quotes, a Host Id once came as two tokens, and AWS
//! appends new fields at the end. The parser walks the bytes once with a cursor; where a quote could
//! close a field in more than one place it takes the first place after which the following fields
//! have the shape they must have (status and four numbers after the Request-URI; a Version Id, a
//! Host Id and a signature version after the User-Agent), and the fields S3 writes after the
//! User-Agent are anchored from the line's end. Values borrow from the line; only the rare
//! normalised ones (a requester or Host Id with spaces, extra fields) allocate.

use std::borrow::Cow;

use memchr::{memchr, memchr_iter};

use super::time::{TIME_FIELD_LEN, parse_time_field};
use crate::access_log::fields::Span;
use crate::access_log::fields::field_value;
use crate::access_log::fields::find_spliced_time;
use crate::access_log::fields::is_bucket_name;
use crate::access_log::fields::is_dash;
use crate::access_log::fields::is_method;
use crate::access_log::fields::is_num_or_dash;
use crate::access_log::fields::is_operation;
use crate::access_log::fields::is_sigv;
use crate::access_log::fields::number;
use crate::access_log::fields::server_text;
use crate::access_log::fields::single_spaced;
use crate::access_log::fields::starts_quote;
use crate::access_log::fields::text;
use crate::access_log::line::Cell;
use crate::access_log::line::LOG_COLUMNS;
use crate::access_log::line::ParsedLine;
use crate::access_log::line::RejectReason;
use crate::access_log::line::shown;
use crate::schema::col;

/// The first space at or after `pos`, or the end of the line. Most tokens are short, and one
/// eight-byte word finds their end for less than a `memchr` call costs; longer ones go on with
/// `memchr`.
#[inline]
fn space_from(b: &[u8], pos: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let rest = match b.get(pos..pos + 8) {
        Some(word) => {
            let x = u64::from_le_bytes(word.try_into().expect("eight bytes")) ^ (ONES * u64::from(b' '));
            // The lowest byte flagged is the first zero byte of `x` (a space in `word`); flags
            // above it may be false, but only the lowest is used.
            let zero = x.wrapping_sub(ONES) & !x & (ONES << 7);
            if zero != 0 {
                return pos + (zero.trailing_zeros() / 8) as usize;
            }
            pos + 8
        }
        None => pos,
    };
    memchr(b' ', &b[rest..]).map_or(b.len(), |i| rest + i)
}

fn token_at(b: &[u8], mut pos: usize) -> Option<Span> {
    while pos < b.len() && b[pos] == b' ' {
        pos += 1;
    }
    if pos >= b.len() {
        return None;
    }
    Some(pos..space_from(b, pos))
}

/// Fills `out` with the next tokens from `pos` without moving; returns how many there were.
fn peek_tokens(b: &[u8], mut pos: usize, out: &mut [Span]) -> usize {
    let mut n = 0;
    while n < out.len() {
        match token_at(b, pos) {
            Some(t) => {
                pos = t.end;
                out[n] = t;
                n += 1;
            }
            None => break,
        }
    }
    n
}

/// Splits a Request-URI value into method, path and protocol, so that joining the non-NULL parts
/// with single spaces gives the value back. The first word is the method only if it is one
/// ([`is_method`]); otherwise the method is NULL and the value up to the protocol is the path.
fn split_request_uri(v: &str) -> [Cell<'_>; 3] {
    let borrowed = |s| Cell::Str(Cow::Borrowed(s));
    let (method, rest) = match v.find(' ') {
        Some(sp) if is_method(&v.as_bytes()[..sp]) => (borrowed(&v[..sp]), &v[sp + 1..]),
        None if is_method(v.as_bytes()) => return [borrowed(v), Cell::Null, Cell::Null],
        _ => (Cell::Null, v),
    };
    match rest.rfind(' ') {
        Some(j) if rest[j + 1..].starts_with("HTTP/") => [method, borrowed(&rest[..j]), borrowed(&rest[j + 1..])],
        None if rest.starts_with("HTTP/") => [method, Cell::Null, borrowed(rest)],
        _ => [method, borrowed(rest), Cell::Null],
    }
}

/// Where a quoted field that opens at `open` may close: each `"` followed by a space or the end.
fn closing_quotes(b: &[u8], open: usize) -> impl Iterator<Item = usize> + '_ {
    memchr_iter(b'"', &b[open + 1..]).map(move |i| open + 1 + i).filter(move |&q| q + 1 == b.len() || b[q + 1] == b' ')
}

/// Picks the closing quote of the field opening at `open`: the first candidate `accept` likes
/// (then `true`), else the first candidate at all (then `false`; the fields after it will then
/// say what is wrong).
fn close_quoted(b: &[u8], open: usize, mut accept: impl FnMut(usize) -> bool) -> Option<(usize, bool)> {
    let mut first = None;
    for q in closing_quotes(b, open) {
        if accept(q) {
            return Some((q, true));
        }
        first.get_or_insert((q, false));
    }
    first
}

/// After the Request-URI come status, error code, four numbers, and a quoted or `-` Referer.
/// Returns those seven tokens when they fit, so they are not scanned twice.
fn after_request_uri(b: &[u8], pos: usize) -> Option<[Span; 7]> {
    let mut t: [Span; 7] = Default::default();
    let fits = peek_tokens(b, pos, &mut t) == 7
        && is_num_or_dash(&b[t[0].clone()])
        && (!b[t[1].clone()].contains(&b'"') || is_dash(&b[t[1].clone()]))
        && t[2..6].iter().all(|r| is_num_or_dash(&b[r.clone()]))
        && (starts_quote(&b[t[6].clone()]) || &b[t[6].clone()] == b"-");
    fits.then_some(t)
}

/// How the tokens after a User-Agent fit the server-written tail: a Version Id, a Host Id of one
/// token (or, failing that, of two), then a signature version (`-` or `SigV*`). Fewer than three
/// tokens always fit (records of 17 to 19 fields). `None`: no Host Id width fits.
fn tail_fit(b: &[u8], pos: usize) -> Option<HostId> {
    let mut t: [Span; 4] = Default::default();
    let n = peek_tokens(b, pos, &mut t);
    if n < 3 || is_sigv(&b[t[2].clone()]) {
        Some(HostId::OneToken)
    } else if n == 4 && is_sigv(&b[t[3].clone()]) {
        Some(HostId::TwoTokens)
    } else {
        None
    }
}

/// The width of a record's Host Id field, found by [`tail_fit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostId {
    OneToken,
    TwoTokens,
}

/// The client-written Referer and User-Agent, anchored from the right: S3 writes no quote after the
/// User-Agent, so a quoted User-Agent closes at the line's last quote, and a `-` User-Agent stands
/// after it. A quote choice can move text between the Referer and the User-Agent (both the
/// client's), never into a server-written column. Where a quoted Referer may close at several
/// quotes, the first whose tail fits with a one-token Host Id wins, else the first that fits with a
/// two-token one: a Referer holding `" "` cannot then shift the Version Id and Host Id by a token.
struct ClientFields {
    referer: Span,
    ua: Span,
    host: HostId,
}

/// Finds the Referer (opening at `referer`, a token already checked to be `-` or quoted) and the
/// User-Agent after it.
fn client_fields(b: &[u8], referer: Span, fields: usize) -> Result<ClientFields, RejectReason> {
    let last_quote = memchr::memrchr(b'"', b);
    let closes_at_end = |q: usize| q + 1 == b.len() || b[q + 1] == b' ';
    // The User-Agent starting at token `u`, if it has its shape; a quoted one runs to the last quote.
    let user_agent = |u: Span| -> Result<Span, RejectReason> {
        let tok = &b[u.clone()];
        if starts_quote(tok) {
            match last_quote {
                Some(q) if q > u.start && closes_at_end(q) => Ok(u.start..q + 1),
                _ => Err(RejectReason::UnterminatedQuote { field: "useragent" }),
            }
        } else if tok == b"-" && last_quote.is_none_or(|q| q < u.start) {
            Ok(u)
        } else {
            Err(RejectReason::BadField { field: "useragent", value: String::from_utf8_lossy(tok).into_owned() })
        }
    };
    let fit = |ua: &Span| tail_fit(b, ua.end);
    let no_tail = |ua: &Span| RejectReason::BadField { field: "sigv", value: tail_text(b, ua.end) };

    if !starts_quote(&b[referer.clone()]) {
        let u = token_at(b, referer.end).ok_or(RejectReason::Truncated { fields })?;
        let ua = user_agent(u)?;
        let host = fit(&ua).ok_or_else(|| no_tail(&ua))?;
        return Ok(ClientFields { referer, ua, host });
    }
    // Every place the quoted Referer may close at, with the User-Agent that then follows.
    let mut shaped: Vec<(Span, Span)> = Vec::new();
    let mut first_error = None;
    for q in closing_quotes(b, referer.start) {
        let Some(u) = token_at(b, q + 1) else {
            first_error.get_or_insert(RejectReason::Truncated { fields });
            break;
        };
        match user_agent(u) {
            Ok(ua) => shaped.push((referer.start..q + 1, ua)),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
        if last_quote == Some(q) {
            break;
        }
    }
    for want in [HostId::OneToken, HostId::TwoTokens] {
        if let Some((r, ua)) = shaped.iter().find(|(_, ua)| fit(ua) == Some(want)) {
            return Ok(ClientFields { referer: r.clone(), ua: ua.clone(), host: want });
        }
    }
    Err(match (shaped.first(), first_error) {
        (Some((_, ua)), _) => no_tail(ua),
        (None, Some(e)) => e,
        (None, None) => RejectReason::UnterminatedQuote { field: "referrer" },
    })
}

/// The first tokens from `pos`, for a reason's value.
fn tail_text(b: &[u8], pos: usize) -> String {
    let mut t: [Span; 4] = Default::default();
    let n = peek_tokens(b, pos, &mut t);
    match n {
        0 => String::new(),
        _ => String::from_utf8_lossy(&b[t[0].start..t[n - 1].end]).into_owned(),
    }
}

/// Parses one line (without its line ending) into cells, whatever its layout, or says why it is a
/// reject. Every line the one-pass parser takes, this parser parses the same.
pub fn parse_line_careful(s: &str) -> Result<ParsedLine<'_>, RejectReason> {
    let b = s.as_bytes();
    let parsed = parse_fields(s);
    // A second record's time after the first means two records spliced together, unless it sits
    // inside a client's quoted field (a User-Agent may carry a date) and is not the start of a
    // whole record there.
    let time_end = match &parsed {
        Ok((_, spans)) => spans.time_end,
        Err(_) => time_field_end(b),
    };
    let Some(at) = find_spliced_time(b, time_end) else {
        return parsed.map(|(line, _)| line);
    };
    match parsed {
        Ok((line, spans)) if spans.client.iter().any(|c| c.contains(&at)) && !starts_a_record(b, at) => Ok(line),
        _ => Err(RejectReason::Spliced { byte: at }),
    }
}

/// Where the first field's time ends, for a line that did not parse: past the first `]`, or at
/// the end of the first three tokens.
fn time_field_end(b: &[u8]) -> usize {
    let mut t: [Span; 3] = Default::default();
    let n = peek_tokens(b, 0, &mut t);
    if n < 3 {
        return b.len();
    }
    let end = (t[2].start + TIME_FIELD_LEN).min(b.len());
    if parse_time_field(&b[t[2].start..end]).is_some() { end } else { t[2].end }
}

/// Whether the text two tokens before the time at `at` (an owner, a bucket) is a whole record.
fn starts_a_record(b: &[u8], at: usize) -> bool {
    let before = &b[..at];
    let start = before
        .iter()
        .rposition(|&c| c != b' ')
        .and_then(|bucket_end| before[..bucket_end].iter().rposition(|&c| c == b' '))
        .and_then(|i| before[..i].iter().rposition(|&c| c != b' '))
        .map(|owner_end| before[..owner_end].iter().rposition(|&c| c == b' ').map_or(0, |i| i + 1));
    let Some(start) = start.filter(|&st| st > 0) else { return false };
    std::str::from_utf8(&b[start..]).is_ok_and(|rest| parse_fields(rest).is_ok())
}

/// Where the parts of a line that parsed lie: the time's end and the client's quoted fields.
struct Spans {
    time_end: usize,
    /// The Request-URI, Referer and User-Agent.
    client: [Span; 3],
}

fn parse_fields(s: &str) -> Result<(ParsedLine<'_>, Spans), RejectReason> {
    let b = s.as_bytes();
    let mut cells: [Cell<'_>; LOG_COLUMNS] = std::array::from_fn(|_| Cell::Null);
    let mut fields = 0usize;
    let mut pos = 0usize;

    macro_rules! next_token {
        () => {{
            match token_at(b, pos) {
                Some(t) => {
                    pos = t.end;
                    fields += 1;
                    t
                }
                None if fields == 0 => return Err(RejectReason::Empty),
                None => return Err(RejectReason::Truncated { fields }),
            }
        }};
    }

    let t = next_token!();
    cells[col::BUCKETOWNER] = server_text(&s[t], "bucketowner")?;
    let t = next_token!();
    if !is_bucket_name(&s[t.clone()]) {
        return Err(RejectReason::BadBucket { value: s[t].to_string() });
    }
    cells[col::BUCKET] = text(&s[t]);

    // Time: a bracketed, fixed-width field that holds one space.
    let t = token_at(b, pos).ok_or(RejectReason::Truncated { fields })?;
    fields += 1;
    let time_end = (t.start + TIME_FIELD_LEN).min(b.len());
    let time = match parse_time_field(&b[t.start..time_end]) {
        Some(ts) if time_end == b.len() || b[time_end] == b' ' => ts,
        _ => {
            let end = memchr(b']', &b[t.start..]).map_or(t.end, |i| t.start + i + 1);
            return Err(RejectReason::BadTime { value: shown(&s[t.start..end]) });
        }
    };
    cells[col::REQUESTDATETIME] = Cell::Ts(time.millis);
    pos = time_end;

    let t = next_token!();
    cells[col::REMOTEIP] = server_text(&s[t], "remoteip")?;

    // Requester, request id, operation: a requester may hold spaces, so find the operation.
    // Look three tokens ahead; only a requester with spaces needs more.
    let mut look: [Span; 12] = Default::default();
    let mut n = peek_tokens(b, pos, &mut look[..3]);
    let op_at = if n > 2 && is_operation(&b[look[2].clone()]) {
        Some(2)
    } else {
        n = peek_tokens(b, pos, &mut look);
        (3..n).find(|&j| is_operation(&b[look[j].clone()]))
    };
    let Some(op_at) = op_at else {
        if n <= 2 {
            return Err(RejectReason::Truncated { fields: fields + n });
        }
        return Err(RejectReason::BadField { field: "operation", value: s[look[2].clone()].to_string() });
    };
    // A requester with spaces is kept as logged.
    cells[col::REQUESTER] = server_text(&s[look[0].start..look[op_at - 2].end], "requester")?;
    cells[col::REQUESTID] = server_text(&s[look[op_at - 1].clone()], "requestid")?;
    cells[col::OPERATION] = text(&s[look[op_at].clone()]);
    pos = look[op_at].end;
    fields += 3;
    let t = next_token!();
    cells[col::KEY] = server_text(&s[t], "key")?;

    // Request-URI: it closes at the first quote after which the next fields fit; those fields'
    // tokens are then taken as found. Unquoted, it can only be `-`.
    let t = next_token!();
    let mut after: Option<[Span; 7]> = None;
    let uri = if starts_quote(&b[t.clone()]) {
        // A candidate that does not fit leaves `after` empty, so it is kept only for the one taken.
        let accept = |q: usize| {
            after = after_request_uri(b, q + 1);
            after.is_some()
        };
        let (q, _) = close_quoted(b, t.start, accept).ok_or(RejectReason::UnterminatedQuote { field: "requesturi" })?;
        pos = q + 1;
        t.start..q + 1
    } else if &b[t.clone()] == b"-" {
        after = after_request_uri(b, t.end);
        t
    } else {
        return Err(RejectReason::BadField { field: "requesturi", value: s[t].to_string() });
    };
    let [method, path, proto] = match field_value(s, uri.clone()) {
        Cell::Str(Cow::Borrowed(v)) => split_request_uri(v),
        _ => [Cell::Null, Cell::Null, Cell::Null],
    };
    cells[col::REQUESTURI_OPERATION] = method;
    cells[col::REQUESTURI_KEY] = path;
    cells[col::REQUESTURI_HTTPPROTOVERSION] = proto;

    let numbers = [col::BYTESSENT, col::OBJECTSIZE, col::TOTALTIME, col::TURNAROUNDTIME];
    if let Some(t) = after {
        cells[col::HTTPSTATUS] = number(&s[t[0].clone()], col::HTTPSTATUS, 9)?;
        cells[col::ERRORCODE] = text(&s[t[1].clone()]);
        for (c, span) in numbers.into_iter().zip(&t[2..6]) {
            cells[c] = number(&s[span.clone()], c, 18)?;
        }
        pos = t[5].end;
        fields += 6;
    } else {
        let t = next_token!();
        cells[col::HTTPSTATUS] = number(&s[t], col::HTTPSTATUS, 9)?;
        let t = next_token!();
        cells[col::ERRORCODE] = server_text(&s[t], "errorcode")?;
        for c in numbers {
            let t = next_token!();
            cells[c] = number(&s[t], c, 18)?;
        }
    }
    // AWS writes Bytes Sent as `-` when it is zero.
    if matches!(cells[col::BYTESSENT], Cell::Null) {
        cells[col::BYTESSENT] = Cell::int(Some(0));
    }

    // Referer and User-Agent: quoted or `-`, found from the right (see [`ClientFields`]).
    let t = token_at(b, pos).ok_or(RejectReason::Truncated { fields })?;
    fields += 1;
    if !starts_quote(&b[t.clone()]) && &b[t.clone()] != b"-" {
        return Err(RejectReason::BadField { field: "referrer", value: s[t].to_string() });
    }
    let client = client_fields(b, t, fields)?;
    cells[col::REFERRER] = field_value(s, client.referer.clone());
    cells[col::USERAGENT] = field_value(s, client.ua.clone());
    pos = client.ua.end;

    // The tail: plain tokens, a Host Id of the width found, then anything AWS adds.
    let tail = |pos: &mut usize| token_at(b, *pos).inspect(|t| *pos = t.end);
    if let Some(t) = tail(&mut pos) {
        cells[col::VERSIONID] = text(&s[t]);
    }
    if let Some(t) = tail(&mut pos) {
        cells[col::HOSTID] = match client.host {
            HostId::OneToken => text(&s[t]),
            HostId::TwoTokens => {
                let second = tail(&mut pos).expect("a two-token Host Id fits only with both tokens");
                Cell::Str(single_spaced(&s[t.start..second.end]))
            }
        };
    }
    for cell in &mut cells[col::SIGV..=col::SOURCEREGION] {
        match tail(&mut pos) {
            Some(t) => *cell = text(&s[t]),
            None => break,
        }
    }
    if let Some(t) = token_at(b, pos) {
        cells[col::EXTRAFIELDS] = Cell::Str(single_spaced(&s[t.start..]));
    }
    let spans = Spans { time_end, client: [uri, client.referer, client.ua] };
    Ok((ParsedLine { cells, time }, spans))
}

#[cfg(test)]
mod tests {
    use super::space_from;

    /// Against the plain definition, for a space at every place in and past the first word, none,
    /// spaces in a row, and lines shorter than a word; bytes above 0x80 and 0x21 (one more than a
    /// space) around it.
    #[test]
    fn space_from_finds_the_first_space_or_the_end() {
        let expected = |b: &[u8], pos: usize| b[pos..].iter().position(|&c| c == b' ').map_or(b.len(), |i| pos + i);
        let mut lines: Vec<Vec<u8>> = Vec::new();
        for len in 0..24 {
            lines.push(vec![b'a'; len]);
            for at in 0..len {
                let mut l = "é!x".repeat(len).into_bytes()[..len].to_vec();
                l[at] = b' ';
                lines.push(l.clone());
                if at + 1 < len {
                    l[at + 1] = b' ';
                    lines.push(l);
                }
            }
        }
        for l in &lines {
            for pos in 0..l.len() {
                assert_eq!(space_from(l, pos), expected(l, pos), "{:?} from {pos}", String::from_utf8_lossy(l));
            }
        }
    }
}
