#!/usr/bin/env python3
"""The first pass on files whose values look like the world's, beside the
generator's whole numbers, in one run (round robin, medians): gramfit with
1 and 2 threads, the arrow-rs decode floor of the model's columns (1
thread), DuckDB's one-query sums of the same columns (2 threads; of
ln(rent) for the logged model), and gramfit's peak RSS.

    python3 scripts/bench_real.py [--rows 10000000] [--repeats 5]

Files (made if missing, in bench-data/):
  whole   gramfit-gen (whole numbers and halves, dictionary pages)
  cents   the same rows, rent with a non-binary fraction, written by pyarrow
          (bench_isa.py makes it; rent's pages fall back to PLAIN)
  real    gramfit-gen --shape real (rent in cents, latitude/longitude with
          six decimals and 1% nulls, rent_per_sqft): arrow-rs's dictionary
          pages, falling back to PLAIN
  bss     the same, every float column BYTE_STREAM_SPLIT
  polars  the real file's rows written by polars' defaults (zstd, PLAIN
          float pages, row groups of 131,072 rows): another writer, another
          codec
Models: F (14 predictors), log F (np.log(rent) ~ the same), and on the real
files M (rent ~ latitude + longitude + rent_per_sqft: every column real).
Needs cargo build --release --bins --examples; pyarrow, polars and duckdb.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from bench_isa import files as isa_files  # noqa: E402
from bench_peers import COLS, FORMULA, PY_DUCKDB, X, timed  # noqa: E402

REL = os.path.join(ROOT, "target", "release")
M_COLS = ["rent", "latitude", "longitude", "rent_per_sqft"]
M = "rent ~ latitude + longitude + rent_per_sqft"


def files(rows):
    (_, whole), (_, cents) = isa_files(rows)
    out = [("whole", whole), ("cents", cents)]
    for name, pages in [("real", "dictionary"), ("bss", "byte-stream-split")]:
        path = os.path.join(ROOT, "bench-data", f"{name}-{rows // 1_000_000}m.parquet")
        if not os.path.exists(path):
            subprocess.run([os.path.join(REL, "gramfit-gen"), path, "--rows", str(rows), "--shape", "real",
                            "--float-pages", pages], check=True)
        out.append((name, path))
    real = out[2][1]
    path = real.replace("real-", "polars-zstd-")
    if not os.path.exists(path):
        import polars as pl
        pl.read_parquet(real).write_parquet(path)
    out.append(("polars", path))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    duck = os.path.join(tempfile.mkdtemp(), "duck.py")
    open(duck, "w").write(PY_DUCKDB)
    cases = []
    for name, path in files(a.rows):
        models = [("F", FORMULA, COLS), ("log F", "np.log(rent) ~ " + " + ".join(X), COLS)]
        if name in ("real", "bss", "polars"):
            models.append(("M", M, M_COLS))
        for model, formula, cols in models:
            def fit(t, path=path, formula=formula):
                return [os.path.join(REL, "gramfit"), "fit", path, "-f", formula, "--no-second-pass", "-q",
                        "--threads", str(t), "-o", os.devnull]
            runs = {"gramfit 1": fit(1), "gramfit 2": fit(2),
                    "floor 1": [os.path.join(REL, "examples", "decode_only"), path, ",".join(cols), "1"],
                    "duckdb 2": [sys.executable, duck, path, ",".join(cols), "2"]}
            if model == "log F":
                # DuckDB sums the logarithm as an expression; no decode floor.
                logged = ",".join(f"ln({c})" if c == "rent" else c for c in cols)
                runs = {k: v for k, v in runs.items() if k.startswith("gramfit")}
                runs["duckdb 2"] = [sys.executable, duck, path, logged, "2"]
            cases.append((name, model, runs))
    times = {}
    for _ in range(a.repeats):
        for name, model, runs in cases:
            for k, cmd in runs.items():
                times.setdefault((name, model, k), []).append(timed(cmd))
    med = {key: statistics.median(w for w, _ in v) for key, v in times.items()}
    rss = {key: max(r for _, r in v) for key, v in times.items()}
    print(f"{a.rows:,} rows; medians of {a.repeats}, one run, round robin\n")
    print("| file | model | gramfit 1 thr | gramfit 2 thr | arrow-rs floor 1 thr | gramfit ÷ floor (1 thr) "
          "| DuckDB 2 thr | DuckDB ÷ gramfit (2 thr) | gramfit RSS (MiB) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, model, runs in cases:
        g1, g2 = med[(name, model, "gramfit 1")], med[(name, model, "gramfit 2")]
        fl, dk = med.get((name, model, "floor 1")), med.get((name, model, "duckdb 2"))
        cell = lambda v, f="{:.2f}": f.format(v) if v is not None else "—"  # noqa: E731
        print(f"| {name} | {model} | {g1:.2f} | {g2:.2f} | {cell(fl)} | {cell(fl and g1 / fl)}× | {cell(dk)} | "
              f"{cell(dk and dk / g2, '{:.1f}')}× | {rss[(name, model, 'gramfit 2')]:.0f} |")
    for model in ("F", "log F"):
        base = med[("whole", "F", "gramfit 1")], med[("whole", "F", "gramfit 2")]
        for name in ("cents", "real", "bss", "polars"):
            r = [med[(name, model, f"gramfit {t}")] / b for t, b in zip((1, 2), base)]
            print(f"\n{name} {model} ÷ whole F: {r[0]:.2f}× (1 thread), {r[1]:.2f}× (2 threads)", end="")
    # The price of the transform: log F against F on the same file.
    for name in ("whole", "cents", "real", "bss", "polars"):
        r = [med[(name, "log F", f"gramfit {t}")] / med[(name, "F", f"gramfit {t}")] for t in (1, 2)]
        print(f"\n{name}: log F ÷ F {r[0]:.2f}× (1 thread), {r[1]:.2f}× (2 threads)", end="")
    print()


if __name__ == "__main__":
    main()
