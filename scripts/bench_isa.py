#!/usr/bin/env python3
"""Each instruction-set path, forced with GRAMFIT_ISA, on the benchmark
files, in one run: median wall time of the first pass (`fit
--no-second-pass`) and of a fit with the HC3 second pass, 1 and 2 threads,
the variants in turn (round robin) so that a noisy moment falls on all.

    python3 scripts/bench_isa.py [--rows 10000000] [--repeats 5]

Two models: the benchmark model F (14 predictors, 8 of them flags) and the
mission's (with `C(borough)`). Files (made if missing): the generator's file (whole numbers, dictionary
pages; bench-data/listings-10m.parquet) and the same rows with the rent in
cents written by pyarrow (its pages fall back to PLAIN;
bench-data/listings-10m-cents.parquet). Needs cargo build --release --bins
and pyarrow.
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

EXE = os.path.join(ROOT, "target", "release", "gramfit")
LEVELS = ["portable", "avx2", "avx512", "avx512vbmi"]


def files(rows):
    d = os.path.join(ROOT, "bench-data")
    os.makedirs(d, exist_ok=True)
    whole = os.path.join(d, f"listings-{rows // 1_000_000}m.parquet")
    if not os.path.exists(whole):
        subprocess.run([os.path.join(ROOT, "target", "release", "gramfit-gen"), whole, "--rows", str(rows)], check=True)
    cents = os.path.join(d, f"listings-{rows // 1_000_000}m-cents.parquet")
    if not os.path.exists(cents):
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
        t = pq.read_table(whole)
        i = pa.array(range(t.num_rows), pa.int64())
        rent = pc.add(t["rent"].cast(pa.float64()), pc.divide(pc.bit_wise_and(i, 127).cast(pa.float64()), 128.0 * 0.97))
        t = t.set_column(t.schema.get_field_index("rent"), "rent", rent)
        pq.write_table(t, cents, row_group_size=1_000_000)
    return [("whole numbers (generator)", whole), ("rent in cents (pyarrow, PLAIN pages)", cents)]


def native():
    out = subprocess.run([EXE, "--version"], capture_output=True, text=True, check=True).stdout
    return out.split("kernels: ")[1].split()[0]


# The mission's model: a factor of five levels beside numbers and a flag.
MISSION = "rent ~ size_sqft + bedrooms + min_to_subway + has_washer_dryer + C(borough)"
MODELS = [("F", FORMULA), ("borough", MISSION)]


def run(level, path, formula, threads, extra):
    env = dict(os.environ, GRAMFIT_ISA=level)
    t = time.perf_counter()
    subprocess.run([EXE, "fit", path, "-f", formula, "-q", "--threads", threads] + extra, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    top = native()
    levels = LEVELS[: LEVELS.index(top) + 1]
    print(f"CPU: {top}; median of {a.repeats}; ratio: against {top} in the same run")
    for name, path in files(a.rows):
        print(f"\n{name}: {os.path.basename(path)}\n")
        head = " | ".join(levels) + " | " + " | ".join(f"{l} / {top}" for l in levels[:-1])
        print("| model | pass | threads | " + head + " |")
        print("|---|---|---:|" + "---:|" * (2 * len(levels) - 1))
        for model, formula in MODELS:
            for label, extra in [("first", ["--no-second-pass"]), ("first + HC3", ["--cov-type", "HC3"])]:
                for threads in ["1", "2"]:
                    times = {l: [] for l in levels}
                    for _ in range(a.repeats):
                        for l in levels:
                            times[l].append(run(l, path, formula, threads, extra))
                    med = {l: statistics.median(v) for l, v in times.items()}
                    cells = [f"{med[l]:.2f}" for l in levels] + [f"{med[l] / med[top]:.2f}×" for l in levels[:-1]]
                    print(f"| {model} | {label} | {threads} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
