//! End-to-end tests of the `s3logs` binary as a user runs it: convert the shipped sample, read the
//! Parquet back with the parquet crate, check the report, the rejects, the exit codes, and that the
//! same input gives the same files.

use s3logs_testkit::helpers as common;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, LogicalType, TimeUnit, Type as PhysicalType};
use serde_json::{Map, Value};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_s3logs"))
}

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/logs")
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

fn convert(src: &Path, dest: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["convert", src.to_str().unwrap(), "--output", dest.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(&args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every file below `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walk(dir).iter().map(|p| p.strip_prefix(dir).unwrap().display().to_string()).collect();
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
        }
    }
    out
}

/// All rows of all Parquet files under `dir`, with `dt` from the folder name, sorted by object and line.
fn read_rows(dir: &Path) -> Vec<Map<String, Value>> {
    let mut rows = Vec::new();
    for path in walk(dir) {
        let dt = path.parent().unwrap().file_name().unwrap().to_str().unwrap().strip_prefix("dt=").map(str::to_string);
        for mut r in common::file_rows(&path) {
            if let Some(dt) = &dt {
                r.insert("dt".into(), Value::from(dt.as_str()));
            }
            rows.push(r);
        }
    }
    rows.sort_by_key(|r| (r["source_object"].as_str().unwrap().to_string(), r["source_line"].as_i64().unwrap()));
    rows
}

const OBJ_A: &str = "2024-03-15-00-10-11-4C3B2A1908F7E6D5";
const OBJ_B: &str = "2024-03-15-02-20-45-9E8D7C6B5A493827";
const OBJ_C: &str = "2024-03-15-13-00-02-0A1B2C3D4E5F6071.gz";

#[test]
fn converts_the_sample_into_typed_partitioned_parquet() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    let report_path = tmp.path().join("report.json");
    let out = convert(&testdata(), &dest, &["--report", report_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("24 lines") && err.contains("23 rows") && err.contains("1 line rejected"), "{err}");

    // Layout: only data Parquet under data/, one file per date; rejects beside it; no staging left.
    let files = files_under(&dest);
    let data: Vec<&String> = files.iter().filter(|f| f.starts_with("data/")).collect();
    assert_eq!(data.len(), 2, "{files:?}");
    assert!(data[0].starts_with("data/dt=2024-03-14/part-") && data[0].ends_with(".parquet"));
    assert!(data[1].starts_with("data/dt=2024-03-15/part-") && data[1].ends_with(".parquet"));
    assert_eq!(files.iter().filter(|f| f.starts_with("rejects/part-")).count(), 1);
    let table: Vec<&String> = files.iter().filter(|f| !f.starts_with("_state/")).collect();
    assert_eq!(table.len(), 3, "nothing else is written outside the state: {files:?}");
    let commit = crate::sample_unit_state(&dest).join("commits/00000000000000000001.json");
    assert!(commit.is_file(), "{files:?}");

    // Physical types as Athena wants them.
    let file = File::open(dest.join(data[0])).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let meta = builder.metadata();
    let schema = meta.file_metadata().schema_descr();
    let ts = schema.columns().iter().find(|c| c.name() == "requestdatetime").unwrap();
    assert_eq!(ts.physical_type(), PhysicalType::INT64);
    assert_eq!(ts.logical_type_ref(), Some(&LogicalType::timestamp(true, TimeUnit::MILLIS)));
    let status = schema.columns().iter().find(|c| c.name() == "httpstatus").unwrap();
    assert_eq!(status.physical_type(), PhysicalType::INT32);
    assert!(schema.columns().iter().all(|c| c.name() != "dt"), "dt lives only in the folder name");
    for rg in meta.row_groups() {
        for c in rg.columns() {
            assert!(matches!(c.compression(), Compression::ZSTD(_)), "{} is {:?}", c.column_path(), c.compression());
            assert!(c.statistics().is_some(), "{} has statistics", c.column_path());
            assert!(c.column_index_range().is_none() && c.offset_index_range().is_none(), "no page index");
        }
    }

    // Rows, read back: spot values written out from the sample's records.
    let rows = read_rows(&dest.join("data"));
    assert_eq!(rows.len(), 23);
    let by = |obj: &str, line: i64| {
        rows.iter()
            .find(|r| r["source_object"].as_str().unwrap().ends_with(obj) && r["source_line"] == line)
            .unwrap_or_else(|| panic!("no row {obj}:{line}"))
    };
    let a1 = by(OBJ_A, 1);
    assert_eq!(a1["dt"], "2024-03-14");
    assert_eq!(a1["requestdatetime"], "2024-03-14T23:41:02Z");
    assert_eq!(a1["requester"], "arn:aws:iam::111122223333:user/alice");
    assert_eq!(a1["bytessent"], 48213);
    assert_eq!(a1["sourceregion"], "us-east-1");
    assert_eq!(a1["source_object"], testdata().canonicalize().unwrap().join(OBJ_A).display().to_string());
    assert_eq!(by(OBJ_A, 2)["useragent"], "\"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36");
    assert_eq!(by(OBJ_A, 2)["remoteip"], "2001:db8::1");
    assert_eq!(by(OBJ_A, 4)["requester"], "arn:aws:iam::cloudfront:user/CloudFront Origin Access Identity E2EXAMPLEID");
    assert_eq!(by(OBJ_A, 4)["dt"], "2024-03-15");
    assert_eq!(by(OBJ_A, 7)["requesturi_key"], "/example-app-assets/secret/\"");
    assert_eq!(by(OBJ_B, 2)["operation"], "BATCH.DELETE.OBJECT");
    assert_eq!(by(OBJ_B, 2)["requesturi_operation"], Value::Null);
    assert_eq!(by(OBJ_B, 4)["requestdatetime"], "2024-03-15T02:15:00Z", "+0100 converted to UTC");
    assert_eq!(by(OBJ_B, 5)["httpstatus"], Value::Null);
    assert_eq!(by(OBJ_B, 6)["versionid"], Value::Null);
    assert_eq!(by(OBJ_B, 6)["hostid"], Value::Null, "an 18-field record");
    assert_eq!(by(OBJ_B, 7)["extrafields"], "- newfield=1");
    assert_eq!(by(OBJ_B, 8)["useragent"], "etl-loader/1.0 \u{fffd}");
    assert_eq!(by(OBJ_B, 9)["endpoint"], "example-app-uploads.s3.us-east-1.amazonaws.com", "no \\r from CRLF");
    assert_eq!(by(OBJ_C, 7)["operation"], "REST.COPY.OBJECT");

    // Rejects: the truncated line of the gzip object, with its raw bytes.
    let rejects = read_rows(&dest.join("rejects"));
    assert_eq!(rejects.len(), 1);
    assert!(rejects[0]["source_object"].as_str().unwrap().ends_with(OBJ_C));
    assert_eq!(rejects[0]["source_line"], 4);
    assert_eq!(rejects[0]["reason_code"], "truncated");
    assert!(rejects[0]["raw_line"].as_str().unwrap().ends_with("HTTP/1.1\" 200 -"));

    // The report agrees with what is on disk.
    let report: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(report["objects_read"], 3);
    assert_eq!(report["lines_read"], 24);
    assert_eq!(report["rows_written"], 23);
    assert_eq!(report["lines_rejected"], 1);
    assert_eq!(report["lines_lossy_utf8"], 1);
    assert_eq!(report["reject_reasons"]["truncated"], 1);
    assert_eq!(report["committed"], true);
    assert!(report["duration_s"].as_f64().unwrap() >= 0.0);
    let written = report["files_written"].as_array().unwrap();
    assert_eq!(written.iter().map(|f| f["rows"].as_u64().unwrap()).sum::<u64>(), 23);
    assert_eq!(written.iter().map(|f| f["rows"].as_u64().unwrap()).collect::<Vec<_>>(), vec![3, 20]);
    for f in written {
        let p = dest.join(f["path"].as_str().unwrap());
        assert_eq!(std::fs::metadata(&p).unwrap().len(), f["bytes"].as_u64().unwrap());
        assert_eq!(f["dt"], p.parent().unwrap().file_name().unwrap().to_str().unwrap().strip_prefix("dt=").unwrap());
    }
    assert!(report["bytes_read"].as_u64().unwrap() > 0);
}

#[test]
fn same_input_gives_the_same_files_and_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let (d1, d2) = (tmp.path().join("one"), tmp.path().join("two"));
    // One thread and direct writes, two threads and writes through the page cache.
    assert!(convert(&testdata(), &d1, &["--threads", "1"]).status.success());
    assert!(convert(&testdata(), &d2, &["--threads", "2", "--buffered-writes"]).status.success());
    let table = |d: &Path| -> Vec<String> {
        files_under(d).into_iter().filter(|f| f.starts_with("data/") || f.starts_with("rejects/")).collect()
    };
    let (f1, f2) = (table(&d1), table(&d2));
    assert_eq!(f1, f2);
    for f in &f1 {
        assert_eq!(std::fs::read(d1.join(f)).unwrap(), std::fs::read(d2.join(f)).unwrap(), "{f} differs");
    }
    // Converting again into the same place converts nothing: every object is in the ledger.
    let state_before = files_under(&d1.join("_state"));
    let out = convert(&testdata(), &d1, &[]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("nothing new: 3 objects listed"), "{}", stderr(&out));
    assert_eq!(files_under(&d1.join("_state")), state_before, "a run with nothing to do writes nothing");
    assert_eq!(table(&d1), f1);
    assert_eq!(read_rows(&d1.join("data")).len(), 23);
}

/// A larger object: several chunks, several row groups and rolled files, across three dates.
#[test]
fn a_large_object_is_chunked_and_files_roll_at_the_target_size() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("big.log");
    let mut f = std::io::BufWriter::new(File::create(&src).unwrap());
    let n = 30_000;
    for i in 0..n {
        let (day, secs) = (10 + i * 3 / n, i % 86_400);
        writeln!(
            f,
            "owner bkt [{day:02}/Jan/2024:{:02}:{:02}:{:02} +0000] 192.0.2.{} - REQ{i:013} REST.GET.OBJECT k/{i} \
             \"GET /bkt/k/{i} HTTP/1.1\" 200 - {i} {i} 5 4 \"-\" \"agent {i}\" - host{i} SigV4 C AuthHeader h TLSv1.2",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            i % 250
        )
        .unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let dest = tmp.path().join("out");
    let out = convert(&src, &dest, &["--target-file-size", "64KiB", "--row-group-rows", "2000"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let files = files_under(&dest.join("data"));
    for dt in ["dt=2024-01-10", "dt=2024-01-11", "dt=2024-01-12"] {
        let per_date = files.iter().filter(|f| f.starts_with(dt)).count();
        assert!(per_date >= 2, "{dt} should have rolled into several files: {files:?}");
    }
    let rows = read_rows(&dest.join("data"));
    assert_eq!(rows.len(), n);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["source_line"], i as i64 + 1, "every line exactly once");
        assert_eq!(r["bytessent"], i as i64);
    }
    let file = File::open(dest.join("data").join(&files[0])).unwrap();
    let meta = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().metadata().clone();
    assert!(meta.num_row_groups() >= 2 && meta.row_groups().iter().all(|rg| rg.num_rows() <= 2000));
}

#[test]
fn stdin_and_zstd_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = std::fs::read(testdata().join(OBJ_A)).unwrap();
    let dest = tmp.path().join("from-stdin");
    let mut child = bin()
        .args(["convert", "-", "--output", dest.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&plain).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = read_rows(&dest.join("data"));
    assert_eq!(rows.len(), 8);
    assert!(rows.iter().all(|r| r["source_object"] == "stdin"));
    // Each standard-input run counts in `status`, as its own entry (it has no identity to skip).
    let status = |dest: &Path| -> Value {
        let out = run(&["status", dest.to_str().unwrap(), "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let s = status(&dest);
    assert_eq!((s["objects"].as_u64(), s["rows"].as_u64(), s["lines"].as_u64()), (Some(1), Some(8), Some(8)), "{s}");
    let mut again = bin()
        .args(["convert", "-", "--output", dest.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    again.stdin.take().unwrap().write_all(&plain).unwrap();
    assert!(again.wait_with_output().unwrap().status.success());
    let s = status(&dest);
    assert_eq!((s["objects"].as_u64(), s["rows"].as_u64()), (Some(2), Some(16)), "{s}");
    assert_eq!(read_rows(&dest.join("data")).len(), 16);

    let zst = tmp.path().join("obj.zst");
    std::fs::write(&zst, zstd::stream::encode_all(plain.as_slice(), 3).unwrap()).unwrap();
    let dest = tmp.path().join("from-zstd");
    assert!(convert(&zst, &dest, &[]).status.success());
    let rows = read_rows(&dest.join("data"));
    assert_eq!(rows.len(), 8);
    assert_eq!(rows[6]["requesturi_key"], "/example-app-assets/secret/\"");
}

#[test]
fn too_many_rejects_fails_with_its_own_code_and_commits_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("junk.log");
    let good = std::fs::read_to_string(testdata().join(OBJ_A)).unwrap();
    std::fs::write(&src, format!("{good}not a log line\nnor this\n")).unwrap();
    let dest = tmp.path().join("out");
    let report = tmp.path().join("r.json");
    // Under the default floor (100 rejects) the ratio does not apply: 2 odd lines in 10 pass.
    let floor = tmp.path().join("floor");
    let out = convert(&src, &floor, &["--max-reject-ratio", "10%"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_rows(&floor.join("rejects")).len(), 2);
    // At --max-rejects 1 they are over it, and 20% is over 10%.
    let args = ["--max-reject-ratio", "10%", "--max-rejects", "1", "--report", report.to_str().unwrap()];
    let out = convert(&src, &dest, &args);
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(stderr(&out).contains("2 of 10 lines were rejected"), "{}", stderr(&out));
    assert!(stderr(&out).contains("over --max-reject-ratio 0.1 and more than --max-rejects 1"), "{}", stderr(&out));
    assert!(stderr(&out).contains("junk.log:9"), "names the first rejected line: {}", stderr(&out));
    let left: Vec<String> =
        files_under(&dest).into_iter().filter(|f| !(f.starts_with("_state/units/") && f.contains("/lease/"))).collect();
    assert_eq!(left, Vec::<String>::new(), "nothing committed, nothing staged, only the released lease");
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(
        (r["lines_read"].as_u64(), r["lines_rejected"].as_u64(), r["committed"].as_bool()),
        (Some(10), Some(2), Some(false))
    );

    // The same input under a looser gate converts.
    let out = convert(&src, &dest, &["--max-reject-ratio", "0.25", "--max-rejects", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_rows(&dest.join("data")).len(), 8);
    assert_eq!(read_rows(&dest.join("rejects")).len(), 2);
}

/// The gate looks at each batch on its own: a batch over the ratio stops the run after the
/// batches before it were committed, and the error's sample is one of its own lines, not the
/// first reject of the run (which an earlier batch, under the ratio, had).
#[test]
fn the_reject_gate_counts_and_samples_the_batch_it_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("logs");
    std::fs::create_dir(&src).unwrap();
    let good = std::fs::read_to_string(testdata().join(OBJ_A)).unwrap();
    std::fs::write(src.join("a-mostly-good.log"), format!("{good}{good}{good}not a log line\n")).unwrap();
    std::fs::write(src.join("b-junk.log"), "junk\nmore junk\nstill junk\n").unwrap();
    let dest = tmp.path().join("out");
    let report = tmp.path().join("r.json");
    let args =
        ["--max-reject-ratio", "0.1", "--max-rejects", "0", "--batch-size", "1", "--report", report.to_str().unwrap()];
    let out = convert(&src, &dest, &args);
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    let err = stderr(&out);
    let error = err.lines().find(|l| l.starts_with("s3logs: error:")).unwrap_or_default();
    assert!(error.contains("3 of 3 lines were rejected") && error.contains("b-junk.log:1"), "{err}");
    assert!(error.contains("that batch was not committed"), "{err}");
    assert!(err.contains("stopped after 1 committed batch (commits 1)"), "{err}");
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["commits"], serde_json::json!([1]));
    assert_eq!((r["lines_read"].as_u64(), r["lines_rejected"].as_u64()), (Some(28), Some(4)));
    assert_eq!(read_rows(&dest.join("data")).len(), 24);
}

/// Values that would make a run crawl or fail late are refused before anything is done.
#[test]
fn flag_values_out_of_range_are_refused_up_front() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    for (flag, value) in [
        ("--row-group-rows", "0"),
        ("--row-group-rows", "1000"),
        ("--zstd-level", "0"),
        ("--zstd-level", "23"),
        ("--threads", "0"),
        ("--concurrency", "0"),
        ("--upload-part-size", "1MiB"),
        ("--lease-ttl", "0"),
        ("--request-timeout", "0"),
        ("--max-reject-ratio", "five"),
        ("--target-file-size", "0"),
    ] {
        let out = convert(&testdata(), &dest, &[flag, value]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {}", stderr(&out));
        assert!(stderr(&out).contains(flag), "{flag} {value}: {}", stderr(&out));
        assert!(!dest.exists(), "{flag} {value}: nothing written");
    }
    let out =
        convert(&testdata(), &dest, &["--row-group-rows", "1024", "--zstd-level", "22", "--upload-part-size", "5MiB"]);
    assert!(out.status.success(), "the bounds themselves are allowed: {}", stderr(&out));
}

/// For schedulers: with `--log-format json` every stderr line is one JSON object, the summary
/// and errors (usage errors too) included; `--report -` puts the report alone on stdout; text
/// logs written to a file or pipe carry no colour codes.
#[test]
fn logs_and_reports_for_machines() {
    let tmp = tempfile::tempdir().unwrap();
    let json_lines = |o: &Output| -> Vec<Value> {
        let err = stderr(o);
        assert!(!err.trim().is_empty(), "something is said");
        err.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"))).collect()
    };
    let dest = tmp.path().join("out");
    let out = convert(&testdata(), &dest, &["--log-format", "json", "--report", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    let summary = lines.iter().find(|l| l["target"] == "s3logs::summary").expect("a summary object");
    assert_eq!(
        (summary["fields"]["rows_written"].as_u64(), summary["fields"]["committed"].as_bool()),
        (Some(23), Some(true))
    );
    assert!(summary["fields"]["message"].as_str().unwrap().contains("23 rows"));
    let report: Value = serde_json::from_slice(&out.stdout).expect("stdout is the report");
    assert_eq!((report["rows_written"].as_u64(), report["lines_read"].as_u64()), (Some(23), Some(24)));

    // A dry run's list is in the report, and stdout holds only the report.
    let out = convert(&testdata(), &tmp.path().join("dry"), &["--dry-run", "--report", "-"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("stdout is the report alone");
    assert_eq!(report["would_convert"].as_array().map(Vec::len), Some(3));

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = convert(&empty, &dest, &["--log-format", "json"]);
    assert_eq!(out.status.code(), Some(66));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!((lines[0]["level"].as_str(), lines[0]["fields"]["exit_code"].as_i64()), (Some("ERROR"), Some(66)));
    let out = convert(&testdata(), &dest, &["--log-format", "json", "--zstd-level", "99"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(json_lines(&out)[0]["fields"]["message"].as_str().unwrap().contains("--zstd-level"));

    let out = bin()
        .args(["convert", testdata().to_str().unwrap(), "--output", tmp.path().join("text").to_str().unwrap()])
        .env("RUST_LOG", "s3logs=info")
        .output()
        .unwrap();
    assert!(out.status.success() && stderr(&out).contains("committed"), "{}", stderr(&out));
    assert!(!stderr(&out).contains('\x1b'), "no colour codes in redirected logs: {:?}", stderr(&out));
}

/// A copied or moved folder of logs converted into the same DEST, or the same deliveries named
/// twice in one run: recognised by the delivery's file name and size, converted once, and
/// reported with both places. Files named otherwise are known by their path only.
#[test]
fn the_same_log_deliveries_from_a_second_place_are_converted_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (copy, dest) = (tmp.path().join("copy"), tmp.path().join("out"));
    std::fs::create_dir(&copy).unwrap();
    for f in std::fs::read_dir(testdata()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, copy.join(f.file_name().unwrap())).unwrap();
    }
    assert!(convert(&testdata(), &dest, &[]).status.success());
    let out = convert(&copy, &dest, &["--report", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["nothing_new"].as_bool(), report["objects_elsewhere"].as_array().map(Vec::len)),
        (Some(true), Some(3))
    );
    assert!(stderr(&out).contains("3 of them from another place"), "{}", stderr(&out));
    assert_eq!(read_rows(&dest.join("data")).len(), 23);

    // Both places in one run into a new DEST: the first is converted, the second reported.
    let both = tmp.path().join("both");
    let out =
        run(&["convert", testdata().to_str().unwrap(), copy.to_str().unwrap(), "--output", both.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_rows(&both.join("data")).len(), 23);
    assert!(stderr(&out).contains("3 objects converted before from another place"), "{}", stderr(&out));

    // A changed copy (another size) is another object; a file not named like a delivery is
    // known by its path.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let a = std::fs::read_to_string(testdata().join(OBJ_A)).unwrap();
    std::fs::write(other.join(OBJ_A), format!("{a}{a}")).unwrap();
    std::fs::write(other.join("plain.log"), &a).unwrap();
    std::fs::write(copy.join("plain.log"), &a).unwrap();
    let out = run(&["convert", other.to_str().unwrap(), copy.to_str().unwrap(), "--output", dest.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_rows(&dest.join("data")).len(), 23 + 16 + 8 + 8);
}

#[test]
fn io_and_usage_errors_are_one_clear_message_and_a_distinct_code() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");

    let missing = tmp.path().join("no-such-file.log");
    let out = convert(&missing, &dest, &[]);
    assert_eq!(out.status.code(), Some(74));
    let err = stderr(&out);
    assert!(err.contains("cannot read") && err.contains("no-such-file.log"), "{err}");
    assert_eq!(err.lines().count(), 1, "one message: {err}");
    assert!(!dest.join("data").exists());

    // The destination's parent is a file: nothing can be created there.
    let blocker = tmp.path().join("a-file");
    std::fs::write(&blocker, "x").unwrap();
    let out = convert(&testdata(), &blocker.join("out"), &[]);
    assert_eq!(out.status.code(), Some(74));
    assert!(stderr(&out).contains("cannot write") && stderr(&out).contains("a-file"), "{}", stderr(&out));

    let corrupt = tmp.path().join("broken.gz");
    std::fs::write(&corrupt, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3]).unwrap();
    let out = convert(&corrupt, &dest, &[]);
    // Quarantined: recorded with its reason, none of its lines in the table, exit 69.
    assert_eq!(out.status.code(), Some(69));
    assert!(stderr(&out).contains("broken.gz") && stderr(&out).contains("gzip"), "{}", stderr(&out));
    assert_eq!(files_under(&dest.join("data")), Vec::<String>::new());
    assert!(!dest.join("_staging").exists());

    let out = convert(&testdata(), &dest, &["--max-reject-ratio", "2"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["convert", "--output", dest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "a source is required");
    let out = convert(&testdata(), &dest, &["--target-file-size", "12 parsecs"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_directory_inside_the_output_is_not_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("logs");
    std::fs::create_dir(&src).unwrap();
    std::fs::copy(testdata().join(OBJ_A), src.join(OBJ_A)).unwrap();
    let dest = src.join("converted");
    assert!(convert(&src, &dest, &[]).status.success());
    // A second run over the same folder must not read its own Parquet output as logs.
    let out = convert(&src, &dest, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing new: 1 object listed"), "{}", stderr(&out));
}

/// The README's schema table is the field table's; `S3LOGS_BLESS=1 cargo test` rewrites it.
#[test]
fn readme_schema_table_is_generated_from_the_field_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme.find("<!-- schema:start -->\n").expect("schema start marker") + "<!-- schema:start -->\n".len();
    let end = readme.find("<!-- schema:end -->").expect("schema end marker");
    let table = s3logs::schema::markdown_table();
    if std::env::var_os("S3LOGS_BLESS").is_some() {
        std::fs::write(&path, format!("{}{table}{}", &readme[..start], &readme[end..])).unwrap();
        return;
    }
    assert_eq!(&readme[start..end], table, "README schema table is stale: run S3LOGS_BLESS=1 cargo test");
}

#[test]
fn since_and_until_filter_local_objects_by_the_date_in_their_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    let out = convert(&testdata(), &dest, &["--since", "2024-03-15", "--until", "2024-03-15", "--lookback-days", "0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("read 3 objects"), "{}", stderr(&out));
    // A range with no object in it is an error naming the source and the range (a scheduled job
    // must not stay green on a misspelled prefix), unless --allow-empty says it can happen.
    let later = tmp.path().join("later");
    let out = convert(&testdata(), &later, &["--since", "2024-03-16"]);
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("testdata/logs lists no log object with a key date from 2024-03-16 to "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!later.exists(), "nothing to convert, nothing written");
    let out = convert(&testdata(), &later, &["--since", "2024-03-16", "--allow-empty"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing to convert: the sources list no log object"), "{}", stderr(&out));
    assert!(!later.exists(), "nothing to convert, nothing written");

    // Each source is checked: an empty folder beside a full one is still an error.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out =
        run(&["convert", testdata().to_str().unwrap(), empty.to_str().unwrap(), "--output", later.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("{} lists no log object:", empty.display())), "{}", stderr(&out));
    let left: Vec<String> = files_under(&later)
        .into_iter()
        .filter(|f| !(f.starts_with("_state/units/") && f.contains("/lease/")))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "nothing committed, nothing staged");
    let out = convert(&testdata(), &later, &["--since", "2024-03-16", "--until", "2024-03-15"]);
    assert_eq!(out.status.code(), Some(2));
    let out = convert(&testdata(), &later, &["--since", "15/03/2024"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn json_logs_for_schedulers_and_listing_figures_in_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("r.json");
    let out = bin()
        .args(["convert", testdata().to_str().unwrap(), "--output", tmp.path().join("o").to_str().unwrap()])
        .args(["--quiet", "--log-format", "json", "--report", report.to_str().unwrap()])
        .env("RUST_LOG", "s3logs=info")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<Value> = stderr(&out).lines().map(|l| serde_json::from_str(l).expect("a JSON log line")).collect();
    let listed = lines.iter().find(|l| l["fields"]["message"] == "listed").expect("a 'listed' event");
    assert_eq!(listed["fields"]["objects"], 3);
    assert_eq!(listed["level"], "INFO");
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["listing"]["objects"], 3);
    assert_eq!(r["listing"]["bytes"], r["bytes_read"]);
    assert_eq!(r["fetch"]["objects"], 0, "local objects are not fetched");
    assert_eq!(r["retries"], 0);
}

/// A progress bar on a terminal (a pseudo-terminal made by `script`), and none when stderr is not one.
#[test]
fn progress_bar_only_on_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let cmd = format!(
        "{} convert {} --output {}",
        env!("CARGO_BIN_EXE_s3logs"),
        testdata().display(),
        tmp.path().join("tty").display()
    );
    let out = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().expect("script (util-linux)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("ETA"), "no progress bar on a terminal: {screen}");
    let piped = convert(&testdata(), &tmp.path().join("pipe"), &[]);
    assert!(!stderr(&piped).contains("ETA"), "{}", stderr(&piped));
}

/// An object larger than a window is streamed in blocks (plain and gzip), with the same rows,
/// rejects and line numbers as when it is held whole; a line longer than a block is rejected as it
/// streams past.
#[test]
fn large_objects_are_streamed_with_the_same_result() {
    use s3logs::{ConvertOptions, run};
    let tmp = tempfile::tempdir().unwrap();
    let spec = s3logs_testkit::corpus::CorpusSpec {
        total_bytes: 3 << 20,
        objects: 1,
        malformed_ratio: 0.01,
        ..Default::default()
    };
    let (_, mut bytes, exp) = s3logs_testkit::corpus::object(&spec, 0);
    let at = bytes.len() / 2 + memchr_newline(&bytes[bytes.len() / 2..]);
    bytes.splice(at..at, std::iter::repeat_n(b'x', 300_000).chain([b'\n']));
    bytes.pop(); // no newline after the last line
    let plain = tmp.path().join("plain/2024-03-15-00-00-00-PLAIN");
    std::fs::create_dir_all(plain.parent().unwrap()).unwrap();
    std::fs::write(&plain, &bytes).unwrap();
    let gz = tmp.path().join("gz/2024-03-15-00-00-00-PLAIN");
    std::fs::create_dir_all(gz.parent().unwrap()).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&bytes).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();

    let convert = |src: &Path, name: &str, window: u64| {
        let out = tmp.path().join(name);
        let opts = ConvertOptions {
            sources: vec![src.to_str().unwrap().to_string()],
            output: out.clone(),
            max_line_bytes: 64 << 10,
            window_bytes: window,
            max_reject_ratio: 1.0,
            ..ConvertOptions::default()
        };
        let report = run(&opts).unwrap();
        let strip = |mut r: Map<String, Value>| {
            r.remove("source_object");
            r
        };
        let data: Vec<_> = read_rows(&out.join("data")).into_iter().map(strip).collect();
        let rejects: Vec<_> = read_rows(&out.join("rejects")).into_iter().map(strip).collect();
        (report, data, rejects)
    };
    let (whole, whole_rows, whole_rejects) = convert(&plain, "whole", 64 << 20);
    let (streamed, streamed_rows, streamed_rejects) = convert(&plain, "streamed", 256 << 10);
    let (gzipped, gz_rows, gz_rejects) = convert(&gz, "gzipped", 64 << 10);

    assert_eq!(whole.lines_read, exp.lines + 1);
    assert_eq!(whole.rows_written, exp.records);
    assert_eq!(whole.lines_rejected, exp.malformed + 1);
    for r in [&streamed, &gzipped] {
        assert_eq!(
            (r.lines_read, r.rows_written, r.lines_rejected),
            (whole.lines_read, whole.rows_written, whole.lines_rejected)
        );
        assert_eq!(r.bytes_decompressed, bytes.len() as u64);
    }
    assert_eq!(streamed_rows, whole_rows);
    assert_eq!(gz_rows, whole_rows);
    assert_eq!(streamed_rejects, whole_rejects);
    assert_eq!(gz_rejects, whole_rejects);
    let long = whole_rejects.iter().find(|r| r["reason_code"] == "too_long").expect("the long line is a reject");
    assert_eq!(long["raw_line"].as_str().unwrap().len(), 64 << 10);
}

fn memchr_newline(b: &[u8]) -> usize {
    b.iter().position(|&c| c == b'\n').unwrap() + 1
}

#[test]
fn file_urls_are_local_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let src = format!("file://{}", testdata().display());
    let dest = format!("file://{}", tmp.path().join("out").display());
    let out = run(&["convert", &src, "--output", &dest]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_rows(&tmp.path().join("out/data")).len(), 23);
    let ddl = run(&["ddl", &dest]);
    assert!(
        String::from_utf8_lossy(&ddl.stdout)
            .contains(&format!("LOCATION '{}/out/data/'", tmp.path().canonicalize().unwrap().display()))
    );
    let out = run(&["convert", "gs://bucket/logs", "--output", &dest]);
    assert_eq!(out.status.code(), Some(2));
}

/// Small objects are parsed several to a thread into shared builders: every row must still carry
/// its own object's name and line number, and the files keep input order. Each line's request id
/// names its object and line, so a row given to the wrong object shows; an object of over 1 MiB
/// in the middle is cut into chunks of its own and splits the small ones into two groups.
#[test]
fn small_objects_parsed_together_keep_each_line_with_its_own_object() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("logs");
    std::fs::create_dir(&src).unwrap();
    let mut expected = std::collections::BTreeMap::new();
    let mut expected_rejects = std::collections::BTreeMap::new();
    for obj in 0..61usize {
        let name = format!("2024-03-{:02}-00-00-00-{obj:016X}", 15 + obj / 30);
        let path = src.join(&name);
        let lines = match obj {
            30 => 8_000,
            7 => 0,
            _ => 3 + obj % 9,
        };
        let mut body = String::new();
        for line in 1..=lines {
            if (obj + line) % 11 == 0 {
                let raw = format!("garbage from {obj} at {line}");
                body.push_str(&raw);
                expected_rejects.insert((path.display().to_string(), line as i64), raw);
            } else {
                // Straddling midnight: the last lines of every third object fall on the next
                // day, and so do those of the object before the large one.
                let day = 15 + obj / 30 + usize::from(line > 4 && (obj % 3 == 0 || obj == 29));
                body.push_str(&format!(
                    "owner bkt [{day:02}/Mar/2024:23:59:{:02} +0000] 192.0.2.1 - R{obj:03}L{line:05} \
                     REST.GET.OBJECT k \"GET /bkt/k HTTP/1.1\" 200 - 1 1 5 4 \"-\" \"agent\" - host SigV4 C \
                     AuthHeader h TLSv1.2",
                    line % 60
                ));
                expected.insert((path.display().to_string(), line as i64), format!("R{obj:03}L{line:05}"));
            }
            body.push('\n');
        }
        std::fs::write(&path, body).unwrap();
    }
    assert!(std::fs::metadata(src.join(format!("2024-03-16-00-00-00-{:016X}", 30))).unwrap().len() > 1 << 20);
    let dest = tmp.path().join("out");
    let out = convert(&src, &dest, &["--max-reject-ratio", "0.2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let check = |dest: &Path| {
        let mut got = std::collections::BTreeMap::new();
        for file in walk(&dest.join("data")) {
            let ids: Vec<(String, i64, String)> = common::file_rows(&file)
                .into_iter()
                .map(|r| {
                    let id = (r["source_object"].as_str().unwrap().to_string(), r["source_line"].as_i64().unwrap());
                    (id.0, id.1, r["requestid"].as_str().unwrap().to_string())
                })
                .collect();
            let order: Vec<_> = ids.iter().map(|(o, l, _)| (o.clone(), *l)).collect();
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(order, sorted, "{} is not in input order", file.display());
            for (o, l, id) in ids {
                assert!(got.insert((o, l), id).is_none(), "a line became two rows");
            }
        }
        assert_eq!(got, expected);
        let mut rejects = std::collections::BTreeMap::new();
        for file in walk(&dest.join("rejects")) {
            let mut last = None;
            for r in common::file_rows(&file) {
                let id = (r["source_object"].as_str().unwrap().to_string(), r["source_line"].as_i64().unwrap());
                assert!(last < Some(id.clone()), "{} is not in input order at {id:?}", file.display());
                last = Some(id.clone());
                rejects.insert(id, r["raw_line"].as_str().unwrap().to_string());
            }
        }
        assert_eq!(rejects, expected_rejects);
    };
    check(&dest);

    // Windows of a few objects each: two windows parse while the one before them is encoded, and
    // the large object, now larger than a window, is streamed between them. Windows must still
    // reach the files in input order, also with one thread (which runs the parses it waits for).
    for threads in [None, Some(1)] {
        let small = tmp.path().join(format!("small-windows-{threads:?}"));
        let opts = s3logs::ConvertOptions {
            sources: vec![src.to_str().unwrap().to_string()],
            output: small.clone(),
            window_bytes: 4 << 10,
            max_reject_ratio: 0.2,
            threads,
            ..Default::default()
        };
        let report = s3logs::run(&opts).unwrap();
        assert_eq!(report.rows_written as usize, expected.len());
        check(&small);
    }
}

// ---- Memory stays bounded whatever the compression ratio or the kind of source. ----

/// Runs the binary with `args` under an address-space limit (`ulimit -v`, in KiB), `stdin` fed
/// from `feed` when given; returns its output and JSON report (`--report /dev/stdout`). A run
/// that hangs is stopped after ten minutes (and so fails).
fn under_memory_cap(
    kib: u64,
    args: &[&str],
    feed: Option<Box<dyn FnOnce(std::process::ChildStdin) + Send>>,
) -> (Output, Value) {
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &format!("ulimit -v {kib}; exec timeout 600 \"$@\""), "capped"]);
    cmd.arg(env!("CARGO_BIN_EXE_s3logs")).args(args).args(["--report", "/dev/stdout"]);
    cmd.stdin(if feed.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let writer = feed.map(|f| {
        let stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || f(stdin))
    });
    let out = child.wait_with_output().unwrap();
    if let Some(w) = writer {
        let _ = w.join();
    }
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, report)
}

/// 1 GiB of address space: the converter's own needs (threads, allocator, one block of a few
/// MiB in flight) fit several times over; a source held whole does not.
const MEMORY_CAP_KIB: u64 = 1 << 20;

/// Compression bombs: 2 GiB of zeros in a zstd object under 1 MiB (one endless line), and 48 MiB of log
/// lines in a gzip object of a few hundred KiB. Neither is decompressed whole: the first is cut at
/// --max-object-bytes (one too_long reject for the line read so far, one too_large for the rest),
/// the second streamed, every line a row.
#[test]
fn compression_bombs_convert_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    // One compressed frame (gzip member) written many times over: decoders read them all.
    let repeated = |path: &Path, frame: &[u8], times: usize| {
        let mut f = File::create(path).unwrap();
        for _ in 0..times {
            f.write_all(frame).unwrap();
        }
    };
    let zeros = tmp.path().join("zeros.zst");
    repeated(&zeros, &zstd::stream::encode_all(&vec![0u8; 1 << 20][..], 1).unwrap(), 2048);
    assert!(std::fs::metadata(&zeros).unwrap().len() < 1 << 20);
    let dest = tmp.path().join("out-zeros");
    let args = ["convert", zeros.to_str().unwrap(), "--output", dest.to_str().unwrap(), "--max-object-bytes", "256MiB"];
    let (out, r) = under_memory_cap(MEMORY_CAP_KIB, &[&args[..], &["--max-reject-ratio", "1"]].concat(), None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!((r["lines_read"].as_u64(), r["rows_written"].as_u64()), (Some(2), Some(0)), "{r}");
    assert_eq!(r["reject_reasons"], serde_json::json!({"too_long": 1, "too_large": 1}), "{r}");
    assert_eq!(r["bytes_decompressed"].as_u64(), Some(256 << 20), "{r}");

    let line =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real-world-lines.log"))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_string()
            + "\n";
    let per_member = (1 << 20) / line.len();
    // More than four windows (32 MiB) of content: streamed after its window, not held whole.
    let lines = per_member * 48;
    let gz = tmp.path().join("lines.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(line.repeat(per_member).as_bytes()).unwrap();
    repeated(&gz, &enc.finish().unwrap(), 48);
    assert!(std::fs::metadata(&gz).unwrap().len() < 8 << 20, "a small object, once read whole");
    let dest = tmp.path().join("out-lines");
    let (out, r) =
        under_memory_cap(MEMORY_CAP_KIB, &["convert", gz.to_str().unwrap(), "--output", dest.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!((r["rows_written"].as_u64(), r["lines_rejected"].as_u64()), (Some(lines as u64), Some(0)), "{r}");
    assert_eq!(read_rows(&dest.join("data")).len(), lines);

    // Many small objects of 4 MiB of lines each, parsed as one group: those past the group's
    // 32 MiB are streamed after it, and every line is a row once, each object's lines in order.
    let many = tmp.path().join("many");
    std::fs::create_dir(&many).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(line.repeat(per_member).as_bytes()).unwrap();
    let member = enc.finish().unwrap();
    for i in 0..16 {
        repeated(&many.join(format!("2019-02-06-01-00-{i:02}-X.gz")), &member, 4);
    }
    let dest = tmp.path().join("out-many");
    let (out, r) = under_memory_cap(
        MEMORY_CAP_KIB,
        &["convert", many.to_str().unwrap(), "--output", dest.to_str().unwrap()],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        (r["objects_read"].as_u64(), r["rows_written"].as_u64()),
        (Some(16), Some(16 * 4 * per_member as u64)),
        "{r}"
    );
    let rows = read_rows(&dest.join("data"));
    let mut ids: Vec<(String, i64)> = rows
        .iter()
        .map(|r| (r["source_object"].as_str().unwrap().to_string(), r["source_line"].as_i64().unwrap()))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 16 * 4 * per_member, "every line once");
}

/// Standard input is streamed, not read whole: a 1.5 GiB line among good ones, then /dev/zero and
/// a FIFO nobody writes to, named as sources (the FIFO reads as empty instead of hanging).
#[test]
fn standard_input_and_special_files_convert_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let sample = std::fs::read(testdata().join("2024-03-15-00-10-11-4C3B2A1908F7E6D5")).unwrap();
    let good = sample.iter().filter(|&&b| b == b'\n').count() as u64;
    let sample_len = sample.len() as u64;
    let dest = tmp.path().join("out-stdin");
    let feed = move |mut w: std::process::ChildStdin| {
        let chunk = vec![b'x'; 1 << 20];
        let _ = w.write_all(&sample);
        for _ in 0..1536 {
            if w.write_all(&chunk).is_err() {
                return;
            }
        }
        let _ = w.write_all(b"\n");
        let _ = w.write_all(&sample);
    };
    let args = ["convert", "-", "--output", dest.to_str().unwrap(), "--max-reject-ratio", "1"];
    let (out, r) = under_memory_cap(MEMORY_CAP_KIB, &args, Some(Box::new(feed)));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(r["reject_reasons"]["too_long"].as_u64(), Some(1), "{r}");
    assert_eq!(r["lines_read"].as_u64(), Some(2 * good + 1), "{r}");
    let streamed = 2 * sample_len + (1536 << 20) + 1;
    assert_eq!((r["bytes_read"].as_u64(), r["bytes_decompressed"].as_u64()), (Some(streamed), Some(streamed)), "{r}");

    let fifo = tmp.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let dest = tmp.path().join("out-special");
    let args = ["convert", fifo.to_str().unwrap(), "/dev/zero", "--output", dest.to_str().unwrap()];
    let (out, r) = under_memory_cap(
        MEMORY_CAP_KIB,
        &[&args[..], &["--max-object-bytes", "64MiB", "--max-reject-ratio", "1"]].concat(),
        None,
    );
    assert!(out.status.success(), "a FIFO without a writer hung, or: {}", stderr(&out));
    assert_eq!(r["objects_read"].as_u64(), Some(2), "{r}");
    assert_eq!(r["reject_reasons"], serde_json::json!({"too_long": 1, "too_large": 1}), "{r}");
}

/// The report is written whatever the exit: a lease held by another run (73) still gives one,
/// with nothing committed. An unwritable report path is refused before any work, so a run never
/// commits and then fails on its report.
#[test]
fn the_report_is_written_on_every_exit_and_its_path_checked_first() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    let report = tmp.path().join("report.json");
    let unwritable = tmp.path().join("no-such-folder/report.json");
    let out = convert(&testdata(), &dest, &["--report", unwritable.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(74), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing was done"), "{}", stderr(&out));
    assert!(!dest.join("data").exists(), "work was done before the report path was checked");

    // A lease another live process holds: exit 73, and the report says nothing was committed.
    let src = tmp.path().join("logs");
    std::fs::create_dir(&src).unwrap();
    // A name with no date: the same unit (`undated`) as the holder's standard input.
    std::fs::copy(testdata().join("2024-03-15-00-10-11-4C3B2A1908F7E6D5"), src.join("access.log")).unwrap();
    let mut holder = bin()
        .args(["convert", "-", "--output", dest.to_str().unwrap(), "--quiet"])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = holder.stdin.take().unwrap();
    // The holder takes the lease once it has a line to convert; wait until its lease file is there.
    stdin.write_all(b"x\n").unwrap();
    crate::wait_for_lease(&crate::unit_state(&dest, "stdin"));
    let out = convert(&src, &dest, &["--report", report.to_str().unwrap()]);
    drop(stdin);
    let _ = holder.wait();
    assert_eq!(out.status.code(), Some(73), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!((r["committed"].as_bool(), r["commits"].as_array().map(Vec::len)), (Some(false), Some(0)), "{r}");
}

/// A failure after the commit point (here a file where a partition folder must go) is exit 75,
/// "the batch is committed; run again": the next run publishes the batch's files.
#[test]
fn a_publish_failure_after_the_commit_is_a_retry_that_finishes_the_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    std::fs::create_dir_all(dest.join("data")).unwrap();
    std::fs::write(dest.join("data/dt=2024-03-15"), b"in the way").unwrap();
    let report = tmp.path().join("report.json");
    let out = convert(&testdata(), &dest, &["--report", report.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stderr(&out).contains("is committed"), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["commits"], serde_json::json!([1]), "{r}");

    std::fs::remove_file(dest.join("data/dt=2024-03-15")).unwrap();
    let out = convert(&testdata(), &dest, &["--report", report.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["batches_finished"].as_array().map(Vec::len), Some(1), "{r}");
    assert_eq!(read_rows(&dest.join("data")).len(), 23);
}

// ---- Names and paths of local sources. ----

/// Rows' `source_object` values under `dest/data`.
fn source_objects(dest: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        read_rows(&dest.join("data")).iter().map(|r| r["source_object"].as_str().unwrap().to_string()).collect();
    names.sort();
    names.dedup();
    names
}

/// Two files whose names differ only in bytes that are not UTF-8 are two objects (a lossy name
/// made them one and skipped the second); a folder reached through a symbolic link is read once,
/// under its real path; a dangling link is skipped, not the end of the run; a DEST that does not
/// exist yet inside the source is not read back (its lease file was read as a log).
#[test]
fn local_names_stay_distinct_links_are_read_once_and_dest_is_never_a_source() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("logs");
    let real = src.join("real");
    std::fs::create_dir_all(&real).unwrap();
    let sample = std::fs::read(testdata().join(OBJ_A)).unwrap();
    let lines = sample.iter().filter(|&&b| b == b'\n').count();
    for byte in [0xfe_u8, 0xff] {
        let name = std::ffi::OsStr::from_bytes(&[b"2024-03-15-00-00-00-".as_slice(), &[byte]].concat()).to_os_string();
        std::fs::write(real.join(name), &sample).unwrap();
    }
    std::os::unix::fs::symlink(&real, src.join("a-link-to-real")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("nowhere"), src.join("dangling")).unwrap();
    // Enough files that the walk is still going when the lease is taken in DEST.
    for i in 0..2000 {
        std::fs::write(real.join(format!("2024-03-15-01-00-00-{i:04}")), b"").unwrap();
    }
    let dest = src.join("zz-out");
    let out = convert(&src, &dest, &["--report", "/dev/stdout"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((r["rows_written"].as_u64(), r["lines_rejected"].as_u64()), (Some(2 * lines as u64), Some(0)), "{r}");
    let names = source_objects(&dest);
    let real = std::fs::canonicalize(&real).unwrap().display().to_string();
    assert_eq!(names, [format!("{real}/2024-03-15-00-00-00-%FE"), format!("{real}/2024-03-15-00-00-00-%FF")]);
    let again = convert(&src, &dest, &[]);
    assert!(again.status.success() && stderr(&again).contains("nothing new"), "{}", stderr(&again));
}

/// A legacy bucket name too long for a `source_bucket=` folder (legal up to 255 characters) is a
/// reject when partitioning by bucket, instead of failing every run with "File name too long".
#[test]
fn a_bucket_name_too_long_for_a_folder_is_a_reject() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("logs");
    std::fs::create_dir(&src).unwrap();
    let text = std::fs::read_to_string(testdata().join(OBJ_A)).unwrap();
    let bucket = text.split(' ').nth(1).unwrap().to_string();
    let long = format!("{bucket}-{}", "x".repeat(250 - bucket.len()));
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[0] = lines[0].replacen(&bucket, &long, 1);
    std::fs::write(src.join(OBJ_A), lines.join("\n") + "\n").unwrap();
    let dest = tmp.path().join("out");
    let out =
        convert(&src, &dest, &["--partition-by", "bucket,dt", "--max-reject-ratio", "0.5", "--report", "/dev/stdout"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["reject_reasons"]["bad_bucket"].as_u64(), Some(1), "{r}");
    assert!(r["reject_samples"][0]["reason"].as_str().unwrap().contains("partition folder"), "{r}");
}

/// Secrets never reach stderr: a server that echoes the request's session token in its error
/// body (one line, so it is in the part of the message s3logs prints), an `--endpoint-url` with a
/// password in it, and the secret key in the environment.
#[test]
fn secrets_in_errors_never_reach_stderr() {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        // Bounded: a few requests, each answered 403 with the token it carried.
        for stream in listener.incoming().take(40) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut token = String::new();
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && line != "\r\n" {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("x-amz-security-token:") {
                    token = line[line.len() - v.len()..].trim().to_string();
                }
                line.clear();
            }
            let body = format!(
                "<Error><Code>AccessDenied</Code><Message>Access Denied</Message><Echo>x-amz-security-token: {token}</Echo><Raw>{token}</Raw></Error>"
            );
            let _ = write!(
                stream,
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let (token, secret, password) = ("SESSIONTOKENVALUE0123456789", "SECRETKEYVALUE0123456789", "hunter2secretpw");
    for endpoint in [format!("http://127.0.0.1:{port}"), format!("http://admin:{password}@127.0.0.1:{port}")] {
        let out = bin()
            .args(["convert", "s3://logs-bucket/logs/", "--output", tmp.path().join("out").to_str().unwrap()])
            .args(["--endpoint-url", &endpoint, "--region", "us-east-1", "--retries", "0"])
            .env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_SESSION_TOKEN", token)
            .env_remove("AWS_PROFILE")
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(!out.status.success(), "{err}");
        for s in [token, secret, password] {
            assert!(!err.contains(s), "{s} reached stderr:\n{err}");
        }
        assert!(err.contains("403") || err.contains("AccessDenied") || err.contains("127.0.0.1"), "{err}");
    }
}

/// A failing credential_process's output (which may hold a secret) is not printed: the AWS SDK's
/// own warnings, which carried it, are off unless RUST_LOG asks for them.
#[test]
fn a_failing_credential_process_output_is_not_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config");
    std::fs::write(
        &config,
        "[profile leak]\nregion = us-east-1\ncredential_process = sh -c \"echo 'SecretAccessKey: LEAKEDSECRET123 LEAKEDPLAIN456' >&2; exit 1\"\n",
    )
    .unwrap();
    let out = bin()
        .args(["convert", "s3://b/logs/", "--output", tmp.path().join("out").to_str().unwrap()])
        .args(["--endpoint-url", "http://127.0.0.1:9", "--retries", "0"])
        .env_remove("RUST_LOG")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_SHARED_CREDENTIALS_FILE", tmp.path().join("none"))
        .env("AWS_PROFILE", "leak")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(74), "{err}");
    assert!(err.contains("no AWS credentials found"), "{err}");
    assert!(!err.contains("LEAKED"), "the credential process's output reached stderr:\n{err}");
}

/// One object whose records span 1,000 days opened a partition file for each (30,000 seen).
/// Records more than --key-date-slack days from the object's key date (or, without one, its first
/// record's) are rejects with their reason; `off` takes them all.
#[test]
fn records_far_from_their_key_date_are_rejects_not_a_file_each() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("logs");
    std::fs::create_dir(&src).unwrap();
    let text = std::fs::read_to_string(testdata().join(OBJ_A)).unwrap();
    let line = text.lines().next().unwrap();
    let time = &line[line.find('[').unwrap()..line.find(']').unwrap() + 1];
    let day = |n: i64| chrono::NaiveDate::from_ymd_opt(2024, 3, 15).unwrap() - chrono::Duration::days(n);
    let lines: Vec<String> =
        (0..1000).map(|n| line.replacen(time, &day(n).format("[%d/%b/%Y:12:00:00 +0000]").to_string(), 1)).collect();
    std::fs::write(src.join("2024-03-15-23-59-59-0123456789ABCDEF"), lines.join("\n") + "\n").unwrap();
    let dest = tmp.path().join("out");
    let out = convert(&src, &dest, &["--max-reject-ratio", "1", "--report", "/dev/stdout"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    // 2024-03-15 and the 31 days before it.
    assert_eq!(
        (r["rows_written"].as_u64(), r["reject_reasons"]["far_from_key_date"].as_u64()),
        (Some(32), Some(968)),
        "{r}"
    );
    assert_eq!(files_under(&dest.join("data")).len(), 32);
    assert!(r["reject_samples"][0]["reason"].as_str().unwrap().contains("--key-date-slack"), "{r}");

    let dest = tmp.path().join("off");
    let out = convert(&src, &dest, &["--key-date-slack", "off", "--report", "/dev/stdout"]);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["rows_written"].as_u64(), Some(1000), "{r}");

    // Without a date in its name (a file named otherwise, standard input), an object's days are
    // bounded by its first record's (a line that is not a record comes first here).
    let body = format!("not a record\n{}\n", lines.join("\n"));
    let undated = tmp.path().join("undated");
    std::fs::create_dir(&undated).unwrap();
    std::fs::write(undated.join("access.log"), &body).unwrap();
    let check = |out: &Output| {
        assert!(out.status.success(), "{}", stderr(out));
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        let reasons = &r["reject_reasons"];
        assert_eq!(
            (r["rows_written"].as_u64(), reasons["far_from_first_record"].as_u64(), reasons["bad_time"].as_u64()),
            (Some(32), Some(968), Some(1)),
            "{r}"
        );
        let sample = r["reject_samples"].as_array().unwrap().iter().find(|s| s["source_line"] == 34).unwrap();
        assert!(sample["reason"].as_str().unwrap().contains("first record"), "{r}");
    };
    let report = ["--max-reject-ratio", "1", "--report", "/dev/stdout"];
    check(&convert(&undated, &tmp.path().join("undated-out"), &report));
    let mut child = bin()
        .args(["convert", "-", "--output", tmp.path().join("stdin").to_str().unwrap()])
        .args(report)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    check(&child.wait_with_output().unwrap());
}

/// `--max-object-bytes` cuts an object with lines (read whole or from standard input alike): the
/// lines before the cut are rows, the partial line and the rest one too_large reject, nothing else.
#[test]
fn the_object_size_cap_cuts_between_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read(testdata().join(OBJ_A)).unwrap();
    let ends: Vec<usize> = text.iter().enumerate().filter(|&(_, &b)| b == b'\n').map(|(i, _)| i + 1).collect();
    // A cap in the middle of the fourth line.
    let cap = ends[2] + 10;
    let src = tmp.path().join("logs");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join(OBJ_A), &text).unwrap();
    let check = |r: &Value| {
        assert_eq!(r["rows_written"].as_u64(), Some(3), "{r}");
        assert_eq!(r["reject_reasons"], serde_json::json!({"too_large": 1}), "{r}");
        assert_eq!(r["lines_read"].as_u64(), Some(4), "{r}");
    };
    let cap_arg = cap.to_string();
    let args = ["--max-object-bytes", cap_arg.as_str(), "--max-reject-ratio", "1", "--report", "/dev/stdout"];
    let out = convert(&src, &tmp.path().join("file"), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    check(&serde_json::from_slice(&out.stdout).unwrap());

    let mut child = bin()
        .args(["convert", "-", "--output", tmp.path().join("stdin").to_str().unwrap()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&text).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    check(&serde_json::from_slice(&out.stdout).unwrap());
}

/// What a user sees, snapshotted (stdout, stderr, exit code): the help, a conversion's summary,
/// `status`, and errors. Each command runs in a temporary folder holding a copy of the sample logs
/// (`logs/`), with relative paths; the folder's path, times and run owners are filtered.
/// `cargo insta review` (or `INSTA_UPDATE=always`) updates them after a reviewed change.
mod as_users_see_it {
    use std::path::Path;
    use std::process::Command;

    use insta_cmd::assert_cmd_snapshot;

    /// A temporary folder with the sample logs in `logs/`.
    fn folder() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("logs")).unwrap();
        for e in std::fs::read_dir(super::testdata()).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, tmp.path().join("logs").join(p.file_name().unwrap())).unwrap();
        }
        tmp
    }

    fn s3logs(tmp: &Path, args: &[&str]) -> Command {
        let mut c = super::bin();
        c.current_dir(tmp).args(args);
        c
    }

    macro_rules! snapshot {
        ($name:literal, $tmp:expr, $args:expr) => {{
            let tmp = std::fs::canonicalize($tmp).unwrap().display().to_string();
            let filters = vec![
                (tmp.as_str(), "[TMP]"),
                (r"\d+\.\d+s\b", "[SECONDS]"),
                (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", "[TIME]"),
                (r"by [^ ]+:\d+:[0-9a-f]{16}", "by [OWNER]"),
                (r#"holder="[^"]+""#, "holder=\"[OWNER]\""),
            ];
            insta::with_settings!({ filters => filters, prepend_module_to_snapshot => false }, {
                assert_cmd_snapshot!($name, s3logs($tmp, $args));
            });
        }};
    }

    #[test]
    fn help() {
        let tmp = folder();
        snapshot!("help", tmp.path(), &["--help"]);
        snapshot!("help_convert", tmp.path(), &["convert", "--help"]);
        snapshot!("help_status", tmp.path(), &["status", "--help"]);
        snapshot!("help_ddl", tmp.path(), &["ddl", "--help"]);
    }

    /// The README's first command, `status` on what it wrote, and a second run.
    #[test]
    fn convert_summary_and_status() {
        let tmp = folder();
        snapshot!("convert_summary", tmp.path(), &["convert", "logs", "--output", "out"]);
        snapshot!("status", tmp.path(), &["status", "out"]);
        snapshot!("convert_nothing_new", tmp.path(), &["convert", "logs", "--output", "out"]);
    }

    #[test]
    fn errors() {
        let tmp = folder();
        snapshot!("error_missing_source", tmp.path(), &["convert", "missing", "--output", "out"]);
        snapshot!("error_bad_output_url", tmp.path(), &["convert", "logs", "--output", "ftp://host/x"]);
        snapshot!("error_bad_ratio", tmp.path(), &["convert", "logs", "--output", "out", "--max-reject-ratio", "2"]);
        snapshot!("error_unknown_flag", tmp.path(), &["convert", "--no-such-flag"]);
        std::fs::create_dir(tmp.path().join("empty")).unwrap();
        snapshot!("error_empty_source", tmp.path(), &["convert", "empty", "--output", "out"]);
        snapshot!("error_bad_zstd_level", tmp.path(), &["convert", "logs", "--output", "out", "--zstd-level", "0"]);
        snapshot!("error_status_missing_dest", tmp.path(), &["status", "missing"]);
        snapshot!("error_ddl_missing_dest", tmp.path(), &["ddl", "missing"]);
        snapshot!("error_bad_shard", tmp.path(), &["convert", "logs", "--output", "out", "--shard", "8/8"]);
        snapshot!(
            "error_missing_units_file",
            tmp.path(),
            &["convert", "logs", "--output", "out", "--units-file", "units.txt"]
        );
        snapshot!("error_migrate_missing_dest", tmp.path(), &["state", "migrate", "missing"]);
        snapshot!("error_plan_missing_source", tmp.path(), &["plan", "missing"]);
        // The report's folder does not exist: refused before any work (nothing in `out`).
        snapshot!(
            "error_report_unwritable",
            tmp.path(),
            &["convert", "logs", "--output", "out", "--report", "no-dir/r.json"]
        );
        assert!(!tmp.path().join("out").exists());
        // DEST under a regular file: it cannot be made.
        std::fs::write(tmp.path().join("a-file"), b"").unwrap();
        snapshot!("error_unwritable_dest", tmp.path(), &["convert", "logs", "--output", "a-file/out"]);
    }

    /// The errors of bad input: a batch with too many rejects (65) and an object that cannot be
    /// decompressed (69), each with what the user does next.
    #[test]
    fn input_errors() {
        let tmp = folder();
        let bad = tmp.path().join("bad");
        std::fs::create_dir(&bad).unwrap();
        let lines: String = (0..150).map(|i| format!("this is not an access log line {i}\n")).collect();
        std::fs::write(bad.join("2024-03-15-00-10-11-0123456789ABCDEF"), lines).unwrap();
        snapshot!("error_too_many_rejects", tmp.path(), &["convert", "bad", "--output", "out"]);
        let corrupt = tmp.path().join("corrupt");
        std::fs::create_dir(&corrupt).unwrap();
        std::fs::write(corrupt.join("2024-03-15-00-10-11-0123456789ABCDEF.gz"), b"\x1f\x8b\x08\x00 not gzip at all")
            .unwrap();
        snapshot!("error_quarantined", tmp.path(), &["convert", "corrupt", "--output", "out2"]);
    }

    /// Another run holds a unit's lease (one converting standard input that has not ended): the
    /// run converts the rest and exits 73, naming the unit.
    #[test]
    fn lease_held_by_another_run() {
        let tmp = folder();
        std::fs::copy(tmp.path().join("logs/2024-03-15-00-10-11-4C3B2A1908F7E6D5"), tmp.path().join("logs/access.log"))
            .unwrap();
        let mut held = s3logs(tmp.path(), &["convert", "-", "--output", "out"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        crate::wait_for_lease(&crate::unit_state(&tmp.path().join("out"), "stdin"));
        snapshot!("error_lease_held", tmp.path(), &["convert", "logs", "--output", "out", "--lease-wait", "0"]);
        held.kill().unwrap();
        held.wait().unwrap();
    }
}
