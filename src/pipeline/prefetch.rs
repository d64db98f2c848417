//! Fetching a window's remote objects in the background, a bounded number at once, while the
//! window before it is parsed.

use crate::error::Error;
use crate::pipeline::options::ConvertOptions;
use crate::source::{Fetched, SourceObject};

type Prefetch = tokio::task::JoinHandle<Result<Vec<Fetched>, Error>>;

/// Starts fetching the remote objects of `window` in the background, at most `concurrency` at once,
/// in window order, so the next window downloads while this one is parsed and encoded (two
/// windows of bytes in flight at most). `None` when there is nothing to fetch: local objects are
/// read by the parser threads, and an object larger than a window is streamed instead.
pub(crate) fn spawn_prefetch(
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
    let (retry, concurrency) = (opts.store.retry.clone(), opts.concurrency.max(1));
    Some(rt.spawn(async move {
        let fetches = objects.into_iter().map(|o| {
            let retry = &retry;
            async move { o.fetch(retry).await }
        });
        futures::stream::iter(fetches).buffered(concurrency).try_collect().await
    }))
}

/// Waits for a window's fetch (or says its objects are local).
pub(crate) fn fetched(
    window: &[SourceObject],
    rt: Option<&tokio::runtime::Runtime>,
    pending: Option<Prefetch>,
) -> Result<Vec<Fetched>, Error> {
    match (rt, pending) {
        (Some(rt), Some(handle)) => {
            rt.block_on(handle).map_err(|e| Error::Temporary { url: "fetch task".into(), cause: e.to_string() })?
        }
        _ => Ok(window.iter().map(|_| Fetched::Local).collect()),
    }
}
