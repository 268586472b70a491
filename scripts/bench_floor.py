#!/usr/bin/env python3
"""gramfit's first pass against the arrow-rs decode floor on the benchmark
file: the two processes run in turn (alternating, so that a noisy moment on
a shared machine falls on both), timed with perf_counter; prints the medians
and their ratio for 1 and 2 threads.

    python3 scripts/bench_floor.py [--rows 10000000] [--repeats 9]

Needs: cargo build --release --bins --examples; the file bench_peers.py
generates (or gramfit-gen).
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from bench_peers import FORMULA  # noqa: E402

COLUMNS = ("rent,bedrooms,bathrooms,size_sqft,min_to_subway,floor,building_age_yrs,no_fee,has_roofdeck,"
           "has_washer_dryer,has_doorman,has_elevator,has_dishwasher,has_patio,has_gym")


def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=True)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=9)
    a = ap.parse_args()
    path = os.path.join(ROOT, "bench-data", f"listings-{a.rows // 1_000_000}m.parquet")
    rel = os.path.join(ROOT, "target", "release")
    print(f"file: {os.path.basename(path)}; alternating runs, medians of {a.repeats}")
    print()
    print("| threads | gramfit first pass (s) | arrow-rs decode only (s) | ratio |")
    print("|---:|---:|---:|---:|")
    for threads in ["1", "2"]:
        fit = [os.path.join(rel, "gramfit"), "fit", path, "-f", FORMULA, "--threads", threads, "--format", "json",
               "-o", os.devnull, "--quiet", "--no-second-pass"]
        floor = [os.path.join(rel, "examples", "decode_only"), path, COLUMNS, threads]
        g, d = [], []
        for _ in range(a.repeats):
            g.append(timed(fit))
            d.append(timed(floor))
        gm, dm = statistics.median(g), statistics.median(d)
        print(f"| {threads} | {gm:.3f} | {dm:.3f} | {gm / dm:.2f} |", flush=True)


if __name__ == "__main__":
    main()
