//! What a conversion is asked to do ([`ConvertOptions`]), its defaults, and the limits derived
//! from it (how an object's lines are parsed, what is read whole and what is streamed).

use std::path::PathBuf;

use crate::commit::lease::LeaseOptions;
use crate::parquet_sink::SinkOptions;
use crate::rows::builder::ParseOptions;
use crate::source::{KeyDates, SourceObject};
use crate::store::StoreOptions;

/// Everything a conversion needs to know; the CLI fills it from flags.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub sources: Vec<String>,
    pub output: PathBuf,
    /// Above this share of rejected lines the run fails and commits nothing.
    pub max_reject_ratio: f64,
    /// The ratio applies only to a batch with more rejects than this.
    pub max_rejects: u64,
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
    /// A source that lists no object is not an error (it is, exit 66, by default).
    pub allow_empty: bool,
    /// Set, the run stops at its next safe point (the CLI sets it on SIGTERM and SIGINT).
    pub stop: crate::stop::StopFlag,
    /// The endpoint and region of the `s3://` sources where they are not DEST's (`store`'s).
    pub source_endpoint_url: Option<String>,
    pub source_region: Option<String>,
    /// A record more than this many days from its object's key date is a reject; `None`: no
    /// bound.
    pub key_date_slack: Option<u32>,
    pub lease: LeaseOptions,
    /// The units this run converts (`--shard`, `--units-file`): all by default.
    pub selection: crate::source::unit::Selection,
    /// `--glue-table`: the Glue catalog table kept in step with DEST.
    pub catalog: Option<crate::catalog::CatalogOptions>,
}

impl ConvertOptions {
    /// How the `s3://` sources are reached: DEST's store options (`store`, the same retries and
    /// request counts), with the sources' own endpoint and region where given.
    pub(crate) fn source_store(&self) -> crate::store::StoreOptions {
        let store = &self.store;
        crate::store::StoreOptions {
            endpoint_url: self.source_endpoint_url.clone().or_else(|| store.endpoint_url.clone()),
            region: self.source_region.clone().or_else(|| store.region.clone()),
            ..store.clone()
        }
    }

    /// What the listing selects besides the sources.
    pub(crate) fn listing_scope(&self) -> crate::source::listing::Scope {
        crate::source::listing::Scope {
            dates: self.key_dates,
            allow_empty: self.allow_empty,
            selection: self.selection.clone(),
        }
    }

    /// How the lines of `o` are parsed: its records' days are bounded by its key date, or, when
    /// its name has none, by the day of the first record in `head` (the start of its content).
    pub(crate) fn parse_options(&self, o: &SourceObject, head: &[u8]) -> ParseOptions {
        let key_day = crate::source::key_day(&o.name);
        let key_days = self.key_date_slack.and_then(|slack| {
            let day = key_day.or_else(|| crate::rows::builder::first_record_day(head))?;
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
    pub(crate) fn streamed<'a>(&self, window: &'a [SourceObject]) -> Option<&'a SourceObject> {
        match window {
            [big] if alone(big, self.window_bytes) => Some(big),
            _ => None,
        }
    }

    /// Stored bytes of the windows drawn ahead of the parser and downloading: four windows to
    /// start with, at most eight (the budget grows while the parser waits for downloads). With
    /// the window being parsed, the one being encoded and the next batch's first four started
    /// early, a run holds at most about fourteen windows of fetched bytes (112 MiB by default),
    /// whatever the number or size of the objects.
    pub(crate) fn fetch_ahead_bytes(&self) -> (u64, u64) {
        (self.window_bytes.saturating_mul(4), self.window_bytes.saturating_mul(8))
    }

    /// The most decompressed bytes a parse group holds whole (a window has about four groups, and
    /// up to three windows are in flight: two parsing, one encoded); a compressed object whose
    /// content does not fit is streamed instead. Uncompressed objects always fit: a group holds at
    /// most a window of them. An object whose content is over `--max-object-bytes` does not fit
    /// either: it is streamed, where the cap cuts it.
    pub(crate) fn whole_cap(&self) -> usize {
        usize::try_from(self.window_bytes.saturating_mul(4).min(self.max_object_bytes)).unwrap_or(usize::MAX)
    }
}

/// Whether `o` is streamed in a window of its own.
pub(crate) fn alone(o: &SourceObject, window_bytes: u64) -> bool {
    o.size > window_bytes || o.is_stdin()
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            sources: Vec::new(),
            output: PathBuf::new(),
            max_reject_ratio: 0.05,
            max_rejects: 100,
            max_line_bytes: 1 << 20,
            max_object_bytes: 64 << 30,
            chunk_bytes: 4 << 20,
            window_bytes: 8 << 20,
            threads: None,
            partition_by_bucket: false,
            store: StoreOptions::default(),
            key_dates: None,
            concurrency: 1024,
            upload_part_bytes: 16 << 20,
            progress: false,
            sink: SinkOptions::default(),
            batch_bytes: 4 << 30,
            dry_run: false,
            retry_quarantined: false,
            allow_empty: false,
            stop: Default::default(),
            source_endpoint_url: None,
            source_region: None,
            key_date_slack: Some(31),
            lease: LeaseOptions::default(),
            selection: Default::default(),
            catalog: None,
        }
    }
}
