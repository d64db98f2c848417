//! The command line: flags as the user typed them, resolved into options, and the one place where
//! outcomes become messages and exit codes.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commit::lease::LeaseOptions;
use crate::ddl::{self, DdlOptions, Dialect, TableKind};
use crate::error::{EXIT_IO, EXIT_OK, Error};
use crate::parquet_sink::SinkOptions;
use crate::pipeline::{self, ConvertOptions};
use crate::report::{Report, ReportTarget};
use crate::source::KeyDates;
use crate::store::StoreOptions;
use crate::store::retry::RetryPolicy;

#[derive(Debug, Parser)]
#[command(name = "s3logs", version, about = "Convert S3 server access logs into typed, date-partitioned Parquet")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Convert log objects into DEST/data/dt=YYYY-MM-DD/*.parquet (rejected lines: DEST/rejects/).
    Convert(Box<ConvertArgs>),
    /// Print the table definition (Athena, Glue, Spark or DuckDB) for a dataset written by convert.
    Ddl(DdlArgs),
    /// Show what has been converted into DEST: objects, rows, rejects, the last commit, the lease.
    Status(StatusArgs),
    /// List the units of work (a source's key-day) of log sources, with their objects and bytes.
    Plan(crate::backfill::PlanArgs),
    /// Maintain DEST's state.
    #[command(subcommand)]
    State(crate::backfill::StateCommand),
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// The dataset root given to `convert --output` (a local path or an s3:// URL).
    #[arg(value_name = "DEST")]
    dest: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// S3-compatible endpoint [default: AWS_ENDPOINT_URL, else AWS].
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
    /// AWS region [default: AWS_REGION or AWS_DEFAULT_REGION].
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
}

/// The partition levels of a dataset: `dt`, or `bucket,dt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PartitionBy {
    bucket: bool,
}

fn parse_partition_by(s: &str) -> Result<PartitionBy, String> {
    match s.replace(' ', "").as_str() {
        "dt" => Ok(PartitionBy { bucket: false }),
        "bucket,dt" => Ok(PartitionBy { bucket: true }),
        _ => Err(format!("{s:?}: use dt or bucket,dt")),
    }
}

/// Parses `1048576`, `64KiB`, `256MiB`, `1GiB` (also `K`, `M`, `G`, `KB`, `MB`, `GB`; powers of 1024).
/// A multipart upload's part size: S3 refuses parts under 5 MiB (but the last), and allows at
/// most 5 GiB.
fn parse_part_size(v: &str) -> Result<u64, String> {
    let size = parse_size(v)?;
    if !(5 << 20..=5 << 30).contains(&size) {
        return Err(format!("{v}: S3 parts are 5MiB to 5GiB"));
    }
    Ok(size)
}

/// A share: `0.05`, or a percentage, `5%`.
fn parse_ratio(v: &str) -> Result<f64, String> {
    let (number, scale) = match v.trim().strip_suffix('%') {
        Some(p) => (p.trim(), 100.0),
        None => (v.trim(), 1.0),
    };
    number.parse::<f64>().map(|r| r / scale).map_err(|_| format!("{v:?} is not a ratio (0.05) or a percentage (5%)"))
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size such as 1048576 or 256MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use KiB, MiB or GiB)")),
    };
    n.checked_mul(mult).filter(|&v| v > 0).ok_or_else(|| format!("{s:?} is out of range"))
}

#[derive(Debug, Args)]
struct ConvertArgs {
    /// Log objects: files, directories (walked recursively, sorted), s3://bucket/prefix (a key
    /// prefix, listed in key order), or - for standard input.
    /// gzip and zstd objects are decompressed automatically.
    #[arg(required = true, value_name = "SOURCE")]
    sources: Vec<String>,
    /// Output root, a local folder or s3://bucket/prefix: data goes to DEST/data/, rejected lines
    /// to DEST/rejects/.
    #[arg(short, long, value_name = "DEST")]
    output: PathBuf,
    /// Write a JSON report of the run to FILE: a path, - for standard output, or s3://bucket/key.
    /// It is checked before any work (an S3 report gets a placeholder until the run ends).
    #[arg(long, value_name = "FILE")]
    report: Option<String>,
    /// Fail (exit 65, the batch not committed) when more than this share of a batch's lines is
    /// rejected, and more than --max-rejects of them: `0.05` or `5%`.
    #[arg(long, default_value = "0.05", value_parser = parse_ratio, value_name = "RATIO")]
    max_reject_ratio: f64,
    /// The reject ratio applies only to a batch with more rejects than this: one odd line in a
    /// 10-line hourly object must not block a quiet bucket's job.
    #[arg(long, default_value_t = 100, value_name = "LINES")]
    max_rejects: u64,
    /// A record dated more than DAYS from its log object's key date (the date in its name) is a
    /// reject (far_from_key_date): S3 delivers records within hours of their time, and one object
    /// must not open a partition file for each of thousands of days. An object whose name has no
    /// date is bounded by its first record's day instead (far_from_first_record). `off`: no bound.
    #[arg(long, default_value = "31", value_parser = parse_slack, value_name = "DAYS")]
    key_date_slack: Slack,
    /// Read objects quarantined by earlier runs (they could not be read) again, even unchanged.
    /// A quarantined object that changed since is read again anyway.
    #[arg(long)]
    retry_quarantined: bool,
    /// A source that lists no log object (in the --since/--until range) is not an error. Without
    /// it, such a source stops the run with exit code 66: a misspelled prefix or an empty folder
    /// must not pass for "nothing new". Pass it for a job that may run before the first delivery.
    #[arg(long)]
    allow_empty: bool,
    /// A line longer than this is a reject.
    #[arg(long, default_value = "1MiB", value_parser = parse_size, value_name = "SIZE")]
    max_line_bytes: u64,
    /// An object whose content (after decompression) is larger is converted up to this size, and
    /// the rest is one reject (too_large): a compression bomb or /dev/zero cannot run for ever.
    #[arg(long, default_value = "64GiB", value_parser = parse_size, value_name = "SIZE")]
    max_object_bytes: u64,
    /// Roll to a new Parquet file when a file reaches this size.
    #[arg(long, default_value = "256MiB", value_parser = parse_size, value_name = "SIZE")]
    target_file_size: u64,
    /// Rows per Parquet row group (at least 1024: smaller groups make files many times larger
    /// and slower to write and to read).
    #[arg(long, default_value_t = SinkOptions::default().row_group_rows as u64, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1024..=1 << 30))]
    row_group_rows: u64,
    /// ZSTD compression level (1-22).
    #[arg(long, default_value_t = SinkOptions::default().zstd_level, value_name = "N",
          value_parser = clap::value_parser!(i32).range(1..=22))]
    zstd_level: i32,
    /// Write Parquet files (and state files of 1 MiB or more, such as a day's commit record of
    /// thousands of objects) through the page cache. By default they are written around it
    /// (O_DIRECT) where the file system allows, which saves a copy of every byte; on a network
    /// file system (NFS, EFS) where direct writes are slow, pass this.
    #[arg(long)]
    buffered_writes: bool,
    /// Parser threads (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1024))]
    threads: Option<u64>,
    /// S3-compatible endpoint for s3:// sources and DEST [default: AWS_ENDPOINT_URL_S3, else
    /// AWS_ENDPOINT_URL, else AWS].
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
    /// AWS region for s3:// sources and DEST [default: AWS_REGION or AWS_DEFAULT_REGION, else the
    /// profile's].
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
    /// The endpoint of the s3:// sources, where they are not DEST's (logs in one account or
    /// provider, the table in another) [default: --endpoint-url's].
    #[arg(long, value_name = "URL")]
    source_endpoint_url: Option<String>,
    /// The region of the s3:// sources, where it is not DEST's (a logging bucket in one region,
    /// the analytics bucket in another) [default: --region's].
    #[arg(long, value_name = "REGION")]
    source_region: Option<String>,
    /// The AWS profile for credentials and region, ahead of AWS_PROFILE and of keys in the
    /// environment, as the AWS CLI's --profile.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Only objects whose key date (the date their file name starts with, in both S3 key formats)
    /// is on or after this day.
    #[arg(long, value_name = "YYYY-MM-DD")]
    since: Option<String>,
    /// Only objects whose key date is on or before this day, plus the lookback.
    #[arg(long, value_name = "YYYY-MM-DD")]
    until: Option<String>,
    /// Days after --until still selected: an object delivered later can hold the range's records.
    #[arg(long, default_value_t = 1, value_name = "DAYS")]
    lookback_days: u32,
    /// Times a failed S3 request is tried again (backoff from 200 ms, doubling); when they run out
    /// the run stops with exit code 75, "retry later".
    #[arg(long, default_value_t = 4, value_name = "N")]
    retries: u32,
    /// One S3 request attempt taking longer than this counts as failed (and is tried again).
    #[arg(long, default_value_t = 60, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout: u64,
    /// Most s3:// GETs in flight at once. Fetching runs 32 to 64 MiB ahead of the parser (further
    /// while the parser waits), so small objects get many requests at once and large ones few.
    /// S3 serves about 5,500 GETs a second per prefix and asks for less with SlowDown: the run
    /// then halves the requests it lets through at once, and raises them again one by one as
    /// they succeed (the report's `throttled` and `request_limit_lowest`).
    #[arg(long, default_value_t = 1024, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=4096))]
    concurrency: u64,
    /// Output files larger than this go to an s3:// DEST as multipart uploads of parts this size
    /// (at least 5MiB, as S3 requires).
    #[arg(long, default_value = "16MiB", value_parser = parse_part_size, value_name = "SIZE")]
    upload_part_size: u64,
    /// Commit after about this many stored bytes of objects: a long run that stops keeps what it
    /// committed, and the next run goes on from there.
    #[arg(long, default_value = "4GiB", value_parser = parse_size, value_name = "SIZE")]
    batch_size: u64,
    /// List what would be converted (one object per line on stdout) and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// A run holds DEST's lease for this long without renewing it (it renews every quarter of
    /// it); a run killed on another host blocks the next one for at most this long.
    #[arg(long, default_value_t = 300, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    lease_ttl: u64,
    /// Wait up to this long for another run's lease on DEST; after that, exit 73.
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    lease_wait: u64,
    /// Keep this Glue Data Catalog table in step with DEST: created when absent, and the
    /// partitions each commit publishes registered after it (exit 76 when the catalog refuses;
    /// the next run registers them).
    #[arg(long, value_name = "DB.TABLE", value_parser = crate::catalog::CatalogOptions::parse)]
    glue_table: Option<crate::catalog::CatalogOptions>,
    /// Glue's endpoint [default: AWS_ENDPOINT_URL_GLUE, AWS_ENDPOINT_URL, else AWS's for the region].
    #[arg(long, value_name = "URL", requires = "glue_table")]
    glue_endpoint_url: Option<String>,
    /// Partition levels: dt, or bucket,dt for DEST/data/source_bucket=NAME/dt=YYYY-MM-DD/.
    #[arg(long, default_value = "dt", value_parser = parse_partition_by, value_name = "LEVELS")]
    partition_by: PartitionBy,
    /// Do not print the summary on stderr.
    #[arg(short, long)]
    quiet: bool,
    /// Log format on stderr: text, or json (one object per line, for schedulers).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    shards: crate::backfill::ShardArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Whether the command line asks for JSON logs, read from the raw arguments (for errors found
/// before they are parsed).
fn json_logs_asked() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--log-format=json") || args.windows(2).any(|w| w[0] == "--log-format" && w[1] == "json")
}

/// Logs on stderr: warnings by default, more with RUST_LOG (for example RUST_LOG=s3logs=info).
fn init_logs(format: LogFormat) {
    // The AWS SDK's own warnings are left out by default: they repeat what s3logs' error says, and
    // a failing credential_process's output (which may hold a secret) is among them. RUST_LOG
    // brings them back. So are the TLS verifier's, which the error names too.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,s3logs::summary=info,aws_config=off,aws_runtime=off,aws_smithy_runtime=off,aws_credential_types=off,rustls_platform_verifier=off",
        )
    });
    // Colours only for a person at a terminal: redirected logs stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// `--key-date-slack`: a number of days, or `off` (no bound).
#[derive(Debug, Clone, Copy)]
struct Slack(Option<u32>);

fn parse_slack(v: &str) -> Result<Slack, String> {
    match v {
        "off" => Ok(Slack(None)),
        v => v.parse().map(|d| Slack(Some(d))).map_err(|_| format!("{v:?} is not a number of days or `off`")),
    }
}

impl ConvertArgs {
    fn options(&self) -> Result<ConvertOptions, Error> {
        let selection = self.shards.selection(|k| std::env::var(k).ok())?;
        let key_dates = KeyDates::from_flags(self.since.as_deref(), self.until.as_deref(), self.lookback_days)?
            .or_else(|| crate::backfill::dates_of_units(&selection, self.lookback_days));
        Ok(ConvertOptions {
            sources: self.sources.clone(),
            output: self.output.clone(),
            max_reject_ratio: self.max_reject_ratio,
            max_rejects: self.max_rejects,
            max_line_bytes: self.max_line_bytes as usize,
            max_object_bytes: self.max_object_bytes,
            threads: self.threads.map(|n| n as usize),
            partition_by_bucket: self.partition_by.bucket,
            source_endpoint_url: self.source_endpoint_url.clone(),
            source_region: self.source_region.clone(),
            store: StoreOptions {
                endpoint_url: self.endpoint_url.clone(),
                region: self.region.clone(),
                profile: self.profile.clone(),
                retry: RetryPolicy {
                    attempts: self.retries + 1,
                    timeout: std::time::Duration::from_secs(self.request_timeout),
                    ..RetryPolicy::default()
                },
                ..StoreOptions::default()
            },
            key_dates,
            concurrency: self.concurrency as usize,
            upload_part_bytes: self.upload_part_size as usize,
            progress: !self.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            sink: SinkOptions {
                target_file_bytes: self.target_file_size,
                row_group_rows: self.row_group_rows as usize,
                zstd_level: self.zstd_level,
                direct_io: !self.buffered_writes,
                ..SinkOptions::default()
            },
            batch_bytes: self.batch_size,
            dry_run: self.dry_run,
            retry_quarantined: self.retry_quarantined,
            allow_empty: self.allow_empty,
            key_date_slack: self.key_date_slack.0,
            lease: LeaseOptions {
                ttl: std::time::Duration::from_secs(self.lease_ttl),
                wait: std::time::Duration::from_secs(self.lease_wait),
            },
            selection,
            catalog: self
                .glue_table
                .clone()
                .map(|c| crate::catalog::CatalogOptions { endpoint_url: self.glue_endpoint_url.clone(), ..c }),
            ..ConvertOptions::default()
        })
    }
}

#[derive(Debug, Args)]
struct DdlArgs {
    /// The dataset root given to `convert --output` (a local path or an s3:// URL).
    #[arg(value_name = "DEST")]
    dest: String,
    #[arg(long, value_enum, default_value_t = Dialect::Athena)]
    dialect: Dialect,
    /// Which dataset: the log table (DEST/data/) or the rejected lines (DEST/rejects/).
    #[arg(long, value_enum, default_value_t = TableKind::Data)]
    table_kind: TableKind,
    #[arg(long, default_value = "default", value_name = "NAME")]
    database: String,
    /// Table name [default: s3_access, or s3_access_rejects with --table-kind rejects].
    #[arg(long, value_name = "NAME")]
    table: Option<String>,
    /// First day of the dt partition projection [default: the earliest dt= folder in DEST].
    #[arg(long, value_name = "YYYY-MM-DD")]
    projection_start: Option<String>,
    /// Partition levels the data was written with [default: the levels of DEST's folders].
    #[arg(long, value_parser = parse_partition_by, value_name = "LEVELS")]
    partition_by: Option<PartitionBy>,
    /// Bucket names for the enum projection of the bucket level [default: the source_bucket=
    /// folders in DEST].
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    buckets: Vec<String>,
    #[command(flatten)]
    store: crate::backfill::StoreArgs,
}

fn print_ddl(args: &DdlArgs) -> i32 {
    let opts = DdlOptions {
        dialect: args.dialect,
        kind: args.table_kind,
        database: args.database.clone(),
        table: args.table.clone(),
        dest: args.dest.clone(),
        projection_start: args.projection_start.clone(),
        partition_by_bucket: args.partition_by.map(|p| p.bucket),
        buckets: args.buckets.clone(),
        store: args.store.options(),
    };
    print_or_fail(ddl::render(&opts))
}

/// Prints a command's text on stdout, or its error on stderr; returns the exit code.
fn print_or_fail(result: Result<String, Error>) -> i32 {
    match result {
        Ok(text) => {
            print!("{text}");
            EXIT_OK
        }
        Err(e) => {
            eprintln!("s3logs: error: {}", crate::store::redact::redact(&e.to_string()));
            e.exit_code()
        }
    }
}

/// SIGTERM (how Kubernetes, AWS Batch and systemd stop a task) and SIGINT ask the run to stop at
/// its next safe point, so that it releases DEST's lease and the task's retry elsewhere can start
/// at once; a second one ends the process there and then (with 128 + the signal).
fn stop_on_signals(stop: &crate::StopFlag) {
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // Handlers run in the order they were registered: the first signal finds `asked` false.
        let registered = signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, asked.clone())
            .and_then(|_| signal_hook::flag::register(signal, asked.clone()))
            .and_then(|_| signal_hook::flag::register_usize(signal, stop.atomic(), signal as usize));
        if let Err(e) = registered {
            tracing::warn!(signal, error = %e, "cannot handle the signal; it ends the run at once");
        }
    }
}

/// Says an error on stderr: a line of text, or one JSON object with `--log-format json`.
fn say_error(format: LogFormat, message: &str, exit_code: i32) {
    let message = crate::store::redact::redact(message);
    match format {
        LogFormat::Text => eprintln!("s3logs: error: {message}"),
        LogFormat::Json => tracing::error!(target: "s3logs::error", exit_code, "{message}"),
    }
}

/// Says what a run did on stderr: the summary's lines, or one JSON object holding them and the
/// main counts with `--log-format json`.
fn say_summary(format: LogFormat, report: &Report) {
    match format {
        LogFormat::Text => eprint!("{}", report.summary()),
        LogFormat::Json => tracing::info!(
            target: "s3logs::summary",
            objects_read = report.objects_read,
            lines_read = report.lines_read,
            rows_written = report.rows_written,
            lines_rejected = report.lines_rejected,
            commits = report.commits.len(),
            committed = report.committed,
            duration_s = report.duration_s,
            "{}",
            report.summary().trim_end()
        ),
    }
}

fn convert(args: &ConvertArgs) -> i32 {
    let format = args.log_format;
    init_logs(format);
    let target = args.report.as_deref().map(ReportTarget::parse);
    let options = args.options();
    let store = options.as_ref().map(|o| o.store.clone()).unwrap_or_default();
    if let Some(t) = &target
        && let Err(e) = t.check(&store)
    {
        say_error(format, &format!("{e} (--report); nothing was done"), e.exit_code());
        return e.exit_code();
    }
    let (report, result) = match options {
        Ok(o) => {
            stop_on_signals(&o.stop);
            pipeline::run_reporting(&o)
        }
        Err(e) => (Report::default(), Err(e)),
    };
    // With `--report -` the report is standard output's, and it lists the objects anyway.
    if report.dry_run && target != Some(ReportTarget::Stdout) {
        for o in &report.would_convert {
            println!("{}\t{}", o.name, o.size);
        }
    }
    // The summary says what was done: on success, when a batch was refused for its rejects, and
    // when objects were quarantined (the rest was committed).
    let done = matches!(
        result,
        Ok(()) | Err(Error::TooManyRejects { .. } | Error::Quarantined { .. } | Error::UnitsBusy { .. })
    );
    if !args.quiet && done {
        say_summary(format, &report);
    }
    // The report is written whatever the outcome: a scheduler reads what was committed.
    if let Some(t) = &target
        && let Err(e) = t.write(&report, &store)
    {
        say_error(format, &format!("{e} (--report)"), EXIT_IO);
        if result.is_ok() {
            return EXIT_IO;
        }
    }
    match result {
        Ok(()) => EXIT_OK,
        Err(e) => {
            say_error(format, &e.to_string(), e.exit_code());
            e.exit_code()
        }
    }
}

/// Parses the command line, runs the command, and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() && json_logs_asked() => {
            // A scheduler parsing JSON logs gets the usage error as one JSON object too.
            init_logs(LogFormat::Json);
            let message = e.render().to_string();
            say_error(LogFormat::Json, message.trim_end(), e.exit_code());
            return e.exit_code();
        }
        Err(e) => e.exit(),
    };
    match &cli.command {
        Command::Convert(args) => convert(args),
        Command::Ddl(args) => print_ddl(args),
        Command::Status(args) => {
            let opts = StoreOptions {
                endpoint_url: args.endpoint_url.clone(),
                region: args.region.clone(),
                ..StoreOptions::default()
            };
            print_or_fail(crate::status::render(&args.dest, &opts, args.json))
        }
        Command::Plan(args) => print_or_fail(args.run()),
        Command::State(cmd) => print_or_fail(cmd.run()),
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_ratio, parse_size};

    #[test]
    fn ratios_parse_as_shares_or_percentages() {
        assert_eq!(parse_ratio("0.05"), Ok(0.05));
        assert_eq!(parse_ratio("5%"), Ok(0.05));
        assert_eq!(parse_ratio(" 12.5 %"), Ok(0.125));
        assert_eq!(parse_ratio("1"), Ok(1.0));
        assert!(parse_ratio("five").is_err());
        assert!(parse_ratio("%").is_err());
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
    }
}
