"""gramfit.dask on a real Dask LocalCluster (two worker processes): the
same results as gramfit's own fit of the same rows, fixed bits for a
fixed partitioning, levels seen by one partition only, bad input."""
import dask.dataframe as dd
import pandas as pd
import pytest

import gramfit
import gramfit.dask
from conftest import FORMULA, GENERATED, LISTINGS, assert_same_fit, cli, rel, rel_aliased, write_parquet

GENERATED_FORMULA = "rent ~ size_sqft + bedrooms + bathrooms + np.log(min_to_subway + 1) + has_washer_dryer + C(borough)"


@pytest.fixture(scope="module")
def client():
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as c:
            yield c


def stable(res):
    """Everything of a report but its clock."""
    d = res.to_dict()
    for k in ("fitted_at", "elapsed_s", "date", "time"):
        d.pop(k, None)
    return d


def test_partitions_fit_as_one_fit_of_their_rows(client, listings):
    ddf = dd.from_pandas(listings, npartitions=7, sort=False)
    for cov_type in ["nonrobust", "HC1"]:
        ours = gramfit.dask.ols(ddf, FORMULA, cov_type=cov_type)
        assert_same_fit(ours, gramfit.ols(FORMULA, listings, cov_type=cov_type))
    # The same partitioning, the same bits; another, the same to 1e-12.
    a, b = gramfit.dask.ols(ddf, FORMULA), gramfit.dask.ols(ddf, FORMULA)
    assert stable(a) == stable(b)
    assert_same_fit(gramfit.dask.ols(dd.from_pandas(listings, npartitions=3, sort=False), FORMULA), a)
    assert_same_fit(gramfit.dask.ols(ddf, FORMULA, split_every=2), a)
    # WLS with HC2 (leverages), and cluster-robust errors.
    w = "1/(1+min_to_subway)"
    ours = gramfit.dask.ols(ddf, FORMULA, weights=w, cov_type="HC2")
    assert ours.model == "WLS"
    assert_same_fit(ours, gramfit.wls(FORMULA, listings, weights=w, cov_type="HC2"))
    ours = gramfit.dask.ols(ddf, FORMULA, cov_type="cluster", cluster="neighborhood")
    assert_same_fit(ours, gramfit.ols(FORMULA, listings, cov_type="cluster", cluster="neighborhood"))


def test_absorbed_fixed_effects_fit_in_partitions(client, listings):
    formula = "rent ~ size_sqft + bedrooms | neighborhood"
    ddf = dd.from_pandas(listings.sort_values("borough", kind="stable"), npartitions=4, sort=False)
    ours, whole = gramfit.dask.ols(ddf, formula), gramfit.ols(formula, listings)
    assert ours.nobs == whole.nobs and ours.fixed_effects == whole.fixed_effects
    assert rel(ours.params, whole.params) < 1e-12 and rel(ours.bse, whole.bse) < 1e-12
    # Robust and clustered errors: the within residuals' second pass in
    # the partitions (clusters span them), merged in partition order.
    for options in [dict(cov_type="HC1"), dict(cov_type="cluster"), dict(cov_type="cluster", cluster="borough")]:
        ours, whole = gramfit.dask.ols(ddf, formula, **options), gramfit.ols(formula, listings, **options)
        assert ours.to_dict()["cov_type"] == whole.to_dict()["cov_type"] and ours.to_dict()["cluster"] == whole.to_dict()["cluster"]
        for name in ["params", "bse", "tvalues", "pvalues"]:
            assert rel(getattr(ours, name), getattr(whole, name)) < 1e-10, (options, name)
    with pytest.raises(gramfit.GramfitError, match="--cov-type HC3 is not available with absorbed fixed effects"):
        gramfit.dask.ols(ddf, formula, cov_type="HC3")


def test_a_model_per_group(client, listings):
    ddf = dd.from_pandas(listings, npartitions=3, sort=False)
    formula = "rent ~ size_sqft + bedrooms + min_to_subway + has_washer_dryer"
    ours = gramfit.dask.ols(ddf, formula, by="borough", cov_type="HC1")
    assert list(ours) == sorted(listings["borough"].unique())
    for level, res in ours.items():
        theirs = gramfit.ols(formula, listings[listings["borough"] == level], cov_type="HC1")
        assert list(res.params.index) == list(theirs.params.index) and res.nobs == theirs.nobs
        for name in ["params", "bse", "tvalues", "rsquared", "omnibus", "jarque_bera"]:
            assert rel(getattr(res, name), getattr(theirs, name)) < 1e-10, (level, name)
    with pytest.raises(gramfit.GramfitError, match="by: no column named 'nope'"):
        gramfit.dask.ols(ddf, formula, by="nope")


def test_a_model_per_group_saves_states_that_keep_to_their_group(client, listings, tmp_path):
    ddf = dd.from_pandas(listings, npartitions=3, sort=False)
    formula = "rent ~ size_sqft + bedrooms + has_washer_dryer"
    ours = gramfit.dask.ols(ddf, formula, by="borough", cov_type="HC1", save=f"{tmp_path}/dask/")
    cli("fit", str(LISTINGS), "-q", "-f", formula, "--by", "borough", "--cov-type", "HC1", "--save", f"{tmp_path}/cli/")
    for level, res in ours.items():
        # Where `gramfit fit --by --save DIR/` puts it, with the same fit.
        saved, theirs = tmp_path / "dask" / f"{level}.gramfit", gramfit.load(tmp_path / "cli" / f"{level}.gramfit")
        for name in ["params", "bse", "rsquared", "omnibus"]:
            assert rel(getattr(gramfit.load(saved), name), getattr(theirs, name)) < 1e-10, (level, name)
        assert gramfit.load(saved).to_dict()["cov_type"] == "HC1"
        # It records its group: an update with the whole file folds in
        # only the group's rows.
        cli("update", str(saved), str(LISTINGS), "-q")
        assert gramfit.load(saved).nobs == 2 * res.nobs
    # Absorbed fixed effects per group: robust errors; their states would
    # not record the group, so save= is refused before any work.
    absorbed = "rent ~ size_sqft + bedrooms | neighborhood"
    ours = gramfit.dask.ols(ddf, absorbed, by="borough", cov_type="cluster")
    for level, res in ours.items():
        theirs = gramfit.ols(absorbed, listings[listings["borough"] == level], cov_type="cluster")
        assert rel(res.bse, theirs.bse) < 1e-10 and res.to_dict()["cluster"] == theirs.to_dict()["cluster"]
    with pytest.raises(gramfit.GramfitError, match="save= with by= keeps a state per group"):
        gramfit.dask.ols(ddf, absorbed, by="borough", save=tmp_path / "nope")


def test_a_factor_of_many_levels_is_estimated_by_blocks_in_every_partition(client, listings, tmp_path, monkeypatch):
    # 93 neighborhoods, past a threshold of 20 (the driver decides; the
    # in-process one fit reads the same setting).
    monkeypatch.setenv("GRAMFIT_DENSE_LEVELS", "20")
    formula = "rent ~ size_sqft + bedrooms + has_washer_dryer + C(neighborhood)"
    path = write_parquet(listings, tmp_path / "listings.parquet", 600)
    for cov_type in ["nonrobust", "HC3"]:
        whole = gramfit.ols(formula, listings, cov_type=cov_type)
        assert any("93 levels (more than 20)" in n for n in whole.to_dict()["gramfit_notes"])
        for ours in [
            gramfit.dask.ols(dd.from_pandas(listings, npartitions=4, sort=False), formula, cov_type=cov_type),
            gramfit.dask.ols_files(path, formula, cov_type=cov_type, tasks=3),
        ]:
            assert ours.to_dict()["gramfit_notes"][0] == whole.to_dict()["gramfit_notes"][0]
            assert list(ours.params.index) == list(whole.params.index)
            for name in ["params", "bse", "rsquared", "omnibus", "durbin_watson"]:
                assert rel_aliased(getattr(ours, name), getattr(whole, name)) < 1e-10, (cov_type, name)


def test_a_level_seen_by_one_partition_only_is_coded_as_in_one_fit(client, listings):
    by_borough = listings.sort_values("borough", kind="stable").reset_index(drop=True)
    ddf = dd.from_pandas(by_borough, npartitions=6, sort=False)
    ours = gramfit.dask.ols(ddf, FORMULA, cov_type="HC3")
    assert_same_fit(ours, gramfit.ols(FORMULA, by_borough, cov_type="HC3"))
    assert [n for n in ours.params.index if n.startswith("C(borough)")] == [
        "C(borough)[T.Manhattan]",
        "C(borough)[T.Queens]",
    ]


def test_a_generated_file_read_by_dask_fits_as_gramfit_reads_it(client, tmp_path):
    ddf = dd.read_csv(GENERATED, blocksize=200_000)
    assert ddf.npartitions > 2
    saved = tmp_path / "dask.gramfit"
    ours = gramfit.dask.ols(ddf, GENERATED_FORMULA, cov_type="HC1", save=saved)
    assert_same_fit(ours, gramfit.ols(GENERATED_FORMULA, GENERATED, cov_type="HC1"))
    assert stable(gramfit.load(saved)) == stable(ours)


def test_bad_input_raises_the_engines_message(client, listings):
    ddf = dd.from_pandas(listings, npartitions=3, sort=False)
    with pytest.raises(gramfit.GramfitError, match="no column named 'nope'"):
        gramfit.dask.ols(ddf, "rent ~ nope")
    text = listings.assign(size_sqft=listings["size_sqft"].astype(str))
    with pytest.raises(gramfit.GramfitError, match="column 'size_sqft' is not numeric"):
        gramfit.dask.ols(dd.from_pandas(text, npartitions=3, sort=False), "rent ~ np.log(size_sqft)")
    # A partition whose column has another type than the others'.
    mixed = dd.from_delayed(
        [dask_delayed(listings.iloc[:2000]), dask_delayed(text.iloc[2000:])], meta=listings.iloc[:0], verify_meta=False
    )
    with pytest.raises(gramfit.GramfitError, match="column 'size_sqft' has type"):
        gramfit.dask.ols(mixed, FORMULA, second_pass=False)


def dask_delayed(x):
    import dask

    return dask.delayed(x)


def test_files_read_by_gramfits_engine_in_dask_tasks_fit_as_one_fit(client, listings, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards = tmp_path / "shards"
    shards.mkdir()
    table = pa.Table.from_pandas(listings, preserve_index=False)
    pq.write_table(table.slice(0, 3000), shards / "a.parquet", row_group_size=700)
    pq.write_table(table.slice(3000), shards / "b.parquet", row_group_size=700)
    for tasks in (2, 5):
        ours = gramfit.dask.ols_files(str(shards / "*.parquet"), FORMULA, cov_type="HC1", tasks=tasks)
        assert_same_fit(ours, gramfit.ols(FORMULA, shards, cov_type="HC1"))
    with pytest.raises(gramfit.GramfitError, match="reads Parquet files"):
        gramfit.dask.ols_files(GENERATED, FORMULA)
