//! A conversion from "S3" with S3's timing, for the benchmark (`scripts/bench.sh --s3-model`):
//! `s3://bench/<prefix>` is served from a local folder through the S3 model of the test kit
//! (first-byte latency per request, per-connection bandwidth, listing pages of 1,000 keys), put in
//! place of the S3 client by a store layer. Listing, fetching, parsing and encoding run exactly as
//! against S3; only the network is modelled. Prints one JSON object: wall and CPU seconds, peak
//! RSS, the model's requests (and the most in flight at once) and the report's counts.
//!
//! cargo run --release --example s3_model -- CORPUS_ROOT PREFIX OUT [LATENCY_MS] [MB_PER_S] [CONCURRENCY]
//! (CORPUS_ROOT holds PREFIX, e.g. the --out of gen_corpus and `logs/`)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use s3logs::{ConvertOptions, run};
use s3logs::{StoreLayer, StoreOptions};
use s3logs_testkit::s3_model::{S3Model, Timing};

/// The allocator of the s3logs binary, so memory compares with a local run's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("Linux /proc");
    let fields: Vec<&str> = stat.rsplit_once(')').expect("stat").1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn main() {
    s3logs::allocator::keep_freed_memory_longer();
    let args: Vec<String> = std::env::args().collect();
    let (root, prefix, out) = (args[1].clone(), args[2].clone(), args[3].clone());
    let arg = |i: usize, default: f64| args.get(i).map_or(default, |v| v.parse().expect("a number"));
    let timing = Timing { latency: Duration::from_secs_f64(arg(4, 30.0) / 1000.0), bandwidth: arg(5, 100.0) * 1e6 };
    let model = Arc::new(S3Model::over_folder(std::path::Path::new(&root), timing));
    let counts = model.counts.clone();
    let layer = StoreLayer(Arc::new(move |_s3| model.clone() as Arc<dyn object_store::ObjectStore>));
    let mut opts = ConvertOptions {
        sources: vec![format!("s3://bench/{prefix}")],
        output: out.into(),
        max_reject_ratio: 1.0,
        store: StoreOptions {
            region: Some("us-east-1".into()),
            static_credentials: Some(("unused".into(), "unused".into())),
            layer: Some(layer),
            ..StoreOptions::default()
        },
        ..ConvertOptions::default()
    };
    if let Some(c) = args.get(6) {
        opts.concurrency = c.parse().expect("a request cap");
    }
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let report = run(&opts).expect("conversion");
    let (wall, cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let summary = serde_json::json!({
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_kib": peak_rss_kib(),
        "requests": n(&counts.requests),
        "gets": n(&counts.gets),
        "list_pages": n(&counts.list_pages),
        "max_in_flight": n(&counts.max_in_flight),
        "objects_read": report.objects_read,
        "rows_written": report.rows_written,
        "lines_rejected": report.lines_rejected,
        "lines_read": report.lines_read,
        "fetch_wait_s": report.fetch.seconds,
    });
    println!("{summary}");
}
