"""``gramfit.Accumulator``: a fit kept current batch by batch, in the shape
of DataFusion's accumulators (update / merge / state / evaluate)."""
from __future__ import annotations

import os
from typing import Any, Optional

from . import _options
from ._data import arrow_table
from ._gramfit import State, first_pass


class Accumulator:
    """The sufficient statistics of ``formula`` over the data folded in.

    ``update(batch)`` folds in a table (anything ``gramfit.ols`` takes as
    in-memory data); ``merge(other)`` adds another accumulator's rows (of
    the same model); ``to_bytes()`` / ``Accumulator.from_bytes(b)`` carry
    the statistics — the bytes are a state file's, so ``gramfit update``,
    ``summary`` and ``merge`` take them, and ``gramfit.load`` and
    ``from_bytes`` take what the command line saved; ``fit()`` solves and
    reports. The order of updates and merges changes the last bits only
    (the statistics are double-double sums). The residual diagnostics and
    robust errors need a second pass over the rows, which an accumulator
    does not keep: ``fit()`` reports nonrobust errors and says so.

    ``blocks`` names the column of a factor (``C(column)`` in the formula)
    to estimate by blocks — its per-level sums, not dense dummies — as
    ``gramfit fit`` does past 300 levels: an accumulator sees each batch
    once and cannot count the levels ahead, so it is said here (without
    it, a factor is summed as dummies, refused past 2,000 levels).
    """

    def __init__(
        self,
        formula: str,
        *,
        weights: Optional[str] = None,
        missing: str = "drop",
        threads: Optional[int] = None,
        blocks: Optional[str] = None,
    ) -> None:
        self._argv = _options.fit_argv(formula, [], weights=weights, missing=missing, threads=threads)
        self._blocks = blocks
        self._state: Optional[State] = None

    @classmethod
    def from_bytes(cls, data: bytes) -> "Accumulator":
        """An accumulator holding the statistics of a state file's bytes."""
        state = State.from_bytes(bytes(data))
        return cls._of(state)

    @classmethod
    def load(cls, path: "os.PathLike[str] | str") -> "Accumulator":
        """An accumulator holding a state file's statistics."""
        with open(path, "rb") as f:
            return cls.from_bytes(f.read())

    @classmethod
    def _of(cls, state: State) -> "Accumulator":
        formula, weights, missing = state.model()
        acc = cls(formula, weights=weights, missing=missing, blocks=state.blocks)
        acc._state = state
        return acc

    def update(self, batch: Any) -> "Accumulator":
        """Fold ``batch``'s rows in; returns ``self``."""
        part = first_pass(self._argv, [arrow_table(batch)], None, self._blocks)
        self._state = part if self._state is None else State.merge([self._state, part])
        return self

    def merge(self, other: "Accumulator") -> "Accumulator":
        """Fold ``other``'s rows in (a model of the same formula, weights
        and missing-value policy); returns ``self``."""
        if other._state is None:
            return self
        self._state = other._state if self._state is None else State.merge([self._state, other._state])
        return self

    @property
    def nobs(self) -> int:
        """Rows in the statistics."""
        return 0 if self._state is None else self._state.nobs

    @property
    def state(self) -> State:
        if self._state is None:
            raise ValueError("the accumulator holds no rows yet: update it first")
        return self._state

    def to_bytes(self) -> bytes:
        """A state file's bytes."""
        return self.state.to_bytes()

    def save(self, path: "os.PathLike[str] | str") -> None:
        """Write the state file (atomically)."""
        self.state.save(os.fspath(path))

    def fit(self, *, singular: str = "drop", alpha: float = 0.05) -> "Any":
        """The results of the rows so far (a ``RegressionResults``)."""
        from . import RegressionResults

        return RegressionResults(self.state.report(_options.summary_argv(singular=singular, alpha=alpha)))

    def predict(self, data: Any, **options: Any) -> Any:
        """:func:`gramfit.predict` with this accumulator's fit."""
        from ._predict import predict

        return predict(self.state, data, **options)

    def __repr__(self) -> str:
        return f"<gramfit.Accumulator {self._argv[self._argv.index('--formula') + 1]!r}, nobs={self.nobs}>"
