//! s3logs: S3 server access logs into typed, date-partitioned Parquet.
//!
//! Data flows one way, one room per step: [`source`] lists and reads log objects (through
//! [`store`], the S3 client and its retries), [`rows`] cuts them into lines, parses each with
//! [`access_log`] and routes the rows to their partition, [`parquet_sink`] encodes and writes the
//! files, and [`commit`] stages, commits and publishes them exactly once. [`pipeline`] runs those
//! steps in parallel; [`cli`] is the command line over it, [`status`] reads a DEST's state back,
//! [`ddl`] renders the table definitions, and [`report`] says what a run did. [`schema`] is the one
//! field table everything else derives its columns from.

pub mod access_log;
pub mod cli;
pub mod commit;
pub mod corpus;
pub mod ddl;
pub mod error;
pub mod parquet_sink;
pub mod pipeline;
pub mod report;
pub mod rows;
pub mod schema;
pub mod source;
pub mod status;
pub mod store;
