#!/usr/bin/env python3
"""How the ledger scales: an hourly job whose DEST already records up to 100,000 converted objects.

Generates OBJECTS tiny log objects, then runs `s3logs convert` STEPS times; before each run a
further OBJECTS/STEPS objects "arrive" (are moved into the source folder), so each run converts only
those and skips everything converted before. Prints, per run: objects already in the ledger, wall
time, time spent reading the ledger and planning, and the size of DEST/_state. Then times a run
with nothing new. Build first: cargo build --release --bin gen_corpus.

    scripts/state_scale.py [--objects 100000] [--steps 100] [--work DIR]
"""
import argparse, json, os, shutil, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--objects", type=int, default=100_000)
ap.add_argument("--steps", type=int, default=100)
ap.add_argument("--work", default="target/state-scale")
a = ap.parse_args()

root = os.path.abspath(a.work)
pool, src, dest = (os.path.join(root, d) for d in ("pool", "src", "dest"))
shutil.rmtree(root, ignore_errors=True)
subprocess.run(["target/release/gen_corpus", "--out", pool, "--objects", str(a.objects),
                "--bytes", str(a.objects * 400), "--days", "30"], check=True, stdout=subprocess.DEVNULL)
pool = os.path.join(pool, "logs")
names = sorted(os.listdir(pool))
assert len(names) == a.objects, len(names)
os.makedirs(src)

def du(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)

def run(report):
    t = time.perf_counter()
    subprocess.run(["target/release/s3logs", "convert", src, "-o", dest, "--quiet", "--report", report,
                    "--max-reject-ratio", "1"], check=True)
    wall = time.perf_counter() - t
    return wall, json.load(open(report))

per = len(names) // a.steps
print(f"{'in ledger':>10} {'new':>6} {'wall s':>8} {'state s':>8} {'listing s':>9} {'_state MiB':>10}")
report = os.path.join(root, "report.json")
for step in range(a.steps):
    for n in names[step * per:(step + 1) * per]:
        os.rename(os.path.join(pool, n), os.path.join(src, n))
    wall, r = run(report)
    assert r["objects_read"] == per and r["objects_skipped"] == step * per, r
    if step % max(1, a.steps // 10) == 0 or step == a.steps - 1:
        print(f"{r['objects_skipped']:>10} {r['objects_read']:>6} {wall:>8.3f} {r['stage_seconds']['state']:>8.3f} "
              f"{r['listing']['seconds']:>9.3f} {du(os.path.join(dest, '_state')) / 2**20:>10.1f}", flush=True)
wall, r = run(report)
assert r["nothing_new"], r
print(f"nothing new over {r['objects_skipped']} objects: wall {wall:.3f}s, state {r['stage_seconds']['state']:.3f}s, "
      f"listing {r['listing']['seconds']:.3f}s")
