//! s3logs: S3 server access logs into typed, date-partitioned Parquet.
//!
//! Data flows one way: [`object_source`] lists and reads log objects, [`lines`] cuts them into
//! newline-aligned chunks, [`access_log`] parses each line, [`batch_builder`] routes rows to their
//! day, [`parquet_sink`] writes and commits files, and [`report`] says what happened. [`convert`]
//! runs that pipeline; [`cli`] is the command line over it, and [`status`] reads a DEST's state back. [`schema`] is the one field table
//! everything else derives its columns from.

pub mod access_log;
pub mod aws_credentials;
pub mod batch_builder;
pub mod cli;
pub mod convert;
pub mod corpus;
pub mod crash_point;
pub mod ddl;
pub mod destination;
pub mod error;
pub mod lease;
pub mod ledger;
pub mod lines;
pub mod object_source;
pub mod parquet_sink;
pub mod redact;
pub mod report;
pub mod schema;
pub mod status;
