"""gramfit from Python: statsmodels' OLS and WLS on files of any size.

Files are read by gramfit's Rust engine (Parquet, Arrow IPC, CSV, in
parallel, never whole in memory); DataFrames and Arrow data (pandas,
polars, pyarrow tables and readers, DuckDB relations: anything with
``__arrow_c_stream__``) are read in place. The results are shaped like
statsmodels' ``RegressionResults``, and ``summary()`` prints what
``gramfit fit`` prints::

    import gramfit
    res = gramfit.ols("rent ~ size_sqft + bedrooms + C(borough)", "listings.parquet")
    print(res.summary())
    res.params["size_sqft"], res.bse, res.conf_int(), res.rsquared

An :class:`Accumulator` keeps a fit current batch by batch and merges with
others; its bytes are a state file's (``gramfit update`` takes them).
``gramfit.dask`` and ``gramfit.spark`` fit DataFrames of those engines
partition by partition.
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional, Sequence, Union

from ._gramfit import GramfitError, Report, State
from ._gramfit import fit as _fit
from ._gramfit import summary as _summary
from ._accumulator import Accumulator
from . import _options
from ._data import inputs as _inputs
from ._predict import predict

__all__ = ["ols", "wls", "load", "predict", "Accumulator", "RegressionResults", "GramfitError", "Report", "State"]

PathLike = Union[str, "os.PathLike[str]"]

# Pickled by reference (a Dask or Spark task's error travels to the
# driver): under the name users import it by.
GramfitError.__module__ = "gramfit"


def ols(
    formula: str,
    data: Any,
    *,
    weights: Optional[str] = None,
    cov_type: str = "nonrobust",
    cluster: Optional[str] = None,
    singular: str = "drop",
    missing: str = "drop",
    alpha: float = 0.05,
    threads: Optional[int] = None,
    save: Optional[PathLike] = None,
    second_pass: bool = True,
) -> "RegressionResults":
    """Fit ``formula`` (patsy syntax; fixest's ``| fe`` absorbs fixed
    effects) to ``data``, as ``gramfit fit`` does. ``data`` is a path, a
    glob, a directory or a list of them (read by the Rust engine), or a
    pandas or polars DataFrame, a pyarrow Table or RecordBatchReader, a
    DuckDB relation — anything with ``__arrow_c_stream__`` (read in place;
    a stream is read once and its batches kept for the second pass).

    ``weights`` is a column or an expression (then it is WLS);
    ``cov_type`` is nonrobust, HC0–HC3 or cluster (with ``cluster``, a
    column); ``singular`` is drop, pinv or error; ``missing`` drop or
    raise (statsmodels' names; "error" too); ``save`` writes the fit's state file (for ``gramfit update``,
    ``merge``, ``predict``). Errors raise ``GramfitError`` with the command
    line's message.
    """
    paths, tables = _inputs(data)
    argv = _options.fit_argv(
        formula,
        paths,
        weights=weights,
        cov_type=cov_type,
        cluster=cluster,
        singular=singular,
        missing=missing,
        alpha=alpha,
        threads=threads,
    )
    if save is not None:
        argv += ["--save", os.fspath(save)]
    if not second_pass:
        argv.append("--no-second-pass")
    return RegressionResults(_fit(argv, tables))


def wls(formula: str, data: Any, *, weights: str, **kwargs: Any) -> "RegressionResults":
    """Weighted least squares: :func:`ols` with ``weights`` required."""
    return ols(formula, data, weights=weights, **kwargs)


def load(path: PathLike, *, singular: str = "drop", alpha: float = 0.05) -> "RegressionResults":
    """The results of a state file (``gramfit fit --save``, ``update``,
    ``merge``, or :func:`ols` with ``save``): what ``gramfit summary``
    reports."""
    if singular not in ("drop", "pinv", "error"):
        raise ValueError(f"singular must be one of drop, pinv, error; not {singular!r}")
    argv = ["gramfit", "summary", os.fspath(path), "--singular", singular, "--alpha", repr(float(alpha))]
    return RegressionResults(_summary(argv))


def _labelled(d: Optional[dict]) -> Any:
    """A pandas Series indexed by design column when pandas is installed,
    else the dict (``None`` for an aliased coefficient, as NaN in pandas)."""
    if d is None:
        return None
    try:
        import pandas as pd
    except ImportError:
        return dict(d)
    return pd.Series({k: (float("nan") if v is None else v) for k, v in d.items()}, dtype=float)


class Summary:
    """The text report; ``print()`` shows it, ``as_text()`` returns it."""

    def __init__(self, text: str) -> None:
        self._text = text

    def as_text(self) -> str:
        return self._text

    def __str__(self) -> str:
        return self._text

    __repr__ = __str__


class RegressionResults:
    """A fit's results with statsmodels' attribute names (see the JSON
    schema in the README: every key of ``to_dict()`` is also an
    attribute)."""

    def __init__(self, report: Report) -> None:
        self._report = report
        self._d = json.loads(report.render("json"))
        if "params" not in self._d:
            raise GramfitError("a grouped fit's report is not one model's results")

    def summary(self) -> Summary:
        """What ``gramfit fit`` prints."""
        return Summary(self._report.render("text"))

    def to_dict(self) -> dict:
        """The JSON report (``gramfit fit --format json``) as a dict."""
        return json.loads(self._report.render("json"))

    def render(self, format: str = "text") -> str:
        """The report in ``format``: text, json, markdown or csv."""
        return self._report.render(format)

    @property
    def params(self) -> Any:
        return _labelled(self._d["params"])

    @property
    def bse(self) -> Any:
        return _labelled(self._d["bse"])

    @property
    def tvalues(self) -> Any:
        return _labelled(self._d["tvalues"])

    @property
    def pvalues(self) -> Any:
        return _labelled(self._d["pvalues"])

    def conf_int(self) -> Any:
        """Lower and upper bounds per coefficient, at the fit's alpha (a
        DataFrame with columns 0 and 1, as statsmodels', or a dict)."""
        ci = self._d["conf_int"]
        try:
            import pandas as pd
        except ImportError:
            return dict(ci)
        nan = float("nan")
        return pd.DataFrame.from_dict({k: (v if v is not None else [nan, nan]) for k, v in ci.items()}, orient="index")

    def cov_params(self) -> Any:
        """The coefficients' covariance (None past 300 columns unless the
        fit asked for it)."""
        cp = self._d.get("cov_params")
        if cp is None:
            return None
        try:
            import pandas as pd
        except ImportError:
            return cp
        return pd.DataFrame(cp, dtype=float).T.loc[list(cp), list(cp)]

    @property
    def nobs(self) -> float:
        return float(self._d["nobs"])

    def __getattr__(self, name: str) -> Any:
        # Every other key of the report: rsquared, fvalue, llf, aic, bic,
        # df_resid, eigenvals, condition_number, aliased, dependencies,
        # omnibus, durbin_watson, …
        d = self.__dict__.get("_d")
        if d is not None and name in d:
            return d[name]
        raise AttributeError(f"RegressionResults has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"<gramfit.RegressionResults {self._d.get('model')} {self._d.get('formula')!r}, nobs={self._d.get('nobs')}>"
