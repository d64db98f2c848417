#!/usr/bin/env bash
# Proves the generated table definitions and queries/*.sql on two independent engines:
# converts testdata/, runs every query through DuckDB (on the `ddl --dialect duckdb` view) and
# compares with the hand-written answers in queries/expected/, then creates the table in Spark SQL
# with Hive support from `ddl --dialect spark`, repairs partitions, runs the same queries and
# requires the same answers; then converts with --glue-table against moto's Glue and gives Spark's
# metastore exactly the partitions s3logs registered (no MSCK REPAIR): the same answers again.
# Parses the Trino DDL and the queries with sqlglot's Trino dialect. Needs Java 17 (for Spark);
# installs duckdb, pytz, pyspark, sqlglot, boto3 and moto from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore duckdb pytz pyspark sqlglot boto3 "moto[server]"
cargo build --release --locked --quiet
python3 scripts/check_engines.py "$@"
