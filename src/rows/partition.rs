//! The partition a row belongs to ([`PartitionKey`]: its day, and its bucket with
//! `--partition-by bucket,dt`) and the folder it becomes.

use crate::access_log::RejectReason;

/// Where a row goes: its UTC day and, when partitioning by bucket, its source bucket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey {
    pub bucket: Option<String>,
    pub day: i32,
}

impl PartitionKey {
    /// The partition folder, relative to the table location: `dt=2024-01-15` or
    /// `source_bucket=my-bucket/dt=2024-01-15`. The bucket is a checked bucket name (no `/`, no `..`).
    pub fn folder(&self) -> String {
        let dt = crate::access_log::time::format_day(self.day);
        match &self.bucket {
            Some(b) => format!("{}={b}/dt={dt}", crate::schema::BUCKET_PARTITION_COLUMN),
            None => format!("dt={dt}"),
        }
    }
}

/// The longest bucket name a `source_bucket=` folder can hold where a file name is at most 255
/// bytes (Linux file systems). Legacy bucket names go up to 255 characters; a record of one is a
/// reject (`bad_bucket`) when partitioning by bucket, where it made every run fail.
pub const MAX_BUCKET_FOLDER_NAME: usize = 255 - crate::schema::BUCKET_PARTITION_COLUMN.len() - 1;

pub(crate) fn too_long_for_a_folder(bucket: &str) -> RejectReason {
    RejectReason::BucketTooLong { len: bucket.len(), limit: MAX_BUCKET_FOLDER_NAME }
}
