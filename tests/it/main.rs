//! The integration tests, one binary with a module per area: the CLI as a user runs it, the DDL
//! on real engines' terms, the parsers against real lines and properties, S3 against a real S3 API
//! (moto on loopback), and scheduled runs (kills, leases, recovery).

mod cli;
mod ddl;
mod parser;
mod s3;
mod scheduled;
