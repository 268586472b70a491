"""gramfit.spark under Spark Connect (a local Connect server: PySpark's
`remote("local[2]")`): every entry uses only what Connect allows."""
import pytest

import gramfit
import gramfit.spark
from conftest import FORMULA, assert_same_fit


@pytest.fixture(scope="module")
def connect():
    from pyspark.sql import SparkSession

    s = SparkSession.builder.remote("local[2]").config("spark.ui.enabled", "false").getOrCreate()
    assert type(s).__module__.startswith("pyspark.sql.connect")
    yield s
    s.stop()


def test_every_entry_runs_under_spark_connect(connect, listings, tmp_path):
    path = tmp_path / "listings.parquet"
    listings.to_parquet(path, index=False)
    whole = gramfit.ols(FORMULA, path, cov_type="HC1")
    assert_same_fit(gramfit.spark.ols(connect.read.parquet(str(path)), FORMULA, cov_type="HC1"), whole)
    assert_same_fit(gramfit.spark.ols_files(connect, path, FORMULA, cov_type="HC1", tasks=3), whole)
    by = gramfit.spark.ols(connect.read.parquet(str(path)), "rent ~ size_sqft", by="borough")
    assert list(by) == sorted(listings["borough"].unique())
    with pytest.raises(gramfit.GramfitError, match="no column named 'nope'"):
        gramfit.spark.ols(connect.read.parquet(str(path)), "rent ~ nope")
