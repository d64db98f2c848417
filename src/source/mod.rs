//! Log objects: what one is ([`SourceObject`]: a stable name, a size, an ETag, and where its bytes
//! are), the dates in their keys, and finding objects a commit recorded.
//!
//! Each object gets a stable name (its absolute path, `s3://bucket/key`, or `stdin`) that becomes
//! `source_object` in every row, and a size that, with the name, identifies the run's input.
//! [`listing`] finds them; [`read`] reads and decompresses them.

pub mod listing;
pub(crate) mod ranged;
pub mod read;
pub mod unit;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::Error;
use crate::source::read::GZIP_MAGIC;
use crate::source::read::ZSTD_MAGIC;
use crate::source::read::decode;
use crate::source::read::open_pipe;
use crate::source::read::read_file;
use crate::store::StoreOptions;
use crate::store::retry::RetryPolicy;
use crate::store::retry::with_retries;
use crate::store::s3_store;
use crate::store::split_s3_url;
use crate::store::store_error;

/// Objects selected by the date in their key (`--since`/`--until`), as inclusive UTC day numbers.
///
/// Both S3 key formats end in a file name that starts with `YYYY-MM-DD-hh-mm-ss-`: the delivery
/// time in the simple format, the event day (or the delivery time) in the partitioned one. A
/// delivered object can hold records from before its key's date, so `last` is already widened by
/// the lookback when this is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDates {
    pub first: i32,
    pub last: i32,
}

impl KeyDates {
    /// The range of `--since`/`--until` (`YYYY-MM-DD`; an open end is the epoch or today), the
    /// end widened by `lookback_days`; `None` when neither is given.
    pub fn from_flags(since: Option<&str>, until: Option<&str>, lookback_days: u32) -> Result<Option<Self>, Error> {
        if since.is_none() && until.is_none() {
            return Ok(None);
        }
        let day = |flag: &str, v: &str| {
            crate::access_log::time::parse_day(v)
                .ok_or_else(|| Error::Usage(format!("{flag} {v:?} is not a date like 2024-01-31")))
        };
        let first = since.map(|v| day("--since", v)).transpose()?.unwrap_or(0);
        let today = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| (d.as_secs() / 86_400) as i32);
        let last = until.map(|v| day("--until", v)).transpose()?.unwrap_or(today);
        if first > last {
            return Err(Error::Usage("--since is after --until".into()));
        }
        Ok(Some(KeyDates { first, last: last + lookback_days as i32 }))
    }

    pub fn contains_key(&self, key: &str) -> bool {
        key_day(key).is_some_and(|d| (self.first..=self.last).contains(&d))
    }
}

/// The date at the start of a key's file name (`2024-03-15-00-10-11-4C3B...` -> 2024-03-15).
pub fn key_day(key: &str) -> Option<i32> {
    let name = key.rsplit('/').next()?;
    let date = name.get(..10)?;
    (name.as_bytes().get(10) == Some(&b'-')).then_some(())?;
    crate::access_log::time::parse_day(date)
}

/// The file name of an S3 log delivery (`2024-03-15-00-10-11-4C3B2A1908F7E6D5`, in both key
/// formats, with any extension): a date and time and a unique string, the same wherever the
/// object is copied or downloaded to. `None` for other names, which identify nothing beyond
/// their place.
pub fn delivery_name(name: &str) -> Option<&str> {
    let base = name.rsplit('/').next()?;
    let b = base.as_bytes();
    let shape = b.len() >= 28
        && (0..19).all(|i| if [4, 7, 10, 13, 16].contains(&i) { b[i] == b'-' } else { b[i].is_ascii_digit() })
        && b[19] == b'-';
    (shape && key_day(base).is_some()).then_some(base)
}

/// A remote object's bytes, or the news that it is gone.
pub enum Fetched {
    /// A local object: the parser threads read it.
    Local,
    Bytes(Vec<u8>),
    /// Listed, but gone when fetched (deleted or expired in between).
    Missing,
}

/// Where an object's bytes come from.
#[derive(Debug, Clone)]
pub(crate) enum Location {
    File(PathBuf),
    /// Standard input, read as a stream.
    Stdin,
    /// A named pipe or device (`<(zcat ...)`, a FIFO): read as a stream, like standard input.
    Pipe(PathBuf),
    Store(Arc<dyn ObjectStore>, StorePath),
}

/// One log object to convert.
#[derive(Debug, Clone)]
pub struct SourceObject {
    /// The value of `source_object`: absolute path, or `stdin`.
    pub name: String,
    /// Size in bytes as stored (before decompression).
    pub size: u64,
    /// The ETag S3 listed (none for local files).
    pub etag: Option<String>,
    location: Location,
}

impl SourceObject {
    /// Whether the object is fetched over the network (and so is worth fetching concurrently).
    pub fn is_remote(&self) -> bool {
        matches!(self.location, Location::Store(..))
    }

    /// Standard input or a pipe: it has no identity across runs and no size before it is read,
    /// so it is always streamed and never recorded in the ledger.
    pub fn is_stdin(&self) -> bool {
        matches!(self.location, Location::Stdin | Location::Pipe(_))
    }

    /// Fetches a remote object's bytes as stored, trying again on transient failures.
    pub async fn fetch(&self, retry: &RetryPolicy) -> Result<Fetched, Error> {
        if !self.is_remote() {
            return Ok(Fetched::Local);
        }
        let Location::Store(store, path) = &self.location else {
            return Ok(Fetched::Local);
        };
        let got = with_retries(retry, || async { store.get(path).await?.bytes().await }).await;
        match got {
            // Without a copy when the body arrived as one buffer.
            Ok(bytes) => Ok(Fetched::Bytes(Vec::from(bytes))),
            Err(object_store::Error::NotFound { .. }) => Ok(Fetched::Missing),
            Err(e) => Err(store_error(&self.name, &e)),
        }
    }

    /// Starts fetching a remote object's parts in the background, for [`open_stream`]: done when
    /// the object is drawn ahead of the parser, its first parts arrive before its turn. `None`
    /// for an object that is not in a store.
    ///
    /// [`open_stream`]: SourceObject::open_stream
    pub(crate) fn start_parts(
        &self,
        rt: Option<&tokio::runtime::Runtime>,
        retry: &RetryPolicy,
        requests: &Arc<tokio::sync::Semaphore>,
    ) -> Result<Option<ranged::RangedReader>, Error> {
        let Location::Store(store, path) = &self.location else { return Ok(None) };
        let rt = rt.ok_or_else(|| Error::Internal(format!("{} needs the async runtime", self.name)))?;
        let (store, path, etag) = (store.clone(), path.clone(), self.etag.clone());
        let (retry, requests) = (retry.clone(), requests.clone());
        Ok(Some(ranged::RangedReader::start(store, path, self.size, etag, retry, requests, rt.handle())))
    }

    /// Opens the object as a stream of decompressed bytes, for objects too large to hold whole.
    /// Remote objects are read as parts fetched in parallel, each request retried on its own:
    /// `parts` from [`start_parts`](SourceObject::start_parts).
    pub(crate) fn open_stream(&self, parts: Option<ranged::RangedReader>) -> Result<Box<dyn Read + Send>, Error> {
        use std::io::BufRead;
        let raw: Box<dyn Read + Send> = match (&self.location, parts) {
            (Location::Store(..), Some(parts)) => Box::new(parts),
            (Location::Store(..), None) => {
                return Err(Error::Internal(format!("{} is streamed without its parts started", self.name)));
            }
            (Location::File(p), _) => Box::new(std::fs::File::open(p).map_err(|e| Error::read(p, e))?),
            (Location::Stdin, _) => Box::new(std::io::stdin()),
            (Location::Pipe(p), _) => Box::new(open_pipe(p).map_err(|e| Error::read(p, e))?),
        };
        let mut buffered = std::io::BufReader::with_capacity(1 << 20, raw);
        let head = buffered.fill_buf().map_err(|e| self.stream_error(e))?;
        Ok(if head.starts_with(GZIP_MAGIC) {
            Box::new(flate2::read::MultiGzDecoder::new(buffered))
        } else if head.starts_with(ZSTD_MAGIC) {
            let decoder = zstd::stream::read::Decoder::with_buffer(buffered).map_err(|cause| Error::Decompress {
                path: self.name.clone(),
                format: "zstd",
                cause,
            })?;
            Box::new(decoder)
        } else {
            Box::new(buffered)
        })
    }

    /// An error while reading an open stream: corrupt compressed data, a remote read that broke
    /// off (worth another run), or a local read error.
    pub fn stream_error(&self, e: std::io::Error) -> Error {
        match e.kind() {
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => {
                Error::Decompress { path: self.name.clone(), format: "gzip or zstd", cause: e }
            }
            _ if self.is_remote() => Error::Temporary { url: self.name.clone(), cause: e.to_string() },
            _ => Error::read(&self.name, e),
        }
    }

    /// Reads the object's bytes, decompressed; `fetched` holds a remote object's bytes. `None`
    /// for the decompressed bytes when they would be more than `whole_cap`: such an object is
    /// streamed instead, so a small compressed object cannot take memory by its ratio.
    pub fn read(&self, fetched: Fetched, whole_cap: usize) -> Result<(u64, Option<Vec<u8>>), Error> {
        let raw = match (&self.location, fetched) {
            (_, Fetched::Bytes(bytes)) => bytes,
            (_, Fetched::Missing) => Vec::new(),
            (Location::File(p), Fetched::Local) => read_file(p, self.size).map_err(|e| Error::read(p, e))?,
            (Location::Stdin | Location::Pipe(_) | Location::Store(..), Fetched::Local) => {
                return Err(Error::Internal(format!("{} is streamed, not read whole", self.name)));
            }
        };
        let stored = raw.len() as u64;
        Ok((stored, decode(&self.name, raw, whole_cap)?))
    }
}

/// The recorded objects of a committed batch, found again where their names say, as they are now
/// (size and ETag as stored today, for the caller to compare with the record); `None` for one that
/// is gone. Each `s3://` bucket gets one client.
pub fn find_recorded(
    names: &[String],
    opts: &StoreOptions,
    rt: Option<&tokio::runtime::Runtime>,
) -> Result<Vec<Option<SourceObject>>, Error> {
    let mut stores: std::collections::HashMap<String, Arc<dyn ObjectStore>> = Default::default();
    let mut found = Vec::with_capacity(names.len());
    for name in names {
        if let Some((bucket, key)) = name.strip_prefix("s3://").and_then(|_| split_s3_url(name)) {
            let store = match stores.get(bucket) {
                Some(s) => s.clone(),
                None => {
                    let s = s3_store(bucket, opts).map_err(|cause| Error::Store { url: name.clone(), cause })?;
                    stores.insert(bucket.to_string(), s.clone());
                    s
                }
            };
            let rt = rt.ok_or_else(|| Error::Internal(format!("{name} needs the async runtime")))?;
            let path = crate::store::key_path(key);
            match rt.block_on(with_retries(&opts.retry, || store.head(&path))) {
                Ok(m) => found.push(Some(SourceObject {
                    name: name.clone(),
                    size: m.size,
                    etag: m.e_tag,
                    location: Location::Store(store, path),
                })),
                Err(object_store::Error::NotFound { .. }) => found.push(None),
                Err(e) => return Err(store_error(name, &e)),
            }
        } else {
            let path = PathBuf::from(name);
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => found.push(Some(file_object(path, m.len()))),
                Ok(_) => found.push(None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => found.push(None),
                Err(e) => return Err(Error::read(&path, e)),
            }
        }
    }
    Ok(found)
}

pub(crate) fn absolute(p: &Path) -> Result<PathBuf, Error> {
    std::fs::canonicalize(p).map_err(|e| Error::read(p, e))
}

pub(crate) fn file_object(path: PathBuf, size: u64) -> SourceObject {
    SourceObject { name: path_name(&path), size, etag: None, location: Location::File(path) }
}

/// The `source_object` name of a local file: its path, or, for a path that is not UTF-8, its
/// path with each byte that is not part of a UTF-8 character (and each `%`) written `%XX`, so
/// that two files whose names differ only there keep two names (a lossy name made them one, and
/// the second was skipped as already seen).
fn path_name(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    if let Some(s) = path.to_str() {
        return s.to_string();
    }
    let mut out = String::new();
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        out.push_str(&chunk.valid().replace('%', "%25"));
        for b in chunk.invalid() {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The absolute form of a path that may not exist yet (an output folder about to be made): the
/// real path of its nearest existing ancestor, with the rest appended.
pub(crate) fn resolved(p: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(p) {
        return real;
    }
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut rest = Vec::new();
    let mut at = abs.as_path();
    while let Some(parent) = at.parent() {
        rest.push(at.file_name().map(|n| n.to_os_string()).unwrap_or_default());
        if let Ok(real) = std::fs::canonicalize(parent) {
            return rest.iter().rev().fold(real, |acc, n| acc.join(n));
        }
        at = parent;
    }
    abs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_names_are_the_s3_log_file_names() {
        let name = "2024-03-15-00-10-11-4C3B2A1908F7E6D5";
        assert_eq!(delivery_name(&format!("s3://b/logs/{name}")), Some(name));
        assert_eq!(
            delivery_name(&format!("/data/1111/us-east-1/b/2024/03/15/{name}.gz")),
            Some(&*format!("{name}.gz"))
        );
        for other in [
            "access.log",
            "2024-03-15.log",
            "2024-03-15-00-10-11",
            "2024-13-15-00-10-11-4C3B2A1908F7E6D5",
            "x/2024-03-15T00-10-11-4C3B2A19",
        ] {
            assert_eq!(delivery_name(other), None, "{other}");
        }
    }

    #[test]
    fn key_dates_come_from_the_file_name_in_both_key_formats() {
        let day = crate::access_log::time::parse_day;
        assert_eq!(key_day("logs/2024-03-15-00-10-11-4C3B2A1908F7E6D5"), day("2024-03-15"));
        assert_eq!(key_day("logs/111122223333/us-east-1/app/2024/03/14/2024-03-14-00-00-00-ABCDEF"), day("2024-03-14"));
        assert_eq!(key_day("2023-12-31-23-59-59-X.gz"), day("2023-12-31"));
        for no_date in
            ["logs/", "logs/readme.txt", "logs/2024-13-01-00-00-00-X", "logs/2024-03-15", "logs/2024-03-15T00"]
        {
            assert_eq!(key_day(no_date), None, "{no_date}");
        }
        let range = KeyDates { first: day("2024-03-14").unwrap(), last: day("2024-03-15").unwrap() };
        assert!(range.contains_key("a/2024-03-14-01-00-00-X") && range.contains_key("a/2024-03-15-23-00-00-X"));
        assert!(!range.contains_key("a/2024-03-16-00-00-00-X") && !range.contains_key("a/2024-03-13-23-59-59-X"));
    }
}
