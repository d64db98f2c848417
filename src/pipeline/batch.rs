//! One batch: its objects converted into a local folder, staged, committed and published, and
//! the repair of a committed batch whose files were lost (converted again into the same files).

use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::commit::batch::{LocalBatch, StagedBatch};
use crate::commit::destination::Destination;
use crate::commit::lease::Lease;
use crate::commit::ledger::{CommitRecord, FileEntry, Ledger, ObjectEntry};
use crate::commit::protocol::lost;
use crate::commit::protocol::missing_files;
use crate::error::Error;
use crate::parquet_sink::WrittenFile;
use crate::pipeline::feed::BatchWindows;
use crate::pipeline::feed::Feed;
use crate::pipeline::options::ConvertOptions;
use crate::pipeline::prefetch::Fetcher;
use crate::pipeline::progress::Progress;
use crate::pipeline::stats::{BatchTally, ObjectCounts, RunStats};
use crate::pipeline::windows::prepare_output;
use crate::pipeline::windows::{Threads, parse_and_write};
use crate::source::SourceObject;
use crate::source::listing::Listing;

/// A short, stable identity of a batch: its objects' names, ETags and sizes, in order. It names
/// the batch's staging folder and files, so the same input gives the same names. Standard input
/// and pipes have no identity: a batch holding one gets a name of its own (the time and process),
/// so that it cannot take the name of an earlier batch's files.
pub fn batch_id(objects: &[SourceObject]) -> String {
    let mut h = Sha256::new();
    if objects.iter().any(SourceObject::is_stdin) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        h.update(now.as_nanos().to_le_bytes());
        h.update(std::process::id().to_le_bytes());
    }
    for o in objects {
        h.update(o.name.as_bytes());
        h.update([0]);
        h.update(o.etag.as_deref().unwrap_or("").as_bytes());
        h.update([0]);
        h.update(o.size.to_le_bytes());
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Checks, under the lease and after [`recover`], that every commit not yet known to be published
/// has all its files in the table, so a run never says it converted what the table does not hold.
/// A commit whose files all are is marked published. One whose files reached neither the table nor
/// the staging area (the staging was removed after the commit point, or discarded by a run that
/// took over while the commit request was stalled) is converted again from its recorded objects,
/// into the same files, which are published: nothing else can bring its rows back. One with only
/// some files in the table stops the run with an error naming the others: converting its objects
/// again would repeat the rows that did arrive.
pub(crate) fn repair(run: &Run, ledger: &mut Ledger, stats: &mut RunStats) -> Result<(), Error> {
    let unverified: Vec<CommitRecord> = ledger.unverified().cloned().collect();
    for rec in unverified {
        let missing = missing_files(run.dest, &rec)?;
        if missing.len() == rec.files.len() && !missing.is_empty() {
            recreate(run, ledger, &rec, &missing, stats)?;
            tracing::warn!(seq = rec.seq, batch = rec.batch, "a committed batch's files were lost; converted again");
            stats.batches_recreated.push(rec.batch.clone());
        } else if !missing.is_empty() {
            let why = "the others are in the table, so converting its objects again would repeat their rows";
            return Err(lost(run.dest, &rec, &missing, why.into()));
        }
        ledger.mark_published(run.dest, rec.seq)?;
    }
    Ok(())
}

/// Converts the objects of committed batch `rec` again, into its staging area under its own name,
/// and publishes the files when they are the ones its record names (same paths, same rows).
fn recreate(
    run: &Run,
    ledger: &mut Ledger,
    rec: &CommitRecord,
    missing: &[String],
    stats: &mut RunStats,
) -> Result<(), Error> {
    let dest = run.dest;
    let fail = |why: String| lost(dest, rec, missing, why);
    // Quarantined objects gave no lines to the batch's files.
    let entries: Vec<&ObjectEntry> = rec.objects.iter().filter(|o| o.quarantined.is_none()).collect();
    if entries.is_empty() || entries.iter().any(|o| o.read_once) {
        return Err(fail("its input was standard input, which cannot be read again".into()));
    }
    let names: Vec<String> = entries.iter().map(|o| o.name.clone()).collect();
    let found = crate::source::find_recorded(&names, &run.opts.source_store(), run.threads.rt)?;
    let mut objects = Vec::with_capacity(found.len());
    for (entry, now) in entries.into_iter().zip(found) {
        match now {
            None => {
                return Err(fail(format!("its log object {} is gone, so it cannot be converted again", entry.name)));
            }
            Some(o) if o.size != entry.size || (entry.etag.is_some() && o.etag != entry.etag) => {
                return Err(fail(format!("its log object {} changed since it was converted", entry.name)));
            }
            Some(o) => objects.push(o),
        }
    }
    let mut listing = Listing::of(objects);
    let opts = ConvertOptions { batch_bytes: u64::MAX, ..run.opts.clone() };
    let mut feed = Feed::new(&mut listing, Fetcher::new(&opts));
    let again =
        Run { opts: &opts, threads: run.threads, dest, lease: run.lease, owner: run.owner.clone(), catalog: None };
    // Its objects are not among the new ones the bar counts.
    let quiet = Progress::new(false);
    let Staged { staged, .. } = stage_batch(&again, &mut feed, &Ledger::default(), Some(&rec.batch), stats, &quiet)?
        .ok_or_else(|| fail("its log objects gave no lines when converted again".into()))?;
    let shape = |mut v: Vec<(String, u64)>| {
        v.sort();
        v
    };
    let made = shape(staged.files().iter().map(|f| (f.path.clone(), f.rows)).collect());
    if made != shape(rec.files.iter().map(|f| (f.path.clone(), f.rows)).collect()) {
        // Dropped: the staged files are discarded.
        return Err(fail(
            "converting its objects again gave other files (run with the options of the run that committed it: \
             --partition-by, --target-file-size, --row-group-rows)"
                .into(),
        ));
    }
    staged.recorded(rec.seq).publish(ledger)?;
    Ok(())
}

/// What a batch needs besides its objects.
pub(crate) struct Run<'a> {
    pub(crate) opts: &'a ConvertOptions,
    /// The runtime, the parser and encoder threads, and the windows parsed ahead.
    pub(crate) threads: Threads<'a>,
    pub(crate) dest: &'a Destination,
    pub(crate) lease: &'a Lease,
    pub(crate) owner: String,
    /// The Glue table its commits' partitions are registered in (`--glue-table`).
    pub(crate) catalog: Option<std::sync::Arc<crate::catalog::Catalog>>,
}

/// A batch staged in DEST, and what its commit record needs to say.
struct Staged<'d> {
    staged: StagedBatch<'d>,
    objects: Vec<SourceObject>,
    /// The line counts of its objects, for its commit record.
    counts: std::collections::BTreeMap<String, ObjectCounts>,
    /// Objects listed but gone when fetched: not recorded.
    missing: Vec<String>,
    /// Objects of the batch that could not be read, and why: recorded, none of their lines written.
    quarantined: Vec<(SourceObject, String)>,
    /// When staging began (the commit stage's time runs from there).
    started: Instant,
}

/// Draws new objects (those `ledger` does not hold) from the listing, parses them and writes their
/// files locally (under a provisional name, since the batch's name comes from its objects unless
/// `name` gives it), stages them in DEST and checks the lease. A failure leaves nothing staged and
/// the table as it was. `None` when there was nothing left to convert.
fn stage_batch<'d>(
    run: &Run<'d>,
    feed: &mut Feed,
    ledger: &Ledger,
    name: Option<&str>,
    stats: &mut RunStats,
    progress: &Progress,
) -> Result<Option<Staged<'d>>, Error> {
    let (opts, dest) = (run.opts, run.dest);
    // Unique in the process: two runs in one process (a library caller's, or tests') must not
    // share a local folder, which the first to finish would remove under the other.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let provisional = format!("new-{}-{}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    // An object that cannot be read (corrupt, unreadable) is quarantined, and the batch is made
    // again without it from the start: its other objects are drawn again, and the attempt's
    // tally is dropped, so no line of the bad object reaches the batch's files or the run's stats.
    let mut quarantined: Vec<(SourceObject, String)> = Vec::new();
    let (local, objects, mut tally, data, rejects) = loop {
        // Dropped on any way out before staging, it removes what it wrote.
        let local = LocalBatch::new(dest, provisional.clone());
        let mut windows = BatchWindows {
            feed: &mut *feed,
            ledger,
            window_bytes: opts.window_bytes,
            batch_bytes: opts.batch_bytes.max(1),
            taken: Vec::new(),
            taken_bytes: 0,
            tally: BatchTally::default(),
        };
        let written = prepare_output(dest, local.folder()).and_then(|()| {
            parse_and_write(&mut windows, opts, &run.threads, local.folder(), local.provisional(), progress)
        });
        let (objects, tally) = (std::mem::take(&mut windows.taken), std::mem::take(&mut windows.tally));
        match written {
            Ok((data, rejects)) => break (local, objects, tally, data, rejects),
            Err(e) => {
                drop(local);
                let Some(bad) = unreadable_object(&e, &objects) else {
                    stats.add_batch(tally);
                    return Err(e);
                };
                tracing::warn!(object = objects[bad].name, error = %e, "quarantined: cannot be read");
                let mut again: std::collections::VecDeque<SourceObject> = Default::default();
                for (i, o) in objects.into_iter().enumerate() {
                    if i == bad {
                        quarantined.push((o, e.to_string()));
                    } else {
                        again.push_back(o);
                    }
                }
                again.extend(feed.peeked.take());
                again.extend(std::mem::take(&mut feed.replay));
                feed.replay = again;
            }
        }
    };
    if objects.is_empty() && quarantined.is_empty() {
        return Ok(None);
    }
    let all: Vec<SourceObject> = objects.iter().chain(quarantined.iter().map(|(o, _)| o)).cloned().collect();
    let batch = name.map_or_else(|| batch_id(&all), str::to_string);
    let (counts, missing) = (std::mem::take(&mut tally.objects), tally.objects_missing.clone());
    let (lines, rejected) = (tally.lines.read, tally.lines.rejected);
    let first = tally.lines.samples.first().map(|s| format!("{}:{}: {}", s.source_object, s.source_line, s.reason));
    stats.add_batch(tally);
    let ratio = if lines == 0 { 0.0 } else { rejected as f64 / lines as f64 };
    if rejected > opts.max_rejects && ratio > opts.max_reject_ratio {
        let first = first.unwrap_or_default();
        let (max, floor) = (opts.max_reject_ratio, opts.max_rejects);
        return Err(Error::TooManyRejects { rejected, lines, ratio, max, floor, first });
    }
    let files: Vec<WrittenFile> =
        with_prefix("data", data).into_iter().chain(with_prefix("rejects", rejects)).collect();
    let started = Instant::now();
    let staged = local.stage(&batch, files, opts.upload_part_bytes, run.lease)?;
    Ok(Some(Staged { staged, objects, counts, missing, quarantined, started }))
}

/// Which of `objects` an error is the fault of, when it is that object's own and will not go
/// away by trying again: corrupt compressed data, or a local file that cannot be read. An S3
/// store's refusal is not quarantined: it is more often the bucket's (a policy, a key) than one
/// object's, and quarantining every object of a bucket would make later runs skip them all; it
/// stops the run instead, as errors that retrying may cure do. Standard input and pipes cannot be
/// quarantined: they are read once.
fn unreadable_object(e: &Error, objects: &[SourceObject]) -> Option<usize> {
    let name = match e {
        Error::Decompress { path, .. } | Error::Read { path, .. } => path,
        _ => return None,
    };
    objects.iter().position(|o| &o.name == name && !o.is_stdin())
}

/// Converts one batch and commits it: stage its files ([`stage_batch`]), create the commit record
/// (the commit point), publish the files into the table, record that they are there, and empty the
/// staging area. A failure before the commit record leaves the table as it was. Returns false when
/// there was nothing left to convert.
pub(crate) fn convert_batch(
    run: &Run,
    feed: &mut Feed,
    ledger: &mut Ledger,
    stats: &mut RunStats,
    progress: &Progress,
) -> Result<bool, Error> {
    let Some(Staged { staged, objects, counts, missing, quarantined, started }) =
        stage_batch(run, feed, ledger, None, stats, progress)?
    else {
        return Ok(false);
    };
    let missing: std::collections::HashSet<&str> = missing.iter().map(String::as_str).collect();
    let entries = objects
        .iter()
        .filter(|o| !missing.contains(o.name.as_str()))
        .map(|o| {
            let c = counts.get(&o.name).copied().unwrap_or_default();
            let read_once = o.is_stdin();
            ObjectEntry {
                // Standard input and pipes have no identity across runs: each run's is its own.
                name: if read_once { format!("{} (batch {})", o.name, staged.name()) } else { o.name.clone() },
                etag: o.etag.clone(),
                size: o.size,
                lines: c.lines,
                rows: c.rows,
                rejects: c.rejects,
                commit: ledger.last_seq + 1,
                quarantined: None,
                read_once,
            }
        })
        .chain(quarantined.iter().map(|(o, reason)| ObjectEntry {
            name: o.name.clone(),
            etag: o.etag.clone(),
            size: o.size,
            lines: 0,
            rows: 0,
            rejects: 0,
            commit: ledger.last_seq + 1,
            quarantined: Some(reason.clone()),
            read_once: false,
        }))
        .collect();
    let rec = CommitRecord {
        seq: ledger.last_seq + 1,
        batch: staged.name().to_string(),
        committed_at: crate::commit::ledger::now_rfc3339(),
        owner: run.owner.clone(),
        objects: entries,
        files: staged.files().iter().map(FileEntry::from).collect(),
    };
    // The partitions it publishes are recorded before the commit: registered by this run after
    // it, or by the next one if this one stops in between.
    if let Some(c) = &run.catalog {
        c.intend(staged.files())?;
    }
    let committed = staged.commit(ledger, rec)?;
    stats.commits.push(committed.seq());
    // Past the commit point the batch is committed whatever happens: a failure here leaves its
    // files for the next run to publish, which a scheduler gets by retrying.
    let files = committed.publish(ledger)?;
    stats.stage_seconds.commit += started.elapsed().as_secs_f64();
    stats
        .objects_quarantined
        .extend(quarantined.into_iter().map(|(o, reason)| crate::report::Quarantined { name: o.name, reason }));
    for f in files {
        if f.path.starts_with("data/") {
            stats.files_written.push(f);
        } else {
            stats.reject_files_written.push(f);
        }
    }
    Ok(true)
}

fn with_prefix(prefix: &str, files: Vec<WrittenFile>) -> Vec<WrittenFile> {
    files.into_iter().map(|f| WrittenFile { path: format!("{prefix}/{}", f.path), ..f }).collect()
}
