//! The S3 fetch path with a store that is not the bottleneck: `s3://bench/<prefix>` objects are
//! served from a local folder through object_store's LocalFileSystem (put in place of the S3
//! client by a store layer), so listing, concurrent GETs, windows, prefetch, parsing and encoding
//! run exactly as against S3. Prints wall time and CPU use (user + system over wall; 200% is both
//! cores), to show whether the pipeline keeps both cores busy while fetching. moto cannot show
//! this: it serves ~500 objects a second and is the bottleneck.
//!
//! cargo run --release --example fetch_pipeline -- CORPUS_ROOT PREFIX OUT [CONCURRENCY]
//! (CORPUS_ROOT holds PREFIX, e.g. the --out of gen_corpus and `logs/`)

use std::sync::Arc;
use std::time::Instant;

use s3logs::{ConvertOptions, run};
use s3logs::{StoreLayer, StoreOptions};

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("Linux /proc");
    let fields: Vec<&str> = stat.rsplit_once(')').expect("stat").1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (root, prefix, out) = (args[1].clone(), args[2].clone(), args[3].clone());
    let concurrency = args.get(4).map_or(16, |c| c.parse().unwrap());
    let local = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&root).expect("corpus root"));
    let layer = StoreLayer(Arc::new(move |_s3| local.clone() as Arc<dyn object_store::ObjectStore>));
    let opts = ConvertOptions {
        sources: vec![format!("s3://bench/{prefix}")],
        output: out.into(),
        concurrency,
        max_reject_ratio: 1.0,
        store: StoreOptions {
            region: Some("us-east-1".into()),
            static_credentials: Some(("unused".into(), "unused".into())),
            layer: Some(layer),
            ..StoreOptions::default()
        },
        ..ConvertOptions::default()
    };
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let report = run(&opts).expect("conversion");
    let (wall, cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    println!(
        "{} objects, {} bytes, {} rows: wall {wall:.2} s, cpu {cpu:.2} s ({:.0}% of one core), {:.0} MiB/s; \
         waiting for fetches {:.2} s",
        report.fetch.objects,
        report.fetch.bytes,
        report.rows_written,
        100.0 * cpu / wall,
        report.fetch.bytes as f64 / wall / (1 << 20) as f64,
        report.fetch.seconds
    );
}
