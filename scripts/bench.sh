#!/usr/bin/env bash
# Builds release, generates the corpus if absent, and runs s3logs against DuckDB (read_csv space
# dialect and regexp_extract) and zstd -1 -T2 on the same bytes, alternating runs.
#   scripts/bench.sh [--bytes 1GiB] [--objects 2048] [--malformed 0.01] [--reps 3] [--tools s3logs,duckdb_csv,duckdb_regex,zstd]
#                    [--baseline PATH]   (an earlier s3logs build, run alternately: before and after)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore duckdb
cargo build --release --locked --quiet --workspace --bin s3logs --bin gen_corpus
exec python3 scripts/bench.py "$@"
