//! A model of S3's timing over any object store (the benchmark's, over local files): every
//! request waits a first-byte latency, each GET's body arrives no faster than a per-connection
//! bandwidth, and listings come in pages of 1,000 keys, each page after the latency. Requests in
//! flight are counted (now and at most), so a benchmark shows how many the reader keeps busy.
//!
//! The defaults are 30 ms and 100 MB/s: S3 Standard's first byte for a small GET from the same
//! region is tens of milliseconds (AWS: S3 Express One Zone is "up to 10x faster" with
//! "single-digit millisecond" access; the S3 performance guidelines treat 100-200 ms as slow
//! enough to retry), and AWS advises "one concurrent request for each 85-90 MB/s of desired
//! network throughput" (Amazon S3 user guide, performance design patterns). Both are parameters.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use tokio::time::Instant;

/// The timing the model gives each request.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Before the first byte (or page) of every request.
    pub latency: Duration,
    /// Bytes per second of one GET's body.
    pub bandwidth: f64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing { latency: Duration::from_millis(30), bandwidth: 100e6 }
    }
}

/// What the model saw.
#[derive(Debug, Default)]
pub struct Counts {
    pub requests: AtomicU64,
    pub gets: AtomicU64,
    pub list_pages: AtomicU64,
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
}

impl Counts {
    fn start(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_in_flight.fetch_max(now, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// One request in flight, until dropped (a GET's with its body).
struct InFlight(Arc<Counts>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An object store with S3's timing, over `inner`.
#[derive(Debug)]
pub struct S3Model {
    pub inner: Arc<dyn ObjectStore>,
    pub timing: Timing,
    pub counts: Arc<Counts>,
    /// The local folder `inner` serves, when it is one: a plain GET reads the file on the spot
    /// instead of through object_store's blocking-thread hand-overs, so the model adds S3's
    /// timing and not a cost of its own per request.
    pub folder: Option<std::path::PathBuf>,
    /// Keys per listing page: S3's 1,000, fewer in tests of what lies past a page's end.
    pub page_keys: usize,
}

impl fmt::Display for S3Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S3Model({:?}, {})", self.timing, self.inner)
    }
}

/// Bytes handed on at once from a GET's body: about what one TCP read gives.
const PIECE: usize = 256 << 10;

impl S3Model {
    pub fn new(inner: Arc<dyn ObjectStore>, timing: Timing) -> Self {
        S3Model { inner, timing, counts: Arc::default(), folder: None, page_keys: 1000 }
    }

    /// The model over the local folder `root` (object_store's LocalFileSystem for all but plain
    /// GETs).
    pub fn over_folder(root: &std::path::Path, timing: Timing) -> Self {
        let local = object_store::local::LocalFileSystem::new_with_prefix(root).expect("a folder");
        S3Model { folder: Some(root.to_path_buf()), ..S3Model::new(Arc::new(local), timing) }
    }

    /// A GET without range or conditions of a file of `folder`, opened on the spot.
    fn plain_get(&self, location: &Path, options: &GetOptions) -> Option<Result<GetResult>> {
        let folder = self.folder.as_ref()?;
        let plain = options.range.is_none()
            && !options.head
            && options.if_match.is_none()
            && options.if_none_match.is_none()
            && options.if_modified_since.is_none()
            && options.if_unmodified_since.is_none();
        if !plain {
            return None;
        }
        let path = folder.join(location.as_ref());
        let open = std::fs::File::open(&path).and_then(|f| Ok((f.metadata()?, f)));
        Some(match open {
            Ok((meta, file)) => {
                let size = meta.len();
                let meta = ObjectMeta {
                    location: location.clone(),
                    last_modified: meta.modified().map(Into::into).unwrap_or_default(),
                    size,
                    e_tag: None,
                    version: None,
                };
                // Read a piece at a time as the bandwidth carries it, as a network body arrives:
                // never held whole before it is received.
                Ok(GetResult {
                    payload: GetResultPayload::File(file, path),
                    meta,
                    range: 0..size,
                    attributes: Default::default(),
                    extensions: Default::default(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(object_store::Error::NotFound { path: location.to_string(), source: e.into() })
            }
            Err(e) => Err(object_store::Error::Generic { store: "S3Model", source: e.into() }),
        })
    }

    /// `inner`'s keys in S3's order (a local folder's listing has none) and in pages of
    /// `page_keys` (1,000), each after the latency (an empty listing is one page).
    fn paged(&self, inner: BoxStream<'static, Result<ObjectMeta>>) -> BoxStream<'static, Result<ObjectMeta>> {
        let inner = futures::stream::once(async move {
            let mut all: Vec<ObjectMeta> = inner.try_collect().await?;
            all.sort_by(|a, b| a.location.cmp(&b.location));
            Ok::<_, object_store::Error>(futures::stream::iter(all.into_iter().map(Ok)))
        })
        .try_flatten();
        let (counts, latency) = (self.counts.clone(), self.timing.latency);
        let page = move || {
            let counts = counts.clone();
            async move {
                let _request = counts.start();
                counts.list_pages.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(latency).await;
            }
        };
        let first = page.clone();
        let later = inner.chunks(self.page_keys.max(1)).enumerate().then(move |(i, keys)| {
            let wait = (i > 0).then(&page);
            async move {
                if let Some(wait) = wait {
                    wait.await;
                }
                futures::stream::iter(keys)
            }
        });
        futures::stream::once(async move {
            first().await;
            futures::stream::iter(Vec::new())
        })
        .chain(later)
        .flatten()
        .boxed()
    }
}

/// A body as pieces of [`PIECE`] bytes. A local file (the benchmark's, in the page cache) is read
/// a piece at a time on the runtime's thread: object_store hands each 8 KiB read to a blocking
/// thread, and those hand-overs cost more CPU than the conversion, which a network read does not.
fn pieces(payload: GetResultPayload, range: std::ops::Range<u64>) -> BoxStream<'static, Result<Bytes>> {
    match payload {
        GetResultPayload::File(file, path) => {
            futures::stream::try_unfold((file, range.start), move |(mut file, at)| {
                let path = path.clone();
                async move {
                    if at >= range.end {
                        return Ok(None);
                    }
                    use std::io::{Read, Seek};
                    let mut buf = vec![0; (range.end - at).min(PIECE as u64) as usize];
                    let read = file.seek(std::io::SeekFrom::Start(at)).and_then(|_| file.read_exact(&mut buf));
                    read.map_err(|e| object_store::Error::Generic {
                        store: "S3Model",
                        source: format!("{}: {e}", path.display()).into(),
                    })?;
                    let n = buf.len() as u64;
                    Ok(Some((Bytes::from(buf), (file, at + n))))
                }
            })
            .boxed()
        }
        GetResultPayload::Stream(s) => s
            .map_ok(|b: Bytes| {
                let pieces = (0..b.len()).step_by(PIECE).map(move |at| Ok(b.slice(at..b.len().min(at + PIECE))));
                futures::stream::iter(pieces.collect::<Vec<_>>())
            })
            .try_flatten()
            .boxed(),
    }
}

#[async_trait::async_trait]
impl ObjectStore for S3Model {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        let _request = self.counts.start();
        tokio::time::sleep(self.timing.latency).await;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        let _request = self.counts.start();
        tokio::time::sleep(self.timing.latency).await;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let request = self.counts.start();
        self.counts.gets.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(self.timing.latency).await;
        let result = match self.plain_get(location, &options) {
            Some(got) => got?,
            None => self.inner.get_opts(location, options).await?,
        };
        let (meta, range, attributes, extensions) = (result.meta, result.range, result.attributes, result.extensions);
        let bandwidth = self.timing.bandwidth;
        let started = Instant::now();
        let mut sent = 0u64;
        // The body in pieces, each when the bandwidth has carried it. The request is in flight
        // until the body is taken or dropped.
        let body = pieces(result.payload, range.clone())
            .and_then(move |piece: Bytes| {
                let _in_flight = &request;
                sent += piece.len() as u64;
                let due = started + Duration::from_secs_f64(sent as f64 / bandwidth);
                async move {
                    tokio::time::sleep_until(due).await;
                    Ok(piece)
                }
            })
            .boxed();
        Ok(GetResult { payload: GetResultPayload::Stream(body), meta, range, attributes, extensions })
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.paged(self.inner.list(prefix))
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.paged(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let _request = self.counts.start();
        self.counts.list_pages.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(self.timing.latency).await;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let _request = self.counts.start();
        tokio::time::sleep(self.timing.latency).await;
        self.inner.copy_opts(from, to, options).await
    }
}
