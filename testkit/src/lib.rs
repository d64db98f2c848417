//! Test support for s3logs, kept out of the product: [`corpus`], the deterministic generator of
//! realistic access logs that the benchmark and the large tests use (the `gen_corpus` binary
//! writes one to disk), and [`helpers`], what the integration tests share (Parquet rows as JSON
//! maps, line identities, a seeded random source, the kill harness), and [`s3_model`], a store
//! layer with S3's latency and per-connection bandwidth for the benchmark.
//!
//! It does not depend on s3logs: the generator writes the log format from its own knowledge of
//! it, so the parser is checked against something it did not produce.

pub mod corpus;
pub mod helpers;
pub mod s3_model;
