#!/usr/bin/env python3
"""The benchmark behind scripts/bench.sh: same corpus, same job, alternating tools, medians.

The job for every tool: read all log objects, parse them into typed columns, write dt-partitioned
ZSTD Parquet. Reported per tool: median wall time, MB/s and lines/s of input, peak RSS
(/usr/bin/time -v), output bytes and file count; then ratios against DuckDB and zstd -1 -T2.
s3logs' counts are checked against the generator's expected totals, so a fast wrong run fails.
With --logs DIR the tools run on a folder of log objects instead (your own, or another generator's,
such as scripts/gen_other_corpus.py); s3logs is then held to rows + rejects = the lines counted.

With --s3-model, the same conversion is also run from "S3": the corpus served through the test
kit's model of S3's timing (examples/s3_model.rs: a first-byte latency per request, a bandwidth per
connection, listing pages of 1,000 keys), for the corpus and for one of --small-objects objects of
the same bytes (how S3 delivers a quiet bucket's logs), against the local conversion in the same
sitting: the ratio, peak RSS and the most requests in flight.
"""
import argparse, json, os, re, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
S3LOGS = ROOT / "target/release/s3logs"
GEN = ROOT / "target/release/gen_corpus"
MODEL = ROOT / "target/release/examples/s3_model"

STR_COLS = ["bucketowner", "bucket", None, "remoteip", "requester", "requestid", "operation", "key", "requesturi",
            None, "errorcode", None, None, None, None, "referrer", "useragent", "versionid", "hostid", "sigv",
            "ciphersuite", "authtype", "endpoint", "tlsversion", "accesspointarn", "aclrequired", "sourceregion"]
NUM_COLS = {9: ("httpstatus", "INTEGER"), 11: ("bytessent", "BIGINT"), 12: ("objectsize", "BIGINT"),
            13: ("totaltime", "BIGINT"), 14: ("turnaroundtime", "BIGINT")}

DUCKDB_CSV = """
import duckdb, sys
corpus, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET threads=2; SET TimeZone='UTC'; SET preserve_insertion_order=false")
cols = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(32))
# The bracketed time arrives as two columns (c2, c3): every later field is one column to the right.
sel = []
for i, name in enumerate(%(str_cols)r):
    c = f"c{i + 1}" if i >= 3 else f"c{i}"
    if name:
        sel.append(f"NULLIF({c}, '-') AS {name}")
    elif i in %(num_cols)r:
        n, t = %(num_cols)r[i]
        sel.append(f"TRY_CAST(NULLIF({c}, '-') AS {t}) AS {n}")
ts = "try_strptime(c2 || ' ' || c3, '[%%d/%%b/%%Y:%%H:%%M:%%S %%z]')"
con.execute(f'''COPY (SELECT {ts} AS requestdatetime, {", ".join(sel)}, CAST({ts} AS DATE) AS dt
  FROM read_csv('{corpus}/*', delim=' ', quote='"', escape='\\\\', header=false, auto_detect=false,
                null_padding=true, strict_mode=false, ignore_errors=true, all_varchar=true, columns={{{cols}}})
  WHERE dt IS NOT NULL)
  TO '{out}' (FORMAT PARQUET, PARTITION_BY (dt), COMPRESSION ZSTD)''')
"""

LOG_RE = (r'^(\S+) (\S+) \[([^\]]+)\] (\S+) (.+?) (\S+) ([A-Z0-9_.]+) (\S+) ("(?:[^"]|"[^ ])*"|-) (\S+) (\S+) '
          r'(\S+) (\S+) (\S+) (\S+) ("(?:[^"]|"[^ ])*"|-) ("(?:[^"]|"[^ ])*"|-)' + r'(?: (\S+))?' * 10)
NAMES = ["bucketowner", "bucket", "time", "remoteip", "requester", "requestid", "operation", "key", "requesturi",
         "httpstatus", "errorcode", "bytessent", "objectsize", "totaltime", "turnaroundtime", "referrer", "useragent",
         "versionid", "hostid", "sigv", "ciphersuite", "authtype", "endpoint", "tlsversion", "accesspointarn",
         "aclrequired", "sourceregion"]

DUCKDB_REGEX = """
import duckdb, sys
corpus, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET threads=2; SET TimeZone='UTC'; SET preserve_insertion_order=false")
names = %(names)r
nums = {"httpstatus": "INTEGER", "bytessent": "BIGINT", "objectsize": "BIGINT", "totaltime": "BIGINT", "turnaroundtime": "BIGINT"}
sel = []
for n in names:
    if n == "time":
        continue
    v = f"NULLIF(r.{n}, '')"
    sel.append(f"TRY_CAST(NULLIF({v}, '-') AS {nums[n]}) AS {n}" if n in nums else f"NULLIF({v}, '-') AS {n}")
ts = "try_strptime(r.time, '%%d/%%b/%%Y:%%H:%%M:%%S %%z')"
pattern = %(pattern)r
con.execute(f'''COPY (SELECT {ts} AS requestdatetime, {", ".join(sel)}, CAST({ts} AS DATE) AS dt
  FROM (SELECT regexp_extract(line, '{pattern}', {names!r}) AS r
        FROM read_csv('{corpus}/*', delim='\\x01', quote='', header=false, auto_detect=false, columns={{'line': 'VARCHAR'}}))
  WHERE r.time <> '')
  TO '{out}' (FORMAT PARQUET, PARTITION_BY (dt), COMPRESSION ZSTD)''')
"""


def tools(corpus, out, baseline=None):
    csv_script = DUCKDB_CSV % {"str_cols": STR_COLS, "num_cols": NUM_COLS}
    regex_script = DUCKDB_REGEX % {"names": NAMES, "pattern": LOG_RE}
    s3logs = lambda binary: [str(binary), "convert", str(corpus), "--output", str(out), "--quiet",
                             "--max-reject-ratio", "1", "--report", str(out) + ".json"]
    return {
        "s3logs": s3logs(S3LOGS),
        # Another build of s3logs (--baseline), run alternately with this one: before and after.
        "s3logs_base": s3logs(baseline) if baseline else None,
        "duckdb_csv": [sys.executable, "-c", csv_script, str(corpus), str(out)],
        "duckdb_regex": [sys.executable, "-c", regex_script, str(corpus), str(out)],
        "zstd": ["sh", "-c", f"zstd -q -1 -T2 -c -r '{corpus}' > '{out}.zst'"],
    }


def run(cmd):
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1)) * 1024
    return wall, rss


def output_size(out):
    # Parquet files only: s3logs' ledger (`_state/`) is bookkeeping, not output.
    paths = [out] if out.is_file() else list(out.rglob("*.parquet")) if out.exists() else []
    extra = [Path(str(out) + ".zst")] if Path(str(out) + ".zst").exists() else []
    files = paths + extra
    return sum(p.stat().st_size for p in files), len(files)


def corpus(a, objects, sigma):
    Path(a.corpus_dir).mkdir(parents=True, exist_ok=True)
    base = Path(a.corpus_dir) / f"corpus-{a.bytes}-{objects}-{a.malformed}-{a.seed}-s{sigma}"
    if not (base / "expected.json").exists():
        subprocess.run([str(GEN), "--out", str(base), "--bytes", a.bytes, "--objects", str(objects),
                        "--malformed", str(a.malformed), "--seed", str(a.seed), "--size-sigma", str(sigma)],
                       check=True)
    subprocess.run(["sh", "-c", f"find '{base}/logs' -type f -exec cat {{}} + > /dev/null"], check=True)  # warm the page cache
    return base, json.loads((base / "expected.json").read_text())


def given_logs(folder):
    """A folder of log objects given with --logs (your own, or another generator's): its totals,
    counted here. Which lines are malformed is not known beforehand (`malformed` is None), so
    s3logs is held to every line read and each line one row or one reject."""
    files = [p for p in Path(folder).iterdir() if p.is_file()]
    if not files:
        raise SystemExit(f"--logs {folder}: no files in that folder (DuckDB's read_csv reads only its top level)")
    lines = total = 0
    for p in files:
        b = p.read_bytes()
        total += len(b)
        lines += b.count(b"\n") + (1 if b and not b.endswith(b"\n") else 0)
    return {"objects": len(files), "bytes": total, "lines": lines, "records": None, "malformed": None}


def check_counts(r, expected):
    got = (r["rows_written"], r["lines_rejected"], r["lines_read"])
    if expected["malformed"] is None:
        if r["lines_read"] != expected["lines"] or r["rows_written"] + r["lines_rejected"] != expected["lines"]:
            raise SystemExit(f"s3logs counts {got}: rows and rejects do not add up to the {expected['lines']} lines")
        return
    want = (expected["records"], expected["malformed"], expected["lines"])
    if got != want:
        raise SystemExit(f"s3logs counts {got} != expected {want}")


def s3_model(a):
    """Each corpus converted from local disk and from the S3 model, alternately; medians."""
    rows = []
    with tempfile.TemporaryDirectory(dir=a.corpus_dir) as tmp:
        for objects, sigma in ((a.objects, a.size_sigma), (a.small_objects, 0.0)):
            base, expected = corpus(a, objects, sigma)
            local, model = [], []
            for rep in range(a.reps):
                out = Path(tmp) / f"local-{objects}-{rep}"
                wall, rss = run(tools(base / "logs", out)["s3logs"])
                check_counts(json.loads(Path(str(out) + ".json").read_text()), expected)
                local.append((wall, rss))
                shutil.rmtree(out, ignore_errors=True)
                os.sync()
                out = Path(tmp) / f"model-{objects}-{rep}"
                p = subprocess.run([str(MODEL), str(base), "logs", str(out), str(a.latency_ms), str(a.bandwidth_mbs)],
                                   capture_output=True, text=True)
                if p.returncode != 0:
                    raise SystemExit(f"s3_model failed ({p.returncode}):\n{p.stderr[-3000:]}")
                r = json.loads(p.stdout)
                check_counts(r, expected)
                model.append(r)
                shutil.rmtree(out, ignore_errors=True)
                os.sync()
                print(f"rep {rep + 1}/{a.reps} {objects} objects: local {wall:.2f}s, "
                      f"S3 model {r['wall_s']:.2f}s ({r['max_in_flight']} requests in flight at most)", file=sys.stderr)
            lw = statistics.median(w for w, _ in local)
            mw = statistics.median(r["wall_s"] for r in model)
            rows.append({"objects": expected["objects"], "mb": expected["bytes"] / 1e6, "local_s": lw, "model_s": mw,
                         "ratio": mw / lw, "local_rss_mib": max(r for _, r in local) / 2**20,
                         "model_rss_mib": max(r["peak_rss_kib"] for r in model) / 1024,
                         "max_in_flight": max(r["max_in_flight"] for r in model),
                         "requests": model[-1]["requests"], "cpu_s": statistics.median(r["cpu_s"] for r in model)})
    print(f"\nS3 model: {a.latency_ms} ms first byte, {a.bandwidth_mbs} MB/s per connection, listing pages of "
          f"1,000; {os.cpu_count()} cores; median of {a.reps}")
    print(f"{'objects':>8s} {'MB':>6s} {'local s':>8s} {'model s':>8s} {'ratio':>6s} {'RSS MiB':>8s} "
          f"{'in flight':>9s} {'requests':>9s}")
    for r in rows:
        print(f"{r['objects']:8d} {r['mb']:6.0f} {r['local_s']:8.2f} {r['model_s']:8.2f} {r['ratio']:5.2f}x "
              f"{r['model_rss_mib']:8.0f} {r['max_in_flight']:9d} {r['requests']:9d}")
    print(f"local, {rows[1]['objects']} objects / {rows[0]['objects']} objects: "
          f"{rows[1]['local_s'] / rows[0]['local_s']:.2f}x the time")
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bytes", default="1GiB")
    ap.add_argument("--objects", type=int, default=2048)
    ap.add_argument("--malformed", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tools", default="s3logs,duckdb_csv,duckdb_regex,zstd")
    ap.add_argument("--corpus-dir", default=str(ROOT / "target/bench"))
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--baseline", help="another s3logs binary (an earlier build) to run alternately as s3logs_base")
    ap.add_argument("--size-sigma", type=float, default=1.0,
                    help="log-normal object sizes around the mean (0: all equal), as gen_corpus")
    ap.add_argument("--s3-model", action="store_true",
                    help="only the S3 model runs: the corpus and --small-objects objects, each against local disk")
    ap.add_argument("--small-objects", type=int, default=50000)
    ap.add_argument("--latency-ms", type=float, default=30.0)
    ap.add_argument("--bandwidth-mbs", type=float, default=100.0)
    ap.add_argument("--logs", help="a folder of log objects to use instead of the generated corpus "
                    "(your own logs, or another generator's); not with --s3-model")
    a = ap.parse_args()
    if a.logs and a.s3_model:
        ap.error("--logs runs the local comparison only; --s3-model uses the generated corpora")

    if a.s3_model:
        rows = s3_model(a)
        if a.json:
            Path(a.json).write_text(json.dumps({"s3_model": rows}, indent=1))
        return
    if a.logs:
        corpus_dir = Path(a.logs).resolve()
        expected = given_logs(corpus_dir)  # reads every file: the page cache is warm after it
        Path(a.corpus_dir).mkdir(parents=True, exist_ok=True)
    else:
        base, expected = corpus(a, a.objects, a.size_sigma)
        corpus_dir = base / "logs"
    names = a.tools.split(",")
    if a.baseline:
        names.insert(names.index("s3logs") + 1 if "s3logs" in names else 0, "s3logs_base")
    results = {n: [] for n in names}
    with tempfile.TemporaryDirectory(dir=a.corpus_dir) as tmp:
        for rep in range(a.reps):
            order = list(names)
            if a.baseline and "s3logs" in order and rep % 2 == 1:
                # Every other rep the baseline goes first: a run pays for what the one before it
                # left (freed blocks, dirty pages), so neither build always follows the other.
                i, j = order.index("s3logs"), order.index("s3logs_base")
                order[i], order[j] = order[j], order[i]
            for n in order:
                out = Path(tmp) / f"{n}-{rep}"
                wall, rss = run(tools(corpus_dir, out, a.baseline)[n])
                size, files = output_size(out)
                results[n].append({"wall": wall, "rss": rss, "bytes": size, "files": files})
                if n.startswith("s3logs"):
                    check_counts(json.loads(Path(str(out) + ".json").read_text()), expected)
                shutil.rmtree(out, ignore_errors=True)
                for extra in (Path(str(out) + ".json"), Path(str(out) + ".zst")):
                    extra.unlink(missing_ok=True)
                # Untimed: write back what this tool left dirty (DuckDB does not fsync its files,
                # s3logs does), so that the next tool does not wait behind it.
                os.sync()
                print(f"rep {rep + 1}/{a.reps} {n}: {wall:.2f}s, {rss / 2**20:.0f} MiB", file=sys.stderr)

    mb, lines = expected["bytes"] / 1e6, expected["lines"]
    summary = {}
    malformed = "?" if expected["malformed"] is None else expected["malformed"]
    print(f"\ncorpus: {expected['objects']} objects, {mb:.0f} MB, {lines} lines ({malformed} malformed); "
          f"{os.cpu_count()} cores; median of {a.reps}")
    print(f"{'tool':14s} {'wall s':>7s} {'MB/s':>7s} {'Mlines/s':>9s} {'peak RSS':>9s} {'out MB':>7s} {'files':>6s}")
    for n in names:
        w = statistics.median(r["wall"] for r in results[n])
        rss = max(r["rss"] for r in results[n])
        out_b, files = results[n][-1]["bytes"], results[n][-1]["files"]
        summary[n] = {"wall_s": w, "mb_s": mb / w, "lines_s": lines / w, "peak_rss_mib": rss / 2**20,
                      "out_mb": out_b / 1e6, "files": files}
        print(f"{n:14s} {w:7.2f} {mb / w:7.0f} {lines / w / 1e6:9.2f} {rss / 2**20:8.0f}M {out_b / 1e6:7.1f} {files:6d}")
    if "s3logs" in summary:
        print()
        for peer in names:
            if peer != "s3logs":
                print(f"s3logs / {peer}: {summary['s3logs']['wall_s'] / summary[peer]['wall_s']:.2f}x the time")
    if a.json:
        Path(a.json).write_text(json.dumps({"expected": expected, "results": summary}, indent=1))


if __name__ == "__main__":
    main()
