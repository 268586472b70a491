import os
from typing import Any, Optional, Sequence, Union

from ._gramfit import GramfitError as GramfitError, Report as Report, State as State
from ._accumulator import Accumulator as Accumulator

PathLike = Union[str, os.PathLike[str]]

def ols(
    formula: str,
    data: Union[PathLike, Sequence[PathLike], Any],
    *,
    weights: Optional[str] = ...,
    cov_type: str = ...,
    cluster: Optional[str] = ...,
    singular: str = ...,
    missing: str = ...,
    alpha: float = ...,
    threads: Optional[int] = ...,
    save: Optional[PathLike] = ...,
    second_pass: bool = ...,
) -> RegressionResults: ...
def load(path: PathLike, *, singular: str = ..., alpha: float = ...) -> RegressionResults: ...
def predict(
    state: Any,
    data: Any,
    *,
    interval: str = ...,
    alpha: float = ...,
    keep: Optional[Sequence[str]] = ...,
    unseen_level: str = ...,
    missing: str = ...,
    singular: str = ...,
    threads: Optional[int] = ...,
) -> Any: ...
def wls(formula: str, data: Union[PathLike, Sequence[PathLike], Any], *, weights: str, **kwargs: Any) -> RegressionResults: ...

class Summary:
    def as_text(self) -> str: ...

class RegressionResults:
    params: Any
    bse: Any
    tvalues: Any
    pvalues: Any
    nobs: float
    def summary(self) -> Summary: ...
    def to_dict(self) -> dict: ...
    def render(self, format: str = ...) -> str: ...
    def conf_int(self) -> Any: ...
    def cov_params(self) -> Any: ...
    def __getattr__(self, name: str) -> Any: ...
