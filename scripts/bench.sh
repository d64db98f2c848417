#!/usr/bin/env bash
# Builds release, generates the corpus if absent, and runs s3logs against DuckDB (read_csv space
# dialect and regexp_extract) and zstd -1 -T2 on the same bytes, alternating runs.
#   scripts/bench.sh [--bytes 1GiB] [--objects 2048] [--malformed 0.01] [--reps 3] [--tools s3logs,duckdb_csv,duckdb_regex,zstd]
#                    [--baseline PATH]   (an earlier s3logs build, run alternately: before and after)
#                    [--size-sigma 1.0]  (log-normal object sizes; 0: all equal)
#                    [--logs DIR]        (a folder of log objects instead of the generated corpus)
#   scripts/bench.sh --s3-model [--small-objects 50000] [--latency-ms 30] [--bandwidth-mbs 100]
#                    (the corpus and one of 50,000 objects, from local disk and from a model of S3)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore duckdb
cargo build --release --locked --quiet --workspace --bin s3logs --bin gen_corpus --example s3_model
exec python3 scripts/bench.py "$@"
