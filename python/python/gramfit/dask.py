"""gramfit on Dask: ``gramfit.dask.ols(ddf, formula)`` fits a Dask
DataFrame partition by partition — a state per partition, merged by a
tree in partition order, then (by default) a second pass with the merged
fit's β for the residual diagnostics and robust errors — and reports what
``gramfit fit`` reports on the same rows.
"""
from __future__ import annotations

from typing import Any, Optional

from . import _parts


def ols(
    ddf: Any,
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
    """Fit ``formula`` to the Dask DataFrame ``ddf`` (options as
    :func:`gramfit.ols`). Each partition is a task (``threads`` engine
    threads each: the cluster's workers are the parallelism); the states
    merge ``split_every`` at a time in partition order. Runs on the
    current scheduler (a ``distributed.Client`` if one is active)."""
    import dask

    argv, report = _parts.plan(
        formula, second_pass, weights=weights, cov_type=cov_type, cluster=cluster, singular=singular,
        missing=missing, alpha=alpha, threads=threads,
    )
    partitions = ddf.to_delayed()
    first = dask.delayed(_parts.first_pass_bytes, pure=True)
    states = [first(p, argv, f"<dask partition {i}>") for i, p in enumerate(partitions)]
    merge = dask.delayed(_parts.merge_bytes, pure=True)
    ((_, state),) = dask.compute(_parts.tree(states, merge, split_every))
    parts = None
    if second_pass:
        shared = dask.delayed(state, pure=True)
        part = dask.delayed(_parts.residual_part_bytes, pure=True)
        parts = dask.compute(*[part(p, shared, argv, f"<dask partition {i}>") for i, p in enumerate(partitions)])
    return _parts.results(state, parts, report, save)
