//! The window loop of a batch: draw a window, fetch it, parse it while the previous one is
//! encoded, and write the encoded row groups to the batch's partitioned files.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use arrow_array::RecordBatch;

use crate::access_log::line::RejectReason;
use crate::commit::destination::Destination;
use crate::error::Error;
use crate::parquet_sink::{PartitionedWriter, WrittenFile};
use crate::pipeline::feed::BatchWindows;
use crate::pipeline::options::ConvertOptions;
use crate::pipeline::parse::GroupOutput;
use crate::pipeline::parse::parse_in_chunks;
use crate::pipeline::parse::parse_window;
use crate::pipeline::parse_ahead::ParseAhead;
use crate::pipeline::prefetch::FetchAhead;
use crate::pipeline::progress::Progress;
use crate::pipeline::stats::BatchTally;
use crate::rows::builder::ChunkOutput;
use crate::rows::builder::reject_only;
use crate::rows::lines::{Frame, LineFramer};
use crate::rows::partition::PartitionKey;
use crate::schema::{arrow_schema, reject_schema};
use crate::source::ranged::RangedReader;
use crate::source::read::Capped;
use crate::source::read::fill;
use crate::source::{Fetched, SourceObject};

/// Encodes parsed chunks, gathered per partition first and handed to the writer together: small
/// objects give many small batches, and one parallel encoding round each would cost more in
/// coordination than in work. (They are not joined into one batch: that copied every value once
/// more, on one thread.)
pub(crate) fn encode(
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
            data.write(Some(&key), &batches)?;
        }
        rejects.write(None, &reject_batches)?;
        Ok(())
    })
}

/// Empties the local folder a batch's files are written in.
pub(crate) fn prepare_output(dest: &Destination, local: &Path) -> Result<(), Error> {
    dest.prepare()?;
    if local.exists() {
        std::fs::remove_dir_all(local).map_err(|e| Error::write(local, e))?;
    }
    // Runs converting other units into a local DEST remove the staging root (and a unit's folder)
    // when they find it empty; one may do so between the making of a parent and of the folder in
    // it. The folder, once made, holds what is written, and is never removed by another run.
    let mut tries = 0;
    loop {
        match std::fs::create_dir_all(local) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 16 => tries += 1,
            Err(e) => return Err(Error::write(local, e)),
        }
    }
}

type Written = (Vec<WrittenFile>, Vec<WrittenFile>);

/// What a batch's windows are fetched and converted on: the run's runtime (for remote objects),
/// its parser and encoder threads, and the windows parsed ahead of the batch.
#[derive(Clone, Copy)]
pub(crate) struct Threads<'a> {
    pub(crate) rt: Option<&'a tokio::runtime::Runtime>,
    pub(crate) pool: &'a rayon::ThreadPool,
    pub(crate) ahead: &'a ParseAhead,
}

/// Parses the objects of a batch's windows and writes its files in `staging`; returns the data
/// and rejects files written. While a window is converted, the next one is drawn from the listing
/// and its remote objects download.
pub(crate) fn parse_and_write(
    windows: &mut BatchWindows,
    opts: &ConvertOptions,
    threads: &Threads<'_>,
    staging: &Path,
    batch: &str,
    progress: &Progress,
) -> Result<Written, Error> {
    let (rt, pool, parsed_ahead) = (threads.rt, threads.pool, threads.ahead);
    // Outside the pool: the windows parsed ahead of this batch, if any, are ready to take.
    parsed_ahead.settle();
    let mut data = PartitionedWriter::new(staging.join("data"), batch.to_string(), arrow_schema(), opts.sink.clone())?;
    let mut rejects =
        PartitionedWriter::new(staging.join("rejects"), batch.to_string(), reject_schema(), opts.sink.clone())?;

    // Windows are parsed on every core as tasks of their own, up to [`PARSING`] at once, while the
    // window before them is encoded: a core that is done with its share of an encoding finds a
    // parse to take up. Windows are encoded in order, so rows keep their input order. The loop
    // itself runs on one of the pool's workers: run from another thread, each window's work was
    // handed to a sleeping worker and back, both cores idle meanwhile.
    pool.install(|| {
        rayon::scope(|scope| -> Result<(), Error> {
            let mut parsing: VecDeque<Parsing> = VecDeque::new();
            let mut ahead = FetchAhead::new(opts, windows.feed.fetcher.clone());
            // Windows are drawn ahead from what the listing has handed over; only with none ahead
            // does the loop wait for the listing. Once the objects after the batch are known, they
            // start downloading for the next batch (its first windows, while this one finishes).
            // Those are as many as the listing has handed over: while that falls short of the
            // fetch-ahead budget (the next unit goes on in a listing page not taken in yet), each
            // draw looks again, and the downloads started stay started.
            let (mut spared, mut spare_complete) = (None::<usize>, false);
            let mut draw = |ahead: &mut FetchAhead, windows: &mut BatchWindows| -> Result<(), Error> {
                while ahead.wants_more() {
                    match windows.next_window(ahead.is_empty())? {
                        Some(w) => ahead.push(w, rt, opts)?,
                        None => break,
                    }
                }
                if let Some(rt) = rt
                    && !spare_complete
                    && windows.next_is_known()
                {
                    windows.feed.listing.take_in();
                    let budget = opts.fetch_ahead_bytes().0;
                    let (next, complete) = windows.likely_next(&opts.selection, budget, true);
                    let bytes: u64 = next.iter().map(|o| o.size).sum();
                    spare_complete = complete || bytes >= budget;
                    if spared.is_none_or(|n| next.len() > n) {
                        spared = Some(next.len());
                        ahead.fetcher().start_spare(next, rt, opts);
                    }
                }
                Ok(())
            };
            draw(&mut ahead, windows)?;
            let mut out = Out { pool, data: &mut data, rejects: &mut rejects, progress, rt, opts };
            while let Some(this) = ahead.pop() {
                // A safe point: what this batch wrote so far is local, and dropped with it.
                opts.stop.check()?;
                // The windows after this one are drawn from the listing and download meanwhile.
                draw(&mut ahead, windows)?;
                let (window, download) = this.split();
                windows.feed.look_ahead(windows.ledger)?;
                let (objects, bytes) = windows.feed.found;
                progress.found(objects, bytes, windows.feed.listing.is_done());
                if let Some(big) = opts.streamed(&window) {
                    while let Some(p) = parsing.pop_front() {
                        out.write(p, windows, &ahead)?;
                    }
                    out.stream(big, download.parts(), &mut windows.tally)?;
                    progress.converted(1, big.size);
                    continue;
                }
                let started = Instant::now();
                if !download.is_done() {
                    ahead.starved();
                }
                let fetched = download.wait(&window, rt)?;
                let remote = window.iter().any(SourceObject::is_remote);
                if remote {
                    // Time spent waiting for downloads, beyond what overlapped with the previous window.
                    let fetch = &mut windows.tally.fetch;
                    fetch.seconds += started.elapsed().as_secs_f64();
                    for f in &fetched {
                        if let Fetched::Bytes(b) = f {
                            fetch.objects += 1;
                            fetch.bytes += b.len() as u64;
                        }
                    }
                }
                let taken = parsed_ahead.take(&window);
                let most = if remote { 1 } else { PARSING };
                parsing.push_back(Parsing::start(scope, window, fetched, taken, opts, started));
                // The windows before this one are encoded, in order, while the later ones parse.
                while parsing.len() > most {
                    let p = parsing.pop_front().expect("more are parsing");
                    out.write(p, windows, &ahead)?;
                }
            }
            // The next batch's first windows of local files are parsed while this one finishes. A
            // local listing hands files over 1,000 at a time: one more step (a few milliseconds,
            // not waited for longer) completes them.
            let (mut next, all) = windows.likely_windows(&opts.selection, PARSED_AHEAD);
            if !all {
                windows.feed.listing.wait_for_more(std::time::Duration::from_millis(20));
                next = windows.likely_windows(&opts.selection, PARSED_AHEAD).0;
            }
            if !next.is_empty() {
                parsed_ahead.start(next, pool, opts);
            }
            while let Some(p) = parsing.pop_front() {
                out.write(p, windows, &ahead)?;
            }
            Ok(())
        })
    })?;
    let started = Instant::now();
    let written = pool.install(|| match rayon::join(|| data.finish(), || rejects.finish()) {
        (Ok(data), Ok(rejects)) => Ok((data, rejects)),
        (Err(e), _) | (_, Err(e)) => Err(e),
    });
    windows.tally.encode_seconds += started.elapsed().as_secs_f64();
    written
}

/// A window whose parse was started: its objects, bytes and, once parsed, its groups' output
/// and the seconds from the window's start to the end of its parse.
struct Parsing {
    objects: usize,
    bytes: u64,
    parsed: Receiver<(Result<Vec<GroupOutput>, Error>, f64)>,
}

impl Parsing {
    /// Starts parsing `window` on the pool, unless it was parsed ahead (`taken`).
    fn start<'s>(
        scope: &rayon::Scope<'s>,
        window: Vec<SourceObject>,
        fetched: Vec<Fetched>,
        taken: Option<Vec<GroupOutput>>,
        opts: &'s ConvertOptions,
        started: Instant,
    ) -> Self {
        let (tx, parsed) = std::sync::mpsc::channel();
        let (objects, bytes) = (window.len(), window.iter().map(|o| o.size).sum());
        match taken {
            Some(outs) => {
                let _ = tx.send((Ok(outs), started.elapsed().as_secs_f64()));
            }
            None => scope.spawn(move |_| {
                let outs = parse_window(&window, fetched, opts);
                // The loop waits for every parse it started, unless it stopped on an error.
                let _ = tx.send((outs, started.elapsed().as_secs_f64()));
            }),
        }
        Parsing { objects, bytes, parsed }
    }

    /// Waits for the parse on a worker of the pool, running the pool's other tasks meanwhile
    /// (the next window's parse among them: with one thread, nobody else would). With none left
    /// to run, the parse is running on another worker, and the wait blocks.
    fn wait(&self) -> (Result<Vec<GroupOutput>, Error>, f64) {
        loop {
            if let Ok(outcome) = self.parsed.try_recv() {
                return outcome;
            }
            if !matches!(rayon::yield_now(), Some(rayon::Yield::Executed)) {
                return self.parsed.recv().expect("a started parse sends its outcome or panics");
            }
        }
    }
}

/// Where a batch's parsed windows go: its files, its progress, and what streaming the objects
/// found too large to hold whole needs.
struct Out<'a> {
    pool: &'a rayon::ThreadPool,
    data: &'a mut PartitionedWriter,
    rejects: &'a mut PartitionedWriter,
    progress: &'a Progress,
    rt: Option<&'a tokio::runtime::Runtime>,
    opts: &'a ConvertOptions,
}

impl Out<'_> {
    /// Waits for the window's parse, counts it, encodes it into the files, and streams the
    /// objects its parse found too large to hold whole, after the rest of the window.
    fn write(&mut self, p: Parsing, windows: &mut BatchWindows, ahead: &FetchAhead) -> Result<(), Error> {
        let (outs, parse_seconds) = p.wait();
        windows.tally.read_parse_seconds += parse_seconds;
        let outs = outs?;
        let objects = outs.iter().flat_map(|g| &g.objects);
        for o in objects.clone() {
            windows.tally.object(o);
        }
        let deferred: Vec<SourceObject> = objects.filter_map(|o| o.deferred.clone()).collect();
        let started = Instant::now();
        let chunks = outs.into_iter().flat_map(|g| g.objects.into_iter().flat_map(|o| o.chunks).chain([g.batches]));
        encode(chunks, self.pool, self.data, self.rejects)?;
        windows.tally.encode_seconds += started.elapsed().as_secs_f64();
        self.progress.converted(p.objects as u64, p.bytes);
        tracing::debug!(objects = p.objects, rows = windows.tally.lines.rows, "window written");
        for o in &deferred {
            let parts = o.start_parts(self.rt, &self.opts.store.retry, ahead.requests())?;
            self.stream(o, parts, &mut windows.tally)?;
        }
        Ok(())
    }

    /// Streams `o` into the files ([`stream_object`]), its time counted as reading and parsing.
    fn stream(&mut self, o: &SourceObject, parts: Option<RangedReader>, tally: &mut BatchTally) -> Result<(), Error> {
        let started = Instant::now();
        stream_object(o, parts, self.pool, self.opts, self.data, self.rejects, tally)?;
        tally.read_parse_seconds += started.elapsed().as_secs_f64();
        Ok(())
    }
}

/// Converts an object too large to hold whole (or of unknown size: standard input, a pipe, a
/// compressed object whose content is more than [`whole_cap`]): it is read in blocks pushed
/// through the line framer, whose pieces of about a window each are parsed in parallel and
/// encoded in turn, line numbers running on across pieces. Memory stays at a few blocks whatever
/// the object's size or compression ratio. A line longer than a piece is rejected as it streams
/// past, keeping only its head. Past `--max-object-bytes` of content, the rest of the object is
/// one reject (`too_large`). A remote object's `parts` are started by the caller.
///
/// [`whole_cap`]: ConvertOptions::whole_cap
pub(crate) fn stream_object(
    o: &SourceObject,
    parts: Option<RangedReader>,
    pool: &rayon::ThreadPool,
    opts: &ConvertOptions,
    data: &mut PartitionedWriter,
    rejects: &mut PartitionedWriter,
    tally: &mut BatchTally,
) -> Result<(), Error> {
    let mut raw = o.open_stream(parts)?;
    let mut reader = Capped { inner: &mut *raw, left: opts.max_object_bytes, read: 0 };
    let mut framer = LineFramer::new(opts.window_bytes as usize, opts.max_line_bytes);
    let mut parse = opts.parse_options(o, &[]);
    tally.objects_read += 1;
    tally.bytes_read += o.size;
    let mut write = |outs: Vec<ChunkOutput>| {
        tally.chunks(&o.name, &outs);
        encode(outs.into_iter(), pool, data, rejects)
    };
    let mut take = |frame: Frame<'_>| {
        if let Frame::Lines { bytes, .. } = frame
            && parse.key_days.is_none()
        {
            // An undated object's bound comes from its first record, in its first piece that has one.
            parse = opts.parse_options(o, bytes);
        }
        write(pool.install(|| parse_in_chunks(frame, &o.name, parse, opts.chunk_bytes)))
    };
    let mut block = vec![0; READ_BYTES];
    loop {
        opts.stop.check()?;
        let (len, eof) = fill(&mut reader, &mut block, o)?;
        framer.push(&block[..len], &mut take)?;
        if eof {
            break;
        }
    }
    // Cut off by the cap, the object goes on: the lines before its last newline are parsed, and
    // the partial line with what follows is one reject.
    let rest = reader.rest(opts.max_line_bytes, o)?;
    if rest.is_empty() {
        framer.finish(&mut take)?;
    } else {
        let mut head = framer.cut_off(&mut take)?;
        head.extend_from_slice(&rest);
        head.truncate(opts.max_line_bytes);
        let reason = RejectReason::TooLarge { limit: opts.max_object_bytes };
        write(vec![reject_only(&o.name, framer.next_line(), reason, &head)])?;
    }
    tally.bytes_decompressed += reader.read;
    if o.is_stdin() {
        // Standard input and pipes have no size until read: their bytes are counted as read.
        tally.bytes_read += reader.read;
    }
    Ok(())
}

/// Windows of local files whose parse is started while the window before them is encoded. With
/// one, a core that finished its share of both phases waited for the other's last task: a join of
/// a window's parse and the previous window's encoding kept the cores busy 89% of a run, against
/// 92-93% with two (a third did not add to it, and held 40 MiB more). Fetched windows parse one
/// at a time: under the S3 model two held 485 MiB at peak (of the 512 MiB aimed at), not 431.
const PARSING: usize = 2;

/// Windows of the next batch parsed while a batch finishes: its commit keeps one thread busy
/// for 10-20 ms (the ledger and record of thousands of objects) while the other would wait.
const PARSED_AHEAD: usize = 2;

/// Bytes a streamed object is read in, before they are pushed to the line framer.
const READ_BYTES: usize = 1 << 20;
