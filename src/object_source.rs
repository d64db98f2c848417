//! Finding and reading log objects: files, directories (walked recursively in sorted order),
//! standard input, and `s3://bucket/prefix` (through `object_store`), with gzip and zstd detected by
//! their magic bytes.
//!
//! Each object gets a stable name (its absolute path, `s3://bucket/key`, or `stdin`) that becomes
//! `source_object` in every row, and a size that, with the name, identifies the run's input. An S3
//! prefix is a plain key prefix, as S3 defines it (`logs/2024-01-0` selects `logs/2024-01-05-...`):
//! the listing starts at the prefix within its parent folder and stops matching past it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as StorePath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use crate::error::Error;

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

/// A wrapper put around every object store a run opens: for fault injection and request
/// counting in tests, or instrumentation.
#[derive(Clone)]
pub struct StoreLayer(pub Arc<WrapStore>);

/// Takes the store s3logs opened and returns the one it will use.
pub type WrapStore = dyn Fn(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> + Send + Sync;

impl std::fmt::Debug for StoreLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreLayer")
    }
}

/// How often a failed request is tried again, with exponential backoff from `base_delay`, and
/// how long one attempt may take before it counts as failed.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (1 means no retry).
    pub attempts: u32,
    pub base_delay: std::time::Duration,
    pub timeout: std::time::Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: std::time::Duration::from_millis(200),
            timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// How to reach object stores.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// S3-compatible endpoint (otherwise `AWS_ENDPOINT_URL`, otherwise AWS).
    pub endpoint_url: Option<String>,
    /// AWS region (otherwise `AWS_REGION` / `AWS_DEFAULT_REGION`).
    pub region: Option<String>,
    /// Access key id and secret, instead of the environment's credential chain.
    pub static_credentials: Option<(String, String)>,
    /// Our retries, on top of object_store's own: they also cover failures a layer injects.
    pub retry: RetryPolicy,
    pub layer: Option<StoreLayer>,
}

/// The first line of an error message: S3 error bodies (XML) follow on later lines.
fn first_line(message: &str) -> String {
    crate::redact::redact(message.lines().next().unwrap_or(""))
}

/// Errors that another attempt will not fix: the typed ones, and a client error (4xx other than
/// 408 and 429) that object_store reports only inside a generic error's text.
fn is_permanent(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    if let E::Generic { .. } = e {
        let text = e.to_string();
        if let Some(i) = text.find("status code: ") {
            let code = &text[i + 13..text.len().min(i + 16)];
            return code.starts_with('4') && code != "408" && code != "429";
        }
        return false;
    }
    matches!(
        e,
        E::NotFound { .. }
            | E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::InvalidPath { .. }
            | E::NotSupported { .. }
            | E::NotImplemented { .. }
            | E::Precondition { .. }
            | E::AlreadyExists { .. }
    )
}

/// Requests tried again, for the report.
pub static RETRIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Runs `f` until it succeeds, fails for good, or the attempts run out (backoff doubling each time).
pub async fn with_retries<T, F, Fut>(policy: RetryPolicy, mut f: F) -> object_store::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = object_store::Result<T>>,
{
    let mut attempt = 0u32;
    loop {
        let result = match tokio::time::timeout(policy.timeout, f()).await {
            Ok(r) => r,
            Err(_) => Err(object_store::Error::Generic {
                store: "s3logs",
                source: format!("request timed out after {:?}", policy.timeout).into(),
            }),
        };
        match result {
            Ok(v) => return Ok(v),
            Err(e) if is_permanent(&e) || attempt + 1 >= policy.attempts.max(1) => return Err(e),
            Err(e) => {
                attempt += 1;
                back_off(policy, attempt, &first_line(&e.to_string())).await;
            }
        }
    }
}

/// Counts and logs the `retry`-th retry (from 1), then waits: `base_delay`, doubling each time,
/// at most 10 s.
async fn back_off(policy: RetryPolicy, retry: u32, error: &str) {
    RETRIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(attempt = retry, error, "retrying");
    let delay = policy.base_delay.saturating_mul(1 << (retry - 1).min(6));
    tokio::time::sleep(delay.min(std::time::Duration::from_secs(10))).await;
}

/// An async runtime for S3 requests (two worker threads: requests wait, they do not compute).
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::read("the async runtime", e))
}

/// A store error as this crate's error: `Temporary` (exit 75) when retrying did not help but a
/// later run may, `Store` (exit 74) when the request cannot succeed as it is.
pub fn store_error(url: &str, e: &object_store::Error) -> Error {
    let cause = first_line(&e.to_string());
    if is_permanent(e) {
        Error::Store { url: url.to_string(), cause }
    } else {
        Error::Temporary { url: url.to_string(), cause }
    }
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
enum Location {
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
    pub async fn fetch(&self, retry: RetryPolicy) -> Result<Fetched, Error> {
        if !self.is_remote() {
            return Ok(Fetched::Local);
        }
        let Location::Store(store, path) = &self.location else {
            return Ok(Fetched::Local);
        };
        let got = with_retries(retry, || async { store.get(path).await?.bytes().await }).await;
        match got {
            Ok(bytes) => Ok(Fetched::Bytes(bytes.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(Fetched::Missing),
            Err(e) => Err(store_error(&self.name, &e)),
        }
    }

    /// Opens the object as a stream of decompressed bytes, for objects too large to hold whole.
    /// Remote objects are streamed from their GET response (the request itself is retried).
    pub fn open_stream(
        &self,
        rt: Option<&tokio::runtime::Runtime>,
        retry: RetryPolicy,
    ) -> Result<Box<dyn Read + Send>, Error> {
        use std::io::BufRead;
        let raw: Box<dyn Read + Send> = match &self.location {
            Location::File(p) => Box::new(std::fs::File::open(p).map_err(|e| Error::read(p, e))?),
            Location::Stdin => Box::new(std::io::stdin()),
            Location::Pipe(p) => Box::new(open_pipe(p).map_err(|e| Error::read(p, e))?),
            Location::Store(store, path) => {
                let rt = rt.ok_or_else(|| Error::Usage(format!("{} needs the async runtime", self.name)))?;
                let got =
                    rt.block_on(with_retries(retry, || store.get(path))).map_err(|e| store_error(&self.name, &e))?;
                let stream = got.into_stream().map_err(std::io::Error::other);
                let reader = tokio_util::io::StreamReader::new(stream);
                Box::new(tokio_util::io::SyncIoBridge::new_with_handle(reader, rt.handle().clone()))
            }
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
                return Err(Error::Usage(format!("{} is streamed, not read whole", self.name)));
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
            let rt = rt.ok_or_else(|| Error::Usage(format!("{name} needs the async runtime")))?;
            let path = StorePath::from(key);
            match rt.block_on(with_retries(opts.retry, || store.head(&path))) {
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

/// Fills in the region from the AWS profile (`AWS_PROFILE`, else `default`, in the shared config
/// file) when neither `--region` nor `AWS_REGION` / `AWS_DEFAULT_REGION` gives one, as the AWS CLI
/// does. Without any, object_store uses us-east-1.
pub fn resolve_region(opts: &mut StoreOptions, rt: &tokio::runtime::Runtime) {
    if opts.region.is_some() || ["AWS_REGION", "AWS_DEFAULT_REGION"].iter().any(|v| std::env::var_os(v).is_some()) {
        return;
    }
    use aws_config::meta::region::ProvideRegion;
    let provider = aws_config::profile::ProfileFileRegionProvider::new();
    if let Some(region) = rt.block_on(provider.region()) {
        tracing::info!(region = %region, "region from the AWS profile");
        opts.region = Some(region.to_string());
    }
}

/// Splits `s3://bucket/key/prefix` into bucket and key prefix.
pub fn split_s3_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then_some((bucket, prefix))
}

/// An S3 client for `bucket`: credentials and settings from the AWS environment, endpoint and
/// region from the options where given.
pub fn s3_store(bucket: &str, opts: &StoreOptions) -> Result<Arc<dyn ObjectStore>, String> {
    s3_stores(bucket, opts).map(|(store, _)| store)
}

/// [`s3_store`], and the same client's multipart API (which object_store offers only on the S3
/// client itself, outside any layer): a DEST records and aborts its own uploads with it.
pub fn s3_stores(
    bucket: &str,
    opts: &StoreOptions,
) -> Result<(Arc<dyn ObjectStore>, Arc<object_store::aws::AmazonS3>), String> {
    let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
    match &opts.static_credentials {
        Some((id, secret)) => b = b.with_access_key_id(id).with_secret_access_key(secret),
        // Keys in the environment are read by object_store itself; otherwise the AWS SDK's chain
        // (profiles, SSO, web identity, ECS, instance metadata) supplies them.
        None if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() => {
            b = b.with_credentials(Arc::new(crate::aws_credentials::SdkCredentials::default()));
        }
        None => {}
    }
    let endpoint = opts.endpoint_url.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
    if let Some(e) = endpoint {
        b = b.with_allow_http(e.starts_with("http://")).with_endpoint(e);
    }
    if let Some(r) = &opts.region {
        b = b.with_region(r);
    }
    let s3 = Arc::new(b.build().map_err(|e| e.to_string())?);
    let store: Arc<dyn ObjectStore> = s3.clone();
    let store = match &opts.layer {
        Some(layer) => (layer.0)(store),
        None => store,
    };
    Ok((store, s3))
}

/// The objects whose keys start with `prefix`, in key order, from after `after` when given.
/// S3 prefixes are plain string prefixes, while object_store lists by folder: so list the prefix's
/// folder from just before the prefix (S3's StartAfter), keep the keys that start with it, and stop
/// at the first key past it: selecting one day of a folder holding years of logs reads that day's
/// pages, not the rest of the folder.
fn list_prefix(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    after: Option<&str>,
) -> futures::stream::BoxStream<'static, object_store::Result<ObjectMeta>> {
    use futures::StreamExt;
    let folder = match prefix.rfind('/') {
        Some(i) if i > 0 => Some(StorePath::from(&prefix[..i])),
        _ => None,
    };
    let start = (!prefix.is_empty() && !prefix.ends_with('/')).then(|| just_before(prefix));
    let listing = match after.map(str::to_string).or(start).as_deref() {
        Some(s) => store.list_with_offset(folder.as_ref(), &StorePath::from(s)),
        None => store.list(folder.as_ref()),
    };
    let (p, q) = (prefix.to_string(), prefix.to_string());
    listing
        .try_take_while(move |m| {
            let k = m.location.as_ref();
            futures::future::ready(Ok(k.starts_with(p.as_str()) || k < p.as_str()))
        })
        .try_filter(move |m| futures::future::ready(m.location.as_ref().starts_with(q.as_str())))
        .boxed()
}

/// A key that sorts before every key starting with `prefix` and after the log keys before them:
/// the last character one lower, then `z` (the highest character object_store does not
/// percent-encode). S3 lists keys after its StartAfter, so listing one day of a folder holding
/// years of logs starts at that day, not at its month or decade. Whatever the characters, the
/// result sorts below the prefix (the lowered character decides), so no key is ever missed.
fn just_before(prefix: &str) -> String {
    let mut chars: Vec<char> = prefix.chars().collect();
    match chars.pop().and_then(|c| (c as u32).checked_sub(1).and_then(char::from_u32)) {
        Some(lower) => {
            chars.push(lower);
            chars.push('z');
            chars.into_iter().collect()
        }
        // A last character with nothing below it: start at the prefix without it.
        None => chars.into_iter().collect(),
    }
}

/// Partitioned keys: `<prefix><account>/<region>/<bucket>/YYYY/MM/DD/...`, account 12 digits.
fn is_account(segment: &str) -> bool {
    segment.len() == 12 && segment.bytes().all(|b| b.is_ascii_digit())
}

/// The key prefixes that hold the objects of `dates` under `prefix`, in listing order: one per
/// day for simple keys (`<prefix>YYYY-MM-DD`), and for partitioned keys one per day and source
/// bucket (`.../<bucket>/YYYY/MM/DD/`), found by walking the account, region and bucket folders.
async fn key_ranges(store: &Arc<dyn ObjectStore>, prefix: &str, dates: KeyDates) -> object_store::Result<Vec<String>> {
    use crate::access_log::time::{civil_from_days, format_day};
    let mut out: Vec<String> = (dates.first..=dates.last).map(|d| format!("{prefix}{}", format_day(d))).collect();
    if prefix.is_empty() || prefix.ends_with('/') {
        let root = (!prefix.is_empty()).then(|| StorePath::from(prefix.trim_end_matches('/')));
        let children = |p: Option<StorePath>| async move { store.list_with_delimiter(p.as_ref()).await };
        for account in children(root).await?.common_prefixes {
            if !account.filename().is_some_and(is_account) {
                continue;
            }
            for region in children(Some(account)).await?.common_prefixes {
                for bucket in children(Some(region)).await?.common_prefixes {
                    for day in dates.first..=dates.last {
                        let (y, m, d) = civil_from_days(day);
                        out.push(format!("{bucket}/{y:04}/{m:02}/{d:02}/"));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Lists `s3://bucket/prefix` page by page and hands each page's objects to `send` as it arrives,
/// so fetching starts while the listing goes on. With `dates`, only those days' key ranges are
/// listed. A page that fails is tried again from after the last key handed over, so nothing is
/// handed over twice. `send` returns false when nobody listens any more.
async fn stream_s3(
    url: &str,
    opts: &StoreOptions,
    dates: Option<KeyDates>,
    send: &mut dyn FnMut(Vec<SourceObject>) -> bool,
) -> Result<(), Error> {
    use futures::StreamExt;
    let fail = |cause: String| Error::Store { url: url.to_string(), cause: first_line(&cause) };
    let (bucket, prefix) = split_s3_url(url).ok_or_else(|| fail("not an s3://bucket/prefix URL".into()))?;
    let store = s3_store(bucket, opts).map_err(fail)?;
    let policy = opts.retry;
    let ranges = match dates {
        // A bounded range is listed day by day; an open one (ten years or more) is one listing.
        Some(d) if d.last - d.first < 3660 => {
            with_retries(policy, || key_ranges(&store, prefix, d)).await.map_err(|e| store_error(url, &e))?
        }
        _ => vec![prefix.to_string()],
    };
    for range in ranges {
        let (mut after, mut attempt) = (None::<String>, 0u32);
        loop {
            // What has arrived is handed over at once (an S3 page at a time), not 1,000 keys at a time.
            let mut pages = list_prefix(&store, &range, after.as_deref()).ready_chunks(1000);
            let failed = loop {
                let page = match tokio::time::timeout(policy.timeout, pages.next()).await {
                    Err(_) => break format!("listing timed out after {:?}", policy.timeout),
                    Ok(None) => break String::new(),
                    Ok(Some(page)) => page,
                };
                let mut metas = Vec::with_capacity(page.len());
                let mut error = None;
                for m in page {
                    match m {
                        Ok(m) => metas.push(m),
                        Err(e) if is_permanent(&e) => return Err(store_error(url, &e)),
                        Err(e) => {
                            error = Some(first_line(&e.to_string()));
                            break;
                        }
                    }
                }
                if let Some(last) = metas.last() {
                    after = Some(last.location.to_string());
                }
                let objects = metas
                    .into_iter()
                    .filter(|m| dates.is_none_or(|d| d.contains_key(m.location.as_ref())))
                    .map(|m| SourceObject {
                        name: format!("s3://{bucket}/{}", m.location),
                        size: m.size,
                        etag: m.e_tag,
                        location: Location::Store(store.clone(), m.location),
                    })
                    .collect();
                if !send(objects) {
                    return Ok(());
                }
                if let Some(e) = error {
                    break e;
                }
            };
            if failed.is_empty() {
                break;
            }
            attempt += 1;
            if attempt >= policy.attempts.max(1) {
                return Err(Error::Temporary { url: url.to_string(), cause: failed });
            }
            back_off(policy, attempt, &failed).await;
        }
    }
    Ok(())
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// A local file's bytes, read into a buffer of the size the listing saw. `std::fs::read` (and
/// `File::read_to_end`) ask the file system for the size again first, one more system call per
/// object, which shows with 50,000 small objects. A file that changed size since the listing is
/// still read to its end.
fn read_file(p: &Path, listed: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(p)?;
    let mut buf = vec![0u8; usize::try_from(listed).unwrap_or(0).saturating_add(1)];
    let mut len = 0;
    loop {
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if len == buf.len() {
                    buf.resize(2 * len, 0);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// Decompresses gzip (all members) or zstd content; anything else is returned as it is. `None`
/// when the content is more than `cap` bytes: decompression stops there, whatever the ratio.
pub fn decode(name: &str, raw: Vec<u8>, cap: usize) -> Result<Option<Vec<u8>>, Error> {
    let fail = |format, cause| Error::Decompress { path: name.to_string(), format, cause };
    let capped = |reader: &mut dyn Read, format| -> Result<Option<Vec<u8>>, Error> {
        let mut out = Vec::with_capacity((raw.len() * 8).min(cap));
        reader.take(cap as u64 + 1).read_to_end(&mut out).map_err(|e| fail(format, e))?;
        Ok((out.len() <= cap).then_some(out))
    };
    if raw.starts_with(GZIP_MAGIC) {
        capped(&mut flate2::read::MultiGzDecoder::new(raw.as_slice()), "gzip")
    } else if raw.starts_with(ZSTD_MAGIC) {
        let mut decoder = zstd::stream::read::Decoder::new(raw.as_slice()).map_err(|e| fail("zstd", e))?;
        capped(&mut decoder, "zstd")
    } else {
        Ok((raw.len() <= cap).then_some(raw))
    }
}

/// Opens a named pipe or device for reading without waiting for a writer: a FIFO that nobody
/// writes to reads as empty instead of blocking the run (with DEST's lease held) for ever.
fn open_pipe(p: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(p)?;
    // Reads block again once it is open: a FIFO without a writer then reads as its end.
    // SAFETY: F_GETFL and F_SETFL on a descriptor this function owns; no memory is passed.
    let flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(f)
}

fn absolute(p: &Path) -> Result<PathBuf, Error> {
    std::fs::canonicalize(p).map_err(|e| Error::read(p, e))
}

/// What the listing thread hands over, in order.
enum Listed {
    Objects(Vec<SourceObject>),
    Done,
    Failed(Error),
}

/// The objects named by the sources, in order, handed over while the listing goes on in a
/// background thread: S3 pages as they arrive, local folders in steps of 1,000 files. So fetching
/// and parsing the first objects overlap with listing the rest.
pub struct Listing {
    rx: std::sync::mpsc::Receiver<Listed>,
    buf: std::collections::VecDeque<SourceObject>,
    done: bool,
    started: std::time::Instant,
    /// Objects and stored bytes handed over so far.
    pub objects: u64,
    pub bytes: u64,
    /// How long the whole listing took, once it is done.
    pub seconds: f64,
}

impl Listing {
    /// Starts listing `sources`: each directory walked recursively in sorted order, each `s3://`
    /// prefix listed in key order, page by page. Files under `exclude` (the output folder)
    /// are skipped. With `dates`, only objects whose file name starts with a date in range are kept
    /// (standard input is always read). `rt` runs the listing of `s3://` sources.
    pub fn start(
        sources: &[String],
        exclude: Option<&Path>,
        store: &StoreOptions,
        rt: Option<&tokio::runtime::Runtime>,
        dates: Option<KeyDates>,
    ) -> Listing {
        let (tx, rx) = std::sync::mpsc::channel();
        let (sources, store, rt) = (sources.to_vec(), store.clone(), rt.map(|r| r.handle().clone()));
        let exclude = exclude.map(resolved);
        std::thread::spawn(move || {
            let mut send = |objects: Vec<SourceObject>| tx.send(Listed::Objects(objects)).is_ok();
            let end = match produce(&sources, exclude.as_deref(), &store, rt.as_ref(), dates, &mut send) {
                Ok(()) => Listed::Done,
                Err(e) => Listed::Failed(e),
            };
            let _ = tx.send(end);
        });
        Listing {
            rx,
            buf: Default::default(),
            done: false,
            started: std::time::Instant::now(),
            objects: 0,
            bytes: 0,
            seconds: 0.0,
        }
    }

    /// A listing of exactly these objects, in this order.
    pub fn of(objects: Vec<SourceObject>) -> Listing {
        let (_, rx) = std::sync::mpsc::channel();
        Listing {
            rx,
            objects: objects.len() as u64,
            bytes: objects.iter().map(|o| o.size).sum(),
            buf: objects.into(),
            done: true,
            started: std::time::Instant::now(),
            seconds: 0.0,
        }
    }

    /// The next object, waiting for the listing if need be; `None` once everything was handed over.
    pub fn next_object(&mut self) -> Result<Option<SourceObject>, Error> {
        loop {
            if let Some(o) = self.buf.pop_front() {
                return Ok(Some(o));
            }
            if self.done {
                return Ok(None);
            }
            match self.rx.recv() {
                Ok(Listed::Objects(v)) => {
                    self.objects += v.len() as u64;
                    self.bytes += v.iter().map(|o| o.size).sum::<u64>();
                    self.buf.extend(v);
                }
                Ok(Listed::Done) => {
                    self.done = true;
                    self.seconds = self.started.elapsed().as_secs_f64();
                }
                Ok(Listed::Failed(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => return Err(Error::Usage("the listing thread stopped unexpectedly".into())),
            }
        }
    }

    /// Everything left, waiting for the listing to end.
    pub fn collect_rest(&mut self) -> Result<Vec<SourceObject>, Error> {
        let mut out = Vec::new();
        while let Some(o) = self.next_object()? {
            out.push(o);
        }
        Ok(out)
    }
}

/// Lists `sources` in order, handing objects to `send` (false: stop, nobody listens).
fn produce(
    sources: &[String],
    exclude: Option<&Path>,
    store: &StoreOptions,
    rt: Option<&tokio::runtime::Handle>,
    dates: Option<KeyDates>,
    send: &mut dyn FnMut(Vec<SourceObject>) -> bool,
) -> Result<(), Error> {
    let mut stdin_used = false;
    for s in sources {
        if s == "-" {
            if stdin_used {
                return Err(Error::Usage("standard input (-) can be named only once".into()));
            }
            stdin_used = true;
            let stdin = SourceObject { name: "stdin".into(), size: 0, etag: None, location: Location::Stdin };
            if !send(vec![stdin]) {
                return Ok(());
            }
            continue;
        }
        if s.starts_with("s3://") {
            let rt = rt.ok_or_else(|| Error::Usage("s3:// sources need the async runtime".into()))?;
            rt.block_on(stream_s3(s, store, dates, send))?;
            continue;
        }
        let local = s.strip_prefix("file://").unwrap_or(s);
        if local.contains("://") {
            return Err(Error::Usage(format!("{s}: use a local path, file:// or s3:// URL")));
        }
        let meta = std::fs::metadata(local).map_err(|e| Error::read(local, e))?;
        if !meta.is_dir() && !meta.is_file() {
            // A pipe (`<(zcat logs.gz)`, whose /dev/fd path has no canonical form) or a device.
            let pipe =
                SourceObject { name: local.to_string(), size: 0, etag: None, location: Location::Pipe(local.into()) };
            if !send(vec![pipe]) {
                return Ok(());
            }
            continue;
        }
        let path = absolute(Path::new(local))?;
        let in_range = |p: &Path| dates.is_none_or(|d| d.contains_key(&p.to_string_lossy()));
        if !meta.is_dir() {
            if in_range(&path) && !send(vec![file_object(path, meta.len())]) {
                return Ok(());
            }
            continue;
        }
        let mut step = Vec::new();
        // Files reached through a symbolic link are named by their real path, and a file reached
        // twice (a linked folder, a hard link) is read once.
        let (mut linked_depths, mut seen_files) = (Vec::<usize>::new(), std::collections::HashSet::new());
        for entry in walkdir::WalkDir::new(&path).follow_links(true).sort_by_file_name() {
            let entry = match entry {
                Ok(entry) => entry,
                // A link to nothing names no log: skipped with a warning, not the end of the run.
                Err(e) if e.io_error().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) => {
                    tracing::warn!(path = %e.path().unwrap_or(&path).display(), "a dangling link; skipped");
                    continue;
                }
                Err(e) => {
                    let p = e.path().unwrap_or(&path).to_path_buf();
                    let cause = e.into_io_error().unwrap_or_else(|| std::io::Error::other("file system loop"));
                    return Err(Error::read(p, cause));
                }
            };
            while linked_depths.last().is_some_and(|&d| entry.depth() <= d) {
                linked_depths.pop();
            }
            if entry.path_is_symlink() && entry.file_type().is_dir() {
                linked_depths.push(entry.depth());
            }
            if !entry.file_type().is_file() {
                continue;
            }
            let meta = entry.metadata().map_err(|e| Error::read(entry.path(), e.into()))?;
            if !seen_files
                .insert((std::os::unix::fs::MetadataExt::dev(&meta), std::os::unix::fs::MetadataExt::ino(&meta)))
            {
                continue;
            }
            let linked = entry.path_is_symlink() || !linked_depths.is_empty();
            let file = if linked { absolute(entry.path())? } else { entry.into_path() };
            if exclude.as_ref().is_some_and(|x| file.starts_with(x)) || !in_range(&file) {
                continue;
            }
            step.push(file_object(file, meta.len()));
            if step.len() == 1000 && !send(std::mem::take(&mut step)) {
                return Ok(());
            }
        }
        if !step.is_empty() && !send(step) {
            return Ok(());
        }
    }
    Ok(())
}

fn file_object(path: PathBuf, size: u64) -> SourceObject {
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
fn resolved(p: &Path) -> PathBuf {
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
    use std::io::Write;

    /// The listed size is only where reading starts: a file that grew or shrank since the
    /// listing is read whole, and so is an empty one.
    #[test]
    fn local_files_are_read_whole_whatever_size_was_listed() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 1, 5, 4096, 100_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let p = dir.path().join(format!("f{len}"));
            std::fs::write(&p, &data).unwrap();
            for listed in [0, len as u64 / 2, len as u64, len as u64 + 10, 3 * len as u64] {
                assert_eq!(read_file(&p, listed).unwrap(), data, "{len} bytes, {listed} listed");
            }
        }
        assert_eq!(read_file(&dir.path().join("gone"), 1).unwrap_err().kind(), std::io::ErrorKind::NotFound);
    }

    /// S3 prefixes are string prefixes, not folders (in-memory store: fast, no server).
    #[test]
    fn listing_matches_plain_key_prefixes_and_key_dates() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let keys = [
            "logs/2024-01-05-00-00-00-A",
            "logs/2024-01-09-00-00-00-B",
            "logs/2024-01-10-00-00-00-C",
            "logs/2024-01-1",
            "logs2024-01-05-00-00-00-D",
            "logs/111122223333/us-east-1/app/2024/01/09/2024-01-09-00-00-00-E",
            "other/2024-01-05-00-00-00-F",
        ];
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            for k in keys {
                store.put(&StorePath::from(k), b"x".to_vec().into()).await.unwrap();
            }
        });
        let list = |prefix: &str| -> Vec<String> {
            let listed: Vec<ObjectMeta> = rt.block_on(list_prefix(&store, prefix, None).try_collect()).unwrap();
            let mut v: Vec<String> = listed.into_iter().map(|m| m.location.to_string()).collect();
            v.sort();
            v
        };
        assert_eq!(list("logs/2024-01-0"), [keys[0], keys[1]]);
        assert_eq!(list("logs/2024-01-1"), [keys[3], keys[2]]);
        assert_eq!(list("logs2"), [keys[4]]);
        assert_eq!(list("logs/").len(), 5);
        assert_eq!(list("").len(), 7);
        let day = crate::access_log::time::parse_day;
        let dates = KeyDates { first: day("2024-01-09").unwrap(), last: day("2024-01-09").unwrap() };
        let ranges = rt.block_on(key_ranges(&store, "logs/", dates)).unwrap();
        assert_eq!(ranges, ["logs/2024-01-09", "logs/111122223333/us-east-1/app/2024/01/09/"]);
        let mut dated: Vec<String> = ranges.iter().flat_map(|r| list(r)).collect();
        dated.sort();
        assert_eq!(dated, [keys[5], keys[1]]);
        // Handed over in pages, resumed after a key: the listing goes on from there.
        let resumed: Vec<ObjectMeta> =
            rt.block_on(list_prefix(&store, "logs/", Some("logs/2024-01-09-00-00-00-B")).try_collect()).unwrap();
        assert_eq!(resumed.iter().map(|m| m.location.to_string()).collect::<Vec<_>>(), [keys[3], keys[2]]);
    }

    /// The listing's starting point sorts below every key with the prefix, and above the keys of
    /// the day before.
    #[test]
    fn listing_starts_just_before_the_prefix() {
        for (prefix, start) in [("logs/2024-03-17", "logs/2024-03-16z"), ("a/2024-03-20", "a/2024-03-2/z"), ("x", "wz")]
        {
            assert_eq!(just_before(prefix), start);
            assert!(start < prefix);
        }
        assert!("logs/2024-03-16-23-59-59-FFFFFFFFFFFFFFFF" < just_before("logs/2024-03-17").as_str());
        assert_eq!(just_before("\u{0}"), "");
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

    #[test]
    fn gzip_and_zstd_are_detected_by_magic() {
        let text = b"line one\nline two\n".to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&text).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(decode("a", gz, 1 << 20).unwrap(), Some(text.clone()));
        let zs = zstd::stream::encode_all(text.as_slice(), 1).unwrap();
        assert_eq!(decode("b", zs, 1 << 20).unwrap(), Some(text.clone()));
        assert_eq!(decode("c", text.clone(), 1 << 20).unwrap(), Some(text));
    }

    /// A small object whose content is larger than the cap is not decompressed past the cap
    /// (`None`: it is streamed instead), whatever the ratio: 64 MiB of zeros in a few KiB.
    #[test]
    fn decompression_stops_at_the_cap() {
        let zeros = vec![0u8; 64 << 20];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&zeros).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::stream::encode_all(zeros.as_slice(), 19).unwrap();
        assert!(gz.len() < 100 << 10 && zs.len() < 100 << 10, "{} {}", gz.len(), zs.len());
        for raw in [gz, zs] {
            assert_eq!(decode("bomb", raw.clone(), 1 << 20).unwrap(), None);
            assert_eq!(decode("bomb", raw, 64 << 20).unwrap().map(|v| v.len()), Some(64 << 20), "exactly the cap");
        }
        assert_eq!(decode("plain", vec![b'x'; 11], 10).unwrap(), None);
    }

    #[test]
    fn corrupt_gzip_is_an_error_naming_the_object() {
        let err = decode("s3://b/k.gz", vec![0x1f, 0x8b, 8, 0, 1, 2, 3], 1 << 20).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("s3://b/k.gz") && msg.contains("gzip"), "{msg}");
    }
}
