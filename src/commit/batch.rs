//! The commit protocol as types, so that its order cannot be broken by the code that drives it.
//!
//! A batch's files are written in a [`LocalBatch`]'s folder under a provisional name; staging
//! names them and makes them durable in DEST's staging area, giving a [`StagedBatch`]; creating its
//! commit record (the commit point) gives a [`CommittedBatch`], and only that can publish the
//! files into the table. A local or staged batch dropped before its commit point discards what it
//! wrote, so a failure leaves the table and the staging area as they were; a committed batch
//! leaves its files to be published by the next run if this one cannot.

use std::path::{Path, PathBuf};

use crate::commit::destination::Destination;
use crate::commit::lease::Lease;
use crate::commit::ledger::{CommitRecord, Ledger};
use crate::error::Error;
use crate::parquet_sink::{WrittenFile, naming};

/// A batch being written in a local folder (for a local DEST, its staging folder), under a
/// provisional name. Dropped unstaged, its folder is removed.
pub struct LocalBatch<'d> {
    dest: &'d Destination,
    folder: PathBuf,
    provisional: String,
    /// Staged: the staged batch owns its files now.
    handed_over: bool,
}

impl<'d> LocalBatch<'d> {
    /// A batch of `dest` to be written under the provisional name `provisional`.
    pub fn new(dest: &'d Destination, provisional: String) -> Self {
        LocalBatch { dest, folder: dest.local_staging(&provisional), provisional, handed_over: false }
    }

    /// The folder its files are written in.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// The name its files are written under until it is staged.
    pub fn provisional(&self) -> &str {
        &self.provisional
    }

    /// Gives its files (paths relative to its folder, as written) the batch's name `batch`, makes
    /// them durable in DEST's staging area (uploaded for an S3 DEST, in parts of `part_size`), and
    /// checks that `lease` is still this run's with time to spare.
    pub fn stage(
        mut self,
        batch: &str,
        files: Vec<WrittenFile>,
        part_size: usize,
        lease: &Lease,
    ) -> Result<StagedBatch<'d>, Error> {
        let dest = self.dest;
        let mut renamed = Vec::with_capacity(files.len());
        for f in files {
            let path = naming::for_batch(&f.path, &self.provisional, batch)
                .ok_or_else(|| Error::Internal(format!("{} is not a file of batch {}", f.path, self.provisional)))?;
            let to = self.folder.join(&path);
            std::fs::rename(self.folder.join(&f.path), &to).map_err(|e| Error::write(&to, e))?;
            renamed.push(WrittenFile { path, ..f });
        }
        // A local DEST's batch moves to its staging folder under its name.
        let target = if dest.is_remote() { self.folder.clone() } else { dest.local_staging(batch) };
        if target != self.folder {
            if target.exists() {
                std::fs::remove_dir_all(&target).map_err(|e| Error::write(&target, e))?;
            }
            std::fs::rename(&self.folder, &target).map_err(|e| Error::write(&target, e))?;
            self.folder = target.clone();
        }
        // From here the batch is in DEST's staging area (or on its way there): dropping the
        // staged batch discards it there, and its local folder with it.
        let staged = StagedBatch { dest, name: batch.to_string(), files: renamed, local: target, settled: false };
        self.handed_over = true;
        dest.stage(&staged.name, &staged.local, &staged.files, part_size)?;
        lease.check()?;
        dest.remove_local_staging(&staged.local);
        crate::commit::crash_point::reached("staged");
        Ok(staged)
    }
}

impl Drop for LocalBatch<'_> {
    fn drop(&mut self) {
        if self.handed_over {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.folder);
        if let Some(root) = self.dest.local_root() {
            self.dest.remove_empty_staging(root);
        }
    }
}

/// A batch whose files are durable in DEST's staging area, not yet committed. Dropped before its
/// commit was tried, it is discarded from the staging area.
pub struct StagedBatch<'d> {
    dest: &'d Destination,
    name: String,
    files: Vec<WrittenFile>,
    /// The local folder its files were written in.
    local: PathBuf,
    /// Its commit was tried (or it was found committed): no longer this value's to discard.
    settled: bool,
}

impl<'d> StagedBatch<'d> {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its files, paths relative to DEST.
    pub fn files(&self) -> &[WrittenFile] {
        &self.files
    }

    /// Creates its commit record `rec` (the commit point). If another run took that commit
    /// number first, it holds the lease now: the staging is left to it, and this run stops.
    pub fn commit(mut self, ledger: &mut Ledger, rec: CommitRecord) -> Result<CommittedBatch<'d>, Error> {
        let seq = rec.seq;
        // Whatever the answer, the record may exist now: the staging is no longer ours to remove.
        self.settled = true;
        if !ledger.commit(self.dest, rec)? {
            return Err(Error::LeaseLost { dest: self.dest.display() });
        }
        tracing::info!(seq, batch = self.name, files = self.files.len(), "committed");
        crate::commit::crash_point::reached("committed");
        Ok(self.into_committed(seq))
    }

    /// The batch as the committed batch `seq`, whose record already names these files: a batch
    /// converted again because its files were lost.
    pub fn recorded(mut self, seq: u64) -> CommittedBatch<'d> {
        self.settled = true;
        self.into_committed(seq)
    }

    fn into_committed(mut self, seq: u64) -> CommittedBatch<'d> {
        let (name, files) = (std::mem::take(&mut self.name), std::mem::take(&mut self.files));
        CommittedBatch { dest: self.dest, seq, name, files }
    }
}

impl Drop for StagedBatch<'_> {
    fn drop(&mut self) {
        if !self.settled {
            let _ = self.dest.discard_staged(&self.name);
        }
        // An S3 DEST's local folder (a local DEST's is its staging folder, handled above).
        self.dest.remove_local_staging(&self.local);
        if let Some(root) = self.dest.local_root() {
            self.dest.remove_empty_staging(root);
        }
    }
}

/// A batch whose commit record exists: its rows are committed whatever happens next. Only it
/// can publish its files.
pub struct CommittedBatch<'d> {
    dest: &'d Destination,
    seq: u64,
    name: String,
    files: Vec<WrittenFile>,
}

impl CommittedBatch<'_> {
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Publishes its files into the table, records that they are there, and empties its staging.
    /// A failure is [`Error::Unpublished`]: nothing is lost, the next run publishes them.
    pub fn publish(self, ledger: &mut Ledger) -> Result<Vec<WrittenFile>, Error> {
        let (dest, seq) = (self.dest, self.seq);
        let unpublished = |cause| Error::Unpublished { dest: dest.display(), seq, cause: Box::new(cause) };
        let paths: Vec<String> = self.files.iter().map(|f| f.path.clone()).collect();
        dest.publish(&self.name, &paths).map_err(unpublished)?;
        crate::commit::crash_point::reached("published");
        ledger.mark_published(dest, seq).map_err(unpublished)?;
        dest.discard_staged(&self.name).map_err(unpublished)?;
        Ok(self.files)
    }
}
