//! Rows: log bytes cut into lines ([`lines`]), parsed and appended to the builders of their
//! partition ([`builder`]), which a [`partition::PartitionKey`] names.

pub mod builder;
pub mod lines;
pub mod partition;
