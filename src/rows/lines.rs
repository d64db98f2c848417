//! Splitting a log object's bytes into lines: the one framer every object goes through, whole or
//! streamed, then newline-aligned chunks and the lines in them.
//!
//! A line ends at `\n`; a `\r` before it is dropped, and a last line without a newline still
//! counts. [`LineFramer`] takes an object's bytes as they arrive and hands on newline-aligned
//! pieces (a whole object is one piece, borrowed, not copied). Chunks let one piece be parsed on
//! several cores: each chunk ends just after a newline, and knows the 1-based number of its
//! first line so `source_line` stays exact.

use std::borrow::Cow;
use std::ops::Range;

use memchr::{memchr, memchr_iter, memrchr};

/// Lines in a piece of an object: its newlines, and a last line without one.
pub(crate) fn lines_in(piece: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', piece).count() as u64 + u64::from(piece.last().is_some_and(|&b| b != b'\n'))
}

/// What [`LineFramer`] hands on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// Whole lines: each ends in a newline, except the input's last line.
    Lines { bytes: &'a [u8], first_line: u64 },
    /// A line longer than the framer holds: rejected as it streams past, its first bytes kept
    /// (`max_line` of them); `len` leaves out a `\r` before its newline, as for every line.
    TooLong { number: u64, len: usize, head: &'a [u8] },
}

/// A line too long to hold, being read past.
struct LongLine {
    number: u64,
    head: Vec<u8>,
    len: usize,
    last: Option<u8>,
}

/// Push-based line framing. Bytes are pushed as they arrive (a whole object at once, or the
/// blocks of a stream); each time `hold` bytes are held, the lines among them are handed on as
/// one piece and the partial line after them is kept for the next push. Held bytes without a
/// newline are one line longer than `hold`: it is read past, and handed on as
/// [`Frame::TooLong`] with its head once its newline comes. Memory stays at `hold` bytes
/// whatever the input, and pieces are the same whatever sizes the bytes are pushed in. Input
/// pushed while nothing is held is cut straight from the caller's bytes, without a copy.
pub(crate) struct LineFramer {
    hold: usize,
    max_line: usize,
    held: Vec<u8>,
    next_line: u64,
    long: Option<LongLine>,
}

impl LineFramer {
    /// A framer for lines of at most `max_line` bytes, cutting pieces at `hold` bytes (at least
    /// `2 * max_line + 1`: a line within the limit always fits in a piece, beside a partial one).
    pub(crate) fn new(hold: usize, max_line: usize) -> Self {
        LineFramer { hold: hold.max(2 * max_line + 1), max_line, held: Vec::new(), next_line: 1, long: None }
    }

    /// A framer for content held whole: it is one piece, however large.
    pub(crate) fn whole(max_line: usize) -> Self {
        LineFramer::new(usize::MAX, max_line)
    }

    /// Frames content held whole: one push that ends the input, handed on as one piece.
    pub(crate) fn frame_whole(bytes: &[u8], max_line: usize, mut f: impl FnMut(Frame<'_>)) {
        let framed: Result<(), std::convert::Infallible> =
            LineFramer::whole(max_line).finish_with(bytes, &mut |frame| {
                f(frame);
                Ok(())
            });
        let Ok(()) = framed;
    }

    /// The number of the next line not yet handed on.
    pub(crate) fn next_line(&self) -> u64 {
        self.next_line
    }

    /// Takes the next bytes of the input, and hands on every piece they complete.
    pub(crate) fn push<E>(
        &mut self,
        mut bytes: &[u8],
        f: &mut impl FnMut(Frame<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        while !bytes.is_empty() {
            if let Some(long) = &mut self.long {
                let Some(i) = memchr(b'\n', bytes) else {
                    long.len += bytes.len();
                    long.last = bytes.last().copied();
                    return Ok(());
                };
                long.len += i;
                if i > 0 {
                    long.last = Some(bytes[i - 1]);
                }
                bytes = &bytes[i + 1..];
                let long = self.long.take().expect("a long line is being read");
                let len = long.len - usize::from(long.last == Some(b'\r'));
                self.next_line = long.number + 1;
                f(Frame::TooLong { number: long.number, len, head: &long.head })?;
                continue;
            }
            if self.held.is_empty() && bytes.len() >= self.hold {
                let (piece, rest) = bytes.split_at(self.hold);
                bytes = match memrchr(b'\n', piece) {
                    Some(i) => {
                        self.hand_on(&bytes[..=i], f)?;
                        &bytes[i + 1..]
                    }
                    None => {
                        self.start_long(piece);
                        rest
                    }
                };
                continue;
            }
            let take = (self.hold - self.held.len()).min(bytes.len());
            self.held.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.held.len() == self.hold {
                let held = std::mem::take(&mut self.held);
                match memrchr(b'\n', &held) {
                    Some(i) => {
                        self.hand_on(&held[..=i], f)?;
                        self.held = held;
                        self.held.drain(..=i);
                    }
                    None => {
                        self.start_long(&held);
                        self.held = held;
                        self.held.clear();
                    }
                }
            }
        }
        Ok(())
    }

    /// The input ended: hands on what is held (its last line may lack a newline), or the long
    /// line being read past.
    pub(crate) fn finish<E>(&mut self, f: &mut impl FnMut(Frame<'_>) -> Result<(), E>) -> Result<(), E> {
        if let Some(long) = self.long.take() {
            self.next_line = long.number + 1;
            let len = long.len - usize::from(long.last == Some(b'\r'));
            return f(Frame::TooLong { number: long.number, len, head: &long.head });
        }
        let held = std::mem::take(&mut self.held);
        self.hand_on(&held, f)
    }

    /// `bytes` are the last of the input: [`LineFramer::push`] then [`LineFramer::finish`], but
    /// when nothing is held the last piece is handed on from `bytes` itself: content held whole
    /// is never copied.
    pub(crate) fn finish_with<E>(
        mut self,
        bytes: &[u8],
        f: &mut impl FnMut(Frame<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.held.is_empty() && self.long.is_none() && bytes.len() < self.hold {
            // The last piece: its lines need not be counted (a whole object's newlines were a
            // pass over its bytes of their own).
            return if bytes.is_empty() { Ok(()) } else { f(Frame::Lines { bytes, first_line: self.next_line }) };
        }
        self.push(bytes, f)?;
        self.finish(f)
    }

    /// The input was cut off: hands on the whole lines held (or the long line being read past),
    /// and returns the partial line after them.
    pub(crate) fn cut_off<E>(&mut self, f: &mut impl FnMut(Frame<'_>) -> Result<(), E>) -> Result<Vec<u8>, E> {
        if self.long.is_some() {
            self.finish(f)?;
            return Ok(Vec::new());
        }
        let mut held = std::mem::take(&mut self.held);
        let lines = memrchr(b'\n', &held).map_or(0, |i| i + 1);
        self.hand_on(&held[..lines], f)?;
        held.drain(..lines);
        Ok(held)
    }

    fn hand_on<E>(&mut self, piece: &[u8], f: &mut impl FnMut(Frame<'_>) -> Result<(), E>) -> Result<(), E> {
        if piece.is_empty() {
            return Ok(());
        }
        let first_line = self.next_line;
        self.next_line += lines_in(piece);
        f(Frame::Lines { bytes: piece, first_line })
    }

    fn start_long(&mut self, piece: &[u8]) {
        let head = piece[..self.max_line.min(piece.len())].to_vec();
        self.long = Some(LongLine { number: self.next_line, head, len: piece.len(), last: piece.last().copied() });
    }
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

    /// The lines of `input` as [`for_each_line`] sees them: text, or a too-long line's length and head.
    fn lines_of(bytes: &[u8], first_line: u64, max_line: usize, out: &mut Vec<(u64, String)>) {
        for_each_line(bytes, first_line, max_line, |l| match l {
            Line::Text { number, text, .. } => out.push((number, text.into_owned())),
            Line::TooLong { number, len, head } => out.push((number, too_long(len, head))),
        });
    }

    fn too_long(len: usize, head: &[u8]) -> String {
        format!("<{len}: {}>", String::from_utf8_lossy(head))
    }

    /// Pushes `input` to a framer in pieces of the sizes in `splits` (cycled), and returns the
    /// lines it hands on, as [`lines_of`] gives them.
    fn framed(
        input: &[u8],
        hold: usize,
        max_line: usize,
        splits: &[usize],
        cut: bool,
    ) -> (Vec<(u64, String)>, Vec<u8>) {
        let mut framer = LineFramer::new(hold, max_line);
        let mut out = Vec::new();
        let mut take = |f: Frame<'_>| -> Result<(), ()> {
            match f {
                Frame::Lines { bytes, first_line } => lines_of(bytes, first_line, max_line, &mut out),
                Frame::TooLong { number, len, head } => out.push((number, too_long(len, head))),
            }
            Ok(())
        };
        let (mut at, mut i) = (0, 0);
        while at < input.len() {
            let n = splits[i % splits.len()].min(input.len() - at);
            framer.push(&input[at..at + n], &mut take).unwrap();
            (at, i) = (at + n, i + 1);
        }
        let partial = if cut {
            framer.cut_off(&mut take).unwrap()
        } else {
            framer.finish(&mut take).map(|()| Vec::new()).unwrap()
        };
        (out, partial)
    }

    proptest::proptest! {
        /// Whatever the sizes the bytes come in and the framer's hold, it hands on the lines the
        /// whole input has, numbered the same, a line longer than the hold as a too-long line
        /// with the same length and head; cut off, it hands on the whole lines and returns the
        /// partial one.
        #[test]
        fn framing_is_the_same_whatever_the_pushes(
            lines in proptest::collection::vec((0usize..40, proptest::bool::ANY, 0u8..8), 0..30),
            last_newline: bool,
            max_line in 1usize..8,
            hold in 0usize..60,
            splits in proptest::collection::vec(1usize..40, 1..5),
        ) {
            let mut input = Vec::new();
            for (n, (len, cr, kind)) in lines.iter().enumerate() {
                input.extend((0..*len).map(|i| match kind {
                    0 if i == 1 => 0xff,
                    1 => b'\r',
                    _ => b'a' + ((n + i) % 26) as u8,
                }));
                if *cr {
                    input.push(b'\r');
                }
                if n + 1 < lines.len() || last_newline {
                    input.push(b'\n');
                }
            }
            let mut expected = Vec::new();
            lines_of(&input, 1, max_line, &mut expected);
            let (got, _) = framed(&input, hold, max_line, &splits, false);
            proptest::prop_assert_eq!(&got, &expected);
            let mut whole = Vec::new();
            LineFramer::frame_whole(&input, max_line, |f| match f {
                Frame::Lines { bytes, first_line } => lines_of(bytes, first_line, max_line, &mut whole),
                Frame::TooLong { .. } => unreachable!("content held whole is one piece"),
            });
            proptest::prop_assert_eq!(&whole, &expected);

            let complete = memrchr(b'\n', &input).map_or(0, |i| i + 1);
            let mut expected = Vec::new();
            lines_of(&input[..complete], 1, max_line, &mut expected);
            let (got, partial) = framed(&input, hold, max_line, &splits, true);
            let hold = hold.max(2 * max_line + 1);
            if input.len() - complete < hold {
                proptest::prop_assert_eq!(&got, &expected);
                proptest::prop_assert_eq!(&partial[..], &input[complete..]);
            } else {
                // The partial line was longer than the hold: it is handed on as too long.
                proptest::prop_assert_eq!(&got[..expected.len()], &expected[..]);
                proptest::prop_assert_eq!(got.len(), expected.len() + 1);
                proptest::prop_assert!(partial.is_empty());
            }
        }
    }

    #[test]
    fn a_whole_object_is_one_piece_borrowed_not_copied() {
        let input = b"one\ntwo\nthree";
        let mut pieces = Vec::new();
        LineFramer::frame_whole(input, 2, |f| match f {
            Frame::Lines { bytes, first_line } => pieces.push((bytes.as_ptr(), bytes.len(), first_line)),
            Frame::TooLong { .. } => panic!("no line is too long to hold"),
        });
        assert_eq!(pieces, vec![(input.as_ptr(), input.len(), 1)]);
    }

    #[test]
    fn final_newline_does_not_make_an_extra_line() {
        assert_eq!(collect(b"x\n", 100).len(), 1);
        assert_eq!(collect(b"x\n\n", 100).len(), 2);
    }
}
