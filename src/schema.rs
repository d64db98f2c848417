//! The table contract as one field table.
//!
//! Every column `s3logs` writes is declared once here, with its Arrow type, its Athena type and a
//! line of documentation. The Arrow schema, the batch builders, the README's schema table and the
//! DDL are all derived from [`FIELDS`], so adding a column is a one-line change here plus the
//! parser code that fills it.

use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// The physical kind of a column; Arrow and Athena types are derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Utf8,
    Int32,
    Int64,
    /// Milliseconds since the Unix epoch, UTC.
    TimestampMs,
    Binary,
}

impl Kind {
    pub fn arrow_type(self) -> DataType {
        match self {
            Kind::Utf8 => DataType::Utf8,
            Kind::Int32 => DataType::Int32,
            Kind::Int64 => DataType::Int64,
            Kind::TimestampMs => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            Kind::Binary => DataType::Binary,
        }
    }

    /// The Athena / Hive / Glue type name.
    pub fn athena_type(self) -> &'static str {
        match self {
            Kind::Utf8 => "string",
            Kind::Int32 => "int",
            Kind::Int64 => "bigint",
            Kind::TimestampMs => "timestamp",
            Kind::Binary => "binary",
        }
    }
}

/// One column of the table.
#[derive(Debug, Clone, Copy)]
pub struct FieldDef {
    pub name: &'static str,
    pub kind: Kind,
    pub doc: &'static str,
}

macro_rules! field_table {
    ($($idx:ident = $name:literal, $kind:ident, $doc:literal;)*) => {
        /// Column positions, in table order.
        pub mod col {
            #![allow(missing_docs)]
            field_table!(@consts 0usize, $($idx)*);
        }
        /// The table contract, in column order.
        pub const FIELDS: &[FieldDef] = &[
            $(FieldDef { name: $name, kind: Kind::$kind, doc: $doc },)*
        ];
    };
    (@consts $n:expr, $first:ident $($rest:ident)*) => {
        pub const $first: usize = $n;
        field_table!(@consts $n + 1usize, $($rest)*);
    };
    (@consts $n:expr,) => {
        pub const COUNT: usize = $n;
    };
}

field_table! {
    BUCKETOWNER = "bucketowner", Utf8, "Canonical user ID of the owner of the source bucket (field 1).";
    BUCKET = "bucket", Utf8, "Name of the bucket the request was for (field 2).";
    REQUESTDATETIME = "requestdatetime", TimestampMs, "Time the request was received, UTC (field 3).";
    REMOTEIP = "remoteip", Utf8, "Apparent IP address of the requester, IPv4 or IPv6 (field 4).";
    REQUESTER = "requester", Utf8, "Canonical user ID, IAM/STS ARN or service of the requester; NULL when anonymous (field 5).";
    REQUESTID = "requestid", Utf8, "Request ID (field 6).";
    OPERATION = "operation", Utf8, "Operation, such as REST.GET.OBJECT or BATCH.DELETE.OBJECT (field 7).";
    KEY = "key", Utf8, "Object key, URL-encoded as S3 logged it (field 8).";
    REQUESTURI_OPERATION = "requesturi_operation", Utf8, "HTTP method of the Request-URI (field 9, before the first space).";
    REQUESTURI_KEY = "requesturi_key", Utf8, "Path and query of the Request-URI (field 9, between method and protocol).";
    REQUESTURI_HTTPPROTOVERSION = "requesturi_httpprotoversion", Utf8, "Protocol of the Request-URI, such as HTTP/1.1 (field 9, last token).";
    HTTPSTATUS = "httpstatus", Int32, "HTTP status code of the response (field 10).";
    ERRORCODE = "errorcode", Utf8, "S3 error code, such as NoSuchKey (field 11).";
    BYTESSENT = "bytessent", Int64, "Response bytes sent, excluding HTTP overhead (field 12).";
    OBJECTSIZE = "objectsize", Int64, "Total size of the object (field 13).";
    TOTALTIME = "totaltime", Int64, "Milliseconds the request was in flight, server side (field 14).";
    TURNAROUNDTIME = "turnaroundtime", Int64, "Milliseconds S3 spent processing the request (field 15).";
    REFERRER = "referrer", Utf8, "HTTP Referer header, verbatim (field 16).";
    USERAGENT = "useragent", Utf8, "HTTP User-Agent header, verbatim (field 17).";
    VERSIONID = "versionid", Utf8, "Version ID of the object (field 18).";
    HOSTID = "hostid", Utf8, "x-amz-id-2 request ID (field 19).";
    SIGV = "sigv", Utf8, "Signature version, SigV2 or SigV4 (field 20).";
    CIPHERSUITE = "ciphersuite", Utf8, "TLS cipher suite (field 21).";
    AUTHTYPE = "authtype", Utf8, "Authentication type: AuthHeader or QueryString (field 22).";
    ENDPOINT = "endpoint", Utf8, "Host header / endpoint used to connect (field 23).";
    TLSVERSION = "tlsversion", Utf8, "TLS version negotiated (field 24).";
    ACCESSPOINTARN = "accesspointarn", Utf8, "Access point ARN (field 25).";
    ACLREQUIRED = "aclrequired", Utf8, "Yes when an ACL was required to authorize the request (field 26).";
    SOURCEREGION = "sourceregion", Utf8, "AWS Region the request came from (field 27).";
    EXTRAFIELDS = "extrafields", Utf8, "Fields 28 and later, verbatim, joined by single spaces; NULL when there are none.";
    SOURCE_OBJECT = "source_object", Utf8, "The log object the record came from (its URL or path).";
    SOURCE_LINE = "source_line", Int64, "1-based line number of the record in its log object (after decompression).";
}

/// The rejects dataset (`DEST/rejects/`): one row per line that could not be parsed.
pub const REJECT_FIELDS: &[FieldDef] = &[
    FieldDef { name: "source_object", kind: Kind::Utf8, doc: "The log object the line came from." },
    FieldDef { name: "source_line", kind: Kind::Int64, doc: "1-based line number in that object." },
    FieldDef { name: "reason_code", kind: Kind::Utf8, doc: "Kind of failure: truncated, bad_time, spliced, ..." },
    FieldDef { name: "reason", kind: Kind::Utf8, doc: "What is wrong, naming the field and value." },
    FieldDef { name: "raw_line", kind: Kind::Binary, doc: "The line's bytes as read (up to the line limit)." },
];

/// The Hive-style partition column, which lives only in folder names (`dt=YYYY-MM-DD`).
pub const PARTITION_COLUMN: &str = "dt";

/// The partition column of the source-bucket level (`convert --partition-by bucket,dt`). It is not
/// named `bucket` because Hive forbids a partition column with the name of a data column.
pub const BUCKET_PARTITION_COLUMN: &str = "source_bucket";

fn schema_of(fields: &[FieldDef], required: &[&str]) -> SchemaRef {
    let fields: Vec<Field> =
        fields.iter().map(|f| Field::new(f.name, f.kind.arrow_type(), !required.contains(&f.name))).collect();
    Arc::new(Schema::new(fields))
}

/// The Arrow schema of the data files (without the partition column).
pub fn arrow_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA.get_or_init(|| schema_of(FIELDS, &["requestdatetime", "source_object", "source_line"])).clone()
}

/// The Arrow schema of the rejects files.
pub fn reject_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            schema_of(REJECT_FIELDS, &["source_object", "source_line", "reason_code", "reason", "raw_line"])
        })
        .clone()
}

/// The schema table as Markdown, as it appears in README.md between the schema markers.
pub fn markdown_table() -> String {
    let mut out = String::from("| column | Athena type | Arrow type | meaning |\n|---|---|---|---|\n");
    for f in FIELDS {
        let arrow = match f.kind {
            Kind::Utf8 => "Utf8",
            Kind::Int32 => "Int32",
            Kind::Int64 => "Int64",
            Kind::TimestampMs => "Timestamp(ms, UTC)",
            Kind::Binary => "Binary",
        };
        out.push_str(&format!("| `{}` | {} | {} | {} |\n", f.name, f.kind.athena_type(), arrow, f.doc));
    }
    out.push_str(&format!(
        "| `{}` (partition) | string | folder `dt=YYYY-MM-DD` | UTC date of `requestdatetime`; only in the folder name. |\n",
        PARTITION_COLUMN
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_constants_follow_table_order() {
        assert_eq!(FIELDS.len(), col::COUNT);
        assert_eq!(FIELDS[col::BUCKETOWNER].name, "bucketowner");
        assert_eq!(FIELDS[col::SOURCEREGION].name, "sourceregion");
        assert_eq!(FIELDS[col::SOURCE_LINE].name, "source_line");
        assert_eq!(FIELDS[col::REQUESTDATETIME].kind, Kind::TimestampMs);
    }

    #[test]
    fn names_are_lower_case_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for f in FIELDS {
            assert_eq!(f.name, f.name.to_ascii_lowercase());
            assert!(seen.insert(f.name), "duplicate column {}", f.name);
        }
    }
}
