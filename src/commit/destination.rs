//! Where a run's files end up: a local folder, or a prefix in S3, and every read and write s3logs
//! makes there.
//!
//! DEST holds three areas: the table (`data/`, `rejects/`), the staging area (`_staging/<batch>/`)
//! and the state (`_state/`). Parquet files are written in a local folder, made durable in the
//! staging area (fsync locally; uploaded, as a multipart upload beyond one part, to S3), and only
//! after the batch's commit record exists are they published into the table: renamed locally,
//! copied server-side in S3. Both are repeatable, so a publish that was cut short is finished by
//! doing it again. Small state objects are created with "create only if absent" (a hard link
//! locally, `If-None-Match: *` in S3), which is what orders concurrent runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use sha2::Digest;

use crate::error::Error;
use crate::parquet_sink::WrittenFile;
use crate::parquet_sink::direct::write_synced;
use crate::store::retry::{RetryPolicy, back_off, with_retries};
use crate::store::{StoreOptions, s3_stores, split_s3_url, store_error};

/// The folder (relative to DEST) holding staged batches.
pub const STAGING: &str = "_staging";

/// The folder (relative to DEST) holding each unit's state.
pub const UNITS: &str = "_state/units";

/// The folder, inside a staged batch, recording the multipart uploads of that batch that may not
/// have finished: discarding the batch aborts them, so a killed run leaves no parts behind.
pub const UPLOADS: &str = "_uploads";

/// Parts of one file uploaded at the same time.
const PARTS_IN_FLIGHT: usize = 4;

/// The output root of a run, seen from one unit's state (or, with no unit, from the DEST-wide
/// state that versions before per-unit state kept: the legacy ledger).
#[derive(Debug, Clone)]
pub struct Destination {
    root: Root,
    /// The unit whose state and staging this view reads and writes.
    unit: Option<String>,
    /// The requests made to DEST, shared by every view of it.
    counts: Arc<Counts>,
    /// Large state files of a local DEST go around the page cache (`O_DIRECT`), as the data does.
    direct_writes: bool,
}

/// The requests a run makes to DEST (GETs and their bytes, LISTs, and writes: creates, uploads,
/// copies, renames, deletes), counted where they are made, for the report.
#[derive(Debug, Default)]
pub struct Counts {
    gets: std::sync::atomic::AtomicU64,
    get_bytes: std::sync::atomic::AtomicU64,
    lists: std::sync::atomic::AtomicU64,
    writes: std::sync::atomic::AtomicU64,
}

/// [`Counts`] as read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DestRequests {
    pub gets: u64,
    pub get_bytes: u64,
    pub lists: u64,
    pub writes: u64,
}

fn add(counter: &std::sync::atomic::AtomicU64, n: u64) {
    counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
}

/// Where the output root is.
#[derive(Debug, Clone)]
pub enum Root {
    Local(PathBuf),
    Store(Remote),
}

/// An S3 DEST and what it takes to reach it.
#[derive(Debug, Clone)]
pub struct Remote {
    url: String,
    store: Arc<dyn ObjectStore>,
    /// The same bucket's multipart API, to record and abort uploads by id.
    parts: Arc<object_store::aws::AmazonS3>,
    prefix: String,
    rt: tokio::runtime::Handle,
    retry: RetryPolicy,
}

impl Remote {
    fn key(&self, rel: &str) -> StorePath {
        StorePath::from(if self.prefix.is_empty() { rel.to_string() } else { format!("{}/{rel}", self.prefix) })
    }

    fn url_of(&self, rel: &str) -> String {
        format!("{}/{rel}", self.url)
    }

    fn run<T, F, Fut>(&self, rel: &str, f: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = object_store::Result<T>>,
    {
        self.rt.block_on(with_retries(&self.retry, f)).map_err(|e| store_error(&self.url_of(rel), &e))
    }
}

impl Destination {
    /// A local path, or `s3://bucket/prefix`; `rt` runs an S3 DEST's requests.
    pub fn parse(output: &str, opts: &StoreOptions, rt: Option<&tokio::runtime::Runtime>) -> Result<Self, Error> {
        if output.starts_with("s3://") {
            let url = output.trim_end_matches('/').to_string();
            let (bucket, prefix) =
                split_s3_url(&url).ok_or_else(|| Error::Usage(format!("--output {output}: not s3://bucket/prefix")))?;
            let (store, parts) = s3_stores(bucket, opts).map_err(|cause| Error::Store { url: url.clone(), cause })?;
            let prefix = prefix.to_string();
            let rt =
                rt.ok_or_else(|| Error::Internal("an s3:// output needs the async runtime".into()))?.handle().clone();
            let remote = Remote { url, store, parts, prefix, rt, retry: opts.retry.clone() };
            return Ok(Destination {
                root: Root::Store(remote),
                unit: None,
                counts: Default::default(),
                direct_writes: false,
            });
        }
        let local = output.strip_prefix("file://").unwrap_or(output);
        if local.contains("://") {
            return Err(Error::Usage(format!("--output {output}: use a local folder, file:// or s3://bucket/prefix")));
        }
        let path = PathBuf::from(local);
        // A DEST under a regular file can never be made: say so before any work, naming the file.
        if let Some(file) = path.ancestors().find(|a| a.exists()).filter(|a| !a.is_dir()) {
            let why = format!("{} is a file, not a folder", file.display());
            return Err(Error::write(&path, std::io::Error::new(std::io::ErrorKind::NotADirectory, why)));
        }
        Ok(Destination::local(path))
    }

    /// An existing DEST, for the commands that read one (`status`, `ddl`, `state migrate`), with
    /// the runtime an S3 DEST's requests run on (keep it while the DEST is used) and the region
    /// resolved as the AWS CLI does. A local DEST that is not a folder is an error saying `why`.
    pub fn open_existing(
        dest: &str,
        opts: &StoreOptions,
        why: &str,
    ) -> Result<(Self, Option<tokio::runtime::Runtime>), Error> {
        let rt = dest.starts_with("s3://").then(crate::store::runtime).transpose()?;
        let mut opts = opts.clone();
        if let Some(rt) = &rt {
            crate::store::resolve_region(&mut opts, rt);
        }
        let d = Destination::parse(dest, &opts, rt.as_ref())?;
        if let Some(p) = d.local_root()
            && !p.is_dir()
        {
            return Err(Error::read(p, std::io::Error::new(std::io::ErrorKind::NotFound, why.to_string())));
        }
        Ok((d, rt))
    }

    /// A local folder as DEST.
    pub fn local(path: PathBuf) -> Self {
        Destination { root: Root::Local(path), unit: None, counts: Default::default(), direct_writes: false }
    }

    /// This DEST, writing large state files around the page cache if local (not with `--buffered-writes`).
    pub fn with_direct_writes(self, direct_writes: bool) -> Self {
        Destination { direct_writes, ..self }
    }

    /// The same DEST seen from `unit`'s state: its ledger and lease under `_state/units/<unit>/`,
    /// its staging under `_staging/<unit>/`. The table is the same.
    pub fn for_unit(&self, unit: &str) -> Self {
        Destination { unit: Some(unit.to_string()), ..self.clone() }
    }

    /// The same DEST seen from its legacy DEST-wide state.
    pub fn legacy(&self) -> Self {
        Destination { unit: None, ..self.clone() }
    }

    /// The unit this view belongs to (`None`: the legacy DEST-wide state).
    pub fn unit(&self) -> Option<&str> {
        self.unit.as_deref()
    }

    /// The folder (relative to DEST) of this view's state called `name` (`commits`, `lease`...).
    /// An empty `name`: the folder of all its state.
    pub fn state_dir(&self, name: &str) -> String {
        let root = self.unit.as_ref().map_or_else(|| "_state".to_string(), |u| format!("{UNITS}/{u}"));
        if name.is_empty() { root } else { format!("{root}/{name}") }
    }

    /// The folder (relative to DEST) of this view's staged batches.
    pub fn staging_dir(&self) -> String {
        match &self.unit {
            Some(u) => format!("{STAGING}/{u}"),
            None => STAGING.to_string(),
        }
    }

    /// The requests made to DEST so far, through any view of it.
    pub fn requests(&self) -> DestRequests {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let c = &self.counts;
        DestRequests { gets: get(&c.gets), get_bytes: get(&c.get_bytes), lists: get(&c.lists), writes: get(&c.writes) }
    }

    fn wrote(&self, n: u64) {
        add(&self.counts.writes, n);
    }

    pub fn is_remote(&self) -> bool {
        matches!(self.root, Root::Store(_))
    }

    /// The root as the user named it.
    pub fn display(&self) -> String {
        match &self.root {
            Root::Local(p) => p.display().to_string(),
            Root::Store(r) => r.url.clone(),
        }
    }

    /// A local root that listing must skip (the output folder itself).
    pub fn local_root(&self) -> Option<&Path> {
        match &self.root {
            Root::Local(p) => Some(p),
            Root::Store(_) => None,
        }
    }

    /// The local folder Parquet files of `batch` are written in: DEST's staging area itself for
    /// a local DEST, a folder of this process in the system's temporary folder for an S3 DEST.
    pub fn local_staging(&self, batch: &str) -> PathBuf {
        match &self.root {
            Root::Local(p) => p.join(self.staging_dir()).join(batch),
            Root::Store(_) => {
                std::env::temp_dir().join("s3logs-staging").join(format!("{batch}-{}", std::process::id()))
            }
        }
    }

    /// Removes the local folders that runs of this host, killed while writing to an S3 DEST, left
    /// in the system's temporary folder (named `<batch>-<pid>`, for a process that is gone).
    pub fn prune_dead_local_staging(&self) {
        if !self.is_remote() {
            return;
        }
        let root = std::env::temp_dir().join("s3logs-staging");
        let Ok(entries) = std::fs::read_dir(&root) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|pid| pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// Creates what must exist before files are written (a local DEST's `data/`).
    pub fn prepare(&self) -> Result<(), Error> {
        if let Root::Local(p) = &self.root {
            let data = p.join("data");
            std::fs::create_dir_all(&data).map_err(|e| Error::write(&data, e))?;
        }
        Ok(())
    }

    /// Reads a small object (relative to DEST); `None` when it does not exist.
    pub fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, Error> {
        add(&self.counts.gets, 1);
        let got = self.read_uncounted(rel)?;
        add(&self.counts.get_bytes, got.as_ref().map_or(0, |b| b.len() as u64));
        Ok(got)
    }

    fn read_uncounted(&self, rel: &str) -> Result<Option<Vec<u8>>, Error> {
        match &self.root {
            Root::Local(root) => match std::fs::read(root.join(rel)) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::read(root.join(rel), e)),
            },
            Root::Store(r) => {
                let key = r.key(rel);
                let got = r.rt.block_on(with_retries(&r.retry, || async { r.store.get(&key).await?.bytes().await }));
                match got {
                    Ok(b) => Ok(Some(b.to_vec())),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(store_error(&r.url_of(rel), &e)),
                }
            }
        }
    }

    /// Whether an object (relative to DEST) exists.
    pub fn exists(&self, rel: &str) -> Result<bool, Error> {
        add(&self.counts.gets, 1);
        match &self.root {
            Root::Local(root) => match std::fs::symlink_metadata(root.join(rel)) {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(Error::read(root.join(rel), e)),
            },
            Root::Store(r) => {
                let key = r.key(rel);
                match r.rt.block_on(with_retries(&r.retry, || r.store.head(&key))) {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(e) => Err(store_error(&r.url_of(rel), &e)),
                }
            }
        }
    }

    /// Creates a small object only if nothing is there yet, durably: `true` when this call
    /// created it. A create that failed but may have succeeded (an ambiguous answer) is
    /// resolved by reading back: the same bytes mean it was ours.
    ///
    /// In S3 a refused create is read back too: `409 ConditionalRequestConflict` (a conditional
    /// write racing another on the same key) comes back as "already exists" while the key may be
    /// absent; then the create is tried again, and only a key that exists means another run won.
    pub fn create(&self, rel: &str, bytes: &[u8]) -> Result<bool, Error> {
        let (root, mut attempt) = (&self.root, 0u32);
        loop {
            self.wrote(1);
            let created = match root {
                Root::Local(root) => create_local(&root.join(rel), bytes, self.direct_writes)?,
                Root::Store(r) => {
                    let key = r.key(rel);
                    let opts = || PutOptions { mode: PutMode::Create, ..PutOptions::default() };
                    let put =
                        r.rt.block_on(with_retries(&r.retry, || r.store.put_opts(&key, bytes.to_vec().into(), opts())));
                    match put {
                        Ok(_) => true,
                        Err(object_store::Error::AlreadyExists { .. }) => false,
                        Err(e) => return Err(store_error(&r.url_of(rel), &e)),
                    }
                }
            };
            let there = if created { return Ok(true) } else { self.read(rel)? };
            match (there, root) {
                (Some(found), _) => return Ok(found == bytes),
                (None, Root::Store(r)) if attempt + 1 < r.retry.attempts.max(1) => {
                    attempt += 1;
                    r.rt.block_on(back_off(&r.retry, attempt, "a conditional create conflicted; the key is absent"));
                }
                (None, Root::Store(r)) => {
                    let cause = "conditional creates kept conflicting (409) and the key stayed absent".to_string();
                    return Err(Error::Temporary { url: r.url_of(rel), cause });
                }
                // A hard link that failed as "exists" leaves the name there.
                (None, Root::Local(_)) => return Ok(false),
            }
        }
    }

    /// The objects under folder `rel` (relative to DEST), as paths relative to DEST, sorted.
    /// With `after`, only names sorting after it (S3's StartAfter: the listing starts there).
    pub fn list(&self, rel: &str, after: Option<&str>) -> Result<Vec<String>, Error> {
        add(&self.counts.lists, 1);
        let mut out = match &self.root {
            Root::Local(root) => {
                let dir = root.join(rel);
                if !dir.exists() {
                    return Ok(Vec::new());
                }
                let mut out = Vec::new();
                for entry in walkdir::WalkDir::new(&dir) {
                    let entry = entry.map_err(|e| Error::read(&dir, e.into()))?;
                    if entry.file_type().is_file() {
                        let p = entry.path().strip_prefix(root).expect("under root");
                        out.push(p.to_string_lossy().replace('\\', "/"));
                    }
                }
                out
            }
            Root::Store(r) => {
                let folder = r.key(rel);
                let metas: Vec<object_store::ObjectMeta> = r.run(rel, || {
                    let listing = match after {
                        Some(a) => r.store.list_with_offset(Some(&folder), &r.key(a)),
                        None => r.store.list(Some(&folder)),
                    };
                    listing.try_collect()
                })?;
                let skip = if r.prefix.is_empty() { 0 } else { r.prefix.len() + 1 };
                metas.into_iter().map(|m| m.location.as_ref()[skip..].to_string()).collect()
            }
        };
        if let Some(a) = after {
            out.retain(|p| p.as_str() > a);
        }
        out.sort();
        Ok(out)
    }

    /// The names of the folders directly inside folder `rel` of DEST, sorted: one listing with a
    /// delimiter in S3 (pages of 1,000), whatever the folders hold.
    pub fn subfolders(&self, rel: &str) -> Result<Vec<String>, Error> {
        add(&self.counts.lists, 1);
        let mut out: Vec<String> = match &self.root {
            Root::Local(root) => match std::fs::read_dir(root.join(rel)) {
                Ok(entries) => entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect(),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
                    vec![]
                }
                Err(e) => return Err(Error::read(root.join(rel), e)),
            },
            Root::Store(r) => {
                let folder = r.key(rel);
                let listing = r.run(rel, || r.store.list_with_delimiter(Some(&folder)))?;
                listing.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string)).collect()
            }
        };
        out.sort();
        Ok(out)
    }

    /// The units with state in DEST whose ids start with `start` (all of them for `""`), sorted.
    /// In S3 only the keys under those units are listed: a day's units cost a listing of that
    /// day's state, however many days DEST holds.
    pub fn units_starting(&self, start: &str) -> Result<Vec<String>, Error> {
        add(&self.counts.lists, 1);
        let mut units: std::collections::BTreeSet<String> = Default::default();
        match &self.root {
            Root::Local(root) => match std::fs::read_dir(root.join(UNITS)) {
                Ok(entries) => units.extend(
                    entries
                        .filter_map(|e| e.ok()?.file_name().into_string().ok())
                        .filter(|u| u.starts_with(start) && !u.starts_with('.')),
                ),
                // No units yet (or no DEST: a file where it would be, reported when written to).
                Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {}
                Err(e) => return Err(Error::read(root.join(UNITS), e)),
            },
            Root::Store(r) => {
                let prefix = r.key(&format!("{UNITS}/{start}")).to_string();
                let prefix = if start.is_empty() { format!("{prefix}/") } else { prefix };
                let metas: Vec<object_store::ObjectMeta> =
                    r.run(UNITS, || crate::source::listing::list_prefix(&r.store, &prefix, None).try_collect())?;
                let skip = r.key(UNITS).as_ref().len() + 1;
                units.extend(
                    metas.iter().filter_map(|m| Some(m.location.as_ref().get(skip..)?.split('/').next()?.to_string())),
                );
            }
        }
        Ok(units.into_iter().collect())
    }

    /// Deletes a small object; one that is already gone is not an error.
    pub fn delete(&self, rel: &str) -> Result<(), Error> {
        self.wrote(1);
        match &self.root {
            Root::Local(root) => match std::fs::remove_file(root.join(rel)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::write(root.join(rel), e)),
                _ => Ok(()),
            },
            Root::Store(r) => {
                let key = r.key(rel);
                match r.rt.block_on(with_retries(&r.retry, || r.store.delete(&key))) {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(store_error(&r.url_of(rel), &e)),
                }
            }
        }
    }

    /// Deletes small objects, in S3 with one request per 1,000 (DeleteObjects); those already
    /// gone are not an error.
    pub fn delete_all(&self, rels: &[String]) -> Result<(), Error> {
        let Root::Store(r) = &self.root else {
            return rels.iter().try_for_each(|rel| self.delete(rel));
        };
        if rels.is_empty() {
            return Ok(());
        }
        self.wrote(rels.len().div_ceil(1000) as u64);
        let keys: Vec<StorePath> = rels.iter().map(|rel| r.key(rel)).collect();
        let deleted = r.rt.block_on(with_retries(&r.retry, || {
            let keys = futures::StreamExt::boxed(futures::stream::iter(keys.clone().into_iter().map(Ok)));
            r.store.delete_stream(keys).try_collect::<Vec<_>>()
        }));
        match deleted {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(&r.url_of(&rels[0]), &e)),
        }
    }

    /// Makes the files of `batch` (written in `local`, paths relative to DEST such as
    /// `data/dt=.../part-....parquet`) durable in DEST's staging area.
    pub fn stage(&self, batch: &str, local: &Path, files: &[WrittenFile], part_size: usize) -> Result<(), Error> {
        self.wrote(files.len() as u64);
        match &self.root {
            // The writer fsynced each file; make their folder entries durable too.
            Root::Local(_) => {
                let dirs: std::collections::BTreeSet<PathBuf> = files
                    .iter()
                    .map(|f| local.join(&f.path).parent().expect("a file has a folder").to_path_buf())
                    .collect();
                dirs.iter().try_for_each(|d| sync_dir(d))
            }
            Root::Store(r) => {
                for f in files {
                    let folder = format!("{}/{batch}", self.staging_dir());
                    let rel = format!("{folder}/{}", f.path);
                    let file = local.join(&f.path);
                    // Uploading the same bytes to the same key again is harmless, so a write that
                    // failed (or only seemed to) is simply repeated.
                    r.run(&rel, || upload(r, &folder, &file, &rel, part_size))?;
                }
                Ok(())
            }
        }
    }

    /// Publishes the staged files of `batch` into the table: a rename locally, a server-side copy
    /// in S3. Repeatable: a file no longer staged must already be in place (a publish cut short
    /// is finished by running it again); one in neither place is an error, never skipped.
    pub fn publish(&self, batch: &str, files: &[String]) -> Result<(), Error> {
        for path in files {
            self.wrote(1);
            let staged = format!("{}/{batch}/{path}", self.staging_dir());
            match &self.root {
                Root::Local(root) => {
                    let (from, to) = (root.join(&staged), root.join(path));
                    let dir = to.parent().expect("a file has a folder");
                    std::fs::create_dir_all(dir).map_err(|e| Error::write(dir, e))?;
                    match std::fs::rename(&from, &to) {
                        Ok(()) => sync_dir(dir)?,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound && to.exists() => {}
                        Err(e) => return Err(Error::write(&to, e)),
                    }
                }
                Root::Store(r) => {
                    let (from, to) = (r.key(&staged), r.key(path));
                    match r.rt.block_on(with_retries(&r.retry, || r.store.copy(&from, &to))) {
                        Ok(()) => {}
                        Err(object_store::Error::NotFound { .. })
                            if r.rt.block_on(with_retries(&r.retry, || r.store.head(&to))).is_ok() => {}
                        Err(e) => return Err(store_error(&r.url_of(path), &e)),
                    }
                }
            }
            crate::commit::crash_point::reached("publishing");
        }
        Ok(())
    }

    /// The batches that have something in the staging area.
    pub fn staged_batches(&self) -> Result<std::collections::BTreeSet<String>, Error> {
        add(&self.counts.lists, 1);
        let batches: std::collections::BTreeSet<String> = match &self.root {
            Root::Local(root) => match std::fs::read_dir(root.join(self.staging_dir())) {
                Ok(entries) => entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
                Err(e) => return Err(Error::read(root.join(self.staging_dir()), e)),
            },
            Root::Store(_) => {
                let dir = self.staging_dir();
                let listed = self.list(&dir, None)?;
                listed.iter().filter_map(|p| Some(p.get(dir.len() + 1..)?.split('/').next()?.to_string())).collect()
            }
        };
        // The legacy staging area also holds the units' folders; its own batches are named by a
        // 16-digit hash.
        let legacy_batch = |b: &String| b.len() == 16 && b.bytes().all(|c| c.is_ascii_hexdigit());
        Ok(if self.unit.is_none() { batches.into_iter().filter(legacy_batch).collect() } else { batches })
    }

    /// Removes `batch` from the staging area.
    pub fn discard_staged(&self, batch: &str) -> Result<(), Error> {
        let rel = format!("{}/{batch}", self.staging_dir());
        if !self.is_remote() {
            self.wrote(1);
        }
        match &self.root {
            Root::Local(root) => {
                let dir = root.join(&rel);
                match std::fs::remove_dir_all(&dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::write(&dir, e)),
                    _ => {}
                }
                self.remove_empty_staging(root);
                Ok(())
            }
            Root::Store(r) => {
                let listed = self.list(&rel, None)?;
                // The uploads first, while their records (which alone find them) exist.
                let uploads = format!("{rel}/{UPLOADS}/");
                for record in listed.iter().filter(|p| p.starts_with(&uploads)) {
                    if let Some(bytes) = self.read(record)? {
                        abort_recorded(r, record, &bytes)?;
                    }
                }
                self.delete_all(&listed)
            }
        }
    }

    /// Removes a local DEST's staging folders once they are empty.
    pub fn remove_empty_staging(&self, root: &Path) {
        let _ = std::fs::remove_dir(root.join(self.staging_dir()));
        let _ = std::fs::remove_dir(root.join(STAGING));
    }

    /// Removes a local folder Parquet files were written in, when it is not DEST's staging area
    /// (that one is discarded only by [`Destination::discard_staged`]).
    pub fn remove_local_staging(&self, local: &Path) {
        if self.is_remote() {
            let _ = std::fs::remove_dir_all(local);
        }
    }
}

/// Writes `bytes` to `path` only if nothing is there: a temporary file is written and fsynced,
/// then hard-linked to `path` (which fails if `path` exists), and the folder is fsynced.
fn create_local(path: &Path, bytes: &[u8], direct: bool) -> Result<bool, Error> {
    let dir = path.parent().expect("a state file has a folder");
    std::fs::create_dir_all(dir).map_err(|e| Error::write(dir, e))?;
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), unique()));
    let written = write_synced(&tmp, bytes, direct);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::write(&tmp, e));
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::write(path, e)),
    }
}

/// A number that differs between calls in one process.
fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Makes a folder's entries (created, renamed files) durable.
pub fn sync_dir(dir: &Path) -> Result<(), Error> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::write(dir, e))
}

/// A multipart upload that may not have finished, as recorded in its batch's staging area.
#[derive(serde::Serialize, serde::Deserialize)]
struct UploadRecord {
    /// The object being uploaded, relative to DEST.
    key: String,
    upload_id: String,
}

/// Aborts the upload recorded as `bytes` at `record` (relative to DEST). One S3 no longer knows
/// (completed, or aborted already) is done.
fn abort_recorded(r: &Remote, record: &str, bytes: &[u8]) -> Result<(), Error> {
    let Ok(up) = serde_json::from_slice::<UploadRecord>(bytes) else {
        tracing::warn!(record, "an unreadable multipart upload record; removed without aborting");
        return Ok(());
    };
    let key = r.key(&up.key);
    match r.rt.block_on(with_retries(&r.retry, || r.parts.abort_multipart(&key, &up.upload_id))) {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {
            tracing::info!(key = up.key, "aborted the multipart upload of an interrupted run");
            Ok(())
        }
        Err(e) => Err(store_error(&r.url_of(&up.key), &e)),
    }
}

/// Uploads one local file to `rel` (relative to DEST) for the batch staged in `folder`: a single
/// PUT up to `part_size`, a multipart upload beyond, recorded in the batch's staging folder from
/// its creation to its completion, and aborted when it fails.
async fn upload(r: &Remote, folder: &str, file: &Path, rel: &str, part_size: usize) -> object_store::Result<()> {
    let local = |e: std::io::Error| object_store::Error::Generic { store: "local staging", source: Box::new(e) };
    let len = std::fs::metadata(file).map_err(local)?.len();
    let key = r.key(rel);
    if len as usize <= part_size {
        let bytes = std::fs::read(file).map_err(local)?;
        r.store.put(&key, bytes.into()).await?;
        return Ok(());
    }
    let id = r.parts.create_multipart(&key).await?;
    let name: String = sha2::Sha256::digest(id.as_bytes()).iter().take(10).map(|b| format!("{b:02x}")).collect();
    let record = r.key(&format!("{folder}/{UPLOADS}/{name}.json"));
    let body = serde_json::to_vec(&UploadRecord { key: rel.to_string(), upload_id: id.clone() }).expect("serializable");
    let uploaded = match r.store.put(&record, body.into()).await {
        Ok(_) => put_parts(r, &key, &id, file, len, part_size).await,
        Err(e) => Err(e),
    };
    let done = match uploaded {
        Ok(parts) => r.parts.complete_multipart(&key, &id, parts).await.map(drop),
        Err(e) => {
            let _ = r.parts.abort_multipart(&key, &id).await;
            Err(e)
        }
    };
    if done.is_ok() {
        // Best effort: a record left behind is removed, with a harmless abort, by the discard.
        let _ = r.store.delete(&record).await;
    }
    done
}

/// Uploads `file` (`len` bytes) as the parts of upload `id`, a few at a time.
async fn put_parts(
    r: &Remote,
    key: &StorePath,
    id: &str,
    file: &Path,
    len: u64,
    part_size: usize,
) -> object_store::Result<Vec<PartId>> {
    use futures::StreamExt;
    use std::os::unix::fs::FileExt;
    let local = |e: std::io::Error| object_store::Error::Generic { store: "local staging", source: Box::new(e) };
    let file = std::fs::File::open(file).map_err(local)?;
    let count = len.div_ceil(part_size as u64);
    futures::stream::iter(0..count)
        .map(|i| {
            let offset = i * part_size as u64;
            let mut buf = vec![0u8; (len - offset).min(part_size as u64) as usize];
            let read = file.read_exact_at(&mut buf, offset).map_err(local);
            async move {
                read?;
                let part = r.parts.put_part(key, &id.to_string(), i as usize, buf.into()).await?;
                crate::commit::crash_point::reached("uploading");
                Ok(part)
            }
        })
        .buffered(PARTS_IN_FLIGHT)
        .try_collect()
        .await
}
