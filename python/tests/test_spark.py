"""gramfit.spark on a real PySpark session (local[2]; Java from the
machine): the same results as gramfit's own fit of the same rows, fixed
bits for a fixed partitioning, levels seen by one partition only, bad
input."""
import pytest

import gramfit
import gramfit.spark
from conftest import FORMULA, GENERATED, assert_same_fit, rel, rel_aliased, write_parquet
from test_dask import GENERATED_FORMULA, stable


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    s = (
        SparkSession.builder.master("local[2]")
        .appName("gramfit-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


def in_order(spark, df, parts):
    """``df`` as a Spark DataFrame of ``parts`` runs of consecutive rows,
    in row order (ranges of the row number, sorted within)."""
    rows = spark.createDataFrame(df.assign(row_number=range(len(df))))
    # Cached: the range boundaries come from a sample, drawn anew when
    # the DataFrame is computed again.
    out = rows.repartitionByRange(parts, "row_number").sortWithinPartitions("row_number").cache()
    assert out.rdd.getNumPartitions() == parts
    return out


def test_partitions_fit_as_one_fit_of_their_rows(spark, listings):
    sdf = in_order(spark, listings, 5)
    for cov_type in ["nonrobust", "HC1"]:
        assert_same_fit(gramfit.spark.ols(sdf, FORMULA, cov_type=cov_type), gramfit.ols(FORMULA, listings, cov_type=cov_type))
    a, b = gramfit.spark.ols(sdf, FORMULA), gramfit.spark.ols(sdf, FORMULA)
    assert stable(a) == stable(b)
    assert_same_fit(gramfit.spark.ols(in_order(spark, listings, 3), FORMULA), a)


def test_a_level_seen_by_one_partition_only_is_coded_as_in_one_fit(spark, listings):
    by_borough = listings.sort_values("borough", kind="stable").reset_index(drop=True)
    ours = gramfit.spark.ols(in_order(spark, by_borough, 6), FORMULA, cov_type="HC3")
    assert_same_fit(ours, gramfit.ols(FORMULA, by_borough, cov_type="HC3"))
    assert [n for n in ours.params.index if n.startswith("C(borough)")] == [
        "C(borough)[T.Manhattan]",
        "C(borough)[T.Queens]",
    ]


def test_absorbed_fixed_effects_with_clustered_errors(spark, listings, tmp_path):
    formula = "rent ~ size_sqft + bedrooms + has_washer_dryer | neighborhood"
    whole = gramfit.ols(formula, listings, cov_type="cluster")
    path = write_parquet(listings, tmp_path / "listings.parquet", 800)
    for ours in [
        gramfit.spark.ols(in_order(spark, listings, 4), formula, cov_type="cluster"),
        gramfit.spark.ols_files(spark, path, formula, cov_type="cluster", tasks=3),
    ]:
        assert ours.to_dict()["cluster"] == whole.to_dict()["cluster"] and ours.fixed_effects == whole.fixed_effects
        for name in ["params", "bse", "tvalues", "pvalues"]:
            assert rel(getattr(ours, name), getattr(whole, name)) < 1e-10, name


def test_a_factor_of_many_levels_is_estimated_by_blocks(spark, listings, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAMFIT_DENSE_LEVELS", "20")
    formula = "rent ~ size_sqft + bedrooms + has_washer_dryer + C(neighborhood)"
    whole = gramfit.ols(formula, listings, cov_type="HC1")
    path = write_parquet(listings, tmp_path / "listings.parquet", 600)
    for ours in [
        gramfit.spark.ols(in_order(spark, listings, 4), formula, cov_type="HC1"),
        gramfit.spark.ols_files(spark, path, formula, cov_type="HC1", tasks=3),
    ]:
        assert ours.to_dict()["gramfit_notes"][0] == whole.to_dict()["gramfit_notes"][0]
        assert "by blocks" in ours.to_dict()["gramfit_notes"][0]
        for name in ["params", "bse", "rsquared", "durbin_watson"]:
            assert rel_aliased(getattr(ours, name), getattr(whole, name)) < 1e-10, name


def test_a_generated_file_read_by_spark_fits_as_gramfit_reads_it(spark):
    spark.conf.set("spark.sql.files.maxPartitionBytes", "200000")
    sdf = spark.read.csv(str(GENERATED), header=True, inferSchema=True)
    assert sdf.rdd.getNumPartitions() > 2
    ours = gramfit.spark.ols(sdf, GENERATED_FORMULA, cov_type="HC1")
    assert_same_fit(ours, gramfit.ols(GENERATED_FORMULA, GENERATED, cov_type="HC1"))


def test_bad_input_raises_the_engines_message(spark, listings):
    sdf = in_order(spark, listings, 2)
    with pytest.raises(gramfit.GramfitError, match="no column named 'nope'"):
        gramfit.spark.ols(sdf, "rent ~ nope")
    text = sdf.withColumn("size_sqft", sdf["size_sqft"].cast("string"))
    with pytest.raises(gramfit.GramfitError, match="column 'size_sqft' is not numeric"):
        gramfit.spark.ols(text, "rent ~ np.log(size_sqft)")


def test_files_read_by_gramfits_engine_in_spark_tasks_fit_as_one_fit(spark, listings, tmp_path):
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.parquet as pq

    # The generated listings in row groups of 1,000; the reference listings
    # as a directory of two files (read in name order).
    generated = tmp_path / "generated.parquet"
    pq.write_table(pyarrow.csv.read_csv(GENERATED), generated, row_group_size=1000)
    ours = gramfit.spark.ols_files(spark, generated, GENERATED_FORMULA, cov_type="HC1", tasks=4)
    assert_same_fit(ours, gramfit.ols(GENERATED_FORMULA, generated, cov_type="HC1"))
    shards = tmp_path / "shards"
    shards.mkdir()
    table = pa.Table.from_pandas(listings, preserve_index=False)
    pq.write_table(table.slice(0, 3000), shards / "a.parquet", row_group_size=700)
    pq.write_table(table.slice(3000), shards / "b.parquet", row_group_size=700)
    for tasks in (3, 7):
        ours = gramfit.spark.ols_files(spark, str(shards), FORMULA, cov_type="HC3", tasks=tasks)
        assert_same_fit(ours, gramfit.ols(FORMULA, shards, cov_type="HC3"))
    with pytest.raises(gramfit.GramfitError, match="no column named 'nope'"):
        gramfit.spark.ols_files(spark, generated, "rent ~ nope")
    with pytest.raises(gramfit.GramfitError, match="reads Parquet files"):
        gramfit.spark.ols_files(spark, GENERATED, FORMULA)


def test_a_model_per_group_through_apply_in_arrow(spark, listings):
    sdf = in_order(spark, listings, 3)
    formula = "rent ~ size_sqft + bedrooms + min_to_subway + has_washer_dryer"
    ours = gramfit.spark.ols(sdf, formula, by="borough", cov_type="HC1")
    assert list(ours) == sorted(listings["borough"].unique())
    for level, res in ours.items():
        theirs = gramfit.ols(formula, listings[listings["borough"] == level], cov_type="HC1")
        assert list(res.params.index) == list(theirs.params.index)
        assert res.nobs == theirs.nobs
        # A shuffle's row order: the sums agree to rounding; Durbin–Watson
        # is of Spark's order, not compared.
        for name in ["params", "bse", "tvalues", "rsquared", "omnibus", "jarque_bera"]:
            assert rel(getattr(res, name), getattr(theirs, name)) < 1e-10, (level, name)
    with pytest.raises(gramfit.GramfitError, match="by: no column named 'nope'"):
        gramfit.spark.ols(sdf, formula, by="nope")


def test_a_model_per_group_saved_by_pattern(spark, listings, tmp_path):
    formula = "rent ~ size_sqft + bedrooms"
    ours = gramfit.spark.ols(in_order(spark, listings, 3), formula, by="borough", save=tmp_path / "rent-{group}.gramfit")
    for level, res in ours.items():
        saved = gramfit.load(tmp_path / f"rent-{level}.gramfit")
        assert saved.to_dict()["formula"] == formula and saved.nobs == res.nobs
        assert rel(saved.params, res.params) == 0 and rel(saved.durbin_watson, res.durbin_watson) == 0


def test_persist_false_computes_again_and_refuses_partitions_that_changed(spark, listings, tmp_path):
    import random

    from pyspark.sql import functions as F

    path = tmp_path / "listings.parquet"
    listings.to_parquet(path, index=False)
    scan = spark.read.parquet(str(path))
    assert_same_fit(gramfit.spark.ols(scan, FORMULA, cov_type="HC1", persist=False),
                    gramfit.ols(FORMULA, path, cov_type="HC1"))
    # Rows sent to partitions by a value drawn anew each time the plan runs.
    draw = F.udf(lambda: random.random(), "double").asNondeterministic()
    shuffled = scan.withColumn("draw", draw()).repartition(3, "draw")
    with pytest.raises(gramfit.GramfitError, match="partitions changed between the two passes"):
        gramfit.spark.ols(shuffled, FORMULA, persist=False)
    # Persisted (the default), the same frame fits; Durbin–Watson is of
    # the order the first computation gave.
    assert gramfit.spark.ols(shuffled, FORMULA).nobs == 5000


@pytest.mark.parametrize(
    "codec, options",
    [
        ("snappy", {}),
        ("zstd", {}),
        # zstd frames of parquet-mr's streaming writer, PLAIN pages, v2 pages.
        ("zstd", {"parquet.enable.dictionary": "false", "parquet.writer.version": "v2"}),
        ("gzip", {}),
        ("lz4_raw", {}),
        # Hadoop's framed LZ4 (parquet-mr's "lz4").
        ("lz4", {}),
        ("none", {"parquet.enable.dictionary": "false"}),
    ],
)
def test_files_spark_wrote_fit_as_their_rows(spark, listings, tmp_path, codec, options):
    """Parquet as Spark writes it (parquet-mr: its codecs, its page and
    frame layouts), read by gramfit's own engine: the fit of the rows."""
    import glob

    # Rent in cents: a column of real values, beside integers and a 0/1 flag.
    rows = listings.assign(rent=listings.rent + (listings.index % 100) / 100)
    out = tmp_path / "spark"
    # One partition, rows in order (coalesce does not shuffle): the
    # Durbin–Watson statistic compares the same sequence.
    writer = spark.createDataFrame(rows).coalesce(1).write.option("compression", codec)
    for k, v in options.items():
        writer = writer.option(k, v)
    writer.parquet(str(out))
    files = sorted(glob.glob(str(out / "*.parquet")))
    assert files, "Spark wrote no Parquet file"
    import pyarrow.parquet as pq

    stored = {pq.ParquetFile(f).metadata.row_group(0).column(0).compression for f in files}
    # (pyarrow names LZ4_RAW "LZ4", and has no name for the deprecated
    # Hadoop LZ4 codec.)
    names = {"none": "UNCOMPRESSED", "lz4_raw": "LZ4", "lz4": "UNKNOWN"}
    assert stored == {names.get(codec, codec.upper())}, stored
    for cov_type in ["nonrobust", "HC1"]:
        assert_same_fit(gramfit.ols(FORMULA, files, cov_type=cov_type), gramfit.ols(FORMULA, rows, cov_type=cov_type))
