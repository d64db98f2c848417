//! `s3logs status DEST`: what the ledger says has been converted, the last commit, the lease, and
//! anything an interrupted run left staged. It only reads.

use serde::Serialize;

use crate::commit::destination::Destination;
use crate::commit::lease::{self, LeaseRecord};
use crate::commit::ledger::{CommitSummary, Ledger};
use crate::error::Error;
use crate::store::StoreOptions;

#[derive(Debug, Serialize)]
pub struct Status {
    pub dest: String,
    pub objects: u64,
    /// Stored bytes of the converted objects.
    pub bytes: u64,
    pub lines: u64,
    pub rows: u64,
    pub rejects: u64,
    /// Commits made (the highest commit number).
    pub commits: u64,
    pub checkpoint: u64,
    pub last_commit: Option<CommitSummary>,
    /// `free`, `held`, or `expired` (free to take).
    pub lease: &'static str,
    pub lease_record: Option<LeaseRecord>,
    /// Staged batches with a commit record: the next run publishes them.
    pub staged_committed: Vec<String>,
    /// Staged batches without one: the next run discards them.
    pub staged_uncommitted: Vec<String>,
    /// Objects that could not be read, with the reason, sorted by name: none of their lines are in
    /// the table; runs skip them until they change or `--retry-quarantined` is given.
    pub quarantined: Vec<crate::report::Quarantined>,
}

/// Reads the state of `dest`.
pub fn status(dest: &Destination) -> Result<Status, Error> {
    let ledger = Ledger::load(dest)?;
    let lease_record = lease::current(dest)?;
    let now = lease::now_ms();
    let lease = match &lease_record {
        None => "free",
        Some(r) if r.released => "free",
        Some(r) if r.is_free(now) => "expired",
        Some(_) => "held",
    };
    let (staged_committed, staged_uncommitted) =
        dest.staged_batches()?.into_iter().partition(|b| ledger.commit_of(b).is_some());
    let o = ledger.objects.values();
    let mut quarantined: Vec<crate::report::Quarantined> = o
        .clone()
        .filter_map(|e| Some(crate::report::Quarantined { name: e.name.clone(), reason: e.quarantined.clone()? }))
        .collect();
    quarantined.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Status {
        dest: dest.display(),
        objects: ledger.objects.len() as u64,
        bytes: o.clone().map(|e| e.size).sum(),
        lines: o.clone().map(|e| e.lines).sum(),
        rows: o.clone().map(|e| e.rows).sum(),
        rejects: o.map(|e| e.rejects).sum(),
        commits: ledger.last_seq,
        checkpoint: ledger.checkpoint_seq,
        last_commit: ledger.last_commit.clone(),
        lease,
        lease_record,
        staged_committed,
        staged_uncommitted,
        quarantined,
    })
}

/// The status of the DEST named `dest`, as text or JSON.
pub fn render(dest: &str, opts: &StoreOptions, json: bool) -> Result<String, Error> {
    let rt = dest.starts_with("s3://").then(crate::store::runtime).transpose()?;
    let mut opts = opts.clone();
    if let Some(rt) = &rt {
        crate::store::resolve_region(&mut opts, rt);
    }
    let d = Destination::parse(dest, &opts, rt.as_ref())?;
    if let Destination::Local(p) = &d
        && !p.is_dir()
    {
        let why = "no such folder (is DEST right? s3logs creates it when it first converts into it)";
        return Err(Error::read(p, std::io::Error::new(std::io::ErrorKind::NotFound, why)));
    }
    let s = status(&d)?;
    if json {
        return Ok(serde_json::to_string_pretty(&s).expect("a status serializes") + "\n");
    }
    let mut t = format!(
        "{}\n  converted: {} objects ({} bytes), {} lines: {} rows, {} rejects\n  commits: {} (checkpoint at {})\n",
        s.dest, s.objects, s.bytes, s.lines, s.rows, s.rejects, s.commits, s.checkpoint
    );
    match &s.last_commit {
        Some(c) => t.push_str(&format!(
            "  last commit: #{} at {} by {}: {} objects, {} rows, {} rejects, {} files\n",
            c.seq, c.committed_at, c.owner, c.objects, c.rows, c.rejects, c.files
        )),
        None => t.push_str("  last commit: none\n"),
    }
    match (&s.lease_record, s.lease) {
        (Some(r), "held") => t.push_str(&format!("  lease: held by {} (written {})\n", r.owner, r.written_at)),
        (_, state) => t.push_str(&format!("  lease: {state}\n")),
    }
    if !s.staged_committed.is_empty() || !s.staged_uncommitted.is_empty() {
        t.push_str(&format!(
            "  interrupted: {} committed batches to finish, {} uncommitted to discard (the next run does both)\n",
            s.staged_committed.len(),
            s.staged_uncommitted.len()
        ));
    }
    if let Some(q) = s.quarantined.first() {
        t.push_str(&format!(
            "  quarantined: {} objects could not be read (skipped until they change, or --retry-quarantined), \
             e.g. {}: {}\n",
            s.quarantined.len(),
            q.name,
            q.reason
        ));
    }
    Ok(t)
}
