//! What a run did, for people (a summary on stderr) and for schedulers (`--report FILE`, JSON).
//!
//! The report is an output: it is built once, when the run ends, from the run's stats
//! (`pipeline::stats`), which count what the parser and the writers report, never re-derived;
//! its counts always satisfy `lines_read == rows_written + lines_rejected`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::error::Error;
use crate::store::StoreOptions;

use crate::parquet_sink::WrittenFile;
use crate::rows::builder::RejectSample;

/// An object that could not be read, and why.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Quarantined {
    pub name: String,
    pub reason: String,
}

/// A log delivery not converted because it was converted from another place: a copied or moved
/// folder, or a download of the bucket.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Elsewhere {
    pub name: String,
    /// The name it was converted as.
    pub converted_as: String,
}

/// Listing and fetching figures (remote objects only for `fetch`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TransferFigures {
    pub objects: u64,
    pub bytes: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StageSeconds {
    /// Reading the ledger (`DEST/_state/`) and planning what is new.
    pub state: f64,
    pub read_parse: f64,
    pub encode: f64,
    pub commit: f64,
}

/// An object a run would convert (`--dry-run`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlannedObject {
    pub name: String,
    pub size: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The output root (DEST).
    pub output: String,
    /// Objects listed that earlier runs converted (same ETag and size): not read again.
    pub objects_skipped: u64,
    /// Objects converted before under the same name but listed now with another ETag or size:
    /// not converted again (that would duplicate the first version's lines).
    pub objects_changed: Vec<String>,
    /// Log deliveries (named `YYYY-MM-DD-HH-MM-SS-Unique`) found under another name than the one
    /// they were converted as, same file name and size (and ETag where both have one): not
    /// converted again.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub objects_elsewhere: Vec<Elsewhere>,
    /// Nothing was new: the run wrote nothing at all.
    pub nothing_new: bool,
    /// `--dry-run`: nothing was written; `would_convert` lists the objects a run would convert.
    pub dry_run: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub would_convert: Vec<PlannedObject>,
    /// The commits this run made, one per batch: their numbers in their units' ledgers
    /// (`DEST/_state/units/<unit>/commits/<n>.json`), in the order made.
    pub commits: Vec<u64>,
    /// Staged batches of an earlier, interrupted run: committed ones were published (finished),
    /// the others discarded (their objects are converted again).
    pub batches_finished: Vec<String>,
    pub batches_discarded: Vec<String>,
    /// Committed batches whose files had reached neither the table nor the staging area (the
    /// staging lost after the commit point): their objects were converted again into the same
    /// files, which were published. Their lines count in this run's figures.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub batches_recreated: Vec<String>,
    pub objects_read: u64,
    /// Objects that were listed but gone when fetched (deleted or expired in between).
    pub objects_missing: Vec<String>,
    /// Objects this run could not read (corrupt compressed data, unreadable), with the reason:
    /// recorded as quarantined, none of their lines in the table; the rest of their batch was
    /// committed. Later runs skip them until they change or `--retry-quarantined` is given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub objects_quarantined: Vec<Quarantined>,
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
    /// Objects listed (all sources), and the time until the listing ended (it runs in the
    /// background, overlapping fetching and parsing).
    pub listing: TransferFigures,
    /// Remote objects fetched, their bytes, and the time spent fetching.
    pub fetch: TransferFigures,
    /// Requests tried again after a transient failure.
    pub retries: u64,
    /// S3's answers asking to slow down (`503 SlowDown`, `429`), object_store's own retries
    /// included.
    pub throttled: u64,
    /// The fewest requests the run let through at once after S3 asked to slow down (absent when
    /// it never did).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_limit_lowest: Option<usize>,
    /// Wall time of each stage: reading and parsing objects, encoding and writing Parquet (both
    /// on every core; a window is parsed while the one before it is encoded, so these two
    /// overlap and their sum exceeds the run's time), and moving files into place.
    pub stage_seconds: StageSeconds,
    /// Whether the files were moved into place (false when the run stopped at the reject gate).
    pub committed: bool,
    /// Objects listed in units this run does not take (`--shard`, `--units-file`): other runs'.
    #[serde(skip_serializing_if = "is_zero")]
    pub objects_other_units: u64,
    /// Units another live run held: left to it (the run exits 73, retry later).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub units_busy: Vec<String>,
    /// The requests made to DEST: GETs of state (and their bytes), LISTs, and writes (state
    /// records, staged uploads, publishing copies, deletes). A run with nothing new makes no
    /// writes, and its reads grow with the units it lists, not with DEST's history.
    pub dest_requests: crate::commit::destination::DestRequests,
    pub duration_s: f64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `n` and the noun, singular or plural: "1 line", "2 lines".
fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

fn objects(n: impl Into<u64>) -> String {
    count(n, "object", "objects")
}

fn lines(n: u64) -> String {
    count(n, "line", "lines")
}

impl Report {
    /// The human summary printed on stderr.
    pub fn summary(&self) -> String {
        if self.dry_run {
            let bytes: u64 = self.would_convert.iter().map(|o| o.size).sum();
            return format!(
                "s3logs: dry run: would convert {} ({bytes} bytes); {} already converted; nothing written\n",
                objects(self.would_convert.len() as u64),
                self.objects_skipped
            );
        }
        if self.nothing_new && self.listing.objects == 0 {
            return format!(
                "s3logs: nothing to convert: the sources list no log object (--allow-empty); nothing written to {}\n",
                self.output
            );
        }
        if self.nothing_new {
            let elsewhere = match self.objects_elsewhere.first() {
                Some(e) => format!(
                    " ({} of them from another place, e.g. {} converted as {})",
                    self.objects_elsewhere.len(),
                    e.name,
                    e.converted_as
                ),
                None => String::new(),
            };
            return format!(
                "s3logs: nothing new: {} listed, all converted before{elsewhere}; nothing written to {}\n",
                objects(self.objects_skipped + self.objects_elsewhere.len() as u64),
                self.output
            );
        }
        let dates: std::collections::BTreeSet<&str> = self.files_written.iter().map(|f| f.dt.as_str()).collect();
        let mut s = format!(
            "s3logs: read {} ({} bytes, {} decompressed), {} in {:.2}s\n\
             s3logs: {} -> {} in {} under {}/data\n\
             s3logs: {} rejected{}, {} with invalid UTF-8 kept with U+FFFD\n",
            objects(self.objects_read),
            self.bytes_read,
            self.bytes_decompressed,
            lines(self.lines_read),
            self.duration_s,
            count(self.rows_written, "row", "rows"),
            count(self.files_written.len() as u64, "file", "files"),
            count(dates.len() as u64, "dt partition", "dt partitions"),
            self.output,
            lines(self.lines_rejected),
            if self.lines_rejected > 0 && self.committed {
                format!(" (in {}/rejects)", self.output)
            } else {
                String::new()
            },
            lines(self.lines_lossy_utf8),
        );
        for (code, n) in &self.reject_reasons {
            s.push_str(&format!("s3logs:   {n} {code}\n"));
        }
        for r in &self.reject_samples {
            s.push_str(&format!("s3logs:   e.g. {}:{}: {}\n", r.source_object, r.source_line, r.reason));
        }
        if let Some(q) = self.objects_quarantined.first() {
            s.push_str(&format!(
                "s3logs: {} could not be read, quarantined (the rest was committed), e.g. {}: {}\n",
                objects(self.objects_quarantined.len() as u64),
                q.name,
                q.reason
            ));
        }
        if !self.objects_missing.is_empty() {
            s.push_str(&format!(
                "s3logs: {} listed but gone when fetched, e.g. {}\n",
                objects(self.objects_missing.len() as u64),
                self.objects_missing[0]
            ));
        }
        if self.objects_skipped > 0 {
            s.push_str(&format!("s3logs: {} skipped, converted by earlier runs\n", objects(self.objects_skipped)));
        }
        if !self.objects_changed.is_empty() {
            s.push_str(&format!(
                "s3logs: {} changed since their conversion, not converted again, e.g. {}\n",
                objects(self.objects_changed.len() as u64),
                self.objects_changed[0]
            ));
        }
        if let Some(e) = self.objects_elsewhere.first() {
            s.push_str(&format!(
                "s3logs: {} converted before from another place, not converted again, e.g. {} (converted as {})\n",
                objects(self.objects_elsewhere.len() as u64),
                e.name,
                e.converted_as
            ));
        }
        if !self.batches_finished.is_empty() || !self.batches_discarded.is_empty() {
            s.push_str(&format!(
                "s3logs: an interrupted run was cleaned up: {} committed batches finished, {} unfinished discarded\n",
                self.batches_finished.len(),
                self.batches_discarded.len()
            ));
        }
        if !self.batches_recreated.is_empty() {
            s.push_str(&format!(
                "s3logs: {} committed batches had lost their files (staging gone after the commit); their \
                 objects were converted again and the files published\n",
                self.batches_recreated.len()
            ));
        }
        match (self.committed, self.commits.len()) {
            (true, _) => {}
            (false, n) if !self.units_busy.is_empty() => s.push_str(&format!(
                "s3logs: {n} batch{} committed; {} unit{} held by other runs left to them\n",
                if n == 1 { "" } else { "es" },
                self.units_busy.len(),
                if self.units_busy.len() == 1 { "" } else { "s" },
            )),
            (false, 0) => s.push_str("s3logs: nothing was committed\n"),
            (false, n) => s.push_str(&format!(
                "s3logs: the run stopped after {n} committed batch{} (commits {}); the rest was not committed\n",
                if n == 1 { "" } else { "es" },
                self.commits.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
            )),
        }
        s
    }
}

/// Where `--report` goes: a file, standard output (`-`), or an S3 object (`s3://bucket/key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportTarget {
    File(PathBuf),
    Stdout,
    S3(String),
}

impl ReportTarget {
    pub fn parse(v: &str) -> ReportTarget {
        match v {
            "-" => ReportTarget::Stdout,
            v if v.starts_with("s3://") => ReportTarget::S3(v.to_string()),
            v => ReportTarget::File(PathBuf::from(v)),
        }
    }

    /// Checks that the report can be written, before any work: a run that commits and then
    /// cannot write its report would exit non-zero for a batch it did convert. An S3 report gets
    /// a placeholder (`{"running": true}`) that the report replaces when the run ends.
    pub fn check(&self, store: &StoreOptions) -> Result<(), Error> {
        match self {
            ReportTarget::File(path) => std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .map(drop)
                .map_err(|e| Error::write(path, e)),
            ReportTarget::Stdout => Ok(()),
            ReportTarget::S3(url) => put_s3(url, b"{\"running\": true}\n".to_vec(), store),
        }
    }

    pub fn write(&self, report: &Report, store: &StoreOptions) -> Result<(), Error> {
        let mut json = serde_json::to_vec_pretty(report).expect("the report serializes");
        json.push(b'\n');
        match self {
            ReportTarget::File(path) => std::fs::write(path, json).map_err(|e| Error::write(path, e)),
            ReportTarget::Stdout => {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                out.write_all(&json).and_then(|()| out.flush()).map_err(|e| Error::write("standard output", e))
            }
            ReportTarget::S3(url) => put_s3(url, json, store),
        }
    }
}

/// Puts `body` at `s3://bucket/key`, tried again on transient failures as every request is.
fn put_s3(url: &str, body: Vec<u8>, store: &StoreOptions) -> Result<(), Error> {
    use object_store::ObjectStoreExt;
    let (bucket, key) = crate::store::split_s3_url(url)
        .filter(|(_, key)| !key.is_empty() && !key.ends_with('/'))
        .ok_or_else(|| Error::Usage(format!("{url}: a report goes to an s3://bucket/key URL naming an object")))?;
    let rt = crate::store::runtime()?;
    let mut store = store.clone();
    crate::store::resolve_region(&mut store, &rt);
    let client = crate::store::s3_store(bucket, &store).map_err(|cause| Error::Store { url: url.into(), cause })?;
    let key = crate::store::key_path(key);
    rt.block_on(crate::store::retry::with_retries(&store.retry, || client.put(&key, body.clone().into())))
        .map(drop)
        .map_err(|e| crate::store::store_error(url, &e))
}
