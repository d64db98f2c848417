#!/usr/bin/env python3
"""Runs queries/*.sql on DuckDB and Spark over testdata/ converted by s3logs (see check-engines.sh),
in UTC and in two other session time zones.

Usage: python3 scripts/check_engines.py [--skip-spark] [--write-trino]
"""
import datetime as dt
import json, os, subprocess, sys, tempfile, time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target/release/s3logs"


def norm(v):
    """One comparable form for every engine's values: timestamps as UTC text, numbers as int."""
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return v.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(v, Decimal):
        return int(v)
    return v


# The session time zones every query runs in: UTC, one west and one east of it (with a half hour).
# The queries' `TIMESTAMP '... UTC'` literals must give the same answers in each.
ZONES = ["UTC", "America/New_York", "Asia/Kolkata"]

# Each layout convert can write, with the database its table goes into.
LAYOUTS = [("dt", "logs"), ("bucket,dt", "logs_by_bucket")]


def ddl(dest, dialect, db):
    return subprocess.run([BIN, "ddl", dest, "--dialect", dialect, "--database", db],
                          check=True, capture_output=True, text=True).stdout


def queries():
    return sorted((ROOT / "queries").glob("*.sql"))


def expected(q):
    return json.loads((ROOT / "queries/expected" / (q.stem + ".json")).read_text())


def compare(engine, name, got, want):
    if got != want:
        print(f"{engine}: {name}: MISMATCH\n  got:  {got}\n  want: {want}")
        return False
    print(f"{engine}: {name}: {len(got)} rows ok")
    return True


def run_duckdb(dest, db):
    import duckdb
    results, ok = {}, True
    for zone in ZONES:
        con = duckdb.connect()
        con.execute(f"SET TimeZone = '{zone}'")
        con.execute(ddl(dest, "duckdb", db))
        con.execute(f"USE {db}")
        for q in queries():
            rows = [[norm(v) for v in r] for r in con.execute(q.read_text()).fetchall()]
            results[q.stem] = rows
            ok &= compare(f"duckdb {db} {zone}", q.stem, rows, expected(q))
            ok &= bool(rows) or not print(f"duckdb {db} {zone}: {q.stem}: EMPTY")
            # The Trino form (zoneless literals against the view's UTC wall time, the column
            # Trino and Athena have) gives the same answers in every zone too.
            rows = [[norm(v) for v in r] for r in con.execute(trino_query(q)).fetchall()]
            ok &= compare(f"duckdb {db} {zone} trino form", q.stem, rows, expected(q))
        con.close()
    return results, ok


def trino_query(q):
    """queries/trino/<name>: the query with its `TIMESTAMP '... UTC'` literals zoneless. Trino
    compares a zoned literal with a `timestamp` column in the session's zone; a zoneless one is
    compared with the column's UTC wall time as it is, in any session zone."""
    import re
    text = re.sub(r"TIMESTAMP '([0-9-]+ [0-9:]+) UTC'", r"TIMESTAMP '\1'", q.read_text())
    text = "".join(l for l in text.splitlines(keepends=True) if not l.startswith("-- Times carry their zone"))
    return (f"-- Generated from ../{q.name} for Trino (scripts/check_engines.py --write-trino): the same query with\n"
            "-- zoneless UTC literals, which Trino compares with the timestamp column without the session's zone.\n"
            + text)


def check_trino(dest, db, partitions):
    """Trino has no local engine here: its DDL and every query must parse with sqlglot's Trino
    dialect (errors raised), declare the contract's 32 columns plus the partition columns, and
    end with the partition sync call."""
    import sqlglot
    from sqlglot import exp
    text = ddl(dest, "trino", db)
    ok = True
    stmts = sqlglot.parse(text, read="trino", error_level=sqlglot.ErrorLevel.RAISE)
    tables = [s for s in stmts if isinstance(s, exp.Create) and s.kind == "TABLE"]
    cols = [c.name for c in tables[0].find_all(exp.ColumnDef)] if len(tables) == 1 else []
    props = tables[0].find(exp.Properties).sql("trino") if len(tables) == 1 else ""
    want = ["external_location=", "format='PARQUET'", f"PARTITIONED_BY=ARRAY[{', '.join(repr(p) for p in partitions)}]"]
    if len(cols) != 32 + len(partitions) or cols[-len(partitions):] != partitions or not all(w in props for w in want):
        print(f"trino {db}: DDL MISMATCH: {len(cols)} columns {cols[-3:]}, properties {props}")
        ok = False
    if "CALL system.sync_partition_metadata(" not in text:
        print(f"trino {db}: no partition sync call")
        ok = False
    for q in queries():
        sqlglot.parse(q.read_text(), read="trino", error_level=sqlglot.ErrorLevel.RAISE)
        # queries/trino/ is generated from queries/ and must stay so.
        t = ROOT / "queries/trino" / q.name
        if not t.exists() or t.read_text() != trino_query(q):
            print(f"trino: {t} is not generated from {q.name}: run scripts/check_engines.py --write-trino")
            ok = False
        sqlglot.parse(trino_query(q), read="trino", error_level=sqlglot.ErrorLevel.RAISE)
    if ok:
        print(f"trino {db}: DDL ({len(cols)} columns) and {len(queries())} queries parse")
    return ok


def glue_partitions(tmp):
    """Converts testdata/ with `--glue-table` against moto's Glue (on loopback) and returns the
    DEST and the partitions s3logs registered there, as (values, location)."""
    import boto3, socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline, "moto did not start"
                time.sleep(0.1)
        endpoint = f"http://127.0.0.1:{port}"
        env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1",
                   AWS_EC2_METADATA_DISABLED="true")
        dest = tmp / "glued"
        subprocess.run([BIN, "convert", ROOT / "testdata/logs", "--output", dest, "--quiet",
                        "--glue-table", "logs_glue.s3_access", "--glue-endpoint-url", endpoint], check=True, env=env)
        glue = boto3.client("glue", endpoint_url=endpoint, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test")
        parts = glue.get_partitions(DatabaseName="logs_glue", TableName="s3_access")["Partitions"]
        return str(dest), [(p["Values"], p["StorageDescriptor"]["Location"]) for p in parts]
    finally:
        moto.terminate()
        moto.wait()


def run_spark_from_catalog(spark, dest, parts, duck):
    """The table Spark sees when its metastore holds exactly the partitions s3logs registered in
    Glue (no MSCK REPAIR): every query gives DuckDB's answers."""
    db = "logs_glue"
    for stmt in ddl(dest, "spark", db).split(";\n"):
        body = "\n".join(l for l in stmt.splitlines() if not l.startswith("--")).strip()
        if body and not body.startswith("MSCK"):
            spark.sql(body)
    for values, location in parts:
        spark.sql(f"ALTER TABLE {db}.s3_access ADD PARTITION (dt = '{values[0]}') LOCATION '{location}'")
    spark.sql(f"USE {db}")
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    ok = len(parts) == 2 or not print(f"spark {db}: {len(parts)} partitions in Glue, want 2")
    for q in queries():
        rows = [[norm(v) for v in r] for r in spark.sql(q.read_text().strip().rstrip(";")).collect()]
        ok &= compare(f"spark {db} (partitions from Glue)", q.stem, rows, duck[q.stem])
    return ok


def run_spark(datasets, tmp, duck, glued=None):
    from pyspark.sql import SparkSession
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"  # stay on loopback
    spark = (SparkSession.builder.master("local[1]").appName("s3logs-check")
             .config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.driver.host", "127.0.0.1")
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.warehouse.dir", str(tmp / "warehouse"))
             .config("spark.ui.enabled", "false")
             .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={tmp}")
             .config("spark.hadoop.javax.jdo.option.ConnectionURL", f"jdbc:derby:;databaseName={tmp}/metastore_db;create=true")
             .enableHiveSupport().getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    try:
        ok = True
        for dest, db in datasets:
            for stmt in ddl(dest, "spark", db).split(";\n"):
                body = "\n".join(l for l in stmt.splitlines() if not l.startswith("--")).strip()
                if body:
                    spark.sql(body)
            spark.sql(f"USE {db}")
            n = spark.sql("SELECT count(*) FROM s3_access").collect()[0][0]
            assert n == 23, f"spark sees {n} rows in {db}, want 23 (page-index or timestamp trouble?)"
            for zone in ZONES:
                spark.conf.set("spark.sql.session.timeZone", zone)
                for q in queries():
                    rows = [[norm(v) for v in r] for r in spark.sql(q.read_text().strip().rstrip(";")).collect()]
                    ok &= compare(f"spark {db} {zone}", q.stem, rows, duck[q.stem])
        if glued:
            ok &= run_spark_from_catalog(spark, glued[0], glued[1], duck)
        return ok
    finally:
        spark.stop()


def main():
    # PySpark hands timestamps to Python in the process's local zone: make that UTC, so the values
    # compared are UTC whatever the session zone under test.
    os.environ["TZ"] = "UTC"
    time.tzset()
    if "--write-trino" in sys.argv:
        for q in queries():
            (ROOT / "queries/trino" / q.name).write_text(trino_query(q))
        return 0
    skip_spark = "--skip-spark" in sys.argv
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        ok, datasets = True, []
        for layout, db in LAYOUTS:
            dest = tmp / db
            subprocess.run([BIN, "convert", ROOT / "testdata/logs", "--output", dest, "--quiet",
                            "--partition-by", layout], check=True)
            duck, same = run_duckdb(str(dest), db)
            ok &= same
            ok &= check_trino(str(dest), db, ["source_bucket", "dt"] if layout == "bucket,dt" else ["dt"])
            datasets.append((str(dest), db))
        if not skip_spark:
            ok &= run_spark(datasets, tmp, duck, glue_partitions(tmp))
    print("all engines agree" if ok else "ENGINE CHECK FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
