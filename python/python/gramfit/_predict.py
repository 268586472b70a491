"""``gramfit.predict``: a saved fit applied to new rows, as ``gramfit
predict`` applies it (statsmodels' ``get_prediction(...).summary_frame``
columns)."""
from __future__ import annotations

import os
import tempfile
from typing import Any, Optional, Sequence

from ._data import inputs
from ._gramfit import State
from ._gramfit import predict as _predict


def predict(
    state: Any,
    data: Any,
    *,
    interval: str = "prediction",
    alpha: float = 0.05,
    keep: Optional[Sequence[str]] = None,
    unseen_level: str = "null",
    missing: str = "null",
    singular: str = "drop",
    threads: Optional[int] = None,
) -> Any:
    """Predictions of the fit ``state`` (a state file's path, an
    :class:`Accumulator` or a ``State``) for the rows of ``data`` (what
    :func:`gramfit.ols` takes): one row per input row, in order — the
    ``keep`` columns, then ``mean`` (``interval="none"``), with
    ``mean_se``, ``mean_ci_lower``, ``mean_ci_upper``
    (``"confidence"``) and ``obs_ci_lower``, ``obs_ci_upper``
    (``"prediction"``, the default), and ``resid``, ``resid_std`` when the
    response is in ``data``. A level the fit never saw or a missing
    predictor gives a null row (``unseen_level``/``missing="error"``
    refuse instead). A pandas DataFrame when pandas is installed, else a
    pyarrow Table."""
    for name, value, allowed in [
        ("interval", interval, ("none", "confidence", "prediction")),
        ("unseen_level", unseen_level, ("null", "error")),
        ("missing", missing, ("null", "error")),
        ("singular", singular, ("drop", "pinv", "error")),
    ]:
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}; not {value!r}")
    import pyarrow.ipc

    with tempfile.TemporaryDirectory(prefix="gramfit-predict-") as tmp:
        if isinstance(state, (str, os.PathLike)):
            path = os.fspath(state)
        else:
            st = state.state if hasattr(state, "state") else state
            if not isinstance(st, State):
                raise TypeError(f"state must be a path, an Accumulator or a State; got {type(state).__name__}")
            path = os.path.join(tmp, "fit.gramfit")
            st.save(path)
        out = os.path.join(tmp, "predictions.arrow")
        paths, tables = inputs(data)
        argv = ["gramfit", "predict", path, *paths, "-o", out, "--format", "arrow", "--quiet"]
        argv += ["--interval", interval, "--alpha", repr(float(alpha)), "--unseen-level", unseen_level]
        argv += ["--missing", missing, "--singular", singular]
        if keep:
            argv += ["--keep", ",".join(keep)]
        if threads is not None:
            argv += ["--threads", str(int(threads))]
        _predict(argv, tables)
        with pyarrow.ipc.open_file(out) as f:
            table = f.read_all()
    try:
        import pandas  # noqa: F401
    except ImportError:
        return table
    return table.to_pandas()
