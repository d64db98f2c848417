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

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use sha2::Digest;

use crate::error::Error;
use crate::parquet_sink::WrittenFile;
use crate::store::retry::{RetryPolicy, with_retries};
use crate::store::{StoreOptions, s3_stores, split_s3_url, store_error};

/// The folder (relative to DEST) holding staged batches.
pub const STAGING: &str = "_staging";

/// The folder, inside a staged batch, recording the multipart uploads of that batch that may not
/// have finished: discarding the batch aborts them, so a killed run leaves no parts behind.
pub const UPLOADS: &str = "_uploads";

/// Parts of one file uploaded at the same time.
const PARTS_IN_FLIGHT: usize = 4;

/// The output root of a run.
#[derive(Debug, Clone)]
pub enum Destination {
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
            return Ok(Destination::Store(Remote { url, store, parts, prefix, rt, retry: opts.retry.clone() }));
        }
        let local = output.strip_prefix("file://").unwrap_or(output);
        if local.contains("://") {
            return Err(Error::Usage(format!("--output {output}: use a local folder, file:// or s3://bucket/prefix")));
        }
        Ok(Destination::Local(PathBuf::from(local)))
    }

    pub fn is_remote(&self) -> bool {
        matches!(self, Destination::Store(_))
    }

    /// The root as the user named it.
    pub fn display(&self) -> String {
        match self {
            Destination::Local(p) => p.display().to_string(),
            Destination::Store(r) => r.url.clone(),
        }
    }

    /// A local root that listing must skip (the output folder itself).
    pub fn local_root(&self) -> Option<&Path> {
        match self {
            Destination::Local(p) => Some(p),
            Destination::Store(_) => None,
        }
    }

    /// The local folder Parquet files of `batch` are written in: DEST's staging area itself for
    /// a local DEST, a folder of this process in the system's temporary folder for an S3 DEST.
    pub fn local_staging(&self, batch: &str) -> PathBuf {
        match self {
            Destination::Local(p) => p.join(STAGING).join(batch),
            Destination::Store(_) => {
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
        if let Destination::Local(p) = self {
            let data = p.join("data");
            std::fs::create_dir_all(&data).map_err(|e| Error::write(&data, e))?;
        }
        Ok(())
    }

    /// Reads a small object (relative to DEST); `None` when it does not exist.
    pub fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, Error> {
        match self {
            Destination::Local(root) => match std::fs::read(root.join(rel)) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::read(root.join(rel), e)),
            },
            Destination::Store(r) => {
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
        match self {
            Destination::Local(root) => match std::fs::symlink_metadata(root.join(rel)) {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(Error::read(root.join(rel), e)),
            },
            Destination::Store(r) => {
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
    pub fn create(&self, rel: &str, bytes: &[u8]) -> Result<bool, Error> {
        let created = match self {
            Destination::Local(root) => create_local(&root.join(rel), bytes)?,
            Destination::Store(r) => {
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
        Ok(created || self.read(rel)?.as_deref() == Some(bytes))
    }

    /// The objects under folder `rel` (relative to DEST), as paths relative to DEST, sorted.
    /// With `after`, only names sorting after it (S3's StartAfter: the listing starts there).
    pub fn list(&self, rel: &str, after: Option<&str>) -> Result<Vec<String>, Error> {
        let mut out = match self {
            Destination::Local(root) => {
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
            Destination::Store(r) => {
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

    /// Deletes a small object; one that is already gone is not an error.
    pub fn delete(&self, rel: &str) -> Result<(), Error> {
        match self {
            Destination::Local(root) => match std::fs::remove_file(root.join(rel)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::write(root.join(rel), e)),
                _ => Ok(()),
            },
            Destination::Store(r) => {
                let key = r.key(rel);
                match r.rt.block_on(with_retries(&r.retry, || r.store.delete(&key))) {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(store_error(&r.url_of(rel), &e)),
                }
            }
        }
    }

    /// Makes the files of `batch` (written in `local`, paths relative to DEST such as
    /// `data/dt=.../part-....parquet`) durable in DEST's staging area.
    pub fn stage(&self, batch: &str, local: &Path, files: &[WrittenFile], part_size: usize) -> Result<(), Error> {
        match self {
            // The writer fsynced each file; make their folder entries durable too.
            Destination::Local(_) => {
                let dirs: std::collections::BTreeSet<PathBuf> = files
                    .iter()
                    .map(|f| local.join(&f.path).parent().expect("a file has a folder").to_path_buf())
                    .collect();
                dirs.iter().try_for_each(|d| sync_dir(d))
            }
            Destination::Store(r) => {
                for f in files {
                    let rel = format!("{STAGING}/{batch}/{}", f.path);
                    let file = local.join(&f.path);
                    // Uploading the same bytes to the same key again is harmless, so a write that
                    // failed (or only seemed to) is simply repeated.
                    r.run(&rel, || upload(r, batch, &file, &rel, part_size))?;
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
            let staged = format!("{STAGING}/{batch}/{path}");
            match self {
                Destination::Local(root) => {
                    let (from, to) = (root.join(&staged), root.join(path));
                    let dir = to.parent().expect("a file has a folder");
                    std::fs::create_dir_all(dir).map_err(|e| Error::write(dir, e))?;
                    match std::fs::rename(&from, &to) {
                        Ok(()) => sync_dir(dir)?,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound && to.exists() => {}
                        Err(e) => return Err(Error::write(&to, e)),
                    }
                }
                Destination::Store(r) => {
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
        let batches = match self {
            Destination::Local(root) => match std::fs::read_dir(root.join(STAGING)) {
                Ok(entries) => entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
                Err(e) => return Err(Error::read(root.join(STAGING), e)),
            },
            Destination::Store(_) => {
                self.list(STAGING, None)?.into_iter().filter_map(|p| p.split('/').nth(1).map(str::to_string)).collect()
            }
        };
        Ok(batches)
    }

    /// Removes `batch` from the staging area.
    pub fn discard_staged(&self, batch: &str) -> Result<(), Error> {
        let rel = format!("{STAGING}/{batch}");
        match self {
            Destination::Local(root) => {
                let dir = root.join(&rel);
                match std::fs::remove_dir_all(&dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::write(&dir, e)),
                    _ => {}
                }
                let _ = std::fs::remove_dir(root.join(STAGING));
                Ok(())
            }
            Destination::Store(r) => {
                let listed = self.list(&rel, None)?;
                // The uploads first, while their records (which alone find them) exist.
                let uploads = format!("{rel}/{UPLOADS}/");
                for record in listed.iter().filter(|p| p.starts_with(&uploads)) {
                    if let Some(bytes) = self.read(record)? {
                        abort_recorded(r, record, &bytes)?;
                    }
                }
                for p in &listed {
                    self.delete(p)?;
                }
                Ok(())
            }
        }
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
fn create_local(path: &Path, bytes: &[u8]) -> Result<bool, Error> {
    let dir = path.parent().expect("a state file has a folder");
    std::fs::create_dir_all(dir).map_err(|e| Error::write(dir, e))?;
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), unique()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
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

/// Uploads one local file to `rel` (relative to DEST) for `batch`: a single PUT up to
/// `part_size`, a multipart upload beyond, recorded in the batch's staging area from its creation
/// to its completion, and aborted when it fails.
async fn upload(r: &Remote, batch: &str, file: &Path, rel: &str, part_size: usize) -> object_store::Result<()> {
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
    let record = r.key(&format!("{STAGING}/{batch}/{UPLOADS}/{name}.json"));
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
