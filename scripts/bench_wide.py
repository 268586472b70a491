#!/usr/bin/env python3
"""A wide model: 100 float predictors with four decimals (and a response),
1M rows, row groups of 100k rows, written by pyarrow with its defaults;
gramfit's first pass against pyarrow `iter_batches(100_000)` + numpy's
`Z.T @ Z` accumulated per batch (OpenBLAS), 2 threads each, one run,
round robin, medians.

    python3 scripts/bench_wide.py [--rows 1000000] [--cols 100] [--repeats 5]

gramfit's sums are exact (slices of the real values, see
docs/design.md); numpy's are plain f64 sums. Needs cargo build --release
--bins; pyarrow, numpy.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from bench_peers import timed  # noqa: E402

REL = os.path.join(ROOT, "target", "release")

PY_NUMPY = """
import pyarrow.parquet as pq, numpy as np, sys
cols = sys.argv[2].split(',')
f = pq.ParquetFile(sys.argv[1])
p = len(cols) + 1
G = np.zeros((p, p))
for b in f.iter_batches(batch_size=100_000, columns=cols):
    Z = np.column_stack([np.ones(b.num_rows)] + [b.column(c).to_numpy(zero_copy_only=False) for c in cols])
    G += Z.T @ Z
np.save(sys.argv[3], G)
"""


def make(path, rows, cols):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    rng = np.random.default_rng(7)
    beta = rng.normal(size=cols)
    data, y = {}, np.zeros(rows)
    for j in range(cols):
        x = np.round(rng.normal(50.0, 10.0, rows), 4)
        data[f"x{j + 1}"] = x
        y += beta[j] * x
    y = np.round(y + rng.normal(0, 5.0, rows), 4)
    table = pa.table({"y": y, **data})
    pq.write_table(table, path, row_group_size=100_000)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cols", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    path = os.path.join(ROOT, "bench-data", f"wide-{a.cols}x{a.rows // 1_000_000}m.parquet")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        make(path, a.rows, a.cols)
    xs = [f"x{j + 1}" for j in range(a.cols)]
    formula = "y ~ " + " + ".join(xs)
    tmp = tempfile.mkdtemp()
    script = os.path.join(tmp, "numpy_gram.py")
    open(script, "w").write(PY_NUMPY)
    env2 = dict(os.environ, OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2", ARROW_NUM_THREADS="2")
    runs = {
        "gramfit 2 thr": ([os.path.join(REL, "gramfit"), "fit", path, "-f", formula, "--no-second-pass", "-q",
                           "--threads", "2", "-o", os.devnull], None),
        "gramfit 1 thr": ([os.path.join(REL, "gramfit"), "fit", path, "-f", formula, "--no-second-pass", "-q",
                           "--threads", "1", "-o", os.devnull], None),
        "pyarrow + numpy 2 thr": ([sys.executable, script, path, ",".join(xs + ["y"]),
                                   os.path.join(tmp, "g.npy")], env2),
    }
    times = {}
    for _ in range(a.repeats):
        for k, (cmd, env) in runs.items():
            times.setdefault(k, []).append(timed(cmd, env))
    print(f"{a.rows:,} rows × {a.cols} float predictors (4 decimals), row groups of 100k; "
          f"medians of {a.repeats}, one run, round robin\n")
    print("| run | wall (s) | peak RSS (MiB) |")
    print("|---|---:|---:|")
    for k, v in times.items():
        print(f"| {k} | {statistics.median(w for w, _ in v):.2f} | {max(r for _, r in v):.0f} |")
    g, n = statistics.median(w for w, _ in times["gramfit 2 thr"]), statistics.median(
        w for w, _ in times["pyarrow + numpy 2 thr"])
    print(f"\npyarrow + numpy ÷ gramfit (2 threads each): {n / g:.2f}×")


if __name__ == "__main__":
    main()
