#!/usr/bin/env python3
"""What per-unit state and shards cost and buy: two measurements, printed as tables.

1. The state a scheduled run with nothing new reads, against the history in DEST: a source with
   PER_DAY objects a day is converted over 1, 10 and 100 days, then a `--since` run over the last
   3 days (nothing new) reads DEST's state; bytes read (the report's `dest_requests`) and seconds.
   With `--baseline BINARY` (an s3logs from before per-unit state) the same for it, in the same run.
2. A backfill split over P processes (`--shard K/P`, all at once) against one process, on local
   disk and against moto's S3 server (started here on a free port): wall time and throughput.

Build first: cargo build --release --bin s3logs --bin gen_corpus (-p s3logs-testkit).

    scripts/bench_backfill.py [--per-day 48] [--shards 2,4,8] [--objects 2000] [--baseline OLD/s3logs]
"""
import argparse, json, os, shutil, socket, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--per-day", type=int, default=48, help="objects a day in the history runs")
ap.add_argument("--days", default="1,10,100")
ap.add_argument("--shards", default="2,4,8")
ap.add_argument("--objects", type=int, default=2000, help="objects of the sharded backfill")
ap.add_argument("--bytes", default="256MiB", help="bytes of the sharded backfill")
ap.add_argument("--baseline", help="an s3logs binary from before per-unit state")
ap.add_argument("--no-moto", action="store_true")
ap.add_argument("--work", default="target/bench-backfill")
a = ap.parse_args()

BIN = os.path.abspath("target/release/s3logs")
GEN = os.path.abspath("target/release/gen_corpus")
root = os.path.abspath(a.work)
shutil.rmtree(root, ignore_errors=True)
os.makedirs(root)


def gen(out, objects, size, days, seed=1):
    subprocess.run([GEN, "--out", out, "--objects", str(objects), "--bytes", str(size), "--days", str(days),
                    "--seed", str(seed), "--malformed", "0.01"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return os.path.join(out, "logs")


def convert(binary, src, dest, *extra, env=None):
    report = os.path.join(root, f"report-{os.getpid()}-{time.monotonic_ns()}.json")
    t = time.perf_counter()
    p = subprocess.run([binary, "convert", src, "--output", dest, "--quiet", "--report", report,
                        "--max-reject-ratio", "1", *extra], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"{binary} convert failed ({p.returncode}): {p.stderr}")
    return wall, json.load(open(report))


def day(n):
    return time.strftime("%Y-%m-%d", time.gmtime((19_797 + n) * 86_400))


def du(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


cpu = subprocess.run(["sh", "-c", "lscpu | grep 'Model name' | sed 's/.*: *//'"], capture_output=True, text=True).stdout.strip()
print(f"CPU: {cpu}, {os.cpu_count()} cores\n")

# 1. The state a no-op scheduled run reads, against the history.
print("1. A `--since` run over the last 3 days with nothing new, against the days of history in DEST")
print(f"{'binary':>10} {'days':>5} {'objects':>8} {'_state KiB':>10} {'read KiB':>9} {'GETs':>5} {'LISTs':>5} {'wall s':>7}")
binaries = [("s3logs", BIN)] + ([("baseline", os.path.abspath(a.baseline))] if a.baseline else [])
for days in [int(d) for d in a.days.split(",")]:
    objects = a.per_day * days
    src = gen(os.path.join(root, f"hist-{days}"), objects, objects * 4000, days)
    for name, binary in binaries:
        dest = os.path.join(root, f"hist-{days}-{name}")
        convert(binary, src, dest)
        since = day(max(0, days - 3))
        walls = []
        for _ in range(3):
            wall, r = convert(binary, src, dest, "--since", since)
            assert r["nothing_new"], r
            walls.append(wall)
        req = r.get("dest_requests", {})
        read = req.get("get_bytes")
        read = f"{read / 1024:>9.1f}" if read is not None else f"{'?':>9}"
        print(f"{name:>10} {days:>5} {objects:>8} {du(os.path.join(dest, '_state')) / 1024:>10.1f} {read} "
              f"{req.get('gets', '?'):>5} {req.get('lists', '?'):>5} {sorted(walls)[1]:>7.3f}", flush=True)
print("(read KiB: bytes of DEST state read, from the report's dest_requests; a baseline without it prints ?)\n")

# 2. A backfill over P processes against one.
src = gen(os.path.join(root, "backfill"), a.objects, a.bytes, 60, seed=3)
total = du(src)


def sharded(dest_for, procs, env=None):
    t = time.perf_counter()
    runs = [subprocess.Popen([BIN, "convert", src, "--output", dest_for, "--quiet", "--max-reject-ratio", "1",
                              "--shard", f"{k}/{procs}", "--lease-wait", "600"], env=env,
                             stderr=subprocess.PIPE, text=True) for k in range(procs)]
    for p in runs:
        _, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"shard failed ({p.returncode}): {err}")
    return time.perf_counter() - t


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


targets = [("local disk", lambda tag: os.path.join(root, f"out-{tag}"), None)]
moto = None
if not a.no_moto:
    port = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1",
               AWS_ENDPOINT_URL=endpoint, AWS_EC2_METADATA_DISABLED="true")
    import urllib.request
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/bench", method="PUT")).read()
    targets.append(("moto S3", lambda tag: f"s3://bench/{tag}", env))

print(f"2. A backfill of {a.objects} objects ({total / 2**20:.0f} MiB, 60 days: "
      f"{len(set(n[:10] for n in os.listdir(src)))} key-days) over P processes at once")
print(f"{'DEST':>10} {'procs':>5} {'wall s':>7} {'MB/s':>7} {'vs 1':>6}")
try:
    for label, dest_for, env in targets:
        one = None
        for procs in [1] + [int(p) for p in a.shards.split(",")]:
            wall = sharded(dest_for(f"p{procs}"), procs, env)
            one = one or wall
            print(f"{label:>10} {procs:>5} {wall:>7.2f} {total / wall / 1e6:>7.1f} {wall / one:>6.2f}", flush=True)
finally:
    if moto:
        moto.terminate()
