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
    /// Commits made, over all units.
    pub commits: u64,
    /// Units (a source's key-day) with state in DEST.
    pub units: u64,
    /// Objects in the ledger DEST kept before per-unit state (`s3logs state migrate` moves them
    /// into their units); counted in `objects` too.
    pub legacy_objects: u64,
    /// The newest commit of any unit.
    pub last_commit: Option<CommitSummary>,
    /// `free`, `held` (some unit's lease is held by a live run), or `expired` (free to take).
    pub lease: &'static str,
    /// A held (or expired, not released) lease record, when there is one.
    pub lease_record: Option<LeaseRecord>,
    /// Units whose lease a run holds.
    pub units_held: Vec<String>,
    /// Staged batches with a commit record: the next run publishes them (`unit/batch`).
    pub staged_committed: Vec<String>,
    /// Staged batches without one: the next run discards them.
    pub staged_uncommitted: Vec<String>,
    /// Objects that could not be read, with the reason, sorted by name: none of their lines are in
    /// the table; runs skip them until they change or `--retry-quarantined` is given.
    pub quarantined: Vec<crate::report::Quarantined>,
}

/// Reads the state of `dest`: every unit's, and the legacy ledger's. Unlike a run, this reads
/// the whole history.
pub fn status(dest: &Destination) -> Result<Status, Error> {
    let units = dest.units_starting("")?;
    let mut s = Status {
        dest: dest.display(),
        objects: 0,
        bytes: 0,
        lines: 0,
        rows: 0,
        rejects: 0,
        commits: 0,
        units: units.len() as u64,
        legacy_objects: 0,
        last_commit: None,
        lease: "free",
        lease_record: None,
        units_held: Vec::new(),
        staged_committed: Vec::new(),
        staged_uncommitted: Vec::new(),
        quarantined: Vec::new(),
    };
    let now = lease::now_ms();
    let views = std::iter::once(dest.legacy()).chain(units.iter().map(|u| dest.for_unit(u)));
    for view in views {
        let ledger = Ledger::load(&view)?;
        if view.unit().is_none() {
            s.legacy_objects = ledger.objects.len() as u64;
        }
        for e in ledger.objects.values() {
            s.objects += 1;
            s.bytes += e.size;
            s.lines += e.lines;
            s.rows += e.rows;
            s.rejects += e.rejects;
            if let Some(reason) = &e.quarantined {
                s.quarantined.push(crate::report::Quarantined { name: e.name.clone(), reason: reason.clone() });
            }
        }
        s.commits += ledger.last_seq;
        if let Some(c) = &ledger.last_commit
            && s.last_commit.as_ref().is_none_or(|l| l.committed_at < c.committed_at)
        {
            s.last_commit = Some(c.clone());
        }
        let record = lease::current(&view)?;
        let state = match &record {
            None => "free",
            Some(r) if r.released => "free",
            Some(r) if r.is_free(now) => "expired",
            Some(_) => "held",
        };
        if state == "held" {
            s.units_held.push(view.unit().unwrap_or("(legacy)").to_string());
        }
        if state == "held" || (state == "expired" && s.lease == "free") {
            (s.lease, s.lease_record) = (state, record);
        }
        let unit = view.unit().map(|u| format!("{u}/")).unwrap_or_default();
        for b in view.staged_batches()? {
            let to = if ledger.commit_of(&b).is_some() { &mut s.staged_committed } else { &mut s.staged_uncommitted };
            to.push(format!("{unit}{b}"));
        }
    }
    s.quarantined.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(s)
}

/// The status of the DEST named `dest`, as text or JSON.
pub fn render(dest: &str, opts: &StoreOptions, json: bool) -> Result<String, Error> {
    let why = "no such folder (is DEST right? s3logs creates it when it first converts into it)";
    let (d, _rt) = Destination::open_existing(dest, opts, why)?;
    let s = status(&d)?;
    if json {
        return Ok(serde_json::to_string_pretty(&s).expect("a status serializes") + "\n");
    }
    let mut t = format!(
        "{}\n  converted: {} objects ({} bytes), {} lines: {} rows, {} rejects\n  commits: {} in {} unit{}\n",
        s.dest,
        s.objects,
        s.bytes,
        s.lines,
        s.rows,
        s.rejects,
        s.commits,
        s.units,
        if s.units == 1 { "" } else { "s" }
    );
    if s.legacy_objects > 0 {
        t.push_str(&format!(
            "  legacy ledger: {} objects (every run reads it whole; `s3logs state migrate {}` moves them into units)\n",
            s.legacy_objects, s.dest
        ));
    }
    match &s.last_commit {
        Some(c) => t.push_str(&format!(
            "  last commit: #{} at {} by {}: {} objects, {} rows, {} rejects, {} files\n",
            c.seq, c.committed_at, c.owner, c.objects, c.rows, c.rejects, c.files
        )),
        None => t.push_str("  last commit: none\n"),
    }
    match (&s.lease_record, s.lease) {
        (Some(r), "held") => t.push_str(&format!(
            "  lease: {} units held, e.g. {} by {} (written {})\n",
            s.units_held.len(),
            s.units_held[0],
            r.owner,
            r.written_at
        )),
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
