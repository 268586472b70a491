"""gramfit on Dask: ``gramfit.dask.ols(ddf, formula)`` fits a Dask
DataFrame partition by partition — a state per partition, merged by a
tree in partition order, then (by default) a second pass with the merged
fit's β for the residual diagnostics and robust errors — and reports what
``gramfit fit`` reports on the same rows. ``gramfit.dask.ols_files(paths,
formula)`` fits Parquet files with runs of row groups as the tasks, read by
gramfit's own engine on the workers.
"""
from __future__ import annotations

from typing import Any, Optional

from . import _parts
from ._gramfit import GramfitError


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
    by: Optional[str] = None,
) -> Any:
    """Fit ``formula`` to the Dask DataFrame ``ddf`` (options as
    :func:`gramfit.ols`). Each partition is a task (``threads`` engine
    threads each: the cluster's workers are the parallelism); the states
    merge ``split_every`` at a time in partition order. Runs on the
    current scheduler (a ``distributed.Client`` if one is active). A factor of more than 300 levels is estimated by
    blocks, as ``gramfit fit`` does (its levels counted first: one job over
    that column).

    With ``by`` (a column), one model per level of it, as ``gramfit fit
    --by``: ``groupby(by).apply`` hands each group's rows to one task,
    which fits them whole (both passes); the result is a dict of results
    keyed by level (as text), in sorted order. Durbin–Watson is of the
    order in which the shuffle delivers a group's rows. With ``save``,
    each group's state is saved as ``gramfit fit --by --save`` saves it
    (a directory, or a pattern with ``{group}``)."""
    import dask

    argv, report, second_pass = _parts.plan(
        formula, second_pass, weights=weights, cov_type=cov_type, cluster=cluster, singular=singular,
        missing=missing, alpha=alpha, threads=threads,
    )
    if by is not None and by not in ddf.columns:
        raise GramfitError(f"by: no column named '{by}' in the DataFrame")
    ddf = ddf[_parts.columns(argv, ddf._meta, "<dask DataFrame>", [by] if by else [])]
    if by is not None:
        _parts.check_group_save(argv, save)
        return _grouped(ddf, by, argv, report, second_pass, save)
    blocks = _blocks_of(ddf, _parts.candidates(argv, ddf._meta, "<dask DataFrame>"))
    partitions = ddf.to_delayed()
    first = dask.delayed(_parts.first_pass_bytes, pure=True)
    states = [first(p, argv, f"<dask partition {i}>", blocks) for i, p in enumerate(partitions)]
    merge = dask.delayed(_parts.merge_bytes, pure=True)
    ((_, state),) = dask.compute(_parts.tree(states, merge, split_every))
    parts = None
    if second_pass:
        shared = dask.delayed(state, pure=True)
        part = dask.delayed(_parts.residual_part_bytes, pure=True)
        parts = dask.compute(*[part(p, shared, argv, f"<dask partition {i}>") for i, p in enumerate(partitions)])
    return _parts.results(state, parts, report, save)


def ols_files(
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
    tasks: int = 8,
    split_every: int = 8,
    save: Any = None,
) -> Any:
    """Fit ``formula`` to Parquet files (a path, glob, directory or list of
    them, at the same path on every worker) as ``gramfit fit`` fits them:
    about ``tasks`` runs of consecutive row groups, each read by gramfit's
    engine in a Dask task, merged in file and row group order."""
    import dask

    argv, report, second_pass = _parts.plan(
        formula, second_pass, weights=weights, cov_type=cov_type, cluster=cluster, singular=singular,
        missing=missing, alpha=alpha, threads=threads,
    )
    work = _parts.file_tasks(paths, tasks)
    columns = _parts.file_candidates(argv, work[0][0])
    blocks = None
    if columns:
        import dask.dataframe as dd

        files = list(dict.fromkeys(t[0] for t in work))
        blocks = _blocks_of(dd.read_parquet(files, columns=columns), columns)
    first = dask.delayed(_parts.first_pass_file_labelled, pure=True)
    states = [first(t, argv, blocks) for t in work]
    merge = dask.delayed(_parts.merge_bytes, pure=True)
    ((_, state),) = dask.compute(_parts.tree(states, merge, split_every))
    parts = None
    if second_pass:
        shared = dask.delayed(state, pure=True)
        part = dask.delayed(_parts.residual_part_file, pure=True)
        parts = dask.compute(*[part(t, shared, argv) for t in work])
    return _parts.results(state, parts, report, save)


def _blocks_of(ddf: Any, columns: list) -> Optional[str]:
    """The factor to estimate by blocks, from the candidates' counts of
    levels (one Dask computation; see :func:`gramfit._parts.blocks_for`)."""
    import dask

    if not columns:
        return None
    counts = dask.compute(*[ddf[c].nunique() for c in columns])
    return _parts.blocks_for(dict(zip(columns, (int(n) for n in counts))))


def _grouped(ddf: Any, by: str, argv: list, report: dict, second_pass: bool, save: Any) -> dict:
    import pandas as pd

    def fit_group(group: Any) -> Any:
        # pandas hands the group without its key column (the key is the
        # group's name): put it back, the state records its group.
        level = group.name
        label = f"<dask group {by} = {level}>"
        table = group.assign(**{by: level}) if by not in group.columns else group
        state, part = _parts.group_fit_bytes(table, argv, label, second_pass, by)
        return pd.Series({"state": state, "part": part})

    fits = ddf.groupby(by, dropna=True).apply(fit_group, meta={"state": object, "part": object}).compute()
    rows = [(str(k), r["state"], r["part"]) for k, r in fits.iterrows()]
    return _parts.group_results(rows, report, save)
