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

/// The state folder in `dest` of the one unit the sample logs in `testdata/logs` make up.
pub fn sample_unit_state(dest: &std::path::Path) -> std::path::PathBuf {
    let sample =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/logs/2024-03-15-00-10-11-4C3B2A1908F7E6D5");
    unit_state(dest, &std::fs::canonicalize(sample).unwrap().to_string_lossy())
}
