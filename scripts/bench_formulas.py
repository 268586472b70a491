#!/usr/bin/env python3
"""What common formula features cost: the first pass of the 14-predictor
model with one feature added (a quadratic term, a centred column, an
interaction, ids, a unit change, a factor ...) against the model without
it, for one or more gramfit binaries, in one run (round robin over models
and binaries, the order reversed every other round), medians of wall time.

    python3 scripts/bench_formulas.py [--repeats 5] [--threads 1] [--both-passes] [--only S,S] [--by COL] FILE BIN [BIN ...]

FILE must hold the real shape's columns (`gramfit-gen --shape real`, as
`scripts/bench_real.py` makes bench-data/real-10m.parquet).

For example, a saved build against the current one on the real-valued file:

    cp target/release/gramfit /tmp/gramfit-old   # before the change
    cargo build --release
    python3 scripts/bench_formulas.py bench-data/real-10m.parquet /tmp/gramfit-old target/release/gramfit

Prints a Markdown table: per model and binary the median (ms) and its
ratio to the same binary's 14-predictor model.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_peers import FORMULA, X  # noqa: E402

FEATURES = [
    ("14 predictors (F)", FORMULA),
    ("F + latitude (a 15th column: decimals, nulls)", FORMULA + " + latitude"),
    ("F + I(size_sqft ** 2)", FORMULA + " + I(size_sqft ** 2)"),
    ("F + I(building_age_yrs ** 2)", FORMULA + " + I(building_age_yrs ** 2)"),
    ("F + I(floor - 3) (nulls)", FORMULA + " + I(floor - 3)"),
    ("F + np.abs(floor - 3)", FORMULA + " + np.abs(floor - 3)"),
    ("F + size_sqft:bedrooms", FORMULA + " + size_sqft:bedrooms"),
    ("F + bedrooms:bathrooms (quarters)", FORMULA + " + bedrooms:bathrooms"),
    ("F + I(bathrooms ** 2) (quarters)", FORMULA + " + I(bathrooms ** 2)"),
    ("F + rental_id (INT64 ids)", FORMULA + " + rental_id"),
    ("I(size_sqft * 1000) ~ X", "I(size_sqft * 1000) ~ " + " + ".join(X)),
    ("F + np.log(size_sqft)", FORMULA + " + np.log(size_sqft)"),
    ("np.log(rent) ~ X", "np.log(rent) ~ " + " + ".join(X)),
    ("F + I(size_sqft / 1000)", FORMULA + " + I(size_sqft / 1000)"),
    ("F + I(size_sqft / 7)", FORMULA + " + I(size_sqft / 7)"),
    ("F + I(size_sqft / (bedrooms + 1))", FORMULA + " + I(size_sqft / (bedrooms + 1))"),
    ("F + C(borough)", FORMULA + " + C(borough)"),
    ("F + size_sqft:C(borough)", FORMULA + " + size_sqft:C(borough)"),
    ("F + size_sqft * C(borough)", FORMULA + " + size_sqft * C(borough)"),
    ("F + C(borough):has_doorman", FORMULA + " + C(borough):has_doorman"),
    ("F + floor:C(bedrooms) (9 levels, nulls)", FORMULA + " + floor:C(bedrooms)"),
    ("F + C(neighborhood)", FORMULA + " + C(neighborhood)"),
    ("F + C(borough):C(bedrooms)", FORMULA + " + C(borough):C(bedrooms)"),
    ("F + C(borough) * C(has_doorman)", FORMULA + " + C(borough) * C(has_doorman)"),
    ("F + C(borough):C(neighborhood)", FORMULA + " + C(borough):C(neighborhood)"),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--both-passes", action="store_true", help="the default fit (both passes), not the first pass")
    ap.add_argument("--only", help="only the models whose label contains one of these comma-separated strings (and F)")
    ap.add_argument("--by", help="fit every model per level of this column (`gramfit fit --by COL`)")
    ap.add_argument("file")
    ap.add_argument("bins", nargs="+")
    a = ap.parse_args()
    features = FEATURES
    if a.only:
        keep = a.only.split(",")
        features = [FEATURES[0]] + [(m, f) for m, f in FEATURES[1:] if any(k in m for k in keep)]
    passes = [] if a.both_passes else ["--no-second-pass"]
    if a.by:
        passes += ["--by", a.by]
    wall = {(m, b): [] for m, _ in features for b in a.bins}
    runs = [(m, f, b) for m, f in features for b in a.bins]
    for i in range(a.repeats):
        for m, f, b in runs if i % 2 == 0 else runs[::-1]:
            cmd = [b, "fit", a.file, "-f", f, *passes, "-q", "--threads", str(a.threads), "-o", os.devnull]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True)
            wall[(m, b)].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1000 for k, v in wall.items()}
    base = features[0][0]
    print("| model | " + " | ".join(f"{b} (ms) | ÷ F" for b in a.bins) + " |")
    print("|---|" + "---:|---:|" * len(a.bins))
    for m, _ in features:
        cells = " | ".join(f"{med[(m, b)]:.0f} | {med[(m, b)] / med[(base, b)]:.2f}×" for b in a.bins)
        print(f"| {m} | {cells} |")


if __name__ == "__main__":
    main()
