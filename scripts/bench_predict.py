#!/usr/bin/env python3
"""`gramfit predict` on the benchmark file, in one run: median wall time and
peak RSS of predicting its 10M rows to Parquet with each interval choice,
1 and 2 threads, next to the fit's first pass on the same file and to
arrow-rs writing the same output alone (examples/write_floor --from: the
columns gramfit wrote, nulls and row groups included, read into memory
first): synced to disk before the clock stops, as gramfit syncs its
output before renaming it into place, and not synced.

    python3 scripts/bench_predict.py [--repeats 5]

Needs: cargo build --release --bins --examples; the benchmark files
(scripts/bench_isa.py makes them).
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from bench_peers import FORMULA  # noqa: E402

EXE = os.path.join(ROOT, "target", "release", "gramfit")
FLOOR = os.path.join(ROOT, "target", "release", "examples", "write_floor")


def timed(cmd):
    out = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", out.stderr)
    secs = int(wall.group(1) or 0) * 3600 + int(wall.group(2)) * 60 + float(wall.group(3))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1)) / 1024
    return secs, rss, out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--file", default=os.path.join(ROOT, "bench-data", "listings-10m-cents.parquet"))
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    state = os.path.join(tmp, "s.gramfit")
    subprocess.run([EXE, "fit", a.file, "-f", FORMULA, "--save", state, "-q", "--no-second-pass"], check=True,
                   stdout=subprocess.DEVNULL)
    rows = int(subprocess.run(["python3", "-c", f"import pyarrow.parquet as pq; print(pq.ParquetFile('{a.file}').metadata.num_rows)"],
                              capture_output=True, text=True, check=True).stdout)
    # New listings have no rent yet: the same rows without the response
    # (only `mean` and the intervals are written).
    no_y = os.path.join(os.path.dirname(a.file), os.path.basename(a.file).replace(".parquet", "-no-response.parquet"))
    if not os.path.exists(no_y):
        import pyarrow.parquet as pq
        t = pq.read_table(a.file)
        pq.write_table(t.drop_columns([FORMULA.split("~")[0].strip()]), no_y, row_group_size=1_000_000)
    out = os.path.join(tmp, "p.parquet")
    variants = [("fit, first pass", lambda t: [EXE, "fit", a.file, "-f", FORMULA, "-q", "--no-second-pass", "--threads", t], None)]
    for interval, cols in [("none", 3), ("confidence", 6), ("prediction", 8)]:
        variants.append((f"predict --interval {interval} → Parquet",
                         lambda t, i=interval: [EXE, "predict", state, a.file, "-o", out, "--interval", i, "-q", "--threads", t], cols))
    for interval, cols in [("none", 1), ("prediction", 6)]:
        variants.append((f"predict --interval {interval}, no response in the file → Parquet",
                         lambda t, i=interval: [EXE, "predict", state, no_y, "-o", out, "--interval", i, "-q", "--threads", t], cols))
    print(f"file: {os.path.basename(a.file)} ({rows} rows); median of {a.repeats}; same run")
    print()
    print("| run | threads | wall (s) | peak RSS (MiB) | arrow-rs writing the same output, synced (s) | ratio | not synced (s) | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    floor = lambda *extra: float(subprocess.run([FLOOR, os.path.join(tmp, "f.parquet"), "--from", out, *extra],
                                                capture_output=True, text=True, check=True).stdout)
    for threads in ["1", "2"]:
        for name, cmd, cols in variants:
            times, rss, synced, unsynced = [], [], [], []
            for _ in range(a.repeats):
                w, r, _ = timed(cmd(threads))
                times.append(w)
                rss.append(r)
                if cols:
                    synced.append(floor("--sync"))
                    unsynced.append(floor())
            w = statistics.median(times)
            cells = ["", "", "", ""]
            if synced:
                fs, fu = statistics.median(synced), statistics.median(unsynced)
                cells = [f"{fs:.2f}", f"{w / fs:.2f}×", f"{fu:.2f}", f"{w / fu:.2f}×"]
            print(f"| {name} | {threads} | {w:.2f} | {max(rss):.0f} | " + " | ".join(cells) + " |", flush=True)

if __name__ == "__main__":
    main()
