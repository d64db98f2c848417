//! Parse-only throughput: generated log bytes into Arrow batches (tokenize, convert, route to
//! days), without reading files or encoding Parquet. Reported as bytes per second, one thread.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use s3logs::parser::{Line, for_each_line};
use s3logs::parser::{ParseOptions, parse_chunk};
use s3logs_testkit::corpus::{CorpusSpec, object};

fn parse(c: &mut Criterion) {
    let spec = CorpusSpec { total_bytes: 64 << 20, objects: 16, malformed_ratio: 0.01, ..CorpusSpec::default() };
    let objects: Vec<Vec<u8>> = (0..spec.objects).map(|i| object(&spec, i).1).collect();
    let bytes: usize = objects.iter().map(Vec::len).sum();
    let opts = ParseOptions {
        max_line_bytes: 1 << 20,
        partition_by_bucket: false,
        key_days: None,
        days_from_first_record: false,
    };
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.sample_size(10);
    g.bench_function("parse_chunk_64MiB_one_thread", |b| {
        b.iter(|| {
            let rows: u64 = objects.iter().map(|o| parse_chunk(o, 1, "bench", opts).rows).sum();
            assert!(rows > 0);
            rows
        })
    });
    // Lines are split as the converter splits them (`str::lines` spent a tenth of this bench's
    // time in std's byte search).
    g.bench_function("tokenize_only_64MiB_one_thread", |b| {
        b.iter(|| {
            let mut rows = 0u64;
            for o in &objects {
                for_each_line(o, 1, 1 << 20, |line| {
                    if let Line::Text { text, .. } = line {
                        rows += s3logs::parser::parse_line(&text).is_ok() as u64;
                    }
                });
            }
            assert!(rows > 0);
            rows
        })
    });
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
