#!/usr/bin/env python3
"""Two or more gramfit binaries on one file and model, interleaved (the
order reversed every other round, so that a drift of the shared machine
falls on both): the median wall time and the median CPU time (user +
system, by getrusage) of each binary's first pass.

    python3 scripts/bench_ab.py REPEATS THREADS FILE FORMULA BIN [BIN ...]

For example, a saved build against the current one:

    cp target/release/gramfit /tmp/gramfit-old   # before the change
    cargo build --release
    python3 scripts/bench_ab.py 9 1 bench-data/real-10m.parquet \\
        "rent ~ latitude + longitude + rent_per_sqft" /tmp/gramfit-old target/release/gramfit
"""
import resource
import statistics
import subprocess
import sys
import time


def main():
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    repeats, threads, path, formula = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    bins = sys.argv[5:]
    cpu = {b: [] for b in bins}
    wall = {b: [] for b in bins}
    for i in range(repeats):
        for b in bins if i % 2 == 0 else bins[::-1]:
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run([b, "fit", path, "-f", formula, "--no-second-pass", "-q", "--threads", threads,
                            "-o", "/dev/null"], check=True)
            t1 = time.perf_counter()
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[b].append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
            wall[b].append(t1 - t0)
    for b in bins:
        print(f"{b:32s} cpu {statistics.median(cpu[b]) * 1000:7.1f} ms  wall {statistics.median(wall[b]) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
