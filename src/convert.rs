//! The `convert` run: list objects, convert the new ones in parallel, commit them in batches.
//!
//! The listing runs in the background ([`Listing`]) and hands objects over as S3 pages arrive;
//! each is checked against the ledger, and the new ones are taken in windows of about 8 MiB.
//! While a window is converted, the next is drawn from the listing and its remote objects download
//! (tokio, `--concurrency` at once, so at most two windows of bytes are in flight). Each window is
//! parsed by rayon (groups of consecutive small objects into shared builders, and newline-aligned
//! chunks of larger objects, in parallel) and then encoded (columns in parallel); a window is
//! parsed while the one before it is encoded, all on the same rayon pool. An object larger than a
//! window is streamed in blocks instead of held whole. Input order is kept everywhere, so the same
//! input gives the same files and rows.
//!
//! Windows fill batches of about `--batch-size`; each batch is staged, committed and published as
//! `docs/commit-protocol.md` describes, under the DEST's lease. A run with nothing new writes
//! nothing at all.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow_array::RecordBatch;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::access_log::RejectReason;
use crate::batch_builder::{ChunkOutput, MAX_SAMPLES, ParseOptions, PartitionKey, Rows, parse_chunk, reject_only};
use crate::destination::Destination;
use crate::error::Error;
use crate::lease::{self, Lease, LeaseOptions};
use crate::ledger::{CommitRecord, Ledger, ObjectEntry, Verdict};
use crate::lines::chunks;
use crate::object_source::{self, Fetched, KeyDates, Listing, SourceObject, StoreOptions};
use crate::parquet_sink::{PartitionedWriter, SinkOptions, WrittenFile};
use crate::report::{PlannedObject, Report, TransferFigures};
use crate::schema::{arrow_schema, reject_schema};

/// Everything a conversion needs to know; the CLI fills it from flags.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub sources: Vec<String>,
    pub output: PathBuf,
    /// Above this share of rejected lines the run fails and commits nothing.
    pub max_reject_ratio: f64,
    /// A longer line is a reject.
    pub max_line_bytes: usize,
    /// An object's content (decompressed) past this is one reject, not read.
    pub max_object_bytes: u64,
    /// Target size of the newline-aligned chunks a large object is cut into.
    pub chunk_bytes: usize,
    /// Objects are parsed in windows of about this many stored bytes.
    pub window_bytes: u64,
    /// Parser threads (default: one per core).
    pub threads: Option<usize>,
    /// Partition by source bucket, then by day (`source_bucket=.../dt=.../`).
    pub partition_by_bucket: bool,
    /// How to reach `s3://` sources.
    pub store: StoreOptions,
    /// Only objects whose key date is in this range (`--since`/`--until`, end widened by the lookback).
    pub key_dates: Option<KeyDates>,
    /// Remote objects fetched at once.
    pub concurrency: usize,
    /// Files larger than this go to S3 as multipart uploads of parts this size.
    pub upload_part_bytes: usize,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    pub sink: SinkOptions,
    /// Objects are committed in batches of about this many stored bytes, so a long run that
    /// stops keeps what it committed.
    pub batch_bytes: u64,
    /// Plan only: list what would be converted and write nothing.
    pub dry_run: bool,
    /// Read quarantined objects again, even unchanged.
    pub retry_quarantined: bool,
    /// A record more than this many days from its object's key date is a reject; `None`: no
    /// bound.
    pub key_date_slack: Option<u32>,
    pub lease: LeaseOptions,
}

impl ConvertOptions {
    /// How the lines of `o` are parsed: its records' days are bounded by its key date, or, when
    /// its name has none, by the day of the first record in `head` (the start of its content).
    fn parse_options(&self, o: &SourceObject, head: &[u8]) -> ParseOptions {
        let key_day = crate::object_source::key_day(&o.name);
        let key_days = self.key_date_slack.and_then(|slack| {
            let day = key_day.or_else(|| crate::batch_builder::first_record_day(head))?;
            Some((day.saturating_sub(slack as i32), day.saturating_add(slack as i32)))
        });
        ParseOptions {
            max_line_bytes: self.max_line_bytes,
            partition_by_bucket: self.partition_by_bucket,
            key_days,
            days_from_first_record: key_day.is_none(),
        }
    }

    /// The object of `window` when the window is one object larger than a window, or standard
    /// input or a pipe: it is streamed, not fetched or read whole.
    fn streamed<'a>(&self, window: &'a [SourceObject]) -> Option<&'a SourceObject> {
        match window {
            [big] if alone(big, self.window_bytes) => Some(big),
            _ => None,
        }
    }

    /// The most decompressed bytes a parse group holds whole (a window has about four groups, and
    /// two windows are in flight); a compressed object whose content does not fit is streamed
    /// instead. Uncompressed objects always fit: a group holds at most a window of them.
    /// An object whose content is over `--max-object-bytes` does not fit either: it is streamed,
    /// where the cap cuts it.
    fn whole_cap(&self) -> usize {
        usize::try_from(self.window_bytes.saturating_mul(4).min(self.max_object_bytes)).unwrap_or(usize::MAX)
    }
}

/// Whether `o` is streamed in a window of its own.
fn alone(o: &SourceObject, window_bytes: u64) -> bool {
    o.size > window_bytes || o.is_stdin()
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            sources: Vec::new(),
            output: PathBuf::new(),
            max_reject_ratio: 0.05,
            max_line_bytes: 1 << 20,
            max_object_bytes: 64 << 30,
            chunk_bytes: 4 << 20,
            window_bytes: 8 << 20,
            threads: None,
            partition_by_bucket: false,
            store: StoreOptions::default(),
            key_dates: None,
            concurrency: 16,
            upload_part_bytes: 16 << 20,
            progress: false,
            sink: SinkOptions::default(),
            batch_bytes: 4 << 30,
            dry_run: false,
            retry_quarantined: false,
            key_date_slack: Some(31),
            lease: LeaseOptions::default(),
        }
    }
}

/// A short, stable identity of a batch: its objects' names, ETags and sizes, in order. It names
/// the batch's staging folder and files, so the same input gives the same names. Standard input
/// and pipes have no identity: a batch holding one gets a name of its own (the time and process),
/// so that it cannot take the name of an earlier batch's files.
pub fn batch_id(objects: &[SourceObject]) -> String {
    let mut h = Sha256::new();
    if objects.iter().any(SourceObject::is_stdin) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        h.update(now.as_nanos().to_le_bytes());
        h.update(std::process::id().to_le_bytes());
    }
    for o in objects {
        h.update(o.name.as_bytes());
        h.update([0]);
        h.update(o.etag.as_deref().unwrap_or("").as_bytes());
        h.update([0]);
        h.update(o.size.to_le_bytes());
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

struct ObjectOutput {
    name: String,
    /// Listed but gone when fetched: reported, not fatal.
    missing: Option<String>,
    /// Its content is more than [`ConvertOptions::whole_cap`]: not parsed here, streamed after
    /// its window is written.
    deferred: Option<SourceObject>,
    stored: u64,
    decoded: u64,
    chunks: Vec<ChunkOutput>,
}

fn process_object(o: &SourceObject, fetched: Fetched, opts: &ConvertOptions) -> Result<ObjectOutput, Error> {
    if matches!(fetched, Fetched::Missing) {
        return Ok(ObjectOutput::missing(o));
    }
    let (stored, Some(bytes)) = o.read(fetched, opts.whole_cap())? else {
        return Ok(ObjectOutput::deferred(o));
    };
    let parse = opts.parse_options(o, &bytes);
    let chunks = chunks(&bytes, opts.chunk_bytes)
        .into_par_iter()
        .map(|c| parse_chunk(&bytes[c.range], c.first_line, &o.name, parse))
        .collect();
    Ok(ObjectOutput {
        name: o.name.clone(),
        missing: None,
        deferred: None,
        stored,
        decoded: bytes.len() as u64,
        chunks,
    })
}

impl ObjectOutput {
    fn empty(o: &SourceObject) -> Self {
        ObjectOutput { name: o.name.clone(), missing: None, deferred: None, stored: 0, decoded: 0, chunks: Vec::new() }
    }

    fn missing(o: &SourceObject) -> Self {
        ObjectOutput { missing: Some(o.name.clone()), ..ObjectOutput::empty(o) }
    }

    fn deferred(o: &SourceObject) -> Self {
        ObjectOutput { deferred: Some(o.clone()), ..ObjectOutput::empty(o) }
    }
}

/// What a group of objects produced: each object's counts, and the group's batches.
struct GroupOutput {
    objects: Vec<ObjectOutput>,
    batches: ChunkOutput,
}

/// Stored bytes of consecutive small objects parsed together on one thread. A window holds 4 of
/// them: enough to keep 2 cores busy, and few enough that each makes batches of a few thousand
/// rows (16 groups of 512 KiB cost 0.15-0.3 s more CPU per GiB, see docs/performance.md).
fn group_bytes(opts: &ConvertOptions) -> u64 {
    (opts.window_bytes / 4).clamp(1, opts.chunk_bytes as u64)
}

/// Cuts a window of objects of these sizes into groups of consecutive objects: an object of at
/// least `target` bytes alone (its chunks are parsed in parallel), smaller ones together until a
/// group reaches `target`.
fn groups(sizes: &[u64], target: u64) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let (mut start, mut size) = (0, 0u64);
    for (i, &o) in sizes.iter().enumerate() {
        if o >= target && i > start {
            groups.push(start..i);
            (start, size) = (i, 0);
        }
        size += o;
        if size >= target {
            groups.push(start..i + 1);
            (start, size) = (i + 1, 0);
        }
    }
    if start < sizes.len() {
        groups.push(start..sizes.len());
    }
    groups
}

/// Parses a group of objects. A lone object is cut into chunks parsed in parallel; several small
/// ones are parsed one after the other into the same builders, in order.
fn process_group(objects: &[SourceObject], fetched: Vec<Fetched>, opts: &ConvertOptions) -> Result<GroupOutput, Error> {
    if let ([o], [_]) = (objects, fetched.as_slice()) {
        let f = fetched.into_iter().next().expect("one fetched");
        return Ok(GroupOutput { objects: vec![process_object(o, f, opts)?], batches: ChunkOutput::default() });
    }
    let mut rows = Rows::with_capacity(objects.iter().map(|o| o.size as usize).sum());
    let mut outs = Vec::with_capacity(objects.len());
    // The group's rows stay in its builders until its window is encoded: its decompressed bytes
    // are held to the cap together, not each object's.
    let mut budget = opts.whole_cap();
    for (o, f) in objects.iter().zip(fetched) {
        if matches!(f, Fetched::Missing) {
            outs.push(ObjectOutput::missing(o));
            continue;
        }
        let (stored, Some(bytes)) = o.read(f, budget)? else {
            outs.push(ObjectOutput::deferred(o));
            continue;
        };
        budget -= bytes.len();
        let counts = rows.parse(&bytes, 1, &o.name, opts.parse_options(o, &bytes));
        let decoded = bytes.len() as u64;
        let name = o.name.clone();
        outs.push(ObjectOutput { name, missing: None, deferred: None, stored, decoded, chunks: vec![counts] });
    }
    Ok(GroupOutput { objects: outs, batches: rows.finish() })
}

type Prefetch = tokio::task::JoinHandle<Result<Vec<Fetched>, Error>>;

/// Starts fetching the remote objects of `window` in the background, at most `concurrency` at once,
/// in window order, so the next window downloads while this one is parsed and encoded (two
/// windows of bytes in flight at most). `None` when there is nothing to fetch: local objects are
/// read by the parser threads, and an object larger than a window is streamed instead.
fn spawn_prefetch(
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
    let (retry, concurrency) = (opts.store.retry, opts.concurrency.max(1));
    Some(rt.spawn(async move {
        let fetches = objects.into_iter().map(move |o| async move { o.fetch(retry).await });
        futures::stream::iter(fetches).buffered(concurrency).try_collect().await
    }))
}

/// Waits for a window's fetch (or says its objects are local).
fn fetched(
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

/// Encodes parsed chunks, gathered per partition first and handed to the writer together: small
/// objects give many small batches, and one parallel encoding round each would cost more in
/// coordination than in work. (They are not joined into one batch: that copied every value once
/// more, on one thread.)
fn encode(
    chunks: impl Iterator<Item = ChunkOutput>,
    pool: &rayon::ThreadPool,
    data: &mut PartitionedWriter,
    rejects: &mut PartitionedWriter,
) -> Result<(), Error> {
    let mut by_partition: BTreeMap<PartitionKey, Vec<RecordBatch>> = BTreeMap::new();
    let mut reject_batches = Vec::new();
    for c in chunks {
        for (key, batch) in c.partitions {
            by_partition.entry(key).or_default().push(batch);
        }
        reject_batches.extend(c.rejects);
    }
    pool.install(|| -> Result<(), Error> {
        for (key, batches) in by_partition {
            data.write(&key.folder(), &batches)?;
        }
        rejects.write("", &reject_batches)?;
        Ok(())
    })
}

/// Reads from `reader` until `buf` holds `target` bytes or the stream ends (then `true`). The
/// room is made once: pipes and S3 response bodies hand over 16-64 KiB a read, and making it
/// again for each read zeroed the rest of the block every time.
fn fill(reader: &mut dyn Read, buf: &mut Vec<u8>, target: usize, o: &SourceObject) -> Result<bool, Error> {
    let mut len = buf.len();
    if len >= target {
        return Ok(false);
    }
    buf.resize(target, 0);
    while len < target {
        match reader.read(&mut buf[len..]) {
            Ok(0) => {
                buf.truncate(len);
                return Ok(true);
            }
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(len);
                return Err(o.stream_error(e));
            }
        }
    }
    Ok(false)
}

/// An object's decompressed stream, ending after `left` bytes; [`Capped::rest`] then says whether
/// the object goes on.
struct Capped<'a> {
    inner: &'a mut dyn Read,
    left: u64,
    read: u64,
}

impl Read for Capped<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        self.read += n as u64;
        Ok(n)
    }
}

impl Capped<'_> {
    /// The first bytes past the cap (up to `max`), when the cap was reached and the object goes on.
    fn rest(&mut self, max: usize, o: &SourceObject) -> Result<Vec<u8>, Error> {
        let mut rest = Vec::new();
        if self.left == 0 {
            (&mut *self.inner).take(max as u64).read_to_end(&mut rest).map_err(|e| o.stream_error(e))?;
        }
        Ok(rest)
    }
}

/// Lines in a piece of an object: its newlines, and a last line without one.
fn lines_in(piece: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', piece).count() as u64 + u64::from(piece.last().is_some_and(|&b| b != b'\n'))
}

/// Converts an object too large to hold whole (or of unknown size: standard input, a pipe, a
/// compressed object whose content is more than [`whole_cap`]): newline-aligned blocks of about a
/// window each are read, parsed in parallel and encoded in turn, line numbers running on across
/// blocks. Memory stays at a few blocks whatever the object's size or compression ratio. A line
/// longer than a block is rejected as it streams past, keeping only its head. Past
/// `--max-object-bytes` of content, the rest of the object is one reject (`too_large`).
#[allow(clippy::too_many_arguments)]
fn stream_object(
    o: &SourceObject,
    rt: Option<&tokio::runtime::Runtime>,
    pool: &rayon::ThreadPool,
    opts: &ConvertOptions,
    data: &mut PartitionedWriter,
    rejects: &mut PartitionedWriter,
    report: &mut Report,
) -> Result<(), Error> {
    let block = (opts.window_bytes as usize).max(2 * opts.max_line_bytes + 1);
    let mut raw = o.open_stream(rt, opts.store.retry)?;
    let mut reader = Capped { inner: &mut *raw, left: opts.max_object_bytes, read: 0 };
    let mut buf: Vec<u8> = Vec::with_capacity(block);
    let mut line = 1u64;
    let mut parse = opts.parse_options(o, &[]);
    let reject = |report: &mut Report, data: &mut PartitionedWriter, rejects: &mut PartitionedWriter, out| {
        tally_chunks(report, &o.name, std::slice::from_ref(&out));
        encode(std::iter::once(out), pool, data, rejects)
    };
    report.objects_read += 1;
    report.bytes_read += o.size;
    loop {
        let eof = fill(&mut reader, &mut buf, block, o)?;
        // Cut off by the cap, the object goes on: the lines before its last newline are parsed,
        // and the partial line with what follows is one reject.
        let rest = if eof { reader.rest(opts.max_line_bytes, o)? } else { Vec::new() };
        let cut = if !rest.is_empty() {
            memchr::memrchr(b'\n', &buf).map_or(0, |i| i + 1)
        } else if eof {
            buf.len()
        } else if let Some(i) = memchr::memrchr(b'\n', &buf) {
            i + 1
        } else {
            // A whole block without a newline: one line longer than the limit. Keep its head,
            // read past the rest, and go on after its newline.
            let head = buf[..opts.max_line_bytes].to_vec();
            let (mut len, mut last) = (buf.len(), buf.last().copied());
            buf.clear();
            let ended = loop {
                if fill(&mut reader, &mut buf, block, o)? && buf.is_empty() {
                    break false;
                }
                match memchr::memchr(b'\n', &buf) {
                    Some(i) => {
                        len += i;
                        last = if i > 0 { Some(buf[i - 1]) } else { last };
                        buf.drain(..=i);
                        break true;
                    }
                    None => {
                        len += buf.len();
                        last = buf.last().copied().or(last);
                        buf.clear();
                    }
                }
            };
            // As for every line, a `\r` before the line end is not part of the line.
            let len = len - usize::from(last == Some(b'\r'));
            let reason = RejectReason::TooLong { len, limit: opts.max_line_bytes };
            let out = reject_only(&o.name, line, reason, &head);
            line += 1;
            if !ended {
                let rest = reader.rest(opts.max_line_bytes, o)?;
                report.bytes_decompressed += reader.read;
                reject(report, data, rejects, out)?;
                if !rest.is_empty() {
                    let reason = RejectReason::TooLarge { limit: opts.max_object_bytes };
                    reject(report, data, rejects, reject_only(&o.name, line, reason, &rest))?;
                }
                break;
            }
            reject(report, data, rejects, out)?;
            continue;
        };
        let piece = &buf[..cut];
        if parse.key_days.is_none() {
            // An undated object's bound comes from its first record, in its first piece that has one.
            parse = opts.parse_options(o, piece);
        }
        let outs = parse_piece(piece, line, &o.name, parse, pool, opts);
        line += lines_in(piece);
        tally_chunks(report, &o.name, &outs);
        encode(outs.into_iter(), pool, data, rejects)?;
        buf.drain(..cut);
        if eof {
            report.bytes_decompressed += reader.read;
            if !rest.is_empty() {
                let mut head = std::mem::take(&mut buf);
                head.extend_from_slice(&rest);
                head.truncate(opts.max_line_bytes);
                let reason = RejectReason::TooLarge { limit: opts.max_object_bytes };
                reject(report, data, rejects, reject_only(&o.name, line, reason, &head))?;
            }
            break;
        }
    }
    if o.is_stdin() {
        // Standard input and pipes have no size until read: their bytes are counted as read.
        report.bytes_read += reader.read;
    }
    Ok(())
}

/// Parses a newline-aligned piece of a streamed object, its chunks in parallel.
fn parse_piece(
    piece: &[u8],
    line: u64,
    name: &str,
    parse: ParseOptions,
    pool: &rayon::ThreadPool,
    opts: &ConvertOptions,
) -> Vec<ChunkOutput> {
    pool.install(|| {
        chunks(piece, opts.chunk_bytes)
            .into_par_iter()
            .map(|c| parse_chunk(&piece[c.range], line + c.first_line - 1, name, parse))
            .collect()
    })
}

/// A progress bar of bytes and objects, with rate and ETA, when asked for (stderr is a terminal);
/// otherwise one that draws nothing. Its total grows as the listing goes on.
fn progress_bar(show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}")
            .expect("the template is valid"),
    );
    bar
}

/// New objects drawn from the listing as the batches need them, each checked against the ledger
/// and against the names this run already took (a source named twice is read once).
struct Feed<'a> {
    listing: &'a mut Listing,
    /// Objects drawn and found new, to be drawn again first: those of a batch tried again
    /// without an object that could not be read.
    replay: std::collections::VecDeque<SourceObject>,
    /// An object drawn and found new but not yet placed in a window.
    peeked: Option<SourceObject>,
    retry_quarantined: bool,
    seen: std::collections::HashSet<String>,
    skipped: u64,
    changed: Vec<String>,
}

impl<'a> Feed<'a> {
    fn new(listing: &'a mut Listing) -> Self {
        let (replay, seen) = (Default::default(), Default::default());
        Feed { listing, replay, peeked: None, retry_quarantined: false, seen, skipped: 0, changed: Vec::new() }
    }

    /// The next object `ledger` does not hold, waiting for the listing if need be.
    fn next_new(&mut self, ledger: &Ledger) -> Result<Option<SourceObject>, Error> {
        if let Some(o) = self.replay.pop_front().or_else(|| self.peeked.take()) {
            return Ok(Some(o));
        }
        while let Some(o) = self.listing.next_object()? {
            if !o.is_stdin() && !self.seen.insert(o.name.clone()) {
                self.skipped += 1;
                continue;
            }
            match ledger.classify(&o, self.retry_quarantined) {
                Verdict::New => return Ok(Some(o)),
                Verdict::Skip => self.skipped += 1,
                Verdict::Changed => {
                    tracing::warn!(object = o.name, "changed since it was converted; not converted again");
                    self.changed.push(o.name);
                }
            }
        }
        Ok(None)
    }
}

/// The windows of one batch: consecutive new objects of about `window_bytes` stored bytes each (an
/// object larger than that is a window of its own, and is streamed), until the batch holds about
/// `batch_bytes`.
struct BatchWindows<'f, 'a> {
    feed: &'f mut Feed<'a>,
    ledger: &'f Ledger,
    window_bytes: u64,
    batch_bytes: u64,
    taken: Vec<SourceObject>,
    taken_bytes: u64,
}

impl BatchWindows<'_, '_> {
    fn next_window(&mut self) -> Result<Option<Vec<SourceObject>>, Error> {
        if self.taken_bytes >= self.batch_bytes {
            return Ok(None);
        }
        let (mut window, mut size) = (Vec::new(), 0u64);
        while let Some(o) = self.feed.next_new(self.ledger)? {
            let alone = alone(&o, self.window_bytes);
            if alone && !window.is_empty() {
                self.feed.peeked = Some(o);
                break;
            }
            size += o.size;
            window.push(o);
            if alone || size >= self.window_bytes || self.taken_bytes + size >= self.batch_bytes {
                break;
            }
        }
        if window.is_empty() {
            return Ok(None);
        }
        self.taken.extend(window.iter().cloned());
        self.taken_bytes += size;
        Ok(Some(window))
    }
}

fn tally(report: &mut Report, o: &ObjectOutput) {
    if o.deferred.is_some() {
        return;
    }
    if let Some(name) = &o.missing {
        report.objects_missing.push(name.clone());
        return;
    }
    report.objects_read += 1;
    report.bytes_read += o.stored;
    report.bytes_decompressed += o.decoded;
    tally_chunks(report, &o.name, &o.chunks);
}

fn tally_chunks(report: &mut Report, object: &str, chunks: &[ChunkOutput]) {
    let counts = report.per_object.entry(object.to_string()).or_default();
    for c in chunks {
        counts.lines += c.lines;
        counts.rows += c.rows;
        counts.rejects += c.rejected();
    }
    for c in chunks {
        report.lines_read += c.lines;
        report.rows_written += c.rows;
        report.lines_rejected += c.rejected();
        report.lines_lossy_utf8 += c.lossy_utf8;
        for (code, n) in &c.reject_codes {
            *report.reject_reasons.entry(code.to_string()).or_default() += n;
        }
        for s in &c.samples {
            if report.reject_samples.len() < MAX_SAMPLES {
                report.reject_samples.push(s.clone());
            }
        }
    }
}

/// Empties the local folder a batch's files are written in.
fn prepare_output(dest: &Destination, local: &Path) -> Result<(), Error> {
    dest.prepare()?;
    if local.exists() {
        std::fs::remove_dir_all(local).map_err(|e| Error::write(local, e))?;
    }
    std::fs::create_dir_all(local).map_err(|e| Error::write(local, e))
}

type Written = (Vec<WrittenFile>, Vec<WrittenFile>);

/// Parses the objects of a batch's windows and writes its files in `staging`; returns the data
/// and rejects files written. While a window is converted, the next one is drawn from the listing
/// and its remote objects download.
fn parse_and_write(
    windows: &mut BatchWindows,
    rt: Option<&tokio::runtime::Runtime>,
    opts: &ConvertOptions,
    staging: &Path,
    run: &str,
    report: &mut Report,
    progress: &indicatif::ProgressBar,
) -> Result<Written, Error> {
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = opts.threads {
        pool = pool.num_threads(n.max(1));
    }
    let pool = pool.build().map_err(|e| Error::Usage(format!("cannot start parser threads: {e}")))?;
    let mut data = PartitionedWriter::new(staging.join("data"), run.to_string(), arrow_schema(), opts.sink.clone())?;
    let mut rejects =
        PartitionedWriter::new(staging.join("rejects"), run.to_string(), reject_schema(), opts.sink.clone())?;

    // A window is parsed while the one before it is encoded, both on every core: rayon's workers
    // take tasks from either, so neither phase's last straggling task leaves a core idle.
    // Windows are encoded in order, so rows keep their input order. The loop itself runs on one of
    // the pool's workers: run from another thread, each window's join was handed to a sleeping
    // worker and back, both cores idle meanwhile.
    pool.install(|| -> Result<(), Error> {
        let mut parsed: Option<Parsed> = None;
        let mut next = windows.next_window()?;
        let mut pending = next.as_deref().and_then(|w| spawn_prefetch(w, rt, opts));
        while let Some(window) = next.take() {
            let this = pending.take();
            next = windows.next_window()?;
            pending = next.as_deref().and_then(|w| spawn_prefetch(w, rt, opts));
            progress.set_length(windows.feed.listing.bytes);
            if let Some(big) = opts.streamed(&window) {
                if let Some(p) = parsed.take() {
                    write_parsed(p, &pool, &mut data, &mut rejects, report, progress)?;
                }
                let started = Instant::now();
                stream_object(big, rt, &pool, opts, &mut data, &mut rejects, report)?;
                report.stage_seconds.read_parse += started.elapsed().as_secs_f64();
                progress.inc(big.size);
                continue;
            }
            let started = Instant::now();
            let fetched = fetched(&window, rt, this)?;
            if window.iter().any(SourceObject::is_remote) {
                // Time spent waiting for downloads, beyond what overlapped with the previous window.
                report.fetch.seconds += started.elapsed().as_secs_f64();
                for f in &fetched {
                    if let Fetched::Bytes(b) = f {
                        report.fetch.objects += 1;
                        report.fetch.bytes += b.len() as u64;
                    }
                }
            }
            let mut fetched = fetched.into_iter();
            let sizes: Vec<u64> = window.iter().map(|o| o.size).collect();
            let work: Vec<_> = groups(&sizes, group_bytes(opts))
                .into_iter()
                .map(|g| (&window[g.clone()], fetched.by_ref().take(g.len()).collect::<Vec<_>>()))
                .collect();
            let parse = || {
                let outs: Result<Vec<GroupOutput>, Error> =
                    work.into_par_iter().map(|(objects, f)| process_group(objects, f, opts)).collect();
                (outs, started.elapsed().as_secs_f64())
            };
            let previous = parsed.take();
            let ((outs, parse_seconds), written) =
                rayon::join(parse, || previous.map(|p| encode_parsed(p, &pool, &mut data, &mut rejects)));
            report.stage_seconds.read_parse += parse_seconds;
            if let Some(w) = written {
                finish_window(w?, report, progress);
            }
            let outs = outs?;
            for o in outs.iter().flat_map(|g| &g.objects) {
                tally(report, o);
            }
            let deferred: Vec<SourceObject> =
                outs.iter().flat_map(|g| &g.objects).filter_map(|o| o.deferred.clone()).collect();
            parsed = Some(Parsed { objects: window.len(), bytes: sizes.iter().sum(), outs });
            if !deferred.is_empty() {
                // Their content was too large to hold whole: streamed after the rest of the
                // window is written.
                if let Some(p) = parsed.take() {
                    write_parsed(p, &pool, &mut data, &mut rejects, report, progress)?;
                }
                for o in &deferred {
                    let started = Instant::now();
                    stream_object(o, rt, &pool, opts, &mut data, &mut rejects, report)?;
                    report.stage_seconds.read_parse += started.elapsed().as_secs_f64();
                }
            }
        }
        if let Some(p) = parsed.take() {
            write_parsed(p, &pool, &mut data, &mut rejects, report, progress)?;
        }
        Ok(())
    })?;
    let started = Instant::now();
    let written = pool.install(|| match rayon::join(|| data.finish(), || rejects.finish()) {
        (Ok(data), Ok(rejects)) => Ok((data, rejects)),
        (Err(e), _) | (_, Err(e)) => Err(e),
    });
    report.stage_seconds.encode += started.elapsed().as_secs_f64();
    written
}

/// A window parsed and counted, waiting to be encoded.
struct Parsed {
    objects: usize,
    bytes: u64,
    outs: Vec<GroupOutput>,
}

/// A window encoded: what the report and progress bar learn of it.
struct Encoded {
    objects: usize,
    bytes: u64,
    seconds: f64,
}

fn encode_parsed(
    p: Parsed,
    pool: &rayon::ThreadPool,
    data: &mut PartitionedWriter,
    rejects: &mut PartitionedWriter,
) -> Result<Encoded, Error> {
    let started = Instant::now();
    let chunks = p.outs.into_iter().flat_map(|g| g.objects.into_iter().flat_map(|o| o.chunks).chain([g.batches]));
    encode(chunks, pool, data, rejects)?;
    Ok(Encoded { objects: p.objects, bytes: p.bytes, seconds: started.elapsed().as_secs_f64() })
}

fn finish_window(w: Encoded, report: &mut Report, progress: &indicatif::ProgressBar) {
    report.stage_seconds.encode += w.seconds;
    progress.inc(w.bytes);
    progress.set_message(format!("{} objects", report.objects_read));
    tracing::debug!(objects = w.objects, rows = report.rows_written, "window written");
}

/// Encodes a parsed window on its own (the last one, or one before a streamed object).
fn write_parsed(
    p: Parsed,
    pool: &rayon::ThreadPool,
    data: &mut PartitionedWriter,
    rejects: &mut PartitionedWriter,
    report: &mut Report,
    progress: &indicatif::ProgressBar,
) -> Result<(), Error> {
    let w = encode_parsed(p, pool, data, rejects)?;
    finish_window(w, report, progress);
    Ok(())
}

/// Gives the files written under a provisional name their batch's name (`part-<batch>-N`), and,
/// for a local DEST, moves the folder to the batch's staging folder.
fn rename_batch(
    dest: &Destination,
    local: &Path,
    provisional: &str,
    batch: &str,
    files: Vec<WrittenFile>,
) -> Result<(PathBuf, Vec<WrittenFile>), Error> {
    let (from, to) = (format!("part-{provisional}-"), format!("part-{batch}-"));
    let mut renamed = Vec::with_capacity(files.len());
    for f in files {
        let path = f.path.replacen(&from, &to, 1);
        std::fs::rename(local.join(&f.path), local.join(&path)).map_err(|e| Error::write(local.join(&path), e))?;
        renamed.push(WrittenFile { path, ..f });
    }
    let target = if dest.is_remote() { local.to_path_buf() } else { dest.local_staging(batch) };
    if target != local {
        if target.exists() {
            std::fs::remove_dir_all(&target).map_err(|e| Error::write(&target, e))?;
        }
        std::fs::rename(local, &target).map_err(|e| Error::write(&target, e))?;
    }
    Ok((target, renamed))
}

/// Finishes what an interrupted run left in the staging area: a batch with a commit record is
/// published (its files are committed rows), any other is discarded (its objects are not in the
/// ledger, so they are converted again). Runs only under the lease.
fn recover(dest: &Destination, ledger: &mut Ledger, report: &mut Report) -> Result<(), Error> {
    for batch in dest.staged_batches()? {
        if let Some(rec) = ledger.commit_of(&batch) {
            let (seq, paths): (u64, Vec<String>) = (rec.seq, rec.files.iter().map(|f| f.path.clone()).collect());
            dest.publish(&batch, &paths)?;
            ledger.mark_published(dest, seq)?;
            tracing::info!(batch, seq, "finished publishing an interrupted commit");
            report.batches_finished.push(batch.clone());
        } else {
            tracing::info!(batch, "discarded an uncommitted batch");
            report.batches_discarded.push(batch.clone());
        }
        dest.discard_staged(&batch)?;
    }
    Ok(())
}

/// The files of `rec` that are not in the table.
fn missing_files(dest: &Destination, rec: &CommitRecord) -> Result<Vec<String>, Error> {
    let mut missing = Vec::new();
    for f in &rec.files {
        if !dest.exists(&f.path)? {
            missing.push(f.path.clone());
        }
    }
    Ok(missing)
}

/// Whether some commit not yet known to be published lacks a file in the table.
fn needs_repair(dest: &Destination, ledger: &Ledger) -> Result<bool, Error> {
    for rec in ledger.unverified() {
        if !missing_files(dest, rec)?.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The error for a committed batch whose rows cannot be put back into the table.
fn lost(dest: &Destination, rec: &CommitRecord, missing: &[String], why: String) -> Error {
    let mut files = missing.iter().take(5).map(|p| format!("{}/{p}", dest.display())).collect::<Vec<_>>().join(", ");
    if missing.len() > 5 {
        files.push_str(&format!(" and {} more", missing.len() - 5));
    }
    Error::CommittedFilesMissing(Box::new(crate::error::LostFiles {
        dest: dest.display(),
        seq: rec.seq,
        batch: rec.batch.clone(),
        missing: missing.len(),
        total: rec.files.len(),
        files,
        why,
        record: format!("{}/{}/{:020}.json", dest.display(), crate::ledger::COMMITS, rec.seq),
    }))
}

/// Checks, under the lease and after [`recover`], that every commit not yet known to be published
/// has all its files in the table, so a run never says it converted what the table does not hold.
/// A commit whose files all are is marked published. One whose files reached neither the table nor
/// the staging area (the staging was removed after the commit point, or discarded by a run that
/// took over while the commit request was stalled) is converted again from its recorded objects,
/// into the same files, which are published: nothing else can bring its rows back. One with only
/// some files in the table stops the run with an error naming the others: converting its objects
/// again would repeat the rows that did arrive.
fn repair(run: &Run, ledger: &mut Ledger, report: &mut Report, progress: &indicatif::ProgressBar) -> Result<(), Error> {
    let unverified: Vec<CommitRecord> = ledger.unverified().cloned().collect();
    for rec in unverified {
        let missing = missing_files(run.dest, &rec)?;
        if missing.len() == rec.files.len() && !missing.is_empty() {
            recreate(run, &rec, &missing, report, progress)?;
            tracing::warn!(seq = rec.seq, batch = rec.batch, "a committed batch's files were lost; converted again");
            report.batches_recreated.push(rec.batch.clone());
        } else if !missing.is_empty() {
            let why = "the others are in the table, so converting its objects again would repeat their rows";
            return Err(lost(run.dest, &rec, &missing, why.into()));
        }
        ledger.mark_published(run.dest, rec.seq)?;
    }
    Ok(())
}

/// Converts the objects of committed batch `rec` again, into its staging area under its own name,
/// and publishes the files when they are the ones its record names (same paths, same rows).
fn recreate(
    run: &Run,
    rec: &CommitRecord,
    missing: &[String],
    report: &mut Report,
    progress: &indicatif::ProgressBar,
) -> Result<(), Error> {
    let dest = run.dest;
    let fail = |why: String| lost(dest, rec, missing, why);
    // Quarantined objects gave no lines to the batch's files.
    let entries: Vec<&ObjectEntry> = rec.objects.iter().filter(|o| o.quarantined.is_none()).collect();
    if entries.is_empty() {
        return Err(fail("its input was standard input, which cannot be read again".into()));
    }
    let names: Vec<String> = entries.iter().map(|o| o.name.clone()).collect();
    let found = object_source::find_recorded(&names, &run.opts.store, run.rt)?;
    let mut objects = Vec::with_capacity(found.len());
    for (entry, now) in entries.into_iter().zip(found) {
        match now {
            None => {
                return Err(fail(format!("its log object {} is gone, so it cannot be converted again", entry.name)));
            }
            Some(o) if o.size != entry.size || (entry.etag.is_some() && o.etag != entry.etag) => {
                return Err(fail(format!("its log object {} changed since it was converted", entry.name)));
            }
            Some(o) => objects.push(o),
        }
    }
    let mut listing = Listing::of(objects);
    let mut feed = Feed::new(&mut listing);
    let opts = ConvertOptions { batch_bytes: u64::MAX, ..run.opts.clone() };
    let again = Run { opts: &opts, rt: run.rt, dest, lease: run.lease, owner: run.owner.clone() };
    let staged = stage_batch(&again, &mut feed, &Ledger::default(), Some(&rec.batch), report, progress)?
        .ok_or_else(|| fail("its log objects gave no lines when converted again".into()))?;
    let shape = |files: &[WrittenFile]| {
        let mut v: Vec<(String, u64)> = files.iter().map(|f| (f.path.clone(), f.rows)).collect();
        v.sort();
        v
    };
    if shape(&staged.files) != shape(&rec.files) {
        dest.discard_staged(&rec.batch)?;
        return Err(fail(
            "converting its objects again gave other files (run with the options of the run that committed it: \
             --partition-by, --target-file-size, --row-group-rows)"
                .into(),
        ));
    }
    let paths: Vec<String> = rec.files.iter().map(|f| f.path.clone()).collect();
    dest.publish(&rec.batch, &paths)?;
    dest.discard_staged(&rec.batch)
}

/// What a batch needs besides its objects.
struct Run<'a> {
    opts: &'a ConvertOptions,
    rt: Option<&'a tokio::runtime::Runtime>,
    dest: &'a Destination,
    lease: &'a Lease,
    owner: String,
}

/// A batch whose files are staged in DEST, not yet committed.
struct StagedBatch {
    batch: String,
    objects: Vec<SourceObject>,
    /// Objects of the batch that could not be read, and why: recorded, none of their lines written.
    quarantined: Vec<(SourceObject, String)>,
    files: Vec<WrittenFile>,
    /// When staging began (the commit stage's time runs from there).
    started: Instant,
}

/// Draws new objects (those `ledger` does not hold) from the listing, parses them and writes their
/// files locally (under a provisional name, since the batch's name comes from its objects unless
/// `name` gives it), stages them in DEST and checks the lease. A failure leaves nothing staged and
/// the table as it was. `None` when there was nothing left to convert.
fn stage_batch(
    run: &Run,
    feed: &mut Feed,
    ledger: &Ledger,
    name: Option<&str>,
    report: &mut Report,
    progress: &indicatif::ProgressBar,
) -> Result<Option<StagedBatch>, Error> {
    let (opts, dest) = (run.opts, run.dest);
    let provisional = format!("new-{}-{}", std::process::id(), report.commits.len() + report.batches_recreated.len());
    let mut local = dest.local_staging(&provisional);
    let mut staged_as: Option<String> = None;
    // Removes what this batch wrote: its local folder (for a local DEST, its staging folder) and
    // what it uploaded to an S3 DEST's staging area.
    let discard = |local: &Path, staged_as: &Option<String>| {
        let _ = std::fs::remove_dir_all(local);
        if let Some(batch) = staged_as {
            let _ = dest.discard_staged(batch);
        }
        if let Some(root) = dest.local_root() {
            let _ = std::fs::remove_dir(root.join(crate::destination::STAGING));
        }
    };
    let (lines_before, rejected_before) = (report.lines_read, report.lines_rejected);
    // An object that cannot be read (corrupt, unreadable) is quarantined, and the batch is made
    // again without it from the start: its other objects are drawn again, the report goes back
    // to how it stood, so no line of the bad object reaches the batch's files.
    let mut quarantined: Vec<(SourceObject, String)> = Vec::new();
    let (objects, data, rejects) = loop {
        let saved = counts_without_objects(report);
        let mut windows = BatchWindows {
            feed: &mut *feed,
            ledger,
            window_bytes: opts.window_bytes,
            batch_bytes: opts.batch_bytes.max(1),
            taken: Vec::new(),
            taken_bytes: 0,
        };
        let written = prepare_output(dest, &local)
            .and_then(|()| parse_and_write(&mut windows, run.rt, opts, &local, &provisional, report, progress));
        let objects = std::mem::take(&mut windows.taken);
        match written {
            Ok((data, rejects)) => break (objects, data, rejects),
            Err(e) => {
                discard(&local, &staged_as);
                let Some(bad) = unreadable_object(&e, &objects) else { return Err(e) };
                tracing::warn!(object = objects[bad].name, error = %e, "quarantined: cannot be read");
                let per_object = std::mem::take(&mut report.per_object);
                *report = Report { per_object, ..saved };
                let mut again: std::collections::VecDeque<SourceObject> = Default::default();
                for (i, o) in objects.into_iter().enumerate() {
                    report.per_object.remove(&o.name);
                    if i == bad {
                        quarantined.push((o, e.to_string()));
                    } else {
                        again.push_back(o);
                    }
                }
                again.extend(feed.peeked.take());
                again.extend(std::mem::take(&mut feed.replay));
                feed.replay = again;
            }
        }
    };
    if objects.is_empty() && quarantined.is_empty() {
        discard(&local, &staged_as);
        return Ok(None);
    }
    let all: Vec<SourceObject> = objects.iter().chain(quarantined.iter().map(|(o, _)| o)).cloned().collect();
    let batch = name.map_or_else(|| batch_id(&all), str::to_string);
    let (lines, rejected) = (report.lines_read - lines_before, report.lines_rejected - rejected_before);
    let ratio = if lines == 0 { 0.0 } else { rejected as f64 / lines as f64 };
    if ratio > opts.max_reject_ratio {
        discard(&local, &staged_as);
        let first = report
            .reject_samples
            .first()
            .map_or(String::new(), |s| format!("{}:{}: {}", s.source_object, s.source_line, s.reason));
        return Err(Error::TooManyRejects {
            rejected,
            lines,
            ratio,
            max: opts.max_reject_ratio,
            first,
            report: Box::new(std::mem::take(report)),
        });
    }
    let files: Vec<WrittenFile> =
        with_prefix("data", data).into_iter().chain(with_prefix("rejects", rejects)).collect();
    let started = Instant::now();
    let staged = rename_batch(dest, &local, &provisional, &batch, files).and_then(|(moved, files)| {
        local = moved;
        staged_as = Some(batch.clone());
        dest.stage(&batch, &local, &files, opts.upload_part_bytes)?;
        run.lease.check()?;
        Ok(files)
    });
    let files = match staged {
        Ok(f) => f,
        Err(e) => {
            discard(&local, &staged_as);
            return Err(e);
        }
    };
    dest.remove_local_staging(&local);
    crate::crash_point::reached("staged");
    Ok(Some(StagedBatch { batch, objects, quarantined, files, started }))
}

/// The report without its per-object counts (which may be large, and which a batch tried again
/// only needs to drop its own objects from).
fn counts_without_objects(report: &mut Report) -> Report {
    let per_object = std::mem::take(&mut report.per_object);
    let saved = report.clone();
    report.per_object = per_object;
    saved
}

/// Which of `objects` an error is the fault of, when it is that object's own and will not go
/// away by trying again: corrupt compressed data, or a local file that cannot be read. An S3
/// store's refusal is not quarantined: it is more often the bucket's (a policy, a key) than one
/// object's, and quarantining every object of a bucket would make later runs skip them all; it
/// stops the run instead, as errors that retrying may cure do. Standard input and pipes cannot be
/// quarantined: they are read once.
fn unreadable_object(e: &Error, objects: &[SourceObject]) -> Option<usize> {
    let name = match e {
        Error::Decompress { path, .. } | Error::Read { path, .. } => path,
        _ => return None,
    };
    objects.iter().position(|o| &o.name == name && !o.is_stdin())
}

/// Converts one batch and commits it: stage its files ([`stage_batch`]), create the commit record
/// (the commit point), publish the files into the table, record that they are there, and empty the
/// staging area. A failure before the commit record leaves the table as it was. Returns false when
/// there was nothing left to convert.
fn convert_batch(
    run: &Run,
    feed: &mut Feed,
    ledger: &mut Ledger,
    report: &mut Report,
    progress: &indicatif::ProgressBar,
) -> Result<bool, Error> {
    let dest = run.dest;
    let Some(StagedBatch { batch, objects, quarantined, files, started }) =
        stage_batch(run, feed, ledger, None, report, progress)?
    else {
        return Ok(false);
    };
    let missing: std::collections::HashSet<&str> = report.objects_missing.iter().map(String::as_str).collect();
    let entries = objects
        .iter()
        .filter(|o| !o.is_stdin() && !missing.contains(o.name.as_str()))
        .map(|o| {
            let c = report.per_object.get(&o.name).copied().unwrap_or_default();
            ObjectEntry {
                name: o.name.clone(),
                etag: o.etag.clone(),
                size: o.size,
                lines: c.lines,
                rows: c.rows,
                rejects: c.rejects,
                commit: ledger.last_seq + 1,
                quarantined: None,
            }
        })
        .chain(quarantined.iter().map(|(o, reason)| ObjectEntry {
            name: o.name.clone(),
            etag: o.etag.clone(),
            size: o.size,
            lines: 0,
            rows: 0,
            rejects: 0,
            commit: ledger.last_seq + 1,
            quarantined: Some(reason.clone()),
        }))
        .collect();
    let rec = CommitRecord {
        seq: ledger.last_seq + 1,
        batch: batch.clone(),
        committed_at: crate::ledger::now_rfc3339(),
        owner: run.owner.clone(),
        objects: entries,
        files: files.clone(),
    };
    let seq = rec.seq;
    if !ledger.commit(dest, rec)? {
        // Another run committed this number: it holds the lease now. Its staging is left alone;
        // the lease holder finishes or discards it.
        return Err(Error::LeaseLost { dest: dest.display() });
    }
    tracing::info!(seq, batch, files = files.len(), "committed");
    report.commits.push(seq);
    crate::crash_point::reached("committed");
    // Past the commit point the batch is committed whatever happens: a failure here leaves its
    // files for the next run to publish, which a scheduler gets by retrying.
    let paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
    let unpublished = |cause| Error::Unpublished { dest: dest.display(), seq, cause: Box::new(cause) };
    dest.publish(&batch, &paths).map_err(unpublished)?;
    crate::crash_point::reached("published");
    ledger.mark_published(dest, seq).map_err(unpublished)?;
    dest.discard_staged(&batch).map_err(unpublished)?;
    report.stage_seconds.commit += started.elapsed().as_secs_f64();
    report
        .objects_quarantined
        .extend(quarantined.into_iter().map(|(o, reason)| crate::report::Quarantined { name: o.name, reason }));
    for f in files {
        if f.path.starts_with("data/") {
            report.files_written.push(f);
        } else {
            report.reject_files_written.push(f);
        }
    }
    Ok(true)
}

fn runtime_if_needed(opts: &ConvertOptions) -> Result<Option<tokio::runtime::Runtime>, Error> {
    let remote =
        opts.output.to_string_lossy().starts_with("s3://") || opts.sources.iter().any(|s| s.starts_with("s3://"));
    remote.then(object_source::runtime).transpose()
}

/// Runs one conversion of the objects not converted yet. On success every line of every new
/// object is a row under `DEST/data/` or a reject under `DEST/rejects/`, recorded in the ledger;
/// on error nothing under `DEST/data/` has changed beyond the batches already committed.
pub fn run(opts: &ConvertOptions) -> Result<Report, Error> {
    let (report, outcome) = run_reporting(opts);
    outcome.map(|()| report)
}

/// [`run`], with the report of what was done whatever the outcome: on an error, the batches
/// committed before it (`commits`), the lines read, and `committed: false`.
pub fn run_reporting(opts: &ConvertOptions) -> (Report, Result<(), Error>) {
    let started = Instant::now();
    let mut report = Report::default();
    let outcome = run_into(opts, &mut report);
    report.duration_s = started.elapsed().as_secs_f64();
    match outcome {
        // The reject gate took the report as it stood; it gains the listing figures too.
        Err(Error::TooManyRejects { rejected, lines, ratio, max, first, report: partial }) => {
            let report =
                Report { listing: report.listing, duration_s: report.duration_s, output: report.output, ..*partial };
            let error = Error::TooManyRejects { rejected, lines, ratio, max, first, report: Box::new(report.clone()) };
            (report, Err(error))
        }
        outcome => (report, outcome),
    }
}

fn run_into(opts: &ConvertOptions, report: &mut Report) -> Result<(), Error> {
    if !(0.0..=1.0).contains(&opts.max_reject_ratio) {
        return Err(Error::Usage(format!("--max-reject-ratio {} is not between 0 and 1", opts.max_reject_ratio)));
    }
    if opts.max_line_bytes == 0 {
        return Err(Error::Usage("--max-line-bytes must be at least 1".into()));
    }
    let rt = runtime_if_needed(opts)?;
    let mut store = opts.store.clone();
    if let Some(rt) = &rt {
        object_source::resolve_region(&mut store, rt);
    }
    let dest = Destination::parse(&opts.output.to_string_lossy(), &store, rt.as_ref())?;
    report.output = dest.display();
    let mut listing = Listing::start(&opts.sources, dest.local_root(), &store, rt.as_ref(), opts.key_dates);
    let outcome = convert_listed(opts, rt.as_ref(), &dest, &mut listing, report);
    report.listing = TransferFigures { objects: listing.objects, bytes: listing.bytes, seconds: listing.seconds };
    tracing::info!(objects = listing.objects, bytes = listing.bytes, seconds = listing.seconds, "listed");
    outcome
}

/// Converts the new objects as the listing hands them over.
fn convert_listed(
    opts: &ConvertOptions,
    rt: Option<&tokio::runtime::Runtime>,
    dest: &Destination,
    listing: &mut Listing,
    report: &mut Report,
) -> Result<(), Error> {
    // Look for new objects without the lease first: a run with nothing to do writes nothing at all.
    let state_started = Instant::now();
    let ledger = Ledger::load(dest)?;
    report.stage_seconds.state = state_started.elapsed().as_secs_f64();
    let mut feed = Feed::new(listing);
    feed.retry_quarantined = opts.retry_quarantined;
    let finish = |feed: &Feed, report: &mut Report| {
        report.objects_skipped = feed.skipped;
        report.objects_changed = feed.changed.clone();
    };
    if opts.dry_run {
        report.dry_run = true;
        while let Some(o) = feed.next_new(&ledger)? {
            report.would_convert.push(PlannedObject { name: o.name.clone(), size: o.size });
        }
        finish(&feed, report);
        return Ok(());
    }
    let first = feed.next_new(&ledger)?;
    if first.is_none() && dest.staged_batches()?.is_empty() && !needs_repair(dest, &ledger)? {
        finish(&feed, report);
        report.nothing_new = true;
        report.committed = true;
        return Ok(());
    }

    let lease = lease::acquire(dest, opts.lease)?;
    dest.prune_dead_local_staging();
    // Under the lease the ledger is read again: a run that just finished may have converted some.
    let state_started = Instant::now();
    let mut ledger = Ledger::load(dest)?;
    recover(dest, &mut ledger, report)?;
    report.stage_seconds.state += state_started.elapsed().as_secs_f64();
    let retries_before = object_source::RETRIES.load(std::sync::atomic::Ordering::Relaxed);
    let run = Run { opts, rt, dest, lease: &lease, owner: lease.owner().to_string() };
    let progress = progress_bar(opts.progress);
    repair(&run, &mut ledger, report, &progress)?;
    match first {
        Some(o) if ledger.classify(&o, opts.retry_quarantined) == Verdict::New => feed.peeked = Some(o),
        Some(_) => feed.skipped += 1,
        None => {}
    }
    let mut outcome = Ok(true);
    while let Ok(true) = outcome {
        outcome = convert_batch(&run, &mut feed, &mut ledger, report, &progress);
    }
    progress.finish_and_clear();
    finish(&feed, report);
    report.retries = object_source::RETRIES.load(std::sync::atomic::Ordering::Relaxed) - retries_before;
    outcome?;
    if dest.staged_batches()?.is_empty() {
        ledger.maybe_checkpoint(dest)?;
    }
    lease.release();
    report.committed = true;
    match report.objects_quarantined.first() {
        Some(q) => Err(Error::Quarantined { count: report.objects_quarantined.len(), first: q.name.clone() }),
        None => Ok(()),
    }
}

fn with_prefix(prefix: &str, files: Vec<WrittenFile>) -> Vec<WrittenFile> {
    files.into_iter().map(|f| WrittenFile { path: format!("{prefix}/{}", f.path), ..f }).collect()
}

#[cfg(test)]
mod tests {
    use super::groups;

    #[test]
    fn groups_cover_the_window_in_order_and_a_large_object_is_alone() {
        assert_eq!(groups(&[], 10), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(groups(&[3, 3, 3, 3, 3], 10), vec![0..4, 4..5]);
        assert_eq!(groups(&[3, 12, 3, 10, 2, 2], 10), vec![0..1, 1..2, 2..3, 3..4, 4..6]);
        assert_eq!(groups(&[0, 0, 0], 10), vec![0..3]);
        assert_eq!(groups(&[9, 1, 9], 10), vec![0..2, 2..3]);
    }
}
