"""The Python package against statsmodels and against gramfit's own
command line, on the StreetEasy listings (../shared/datasets, or
GRAMFIT_SHARED_DATASETS). Run by scripts/test.sh after the wheel is built
and installed."""
import json
import os

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

import gramfit
from conftest import FORMULA, LISTINGS, cli, rel, timeless


@pytest.mark.parametrize("cov_type", ["nonrobust", "HC1", "HC3"])
def test_ols_equals_statsmodels(cov_type):
    df = pd.read_csv(LISTINGS)
    theirs = smf.ols(FORMULA, df).fit(cov_type=cov_type)
    ours = gramfit.ols(FORMULA, LISTINGS, cov_type=cov_type)
    assert list(ours.params.index) == list(theirs.params.index)
    for name in ["params", "bse", "tvalues", "pvalues"]:
        assert rel(getattr(ours, name), getattr(theirs, name)) < 1e-8, name
    assert rel(ours.conf_int().values, theirs.conf_int().values) < 1e-8
    assert rel(ours.cov_params().values, theirs.cov_params().values) < 1e-8
    for name in ["rsquared", "rsquared_adj", "fvalue", "llf", "aic", "bic", "df_resid", "df_model", "nobs"]:
        assert rel(getattr(ours, name), getattr(theirs, name)) < 1e-8, name
    assert rel(sorted(ours.eigenvals), sorted(theirs.eigenvals)) < 1e-6
    assert rel(ours.condition_number, theirs.condition_number) < 1e-6


def test_wls_equals_statsmodels():
    df = pd.read_csv(LISTINGS)
    w = 1.0 / (1.0 + df["min_to_subway"])
    theirs = smf.wls(FORMULA, df, weights=w).fit()
    ours = gramfit.wls(FORMULA, LISTINGS, weights="1/(1+min_to_subway)")
    assert ours.model == "WLS"
    for name in ["params", "bse"]:
        assert rel(getattr(ours, name), getattr(theirs, name)) < 1e-8, name
    assert rel(ours.llf, theirs.llf) < 1e-8


@pytest.mark.parametrize(
    "formula, extra",
    [
        (FORMULA, ["--cov-type", "HC3"]),
        ("rent ~ size_sqft + bedrooms | neighborhood", []),
    ],
)
def test_summary_and_to_dict_are_the_command_lines(formula, extra):
    kw = {"cov_type": extra[1]} if extra else {}
    ours = gramfit.ols(formula, LISTINGS, **kw)
    text = cli("fit", str(LISTINGS), "-f", formula, "-q", *extra)
    assert timeless(str(ours.summary())) == timeless(text)
    printed = json.loads(cli("fit", str(LISTINGS), "-f", formula, "-q", "--format", "json", *extra))
    mine = ours.to_dict()
    assert list(mine) == list(printed)
    for k in ("fitted_at", "elapsed_s"):
        mine.pop(k), printed.pop(k)
    assert mine == printed


def test_a_saved_state_is_the_command_lines(tmp_path):
    # Saved from Python, read by the command line; saved by the command
    # line, read from Python.
    state = tmp_path / "rent.gramfit"
    ours = gramfit.ols(FORMULA, [LISTINGS], save=state, second_pass=False)
    summary = json.loads(cli("summary", str(state), "--format", "json"))
    assert summary["params"] == ours.to_dict()["params"]
    for formula in [FORMULA, "rent ~ size_sqft + bedrooms | neighborhood"]:
        other = tmp_path / "cli.gramfit"
        cli("fit", str(LISTINGS), "-f", formula, "-q", "--save", str(other), "-o", os.devnull)
        loaded = gramfit.load(other)
        assert timeless(str(loaded.summary())) == timeless(cli("summary", str(other)))
        assert loaded.to_dict() == json.loads(cli("summary", str(other), "--format", "json"))
    with pytest.raises(gramfit.GramfitError, match="nothing.gramfit"):
        gramfit.load(tmp_path / "nothing.gramfit")


def test_bad_input_raises_with_the_engines_message(tmp_path):
    with pytest.raises(gramfit.GramfitError, match="no column named 'size_sq' in the input; did you mean 'size_sqft'"):
        gramfit.ols("rent ~ size_sq", LISTINGS)
    with pytest.raises(ValueError, match="cov_type must be one of nonrobust, HC0, HC1, HC2, HC3, cluster; not 'HC9'"):
        gramfit.ols("rent ~ size_sqft", LISTINGS, cov_type="HC9")
    with pytest.raises(gramfit.GramfitError, match="--cov-type cluster needs --cluster"):
        gramfit.ols("rent ~ size_sqft", LISTINGS, cov_type="cluster")
    gap = tmp_path / "gap.csv"
    gap.write_text("y,x\n1,2\n2,\n3,4\n")
    assert gramfit.ols("y ~ x", gap).nobs == 2
    with pytest.raises(gramfit.GramfitError, match="column 'x' is missing a value at"):
        gramfit.ols("y ~ x", gap, missing="raise")
    bad = tmp_path / "bad.csv"
    bad.write_text("y,x\n1,2\n2,3\n3,NaNa\n")
    with pytest.raises(gramfit.GramfitError, match="bad.csv"):
        gramfit.ols("y ~ np.log(x)", bad)
    with pytest.raises(gramfit.GramfitError, match="missing.parquet"):
        gramfit.ols("y ~ x", tmp_path / "missing.parquet")
    with pytest.raises(TypeError, match="a table exporting an Arrow stream"):
        gramfit.ols("y ~ x", [1.0, 2.0])


def test_ctrl_c_stops_a_long_fit_and_the_next_fit_runs(tmp_path, monkeypatch):
    # A dense solve of 1,500 levels takes seconds and polls the stop flag
    # at every column (the threshold raised so that it runs densely).
    rng = np.random.default_rng(7)
    n, levels = 60_000, 1500
    g = rng.integers(0, levels, n)
    x = rng.normal(size=n)
    y = 1 + 2 * x + np.sin(g) + rng.normal(size=n)
    data = tmp_path / "levels.csv"
    pd.DataFrame({"y": y, "x": x, "g": [f"L{v}" for v in g]}).to_csv(data, index=False)
    monkeypatch.setenv("GRAMFIT_DENSE_LEVELS", "5000")
    import _thread
    import threading
    import time

    timer = threading.Timer(0.5, _thread.interrupt_main)
    t0 = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        gramfit.ols("y ~ x + C(g)", data)
    stopped = time.monotonic() - t0
    timer.cancel()
    assert stopped < 3.0, f"stopped after {stopped:.2f} s"
    # The stop is not left behind for the next call.
    assert gramfit.ols("rent ~ size_sqft", LISTINGS).nobs == 5000
