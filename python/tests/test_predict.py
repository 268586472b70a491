"""gramfit.predict from Python: statsmodels' get_prediction to 1e-8, the
command line's `gramfit predict` bit for bit, rows the fit cannot
predict."""
import numpy as np
import pyarrow.ipc
import pytest
import statsmodels.formula.api as smf

import gramfit
from conftest import cli, rel

FORMULA = "rent ~ size_sqft + bedrooms + np.log(min_to_subway + 1) + C(borough)"
COLUMNS = ["mean", "mean_se", "mean_ci_lower", "mean_ci_upper", "obs_ci_lower", "obs_ci_upper"]


def test_predictions_equal_statsmodels_and_the_command_line(listings, tmp_path):
    train, new = listings.iloc[:4000], listings.iloc[4000:]
    theirs = smf.ols(FORMULA, train).fit().get_prediction(new).summary_frame(alpha=0.1)
    acc = gramfit.Accumulator(FORMULA).update(train)
    ours = acc.predict(new, alpha=0.1, keep=["rental_id"])
    assert list(ours.columns) == ["rental_id", *COLUMNS, "resid", "resid_std"]
    assert list(ours["rental_id"]) == list(new["rental_id"])
    for c in COLUMNS:
        # Relative to the column's scale: an interval's bound may cross 0.
        scale = np.max(np.abs(theirs[c].values))
        assert np.max(np.abs(ours[c].values - theirs[c].values)) < 1e-8 * scale, c
    resid = new["rent"].values - theirs["mean"].values
    assert np.max(np.abs(ours["resid"].values - resid)) < 1e-8 * np.max(np.abs(resid))
    # The same state through a file and the same rows from a file: the
    # command line's output, bit for bit.
    state = tmp_path / "fit.gramfit"
    acc.save(state)
    rows = tmp_path / "new.csv"
    new.to_csv(rows, index=False)
    from_path = gramfit.predict(str(state), rows, alpha=0.1, interval="confidence")
    out = tmp_path / "cli.arrow"
    cli("predict", str(state), str(rows), "-o", str(out), "--alpha", "0.1", "--interval", "confidence", "-q")
    with pyarrow.ipc.open_file(out) as f:
        printed = f.read_all().to_pandas()
    assert list(from_path.columns) == list(printed.columns)
    for c in printed.columns:
        assert np.array_equal(from_path[c].values, printed[c].values, equal_nan=True), c
    # Without the response: means and intervals, no residuals.
    only_x = gramfit.predict(acc.state, new.drop(columns=["rent"]), interval="none")
    assert list(only_x.columns) == ["mean"]
    assert rel(only_x["mean"], theirs["mean"]) < 1e-8


def test_rows_the_fit_cannot_predict(listings):
    acc = gramfit.Accumulator(FORMULA).update(listings[listings["borough"] != "Queens"])
    queens = listings[listings["borough"] == "Queens"].head(3)
    ours = acc.predict(queens)
    assert ours["mean"].isna().all()
    with pytest.raises(gramfit.GramfitError, match="Queens"):
        acc.predict(queens, unseen_level="error")
    with pytest.raises(ValueError, match="interval must be one of none, confidence, prediction"):
        acc.predict(queens, interval="both")
    with pytest.raises(gramfit.GramfitError, match="column 'size_sqft' is missing"):
        acc.predict(queens.drop(columns=["size_sqft"]))
