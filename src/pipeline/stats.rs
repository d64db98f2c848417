//! What a run counts as it goes: each attempt at a batch in its own tally (objects, lines, rows,
//! rejects by reason, per object for the commit record), added to the run's stats once the
//! attempt stands; the report is built from the run's stats once, when the run ends.

use std::collections::BTreeMap;

use crate::parquet_sink::WrittenFile;
use crate::pipeline::parse::ObjectOutput;
use crate::report::{Elsewhere, PlannedObject, Quarantined, Report, StageSeconds, TransferFigures};
use crate::rows::builder::{ChunkOutput, MAX_SAMPLES, RejectSample};

/// One object's line counts.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ObjectCounts {
    pub(crate) lines: u64,
    pub(crate) rows: u64,
    pub(crate) rejects: u64,
}

/// Lines read, and what became of them.
#[derive(Debug, Clone, Default)]
pub(crate) struct LineCounts {
    pub(crate) read: u64,
    pub(crate) rows: u64,
    pub(crate) rejected: u64,
    pub(crate) lossy_utf8: u64,
    pub(crate) reasons: BTreeMap<&'static str, u64>,
    /// The first few rejects.
    pub(crate) samples: Vec<RejectSample>,
}

impl LineCounts {
    /// The counts of one parsed chunk.
    fn of(c: &ChunkOutput) -> LineCounts {
        LineCounts {
            read: c.lines,
            rows: c.rows,
            rejected: c.rejected(),
            lossy_utf8: c.lossy_utf8,
            reasons: c.reject_codes.clone(),
            samples: c.samples.iter().take(MAX_SAMPLES).cloned().collect(),
        }
    }

    fn add(&mut self, other: LineCounts) {
        self.read += other.read;
        self.rows += other.rows;
        self.rejected += other.rejected;
        self.lossy_utf8 += other.lossy_utf8;
        for (code, n) in other.reasons {
            *self.reasons.entry(code).or_default() += n;
        }
        let room = MAX_SAMPLES.saturating_sub(self.samples.len());
        self.samples.extend(other.samples.into_iter().take(room));
    }
}

/// What one attempt at a batch read and parsed. Its objects' line counts go to the batch's
/// commit record, the rest to the run's stats once the attempt stands: an attempt given up (to
/// try the batch again without an object that could not be read) is dropped whole, so its lines
/// count once, in the attempt that is committed.
#[derive(Debug, Default)]
pub(crate) struct BatchTally {
    /// Each object's line counts, for the commit record: they grow with the batch, not the run.
    pub(crate) objects: BTreeMap<String, ObjectCounts>,
    pub(crate) objects_read: u64,
    pub(crate) objects_missing: Vec<String>,
    pub(crate) bytes_read: u64,
    pub(crate) bytes_decompressed: u64,
    pub(crate) lines: LineCounts,
    pub(crate) fetch: TransferFigures,
    pub(crate) read_parse_seconds: f64,
    pub(crate) encode_seconds: f64,
}

impl BatchTally {
    /// Counts an object parsed whole (or listed but gone).
    pub(crate) fn object(&mut self, o: &ObjectOutput) {
        if o.deferred.is_some() {
            return;
        }
        if let Some(name) = &o.missing {
            self.objects_missing.push(name.clone());
            return;
        }
        self.objects_read += 1;
        self.bytes_read += o.stored;
        self.bytes_decompressed += o.decoded;
        self.chunks(&o.name, &o.chunks);
    }

    /// Counts the lines of parsed chunks of `object`.
    pub(crate) fn chunks(&mut self, object: &str, chunks: &[ChunkOutput]) {
        let counts = self.objects.entry(object.to_string()).or_default();
        for c in chunks {
            counts.lines += c.lines;
            counts.rows += c.rows;
            counts.rejects += c.rejected();
            self.lines.add(LineCounts::of(c));
        }
    }
}

/// What a run counts as it goes; the report is built from it once, when the run ends
/// ([`RunStats::report`]).
#[derive(Debug, Default)]
pub(crate) struct RunStats {
    pub(crate) output: String,
    pub(crate) dry_run: bool,
    pub(crate) would_convert: Vec<PlannedObject>,
    pub(crate) nothing_new: bool,
    pub(crate) objects_skipped: u64,
    pub(crate) objects_changed: Vec<String>,
    pub(crate) objects_elsewhere: Vec<Elsewhere>,
    pub(crate) commits: Vec<u64>,
    pub(crate) batches_finished: Vec<String>,
    pub(crate) batches_discarded: Vec<String>,
    pub(crate) batches_recreated: Vec<String>,
    pub(crate) objects_read: u64,
    pub(crate) objects_missing: Vec<String>,
    pub(crate) objects_quarantined: Vec<Quarantined>,
    pub(crate) bytes_read: u64,
    pub(crate) bytes_decompressed: u64,
    pub(crate) lines: LineCounts,
    pub(crate) files_written: Vec<WrittenFile>,
    pub(crate) reject_files_written: Vec<WrittenFile>,
    pub(crate) listing: TransferFigures,
    pub(crate) fetch: TransferFigures,
    pub(crate) stage_seconds: StageSeconds,
    pub(crate) retries: u64,
    pub(crate) throttled: u64,
    pub(crate) request_limit_lowest: Option<usize>,
    pub(crate) committed: bool,
    pub(crate) objects_other_units: u64,
    pub(crate) units_busy: Vec<String>,
    pub(crate) dest_requests: crate::commit::destination::DestRequests,
}

impl RunStats {
    /// Adds what an attempt at a batch did (its objects' line counts went to its commit record).
    pub(crate) fn add_batch(&mut self, t: BatchTally) {
        self.objects_read += t.objects_read;
        self.objects_missing.extend(t.objects_missing);
        self.bytes_read += t.bytes_read;
        self.bytes_decompressed += t.bytes_decompressed;
        self.lines.add(t.lines);
        self.fetch.objects += t.fetch.objects;
        self.fetch.bytes += t.fetch.bytes;
        self.fetch.seconds += t.fetch.seconds;
        self.stage_seconds.read_parse += t.read_parse_seconds;
        self.stage_seconds.encode += t.encode_seconds;
    }

    /// The report of the run, which took `duration_s`.
    pub(crate) fn report(mut self, duration_s: f64) -> Report {
        let lines = std::mem::take(&mut self.lines);
        Report {
            lines_read: lines.read,
            rows_written: lines.rows,
            lines_rejected: lines.rejected,
            lines_lossy_utf8: lines.lossy_utf8,
            reject_reasons: lines.reasons.into_iter().map(|(code, n)| (code.to_string(), n)).collect(),
            reject_samples: lines.samples,
            output: self.output,
            objects_skipped: self.objects_skipped,
            objects_changed: self.objects_changed,
            objects_elsewhere: self.objects_elsewhere,
            nothing_new: self.nothing_new,
            dry_run: self.dry_run,
            would_convert: self.would_convert,
            commits: self.commits,
            batches_finished: self.batches_finished,
            batches_discarded: self.batches_discarded,
            batches_recreated: self.batches_recreated,
            objects_read: self.objects_read,
            objects_missing: self.objects_missing,
            objects_quarantined: self.objects_quarantined,
            bytes_read: self.bytes_read,
            bytes_decompressed: self.bytes_decompressed,
            files_written: self.files_written,
            reject_files_written: self.reject_files_written,
            listing: self.listing,
            fetch: self.fetch,
            retries: self.retries,
            throttled: self.throttled,
            request_limit_lowest: self.request_limit_lowest,
            stage_seconds: self.stage_seconds,
            committed: self.committed,
            objects_other_units: self.objects_other_units,
            units_busy: self.units_busy,
            dest_requests: self.dest_requests,
            duration_s,
        }
    }
}
