//! Fetching remote objects ahead of the parser: the windows after the one being parsed download
//! in the background, as many as fit in a budget of bytes, with at most `--concurrency` requests
//! in flight over all of them. Many small objects so get many requests at once (latency is
//! hidden by numbers), a few large ones few; memory stays bounded by the budget, whatever the
//! objects' sizes.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::error::Error;
use crate::pipeline::options::ConvertOptions;
use crate::source::{Fetched, SourceObject};

type Prefetch = tokio::task::JoinHandle<Result<Vec<Fetched>, Error>>;

/// A window drawn ahead of the parser, with its download when it has one.
pub(crate) struct Ahead {
    window: Vec<SourceObject>,
    pending: Option<Prefetch>,
    /// What the window counts against the budget.
    bytes: u64,
}

/// The windows drawn ahead, in order; their downloads are stopped when dropped (a batch given up).
pub(crate) struct FetchAhead {
    queue: VecDeque<Ahead>,
    bytes: u64,
    budget: u64,
    requests: Arc<tokio::sync::Semaphore>,
}

impl FetchAhead {
    pub(crate) fn new(opts: &ConvertOptions) -> Self {
        FetchAhead {
            queue: VecDeque::new(),
            bytes: 0,
            budget: opts.fetch_ahead_bytes(),
            requests: Arc::new(tokio::sync::Semaphore::new(opts.concurrency.max(1))),
        }
    }

    /// The run's request cap, for the parts of a streamed object too.
    pub(crate) fn requests(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.requests
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether another window may be drawn: the queue is empty, or under its budget.
    pub(crate) fn wants_more(&self) -> bool {
        self.queue.is_empty() || self.bytes < self.budget
    }

    /// Queues `window`, starting its download. A streamed object counts as a window's worth
    /// (its bytes are read when its turn comes, a few parts ahead).
    pub(crate) fn push(
        &mut self,
        window: Vec<SourceObject>,
        rt: Option<&tokio::runtime::Runtime>,
        opts: &ConvertOptions,
    ) {
        let pending = self.spawn(&window, rt, opts);
        let bytes = window.iter().map(|o| o.size).sum::<u64>().min(opts.window_bytes);
        self.bytes += bytes;
        self.queue.push_back(Ahead { window, pending, bytes });
    }

    /// The next window in order, with its download still running or done.
    pub(crate) fn pop(&mut self) -> Option<Ahead> {
        let next = self.queue.pop_front()?;
        self.bytes -= next.bytes;
        Some(next)
    }

    /// Starts fetching the remote objects of `window` in the background, in window order, each
    /// request when one of the run's `--concurrency` is free. `None` when there is nothing to
    /// fetch: local objects are read by the parser threads, and an object larger than a window
    /// is streamed instead.
    fn spawn(
        &self,
        window: &[SourceObject],
        rt: Option<&tokio::runtime::Runtime>,
        opts: &ConvertOptions,
    ) -> Option<Prefetch> {
        use futures::{StreamExt, TryStreamExt};
        let rt = rt?;
        if opts.streamed(window).is_some() || !window.iter().any(SourceObject::is_remote) {
            return None;
        }
        let objects = window.to_vec();
        let (retry, requests) = (opts.store.retry.clone(), self.requests.clone());
        Some(rt.spawn(async move {
            let n = objects.len();
            let fetches = objects.into_iter().map(|o| {
                let (retry, requests) = (&retry, requests.clone());
                async move {
                    let _request = requests.acquire_owned().await.expect("the semaphore is never closed");
                    o.fetch(retry).await
                }
            });
            futures::stream::iter(fetches).buffered(n).try_collect().await
        }))
    }
}

impl Drop for FetchAhead {
    fn drop(&mut self) {
        for a in &self.queue {
            if let Some(p) = &a.pending {
                p.abort();
            }
        }
    }
}

/// A window's download, running or done.
pub(crate) struct Download(Option<Prefetch>);

impl Ahead {
    pub(crate) fn split(self) -> (Vec<SourceObject>, Download) {
        (self.window, Download(self.pending))
    }
}

impl Download {
    /// Waits for the download of `window` (or says its objects are local).
    pub(crate) fn wait(
        self,
        window: &[SourceObject],
        rt: Option<&tokio::runtime::Runtime>,
    ) -> Result<Vec<Fetched>, Error> {
        match (rt, self.0) {
            (Some(rt), Some(handle)) => {
                rt.block_on(handle).map_err(|e| Error::Temporary { url: "fetch task".into(), cause: e.to_string() })?
            }
            _ => Ok(window.iter().map(|_| Fetched::Local).collect()),
        }
    }
}
