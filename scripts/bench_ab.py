#!/usr/bin/env python3
"""Two or more gramfit binaries on one file and model, interleaved (the
order reversed every other round, so that a drift of the shared machine
falls on both): the median wall time and the median CPU time (user +
system, by getrusage) of each binary's first pass.

    python3 scripts/bench_ab.py [--both-passes] REPEATS THREADS FILE FORMULA BIN [BIN ...]
    python3 scripts/bench_ab.py --predict STATE INTERVAL REPEATS THREADS FILE BIN [BIN ...]

With --both-passes, the default fit (first and second pass) is timed;
with --predict, `gramfit predict STATE FILE --interval INTERVAL` to a
Parquet file in the temp directory.

For example, a saved build against the current one:

    cp target/release/gramfit /tmp/gramfit-old   # before the change
    cargo build --release
    python3 scripts/bench_ab.py 9 1 bench-data/real-10m.parquet \\
        "rent ~ latitude + longitude + rent_per_sqft" /tmp/gramfit-old target/release/gramfit
"""
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time


def main():
    args = sys.argv[1:]
    if args[:1] == ["--predict"]:
        if len(args) < 7:
            sys.exit(__doc__)
        state, interval, repeats, threads, path = args[1], args[2], int(args[3]), args[4], args[5]
        bins = args[6:]
        out = os.path.join(tempfile.gettempdir(), f"bench_ab-{os.getpid()}.parquet")
        command = lambda b: [b, "predict", state, path, "-o", out, "--interval", interval, "-q", "--threads", threads]
        stderr = subprocess.DEVNULL  # the tally of null predictions
    else:
        passes = [] if args[:1] == ["--both-passes"] else ["--no-second-pass"]
        args = args[1:] if not passes else args
        if len(args) < 5:
            sys.exit(__doc__)
        repeats, threads, path, formula = int(args[0]), args[1], args[2], args[3]
        bins = args[4:]
        command = lambda b: [b, "fit", path, "-f", formula, *passes, "-q", "--threads", threads, "-o", "/dev/null"]
        stderr = None
    cpu = {b: [] for b in bins}
    wall = {b: [] for b in bins}
    for i in range(repeats):
        for b in bins if i % 2 == 0 else bins[::-1]:
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run(command(b), check=True, stderr=stderr)
            t1 = time.perf_counter()
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[b].append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
            wall[b].append(t1 - t0)
    for b in bins:
        print(f"{b:32s} cpu {statistics.median(cpu[b]) * 1000:7.1f} ms  wall {statistics.median(wall[b]) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
