"""Shared by the Python package's tests: the reference listings (fail
loudly when missing), the generated listings in datasets/, and helpers."""
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("GRAMFIT_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
LISTINGS = SHARED / "streeteasy" / "streeteasy.csv"
GENERATED = ROOT / "datasets" / "listings.csv"
CLI = ROOT / "target" / "release" / "gramfit"
FORMULA = "rent ~ size_sqft + bedrooms + min_to_subway + has_washer_dryer + C(borough)"

if not LISTINGS.exists():
    raise RuntimeError(f"*** the reference datasets are missing: {LISTINGS} (set GRAMFIT_SHARED_DATASETS) ***")


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300))


def rel_aliased(a, b):
    """:func:`rel` of two results' Series whose aliased entries are NaN:
    the same entries NaN in both, the others compared."""
    if hasattr(a, "isna"):
        assert list(a.isna()) == list(b.isna())
        a, b = a.fillna(0), b.fillna(0)
    return rel(a, b)


def write_parquet(df, path, row_group_size):
    """``df`` (pandas) as a Parquet file written by pyarrow."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=row_group_size)
    return path


def cli(*args):
    out = subprocess.run([str(CLI), *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def timeless(text):
    """The report without the lines that hold the run's clock or name its inputs."""
    drop = ("Date:", "Time:", "Pass over the data", "elapsed", "fitted_at", "Input:", "Inputs:")
    return [l for l in text.splitlines() if not any(w in l for w in drop)]


def assert_same_fit(ours, theirs, tol=1e-12):
    """Two gramfit results of the same rows: names, nobs and levels exactly,
    the numbers to ``tol``."""
    assert list(ours.params.index) == list(theirs.params.index)
    assert ours.nobs == theirs.nobs
    for name in ["params", "bse", "tvalues"]:
        assert rel(getattr(ours, name), getattr(theirs, name)) < tol, name
    # A p-value far in the tail (1e-189) moves by t² times t's relative
    # error: compared through t, and here with room for that.
    assert rel(ours.pvalues, theirs.pvalues) < 1e3 * tol
    for name in ["rsquared", "llf", "omnibus", "skew", "kurtosis", "jarque_bera", "durbin_watson"]:
        assert rel(getattr(ours, name), getattr(theirs, name)) < tol, name


@pytest.fixture(scope="session")
def listings():
    import pandas as pd

    return pd.read_csv(LISTINGS)
