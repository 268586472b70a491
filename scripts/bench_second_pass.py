#!/usr/bin/env python3
"""Cost of gramfit's second pass against its first, on the benchmark file:
median wall time (perf_counter around the process; the variants run in
turn, round robin), CPU time (user + system, all threads; less sensitive to
other load on a shared machine) and peak RSS
(/usr/bin/time -v) of `fit --no-second-pass` and of `fit` with each
covariance type, for 1 and 2 threads, all in one run.

    python3 scripts/bench_second_pass.py [--rows 10000000] [--repeats 5]

Needs: cargo build --release --bins; the file bench_peers.py generates.

Whole processes charge start-up, schema resolution, solving and output to
the first pass; for the ratios, `examples/pass_costs` times both passes
inside one process (see BENCHMARKS.md). This script is for peak memory.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from bench_peers import FORMULA  # noqa: E402


def run(cmd):
    t = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr[-2000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1)) / 1024
    cpu = sum(float(re.search(rf"{k} time \(seconds\): ([\d.]+)", out.stderr).group(1)) for k in ["User", "System"])
    return wall, rss, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    path = os.path.join(ROOT, "bench-data", f"listings-{a.rows // 1_000_000}m.parquet")
    exe = os.path.join(ROOT, "target", "release", "gramfit")
    variants = [
        ("first pass only", ["--no-second-pass"]),
        ("+ second pass, nonrobust (default)", []),
        ("+ second pass, HC0", ["--cov-type", "HC0"]),
        ("+ second pass, HC3", ["--cov-type", "HC3"]),
        ("+ second pass, cluster (borough)", ["--cov-type", "cluster", "--cluster", "borough"]),
    ]
    print(f"file: {os.path.basename(path)}; median of {a.repeats}; second pass = total − first pass")
    print()
    print("| threads | run | median wall (s) | second pass (s) | second / first | CPU time (s) | second / first, CPU | "
          "peak RSS (MiB) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for threads in ["1", "2"]:
        # Round robin over the variants, so that a noisy moment on this
        # shared machine falls on all of them alike.
        cmds = [[exe, "fit", path, "-f", FORMULA, "--threads", threads, "--format", "json", "-o", os.devnull,
                 "--quiet", *extra] for _, extra in variants]
        reps = [[] for _ in variants]
        for _ in range(a.repeats):
            for i, cmd in enumerate(cmds):
                reps[i].append(run(cmd))
        first = statistics.median(r[0] for r in reps[0])
        first_cpu = statistics.median(r[2] for r in reps[0])
        for (name, _), rs in zip(variants, reps):
            wall = statistics.median(r[0] for r in rs)
            cpu = statistics.median(r[2] for r in rs)
            rss = max(r[1] for r in rs)
            if name == variants[0][0]:
                print(f"| {threads} | {name} | {wall:.3f} | — | — | {cpu:.2f} | — | {rss:.1f} |", flush=True)
            else:
                print(f"| {threads} | {name} | {wall:.3f} | {wall - first:.3f} | {(wall - first) / first:.2f} | "
                      f"{cpu:.2f} | {(cpu - first_cpu) / first_cpu:.2f} | {rss:.1f} |", flush=True)


if __name__ == "__main__":
    main()
