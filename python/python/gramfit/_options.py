"""statsmodels' option names checked and turned into a ``gramfit fit``
command line (shared by ``ols``, the Accumulator and the distributed fits)."""
from __future__ import annotations

import os
from typing import List, Optional

COV_TYPES = ("nonrobust", "HC0", "HC1", "HC2", "HC3", "cluster")


def check(cov_type: str = "nonrobust", singular: str = "drop", missing: str = "drop") -> str:
    """Refuse an unknown option value; return the command line's name of
    the missing-value policy (statsmodels says "raise" where it says
    "error")."""
    for name, value, allowed in [
        ("cov_type", cov_type, COV_TYPES),
        ("singular", singular, ("drop", "pinv", "error")),
        ("missing", missing, ("drop", "raise", "error")),
    ]:
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}; not {value!r}")
    return "error" if missing == "raise" else missing


def fit_argv(
    formula: str,
    paths: List[str],
    *,
    weights: Optional[str] = None,
    cov_type: str = "nonrobust",
    cluster: Optional[str] = None,
    singular: str = "drop",
    missing: str = "drop",
    alpha: float = 0.05,
    threads: Optional[int] = None,
) -> List[str]:
    """A ``gramfit fit`` command line (quiet: no progress bar)."""
    missing = check(cov_type, singular, missing)
    argv = ["gramfit", "fit", *paths, "--formula", formula, "--quiet"]
    argv += ["--cov-type", cov_type, "--singular", singular, "--missing", missing, "--alpha", repr(float(alpha))]
    if weights is not None:
        argv += ["--weights", weights]
    if cluster is not None:
        argv += ["--cluster", cluster]
    if threads is not None:
        argv += ["--threads", str(int(threads))]
    return argv


def formula_of(argv: List[str]) -> str:
    """The formula of a :func:`fit_argv` command line."""
    return argv[argv.index("--formula") + 1]


def summary_argv(
    *, cov_type: str = "nonrobust", cluster: Optional[str] = None, singular: str = "drop", alpha: float = 0.05
) -> List[str]:
    """A ``gramfit summary`` command line (its state argument unused)."""
    check(cov_type, singular)
    argv = ["gramfit", "summary", os.devnull, "--cov-type", cov_type, "--singular", singular]
    argv += ["--alpha", repr(float(alpha))]
    if cluster is not None:
        argv += ["--cluster", cluster]
    return argv
