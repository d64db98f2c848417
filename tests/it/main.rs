//! The integration tests, one binary with a module per area: the CLI as a user runs it, the DDL
//! on real engines' terms, the parsers against real lines and properties, S3 against a real S3 API
//! (moto on loopback), and scheduled runs (kills, leases, recovery).

mod backfill;
mod cli;
mod ddl;
mod parser;
mod s3;
mod scheduled;

/// The state folder in `dest` of the unit of the log object named `object` (a path or URL).
pub fn unit_state(dest: &std::path::Path, object: &str) -> std::path::PathBuf {
    dest.join("_state/units").join(s3logs::unit_of(object))
}

/// Waits (up to 30 s) until a run holds the lease of the unit whose state folder is `unit_state`:
/// a generation's `.json` is there. A lease is written to a temporary file first and then linked
/// into place, so "the folder is not empty" is not yet "the lease is taken".
pub fn wait_for_lease(unit_state: &std::path::Path) {
    let lease = unit_state.join("lease");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !s3logs_testkit::helpers::walkdir_files(&lease).iter().any(|p| p.extension().is_some_and(|e| e == "json")) {
        assert!(std::time::Instant::now() < deadline, "the holder never took the lease");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The state folder in `dest` of the one unit the sample logs in `testdata/logs` make up.
pub fn sample_unit_state(dest: &std::path::Path) -> std::path::PathBuf {
    let sample =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/logs/2024-03-15-00-10-11-4C3B2A1908F7E6D5");
    unit_state(dest, &std::fs::canonicalize(sample).unwrap().to_string_lossy())
}
