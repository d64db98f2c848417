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

/// What a column's values are like in real logs, which decides how they are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// Values repeat (operations, statuses, buckets): dictionary-encoded.
    Repeating,
    /// Nearly every value is new (times, sizes, line numbers): plain, since a dictionary costs
    /// time and saves nothing.
    Distinct,
    /// Random ids (request ids, Host Ids): plain, and compressed as random text (ZSTD's fast
    /// level with its literals Huffman-coded; see `parquet_sink::pages::Codec::RandomText`).
    Random,
    /// Mostly absent, else random ids (version ids): dictionary-encoded, and compressed as random
    /// text where the dictionary is given up.
    SparseRandom,
}

/// One column of the table, and the storage policy that follows from its values.
#[derive(Debug, Clone, Copy)]
pub struct FieldDef {
    pub name: &'static str,
    pub kind: Kind,
    /// What its values are like (dictionary and codec follow from it).
    pub values: Values,
    /// Typical bytes per value of a string column, to size builders so they rarely grow.
    pub width: usize,
    pub doc: &'static str,
}

impl FieldDef {
    /// Whether its column chunks are dictionary-encoded.
    pub fn dictionary(&self) -> bool {
        matches!(self.values, Values::Repeating | Values::SparseRandom)
    }

    /// Whether its plain pages are compressed as random text.
    pub fn random_text(&self) -> bool {
        matches!(self.values, Values::Random | Values::SparseRandom)
    }
}

/// The field of the table named `name`.
pub fn field(name: &str) -> Option<&'static FieldDef> {
    FIELDS.iter().find(|f| f.name == name)
}

macro_rules! field_table {
    ($($idx:ident = $name:literal, $kind:ident, $values:ident, $width:literal, $doc:literal;)*) => {
        /// Column positions, in table order.
        pub mod col {
            #![allow(missing_docs)]
            field_table!(@consts 0usize, $($idx)*);
        }
        /// The table contract, in column order.
        pub const FIELDS: &[FieldDef] = &[
            $(FieldDef { name: $name, kind: Kind::$kind, values: Values::$values, width: $width, doc: $doc },)*
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
    BUCKETOWNER = "bucketowner", Utf8, Repeating, 72, "Canonical user ID of the owner of the source bucket (field 1).";
    BUCKET = "bucket", Utf8, Repeating, 20, "Name of the bucket the request was for (field 2).";
    REQUESTDATETIME = "requestdatetime", TimestampMs, Distinct, 0, "Time the request was received, UTC (field 3).";
    REMOTEIP = "remoteip", Utf8, Repeating, 20, "Apparent IP address of the requester, IPv4 or IPv6 (field 4).";
    REQUESTER = "requester", Utf8, Repeating, 40, "Canonical user ID, IAM/STS ARN or service of the requester; NULL when anonymous (field 5).";
    REQUESTID = "requestid", Utf8, Random, 20, "Request ID (field 6).";
    OPERATION = "operation", Utf8, Repeating, 20, "Operation, such as REST.GET.OBJECT or BATCH.DELETE.OBJECT (field 7).";
    KEY = "key", Utf8, Repeating, 40, "Object key, URL-encoded as S3 logged it (field 8).";
    REQUESTURI_OPERATION = "requesturi_operation", Utf8, Repeating, 6, "HTTP method of the Request-URI (field 9, before the first space); NULL when it starts with a path instead.";
    REQUESTURI_KEY = "requesturi_key", Utf8, Distinct, 72, "Path and query of the Request-URI (field 9, between method and protocol).";
    REQUESTURI_HTTPPROTOVERSION = "requesturi_httpprotoversion", Utf8, Repeating, 6, "Protocol of the Request-URI, such as HTTP/1.1 (field 9, last token).";
    HTTPSTATUS = "httpstatus", Int32, Repeating, 0, "HTTP status code of the response (field 10).";
    ERRORCODE = "errorcode", Utf8, Repeating, 6, "S3 error code, such as NoSuchKey (field 11).";
    BYTESSENT = "bytessent", Int64, Distinct, 0, "Response bytes sent, excluding HTTP overhead (field 12); 0 where S3 logged - (none sent).";
    OBJECTSIZE = "objectsize", Int64, Distinct, 0, "Total size of the object (field 13).";
    TOTALTIME = "totaltime", Int64, Repeating, 0, "Milliseconds the request was in flight, server side (field 14).";
    TURNAROUNDTIME = "turnaroundtime", Int64, Repeating, 0, "Milliseconds S3 spent processing the request (field 15).";
    REFERRER = "referrer", Utf8, Repeating, 6, "HTTP Referer header, verbatim (field 16).";
    USERAGENT = "useragent", Utf8, Repeating, 72, "HTTP User-Agent header, verbatim (field 17).";
    VERSIONID = "versionid", Utf8, SparseRandom, 6, "Version ID of the object (field 18).";
    HOSTID = "hostid", Utf8, Random, 72, "x-amz-id-2 request ID (field 19).";
    SIGV = "sigv", Utf8, Repeating, 6, "Signature version, SigV2 or SigV4 (field 20).";
    CIPHERSUITE = "ciphersuite", Utf8, Repeating, 20, "TLS cipher suite (field 21).";
    AUTHTYPE = "authtype", Utf8, Repeating, 6, "Authentication type: AuthHeader or QueryString (field 22).";
    ENDPOINT = "endpoint", Utf8, Repeating, 40, "Host header / endpoint used to connect (field 23).";
    TLSVERSION = "tlsversion", Utf8, Repeating, 6, "TLS version negotiated (field 24).";
    ACCESSPOINTARN = "accesspointarn", Utf8, Repeating, 6, "Access point ARN (field 25).";
    ACLREQUIRED = "aclrequired", Utf8, Repeating, 6, "Yes when an ACL was required to authorize the request (field 26).";
    SOURCEREGION = "sourceregion", Utf8, Repeating, 6, "AWS Region the request came from (field 27).";
    EXTRAFIELDS = "extrafields", Utf8, Repeating, 6, "Fields 28 and later, verbatim, joined by single spaces; NULL when there are none.";
    SOURCE_OBJECT = "source_object", Utf8, Repeating, 72, "The log object the record came from (its URL or path).";
    SOURCE_LINE = "source_line", Int64, Distinct, 0, "1-based line number of the record in its log object (after decompression).";
}

/// The rejects dataset (`DEST/rejects/`): one row per line that could not be parsed.
pub const REJECT_FIELDS: &[FieldDef] = &[
    FieldDef {
        name: "source_object",
        kind: Kind::Utf8,
        values: Values::Repeating,
        width: 0,
        doc: "The log object the line came from.",
    },
    FieldDef {
        name: "source_line",
        kind: Kind::Int64,
        values: Values::Distinct,
        width: 0,
        doc: "1-based line number in that object.",
    },
    FieldDef {
        name: "reason_code",
        kind: Kind::Utf8,
        values: Values::Repeating,
        width: 0,
        doc: "Kind of failure: truncated, bad_time, spliced, ...",
    },
    FieldDef {
        name: "reason",
        kind: Kind::Utf8,
        values: Values::Repeating,
        width: 0,
        doc: "What is wrong, naming the field and value.",
    },
    FieldDef {
        name: "raw_line",
        kind: Kind::Binary,
        values: Values::Repeating,
        width: 0,
        doc: "The line's bytes as read (up to the line limit).",
    },
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

    /// The storage policy each kind of values gets; a string column has a width to size its
    /// builder by, others none.
    #[test]
    fn the_field_table_holds_the_column_policy() {
        let policy = |n: &str| field(n).map(|f| (f.dictionary(), f.random_text()));
        assert_eq!(policy("hostid"), Some((false, true)));
        assert_eq!(policy("versionid"), Some((true, true)));
        assert_eq!(policy("requestdatetime"), Some((false, false)));
        assert_eq!(policy("operation"), Some((true, false)));
        for f in FIELDS.iter().chain(REJECT_FIELDS) {
            assert_eq!(f.width > 0, f.kind == Kind::Utf8 && !REJECT_FIELDS.iter().any(|r| std::ptr::eq(r, f)), "{f:?}");
        }
    }

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
