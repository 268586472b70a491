#!/usr/bin/env python3
"""Time gramfit against peers on the same generated Parquet file, in the same
run: median wall time over repeats, rows/s and peak RSS (/usr/bin/time -v).

    python3 scripts/bench_peers.py [--rows 10000000] [--repeats 3] [--statsmodels]

Peers: arrow-rs decoding the same columns with no arithmetic (the decode
floor, examples/decode_only.rs), pyarrow reading the columns (the Python
stack's decode floor), pyarrow iter_batches + a numpy gram, DuckDB computing
every Σxᵢxⱼ in one SQL query, and (with --statsmodels) statsmodels' OLS.
Needs: cargo build --release --bins --examples; pip install pyarrow duckdb numpy
statsmodels pandas.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
X = ["bedrooms", "bathrooms", "size_sqft", "min_to_subway", "floor", "building_age_yrs", "no_fee",
     "has_roofdeck", "has_washer_dryer", "has_doorman", "has_elevator", "has_dishwasher", "has_patio", "has_gym"]
COLS = ["rent"] + X
FORMULA = "rent ~ " + " + ".join(X)


def timed(cmd, env=None):
    """Run under /usr/bin/time -v; return (wall seconds, peak RSS MiB)."""
    out = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", out.stderr)
    secs = (int(wall.group(1) or 0) * 3600) + int(wall.group(2)) * 60 + float(wall.group(3))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1)) / 1024
    return secs, rss


PY_READ = """
import pyarrow.parquet as pq, sys
t = pq.read_table(sys.argv[1], columns=sys.argv[2].split(','))
print(t.num_rows)
"""
PY_NUMPY = """
import pyarrow.parquet as pq, numpy as np, sys
cols = sys.argv[2].split(',')
f = pq.ParquetFile(sys.argv[1])
p = len(cols) + 1
G = np.zeros((p, p))
for b in f.iter_batches(batch_size=65536, columns=cols):
    Z = np.column_stack([np.ones(b.num_rows)] + [b.column(c).to_numpy(zero_copy_only=False).astype(float) for c in cols])
    Z = Z[~np.isnan(Z).any(axis=1)]
    G += Z.T @ Z
print(G[0, 0])
"""
PY_DUCKDB = """
import duckdb, sys
cols = sys.argv[2].split(',')
terms = ['count(*)'] + [f'sum({a})' for a in cols]
terms += [f'sum({a}*{b})' for i, a in enumerate(cols) for b in cols[i:]]
where = ' and '.join(f'{c} is not null' for c in cols)
con = duckdb.connect()
con.execute("SET threads TO " + sys.argv[3])
r = con.execute(f"select {', '.join(terms)} from read_parquet('{sys.argv[1]}') where {where}").fetchone()
print(r[0])
"""
PY_STATSMODELS = """
import pandas as pd, statsmodels.formula.api as smf, sys
df = pd.read_parquet(sys.argv[1], columns=sys.argv[2].split(','))
print(smf.ols(sys.argv[3], df).fit().params.iloc[0])
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--statsmodels", action="store_true")
    ap.add_argument("--data", default=os.path.join(ROOT, "bench-data"))
    a = ap.parse_args()
    os.makedirs(a.data, exist_ok=True)
    path = os.path.join(a.data, f"listings-{a.rows // 1_000_000}m.parquet")
    rel = os.path.join(ROOT, "target", "release")
    if not os.path.exists(path):
        subprocess.run([os.path.join(rel, "gramfit-gen"), path, "--rows", str(a.rows)], check=True)
    cols = ",".join(COLS)
    tmp = tempfile.mkdtemp()
    scripts = {}
    for name, src in [("read", PY_READ), ("numpy", PY_NUMPY), ("duckdb", PY_DUCKDB), ("sm", PY_STATSMODELS)]:
        scripts[name] = os.path.join(tmp, "peer_" + name + ".py")
        open(scripts[name], "w").write(src)
    env = dict(os.environ)
    def gramfit(threads, *extra):
        return [os.path.join(rel, "gramfit"), "fit", path, "-f", FORMULA, "--threads", str(threads), "--format", "json",
                "-o", os.devnull, "--quiet", *extra]

    runs = [
        ("gramfit fit, first pass, 1 thread", gramfit(1, "--no-second-pass")),
        ("gramfit fit, first pass, 2 threads", gramfit(2, "--no-second-pass")),
        ("gramfit fit + second pass (default), 2 threads", gramfit(2)),
        ("gramfit fit + second pass, HC3, 2 threads", gramfit(2, "--cov-type", "HC3")),
        ("arrow-rs decode only, 1 thread", [os.path.join(rel, "examples", "decode_only"), path, cols, "1"]),
        ("arrow-rs decode only, 2 threads", [os.path.join(rel, "examples", "decode_only"), path, cols, "2"]),
        ("pyarrow read_table (decode only)", [sys.executable, scripts["read"], path, cols]),
        ("pyarrow iter_batches + numpy gram", [sys.executable, scripts["numpy"], path, cols]),
        ("DuckDB one-query Σxᵢxⱼ, 2 threads", [sys.executable, scripts["duckdb"], path, cols, "2"]),
    ]
    if a.statsmodels:
        runs.append(("statsmodels OLS (pandas)", [sys.executable, scripts["sm"], path, cols, FORMULA]))
    print(f"file: {os.path.basename(path)}, {a.rows:,} rows, {len(COLS)} columns (snappy); median of {a.repeats}")
    print()
    print("| run | median wall (s) | rows/s | peak RSS (MiB) |")
    print("|---|---:|---:|---:|")
    results = {}
    for name, cmd in runs:
        reps = [timed(cmd, env) for _ in range(a.repeats if "statsmodels" not in name else 1)]
        wall = statistics.median(r[0] for r in reps)
        rss = max(r[1] for r in reps)
        results[name] = wall
        print(f"| {name} | {wall:.2f} | {a.rows / wall / 1e6:.1f} M | {rss:.0f} |", flush=True)
    g1 = results["gramfit fit, first pass, 1 thread"]
    g2 = results["gramfit fit, first pass, 2 threads"]
    print()
    print(f"gramfit first pass (2 threads) vs DuckDB: {results['DuckDB one-query Σxᵢxⱼ, 2 threads'] / g2:.2f}x faster; "
          f"vs the arrow-rs decode floor: {g2 / results['arrow-rs decode only, 2 threads']:.2f}x its time "
          f"(1 thread: {g1 / results['arrow-rs decode only, 1 thread']:.2f}x)")
    full = results["gramfit fit + second pass (default), 2 threads"]
    hc3 = results["gramfit fit + second pass, HC3, 2 threads"]
    print(f"second pass (2 threads): default {full - g2:.2f} s = {(full - g2) / g2:.2f}x the first pass; "
          f"HC3 {hc3 - g2:.2f} s = {(hc3 - g2) / g2:.2f}x")


if __name__ == "__main__":
    main()
