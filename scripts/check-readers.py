#!/usr/bin/env python3
"""Converts testdata/ with the release binary and reads the result with pyarrow and DuckDB.

Checks that two independent Parquet readers see the table contract's types (written out below from
the contract, not from s3logs' code), the hive `dt` partitions, the row and reject counts, and that
lines read = rows + rejects. Run from the repository root: python3 scripts/check-readers.py
"""
import json, subprocess, sys, tempfile
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

STR, TS, I32, I64 = pa.string(), pa.timestamp("ms", tz="UTC"), pa.int32(), pa.int64()
CONTRACT = {
    "bucketowner": STR, "bucket": STR, "requestdatetime": TS, "remoteip": STR, "requester": STR,
    "requestid": STR, "operation": STR, "key": STR, "requesturi_operation": STR, "requesturi_key": STR,
    "requesturi_httpprotoversion": STR, "httpstatus": I32, "errorcode": STR, "bytessent": I64,
    "objectsize": I64, "totaltime": I64, "turnaroundtime": I64, "referrer": STR, "useragent": STR,
    "versionid": STR, "hostid": STR, "sigv": STR, "ciphersuite": STR, "authtype": STR, "endpoint": STR,
    "tlsversion": STR, "accesspointarn": STR, "aclrequired": STR, "sourceregion": STR, "extrafields": STR,
    "source_object": STR, "source_line": I64,
}
DUCK = {STR: "VARCHAR", TS: "TIMESTAMP WITH TIME ZONE", I32: "INTEGER", I64: "BIGINT"}


def main():
    root = Path(__file__).resolve().parent.parent
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], cwd=root, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        dest, report = Path(tmp) / "ds", Path(tmp) / "report.json"
        subprocess.run([root / "target/release/s3logs", "convert", root / "testdata/logs", "--output", dest,
                        "--report", report, "--quiet"], check=True)
        r = json.loads(report.read_text())
        assert r["lines_read"] == r["rows_written"] + r["lines_rejected"] == 24, r
        assert (r["rows_written"], r["lines_rejected"]) == (23, 1), r

        # pyarrow
        files = ds.dataset(dest / "data", format="parquet")
        assert files.schema.names == list(CONTRACT), files.schema.names
        for name, typ in CONTRACT.items():
            assert files.schema.field(name).type == typ, (name, files.schema.field(name).type, typ)
        table = ds.dataset(dest / "data", format="parquet", partitioning="hive").to_table()
        counts = table.group_by("dt").aggregate([("source_line", "count")]).to_pylist()
        assert sorted((str(c["dt"]), c["source_line_count"]) for c in counts) == [("2024-03-14", 3), ("2024-03-15", 20)], counts
        rejects = ds.dataset(dest / "rejects", format="parquet").to_table()
        assert rejects.num_rows == 1 and rejects.column("raw_line").type == pa.binary()
        print(f"pyarrow {pa.__version__}: {table.num_rows} rows, {len(counts)} partitions, contract types ok")

        # DuckDB
        con = duckdb.connect()
        con.sql("SET TimeZone = 'UTC'")
        src = f"read_parquet('{dest}/data/*/*.parquet', hive_partitioning = true)"
        described = {row[0]: row[1] for row in con.sql(f"DESCRIBE SELECT * FROM {src}").fetchall()}
        for name, typ in CONTRACT.items():
            assert described[name] == DUCK[typ], (name, described[name], DUCK[typ])
        rows = con.sql(f"SELECT CAST(dt AS VARCHAR), count(*) FROM {src} GROUP BY ALL ORDER BY 1").fetchall()
        assert rows == [("2024-03-14", 3), ("2024-03-15", 20)], rows
        t = con.sql(f"SELECT CAST(requestdatetime AS VARCHAR) FROM {src} WHERE requestid = 'B1B2C3D4E5F60004'").fetchall()
        assert t == [("2024-03-15 02:15:00+00",)], t
        print(f"duckdb {duckdb.__version__}: {sum(n for _, n in rows)} rows, contract types ok")


if __name__ == "__main__":
    sys.exit(main())
