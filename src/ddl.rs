//! Table definitions for a dataset written by `s3logs convert`: Athena (with partition projection),
//! a Glue `TableInput` JSON, Spark/Hive (with `MSCK REPAIR TABLE`), Trino's Hive connector (with
//! `sync_partition_metadata`) and a DuckDB view.
//!
//! Every dialect is rendered from the field table in [`crate::schema`], the same one the writer
//! builds its Arrow schema from, so the table and the files cannot drift apart. Identifiers are
//! validated and quoted; string literals are escaped per dialect.

use std::path::Path;

use crate::access_log::time::{format_day, parse_day};
use crate::commit::destination::Destination;
use crate::error::Error;
use crate::schema::{BUCKET_PARTITION_COLUMN, FIELDS, FieldDef, Kind, PARTITION_COLUMN, REJECT_FIELDS};
use crate::store::StoreOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dialect {
    /// Athena CREATE EXTERNAL TABLE with partition projection.
    Athena,
    /// Glue TableInput JSON for `aws glue create-table --table-input file://...`.
    GlueJson,
    /// Spark SQL / Hive DDL, then MSCK REPAIR TABLE.
    Spark,
    /// A DuckDB view over read_parquet with hive partitioning (with httpfs and a credential-chain
    /// secret for an s3:// DEST).
    Duckdb,
    /// Trino's Hive connector: CREATE TABLE ... WITH (external_location, format, partitioned_by),
    /// then system.sync_partition_metadata.
    Trino,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TableKind {
    /// The log table, DEST/data/.
    Data,
    /// The rejected lines, DEST/rejects/.
    Rejects,
}

/// What to render.
#[derive(Debug, Clone)]
pub struct DdlOptions {
    pub dialect: Dialect,
    pub kind: TableKind,
    pub database: String,
    /// Default: `s3_access`, or `s3_access_rejects` for the rejects table.
    pub table: Option<String>,
    /// The dataset root as given to `convert --output` (a local path or an `s3://` URL).
    pub dest: String,
    /// First day of the `dt` projection range; default: the earliest partition of a local DEST.
    pub projection_start: Option<String>,
    /// The data was written with `--partition-by bucket,dt`; default: detected from a local DEST.
    pub partition_by_bucket: Option<bool>,
    /// Enum projection values for the bucket level; empty means the buckets found in DEST.
    pub buckets: Vec<String>,
    /// How to reach an `s3://` DEST, to read what the options leave out.
    pub store: StoreOptions,
}

fn is_url(s: &str) -> bool {
    s.contains("://")
}

/// A dataset folder (`data/` or `rejects/`) as a location string ending in `/`.
pub(crate) fn location(dest: &str, folder: &str) -> Result<String, Error> {
    let dest = dest.strip_prefix("file://").unwrap_or(dest);
    let root = if is_url(dest) {
        dest.trim_end_matches('/').to_string()
    } else {
        let p = Path::new(dest);
        let abs = match std::fs::canonicalize(p) {
            Ok(a) => a,
            Err(_) => std::env::current_dir().map_err(|e| Error::read(".", e))?.join(p),
        };
        abs.display().to_string().trim_end_matches('/').to_string()
    };
    Ok(format!("{root}/{folder}/"))
}

/// The values of the `name=value` folders directly inside `rel` of DEST.
fn partition_values(dest: &Destination, rel: &str, name: &str) -> Result<Vec<String>, Error> {
    let prefix = format!("{name}=");
    Ok(dest.subfolders(rel)?.iter().filter_map(|f| f.strip_prefix(&prefix)).map(str::to_string).collect())
}

/// What DEST holds, from a listing of its `data/` folder (one LIST, plus one per source bucket
/// for a `bucket,dt` layout): the source buckets and, when asked for, the partitions as the
/// values of their folders (`[dt]` or `[bucket, dt]`).
pub(crate) struct Found {
    pub(crate) buckets: Vec<String>,
    pub(crate) partitions: Vec<Vec<String>>,
}

/// [`Found`] in `dest`, laid out `bucket,dt` if `by_bucket` (else as its folders are).
pub(crate) fn found_in(dest: &Destination, by_bucket: Option<bool>, with_partitions: bool) -> Result<Found, Error> {
    let buckets = partition_values(dest, "data", BUCKET_PARTITION_COLUMN)?;
    let mut partitions = Vec::new();
    if with_partitions {
        let folders: Vec<(Vec<String>, String)> = match by_bucket.unwrap_or(!buckets.is_empty()) {
            true => buckets.iter().map(|b| (vec![b.clone()], format!("data/{BUCKET_PARTITION_COLUMN}={b}"))).collect(),
            false => vec![(vec![], "data".to_string())],
        };
        for (above, folder) in folders {
            for dt in partition_values(dest, &folder, PARTITION_COLUMN)? {
                partitions.push(above.iter().cloned().chain([dt]).collect());
            }
        }
    }
    Ok(Found { buckets, partitions })
}

fn found(o: &DdlOptions) -> Result<Found, Error> {
    let why = "no such folder: convert into it first, or give --projection-start and --partition-by";
    let (dest, _rt) = Destination::open_existing(&o.dest, &o.store, why)?;
    found_in(&dest, o.partition_by_bucket, o.projection_start.is_none())
}

/// Athena, Glue and Hive accept letters, digits and underscores in database and table names, and
/// store them in lower case.
fn checked_name(what: &str, name: &str) -> Result<String, Error> {
    if name.is_empty() || name.len() > 255 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(Error::Usage(format!(
            "{what} name {name:?}: use 1 to 255 letters, digits and underscores (Athena and Glue allow no others)"
        )));
    }
    Ok(name.to_ascii_lowercase())
}

fn hive_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

fn hive_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn duck_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn duck_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn duck_type(k: Kind) -> &'static str {
    match k {
        Kind::Utf8 => "VARCHAR",
        Kind::Int32 => "INTEGER",
        Kind::Int64 => "BIGINT",
        Kind::TimestampMs => "TIMESTAMPTZ",
        Kind::Binary => "BLOB",
    }
}

/// Everything the dialects need, resolved once.
struct Table {
    database: String,
    name: String,
    location: String,
    fields: &'static [FieldDef],
    /// Partition columns, outermost first (all strings).
    partitions: Vec<&'static str>,
    /// `projection.*` and `storage.location.template` properties (empty for unpartitioned tables).
    projection: Vec<(String, String)>,
}

fn resolve(o: &DdlOptions) -> Result<Table, Error> {
    let database = checked_name("database", &o.database)?;
    let default_name = match o.kind {
        TableKind::Data => "s3_access",
        TableKind::Rejects => "s3_access_rejects",
    };
    let name = checked_name("table", o.table.as_deref().unwrap_or(default_name))?;
    if o.kind == TableKind::Rejects {
        let location = location(&o.dest, "rejects")?;
        return Ok(Table { database, name, location, fields: REJECT_FIELDS, partitions: vec![], projection: vec![] });
    }
    let location = location(&o.dest, "data")?;
    let given_start = match &o.projection_start {
        Some(s) => Some(
            parse_day(s)
                .ok_or_else(|| Error::Usage(format!("--projection-start {s:?} is not a date like 2024-01-31")))?,
        ),
        None => None,
    };
    // DEST is read only for what the options leave out: the layout, the buckets, the first day.
    let complete = o.projection_start.is_some()
        && o.partition_by_bucket.is_some()
        && (o.partition_by_bucket == Some(false) || !o.buckets.is_empty());
    let found = if complete { Found { buckets: vec![], partitions: vec![] } } else { found(o)? };
    let by_bucket = o.partition_by_bucket.unwrap_or(!found.buckets.is_empty());
    let buckets = if o.buckets.is_empty() { found.buckets } else { o.buckets.clone() };
    // An enum of the buckets, not an injected projection: with one, Athena refuses every query
    // that does not name a source_bucket, as none of queries/ does.
    if by_bucket && buckets.is_empty() {
        return Err(Error::Usage(format!(
            "no {BUCKET_PARTITION_COLUMN}= folders under {location}: give the source buckets with --buckets \
             NAME,... (or --partition-by dt if the data was written so)"
        )));
    }

    let start = match given_start {
        Some(day) => day,
        None => found.partitions.iter().filter_map(|p| parse_day(p.last()?)).min().ok_or_else(|| {
            Error::Usage(format!("no dt= partitions found under {location}; give --projection-start YYYY-MM-DD"))
        })?,
    };
    let mut partitions = Vec::new();
    let mut projection = vec![("projection.enabled".to_string(), "true".to_string())];
    let mut template = location.clone();
    if by_bucket {
        partitions.push(BUCKET_PARTITION_COLUMN);
        let p = format!("projection.{BUCKET_PARTITION_COLUMN}");
        projection.push((format!("{p}.type"), "enum".into()));
        projection.push((format!("{p}.values"), buckets.join(",")));
        template.push_str(&format!("{BUCKET_PARTITION_COLUMN}=${{{BUCKET_PARTITION_COLUMN}}}/"));
    }
    partitions.push(PARTITION_COLUMN);
    let p = format!("projection.{PARTITION_COLUMN}");
    projection.extend([
        (format!("{p}.type"), "date".to_string()),
        (format!("{p}.format"), "yyyy-MM-dd".to_string()),
        (format!("{p}.range"), format!("{},NOW", format_day(start))),
        (format!("{p}.interval"), "1".to_string()),
        (format!("{p}.interval.unit"), "DAYS".to_string()),
    ]);
    template.push_str(&format!("{PARTITION_COLUMN}=${{{PARTITION_COLUMN}}}/"));
    projection.push(("storage.location.template".to_string(), template));
    Ok(Table { database, name, location, fields: FIELDS, partitions, projection })
}

fn hive_columns(t: &Table) -> String {
    t.fields
        .iter()
        .map(|f| format!("  {} {} COMMENT {}", hive_ident(f.name), f.kind.athena_type(), hive_string(f.doc)))
        .collect::<Vec<_>>()
        .join(",\n")
}

fn hive_partitions(t: &Table) -> String {
    if t.partitions.is_empty() {
        return String::new();
    }
    let cols: Vec<String> = t.partitions.iter().map(|p| format!("{} string", hive_ident(p))).collect();
    format!("PARTITIONED BY ({})\n", cols.join(", "))
}

fn athena(t: &Table) -> String {
    // `classification` is what Glue ETL jobs and crawlers read the format from (AWS: they fail
    // without it); Athena ignores it.
    let mut props = vec![
        ("classification".to_string(), "parquet".to_string()),
        ("parquet.compression".to_string(), "ZSTD".to_string()),
    ];
    props.extend(t.projection.iter().cloned());
    let props: Vec<String> = props.iter().map(|(k, v)| format!("  {} = {}", hive_string(k), hive_string(v))).collect();
    format!(
        "CREATE EXTERNAL TABLE IF NOT EXISTS {}.{} (\n{}\n)\n{}STORED AS PARQUET\nLOCATION {}\nTBLPROPERTIES (\n{}\n);\n",
        hive_ident(&t.database),
        hive_ident(&t.name),
        hive_columns(t),
        hive_partitions(t),
        hive_string(&t.location),
        props.join(",\n")
    )
}

fn spark(t: &Table) -> String {
    let name = format!("{}.{}", hive_ident(&t.database), hive_ident(&t.name));
    let mut out = format!(
        "CREATE DATABASE IF NOT EXISTS {};\n\nCREATE EXTERNAL TABLE IF NOT EXISTS {name} (\n{}\n)\n{}STORED AS PARQUET\nLOCATION {};\n",
        hive_ident(&t.database),
        hive_columns(t),
        hive_partitions(t),
        hive_string(&t.location),
    );
    if !t.partitions.is_empty() {
        out.push_str(&format!("\n-- Registers the partitions found under the location; run again after new days arrive.\nMSCK REPAIR TABLE {name};\n"));
    }
    out
}

fn duckdb(t: &Table) -> String {
    // The request time is the UTC wall time (TIMESTAMP, as Athena's and Trino's column is), not
    // DuckDB's TIMESTAMPTZ: a query's `TIMESTAMP '... UTC'` literal then means the same instant in
    // any session time zone, where a TIMESTAMPTZ column would be compared in the session's.
    let column = |f: &FieldDef| match f.kind {
        Kind::TimestampMs => format!("  timezone('UTC', CAST({0} AS TIMESTAMPTZ)) AS {0}", duck_ident(f.name)),
        _ => format!("  CAST({0} AS {1}) AS {0}", duck_ident(f.name), duck_type(f.kind)),
    };
    let mut cols: Vec<String> = t.fields.iter().map(column).collect();
    cols.extend(t.partitions.iter().map(|p| format!("  CAST({0} AS VARCHAR) AS {0}", duck_ident(p))));
    let depth = "*/".repeat(t.partitions.len());
    let source = if t.partitions.is_empty() {
        format!("read_parquet({})", duck_string(&format!("{}*.parquet", t.location)))
    } else {
        let types: Vec<String> = t.partitions.iter().map(|p| format!("{}: 'VARCHAR'", duck_string(p))).collect();
        format!(
            "read_parquet({}, hive_partitioning = true, hive_types = {{{}}})",
            duck_string(&format!("{}{depth}*.parquet", t.location)),
            types.join(", ")
        )
    };
    // DuckDB's default schema is `main`; `default` would make a second one of that name.
    let schema = if t.database == "default" { "main" } else { &t.database };
    let create_schema =
        if schema == "main" { String::new() } else { format!("CREATE SCHEMA IF NOT EXISTS {};\n", duck_ident(schema)) };
    // Over S3 DuckDB needs httpfs and credentials: the AWS SDK's chain, as s3logs itself uses.
    let s3 = if t.location.starts_with("s3://") {
        "INSTALL httpfs;\nLOAD httpfs;\nCREATE SECRET IF NOT EXISTS s3logs_s3 (TYPE s3, PROVIDER credential_chain);\n"
    } else {
        ""
    };
    format!(
        "{s3}{create_schema}CREATE OR REPLACE VIEW {}.{} AS\nSELECT\n{}\nFROM {source};\n",
        duck_ident(schema),
        duck_ident(&t.name),
        cols.join(",\n"),
    )
}

fn trino_type(k: Kind) -> &'static str {
    match k {
        Kind::Utf8 => "varchar",
        Kind::Int32 => "integer",
        Kind::Int64 => "bigint",
        Kind::TimestampMs => "timestamp(3)",
        Kind::Binary => "varbinary",
    }
}

/// Trino's Hive connector. Partition columns come last among the columns, as it requires. A
/// local DEST is given as a `file://` URL.
fn trino(t: &Table) -> String {
    let mut cols: Vec<String> = t
        .fields
        .iter()
        .map(|f| format!("  {} {} COMMENT {}", duck_ident(f.name), trino_type(f.kind), duck_string(f.doc)))
        .collect();
    cols.extend(t.partitions.iter().map(|p| format!("  {} varchar", duck_ident(p))));
    let location = if is_url(&t.location) { t.location.clone() } else { format!("file://{}", t.location) };
    let mut with =
        vec![format!("  external_location = {}", duck_string(&location)), "  format = 'PARQUET'".to_string()];
    if !t.partitions.is_empty() {
        let names: Vec<String> = t.partitions.iter().map(|p| duck_string(p)).collect();
        with.push(format!("  partitioned_by = ARRAY[{}]", names.join(", ")));
    }
    let (schema, table) = (duck_ident(&t.database), duck_ident(&t.name));
    let mut out = format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};\n\nCREATE TABLE IF NOT EXISTS {schema}.{table} (\n{}\n)\nWITH (\n{}\n);\n",
        cols.join(",\n"),
        with.join(",\n")
    );
    if !t.partitions.is_empty() {
        out.push_str(&format!(
            "\n-- Registers the partitions found under the location; run again after new days arrive.\n\
             CALL system.sync_partition_metadata(schema_name => {}, table_name => {}, mode => 'ADD');\n",
            duck_string(&t.database),
            duck_string(&t.name)
        ));
    }
    out
}

fn glue_json(t: &Table) -> String {
    use serde_json::{Map, Value, json};
    let columns: Vec<Value> =
        t.fields.iter().map(|f| json!({"Name": f.name, "Type": f.kind.athena_type(), "Comment": f.doc})).collect();
    let partitions: Vec<Value> = t.partitions.iter().map(|p| json!({"Name": p, "Type": "string"})).collect();
    let mut params = Map::new();
    params.insert("classification".into(), "parquet".into());
    params.insert("EXTERNAL".into(), "TRUE".into());
    params.insert("parquet.compression".into(), "ZSTD".into());
    for (k, v) in &t.projection {
        params.insert(k.clone(), Value::from(v.as_str()));
    }
    let input = json!({
        "Name": t.name,
        "Description": format!("S3 server access logs converted by s3logs (database {})", t.database),
        "TableType": "EXTERNAL_TABLE",
        "Parameters": params,
        "PartitionKeys": partitions,
        "StorageDescriptor": {
            "Columns": columns,
            "Location": t.location,
            "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
            "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
            "Compressed": true,
            "SerdeInfo": {
                "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
                "Parameters": {"serialization.format": "1"}
            }
        }
    });
    serde_json::to_string_pretty(&input).expect("the table input serializes") + "\n"
}

/// The Glue `TableInput` of the log table `convert --glue-table` creates: the columns, SerDe and
/// `classification` of `--dialect glue-json`, without partition projection. The run registers
/// every partition, and a projection would hide the days before its start from Athena.
pub(crate) fn catalog_table_input(dest: &str, partition_by_bucket: bool) -> Result<serde_json::Value, Error> {
    let o = DdlOptions {
        dialect: Dialect::GlueJson,
        kind: TableKind::Data,
        database: "default".into(),
        table: None,
        dest: dest.to_string(),
        projection_start: Some("2006-03-01".into()),
        partition_by_bucket: Some(partition_by_bucket),
        buckets: vec!["unused".into()],
        store: StoreOptions::default(),
    };
    let mut input: serde_json::Value =
        serde_json::from_str(&render(&o)?).map_err(|e| Error::Internal(format!("the Glue table input: {e}")))?;
    if let Some(params) = input["Parameters"].as_object_mut() {
        params.retain(|k, _| !k.starts_with("projection.") && k != "storage.location.template");
    }
    Ok(input)
}

/// Renders the table definition.
pub fn render(o: &DdlOptions) -> Result<String, Error> {
    let t = resolve(o)?;
    Ok(match o.dialect {
        Dialect::Athena => athena(&t),
        Dialect::GlueJson => glue_json(&t),
        Dialect::Spark => spark(&t),
        Dialect::Duckdb => duckdb(&t),
        Dialect::Trino => trino(&t),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_lower_cased() {
        assert_eq!(checked_name("table", "S3_Access").unwrap(), "s3_access");
        assert_eq!(checked_name("table", "_x1").unwrap(), "_x1");
        for bad in ["", "a-b", "a.b", "a b", "a`b", "x'y"] {
            assert!(checked_name("table", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn literals_and_identifiers_are_escaped() {
        assert_eq!(hive_string("the bucket's owner"), r"'the bucket\'s owner'");
        assert_eq!(hive_string(r"a\b"), r"'a\\b'");
        assert_eq!(hive_ident("we`ird"), "`we``ird`");
        assert_eq!(duck_string("it's"), "'it''s'");
        assert_eq!(duck_ident("a\"b"), "\"a\"\"b\"");
    }
}
