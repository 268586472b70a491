#!/usr/bin/env python3
"""A factor with many levels: `y ~ x + C(g)` on a generated CSV (60,000
rows, g with --levels levels), first pass and dense solve, medians.

    python3 scripts/bench_levels.py [--levels 1500] [--repeats 3] [--threads 2]

The dense double-double solve of the (levels + 2)-column system dominates
(issue 20: a factor's block elimination is the structural fix).
Needs cargo build --release --bins.
"""
import argparse
import os
import random
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from bench_peers import timed  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", type=int, default=1500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    path = os.path.join(ROOT, "bench-data", f"levels-{a.levels}.csv")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        rng = random.Random(1)
        with open(path, "w") as f:
            f.write("y,x,g\n")
            for _ in range(60_000):
                g, x = rng.randrange(a.levels), rng.random()
                f.write(f"{1 + 2 * x + g * 0.01 + rng.random():.6f},{x:.6f},L{g}\n")
    cmd = [os.path.join(ROOT, "target", "release", "gramfit"), "fit", path, "-f", "y ~ x + C(g)", "-q",
           "-o", os.devnull, "--no-second-pass", "--threads", str(a.threads)]
    runs = [timed(cmd) for _ in range(a.repeats)]
    print(f"{a.levels} levels, 60,000 rows, {a.threads} threads: "
          f"median {statistics.median(w for w, _ in runs):.2f} s, peak RSS {max(r for _, r in runs):.0f} MiB "
          f"(runs: {', '.join(f'{w:.2f}' for w, _ in runs)})")


if __name__ == "__main__":
    main()
