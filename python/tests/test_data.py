"""In-memory data as ``data`` (pandas, polars, pyarrow, DuckDB) and the
Accumulator, against gramfit's own fit of the same rows from the file and
against statsmodels."""
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
import statsmodels.formula.api as smf

import gramfit
from conftest import FORMULA, LISTINGS, assert_same_fit, cli, rel, rel_aliased, timeless


def kinds(df):
    yield "pandas", df
    yield "polars", pl.from_pandas(df)
    yield "pyarrow Table", pa.Table.from_pandas(df, preserve_index=False)
    yield "pyarrow RecordBatchReader", pa.Table.from_pandas(df, preserve_index=False).to_reader(max_chunksize=777)
    import duckdb

    yield "DuckDB relation", duckdb.sql(f"select * from read_csv_auto('{LISTINGS}')")


@pytest.mark.parametrize("cov_type", ["nonrobust", "HC3"])
def test_every_kind_of_table_fits_as_the_file_does(listings, cov_type):
    from_file = gramfit.ols(FORMULA, LISTINGS, cov_type=cov_type)
    for kind, data in kinds(listings):
        ours = gramfit.ols(FORMULA, data, cov_type=cov_type)
        assert_same_fit(ours, from_file, 1e-12)
        assert timeless(ours.summary().as_text()) == timeless(from_file.summary().as_text()), kind
    theirs = smf.ols(FORMULA, listings).fit(cov_type=cov_type)
    assert rel(gramfit.ols(FORMULA, listings, cov_type=cov_type).bse, theirs.bse) < 1e-8


def test_a_dataframes_errors_name_it_and_its_rows(listings):
    with pytest.raises(gramfit.GramfitError, match=r"no column named 'nope'"):
        gramfit.ols("rent ~ nope", listings)
    df = listings.copy()
    df.loc[3, "size_sqft"] = None
    with pytest.raises(gramfit.GramfitError, match=r"<pandas DataFrame>.*row 3.*size_sqft|size_sqft.*row 3"):
        gramfit.ols(FORMULA, df, missing="raise")
    with pytest.raises(TypeError, match="exporting an Arrow stream"):
        gramfit.ols(FORMULA, {"rent": [1, 2]})


def test_the_accumulator_equals_one_fit_and_its_bytes_are_a_state_file(listings, tmp_path):
    whole = gramfit.ols(FORMULA, listings, second_pass=False)
    acc = gramfit.Accumulator(FORMULA)
    for i in range(0, len(listings), 1000):
        acc.update(listings.iloc[i : i + 1000])
    assert acc.nobs == len(listings)
    fitted = acc.fit()
    assert list(fitted.params.index) == list(whole.params.index)
    assert rel(fitted.params, whole.params) < 1e-12 and rel(fitted.bse, whole.bse) < 1e-12
    # merge: two accumulators of halves.
    a, b = gramfit.Accumulator(FORMULA), gramfit.Accumulator(FORMULA)
    a.update(listings.iloc[:2500])
    b.update(pl.from_pandas(listings.iloc[2500:]))
    assert rel(a.merge(b).fit().params, whole.params) < 1e-12
    # to_bytes / from_bytes: the same statistics, bit for bit.
    again = gramfit.Accumulator.from_bytes(acc.to_bytes())
    assert again.to_bytes()[:12] == acc.to_bytes()[:12]
    assert list(again.fit().params) == list(fitted.params)
    # The bytes are a state file: the command line reads and updates it.
    path = tmp_path / "acc.gramfit"
    path.write_bytes(acc.to_bytes())
    extra = tmp_path / "more.csv"
    listings.iloc[:100].to_csv(extra, index=False)
    cli("update", str(path), str(extra), "-q")
    updated = gramfit.Accumulator.load(path)
    assert updated.nobs == len(listings) + 100
    # …and a state the command line saved is an accumulator's.
    saved = tmp_path / "cli.gramfit"
    cli("fit", str(LISTINGS), "-f", FORMULA, "--save", str(saved), "-q")
    from_cli = gramfit.Accumulator.load(saved).update(listings.iloc[:100])
    assert from_cli.nobs == len(listings) + 100
    assert rel(from_cli.fit().params, updated.fit().params) < 1e-12


def test_the_accumulator_refuses_another_model_and_an_empty_fit(listings):
    a = gramfit.Accumulator(FORMULA).update(listings)
    b = gramfit.Accumulator("rent ~ size_sqft").update(listings)
    with pytest.raises(gramfit.GramfitError, match="not states of the same model: formula"):
        a.merge(b)
    with pytest.raises(ValueError, match="holds no rows yet"):
        gramfit.Accumulator(FORMULA).fit()


def test_an_accumulator_absorbs_fixed_effects(listings):
    formula = "rent ~ size_sqft + bedrooms | neighborhood"
    whole = gramfit.ols(formula, listings)
    acc = gramfit.Accumulator(formula)
    for i in range(0, len(listings), 1500):
        acc.update(listings.iloc[i : i + 1500])
    ours = acc.fit()
    assert ours.nobs == whole.nobs and ours.fixed_effects == whole.fixed_effects
    assert rel(ours.params, whole.params) < 1e-12 and rel(ours.bse, whole.bse) < 1e-12


def test_an_accumulator_estimates_a_factor_by_blocks_when_told(listings, tmp_path, monkeypatch):
    # The one fit estimates the 93 neighborhoods by blocks past 20; the
    # accumulator, told so, sums per-level statistics batch by batch.
    monkeypatch.setenv("GRAMFIT_DENSE_LEVELS", "20")
    formula = "rent ~ size_sqft + bedrooms + C(neighborhood)"
    whole = gramfit.ols(formula, listings, second_pass=False)
    acc = gramfit.Accumulator(formula, blocks="neighborhood")
    for i in range(0, len(listings), 1500):
        acc.update(listings.iloc[i : i + 1500])
    ours = acc.fit()
    assert acc.state.blocks == "neighborhood"
    assert ours.to_dict()["gramfit_notes"][0] == whole.to_dict()["gramfit_notes"][0]
    for name in ["params", "bse", "rsquared", "llf"]:
        assert rel_aliased(getattr(ours, name), getattr(whole, name)) < 1e-10, name
    # Its bytes keep the choice: a loaded accumulator goes on by blocks.
    again = gramfit.Accumulator.from_bytes(acc.to_bytes()).update(listings.iloc[:100])
    assert again.nobs == ours.nobs + 100 and again.state.blocks == "neighborhood"
    # A dense accumulator of the same model does not merge with it.
    with pytest.raises(gramfit.GramfitError, match="not states of the same kind"):
        gramfit.Accumulator(formula).update(listings.iloc[:500]).merge(acc)
