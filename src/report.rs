//! What a run did, for people (a summary on stderr) and for schedulers (`--report FILE`, JSON).
//!
//! Counts are built from what the parser and the writers report, never re-derived, and always
//! satisfy `lines_read == rows_written + lines_rejected`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::batch_builder::RejectSample;
use crate::parquet_sink::WrittenFile;

/// Listing and fetching figures (remote objects only for `fetch`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TransferFigures {
    pub objects: u64,
    pub bytes: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StageSeconds {
    pub read_parse: f64,
    pub encode: f64,
    pub commit: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The output root (DEST).
    pub output: String,
    pub objects_read: u64,
    /// Objects that were listed but gone when fetched (deleted or expired in between).
    pub objects_missing: Vec<String>,
    /// Bytes as stored (compressed where the object was).
    pub bytes_read: u64,
    /// Bytes after decompression.
    pub bytes_decompressed: u64,
    pub lines_read: u64,
    pub rows_written: u64,
    pub lines_rejected: u64,
    pub lines_lossy_utf8: u64,
    /// Rejected lines by reason code.
    pub reject_reasons: BTreeMap<String, u64>,
    /// The first few rejects, with object, line and reason.
    pub reject_samples: Vec<RejectSample>,
    /// Data files, paths relative to DEST (`data/dt=.../part-....parquet`).
    pub files_written: Vec<WrittenFile>,
    /// Rejects files, paths relative to DEST (`rejects/part-....parquet`).
    pub reject_files_written: Vec<WrittenFile>,
    /// Objects listed (all sources) and the time listing took.
    pub listing: TransferFigures,
    /// Remote objects fetched, their bytes, and the time spent fetching.
    pub fetch: TransferFigures,
    /// Requests tried again after a transient failure.
    pub retries: u64,
    /// Wall time of each stage: reading and parsing objects, encoding and writing Parquet (both
    /// on every core, one after the other per window), and moving files into place.
    pub stage_seconds: StageSeconds,
    /// Whether the files were moved into place (false when the run stopped at the reject gate).
    pub committed: bool,
    pub duration_s: f64,
}

impl Report {
    /// The human summary printed on stderr.
    pub fn summary(&self) -> String {
        let dates: std::collections::BTreeSet<&str> = self.files_written.iter().map(|f| f.dt.as_str()).collect();
        let mut s = format!(
            "s3logs: read {} objects ({} bytes, {} decompressed), {} lines in {:.2}s\n\
             s3logs: {} rows -> {} files in {} dt partitions under {}/data\n\
             s3logs: {} lines rejected{}, {} lines with invalid UTF-8 kept with U+FFFD\n",
            self.objects_read,
            self.bytes_read,
            self.bytes_decompressed,
            self.lines_read,
            self.duration_s,
            self.rows_written,
            self.files_written.len(),
            dates.len(),
            self.output,
            self.lines_rejected,
            if self.lines_rejected > 0 && self.committed {
                format!(" (in {}/rejects)", self.output)
            } else {
                String::new()
            },
            self.lines_lossy_utf8,
        );
        for (code, n) in &self.reject_reasons {
            s.push_str(&format!("s3logs:   {n} {code}\n"));
        }
        for r in &self.reject_samples {
            s.push_str(&format!("s3logs:   e.g. {}:{}: {}\n", r.source_object, r.source_line, r.reason));
        }
        if !self.objects_missing.is_empty() {
            s.push_str(&format!(
                "s3logs: {} objects were listed but gone when fetched, e.g. {}\n",
                self.objects_missing.len(),
                self.objects_missing[0]
            ));
        }
        if !self.committed {
            s.push_str("s3logs: nothing was committed\n");
        }
        s
    }
}
