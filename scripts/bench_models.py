#!/usr/bin/env python3
"""Time gramfit's first pass on the benchmark file for models of different
shapes (plain numeric, categorical factors of few and many levels, two
factors, an interaction): median wall time and peak RSS, one run.

    python3 scripts/bench_models.py [--rows 10000000] [--repeats 5] [--threads 2]

Needs: cargo build --release --bins; the file bench_peers.py generates.
"""
import argparse
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from bench_second_pass import run  # noqa: E402

MODELS = [
    "rent ~ size_sqft + bedrooms + min_to_subway + has_washer_dryer",
    "rent ~ size_sqft + bedrooms + min_to_subway + has_washer_dryer + C(borough)",
    "rent ~ size_sqft + bedrooms + min_to_subway + has_washer_dryer + C(neighborhood)",
    "rent ~ size_sqft + bathrooms + C(borough) + C(submarket)",
    "rent ~ size_sqft + bedrooms + C(borough):size_sqft",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", default="2")
    a = ap.parse_args()
    path = os.path.join(ROOT, "bench-data", f"listings-{a.rows // 1_000_000}m.parquet")
    exe = os.path.join(ROOT, "target", "release", "gramfit")
    print(f"file: {os.path.basename(path)}; first pass (--no-second-pass), {a.threads} threads; median of {a.repeats}")
    print()
    print("| model | median wall (s) | rows/s | peak RSS (MiB) |")
    print("|---|---:|---:|---:|")
    for f in MODELS:
        cmd = [exe, "fit", path, "-f", f, "--threads", a.threads, "--no-second-pass", "--format", "json", "-o",
               os.devnull, "--quiet"]
        reps = [run(cmd) for _ in range(a.repeats)]
        wall = statistics.median(r[0] for r in reps)
        rss = max(r[1] for r in reps)
        print(f"| `{f}` | {wall:.3f} | {a.rows / wall / 1e6:.1f} M | {rss:.1f} |", flush=True)


if __name__ == "__main__":
    main()
