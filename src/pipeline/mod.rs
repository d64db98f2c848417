//! The `convert` run: list objects, convert the new ones in parallel, commit them in batches.
//!
//! The listing runs in the background and hands objects over as S3 pages arrive; each is checked
//! against the ledger ([`feed`]), and the new ones are taken in windows of about 8 MiB. While a
//! window is converted, the next ones are drawn from the listing and their remote objects download
//! ([`prefetch`]: tokio, at most `--concurrency` requests at once, within a budget of bytes).
//! Each window is parsed by rayon ([`parse`]: groups of consecutive small objects into shared
//! builders, newline-aligned chunks of larger objects, streams in blocks) and then encoded
//! ([`windows`]); a window is parsed while the one before it is encoded. Input order is kept
//! everywhere, so the same input gives the same files and rows.
//!
//! Windows fill batches of about `--batch-size` ([`batch`]); each is staged, committed and
//! published as `docs/commit-protocol.md` describes, under the DEST's lease, while the next
//! batch's first windows of local files are parsed ([`parse_ahead`]). A run with nothing new
//! writes nothing at all.

mod batch;
mod feed;
mod options;
mod parse;
mod parse_ahead;
mod prefetch;
mod progress;
mod stats;
mod windows;

pub use options::ConvertOptions;

use std::time::Instant;

use crate::commit::destination::Destination;
use crate::commit::lease;
use crate::commit::ledger::Legacy;
use crate::commit::ledger::{Ledger, Verdict};
use crate::commit::protocol::needs_repair;
use crate::commit::protocol::recover;
use crate::error::Error;
use crate::pipeline::batch::Run;
use crate::pipeline::batch::convert_batch;
use crate::pipeline::batch::repair;
use crate::pipeline::feed::{Feed, Known};
use crate::pipeline::parse_ahead::ParseAhead;
use crate::pipeline::prefetch::Fetcher;
use crate::pipeline::progress::Progress;
use crate::pipeline::stats::RunStats;
use crate::pipeline::windows::Threads;
use crate::report::{Elsewhere, PlannedObject, Report, TransferFigures};
use crate::source::listing::Listing;
use crate::source::unit::unit_of;

fn runtime_if_needed(opts: &ConvertOptions) -> Result<Option<tokio::runtime::Runtime>, Error> {
    let remote = opts.output.to_string_lossy().starts_with("s3://")
        || opts.sources.iter().any(|s| s.starts_with("s3://"))
        || opts.catalog.is_some();
    remote.then(crate::store::runtime).transpose()
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
    let mut stats = RunStats::default();
    let outcome = run_into(opts, &mut stats);
    (stats.report(started.elapsed().as_secs_f64()), outcome)
}

fn run_into(opts: &ConvertOptions, stats: &mut RunStats) -> Result<(), Error> {
    if !(0.0..=1.0).contains(&opts.max_reject_ratio) {
        return Err(Error::Usage(format!("--max-reject-ratio {} is not between 0 and 1", opts.max_reject_ratio)));
    }
    if opts.max_line_bytes == 0 {
        return Err(Error::Usage("--max-line-bytes must be at least 1".into()));
    }
    if opts.sink.row_group_rows == 0 || !(1..=22).contains(&opts.sink.zstd_level) {
        return Err(Error::Usage("row groups need at least 1 row, and ZSTD levels are 1 to 22".into()));
    }
    let rt = runtime_if_needed(opts)?;
    // The run's own store options: the region resolved once, its own request counts, and its
    // own request gate.
    let mut store = opts.store.clone();
    store.retry.metrics = Default::default();
    store.gate = crate::store::throttle::RequestGate::new(opts.concurrency);
    if let Some(rt) = &rt {
        crate::store::resolve_region(&mut store, rt);
    }
    let opts = &ConvertOptions { store: store.clone(), ..opts.clone() };
    let dest = Destination::parse(&opts.output.to_string_lossy(), &store, rt.as_ref())?
        .with_direct_writes(opts.sink.direct_io);
    stats.output = dest.display();
    // The catalog table exists and the partitions earlier runs left unregistered are registered
    // before anything new is committed (a dry run touches no catalog).
    let catalog = match (&opts.catalog, &rt) {
        (Some(c), Some(rt)) if !opts.dry_run => {
            let input = crate::ddl::catalog_table_input(&opts.output.to_string_lossy(), opts.partition_by_bucket)?;
            let owner = format!("{}-{:016x}", std::process::id(), crate::commit::lease::rand_token());
            let catalog =
                crate::catalog::Catalog::open(c, &dest, &opts.output.to_string_lossy(), input, &store, rt, owner)?;
            let repaired = catalog.repair()?;
            if repaired > 0 {
                tracing::warn!(partitions = repaired, "registered the partitions earlier runs left unregistered");
            }
            Some(std::sync::Arc::new(catalog))
        }
        _ => None,
    };
    let source_store = opts.source_store();
    let mut listing =
        Listing::start(&opts.sources, dest.local_root(), &source_store, rt.as_ref(), opts.listing_scope());
    let mut outcome = convert_listed(opts, rt.as_ref(), &dest, &mut listing, &catalog, stats);
    // Whatever the outcome, what was committed is registered; a refusal is reported after the
    // conversion's own error (its markers stay for the next run).
    if let Some(c) = &catalog {
        match c.finish() {
            Ok(n) => tracing::info!(partitions = n, "catalog up to date"),
            Err(e) if outcome.is_ok() => outcome = Err(e),
            Err(e) => tracing::warn!(error = %e, "catalog"),
        }
    }
    stats.dest_requests = dest.requests();
    stats.throttled = store.gate.throttled();
    stats.request_limit_lowest = store.gate.lowest();
    stats.listing = TransferFigures { objects: listing.objects, bytes: listing.bytes, seconds: listing.seconds };
    tracing::info!(objects = listing.objects, bytes = listing.bytes, seconds = listing.seconds, "listed");
    outcome
}

/// Converts the new objects as the listing hands them over, one unit (a source's key-day) at a
/// time, each under its own lease and ledger. A unit another live run holds is left to it: the
/// run converts its other units and then fails with [`Error::UnitsBusy`] (retry later).
fn convert_listed(
    opts: &ConvertOptions,
    rt: Option<&tokio::runtime::Runtime>,
    dest: &Destination,
    listing: &mut Listing,
    catalog: &Option<std::sync::Arc<crate::catalog::Catalog>>,
    stats: &mut RunStats,
) -> Result<(), Error> {
    let state_started = Instant::now();
    let legacy = Legacy::load(dest)?;
    stats.stage_seconds.state += state_started.elapsed().as_secs_f64();
    let progress = Progress::new(opts.progress && !opts.dry_run);
    let fetcher = Fetcher::new(opts);
    let pool = parser_pool(opts)?;
    let mut units = UnitRun {
        found: (0, 0),
        neighbours: Default::default(),
        busy: Vec::new(),
        catalog: catalog.clone(),
        fetcher,
        pool,
        ahead: Default::default(),
    };
    let mut outcome = Ok(());
    while let Some(o) = listing.next_object()? {
        let unit = unit_of(&o.name);
        if !opts.selection.takes(&unit) {
            stats.objects_other_units += 1;
            continue;
        }
        listing.unread(o);
        outcome = convert_unit(opts, rt, &dest.for_unit(&unit), &legacy, listing, &mut units, stats, &progress);
        if outcome.is_err() || opts.stop.check().is_err() {
            break;
        }
    }
    progress.finish();
    stats.retries = opts.store.retry.metrics.retries();
    stats.units_busy = units.busy.clone();
    outcome?;
    opts.stop.check()?;
    // A unit left to another run was not converted: the run did not commit all it listed.
    stats.committed = units.busy.is_empty();
    stats.nothing_new = !stats.dry_run
        && stats.commits.is_empty()
        && stats.batches_finished.is_empty()
        && stats.batches_discarded.is_empty()
        && stats.batches_recreated.is_empty()
        && units.busy.is_empty();
    if let Some(first) = units.busy.first() {
        return Err(Error::UnitsBusy { count: units.busy.len(), first: first.clone() });
    }
    match stats.objects_quarantined.first() {
        Some(q) => Err(Error::Quarantined { count: stats.objects_quarantined.len(), first: q.name.clone() }),
        None => Ok(()),
    }
}

/// The parser and encoder threads of a run (`--threads`, else one per core), shared by its
/// batches: a pool per batch started new threads, whose allocator heaps each kept memory of their
/// own.
fn parser_pool(opts: &ConvertOptions) -> Result<rayon::ThreadPool, Error> {
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = opts.threads {
        pool = pool.num_threads(n.max(1));
    }
    pool.build().map_err(|e| Error::System { what: "cannot start parser threads", cause: e.to_string() })
}

/// Days whose units' ledgers a run keeps at hand.
const NEIGHBOUR_DAYS: usize = 8;

/// What the units of one run share.
struct UnitRun {
    /// New objects found so far and their bytes, over all units (the progress bar's total).
    found: (u64, u64),
    /// The ledgers of the units of each day seen, by day: a log delivery converted from another
    /// place is found in them.
    neighbours: std::collections::HashMap<i32, Vec<(String, Ledger)>>,
    /// Units another live run holds: left to it.
    busy: Vec<String>,
    /// The Glue table kept in step (`--glue-table`).
    catalog: Option<std::sync::Arc<crate::catalog::Catalog>>,
    /// The request cap, and the downloads started across units.
    fetcher: std::sync::Arc<Fetcher>,
    /// The parser and encoder threads.
    pool: rayon::ThreadPool,
    /// The next batch's first windows, parsed while a batch finishes.
    ahead: ParseAhead,
}

/// Converts the new objects of the unit `dest` is the view of, as the listing hands them over
/// (the feed ends at the first object of another unit).
#[allow(clippy::too_many_arguments)]
fn convert_unit(
    opts: &ConvertOptions,
    rt: Option<&tokio::runtime::Runtime>,
    dest: &Destination,
    legacy: &Legacy,
    listing: &mut Listing,
    units: &mut UnitRun,
    stats: &mut RunStats,
    progress: &Progress,
) -> Result<(), Error> {
    let unit = dest.unit().expect("a unit's view").to_string();
    // Look for new objects without the lease first: a run with nothing to do writes nothing at all.
    let state_started = Instant::now();
    let ledger = Ledger::load(dest)?;
    // The other units of its day, taken out of the run's map while this one is converted.
    let day = crate::source::unit::day_of(&unit);
    let mut neighbours = match day {
        Some(day) => match units.neighbours.remove(&day) {
            Some(known) => known,
            None => neighbour_ledgers(dest, day, &unit)?,
        },
        None => Vec::new(),
    };
    neighbours.retain(|(u, _)| *u != unit);
    stats.stage_seconds.state += state_started.elapsed().as_secs_f64();
    let mut feed = Feed::new(listing, units.fetcher.clone());
    feed.retry_quarantined = opts.retry_quarantined;
    feed.unit = Some(unit.clone());
    feed.known = Known { legacy: legacy.ledger.as_ref(), neighbours: &neighbours };
    feed.found = units.found;
    // Later units of the same day see what this one converted. The map is a cache: a day evicted
    // is read from DEST again when it comes up (memory stays bounded over years of days).
    let put_back = |units: &mut UnitRun, mut neighbours: Vec<(String, Ledger)>, ledger: Ledger| {
        if let Some(day) = day {
            neighbours.push((unit.clone(), ledger));
            units.neighbours.insert(day, neighbours);
            while units.neighbours.len() > NEIGHBOUR_DAYS {
                let oldest = *units.neighbours.keys().min().expect("not empty");
                units.neighbours.remove(&oldest);
            }
        }
    };
    let finish = |feed: &Feed, units: &mut UnitRun, stats: &mut RunStats| {
        stats.objects_skipped += feed.skipped;
        stats.objects_changed.extend(feed.changed.iter().cloned());
        stats.objects_elsewhere.extend(
            feed.elsewhere.iter().map(|(name, first)| Elsewhere { name: name.clone(), converted_as: first.clone() }),
        );
        units.found = feed.found;
    };
    if opts.dry_run {
        stats.dry_run = true;
        while let Some(o) = feed.next_new(&ledger, true)? {
            stats.would_convert.push(PlannedObject { name: o.name.clone(), size: o.size });
        }
        finish(&feed, units, stats);
        drop(feed);
        put_back(units, neighbours, ledger);
        return Ok(());
    }
    let first = feed.next_new(&ledger, true)?;
    if first.is_none() && dest.staged_batches()?.is_empty() && !needs_repair(dest, &ledger)? {
        // A run killed between emptying a local staging folder and removing it leaves it empty.
        if let Some(root) = dest.local_root() {
            dest.remove_empty_staging(root);
        }
        finish(&feed, units, stats);
        drop(feed);
        put_back(units, neighbours, ledger);
        return Ok(());
    }

    let lease = match lease::acquire(dest, opts.lease, &opts.stop) {
        Ok(lease) => lease,
        Err(Error::Busy { holder, .. }) => {
            tracing::warn!(unit, holder, "another run holds this unit; left to it (retry later)");
            // Its objects are that run's: drawn here only to reach the next unit.
            while feed.next_new(&ledger, true)?.is_some() {}
            drop(feed);
            units.busy.push(unit.clone());
            put_back(units, neighbours, ledger);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    dest.prune_dead_local_staging();
    // Under the lease the ledger is brought up to date: a run that just finished may have
    // converted some.
    let state_started = Instant::now();
    let mut ledger = ledger;
    ledger.refresh(dest)?;
    let recovered = recover(dest, &mut ledger)?;
    stats.batches_finished.extend(recovered.finished);
    stats.batches_discarded.extend(recovered.discarded);
    stats.stage_seconds.state += state_started.elapsed().as_secs_f64();
    let run = Run {
        opts,
        threads: Threads { rt, pool: &units.pool, ahead: &units.ahead },
        dest,
        lease: &lease,
        owner: lease.owner().to_string(),
        catalog: units.catalog.clone(),
    };
    repair(&run, &mut ledger, stats)?;
    match first {
        Some(o) if feed.verdict(&o, &ledger) == Verdict::New => feed.peeked = Some(o),
        Some(o) => feed.skip_found(&o),
        None => {}
    }
    let mut outcome = Ok(true);
    while let Ok(true) = outcome {
        outcome = convert_batch(&run, &mut feed, &mut ledger, stats, progress);
    }
    finish(&feed, units, stats);
    outcome?;
    if dest.staged_batches()?.is_empty() {
        ledger.maybe_checkpoint(dest)?;
    }
    lease.release();
    drop(feed);
    put_back(units, neighbours, ledger);
    Ok(())
}

/// The ledgers of the units of `day` in DEST (every source prefix's) but `except`.
fn neighbour_ledgers(dest: &Destination, day: i32, except: &str) -> Result<Vec<(String, Ledger)>, Error> {
    let mut out = Vec::new();
    let units = dest.units_starting(&format!("{}-", crate::access_log::time::format_day(day)))?;
    for unit in units.into_iter().filter(|u| u != except) {
        let ledger = Ledger::load(&dest.for_unit(&unit))?;
        out.push((unit, ledger));
    }
    Ok(out)
}
