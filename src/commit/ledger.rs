//! The record of what has been converted into a DEST: which objects (name, ETag, size), into
//! which files, by which commit. It is the source of truth for incremental runs, not a time
//! watermark, so late objects in old key ranges and objects sharing a timestamp are found.
//!
//! Each unit (a source's key-day) has its own, in `DEST/_state/units/<unit>/`, outside the table,
//! as JSON a person can read (a DEST written before units has one in `DEST/_state/`, [`Legacy`]):
//!
//! - `commits/<seq>.json`: one per committed batch, created only if absent (so two runs can never
//!   both commit the same sequence number), listing the batch's objects and files. A batch's files
//!   are published into the table only after its record exists.
//! - `checkpoints/<seq>.json`: every object of commits up to `seq`, one per line, folded so a run
//!   reads one checkpoint and the few commits after it, not every commit ever made.
//! - `published/<seq>.json`: written once every file of commit `seq` was found in the table. A
//!   commit after the checkpoint without one is checked file by file before a run says it is done
//!   (its files may have been lost with the staging area); see docs/commit-protocol.md.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::commit::destination::Destination;
use crate::error::Error;
use crate::parquet_sink::WrittenFile;
use crate::source::SourceObject;

pub const COMMITS: &str = "commits";
pub const CHECKPOINTS: &str = "checkpoints";
pub const PUBLISHED: &str = "published";
/// A checkpoint is written once this many commits follow the last one.
const CHECKPOINT_EVERY: usize = 16;

/// One converted object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEntry {
    /// Its `source_object` name.
    pub name: String,
    /// Its ETag as listed (S3 objects only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    pub size: u64,
    pub lines: u64,
    pub rows: u64,
    pub rejects: u64,
    /// The commit that converted it.
    #[serde(default)]
    pub commit: u64,
    /// It could not be read (corrupt compressed data, unreadable): none of its lines are in the
    /// table, and runs skip it until it changes or `--retry-quarantined` is given. The reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<String>,
    /// Standard input or a pipe: read once, recorded for its counts (its name carries the batch,
    /// so each such run is its own entry), never matched by a later listing, never read again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_once: bool,
}

/// One committed batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitRecord {
    pub seq: u64,
    /// The batch's identity: it names its staging folder and its files.
    pub batch: String,
    /// When the record was written (RFC 3339, UTC).
    pub committed_at: String,
    /// The run that wrote it (host, process and a random token).
    pub owner: String,
    pub objects: Vec<ObjectEntry>,
    /// Files published into the table, paths relative to DEST.
    pub files: Vec<FileEntry>,
}

/// One file of a committed batch, as the ledger records it: its own type, so the writer's can
/// change without changing what is on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to DEST, such as `data/dt=2024-01-15/part-0123abcd-00000.parquet`.
    pub path: String,
    /// Its `dt` partition value, empty for the rejects.
    pub dt: String,
    pub rows: u64,
    pub bytes: u64,
}

impl From<&WrittenFile> for FileEntry {
    fn from(f: &WrittenFile) -> Self {
        FileEntry { path: f.path.clone(), dt: f.dt.clone(), rows: f.rows, bytes: f.bytes }
    }
}

/// A commit without its object list, for `status` and checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitSummary {
    pub seq: u64,
    pub batch: String,
    pub committed_at: String,
    pub owner: String,
    pub objects: u64,
    pub rows: u64,
    pub rejects: u64,
    pub files: u64,
}

impl CommitRecord {
    pub fn summary(&self) -> CommitSummary {
        CommitSummary {
            seq: self.seq,
            batch: self.batch.clone(),
            committed_at: self.committed_at.clone(),
            owner: self.owner.clone(),
            objects: self.objects.len() as u64,
            rows: self.objects.iter().map(|o| o.rows).sum(),
            rejects: self.objects.iter().map(|o| o.rejects).sum(),
            files: self.files.len() as u64,
        }
    }
}

/// A checkpoint file: its header, then its objects, one per line. Written from the ledger's
/// entries (`O = &ObjectEntry`), read as owned ones.
#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint<O = ObjectEntry> {
    seq: u64,
    written_at: String,
    last_commit: Option<CommitSummary>,
    objects: Vec<O>,
}

/// What a run does with a listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not converted yet.
    New,
    /// Converted before, same ETag and size.
    Skip,
    /// Converted before under the same name, but now with another ETag or size: not converted
    /// again (that would duplicate the first version's lines), reported.
    Changed,
    /// The same log delivery (file name, size, and ETag where both have one) was converted from
    /// another place, named here: a copied or moved folder, or a download of the bucket. Not
    /// converted again, reported.
    Elsewhere(String),
}

/// The state of a DEST as read at one moment.
#[derive(Debug, Default)]
pub struct Ledger {
    pub objects: HashMap<String, ObjectEntry>,
    /// The names of the objects converted from S3 log deliveries, by delivery file name.
    deliveries: HashMap<String, String>,
    /// The highest commit sequence number seen (0: none).
    pub last_seq: u64,
    pub checkpoint_seq: u64,
    /// Commits after the checkpoint, in order.
    pub recent: Vec<CommitRecord>,
    /// Commits after the checkpoint whose files were all found in the table.
    pub published: std::collections::HashSet<u64>,
    pub last_commit: Option<CommitSummary>,
}

/// The record numbered `seq` in `dest`'s state folder `dir` (relative to DEST).
pub fn seq_name(dest: &Destination, dir: &str, seq: u64) -> String {
    format!("{}/{seq:020}.json", dest.state_dir(dir))
}

pub fn seq_of(path: &str) -> Option<u64> {
    path.rsplit('/').next()?.strip_suffix(".json")?.parse().ok()
}

fn corrupt(dest: &Destination, rel: &str, e: impl std::fmt::Display) -> Error {
    Error::State { path: format!("{}/{rel}", dest.display()), cause: e.to_string() }
}

/// Now, as RFC 3339 in UTC.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The names of a view's state records. A unit's state is one folder, listed once (one request
/// in S3 for its checkpoints, commits and marks); the legacy DEST-wide state shares its folder
/// with every unit's, so its folders are listed one by one, from the number asked for.
enum Listing {
    Unit(Vec<String>),
    Legacy,
}

impl Listing {
    fn new(dest: &Destination) -> Result<Listing, Error> {
        Ok(match dest.unit() {
            Some(_) => Listing::Unit(dest.list(&dest.state_dir(""), None)?),
            None => Listing::Legacy,
        })
    }

    /// The records in state folder `dir` numbered after `after`, in order.
    fn records(&self, dest: &Destination, dir: &str, after: u64) -> Result<Vec<String>, Error> {
        let folder = format!("{}/", dest.state_dir(dir));
        let mut out = match self {
            Listing::Unit(all) => all.iter().filter(|p| p.starts_with(&folder)).cloned().collect(),
            Listing::Legacy => {
                let start = (after > 0).then(|| seq_name(dest, dir, after));
                dest.list(&dest.state_dir(dir), start.as_deref())?
            }
        };
        out.retain(|p| seq_of(p).is_some_and(|s| s > after));
        Ok(out)
    }
}

impl Ledger {
    /// Reads the newest checkpoint and the commits after it.
    pub fn load(dest: &Destination) -> Result<Ledger, Error> {
        Ledger::load_listed(dest, &Listing::new(dest)?)
    }

    fn load_listed(dest: &Destination, listing: &Listing) -> Result<Ledger, Error> {
        let mut ledger = Ledger::default();
        if let Some(rel) = listing.records(dest, CHECKPOINTS, 0)?.last() {
            let bytes = dest.read(rel)?.ok_or_else(|| corrupt(dest, rel, "listed but gone"))?;
            let cp: Checkpoint = serde_json::from_slice(&bytes).map_err(|e| corrupt(dest, rel, e))?;
            ledger.checkpoint_seq = cp.seq;
            ledger.last_seq = cp.seq;
            ledger.last_commit = cp.last_commit;
            for o in cp.objects {
                ledger.insert(o);
            }
        }
        ledger.read_after(dest, listing)?;
        Ok(ledger)
    }

    /// Applies the commits of `listing` after the last one read, and takes its published marks.
    fn read_after(&mut self, dest: &Destination, listing: &Listing) -> Result<(), Error> {
        for rel in listing.records(dest, COMMITS, self.last_seq)? {
            let bytes = dest.read(&rel)?.ok_or_else(|| corrupt(dest, &rel, "listed but gone"))?;
            let rec: CommitRecord = serde_json::from_slice(&bytes).map_err(|e| corrupt(dest, &rel, e))?;
            self.apply(rec);
        }
        self.published =
            listing.records(dest, PUBLISHED, self.checkpoint_seq)?.iter().filter_map(|p| seq_of(p)).collect();
        Ok(())
    }

    /// Brings the ledger up to date with what other runs committed since it was read: the
    /// commits after its last one (or, when a newer checkpoint was written, all of it again).
    pub fn refresh(&mut self, dest: &Destination) -> Result<(), Error> {
        let listing = Listing::new(dest)?;
        let newest = listing.records(dest, CHECKPOINTS, 0)?.iter().filter_map(|p| seq_of(p)).max();
        if newest.unwrap_or(0) != self.checkpoint_seq {
            *self = Ledger::load_listed(dest, &listing)?;
            return Ok(());
        }
        self.read_after(dest, &listing)
    }

    /// The commits after the checkpoint not yet known to have every file in the table.
    pub fn unverified(&self) -> impl Iterator<Item = &CommitRecord> {
        self.recent.iter().filter(|c| !self.published.contains(&c.seq))
    }

    /// Records that every file of commit `seq` is in the table.
    pub fn mark_published(&mut self, dest: &Destination, seq: u64) -> Result<(), Error> {
        dest.create(&seq_name(dest, PUBLISHED, seq), b"{}\n")?;
        self.published.insert(seq);
        Ok(())
    }

    fn apply(&mut self, rec: CommitRecord) {
        self.last_seq = self.last_seq.max(rec.seq);
        self.last_commit = Some(rec.summary());
        for o in &rec.objects {
            self.insert(o.clone());
        }
        self.recent.push(rec);
    }

    fn insert(&mut self, o: ObjectEntry) {
        if let Some(d) = crate::source::delivery_name(&o.name) {
            self.deliveries.insert(d.to_string(), o.name.clone());
        }
        self.objects.insert(o.name.clone(), o);
    }

    /// The name under which the same log delivery as `o` was converted, from another place.
    pub(crate) fn converted_elsewhere(&self, o: &SourceObject) -> Option<&str> {
        let first = self.objects.get(self.deliveries.get(crate::source::delivery_name(&o.name)?)?)?;
        let same = first.size == o.size && (first.etag.is_none() || o.etag.is_none() || first.etag == o.etag);
        (same && first.quarantined.is_none()).then_some(first.name.as_str())
    }

    /// Whether `o` is to be converted. Standard input has no identity across runs, so it is
    /// always new. A quarantined object is new again once it changed, or when `retry_quarantined`.
    pub fn classify(&self, o: &SourceObject, retry_quarantined: bool) -> Verdict {
        if o.is_stdin() {
            return Verdict::New;
        }
        match self.objects.get(&o.name) {
            None => match self.converted_elsewhere(o) {
                Some(first) => Verdict::Elsewhere(first.to_string()),
                None => Verdict::New,
            },
            Some(done) => {
                let same = done.size == o.size && (done.etag.is_none() || done.etag == o.etag);
                match (same, done.quarantined.is_some()) {
                    (true, true) if retry_quarantined => Verdict::New,
                    (true, _) => Verdict::Skip,
                    (false, true) => Verdict::New,
                    (false, false) => Verdict::Changed,
                }
            }
        }
    }

    /// The commit of `batch`, when it is among the commits after the checkpoint.
    pub fn commit_of(&self, batch: &str) -> Option<&CommitRecord> {
        self.recent.iter().find(|c| c.batch == batch)
    }

    /// Writes `rec` as the next commit. `Ok(false)`: another run committed that number first.
    pub fn commit(&mut self, dest: &Destination, rec: CommitRecord) -> Result<bool, Error> {
        let bytes = element_lines(&rec);
        if !dest.create(&seq_name(dest, COMMITS, rec.seq), &bytes)? {
            return Ok(false);
        }
        self.apply(rec);
        Ok(true)
    }

    /// Folds the commits into a new checkpoint when enough have gathered since the last one, and
    /// removes checkpoints older than the previous one. Only called with the staging area empty,
    /// so every commit folded is published.
    pub fn maybe_checkpoint(&mut self, dest: &Destination) -> Result<bool, Error> {
        if self.recent.len() < CHECKPOINT_EVERY {
            return Ok(false);
        }
        let mut objects: Vec<&ObjectEntry> = self.objects.values().collect();
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        let checkpoint = Checkpoint {
            seq: self.last_seq,
            written_at: now_rfc3339(),
            last_commit: self.last_commit.clone(),
            objects,
        };
        let rel = seq_name(dest, CHECKPOINTS, self.last_seq);
        dest.create(&rel, &element_lines(&checkpoint))?;
        self.checkpoint_seq = self.last_seq;
        self.recent.clear();
        let all = dest.list(&dest.state_dir(CHECKPOINTS), None)?;
        dest.delete_all(&all[..all.len().saturating_sub(2)])?;
        Ok(true)
    }
}

/// `value` as JSON without indentation, each element of an array on a line of its own: commit
/// records and checkpoints of thousands of objects read (and diff) one object a line, and a
/// record is a quarter smaller than indented (the unit's end writes and fsyncs it while the
/// parsers wait).
fn element_lines<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let mut json = serde_json::Serializer::with_formatter(&mut out, ElementLines::default());
    value.serialize(&mut json).expect("a record serializes");
    out.push(b'\n');
    out
}

/// serde_json's compact format, with a line break before each array element and before the
/// closing bracket of an array that has any.
#[derive(Default)]
struct ElementLines {
    /// Per open array, whether it has elements.
    arrays: Vec<bool>,
}

impl serde_json::ser::Formatter for ElementLines {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.arrays.push(false);
        w.write_all(b"[")
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(if self.arrays.pop() == Some(true) { b"\n]" } else { b"]" })
    }

    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if let Some(any) = self.arrays.last_mut() {
            *any = true;
        }
        w.write_all(if first { b"\n" } else { b",\n" })
    }
}

/// The DEST-wide ledger that versions before per-unit state kept (`_state/commits`,
/// `_state/checkpoints`): read by every run, when deciding what is new, until
/// `s3logs state migrate` moves its objects into their units' ledgers.
#[derive(Debug, Default)]
pub struct Legacy {
    pub ledger: Option<Ledger>,
}

impl Legacy {
    /// Reads DEST's legacy ledger, when it has one.
    pub fn load(dest: &Destination) -> Result<Legacy, Error> {
        // One delimiter listing of `_state/` tells whether there is one (its commits or
        // checkpoints folder) before the three listings that read it.
        let legacy = dest.legacy();
        if !legacy.subfolders(&legacy.state_dir(""))?.iter().any(|f| f == COMMITS || f == CHECKPOINTS) {
            return Ok(Legacy::default());
        }
        let ledger = Ledger::load(&legacy)?;
        if ledger.last_seq == 0 {
            return Ok(Legacy::default());
        }
        tracing::warn!(
            dest = dest.display(),
            objects = ledger.objects.len(),
            "DEST holds a ledger from before per-unit state, which every run reads whole; \
             run `s3logs state migrate DEST` once no older s3logs writes to it"
        );
        Ok(Legacy { ledger: Some(ledger) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, commit: u64) -> ObjectEntry {
        let etag = Some("\"e\"".into());
        ObjectEntry {
            name: name.into(),
            etag,
            size: 10,
            lines: 3,
            rows: 2,
            rejects: 1,
            commit,
            quarantined: None,
            read_once: false,
        }
    }

    fn record(seq: u64, names: &[&str]) -> CommitRecord {
        CommitRecord {
            seq,
            batch: format!("b{seq}"),
            committed_at: now_rfc3339(),
            owner: "test".into(),
            objects: names.iter().map(|n| entry(n, seq)).collect(),
            files: Vec::new(),
        }
    }

    /// A commit record is compact JSON with one object (and one file) a line, an empty array
    /// closed where it opens, and reads back as the record it was.
    #[test]
    fn commit_records_hold_one_object_a_line() {
        let mut rec = record(7, &["s3://logs/a", "s3://logs/b \"quoted\""]);
        rec.committed_at = "2026-12-08T00:00:00.000Z".into();
        let bytes = element_lines(&rec);
        let text = String::from_utf8(bytes.clone()).unwrap();
        let object = |name: &str| {
            format!(r#"{{"name":"{name}","etag":"\"e\"","size":10,"lines":3,"rows":2,"rejects":1,"commit":7}}"#)
        };
        let expected = [
            r#"{"seq":7,"batch":"b7","committed_at":"2026-12-08T00:00:00.000Z","owner":"test","objects":["#.to_string(),
            object("s3://logs/a") + ",",
            object(r#"s3://logs/b \"quoted\""#),
            r#"],"files":[]}"#.to_string(),
        ];
        assert_eq!(text.lines().collect::<Vec<_>>(), expected, "{text}");
        assert!(text.ends_with("}\n"));
        assert_eq!(serde_json::from_slice::<CommitRecord>(&bytes).unwrap(), rec);
    }

    /// Commits are created once per number, survive a reload, and fold into a checkpoint that
    /// gives the same state back: for a unit's state (one listing) and the legacy DEST-wide one.
    #[test]
    fn commits_fold_into_checkpoints_with_the_same_state() {
        let tmp = tempfile::tempdir().unwrap();
        let legacy = Destination::local(tmp.path().to_path_buf());
        for dest in [legacy.for_unit("2024-03-15-0a1b2c3d"), legacy.for_unit("2024-03-16-0a1b2c3d"), legacy] {
            fold_and_reload(&tmp, dest);
        }
    }

    fn fold_and_reload(tmp: &tempfile::TempDir, dest: Destination) {
        let mut ledger = Ledger::load(&dest).unwrap();
        assert_eq!(ledger.last_seq, 0);
        for seq in 1..=CHECKPOINT_EVERY as u64 {
            let name = format!("s3://b/k{seq}");
            assert!(ledger.commit(&dest, record(seq, &[&name])).unwrap());
        }
        // The same number again (another run, late): refused, state unchanged.
        let mut other = Ledger::load(&dest).unwrap();
        other.last_seq = 3;
        assert!(!other.commit(&dest, record(3, &["s3://b/other"])).unwrap());
        let before = Ledger::load(&dest).unwrap();
        assert_eq!(before.objects.len(), CHECKPOINT_EVERY);
        assert!(!before.objects.contains_key("s3://b/other"));

        assert!(ledger.maybe_checkpoint(&dest).unwrap());
        let after = Ledger::load(&dest).unwrap();
        assert_eq!((after.checkpoint_seq, after.last_seq), (CHECKPOINT_EVERY as u64, CHECKPOINT_EVERY as u64));
        assert!(after.recent.is_empty());
        assert_eq!(after.objects, before.objects);
        assert_eq!(after.last_commit, before.last_commit);
        let text = std::fs::read_to_string(tmp.path().join(seq_name(&dest, CHECKPOINTS, 16))).unwrap();
        assert_eq!(text.lines().count(), CHECKPOINT_EVERY + 2, "one object per line:\n{text}");

        // A commit and its mark after the checkpoint, by another run: a refresh reads only those.
        let mut reader = Ledger::load(&dest).unwrap();
        let next = CHECKPOINT_EVERY as u64 + 1;
        assert!(ledger.commit(&dest, record(next, &["s3://b/late"])).unwrap());
        ledger.mark_published(&dest, next).unwrap();
        reader.refresh(&dest).unwrap();
        assert_eq!((reader.checkpoint_seq, reader.last_seq, reader.recent.len()), (next - 1, next, 1));
        assert!(reader.objects.contains_key("s3://b/late") && reader.published.contains(&next));
        assert_eq!(reader.objects.len(), CHECKPOINT_EVERY + 1);
    }

    /// The state a DEST holds today stays readable: `tests/fixtures/dest-2026-12-07` was written
    /// by s3logs as of 2026-12-07 (20 objects of 395 lines, one commit each, a checkpoint at 20),
    /// read here through its checkpoint, and through its commit records alone.
    #[test]
    fn a_dest_written_by_the_2026_12_07_version_is_read() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dest-2026-12-07/_state");
        let tmp = tempfile::tempdir().unwrap();
        let copy = |from: &std::path::Path, to: &std::path::Path| {
            for entry in walkdir::WalkDir::new(from) {
                let entry = entry.unwrap();
                let target = to.join(entry.path().strip_prefix(from).unwrap());
                if entry.file_type().is_dir() {
                    std::fs::create_dir_all(&target).unwrap();
                } else {
                    std::fs::copy(entry.path(), &target).unwrap();
                }
            }
        };
        copy(&fixture, &tmp.path().join("_state"));
        let dest = Destination::local(tmp.path().to_path_buf());
        let totals = |objects: &mut dyn Iterator<Item = &ObjectEntry>| {
            objects.fold((0, 0, 0), |(n, r, j), o| (n + 1, r + o.rows, j + o.rejects))
        };

        let ledger = Ledger::load(&dest).unwrap();
        assert_eq!((ledger.last_seq, ledger.checkpoint_seq), (20, 20));
        let (objects, rows, rejects) = totals(&mut ledger.objects.values());
        assert_eq!((objects, rows + rejects), (20, 395));
        assert_eq!(ledger.last_commit.as_ref().map(|c| c.seq), Some(20));

        // Without the checkpoint: the 20 commit records, each with its files.
        std::fs::remove_dir_all(tmp.path().join("_state").join(CHECKPOINTS)).unwrap();
        let ledger = Ledger::load(&dest).unwrap();
        assert_eq!((ledger.last_seq, ledger.recent.len()), (20, 20));
        let (objects, rows, rejects) = totals(&mut ledger.recent.iter().flat_map(|c| &c.objects));
        assert_eq!((objects, rows + rejects), (20, 395));
        for rec in &ledger.recent {
            let in_files: u64 = rec.files.iter().map(|f| f.rows).sum();
            let in_objects: u64 = rec.objects.iter().map(|o| o.rows + o.rejects).sum();
            assert_eq!(in_files, in_objects, "commit {}", rec.seq);
            assert!(rec.files.iter().all(|f| f.path.starts_with("data/dt=") || f.path.starts_with("rejects/")));
        }
    }
}
