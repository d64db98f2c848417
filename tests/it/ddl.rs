//! Table definitions: each dialect's text is snapshotted (tests/snapshots/, reviewed), and the
//! columns parsed back out of the DDL text must equal the schema of the Parquet files written.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow_schema::{DataType, Schema, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn s3logs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_s3logs")).args(args).output().expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn convert_testdata(dest: &Path, extra: &[&str]) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/logs");
    let mut args = vec!["convert", src.to_str().unwrap(), "--output", dest.to_str().unwrap(), "--quiet"];
    args.extend_from_slice(extra);
    let out = s3logs(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn first_parquet(dir: &Path) -> PathBuf {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "parquet") {
                return p;
            }
        }
    }
    panic!("no parquet file under {}", dir.display());
}

fn file_schema(path: &Path) -> Schema {
    ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap().schema().as_ref().clone()
}

/// Hive/Athena type of an Arrow type, written here independently of the crate's field table.
fn hive_type(t: &DataType) -> &'static str {
    match t {
        DataType::Utf8 => "string",
        DataType::Int32 => "int",
        DataType::Int64 => "bigint",
        DataType::Binary => "binary",
        DataType::Timestamp(TimeUnit::Millisecond, Some(tz)) if tz.as_ref() == "UTC" => "timestamp",
        other => panic!("no Hive type for {other}"),
    }
}

fn duck_type(t: &DataType) -> &'static str {
    match hive_type(t) {
        "string" => "VARCHAR",
        "int" => "INTEGER",
        "bigint" => "BIGINT",
        "binary" => "BLOB",
        _ => "TIMESTAMP",
    }
}

fn trino_type(t: &DataType) -> &'static str {
    match hive_type(t) {
        "string" => "varchar",
        "int" => "integer",
        "bigint" => "bigint",
        "binary" => "varbinary",
        _ => "timestamp(3)",
    }
}

fn expected_columns(schema: &Schema, ty: fn(&DataType) -> &'static str) -> Vec<(String, String)> {
    schema.fields().iter().map(|f| (f.name().clone(), ty(f.data_type()).to_string())).collect()
}

/// `  `name` type COMMENT '...'` lines of a Hive-style CREATE TABLE, in order.
fn hive_columns(ddl: &str) -> Vec<(String, String)> {
    let body = &ddl[ddl.find("(\n").unwrap() + 2..ddl.find("\n)").unwrap()];
    body.lines()
        .map(|l| {
            let l = l.trim();
            let name_end = l[1..].find('`').unwrap() + 1;
            let rest = l[name_end + 1..].trim_start();
            (l[1..name_end].to_string(), rest.split(' ').next().unwrap().to_string())
        })
        .collect()
}

/// `  CAST("name" AS TYPE) AS "name"` lines of the DuckDB view, partition columns left out; a
/// timestamp is `timezone('UTC', CAST("name" AS TIMESTAMPTZ))`, the UTC wall time: TIMESTAMP.
fn duck_columns(ddl: &str, partitions: &[&str]) -> Vec<(String, String)> {
    ddl.lines()
        .filter_map(|l| {
            let l = l.trim();
            match l.strip_prefix("timezone('UTC', CAST(\"") {
                Some(rest) if rest.contains("\" AS TIMESTAMPTZ)) AS \"") => Some((rest, Some("TIMESTAMP"))),
                _ => l.strip_prefix("CAST(\"").map(|rest| (rest, None)),
            }
        })
        .map(|(l, wall)| {
            let (name, rest) = l.split_once("\" AS ").unwrap();
            (name.to_string(), wall.map_or_else(|| rest.split(')').next().unwrap().to_string(), str::to_string))
        })
        .filter(|(n, _)| !partitions.contains(&n.as_str()))
        .collect()
}

#[test]
fn every_dialect_declares_exactly_the_columns_of_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("ds");
    convert_testdata(&dest, &[]);
    let d = dest.to_str().unwrap();
    let data = file_schema(&first_parquet(&dest.join("data")));
    let rejects = file_schema(&first_parquet(&dest.join("rejects")));

    for (kind, schema) in [("data", &data), ("rejects", &rejects)] {
        let want = expected_columns(schema, hive_type);
        for dialect in ["athena", "spark"] {
            let ddl = stdout(&s3logs(&["ddl", d, "--dialect", dialect, "--table-kind", kind]));
            assert_eq!(hive_columns(&ddl), want, "{dialect} {kind}");
            assert_eq!(ddl.contains("PARTITIONED BY (`dt` string)"), kind == "data", "{dialect} {kind}");
        }
        let glue: serde_json::Value =
            serde_json::from_str(&stdout(&s3logs(&["ddl", d, "--dialect", "glue-json", "--table-kind", kind])))
                .unwrap();
        let cols: Vec<(String, String)> = glue["StorageDescriptor"]["Columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["Name"].as_str().unwrap().to_string(), c["Type"].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(cols, want, "glue {kind}");
        let trino = stdout(&s3logs(&["ddl", d, "--dialect", "trino", "--table-kind", kind]));
        let trino_cols: Vec<(String, String)> = trino
            .lines()
            .filter_map(|l| l.trim().strip_prefix('"')?.split_once("\" "))
            .map(|(name, rest)| (name.to_string(), rest.split([' ', ',']).next().unwrap().to_string()))
            .filter(|(n, _)| n != "dt")
            .collect();
        assert_eq!(trino_cols, expected_columns(schema, trino_type), "trino {kind}");
        assert_eq!(trino.contains("partitioned_by = ARRAY['dt']"), kind == "data", "{trino}");
        let duck = stdout(&s3logs(&["ddl", d, "--dialect", "duckdb", "--table-kind", kind]));
        assert_eq!(duck_columns(&duck, &["dt"]), expected_columns(schema, duck_type), "duckdb {kind}");
    }
    // The projection starts at the earliest partition found, and points at the data folder.
    let athena = stdout(&s3logs(&["ddl", d]));
    assert!(athena.contains("'projection.dt.range' = '2024-03-14,NOW'"), "{athena}");
    let data_dir = format!("{}/data/", dest.canonicalize().unwrap().display());
    assert!(athena.contains(&format!("LOCATION '{data_dir}'")), "{athena}");
    assert!(athena.contains(&format!("'storage.location.template' = '{data_dir}dt=${{dt}}/'")), "{athena}");
}

const S3_DEST: &str = "s3://analytics-bucket/s3logs/";

fn snapshot(args: &[&str]) -> String {
    // Layout and first day given: nothing to read from DEST (there is no S3 here).
    let mut all = vec!["ddl", S3_DEST, "--database", "logs", "--projection-start", "2019-01-01"];
    if !args.contains(&"--partition-by") {
        all.extend(["--partition-by", "dt"]);
    }
    all.extend_from_slice(args);
    stdout(&s3logs(&all))
}

#[test]
fn athena_ddl() {
    insta::assert_snapshot!(snapshot(&["--dialect", "athena"]));
}

#[test]
fn glue_table_input() {
    insta::assert_snapshot!(snapshot(&["--dialect", "glue-json"]));
}

#[test]
fn spark_ddl() {
    insta::assert_snapshot!(snapshot(&["--dialect", "spark"]));
}

#[test]
fn duckdb_view() {
    insta::assert_snapshot!(snapshot(&["--dialect", "duckdb"]));
}

#[test]
fn trino_ddl() {
    insta::assert_snapshot!(snapshot(&["--dialect", "trino"]));
}

#[test]
fn athena_rejects_table() {
    insta::assert_snapshot!(snapshot(&["--table-kind", "rejects"]));
}

#[test]
fn athena_by_bucket_with_enum_projection() {
    let enumerated = snapshot(&["--partition-by", "bucket,dt", "--buckets", "app-logs,www.example.com"]);
    insta::assert_snapshot!(enumerated);
    // No buckets given and none in DEST: an injected projection would make Athena refuse every
    // shipped query, so it is a usage error naming the way out.
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("ds");
    convert_testdata(&dest, &[]);
    let out = s3logs(&["ddl", dest.to_str().unwrap(), "--partition-by", "bucket,dt"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no source_bucket= folders under") && err.contains("--buckets"), "{err}");
}

#[test]
fn partition_by_bucket_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("ds");
    convert_testdata(&dest, &["--partition-by", "bucket,dt"]);
    let mut folders: Vec<String> = Vec::new();
    for b in std::fs::read_dir(dest.join("data")).unwrap() {
        let b = b.unwrap().path();
        for d in std::fs::read_dir(&b).unwrap() {
            let d = d.unwrap().path();
            folders.push(d.strip_prefix(dest.join("data")).unwrap().display().to_string());
        }
    }
    folders.sort();
    assert_eq!(
        folders,
        [
            "source_bucket=example-app-assets/dt=2024-03-14",
            "source_bucket=example-app-assets/dt=2024-03-15",
            "source_bucket=example-app-uploads/dt=2024-03-15",
        ]
    );
    // The DDL finds the layout, the buckets and the first day by itself.
    let athena = stdout(&s3logs(&["ddl", dest.to_str().unwrap()]));
    assert!(athena.contains("PARTITIONED BY (`source_bucket` string, `dt` string)"), "{athena}");
    assert!(athena.contains("'projection.source_bucket.values' = 'example-app-assets,example-app-uploads'"));
    assert!(athena.contains("'projection.dt.range' = '2024-03-14,NOW'"));
    assert!(athena.contains("source_bucket=${source_bucket}/dt=${dt}/'"));
    let duck = stdout(&s3logs(&["ddl", dest.to_str().unwrap(), "--dialect", "duckdb"]));
    assert!(duck.contains("/data/*/*/*.parquet'"), "{duck}");
}

#[test]
fn bad_names_and_missing_range_are_usage_errors() {
    for args in [
        vec!["ddl", S3_DEST, "--table", "access-logs", "--projection-start", "2020-01-01"],
        vec!["ddl", S3_DEST, "--database", "a.b", "--projection-start", "2020-01-01"],
        vec!["ddl", S3_DEST, "--projection-start", "2020-13-01"],
    ] {
        let out = s3logs(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1, "{args:?}");
    }
    // A DEST with no dt= folder yet: the first day must be given.
    let tmp = tempfile::tempdir().unwrap();
    let out = s3logs(&["ddl", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no dt= partitions found under"));
}
