#!/usr/bin/env python3
"""gramfit on Spark against MLlib's normal-equation solver and gramfit's
command line, same run, same machine (issue 22): Spark local[2], 10M rows
from Parquet (rent in cents, written by pyarrow: PLAIN pages, values that
are not whole numbers), the mission's model with a five-level factor.

Each variant runs in its own process (a fresh Spark session, started
before the clock), three times; the median is quoted, and the peak
resident memory of the process and all its children (the JVM, Python
workers), sampled every 50 ms over the whole process, session start
included.

    python3 scripts/bench_spark.py [--rows 10000000] [--repeats 3]

Variants:
  cli         gramfit fit FILE (2 threads)
  files       gramfit.spark.ols_files(spark, FILE, …): row groups as tasks, read by gramfit
  dataframe   gramfit.spark.ols(spark.read.parquet(FILE), …): mapInArrow,
              both passes (the DataFrame persisted between them: the default)
  df-scan     the same with persist=False (the scan computed again)
  df-1pass    the same with second_pass=False: what MLlib reports (β,
              standard errors, p-values, R²), no residual diagnostics
  mllib       StringIndexer + OneHotEncoder + VectorAssembler +
              LinearRegression(solver="normal"), then its summary's
              p-values and R² (what gramfit reports, and less)
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
EXE = os.path.join(ROOT, "target", "release", "gramfit")
MISSION = "rent ~ size_sqft + bedrooms + min_to_subway + has_washer_dryer + C(borough)"
NUMERIC = ["size_sqft", "bedrooms", "min_to_subway", "has_washer_dryer"]


def session():
    from pyspark.sql import SparkSession

    s = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "8g")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    s.sparkContext.setLogLevel("ERROR")
    return s


def variant(name, path, repeats):
    """Run one variant `repeats` times in this process; returns the times
    and a digest of the result (the coefficients)."""
    times, coefs = [], None
    if name == "cli":
        for _ in range(repeats):
            t = time.perf_counter()
            out = subprocess.run([EXE, "fit", path, "-f", MISSION, "-q", "--threads", "2", "--format", "json"],
                                 check=True, capture_output=True, text=True).stdout
            times.append(time.perf_counter() - t)
            coefs = json.loads(out)["params"]
        return times, coefs
    import gramfit
    import gramfit.spark

    spark = session()
    for _ in range(repeats):
        t = time.perf_counter()
        if name == "files":
            res = gramfit.spark.ols_files(spark, path, MISSION)
            coefs = res.to_dict()["params"]
        elif name in ("dataframe", "df-scan", "df-1pass"):
            kw = {"df-scan": {"persist": False}, "df-1pass": {"second_pass": False}}.get(name, {})
            res = gramfit.spark.ols(spark.read.parquet(path), MISSION, **kw)
            coefs = res.to_dict()["params"]
        elif name == "mllib":
            from pyspark.ml import Pipeline
            from pyspark.ml.feature import OneHotEncoder, StringIndexer, VectorAssembler
            from pyspark.ml.regression import LinearRegression

            df = spark.read.parquet(path)
            prep = Pipeline(stages=[
                StringIndexer(inputCol="borough", outputCol="b_idx", stringOrderType="alphabetAsc", handleInvalid="skip"),
                OneHotEncoder(inputCol="b_idx", outputCol="b_vec", dropLast=False),
            ]).fit(df)
            # Treatment coding with the first level as reference: drop it.
            from pyspark.ml.functions import vector_to_array
            from pyspark.sql import functions as F

            d = prep.transform(df).withColumn("b", vector_to_array("b_vec"))
            d = d.select("rent", *NUMERIC, F.col("b")[1].alias("b1"), F.col("b")[2].alias("b2"))
            d = VectorAssembler(inputCols=[*NUMERIC, "b1", "b2"], outputCol="features", handleInvalid="skip").transform(d)
            model = LinearRegression(solver="normal", labelCol="rent", standardization=False).fit(d)
            s = model.summary
            _ = (s.pValues, s.r2, s.coefficientStandardErrors)
            coefs = {"Intercept": model.intercept, **dict(zip([*NUMERIC, "b1", "b2"], model.coefficients.toArray()))}
        times.append(time.perf_counter() - t)
    spark.stop()
    return times, coefs


def peak_rss(pid, stop, out):
    import psutil

    peak = 0
    p = psutil.Process(pid)
    while not stop.is_set():
        try:
            total = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
        except psutil.Error:
            total = 0
        peak = max(peak, total)
        time.sleep(0.05)
    out.append(peak)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        times, coefs = variant(a.one, a.path, a.repeats)
        print(json.dumps({"times": times, "coefs": coefs}))
        return
    from bench_isa import files

    path = files(a.rows)[1][1]
    print(f"file: {path} ({a.rows:,} rows, rent in cents, pyarrow); model: {MISSION}")
    rows = []
    for name in ["cli", "files", "dataframe", "df-scan", "df-1pass", "mllib"]:
        proc = subprocess.Popen([sys.executable, __file__, "--one", name, "--path", path, "--repeats", str(a.repeats)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        stop, peak = threading.Event(), []
        sampler = threading.Thread(target=peak_rss, args=(proc.pid, stop, peak))
        sampler.start()
        out, _ = proc.communicate()
        stop.set()
        sampler.join()
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed")
        r = json.loads(out.strip().splitlines()[-1])
        med = statistics.median(r["times"])
        rows.append((name, med, r["times"], peak[0], r["coefs"]))
        print(f"{name:10s} median {med:7.2f} s  runs {', '.join(f'{t:.2f}' for t in r['times'])}  peak RSS {peak[0] / 2**30:.2f} GiB",
              flush=True)
    mllib = dict((n, m) for n, m, *_ in rows)["mllib"]
    for name, med, *_ in rows:
        print(f"{name:10s} {mllib / med:6.1f}x faster than MLlib")
    ours, theirs = rows[1][4], rows[-1][4]
    print("size_sqft coefficient: gramfit", ours["size_sqft"], "MLlib", theirs["size_sqft"])


if __name__ == "__main__":
    main()
