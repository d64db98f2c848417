//! The S3 server access log format: what a line's fields are, and the two parsers that read them.
//!
//! [`line`] holds what a parsed line is ([`Cell`]s in table order, or a [`RejectReason`]);
//! [`fields`] the shape of each field, shared by both parsers; [`common_layout`] the one-pass
//! parser for the layout nearly every line has; [`careful`] the parser for every other line.
//! [`parse_line`] tries them in that order. Neither parser imports the other.

pub mod careful;
pub mod common_layout;
pub mod fields;
pub mod line;
pub mod time;

pub use careful::parse_line_careful;
pub use line::{Cell, ParsedLine, RejectReason};

/// Parses one line (without its line ending) into cells: by the one-pass parser when the line has
/// the common layout, else by the careful one.
pub fn parse_line(s: &str) -> Result<ParsedLine<'_>, RejectReason> {
    match common_layout::parse(s) {
        Some(line) => Ok(line),
        None => parse_line_careful(s),
    }
}
