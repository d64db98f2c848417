//! Splitting a log object's bytes into lines and newline-aligned chunks.
//!
//! A line ends at `\n`; a `\r` before it is dropped, and a last line without a newline still
//! counts. Chunks let one large object be parsed on several cores: each chunk ends just after a
//! newline, and knows the 1-based number of its first line so `source_line` stays exact.

use std::borrow::Cow;
use std::ops::Range;

use memchr::{memchr, memchr_iter};

/// Lines in a piece of an object: its newlines, and a last line without one.
pub(crate) fn lines_in(piece: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', piece).count() as u64 + u64::from(piece.last().is_some_and(|&b| b != b'\n'))
}

/// A newline-aligned piece of an object's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub range: Range<usize>,
    /// 1-based number of the chunk's first line in the object.
    pub first_line: u64,
}

/// Cuts `buf` into chunks of at least `target` bytes (the last may be smaller), each ending just
/// after a newline or at the end of `buf`.
pub fn chunks(buf: &[u8], target: usize) -> Vec<Chunk> {
    let target = target.max(1);
    let mut out = Vec::with_capacity(buf.len() / target + 1);
    let (mut start, mut line) = (0usize, 1u64);
    while start < buf.len() {
        let mut end = (start + target).min(buf.len());
        if end < buf.len() {
            end = memchr(b'\n', &buf[end - 1..]).map_or(buf.len(), |i| end + i);
        }
        out.push(Chunk { range: start..end, first_line: line });
        line += memchr_iter(b'\n', &buf[start..end]).count() as u64;
        start = end;
    }
    out
}

/// One line of a chunk, as the parser sees it.
pub enum Line<'a> {
    /// Valid UTF-8 (or repaired, when `lossy`).
    Text { number: u64, text: Cow<'a, str>, raw: &'a [u8], lossy: bool },
    /// Longer than the limit: only the first `limit` bytes are kept.
    TooLong { number: u64, len: usize, head: &'a [u8] },
}

/// Calls `f` for every line of `chunk`, in order. UTF-8 is checked once for the whole chunk; only
/// when that fails is each line checked and, where invalid, repaired with U+FFFD.
pub fn for_each_line<'a>(chunk: &'a [u8], first_line: u64, max_line: usize, mut f: impl FnMut(Line<'a>)) {
    let whole = std::str::from_utf8(chunk).ok();
    let (mut start, mut number) = (0usize, first_line);
    while start < chunk.len() {
        let end = memchr(b'\n', &chunk[start..]).map_or(chunk.len(), |i| start + i);
        let mut stop = end;
        if stop > start && chunk[stop - 1] == b'\r' {
            stop -= 1;
        }
        let raw = &chunk[start..stop];
        if raw.len() > max_line {
            f(Line::TooLong { number, len: raw.len(), head: &raw[..max_line] });
        } else if let Some(all) = whole {
            f(Line::Text { number, text: Cow::Borrowed(&all[start..stop]), raw, lossy: false });
        } else {
            match std::str::from_utf8(raw) {
                Ok(t) => f(Line::Text { number, text: Cow::Borrowed(t), raw, lossy: false }),
                Err(_) => f(Line::Text { number, text: String::from_utf8_lossy(raw), raw, lossy: true }),
            }
        }
        start = end + 1;
        number += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(buf: &[u8], target: usize) -> Vec<(u64, String, bool)> {
        let mut out = Vec::new();
        for c in chunks(buf, target) {
            for_each_line(&buf[c.range.clone()], c.first_line, 16, |l| match l {
                Line::Text { number, text, lossy, .. } => out.push((number, text.into_owned(), lossy)),
                Line::TooLong { number, len, .. } => out.push((number, format!("<{len}>"), false)),
            });
        }
        out
    }

    #[test]
    fn lines_are_the_same_whatever_the_chunk_size() {
        let buf = b"a b\r\n\nccc\nthis line is too long!\nbad \xff byte\nlast";
        let expected = vec![
            (1, "a b".to_string(), false),
            (2, String::new(), false),
            (3, "ccc".to_string(), false),
            (4, "<22>".to_string(), false),
            (5, "bad \u{fffd} byte".to_string(), true),
            (6, "last".to_string(), false),
        ];
        for target in [1, 2, 3, 5, 8, 13, 100] {
            assert_eq!(collect(buf, target), expected, "chunk target {target}");
        }
    }

    #[test]
    fn chunks_cover_the_buffer_and_end_after_newlines() {
        let buf = b"one\ntwo\nthree\nfour\n";
        let cs = chunks(buf, 5);
        assert_eq!(cs.first().unwrap().range.start, 0);
        assert_eq!(cs.last().unwrap().range.end, buf.len());
        for w in cs.windows(2) {
            assert_eq!(w[0].range.end, w[1].range.start);
            assert_eq!(buf[w[0].range.end - 1], b'\n');
        }
        assert_eq!(cs.iter().map(|c| c.first_line).collect::<Vec<_>>(), vec![1, 3, 4]);
        assert!(chunks(b"", 4).is_empty());
    }

    #[test]
    fn final_newline_does_not_make_an_extra_line() {
        assert_eq!(collect(b"x\n", 100).len(), 1);
        assert_eq!(collect(b"x\n\n", 100).len(), 2);
    }
}
