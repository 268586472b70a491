"""The pieces a distributed fit is made of, as functions of bytes (what
crosses between a driver and its workers): a partition's first pass as a
state's bytes, states merged in a fixed order by a tree, a partition's
second-pass sums, and the merged state with those sums as results.

A fit in parts reports what ``gramfit fit`` reports on the partitions'
rows in partition order: the statistics merge exactly (up to the last
bits of double-double sums, fixed by the merge order) and the second
pass's sums, Durbin–Watson's included, add up in row order.
"""
from __future__ import annotations

import os

from typing import Any, Callable, List, Optional, Sequence, Tuple

from . import _options
from ._data import arrow_table
from ._gramfit import (
    State,
    absorbs,
    block_candidates,
    dense_levels,
    finish,
    first_pass,
    group_first_pass,
    group_path,
    model_columns,
    parquet_row_groups,
    residual_part,
)


Part = Tuple[str, Optional[bytes]]


def plan(formula: str, second_pass: bool, **options: Any) -> Tuple[List[str], dict, bool]:
    """A distributed fit's ``gramfit fit`` command line (the options of
    :func:`gramfit.ols`, checked), its report's options, and whether it
    has a second pass."""
    if options["cov_type"] != "nonrobust" and not second_pass:
        raise ValueError(f"cov_type={options['cov_type']!r} needs the second pass")
    argv = _options.fit_argv(formula, [], **options)
    report = {k: options[k] for k in ("cov_type", "cluster", "singular", "alpha")}
    # An absorbed model reports no residual diagnostics: its iid errors need
    # no second pass (its robust and clustered ones do).
    if absorbs(formula) and options["cov_type"] == "nonrobust":
        second_pass = False
    return argv, report, second_pass


def columns(argv: List[str], empty: Any, label: str, keep: Sequence[str] = ()) -> List[str]:
    """The columns the fit reads, from a table with the data's schema and
    no rows (the formula checked against it here, on the driver), and
    ``keep``: a distributed fit selects them before anything is computed,
    so that its engine decodes and hands over only those."""
    table, _ = arrow_table(empty)
    out = model_columns(argv, [(table, label)])
    return out + [c for c in keep if c not in out]


def candidates(argv: List[str], empty: Any, label: str) -> List[str]:
    """The columns of the model's factors that a fit in parts may estimate
    by blocks (from a table with the data's schema and no rows)."""
    table, _ = arrow_table(empty)
    return block_candidates(argv, [(table, label)])


def file_candidates(argv: List[str], path: str) -> List[str]:
    """:func:`candidates` of a fit of Parquet files (from one file's
    schema)."""
    return block_candidates(_with_input(argv, path), [])


def blocks_for(levels: dict) -> Optional[str]:
    """The factor a distributed fit estimates by blocks, from each
    candidate's count of levels in the data: the one with the most, when
    it has more than :func:`dense_levels` (300), as ``gramfit fit`` does
    past that count; None: every factor as dense dummies. Decided once,
    on the driver, so that every part is read the same way."""
    limit = dense_levels()
    over = [(n, c) for c, n in levels.items() if n > limit]
    return max(over)[1] if over else None


def first_pass_bytes(data: Any, argv: List[str], label: str, blocks: Optional[str] = None) -> Part:
    """The first pass over one partition: its label and its state's bytes
    (None for a partition without rows: its columns may not even have
    their types); ``blocks``: the factor estimated by blocks."""
    table, _ = arrow_table(data)
    if _rows(table) == 0:
        return label, None
    return label, first_pass(argv, [(table, label)], None, blocks).to_bytes()


def _rows(table: Any) -> int:
    n = getattr(table, "num_rows", None)
    return len(table) if n is None else n


def merge_bytes(parts: Sequence[Part]) -> Part:
    """Labelled states merged in the order given (empty partitions'
    skipped); the label of the result spans the first and last."""
    present = [(label, b) for label, b in parts if b is not None]
    label = parts[0][0] if len(parts) == 1 else f"{parts[0][0]} to {parts[-1][0]}"
    if not present:
        return label, None
    merged = State.merge([State.from_bytes(b) for _, b in present], [name for name, _ in present])
    return label, merged.to_bytes()


def tree(items: List[Any], merge: Callable[[List[Any]], Any], split_every: int = 8) -> Any:
    """``items`` reduced by ``merge`` over consecutive runs of
    ``split_every``, level by level: the order is fixed by the items'
    order, so the same partitioning gives the same bits."""
    if not items:
        raise ValueError("no partitions to merge")
    if split_every < 2:
        raise ValueError("split_every must be at least 2")
    while len(items) > 1:
        items = [merge(items[i : i + split_every]) for i in range(0, len(items), split_every)]
    return items[0]


def residual_part_bytes(data: Any, state: bytes, argv: List[str], label: str) -> Optional[bytes]:
    """The second pass's sums over one partition with the merged fit's β
    (None for a partition without rows)."""
    table, _ = arrow_table(data)
    if _rows(table) == 0:
        return None
    return residual_part(State.from_bytes(state), argv, [(table, label)])


def results(state: Optional[bytes], parts: Optional[Sequence[Optional[bytes]]], options: dict, save: Any = None) -> Any:
    """The merged state's results, with the parts' second-pass sums
    (partition order) when there are any; saved to ``save`` if given."""
    from . import RegressionResults
    from ._gramfit import GramfitError

    if state is None:
        raise GramfitError("the data have no rows")
    argv = _options.summary_argv(**options)
    st = State.from_bytes(state)
    if parts is None:
        report = st.report(argv)
    else:
        st, report = finish(st, [p for p in parts if p is not None], argv)
    if save is not None:
        st.save(os.fspath(save))
    return RegressionResults(report)


# A task of a fit of Parquet files: a file and a run of its row groups.
FileTask = Tuple[str, int, int]


def file_tasks(paths: Any, tasks: int) -> List[FileTask]:
    """The row groups of the files ``paths`` (a path, glob or directory, or
    a list of them; made absolute, as the workers open them) in runs of
    consecutive ones (never across files), about ``tasks`` runs of similar
    row counts, in file order."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else paths
    files = parquet_row_groups([os.path.abspath(os.fspath(p)) for p in paths])
    total = sum(sum(rows) for _, rows in files)
    if total == 0:
        raise ValueError("the files have no rows")
    target = max(1, -(-total // max(1, tasks)))
    out: List[FileTask] = []
    for path, rows in files:
        start, acc = 0, 0
        for i, n in enumerate(rows):
            acc += n
            if acc >= target or i == len(rows) - 1:
                out.append((path, start, i + 1))
                start, acc = i + 1, 0
    return out


def task_label(task: FileTask) -> str:
    path, start, end = task
    return f"{path} (row groups {start}..{end})"


def first_pass_file(task: FileTask, argv: List[str], blocks: Optional[str] = None) -> bytes:
    """The first pass over a task's row groups, read by gramfit's engine."""
    path, start, end = task
    return first_pass(_with_input(argv, path), [], (start, end), blocks).to_bytes()


def first_pass_file_labelled(task: FileTask, argv: List[str], blocks: Optional[str] = None) -> Part:
    """:func:`first_pass_file` with the task's label, for the merge."""
    return task_label(task), first_pass_file(task, argv, blocks)


def residual_part_file(task: FileTask, state: bytes, argv: List[str]) -> bytes:
    """The second pass's sums over a task's row groups."""
    path, start, end = task
    return residual_part(State.from_bytes(state), _with_input(argv, path), [], (start, end))


def _with_input(argv: List[str], path: str) -> List[str]:
    return [*argv[:2], path, *argv[2:]]


def group_fit_bytes(
    data: Any, argv: List[str], label: str, second_pass: bool, by: str
) -> Tuple[bytes, Optional[bytes]]:
    """One group's fit in one task (all its rows are here): the first pass
    as a state's bytes — a state that records its group, as ``gramfit fit
    --by`` saves it, except for absorbed fixed effects, whose states record
    no group — and the second pass's sums over the same rows (None
    without a second pass)."""
    table, _ = arrow_table(data)
    if absorbs(_options.formula_of(argv)):
        state = first_pass(argv, [(table, label)])
    else:
        state = group_first_pass(argv, [(table, label)], by)
    part = residual_part(state, argv, [(table, label)]) if second_pass else None
    return state.to_bytes(), part


def check_group_save(argv: List[str], save: Any) -> None:
    """Refuse, before any work, to save the states of a grouped fit of
    absorbed fixed effects (they would not record their group)."""
    if save is not None and absorbs(_options.formula_of(argv)):
        from ._gramfit import GramfitError

        raise GramfitError(
            "save= with by= keeps a state per group, which for absorbed fixed effects would not record its group; "
            "fit without save=, or put the factor in the formula as C(…)"
        )


def group_results(fits: Any, options: dict, save: Any) -> dict:
    """``(level, state, part)`` of a grouped fit's groups as a dict of
    results in sorted level order; with ``save``, each group's state saved
    where ``gramfit fit --by COL --save PATTERN`` puts it (a directory, a
    pattern with ``{group}``, or a path that gets the level before its
    extension)."""
    out = {}
    for level, state, part in sorted(fits, key=lambda f: f[0]):
        path = None if save is None else group_path(os.fspath(save), level)
        out[level] = results(state, None if part is None else [part], options, path)
    return out
