//! Fetching remote objects ahead of the parser: the windows after the one being parsed download
//! in the background, as many as fit in a budget of bytes, with at most `--concurrency` requests
//! in flight over all of them. Many small objects so get many requests at once (latency is
//! hidden by numbers), a few large ones few; an object streamed in parts has its first parts
//! fetched before its turn. The budget grows when the parser finds a window not yet downloaded
//! (the store delivers slower than the parser takes), up to a bound: memory stays bounded
//! whatever the objects' sizes or the store's speed.
//!
//! The request cap is the run's ([`Fetcher`]), and so are the downloads started across a batch's
//! end: when a batch has drawn its last window, the first objects after it (the next unit's,
//! usually) start downloading while its last windows are encoded and committed, so the next
//! batch does not begin by waiting for the store.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::error::Error;
use crate::pipeline::options::ConvertOptions;
use crate::source::ranged::{self, RangedReader};
use crate::source::{Fetched, SourceObject};

type Prefetch = tokio::task::JoinHandle<Result<Vec<Fetched>, Error>>;

/// An object's download started ahead of any batch, and the version of the object it is of.
struct Spare {
    etag: Option<String>,
    size: u64,
    download: tokio::task::JoinHandle<Result<Fetched, Error>>,
}

impl Spare {
    /// Whether it is a download of `o` as listed now (same ETag and size).
    fn is_of(&self, o: &SourceObject) -> bool {
        self.etag == o.etag && self.size == o.size
    }
}

/// What fetching shares over the batches of a run: the request cap (`--concurrency`), and the
/// downloads started for the objects after a batch's end, before any batch has drawn them.
pub(crate) struct Fetcher {
    requests: Arc<tokio::sync::Semaphore>,
    /// Downloads started ahead of any batch, by object name.
    spare: std::sync::Mutex<std::collections::HashMap<String, Spare>>,
}

impl Fetcher {
    pub(crate) fn new(opts: &ConvertOptions) -> Arc<Self> {
        let requests = Arc::new(tokio::sync::Semaphore::new(opts.concurrency.max(1)));
        Arc::new(Fetcher { requests, spare: Default::default() })
    }

    /// Starts downloading `objects` (the first ones after a batch's end) in the background, each
    /// under the request cap, for the batch that draws them. Downloads started before for other
    /// objects, and not drawn since, are stopped: at most the first fetch-ahead budget's bytes
    /// (32 MiB) wait here.
    pub(crate) fn start_spare(&self, objects: Vec<SourceObject>, rt: &tokio::runtime::Runtime, opts: &ConvertOptions) {
        let mut spare = self.spare.lock().expect("not poisoned");
        let mut before = std::mem::take(&mut *spare);
        for o in objects {
            let download = match before.remove(&o.name) {
                Some(started) if started.is_of(&o) => started.download,
                other => {
                    if let Some(other) = other {
                        other.download.abort();
                    }
                    rt.spawn(fetch_capped(o.clone(), opts.store.retry.clone(), self.requests.clone()))
                }
            };
            spare.insert(o.name, Spare { etag: o.etag, size: o.size, download });
        }
        for started in before.into_values() {
            started.download.abort();
        }
    }

    /// The download started for `o` ahead of its batch, if one was (of the same ETag and size).
    fn take_spare(&self, o: &SourceObject) -> Option<tokio::task::JoinHandle<Result<Fetched, Error>>> {
        let started = self.spare.lock().expect("not poisoned").remove(&o.name)?;
        if started.is_of(o) {
            Some(started.download)
        } else {
            started.download.abort();
            None
        }
    }
}

/// Fetches `o` whole when one of the run's requests is free.
async fn fetch_capped(
    o: SourceObject,
    retry: crate::store::retry::RetryPolicy,
    requests: Arc<tokio::sync::Semaphore>,
) -> Result<Fetched, Error> {
    let _request = requests.acquire_owned().await.expect("the semaphore is never closed");
    o.fetch(&retry).await
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        for started in self.spare.get_mut().expect("not poisoned").values() {
            started.download.abort();
        }
    }
}

/// What is fetched of a window drawn ahead.
enum Pending {
    /// The window's objects, fetched whole.
    Window(Prefetch),
    /// The window's one object, to be streamed: its first parts.
    Parts(RangedReader),
}

/// A window drawn ahead of the parser, with its download when it has one.
pub(crate) struct Ahead {
    window: Vec<SourceObject>,
    pending: Option<Pending>,
    /// What the window counts against the budget.
    bytes: u64,
}

/// The windows drawn ahead, in order; their downloads are stopped when dropped (a batch given up).
pub(crate) struct FetchAhead {
    queue: VecDeque<Ahead>,
    bytes: u64,
    budget: u64,
    /// The most the budget grows to.
    most: u64,
    window_bytes: u64,
    fetcher: Arc<Fetcher>,
}

impl FetchAhead {
    pub(crate) fn new(opts: &ConvertOptions, fetcher: Arc<Fetcher>) -> Self {
        let (budget, most) = opts.fetch_ahead_bytes();
        FetchAhead { queue: VecDeque::new(), bytes: 0, budget, most, window_bytes: opts.window_bytes, fetcher }
    }

    /// The parser waited for a window's download: the store delivers slower than the parser
    /// takes, so the windows after it are drawn further ahead (one window's bytes more, up to
    /// the bound).
    pub(crate) fn starved(&mut self) {
        self.budget = (self.budget + self.window_bytes).min(self.most.max(self.budget));
    }

    /// The run's request cap, for the parts of a streamed object too.
    pub(crate) fn requests(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.fetcher.requests
    }

    pub(crate) fn fetcher(&self) -> &Fetcher {
        &self.fetcher
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether another window may be drawn: the queue is empty, or under its budget.
    pub(crate) fn wants_more(&self) -> bool {
        self.queue.is_empty() || self.bytes < self.budget
    }

    /// Queues `window`, starting its download. A streamed object counts as the parts its reader
    /// holds at most.
    pub(crate) fn push(
        &mut self,
        window: Vec<SourceObject>,
        rt: Option<&tokio::runtime::Runtime>,
        opts: &ConvertOptions,
    ) -> Result<(), Error> {
        let stored = window.iter().map(|o| o.size).sum::<u64>();
        let (pending, bytes) = match opts.streamed(&window) {
            Some(big) => {
                let parts = big.start_parts(rt, &opts.store.retry, self.requests())?;
                (parts.map(Pending::Parts), stored.min(ranged::HELD))
            }
            None => (self.spawn(&window, rt, opts).map(Pending::Window), stored.min(opts.window_bytes)),
        };
        self.bytes += bytes;
        self.queue.push_back(Ahead { window, pending, bytes });
        Ok(())
    }

    /// The next window in order, with its download still running or done.
    pub(crate) fn pop(&mut self) -> Option<Ahead> {
        let next = self.queue.pop_front()?;
        self.bytes -= next.bytes;
        Some(next)
    }

    /// Starts fetching the remote objects of `window` in the background, in window order, each
    /// request when one of the run's `--concurrency` is free. `None` when there is nothing to
    /// fetch: local objects are read by the parser threads.
    fn spawn(
        &self,
        window: &[SourceObject],
        rt: Option<&tokio::runtime::Runtime>,
        opts: &ConvertOptions,
    ) -> Option<Prefetch> {
        use futures::{StreamExt, TryStreamExt};
        let rt = rt?;
        if !window.iter().any(SourceObject::is_remote) {
            return None;
        }
        let objects: Vec<_> = window.iter().map(|o| (o.clone(), self.fetcher.take_spare(o))).collect();
        let (retry, requests) = (opts.store.retry.clone(), self.requests().clone());
        Some(rt.spawn(async move {
            let n = objects.len();
            let fetches = objects.into_iter().map(|(o, spare)| {
                let (retry, requests) = (&retry, requests.clone());
                async move {
                    if let Some(started) = spare {
                        return started
                            .await
                            .map_err(|e| Error::Temporary { url: o.name.clone(), cause: e.to_string() })?;
                    }
                    fetch_capped(o, retry.clone(), requests).await
                }
            });
            futures::stream::iter(fetches).buffered(n).try_collect().await
        }))
    }
}

impl Drop for FetchAhead {
    fn drop(&mut self) {
        for a in &self.queue {
            if let Some(Pending::Window(p)) = &a.pending {
                p.abort();
            }
        }
    }
}

/// A window's download, running or done.
pub(crate) struct Download(Option<Pending>);

impl Ahead {
    pub(crate) fn split(self) -> (Vec<SourceObject>, Download) {
        (self.window, Download(self.pending))
    }
}

impl Download {
    /// Whether the window's objects are all here already (or need no download).
    pub(crate) fn is_done(&self) -> bool {
        match &self.0 {
            Some(Pending::Window(handle)) => handle.is_finished(),
            _ => true,
        }
    }

    /// The parts of a streamed object, started when it was drawn.
    pub(crate) fn parts(self) -> Option<RangedReader> {
        match self.0 {
            Some(Pending::Parts(parts)) => Some(parts),
            _ => None,
        }
    }

    /// Waits for the download of `window` (or says its objects are local).
    pub(crate) fn wait(
        self,
        window: &[SourceObject],
        rt: Option<&tokio::runtime::Runtime>,
    ) -> Result<Vec<Fetched>, Error> {
        match (rt, self.0) {
            (Some(rt), Some(Pending::Window(handle))) => {
                rt.block_on(handle).map_err(|e| Error::Temporary { url: "fetch task".into(), cause: e.to_string() })?
            }
            _ => Ok(window.iter().map(|_| Fetched::Local).collect()),
        }
    }
}
