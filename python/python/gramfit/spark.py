"""gramfit on Spark: ``gramfit.spark.ols(df, formula)`` fits a PySpark
DataFrame partition by partition through ``mapInArrow`` — a state per
partition, merged by a tree in partition order on the driver, then (by
default) a second pass with the merged fit's β — and reports what
``gramfit fit`` reports on the same rows. ``gramfit.spark.ols_files(spark,
paths, formula)`` fits Parquet files that every executor can read: runs of
row groups are the tasks, read by gramfit's own engine on the executors
(the JVM decodes nothing).

Only DataFrame operations are used (no ``SparkContext``): the merged
state reaches the second pass's tasks in the function's closure, which
Spark Connect allows too. The executors' Python needs the gramfit
package.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional

from . import _parts
from ._gramfit import GramfitError

_SCHEMA = "partition int, part binary"


def _per_partition(work: Any) -> Any:
    """A ``mapInArrow`` function running ``work(table, label)`` on the
    partition's rows (none for an empty partition) and yielding one row:
    the partition's index and the bytes."""

    def run(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa
        from pyspark import TaskContext

        batches = [b for b in batches if b.num_rows > 0]
        if not batches:
            return
        index = TaskContext.get().partitionId()
        out = work(pa.Table.from_batches(batches), f"<spark partition {index}>")
        yield pa.RecordBatch.from_pydict(
            {"partition": [index], "part": [out]}, schema=pa.schema([("partition", pa.int32()), ("part", pa.binary())])
        )

    return run


def _in_order(df: Any) -> list:
    """The (partition index, bytes) rows, in partition order; a gramfit
    error in a task raised here as a GramfitError with the engine's
    message (Spark wraps it in its traceback)."""
    rows = _collect(df)
    return sorted(((r["partition"], r["part"]) for r in rows), key=lambda r: r[0])


def _collect(df: Any) -> list:
    """``df.collect()``, a gramfit error in a task raised as a
    GramfitError with the engine's message."""
    from pyspark.errors import PythonException

    try:
        return df.collect()
    except PythonException as e:
        text = str(e)
        at = text.rfind(_RAISED)
        if at < 0:
            raise
        message = text[at + len(_RAISED) :].split("\n\n")[0].rstrip()
        raise GramfitError(message) from e


_RAISED = "gramfit.GramfitError: "


def ols(
    df: Any,
    formula: str,
    *,
    weights: Optional[str] = None,
    cov_type: str = "nonrobust",
    cluster: Optional[str] = None,
    singular: str = "drop",
    missing: str = "drop",
    alpha: float = 0.05,
    threads: int = 1,
    second_pass: bool = True,
    split_every: int = 8,
    save: Any = None,
    by: Optional[str] = None,
    persist: Optional[bool] = None,
) -> Any:
    """Fit ``formula`` to the Spark DataFrame ``df`` (options as
    :func:`gramfit.ols`). Each partition is a task with ``threads`` engine
    threads; the states merge ``split_every`` at a time in partition
    order. A factor of more than 300 levels is estimated by
    blocks, as ``gramfit fit`` does (its levels counted first: one job over
    that column).

    With ``by`` (a column), one model per level of it, as ``gramfit fit
    --by``: ``groupBy(by).applyInArrow`` hands each group's rows to one
    task, which fits them whole (both passes); the result is a dict of
    results keyed by level (as text), in sorted order; rows without a
    level are in no group. A shuffle delivers a group's rows in no
    particular order: Durbin–Watson is that of the order Spark delivers.
    With ``save``, each group's state is saved as ``gramfit fit --by
    --save`` saves it (a directory, or a pattern with ``{group}``).

    ``persist``: whether an uncached DataFrame is persisted for the two
    passes (default: yes, when the second pass runs); ``False`` computes it
    again for the second pass (less memory, and faster when the plan is a
    scan of files), and raises if a partition's rows changed."""
    argv, report, second_pass = _parts.plan(
        formula, second_pass, weights=weights, cov_type=cov_type, cluster=cluster, singular=singular,
        missing=missing, alpha=alpha, threads=threads,
    )

    from pyspark.sql.pandas.types import to_arrow_schema

    if by is not None and by not in df.columns:
        raise GramfitError(f"by: no column named '{by}' in the DataFrame")
    empty = to_arrow_schema(df.schema).empty_table()
    df = df.select(*_parts.columns(argv, empty, "<spark DataFrame>", [by] if by else []))
    if by is not None:
        _parts.check_group_save(argv, save)
        return _grouped(df, by, argv, report, second_pass, save)
    # Both passes must see the same rows in the same partitions: an
    # uncached DataFrame is computed again by the second (a shuffle's
    # partitioning may differ), so by default it is kept for the length of
    # the fit, as MLlib keeps its input. persist=False trusts the plan to
    # give the same partitions again (a file scan does); the partitions'
    # row counts are compared, and a change is an error.
    cached = df.storageLevel.useMemory or df.storageLevel.useDisk
    keep = second_pass and not cached and persist is not False
    if keep:
        df = df.persist()
    try:
        return _fit(df, argv, report, second_pass, split_every, save)
    finally:
        if keep:
            df.unpersist()


def _fit(df: Any, argv: list, report: dict, second_pass: bool, split_every: int, save: Any) -> Any:
    from pyspark.sql.pandas.types import to_arrow_schema

    columns = _parts.candidates(argv, to_arrow_schema(df.schema).empty_table(), "<spark DataFrame>")
    blocks = _blocks_of(df, columns)

    def first(table: Any, label: str) -> bytes:
        _, state = _parts.first_pass_bytes(table, argv, label, blocks)
        return state

    firsts = _in_order(df.mapInArrow(_per_partition(first), _SCHEMA))
    states = [(f"<spark partition {i}>", b) for i, b in firsts]
    _, state = _parts.tree(states, _parts.merge_bytes, split_every)
    parts = None
    if second_pass:

        def residuals(table: Any, label: str) -> bytes:
            return _parts.residual_part_bytes(table, state, argv, label)

        seconds = _in_order(df.mapInArrow(_per_partition(residuals), _SCHEMA))
        _same_partitions(firsts, seconds)
        parts = [b for _, b in seconds]
    return _parts.results(state, parts, report, save)


def _same_partitions(firsts: list, seconds: list) -> None:
    """Refuse a second pass whose partitions did not hold the first's rows
    (a DataFrame computed again with another partitioning)."""
    from ._gramfit import State, residual_part_rows

    a = [(i, State.from_bytes(b).nobs) for i, b in firsts]
    b = [(i, residual_part_rows(p)) for i, p in seconds]
    if a != b:
        raise GramfitError(
            "the DataFrame's partitions changed between the two passes (rows per partition "
            f"{a[:4]}… then {b[:4]}…); persist it (df.persist(), or persist=True)"
        )


def ols_files(
    spark: Any,
    paths: Any,
    formula: str,
    *,
    weights: Optional[str] = None,
    cov_type: str = "nonrobust",
    cluster: Optional[str] = None,
    singular: str = "drop",
    missing: str = "drop",
    alpha: float = 0.05,
    threads: int = 1,
    second_pass: bool = True,
    tasks: Optional[int] = None,
    split_every: int = 8,
    save: Any = None,
) -> Any:
    """Fit ``formula`` to Parquet files (a path, glob, directory or list of
    them, on storage every executor reads at the same path) as ``gramfit
    fit`` fits them: ``tasks`` runs of consecutive row groups (default: 4
    per core of the session, ``spark.default.parallelism``, or 8), each read
    by gramfit's engine in a Spark task; states merged in file and row
    group order; the second pass likewise."""
    argv, report, second_pass = _parts.plan(
        formula, second_pass, weights=weights, cov_type=cov_type, cluster=cluster, singular=singular,
        missing=missing, alpha=alpha, threads=threads,
    )
    work = _parts.file_tasks(paths, tasks or 4 * _cores(spark))
    ids = spark.range(0, len(work), 1, numPartitions=len(work))

    def each_task(run: Any) -> Any:
        def tasks_of(batches: Iterator[Any]) -> Iterator[Any]:
            import pyarrow as pa

            for b in batches:
                for i in b.column(0).to_pylist():
                    yield pa.RecordBatch.from_pydict(
                        {"partition": [i], "part": [run(work[i])]},
                        schema=pa.schema([("partition", pa.int32()), ("part", pa.binary())]),
                    )

        return tasks_of

    columns = _parts.file_candidates(argv, work[0][0])
    files = list(dict.fromkeys(t[0] for t in work))
    blocks = _blocks_of(spark.read.parquet(*files), columns) if columns else None
    first = each_task(lambda t: _parts.first_pass_file(t, argv, blocks))
    states = [(_parts.task_label(work[i]), b) for i, b in _in_order(ids.mapInArrow(first, _SCHEMA))]
    _, state = _parts.tree(states, _parts.merge_bytes, split_every)
    parts = None
    if second_pass:
        run = each_task(lambda t: _parts.residual_part_file(t, state, argv))
        parts = [b for _, b in _in_order(ids.mapInArrow(run, _SCHEMA))]
    return _parts.results(state, parts, report, save)


def _blocks_of(df: Any, columns: list) -> Optional[str]:
    """The factor to estimate by blocks, from the candidates' counts of
    distinct values (one Spark job; see :func:`gramfit._parts.blocks_for`)."""
    if not columns:
        return None
    from pyspark.sql import functions as F

    row = df.agg(*[F.countDistinct(c).alias(c) for c in columns]).first()
    return _parts.blocks_for({c: int(row[c]) for c in columns})


def _cores(spark: Any) -> int:
    """The session's parallelism, where the API says it (not under Spark
    Connect)."""
    try:
        return int(spark.sparkContext.defaultParallelism)
    except Exception:
        return 2


def _grouped(df: Any, by: str, argv: list, report: dict, second_pass: bool, save: Any) -> dict:
    def fit_group(key: Any, table: Any) -> Any:
        import pyarrow as pa

        level = key[0].as_py()
        out: dict = {"level": [], "state": [], "part": []}
        if level is not None:
            state, part = _parts.group_fit_bytes(table, argv, f"<spark group {by} = {level}>", second_pass, by)
            out["level"].append(str(level))
            out["state"].append(state)
            out["part"].append(part)
        schema = pa.schema([("level", pa.string()), ("state", pa.binary()), ("part", pa.binary())])
        return pa.table(out, schema=schema)

    rows = _collect(df.groupBy(by).applyInArrow(fit_group, "level string, state binary, part binary"))
    return _parts.group_results([(r["level"], r["state"], r["part"]) for r in rows], report, save)
