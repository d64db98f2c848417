//! A deterministic generator of realistic S3 server access logs, for benchmarks and large tests.
//!
//! Every object is generated from `(seed, index)` alone, so a corpus is the same on every machine
//! and objects can be generated in parallel. The mix follows what real logging buckets hold: GETs
//! dominate, anonymous and IAM requesters, IPv4 and IPv6, errors, `-` in numeric fields, long user
//! agents, URL-encoded UTF-8 keys, SigV2 and SigV4, old 18-field and current 27-field records, some
//! extra trailing fields, and objects whose records straddle midnight. Malformed lines (truncated
//! records and garbage) are added at a chosen ratio; [`Expected`] counts what a converter must find.

use std::collections::BTreeMap;
use std::io::Write;

/// Year, month and day of a day number (days since 1970-01-01).
fn civil_from_days(day: i32) -> (i32, u32, u32) {
    use chrono::Datelike;
    let date = chrono::NaiveDate::from_num_days_from_ce_opt(day + 719_163).expect("a day in range");
    (date.year(), date.month(), date.day())
}

/// `YYYY-MM-DD` of a day number.
pub fn format_day(day: i32) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct CorpusSpec {
    pub seed: u64,
    /// Total bytes across all objects (approximate: each object stops after the line that passes
    /// its share).
    pub total_bytes: u64,
    pub objects: usize,
    /// Share of lines that are malformed (each becomes one reject).
    pub malformed_ratio: f64,
    /// First day of the records, as days since 1970-01-01.
    pub first_day: i32,
    /// The records spread over this many days.
    pub days: u32,
    /// Object sizes: 0 makes them all equal; above, they are log-normal with this sigma around
    /// the same mean (1.0 gives 2,048 objects of a GiB from about 10 KB to 10 MB: many small
    /// ones and a tail of multi-MB ones, as S3 delivers for a bucket with quiet and busy hours).
    pub size_sigma: f64,
}

impl Default for CorpusSpec {
    fn default() -> Self {
        CorpusSpec {
            seed: 1,
            total_bytes: 1 << 30,
            objects: 2048,
            malformed_ratio: 0.0,
            first_day: 19_797, // 2024-03-15
            days: 4,
            size_sigma: 0.0,
        }
    }
}

/// What a correct conversion of the corpus finds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Expected {
    pub objects: u64,
    pub bytes: u64,
    pub lines: u64,
    /// Well-formed records: the rows a converter must write.
    pub records: u64,
    /// Malformed lines: the rejects a converter must count.
    pub malformed: u64,
    pub rows_per_date: BTreeMap<String, u64>,
}

impl Expected {
    pub fn add(&mut self, other: &Expected) {
        self.objects += other.objects;
        self.bytes += other.bytes;
        self.lines += other.lines;
        self.records += other.records;
        self.malformed += other.malformed;
        for (d, n) in &other.rows_per_date {
            *self.rows_per_date.entry(d.clone()).or_default() += n;
        }
    }
}

/// SplitMix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const OWNERS: &[&str] = &[
    "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be",
    "3b5a1f0e9d8c7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa9988",
];
const BUCKETS: &[&str] = &["www.example.com", "app-assets-prod", "data-lake-raw", "backup-eu-1", "static.example.org"];
const WORDS: &[&str] = &[
    "images",
    "css",
    "js",
    "2024",
    "reports",
    "uploads",
    "thumbs",
    "logo.png",
    "index.html",
    "data.csv",
    "video.mp4",
    "archive.tar.gz",
    "%E6%97%A5%E6%9C%AC",
    "caf%C3%A9",
    "my%20file.pdf",
    "a+b.txt",
    "q1",
    "users",
];
const AGENTS: &[&str] = &[
    "\"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36\"",
    "\"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Safari/605.1.15\"",
    "\"aws-cli/2.15.30 Python/3.11.8 Linux/6.1.79-99.167.amzn2023.x86_64 exe/x86_64.amzn.2023 prompt/off command/s3.cp\"",
    "\"Boto3/1.34.50 md/Botocore#1.34.50 ua/2.0 os/linux#5.10.210 md/arch#x86_64 lang/python#3.12.2 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.50\"",
    "\"aws-sdk-java/1.12.661 Linux/5.10.209 OpenJDK_64-Bit_Server_VM/17.0.10+7-LTS java/17.0.10 vendor/Amazon.com_Inc.\"",
    "\"curl/8.5.0\"",
    "\"Amazon CloudFront\"",
    "\"\"",
    "\"-\"",
];
const CIPHERS: &[&str] = &["ECDHE-RSA-AES128-GCM-SHA256", "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"];
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// (operation, HTTP method, share in 1000)
const OPERATIONS: &[(&str, &str, u64)] = &[
    ("REST.GET.OBJECT", "GET", 700),
    ("REST.HEAD.OBJECT", "HEAD", 80),
    ("REST.PUT.OBJECT", "PUT", 80),
    ("REST.DELETE.OBJECT", "DELETE", 30),
    ("REST.GET.BUCKET", "GET", 30),
    ("BATCH.DELETE.OBJECT", "", 20),
    ("REST.COPY.OBJECT", "PUT", 20),
    ("WEBSITE.GET.OBJECT", "GET", 20),
    ("S3.EXPIRE.OBJECT", "", 10),
    ("REST.PUT.PART", "PUT", 10),
];

fn hex(rng: &mut Rng, out: &mut Vec<u8>, n: usize, upper: bool) {
    let digits: &[u8] = if upper { b"0123456789ABCDEF" } else { b"0123456789abcdef" };
    for _ in 0..n {
        out.push(digits[rng.below(16) as usize]);
    }
}

fn base64ish(rng: &mut Rng, out: &mut Vec<u8>, n: usize) {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for _ in 0..n {
        out.push(A[rng.below(64) as usize]);
    }
    out.push(b'=');
}

fn time_field(out: &mut Vec<u8>, utc_secs: i64, offset_min: i64) {
    let local = utc_secs + offset_min * 60;
    let (y, m, d) = civil_from_days(local.div_euclid(86_400) as i32);
    let s = local.rem_euclid(86_400);
    let sign = if offset_min < 0 { '-' } else { '+' };
    let o = offset_min.abs();
    let _ = write!(
        out,
        "[{d:02}/{}/{y:04}:{:02}:{:02}:{:02} {sign}{:02}{:02}]",
        MONTHS[m as usize - 1],
        s / 3600,
        s / 60 % 60,
        s % 60,
        o / 60,
        o % 60
    );
}

/// Writes one well-formed record at `utc_secs` to `out` (no newline).
fn record(rng: &mut Rng, out: &mut Vec<u8>, utc_secs: i64) {
    let bucket = *rng.pick(BUCKETS);
    let _ = write!(out, "{} {bucket} ", rng.pick(OWNERS));
    let offset = if rng.chance(0.01) { 60 } else { 0 };
    time_field(out, utc_secs, offset);
    out.push(b' ');
    match rng.below(20) {
        0 => out.push(b'-'),
        1..=3 => {
            let _ = write!(out, "2001:db8:{:x}::{:x}", rng.below(65_536), rng.below(65_536));
        }
        _ => {
            let _ = write!(out, "{}.{}.{}.{}", 1 + rng.below(223), rng.below(256), rng.below(256), 1 + rng.below(254));
        }
    }
    let anonymous = rng.chance(0.4);
    out.push(b' ');
    if anonymous {
        out.push(b'-');
    } else {
        match rng.below(20) {
            0 => out.extend_from_slice(b"arn:aws:iam::cloudfront:user/CloudFront Origin Access Identity E2EXAMPLEID"),
            1 => out.extend_from_slice(rng.pick(OWNERS).as_bytes()),
            2..=4 => {
                let _ = write!(
                    out,
                    "arn:aws:sts::111122223333:assumed-role/etl-{}/session-{}",
                    rng.below(5),
                    rng.below(1000)
                );
            }
            _ => {
                let _ = write!(out, "arn:aws:iam::111122223333:user/user{}", rng.below(50));
            }
        }
    }
    out.push(b' ');
    hex(rng, out, 16, true);
    let mut pick = rng.below(1000);
    let (op, method) = OPERATIONS
        .iter()
        .find(|(_, _, share)| {
            let hit = pick < *share;
            pick = pick.saturating_sub(*share);
            hit
        })
        .map_or(("REST.GET.OBJECT", "GET"), |(o, m, _)| (*o, *m));
    let _ = write!(out, " {op} ");
    let key_start = out.len();
    if op == "REST.GET.BUCKET" {
        out.push(b'-');
    } else {
        for i in 0..2 + rng.below(3) {
            if i > 0 {
                out.push(b'/');
            }
            out.extend_from_slice(rng.pick(WORDS).as_bytes());
        }
    }
    let key = out[key_start..].to_vec();
    out.push(b' ');
    match op {
        "BATCH.DELETE.OBJECT" => out.push(b'-'),
        "S3.EXPIRE.OBJECT" => out.extend_from_slice(b"\"-\""),
        _ if op == "REST.GET.BUCKET" => {
            let _ = write!(out, "\"GET /{bucket}?list-type=2&prefix=images%2F HTTP/1.1\"");
        }
        _ => {
            let _ = write!(out, "\"{method} /{bucket}/");
            out.extend_from_slice(&key);
            if rng.chance(0.05) {
                out.extend_from_slice(b"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20240315");
            }
            out.extend_from_slice(b" HTTP/1.1\"");
        }
    }
    let (status, error) = match rng.below(100) {
        0..=79 => (if method == "DELETE" { "204" } else { "200" }, "-"),
        80..=84 => ("206", "-"),
        85..=88 => ("304", "-"),
        89..=93 => ("403", "AccessDenied"),
        94..=97 => ("404", "NoSuchKey"),
        98 => ("503", "SlowDown"),
        _ => ("500", "InternalError"),
    };
    let status = if op == "S3.EXPIRE.OBJECT" { "-" } else { status };
    let size = rng.below(1 << 34);
    let sent = if method == "GET" && status == "200" { size.to_string() } else { "-".to_string() };
    let turnaround = if rng.chance(0.1) { "-".to_string() } else { rng.below(500).to_string() };
    let _ = write!(out, " {status} {error} {sent} {size} {} {turnaround} ", 1 + rng.below(2000));
    if rng.chance(0.2) {
        let _ = write!(out, "\"https://www.example.com/page/{}\" ", rng.below(100));
    } else {
        out.extend_from_slice(b"\"-\" ");
    }
    out.extend_from_slice(rng.pick(AGENTS).as_bytes());
    // Tail: 10% old 18-field records, 10% 24 fields, 30% 26, 45% 27, 5% with an extra field.
    let shape = rng.below(100);
    out.push(b' ');
    if rng.chance(0.1) {
        base64ish(rng, out, 31);
    } else {
        out.push(b'-');
    }
    if shape < 10 {
        return;
    }
    out.push(b' ');
    base64ish(rng, out, 75);
    let sigv = if anonymous {
        "-"
    } else if rng.chance(0.05) {
        "SigV2"
    } else {
        "SigV4"
    };
    let auth = if anonymous {
        "-"
    } else if rng.chance(0.05) {
        "QueryString"
    } else {
        "AuthHeader"
    };
    let _ = write!(
        out,
        " {sigv} {} {auth} {bucket}.s3.us-east-1.amazonaws.com TLSv1.{}",
        rng.pick(CIPHERS),
        2 + rng.below(2)
    );
    if shape < 20 {
        return;
    }
    out.extend_from_slice(b" - -");
    if shape < 50 {
        return;
    }
    let _ = write!(out, " {}", if rng.chance(0.3) { "-" } else { "us-east-1" });
    if shape >= 95 {
        let _ = write!(out, " x-amz-future-field={}", rng.below(10));
    }
}

/// Writes one malformed line: a record truncated before its Referer, or plain garbage.
fn malformed(rng: &mut Rng, out: &mut Vec<u8>, utc_secs: i64) {
    if rng.chance(0.5) {
        let start = out.len();
        record(rng, out, utc_secs);
        let line = out[start..].to_vec();
        let quote = line.iter().rposition(|&b| b == b'"').unwrap_or(line.len());
        // Cut inside the numeric fields, well before the Referer and User-Agent.
        let cut = line[..quote].iter().rposition(|&b| b == b'"').unwrap_or(quote);
        let cut = line[..cut].iter().rposition(|&b| b == b' ').unwrap_or(cut).min(120);
        out.truncate(start + cut);
    } else {
        let _ = write!(out, "garbage line {} !@#$%^&*()", rng.next());
    }
}

/// The name and bytes of object `index`, and what it holds.
/// Object `index`'s size over the mean: exp(sigma Z - sigma^2 / 2) for a standard normal Z drawn
/// from the index (Box-Muller), so the mean stays 1.
fn size_factor(spec: &CorpusSpec, index: usize) -> f64 {
    if spec.size_sigma <= 0.0 {
        return 1.0;
    }
    let mut rng = Rng(spec.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (index as u64).rotate_left(17) ^ 0x5a5a);
    let uniform = |rng: &mut Rng| ((rng.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let (u1, u2) = (uniform(&mut rng), uniform(&mut rng));
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    (spec.size_sigma * z - spec.size_sigma * spec.size_sigma / 2.0).exp()
}

pub fn object(spec: &CorpusSpec, index: usize) -> (String, Vec<u8>, Expected) {
    let mut rng = Rng(spec.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ index as u64);
    let span = spec.days as i64 * 86_400;
    let start = spec.first_day as i64 * 86_400 + span * index as i64 / spec.objects.max(1) as i64;
    // An object holds about two hours of records, so objects near midnight straddle it.
    let window = 7_200i64;
    let mean = spec.total_bytes as f64 / spec.objects.max(1) as f64;
    let target = (mean * size_factor(spec, index)).max(1.0) as usize;
    let mut out = Vec::with_capacity(target + 2048);
    let mut exp = Expected { objects: 1, ..Expected::default() };
    let lines_estimate = (target / 420).max(1) as i64;
    let mut i = 0i64;
    while out.len() < target {
        let t = start + window * i / lines_estimate.max(1) + (rng.below(3) as i64);
        if rng.chance(spec.malformed_ratio) {
            malformed(&mut rng, &mut out, t);
            exp.malformed += 1;
        } else {
            record(&mut rng, &mut out, t);
            exp.records += 1;
            *exp.rows_per_date.entry(format_day(t.div_euclid(86_400) as i32)).or_default() += 1;
        }
        out.push(b'\n');
        exp.lines += 1;
        i += 1;
    }
    exp.bytes = out.len() as u64;
    let delivered = start + window + 300 + rng.below(600) as i64;
    let (y, m, d) = civil_from_days(delivered.div_euclid(86_400) as i32);
    let s = delivered.rem_euclid(86_400);
    let mut name = format!("{y:04}-{m:02}-{d:02}-{:02}-{:02}-{:02}-", s / 3600, s / 60 % 60, s % 60);
    let mut unique = Vec::new();
    hex(&mut rng, &mut unique, 16, true);
    name.push_str(std::str::from_utf8(&unique).expect("hex is ASCII"));
    (name, out, exp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The day numbers the generator writes are the calendar's.
    #[test]
    fn day_numbers_are_calendar_days() {
        assert_eq!(format_day(0), "1970-01-01");
        assert_eq!(format_day(19_797), "2024-03-15");
        assert_eq!(format_day(-1), "1969-12-31");
        assert_eq!(format_day(11_016), "2000-02-29");
    }
}
