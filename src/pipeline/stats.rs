//! What a run counts as it goes (objects, lines, rows, rejects by reason, per object), and the
//! progress bar.

use crate::pipeline::parse::ObjectOutput;
use crate::report::Report;
use crate::rows::builder::{ChunkOutput, MAX_SAMPLES};

/// A progress bar of bytes and objects, with rate and ETA, when asked for (stderr is a terminal);
/// otherwise one that draws nothing. Its total grows as the listing goes on.
pub(crate) fn progress_bar(show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}")
            .expect("the template is valid"),
    );
    bar
}

/// One object's line counts.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ObjectCounts {
    pub(crate) lines: u64,
    pub(crate) rows: u64,
    pub(crate) rejects: u64,
}

/// The line counts of the objects of the batch being made, for its commit record: kept per
/// batch, so that they grow with the batch, not with the run.
pub(crate) type ObjectTally = std::collections::BTreeMap<String, ObjectCounts>;

pub(crate) fn tally(report: &mut Report, counts: &mut ObjectTally, o: &ObjectOutput) {
    if o.deferred.is_some() {
        return;
    }
    if let Some(name) = &o.missing {
        report.objects_missing.push(name.clone());
        return;
    }
    report.objects_read += 1;
    report.bytes_read += o.stored;
    report.bytes_decompressed += o.decoded;
    tally_chunks(report, counts, &o.name, &o.chunks);
}

pub(crate) fn tally_chunks(report: &mut Report, counts: &mut ObjectTally, object: &str, chunks: &[ChunkOutput]) {
    let counts = counts.entry(object.to_string()).or_default();
    for c in chunks {
        counts.lines += c.lines;
        counts.rows += c.rows;
        counts.rejects += c.rejected();
    }
    for c in chunks {
        report.lines_read += c.lines;
        report.rows_written += c.rows;
        report.lines_rejected += c.rejected();
        report.lines_lossy_utf8 += c.lossy_utf8;
        for (code, n) in &c.reject_codes {
            *report.reject_reasons.entry(code.to_string()).or_default() += n;
        }
        for s in &c.samples {
            if report.reject_samples.len() < MAX_SAMPLES {
                report.reject_samples.push(s.clone());
            }
        }
    }
}
