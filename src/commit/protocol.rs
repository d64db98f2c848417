//! The steps of the commit protocol that look at what earlier runs left: finishing or discarding
//! staged batches, and checking that every committed batch's files are in the table
//! (`docs/commit-protocol.md`).

use crate::commit::destination::Destination;
use crate::commit::ledger::{CommitRecord, Ledger};
use crate::error::Error;

/// What [`recover`] found in the staging area: batches finished (published) and discarded.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    pub(crate) finished: Vec<String>,
    pub(crate) discarded: Vec<String>,
}

/// Finishes what an interrupted run left in the staging area: a batch with a commit record is
/// published (its files are committed rows), any other is discarded (its objects are not in the
/// ledger, so they are converted again). Runs only under the lease.
pub(crate) fn recover(dest: &Destination, ledger: &mut Ledger) -> Result<Recovered, Error> {
    let mut recovered = Recovered::default();
    for batch in dest.staged_batches()? {
        if let Some(rec) = ledger.commit_of(&batch) {
            let (seq, paths): (u64, Vec<String>) = (rec.seq, rec.files.iter().map(|f| f.path.clone()).collect());
            dest.publish(&batch, &paths)?;
            ledger.mark_published(dest, seq)?;
            tracing::info!(batch, seq, "finished publishing an interrupted commit");
            recovered.finished.push(batch.clone());
        } else {
            tracing::info!(batch, "discarded an uncommitted batch");
            recovered.discarded.push(batch.clone());
        }
        dest.discard_staged(&batch)?;
    }
    Ok(recovered)
}

/// The files of `rec` that are not in the table.
pub(crate) fn missing_files(dest: &Destination, rec: &CommitRecord) -> Result<Vec<String>, Error> {
    let mut missing = Vec::new();
    for f in &rec.files {
        if !dest.exists(&f.path)? {
            missing.push(f.path.clone());
        }
    }
    Ok(missing)
}

/// Whether some commit not yet known to be published lacks a file in the table.
pub(crate) fn needs_repair(dest: &Destination, ledger: &Ledger) -> Result<bool, Error> {
    for rec in ledger.unverified() {
        if !missing_files(dest, rec)?.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The error for a committed batch whose rows cannot be put back into the table.
pub(crate) fn lost(dest: &Destination, rec: &CommitRecord, missing: &[String], why: String) -> Error {
    let mut files = missing.iter().take(5).map(|p| format!("{}/{p}", dest.display())).collect::<Vec<_>>().join(", ");
    if missing.len() > 5 {
        files.push_str(&format!(" and {} more", missing.len() - 5));
    }
    Error::CommittedFilesMissing(Box::new(crate::error::LostFiles {
        dest: dest.display(),
        seq: rec.seq,
        batch: rec.batch.clone(),
        missing: missing.len(),
        total: rec.files.len(),
        files,
        why,
        record: format!("{}/{}", dest.display(), crate::commit::ledger::seq_name(dest, "commits", rec.seq)),
    }))
}
