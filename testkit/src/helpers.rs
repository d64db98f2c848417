//! Helpers the integration tests share: Parquet rows as JSON maps (so tests compare whole rows),
//! line identities, corpora on disk, a seeded random source and the kill harness.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use serde_json::{Map, Value};

/// `2019-02-06T00:00:38Z` (chrono, independent of the crate's own date code).
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Every row of the Parquet file at `path`, in file order.
pub fn file_rows(path: &std::path::Path) -> Vec<Map<String, Value>> {
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    reader.flat_map(|b| rows(&b.unwrap())).collect()
}

pub fn rows(batch: &RecordBatch) -> Vec<Map<String, Value>> {
    let schema = batch.schema();
    (0..batch.num_rows())
        .map(|i| {
            let mut m = Map::new();
            for (f, col) in schema.fields().iter().zip(batch.columns()) {
                let v = if col.is_null(i) {
                    Value::Null
                } else {
                    match f.data_type() {
                        DataType::Utf8 => Value::from(col.as_string::<i32>().value(i)),
                        DataType::Int32 => Value::from(col.as_primitive::<Int32Type>().value(i)),
                        DataType::Int64 => Value::from(col.as_primitive::<Int64Type>().value(i)),
                        DataType::Timestamp(..) => {
                            Value::from(iso(col.as_primitive::<TimestampMillisecondType>().value(i)))
                        }
                        DataType::Binary => {
                            Value::from(String::from_utf8_lossy(col.as_binary::<i32>().value(i)).into_owned())
                        }
                        other => panic!("unexpected type {other}"),
                    }
                };
                m.insert(f.name().clone(), v);
            }
            m
        })
        .collect()
}

/// `(source_object, source_line)` of every row or reject in the Parquet files under `dir`, sorted.
pub fn line_ids(dir: &std::path::Path) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for entry in walkdir_files(dir) {
        let file = std::fs::File::open(&entry).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap_or_else(|e| panic!("{} is not a complete Parquet file: {e}", entry.display()))
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let objects = batch.column_by_name("source_object").unwrap().as_string::<i32>().clone();
            let lines = batch.column_by_name("source_line").unwrap().as_primitive::<Int64Type>().clone();
            for i in 0..batch.num_rows() {
                out.push((objects.value(i).to_string(), lines.value(i)));
            }
        }
    }
    out.sort();
    out
}

/// Every file under `dir` (none when it does not exist).
pub fn walkdir_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out.sort();
    out
}

/// Writes `n` generated objects (about 1% malformed lines) into `dir`, deterministic from
/// `seed`; returns each object's file name, path and bytes.
pub fn write_corpus(
    dir: &std::path::Path,
    n: usize,
    bytes: u64,
    seed: u64,
) -> Vec<(String, std::path::PathBuf, Vec<u8>)> {
    use crate::corpus::{CorpusSpec, object};
    std::fs::create_dir_all(dir).unwrap();
    let spec = CorpusSpec { seed, total_bytes: bytes, objects: n, malformed_ratio: 0.01, ..CorpusSpec::default() };
    (0..n)
        .map(|i| {
            let (name, body, _) = object(&spec, i);
            let path = dir.join(&name);
            std::fs::write(&path, &body).unwrap();
            (name, path, body)
        })
        .collect()
}

/// What a complete conversion of `objects` (name, bytes) holds: each line number once.
pub fn expected_ids(objects: &[(String, Vec<u8>)]) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for (name, bytes) in objects {
        let n = bytes.iter().filter(|&&b| b == b'\n').count() + usize::from(bytes.last().is_some_and(|&b| b != b'\n'));
        out.extend((1..=n as i64).map(|l| (name.clone(), l)));
    }
    out.sort();
    out
}

/// A small deterministic generator for kill moments (xorshift).
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Runs `cmd()` again and again: the first `kills` runs are killed with SIGKILL at a random moment
/// within `window` (a run that ends first is simply done, and the window shrinks to how long it
/// took); then runs go to completion until one exits 0. `after_kill` checks the table between
/// runs. Returns how many runs were killed.
pub fn run_with_kills(
    cmd: impl Fn() -> std::process::Command,
    kills: usize,
    window: std::time::Duration,
    rng: &mut Rng,
    mut after_kill: impl FnMut(),
) -> usize {
    let (mut killed, mut window) = (0, window);
    for _ in 0..kills {
        let mut child = cmd().stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        let started = std::time::Instant::now();
        let at = std::time::Duration::from_millis(rng.below(window.as_millis().max(1) as u64));
        let deadline = started + at;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if std::time::Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        };
        if status.is_none() {
            child.kill().unwrap();
            child.wait().unwrap();
            killed += 1;
        } else {
            // It finished before its moment: runs take this long here now (the machine is busier
            // or idler than when the window was measured, or less is left to do), so the next
            // kill is drawn within that.
            window = started.elapsed();
        }
        after_kill();
    }
    for attempt in 0..5 {
        let out = cmd().output().unwrap();
        if out.status.success() {
            return killed;
        }
        assert!(attempt < 4, "no clean run after the kills: {}", String::from_utf8_lossy(&out.stderr));
    }
    killed
}
