"""What ``data`` may be: paths for the Rust engine to read, or in-memory
data it reads in place through the Arrow C stream interface."""
from __future__ import annotations

import os
from typing import Any, List, Tuple


def label(data: Any) -> str:
    """What gramfit's messages call an in-memory table: ``<pandas DataFrame>``."""
    t = type(data)
    return f"<{t.__module__.split('.')[0]} {t.__name__}>"


def inputs(data: Any) -> Tuple[List[str], List[Tuple[Any, str]]]:
    """``data`` as (paths, tables): a path, glob or directory, a list of
    them, or one object exporting an Arrow stream (``__arrow_c_stream__``:
    pyarrow Table/RecordBatchReader, polars and pandas DataFrames, DuckDB
    relations). A pandas DataFrame is converted by pyarrow without its
    index (as patsy reads its columns, not its index)."""
    if isinstance(data, (str, os.PathLike)):
        return [os.fspath(data)], []
    if isinstance(data, (list, tuple)) and data and all(isinstance(p, (str, os.PathLike)) for p in data):
        return [os.fspath(p) for p in data], []
    return [], [arrow_table(data)]


def arrow_table(data: Any) -> Tuple[Any, str]:
    """One in-memory table and its label, refused with a clear message when
    it exports no Arrow stream."""
    name = label(data)
    if type(data).__module__.split(".")[0] == "pandas" and type(data).__name__ == "DataFrame":
        import pyarrow as pa

        data = pa.Table.from_pandas(data, preserve_index=False)
    if not hasattr(data, "__arrow_c_stream__"):
        raise TypeError(
            "data must be a path, a glob, a directory or a list of them, or a table exporting an Arrow stream "
            "(pandas or polars DataFrame, pyarrow Table or RecordBatchReader, DuckDB relation); "
            f"got {type(data).__name__}"
        )
    return data, name
