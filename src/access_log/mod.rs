//! The S3 server access log format: the time field, the careful line tokenizer and the one-pass
//! parser for the common layout that runs before it.
//!
//! Everything that knows how a log line is laid out lives here; the rest of the crate sees
//! [`tokenizer::ParsedLine`] cells in table order, or a [`tokenizer::RejectReason`], or (for a
//! common line) each column's value handed to a [`common_layout::Row`].

pub mod common_layout;
pub mod time;
pub mod tokenizer;

pub use tokenizer::{Cell, ParsedLine, RejectReason, parse_line, parse_line_careful};
