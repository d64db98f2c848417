//! s3logs: S3 server access logs into typed, date-partitioned Parquet.
//!
//! Data flows one way, one room per step: `source` lists and reads log objects (through `store`,
//! the S3 client and its retries), `rows` cuts them into lines, parses each with `access_log` and
//! routes the rows to their partition, `parquet_sink` encodes and writes the files, and `commit`
//! stages, commits and publishes them exactly once. `pipeline` runs those steps in parallel;
//! [`cli`] is the command line over it, [`status`] reads a DEST's state back, [`ddl`] renders the
//! table definitions, and [`report`] says what a run did. [`schema`] is the one field table
//! everything else derives its columns from; `stop` is the flag that stops a run at a safe point.
//! `source::unit` cuts the work into units (a source's key-day), each with its own state in DEST,
//! and `backfill` holds what splits them over many processes (`--shard`, `plan`, `state migrate`).
//!
//! The public API is this page: a conversion's options and [`run`], its [`Report`] and [`Error`],
//! [`ddl`], [`status`], the field table, and the [`parser`] (for benchmarks and tests). Everything
//! else is the crate's own.

mod access_log;
pub mod allocator;
mod backfill;
mod catalog;
pub mod cli;
mod commit;
pub mod ddl;
pub mod error;
mod parquet_sink;
mod pipeline;
pub mod report;
mod rows;
pub mod schema;
mod source;
pub mod status;
mod stop;
mod store;

pub use commit::destination::DestRequests;
pub use commit::lease::LeaseOptions;
pub use error::Error;
pub use parquet_sink::SinkOptions;
pub use pipeline::{ConvertOptions, run, run_reporting};
pub use report::Report;
pub use source::KeyDates;
pub use source::unit::{Selection, shard_of, unit_of};
pub use stop::StopFlag;
pub use store::retry::{RequestMetrics, RetryPolicy};
pub use store::{StoreLayer, StoreOptions, WrapStore, install_tls};

/// The parsers and the line framing, as the conversion uses them: for benchmarks, and for tests
/// that hold the two parsers to each other.
pub mod parser {
    pub use crate::access_log::common_layout::parse as parse_common_layout;
    pub use crate::access_log::time::parse_day;
    pub use crate::access_log::{Cell, ParsedLine, RejectReason, parse_line, parse_line_careful};
    pub use crate::rows::builder::{ChunkOutput, ParseOptions, RejectSample, parse_chunk};
    pub use crate::rows::lines::{Chunk, Line, chunks, for_each_line};
    pub use crate::rows::partition::PartitionKey;
}
