//! Finding log objects: files and folders (walked recursively in sorted order), standard input,
//! and `s3://bucket/prefix`, listed in the background and handed over as S3 pages arrive.
//!
//! An S3 prefix is a plain key prefix, as S3 defines it (`logs/2024-01-0` selects
//! `logs/2024-01-05-...`): the listing starts at the prefix within its parent folder and stops
//! matching past it. `--since/--until` list only the key ranges of those days.

use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectMeta, ObjectStore};

use crate::access_log::time;
use crate::error::Error;
use crate::source::KeyDates;
use crate::source::Location;
use crate::source::SourceObject;
use crate::source::absolute;
use crate::source::file_object;
use crate::source::resolved;
use crate::store::StoreOptions;
use crate::store::describe;
use crate::store::first_line;
use crate::store::key_path;
use crate::store::retry::back_off;
use crate::store::retry::is_permanent;
use crate::store::retry::with_retries;
use crate::store::s3_store;
use crate::store::split_s3_url;
use crate::store::store_error;

/// The objects whose keys start with `prefix`, in key order, from after `after` when given.
/// S3 prefixes are plain string prefixes, while object_store lists by folder: so list the prefix's
/// folder from just before the prefix (S3's StartAfter), keep the keys that start with it, and stop
/// at the first key past it: selecting one day of a folder holding years of logs reads that day's
/// pages, not the rest of the folder.
pub(crate) fn list_prefix(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    after: Option<&str>,
) -> futures::stream::BoxStream<'static, object_store::Result<ObjectMeta>> {
    use futures::StreamExt;
    let folder = match prefix.rfind('/') {
        Some(i) if i > 0 => Some(key_path(&prefix[..i])),
        _ => None,
    };
    let start = (!prefix.is_empty() && !prefix.ends_with('/')).then(|| just_before(prefix));
    let listing = match after.map(str::to_string).or(start).as_deref() {
        Some(s) => store.list_with_offset(folder.as_ref(), &key_path(s)),
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
pub(crate) async fn key_ranges(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    dates: KeyDates,
) -> object_store::Result<Vec<String>> {
    use crate::access_log::time::{civil_from_days, format_day};
    let mut out: Vec<String> = (dates.first..=dates.last).map(|d| format!("{prefix}{}", format_day(d))).collect();
    if prefix.is_empty() || prefix.ends_with('/') {
        let root = (!prefix.is_empty()).then(|| key_path(prefix.trim_end_matches('/')));
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

/// What a listing selects besides its sources.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Only objects whose key date is in this range.
    pub dates: Option<KeyDates>,
    /// A source that lists nothing is not an error.
    pub allow_empty: bool,
    /// Only these units' key ranges are listed where the ranges tell (`--since/--until` over
    /// `s3://`); objects of other units may still be handed over, for the caller to skip. With a
    /// selection short of all units, a source that lists nothing is not an error: a shard may
    /// own nothing.
    pub selection: crate::source::unit::Selection,
}

/// Hand-overs (a folder's files or an S3 page: up to 1,000 objects each) the listing thread makes
/// ahead of the run, about 64,000 objects or 30 MB: a listing of millions of objects (years of a
/// bucket's logs in one run) then waits for the run instead of being held whole.
const LISTED_AHEAD: usize = 64;

/// The most objects [`Listing::take_in`] holds taken in: more than the next unit's downloads
/// started ahead need (the fetch-ahead budget, 32 MiB, is 1,600 objects of 20 KB).
const TAKEN_IN_MOST: usize = 16_000;

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
    /// How the listing failed, received by [`Listing::wait_for_more`] before the objects
    /// handed over were all taken: given out after them.
    failed: Option<Error>,
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
    /// (standard input is always read). `rt` runs the listing of `s3://` sources. A source that
    /// lists no object (in the range) ends the listing with [`Error::NoInput`] unless
    /// `scope.allow_empty`.
    pub fn start(
        sources: &[String],
        exclude: Option<&Path>,
        store: &StoreOptions,
        rt: Option<&tokio::runtime::Runtime>,
        scope: Scope,
    ) -> Listing {
        let (tx, rx) = std::sync::mpsc::sync_channel(LISTED_AHEAD);
        let (sources, store, rt) = (sources.to_vec(), store.clone(), rt.map(|r| r.handle().clone()));
        let exclude = exclude.map(resolved);
        std::thread::spawn(move || {
            let mut send = |objects: Vec<SourceObject>| tx.send(Listed::Objects(objects)).is_ok();
            let end = match produce(&sources, exclude.as_deref(), &store, rt.as_ref(), &scope, &mut send) {
                Ok(()) => Listed::Done,
                Err(e) => Listed::Failed(e),
            };
            let _ = tx.send(end);
        });
        Listing {
            rx,
            buf: Default::default(),
            done: false,
            failed: None,
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
            failed: None,
            started: std::time::Instant::now(),
            seconds: 0.0,
        }
    }

    /// The next object, waiting for the listing if need be; `None` once everything was handed over.
    pub fn next_object(&mut self) -> Result<Option<SourceObject>, Error> {
        self.next(true)
    }

    /// The next object if the listing has handed it over already; `None` if it has not (yet).
    pub fn ready_object(&mut self) -> Result<Option<SourceObject>, Error> {
        self.next(false)
    }

    /// Hands `o` (just taken) back: it is the next object again.
    pub fn unread(&mut self, o: SourceObject) {
        self.buf.push_front(o);
    }

    /// The objects handed over and not given out yet, in order, without taking them.
    pub(crate) fn ready(&self) -> impl Iterator<Item = &SourceObject> {
        self.buf.iter()
    }

    /// Takes in, without waiting, what the listing thread has handed over since: [`ready`]
    /// then shows everything listed so far, not only what the last object taken came with.
    ///
    /// [`ready`]: Listing::ready
    pub(crate) fn take_in(&mut self) {
        while !self.done && self.failed.is_none() && self.buf.len() < TAKEN_IN_MOST {
            match self.rx.try_recv() {
                Ok(m) => self.receive(Some(m)),
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => self.receive(None),
            }
        }
    }

    /// The listing has ended: every object it will give has been handed over.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Waits at most `timeout` for the listing to hand over more objects or end, unless it has
    /// ended.
    pub(crate) fn wait_for_more(&mut self, timeout: std::time::Duration) {
        use std::sync::mpsc::RecvTimeoutError;
        if self.done {
            return;
        }
        match self.rx.recv_timeout(timeout) {
            Ok(m) => self.receive(Some(m)),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => self.receive(None),
        }
    }

    /// Takes in what the listing thread handed over (`None`: the thread is gone): objects, its
    /// end, or a failure, which is given out once the objects before it are taken.
    fn receive(&mut self, m: Option<Listed>) {
        match m {
            Some(Listed::Objects(v)) => {
                self.objects += v.len() as u64;
                self.bytes += v.iter().map(|o| o.size).sum::<u64>();
                self.buf.extend(v);
            }
            Some(Listed::Done) => {
                self.done = true;
                self.seconds = self.started.elapsed().as_secs_f64();
            }
            Some(Listed::Failed(e)) => {
                self.done = true;
                self.failed = Some(e);
            }
            None => self.failed = Some(Error::Internal("the listing thread stopped unexpectedly".into())),
        }
    }

    fn next(&mut self, wait: bool) -> Result<Option<SourceObject>, Error> {
        loop {
            if let Some(o) = self.buf.pop_front() {
                return Ok(Some(o));
            }
            if let Some(e) = self.failed.take() {
                return Err(e);
            }
            if self.done {
                return Ok(None);
            }
            let received = if wait {
                self.rx.recv().ok()
            } else {
                match self.rx.try_recv() {
                    Ok(m) => Some(m),
                    Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(None),
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => None,
                }
            };
            self.receive(received);
        }
    }
}

/// Lists `sources` in order, handing objects to `send` (false: stop, nobody listens).
fn produce(
    sources: &[String],
    exclude: Option<&Path>,
    store: &StoreOptions,
    rt: Option<&tokio::runtime::Handle>,
    scope: &Scope,
    send: &mut dyn FnMut(Vec<SourceObject>) -> bool,
) -> Result<(), Error> {
    let dates = scope.dates;
    for s in sources {
        let mut listed = 0u64;
        let mut counted = |objects: Vec<SourceObject>| {
            listed += objects.len() as u64;
            send(objects)
        };
        if !produce_one(s, sources, exclude, store, rt, scope, &mut counted)? {
            return Ok(());
        }
        // A misspelled prefix or an empty folder must not look like "nothing new" for ever.
        if listed == 0 && !scope.allow_empty && scope.selection.is_all() {
            let range = dates.map(|d| {
                let last = d.last.min(time::days_from_civil(9999, 12, 31));
                format!(" with a key date from {} to {}", time::format_day(d.first), time::format_day(last))
            });
            return Err(Error::NoInput { url: s.clone(), range: range.unwrap_or_default() });
        }
    }
    Ok(())
}

/// Lists one source into `send`; false when nobody listens any more.
fn produce_one(
    s: &str,
    sources: &[String],
    exclude: Option<&Path>,
    store: &StoreOptions,
    rt: Option<&tokio::runtime::Handle>,
    scope: &Scope,
    send: &mut dyn FnMut(Vec<SourceObject>) -> bool,
) -> Result<bool, Error> {
    let dates = scope.dates;
    if s == "-" {
        if sources.iter().filter(|s| *s == "-").count() > 1 {
            return Err(Error::Usage("standard input (-) can be named only once".into()));
        }
        let stdin = SourceObject { name: "stdin".into(), size: 0, etag: None, location: Location::Stdin };
        return Ok(send(vec![stdin]));
    }
    if s.starts_with("s3://") {
        let rt = rt.ok_or_else(|| Error::Internal("s3:// sources need the async runtime".into()))?;
        rt.block_on(stream_s3(s, store, scope, send))?;
        return Ok(true);
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
        return Ok(send(vec![pipe]));
    }
    let path = absolute(Path::new(local))?;
    let in_range = |p: &Path| dates.is_none_or(|d| d.contains_key(&p.to_string_lossy()));
    if !meta.is_dir() {
        return Ok(!in_range(&path) || send(vec![file_object(path, meta.len())]));
    }
    let mut step = Vec::new();
    // Files reached through a symbolic link are named by their real path, and a file reached
    // twice (a linked folder, a hard link) is read once.
    let mut linked_depths = Vec::<usize>::new();
    let mut seen_files: std::collections::HashSet<(u64, u64), ahash::RandomState> = Default::default();
    // Siblings share their parent's path, so comparing whole paths orders them by name, as
    // `sort_by_file_name` does, without finding each name in its path per comparison (about 30 ms
    // of the listing thread for a folder of 50,000 objects, before it hands any over).
    let by_name = |a: &walkdir::DirEntry, b: &walkdir::DirEntry| a.path().as_os_str().cmp(b.path().as_os_str());
    for entry in walkdir::WalkDir::new(&path).follow_links(true).sort_by(by_name) {
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
        if !seen_files.insert((std::os::unix::fs::MetadataExt::dev(&meta), std::os::unix::fs::MetadataExt::ino(&meta)))
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
            return Ok(false);
        }
    }
    if !step.is_empty() && !send(step) {
        return Ok(false);
    }
    Ok(true)
}

/// Lists `s3://bucket/prefix` page by page and hands each page's objects to `send` as it arrives,
/// so fetching starts while the listing goes on. With `dates`, only those days' key ranges are
/// listed, and of those only the ranges of units `scope` selects. A page that fails is tried again
/// from after the last key handed over, so nothing is handed over twice. `send` returns false
/// when nobody listens any more.
pub(crate) async fn stream_s3(
    url: &str,
    opts: &StoreOptions,
    scope: &Scope,
    send: &mut dyn FnMut(Vec<SourceObject>) -> bool,
) -> Result<(), Error> {
    let dates = scope.dates;
    let fail = |cause: String| Error::Store { url: url.to_string(), cause: first_line(&cause) };
    let (bucket, prefix) = split_s3_url(url).ok_or_else(|| fail("not an s3://bucket/prefix URL".into()))?;
    let store = s3_store(bucket, opts).map_err(fail)?;
    let policy = &opts.retry;
    let ranges = match dates {
        // A bounded range is listed day by day; an open one (ten years or more) is one listing.
        Some(d) if d.last - d.first < 3660 => {
            with_retries(policy, || key_ranges(&store, prefix, d)).await.map_err(|e| store_error(url, &e))?
        }
        _ => vec![prefix.to_string()],
    };
    let bucket_url = format!("s3://{bucket}/");
    let ranges: Vec<String> = ranges
        .into_iter()
        .filter(|r| {
            dates.is_none()
                || crate::source::unit::unit_of_range(&bucket_url, r).is_none_or(|u| scope.selection.takes(&u))
        })
        .collect();
    // The first few ranges (days) are listed at once, each into a channel of a few pages, and
    // handed over in order: the listing keeps ahead of fetching even when each day's pages wait
    // for S3. A range's task stops when its channel is dropped (the run stopped listening).
    let mut ahead = std::collections::VecDeque::new();
    let mut ranges = ranges.into_iter();
    loop {
        while ahead.len() < RANGES_AHEAD {
            let Some(range) = ranges.next() else { break };
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<SourceObject>, Error>>(PAGES_AHEAD);
            let (store, bucket, url, policy) = (store.clone(), bucket.to_string(), url.to_string(), policy.clone());
            tokio::spawn(async move {
                if let Err(e) = list_range(&store, &bucket, &url, &range, dates, &policy, &tx).await {
                    let _ = tx.send(Err(e)).await;
                }
            });
            ahead.push_back(rx);
        }
        let Some(mut rx) = ahead.pop_front() else { return Ok(()) };
        while let Some(page) = rx.recv().await {
            if !send(page?) {
                return Ok(());
            }
        }
    }
}

/// Key ranges listed at once when `--since/--until` gives several days.
const RANGES_AHEAD: usize = 4;
/// Pages (of up to 1,000 keys) a range listed ahead holds before it waits.
const PAGES_AHEAD: usize = 16;

/// Lists one key range of `store` into `tx`, page by page, retrying from the last key handed
/// over; it ends early when nobody listens any more.
async fn list_range(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    url: &str,
    range: &str,
    dates: Option<KeyDates>,
    policy: &crate::store::retry::RetryPolicy,
    tx: &tokio::sync::mpsc::Sender<Result<Vec<SourceObject>, Error>>,
) -> Result<(), Error> {
    use futures::StreamExt;
    let (mut after, mut attempt) = (None::<String>, 0u32);
    loop {
        // What has arrived is handed over at once (an S3 page at a time), not 1,000 keys at a time.
        let mut pages = list_prefix(store, range, after.as_deref()).ready_chunks(1000);
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
                        error = Some(describe(&e));
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
            if tx.send(Ok(objects)).await.is_err() {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    /// What the listing hands over while a batch looks ahead (`wait_for_more`) is given out in
    /// order afterwards, a failure only after the objects before it; nothing handed over within
    /// the time waited changes nothing.
    #[test]
    fn waiting_for_more_keeps_the_order_and_the_failure() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut listing = Listing { rx, ..Listing::of(Vec::new()) };
        listing.done = false;
        let object = |name: &str| crate::source::file_object(std::path::PathBuf::from(name), 1);
        let short = std::time::Duration::from_millis(1);
        listing.wait_for_more(short);
        assert!(listing.ready().next().is_none() && !listing.is_done());
        tx.send(Listed::Objects(vec![object("/a"), object("/b")])).unwrap();
        tx.send(Listed::Failed(Error::Internal("listing failed".into()))).unwrap();
        listing.wait_for_more(short);
        assert_eq!(listing.ready().count(), 2);
        listing.wait_for_more(short);
        assert!(listing.is_done());
        for name in ["/a", "/b"] {
            assert_eq!(listing.next_object().unwrap().map(|o| o.name).as_deref(), Some(name));
        }
        assert!(matches!(listing.next_object(), Err(Error::Internal(m)) if m == "listing failed"));
        assert!(listing.next_object().unwrap().is_none());
    }

    /// Taking in shows every object handed over so far (several pages) without waiting, in
    /// order, and stops at the listing's end, its failure, or a listing thread that is gone.
    #[test]
    fn taking_in_shows_all_pages_handed_over_without_waiting() {
        let object = |name: &str| crate::source::file_object(std::path::PathBuf::from(name), 1);
        let names = |l: &Listing| l.ready().map(|o| o.name.clone()).collect::<Vec<_>>();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut listing = Listing { rx, ..Listing::of(Vec::new()) };
        listing.done = false;
        listing.take_in();
        assert!(names(&listing).is_empty() && !listing.is_done());
        tx.send(Listed::Objects(vec![object("/a"), object("/b")])).unwrap();
        tx.send(Listed::Objects(vec![object("/c")])).unwrap();
        listing.take_in();
        assert_eq!(names(&listing), ["/a", "/b", "/c"]);
        assert!(!listing.is_done());
        tx.send(Listed::Done).unwrap();
        tx.send(Listed::Objects(vec![object("/never")])).unwrap();
        listing.take_in();
        assert!(listing.is_done());
        assert_eq!(names(&listing), ["/a", "/b", "/c"], "nothing after the end");

        let (tx, rx) = std::sync::mpsc::channel();
        let mut failing = Listing { rx, ..Listing::of(Vec::new()) };
        failing.done = false;
        tx.send(Listed::Objects(vec![object("/a")])).unwrap();
        drop(tx);
        failing.take_in();
        assert_eq!(names(&failing), ["/a"]);
        assert_eq!(failing.next_object().unwrap().map(|o| o.name).as_deref(), Some("/a"));
        assert!(matches!(failing.next_object(), Err(Error::Internal(_))), "a listing thread that is gone");
    }

    /// An in-memory bucket that counts the keys its listings have given.
    #[derive(Debug)]
    struct Counted(Arc<dyn ObjectStore>, Arc<std::sync::atomic::AtomicUsize>);

    impl std::fmt::Display for Counted {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Counted({})", self.0)
        }
    }

    /// `keys`, each counted in `given` as it is taken.
    fn counted(
        keys: futures::stream::BoxStream<'static, object_store::Result<ObjectMeta>>,
        given: &Arc<std::sync::atomic::AtomicUsize>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<ObjectMeta>> {
        use futures::StreamExt;
        let given = given.clone();
        keys.inspect(move |_| {
            given.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .boxed()
    }

    #[async_trait::async_trait]
    impl ObjectStore for Counted {
        async fn put_opts(
            &self,
            location: &StorePath,
            payload: object_store::PutPayload,
            opts: object_store::PutOptions,
        ) -> object_store::Result<object_store::PutResult> {
            self.0.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &StorePath,
            opts: object_store::PutMultipartOptions,
        ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            self.0.put_multipart_opts(location, opts).await
        }
        async fn get_opts(
            &self,
            location: &StorePath,
            options: object_store::GetOptions,
        ) -> object_store::Result<object_store::GetResult> {
            self.0.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: futures::stream::BoxStream<'static, object_store::Result<StorePath>>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<StorePath>> {
            self.0.delete_stream(locations)
        }
        fn list(
            &self,
            prefix: Option<&StorePath>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<ObjectMeta>> {
            counted(self.0.list(prefix), &self.1)
        }
        fn list_with_offset(
            &self,
            prefix: Option<&StorePath>,
            offset: &StorePath,
        ) -> futures::stream::BoxStream<'static, object_store::Result<ObjectMeta>> {
            counted(self.0.list_with_offset(prefix, offset), &self.1)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&StorePath>,
        ) -> object_store::Result<object_store::ListResult> {
            self.0.list_with_delimiter(prefix).await
        }
        async fn copy_opts(
            &self,
            from: &StorePath,
            to: &StorePath,
            options: object_store::CopyOptions,
        ) -> object_store::Result<()> {
            self.0.copy_opts(from, to, options).await
        }
    }

    /// A listing that runs ahead of the run stops once [`LISTED_AHEAD`] pages wait for it: of
    /// 200,000 keys, none taken for half a second, fewer than 100,000 are asked of the store.
    /// Then every key is given once as the run takes them.
    #[test]
    fn a_long_listing_waits_for_the_run() {
        const KEYS: usize = 200_000;
        let memory: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async {
            for i in 0..KEYS {
                let key = StorePath::from(format!("logs/2024-01-05-00-00-00-{i:06}"));
                memory.put(&key, b"x".to_vec().into()).await.unwrap();
            }
        });
        let given = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let store: Arc<dyn ObjectStore> = Arc::new(Counted(memory, given.clone()));
        let opts = StoreOptions {
            region: Some("us-east-1".into()),
            static_credentials: Some(("unused".into(), "unused".into())),
            layer: Some(crate::store::StoreLayer(Arc::new(move |_| store.clone()))),
            ..StoreOptions::default()
        };
        let mut listing = Listing::start(&["s3://bucket/logs/".into()], None, &opts, Some(&rt), Scope::default());
        std::thread::sleep(std::time::Duration::from_millis(500));
        let asked = given.load(std::sync::atomic::Ordering::Relaxed);
        assert!(asked < KEYS / 2, "{asked} keys listed ahead of a run that took none");
        let mut names = std::collections::HashSet::new();
        while let Some(o) = listing.next_object().unwrap() {
            assert!(names.insert(o.name), "given twice");
        }
        assert_eq!(names.len(), KEYS);
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
}
