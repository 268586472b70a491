"""gramfit on Spark: ``gramfit.spark.ols(df, formula)`` fits a PySpark
DataFrame partition by partition through ``mapInArrow`` — a state per
partition, merged by a tree in partition order on the driver, then (by
default) a second pass with the merged fit's β — and reports what
``gramfit fit`` reports on the same rows.

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
    from pyspark.errors import PythonException

    try:
        rows = df.collect()
    except PythonException as e:
        text = str(e)
        at = text.rfind(_RAISED)
        if at < 0:
            raise
        message = text[at + len(_RAISED) :].split("\n\n")[0].rstrip()
        raise GramfitError(message) from e
    return sorted(((r["partition"], r["part"]) for r in rows), key=lambda r: r[0])


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
) -> Any:
    """Fit ``formula`` to the Spark DataFrame ``df`` (options as
    :func:`gramfit.ols`). Each partition is a task with ``threads`` engine
    threads; the states merge ``split_every`` at a time in partition
    order."""
    argv, report = _parts.plan(
        formula, second_pass, weights=weights, cov_type=cov_type, cluster=cluster, singular=singular,
        missing=missing, alpha=alpha, threads=threads,
    )

    # Both passes must see the same rows in the same partitions: an
    # uncached DataFrame is computed again by the second (a shuffle's
    # partitioning may differ), so it is kept for the length of the fit,
    # as MLlib keeps its input.
    persisted = not df.storageLevel.useMemory and not df.storageLevel.useDisk
    if persisted and second_pass:
        df = df.persist()
    try:
        return _fit(df, argv, report, second_pass, split_every, save)
    finally:
        if persisted and second_pass:
            df.unpersist()


def _fit(df: Any, argv: list, report: dict, second_pass: bool, split_every: int, save: Any) -> Any:
    def first(table: Any, label: str) -> bytes:
        _, state = _parts.first_pass_bytes(table, argv, label)
        return state

    states = [(f"<spark partition {i}>", b) for i, b in _in_order(df.mapInArrow(_per_partition(first), _SCHEMA))]
    _, state = _parts.tree(states, _parts.merge_bytes, split_every)
    parts = None
    if second_pass:

        def residuals(table: Any, label: str) -> bytes:
            return _parts.residual_part_bytes(table, state, argv, label)

        parts = [b for _, b in _in_order(df.mapInArrow(_per_partition(residuals), _SCHEMA))]
    return _parts.results(state, parts, report, save)
