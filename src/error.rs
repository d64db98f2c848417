//! The errors a run can end with, and the one place that maps them to exit codes.
//!
//! Each error names where it happened (the object or file path) and, for data problems, what was
//! wrong. Messages include their cause inline, so `main` prints one line.

use std::io;
use std::path::Path;

/// Exit code for success.
pub const EXIT_OK: i32 = 0;
/// Exit code for a usage error (bad flag or value); clap uses the same code.
pub const EXIT_USAGE: i32 = 2;
/// Exit code when more lines were rejected than `--max-reject-ratio` allows (sysexits EX_DATAERR).
pub const EXIT_TOO_MANY_REJECTS: i32 = 65;
/// Exit code when a source lists no log object: a misspelled bucket prefix or an empty folder,
/// unless `--allow-empty` says that can be expected (sysexits EX_NOINPUT).
pub const EXIT_NOINPUT: i32 = 66;
/// Exit code when some objects could not be read (corrupt, unreadable) and were quarantined:
/// everything else was committed; retrying does not help until they are fixed (sysexits
/// EX_UNAVAILABLE).
pub const EXIT_QUARANTINED: i32 = 69;
/// Exit code for a broken invariant: a bug in s3logs, not a problem with the input or the
/// environment (sysexits EX_SOFTWARE).
pub const EXIT_SOFTWARE: i32 = 70;
/// Exit code when the operating system refused a resource (threads), not the input, the output or
/// a bug (sysexits EX_OSERR).
pub const EXIT_OSERR: i32 = 71;
/// Exit code when another run holds DEST's lease (or took it over): nothing was committed by
/// this run; the other run is converting the same objects (sysexits EX_CANTCREAT).
pub const EXIT_BUSY: i32 = 73;
/// Exit code for an I/O failure: unreadable input, unwritable output (sysexits EX_IOERR).
pub const EXIT_IO: i32 = 74;
/// Exit code when the Glue catalog was not brought up to date although the data was committed:
/// the next run registers the partitions (sysexits EX_PROTOCOL).
pub const EXIT_CATALOG: i32 = 76;
/// Exit code for a failure that retrying did not cure but a later run may (throttling, server
/// errors, timeouts): "temporary failure, retry later" (sysexits EX_TEMPFAIL).
pub const EXIT_TEMPFAIL: i32 = 75;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error(
        "the Glue table {table} was not brought up to date: {cause}. What was committed stays; the next run \
         registers its partitions"
    )]
    Catalog { table: String, cause: String },
    #[error("cannot read {path}: {cause}")]
    Read {
        path: String,
        #[source]
        cause: io::Error,
    },
    #[error("cannot read {url}: {cause}")]
    Store { url: String, cause: String },
    #[error(
        "{url} lists no log object{range}: check the bucket, prefix or folder (and --since/--until), \
         or pass --allow-empty where an empty source is expected"
    )]
    NoInput { url: String, range: String },
    #[error("{url}: {cause} (retries exhausted; a later run may succeed)")]
    Temporary { url: String, cause: String },
    #[error("cannot decompress {path} ({format}): {cause}")]
    Decompress {
        path: String,
        format: &'static str,
        #[source]
        cause: io::Error,
    },
    #[error("cannot write {path}: {cause}")]
    Write {
        path: String,
        #[source]
        cause: io::Error,
    },
    #[error("cannot write Parquet file {path}: {cause}")]
    Parquet {
        path: String,
        #[source]
        cause: parquet::errors::ParquetError,
    },
    /// A broken invariant: a bug, whatever the input.
    #[error("internal error: {0} (a bug in s3logs; please report it)")]
    Internal(String),
    /// The operating system refused what the run needs (a thread).
    #[error("{what}: {cause}")]
    System { what: &'static str, cause: String },
    #[error(
        "{dest} is being converted by another run ({holder}; its lease expires in {expires_in_s}s if not \
         renewed); nothing was done. Try again later, or wait with --lease-wait"
    )]
    Busy { dest: String, holder: String, expires_in_s: u64 },
    #[error(
        "{dest}: this run's lease was lost or could not be renewed in time (another run may have taken \
         over); stopped before committing. Nothing is lost: the next run converts what was left"
    )]
    LeaseLost { dest: String },
    #[error(
        "other runs hold {count} of the units listed (e.g. {first}); this run converted the rest. Try again \
         later: a retry converts what they leave"
    )]
    UnitsBusy { count: usize, first: String },
    #[error("the state in {path} cannot be read: {cause}")]
    State { path: String, cause: String },
    #[error("{0}")]
    CommittedFilesMissing(Box<LostFiles>),
    #[error(
        "{count} object{} could not be read and {} quarantined, e.g. {first}; everything else was committed. \
         Fix or replace them (a changed object is read again), or run with --retry-quarantined",
        if *count == 1 { "" } else { "s" },
        if *count == 1 { "was" } else { "were" }
    )]
    Quarantined { count: usize, first: String },
    #[error(
        "{dest}: batch {seq} is committed, but publishing its files into the table failed: {cause}. Nothing is \
         lost: the next run publishes them"
    )]
    Unpublished {
        dest: String,
        seq: u64,
        #[source]
        cause: Box<Error>,
    },
    #[error(
        "{rejected} of {lines} lines were rejected ({ratio:.4}), over --max-reject-ratio {max} and more than \
         --max-rejects {floor}; that batch was not committed (first reject: {first})"
    )]
    TooManyRejects { rejected: u64, lines: u64, ratio: f64, max: f64, floor: u64, first: String },
    #[error(
        "stopped by {} at a safe point: the batch being made was not committed (batches committed \
         before it stay), and DEST's lease was released",
        signal_name(*signal)
    )]
    Stopped { signal: i32 },
}

/// A committed batch whose files are not all in the table, and why its rows cannot be put back.
#[derive(Debug)]
pub struct LostFiles {
    pub dest: String,
    pub seq: u64,
    pub batch: String,
    pub missing: usize,
    pub total: usize,
    /// The first few missing files.
    pub files: String,
    pub why: String,
    /// The commit record's path.
    pub record: String,
}

impl std::fmt::Display for LostFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let LostFiles { dest, seq, batch, missing, total, files, why, record } = self;
        write!(
            f,
            "{dest}: commit {seq} (batch {batch}) is recorded, but {missing} of its {total} files are neither in \
             the table nor staged ({files}); {why}. Its rows are not in the table: restore those files, or remove \
             the batch's other files and its record {record} so that its objects are converted again"
        )
    }
}

impl Error {
    pub fn read(path: impl AsRef<Path>, cause: io::Error) -> Self {
        Error::Read { path: path.as_ref().display().to_string(), cause }
    }

    pub fn write(path: impl AsRef<Path>, cause: io::Error) -> Self {
        Error::Write { path: path.as_ref().display().to_string(), cause }
    }

    pub fn parquet(path: impl AsRef<Path>, cause: parquet::errors::ParquetError) -> Self {
        Error::Parquet { path: path.as_ref().display().to_string(), cause }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => EXIT_USAGE,
            Error::Internal(_) => EXIT_SOFTWARE,
            Error::System { .. } => EXIT_OSERR,
            Error::Read { .. }
            | Error::Store { .. }
            | Error::Decompress { .. }
            | Error::Write { .. }
            | Error::Parquet { .. }
            | Error::State { .. }
            | Error::CommittedFilesMissing(_) => EXIT_IO,
            Error::Busy { .. } | Error::LeaseLost { .. } | Error::UnitsBusy { .. } => EXIT_BUSY,
            Error::TooManyRejects { .. } => EXIT_TOO_MANY_REJECTS,
            Error::NoInput { .. } => EXIT_NOINPUT,
            // As a shell reports a process ended by the signal: 143 for SIGTERM, 130 for SIGINT.
            Error::Stopped { signal } => 128 + signal,
            Error::Quarantined { .. } => EXIT_QUARANTINED,
            Error::Catalog { .. } => EXIT_CATALOG,
            Error::Temporary { .. } | Error::Unpublished { .. } => EXIT_TEMPFAIL,
        }
    }
}

fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGINT => "SIGINT".into(),
        n => format!("signal {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kind of failure has its own code, and a bug is not a usage error.
    #[test]
    fn exit_codes_tell_kinds_of_failure_apart() {
        let io = || io::Error::other("x");
        let codes = [
            (Error::Usage("x".into()), EXIT_USAGE),
            (Error::Internal("x".into()), EXIT_SOFTWARE),
            (Error::System { what: "cannot start parser threads", cause: "x".into() }, EXIT_OSERR),
            (Error::read("f", io()), EXIT_IO),
            (Error::TooManyRejects { rejected: 2, lines: 3, ratio: 0.6, max: 0.5, floor: 1, first: String::new() }, 65),
            (Error::Quarantined { count: 1, first: "f".into() }, EXIT_QUARANTINED),
            (Error::NoInput { url: "s".into(), range: String::new() }, EXIT_NOINPUT),
            (Error::LeaseLost { dest: "d".into() }, EXIT_BUSY),
            (Error::Temporary { url: "u".into(), cause: "c".into() }, EXIT_TEMPFAIL),
        ];
        for (e, code) in codes {
            assert_eq!(e.exit_code(), code, "{e}");
        }
        assert_eq!(EXIT_SOFTWARE, 70);
        // The cause stays reachable, not only in the message.
        let e = Error::write("f", io());
        assert!(std::error::Error::source(&e).is_some());
    }
}
