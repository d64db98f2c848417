//! Crash points for testing the commit protocol: with `S3LOGS_CRASH_AT=<point>:<n>` in the
//! environment, the process aborts (as abruptly as `kill -9`: no cleanup, no lease release) the
//! n-th time it reaches `<point>`. Unset, a crash point is one relaxed atomic load.
//!
//! Points, in protocol order: `uploading` (one part of a multipart upload to an S3 staging area
//! is stored, the upload not completed), `staged` (a batch's files are in the staging area, no commit
//! record yet), `committed` (the record exists, nothing published), `publishing` (one file
//! published, the others not), `published` (all published, staging not yet emptied).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
static SEEN: AtomicU64 = AtomicU64::new(0);

/// Aborts the process if this is the configured crash point's n-th visit.
pub fn reached(point: &str) {
    let target = TARGET.get_or_init(|| {
        let v = std::env::var("S3LOGS_CRASH_AT").ok()?;
        let (name, n) = v.split_once(':').unwrap_or((&v, "1"));
        Some((name.to_string(), n.parse().unwrap_or(1)))
    });
    if let Some((name, n)) = target
        && name == point
        && SEEN.fetch_add(1, Ordering::SeqCst) + 1 == *n
    {
        eprintln!("s3logs: crash point {point} reached (S3LOGS_CRASH_AT); aborting");
        std::process::abort();
    }
}
