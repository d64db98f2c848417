//! Writes a deterministic benchmark corpus of S3 access log objects, plus `expected.json`.
//!
//! cargo run --release --example gen_corpus -- --out DIR [--bytes 1GiB] [--objects 2048]
//!     [--seed 1] [--malformed 0.01] [--days 4] [--size-sigma 1.0]

use std::path::PathBuf;

use clap::Parser;
use rayon::prelude::*;
use s3logs_testkit::corpus::{CorpusSpec, Expected, object};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    out: PathBuf,
    /// Total size, in bytes or with a KiB/MiB/GiB suffix.
    #[arg(long, default_value = "1GiB")]
    bytes: String,
    #[arg(long, default_value_t = 2048)]
    objects: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of malformed lines.
    #[arg(long, default_value_t = 0.0)]
    malformed: f64,
    #[arg(long, default_value_t = 4)]
    days: u32,
    /// Log-normal object sizes with this sigma around the mean size (0: all equal).
    #[arg(long, default_value_t = 1.0)]
    size_sigma: f64,
}

fn size(s: &str) -> u64 {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().expect("a size such as 1GiB");
    n * match unit {
        "" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => panic!("unknown unit {other}"),
    }
}

fn main() {
    let a = Args::parse();
    let spec = CorpusSpec {
        seed: a.seed,
        total_bytes: size(&a.bytes),
        objects: a.objects,
        malformed_ratio: a.malformed,
        days: a.days,
        size_sigma: a.size_sigma,
        ..CorpusSpec::default()
    };
    let logs = a.out.join("logs");
    std::fs::create_dir_all(&logs).expect("create the corpus folder");
    let parts: Vec<Expected> = (0..spec.objects)
        .into_par_iter()
        .map(|i| {
            let (name, bytes, exp) = object(&spec, i);
            std::fs::write(logs.join(name), bytes).expect("write an object");
            exp
        })
        .collect();
    let mut total = Expected::default();
    for p in &parts {
        total.add(p);
    }
    let json = serde_json::to_string_pretty(&total).expect("serializes");
    std::fs::write(a.out.join("expected.json"), json + "\n").expect("write expected.json");
    eprintln!(
        "wrote {} objects, {} bytes, {} lines ({} records, {} malformed) to {}",
        total.objects,
        total.bytes,
        total.lines,
        total.records,
        total.malformed,
        logs.display()
    );
}
