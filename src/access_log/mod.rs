//! The S3 server access log format: what a line's fields are, and the two parsers that read them.
//!
//! [`line`] holds what a parsed line is ([`Cell`]s in table order, or a [`RejectReason`]);
//! [`fields`] the shape of each field, shared by both parsers; [`common_layout`] the one-pass
//! parser for the layout nearly every line has; [`careful`] the parser for every other line.
//! [`LineParser`] tries them in that order, line after line ([`parse_line`] for one line).
//! Neither parser imports the other.

pub mod careful;
pub mod common_layout;
pub mod fields;
pub mod line;
pub mod time;

pub use careful::parse_line_careful;
pub use line::{Cell, ParsedLine, RejectReason};

use crate::schema::col;
use common_layout::{Common, Tokens};

/// The entry to both parsers: a line goes to the one-pass parser, and to the careful one when it
/// does not have the common layout. It keeps the one-pass parser's scratch from line to line.
#[derive(Default)]
pub struct LineParser {
    tokens: Tokens,
}

/// A line parsed by [`LineParser::parse`]. The careful parser's cells stay on the stack, as they
/// were before this type: boxing them would allocate for every line that is not common.
#[allow(clippy::large_enum_variant)]
pub enum Parsed<'l> {
    /// By the one-pass parser: its values are still in the line, and go straight to a
    /// [`common_layout::Row`] ([`Common::emit`]).
    Common { line: Common, text: &'l str, tokens: &'l Tokens },
    /// By the careful parser: its cells.
    Careful(ParsedLine<'l>),
}

impl LineParser {
    /// Parses `text` (one line without its line ending), or says why it is a reject.
    #[inline]
    pub fn parse<'l>(&'l mut self, text: &'l str) -> Result<Parsed<'l>, RejectReason> {
        match common_layout::scan(text, &mut self.tokens) {
            Some(line) => Ok(Parsed::Common { line, text, tokens: &self.tokens }),
            None => parse_line_careful(text).map(Parsed::Careful),
        }
    }
}

impl<'l> Parsed<'l> {
    /// The UTC day of its time, as days since 1970-01-01.
    #[inline]
    pub fn day(&self) -> i32 {
        match self {
            Parsed::Common { line, .. } => line.time.day,
            Parsed::Careful(p) => p.time.day,
        }
    }

    /// Its bucket, when it has one.
    #[inline]
    pub fn bucket(&self) -> Option<&str> {
        match self {
            Parsed::Common { line, text, tokens } => line.bucket(text, tokens),
            Parsed::Careful(p) => match &p.cells[col::BUCKET] {
                Cell::Str(b) => Some(b.as_ref()),
                _ => None,
            },
        }
    }
}

/// Parses one line (without its line ending) into cells: by the one-pass parser when the line has
/// the common layout, else by the careful one.
pub fn parse_line(s: &str) -> Result<ParsedLine<'_>, RejectReason> {
    match common_layout::parse(s) {
        Some(line) => Ok(line),
        None => parse_line_careful(s),
    }
}
