"""The result object every inference function returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..deferred import Deferred

__all__ = ["InferenceResult", "Floats"]


class Floats(Sequence):
    """Read-only Python floats backed by one float64 array: a list's behaviour (indexing, slicing,
    iteration, `==` with a list, `np.asarray`) without making N float objects up front
    (vectorized importance sampling has 100,000 weights). Given an `mx.array`, the values are
    copied to the host on first use (on a GPU the weights stay there until read)."""

    __slots__ = ("_src", "_host")

    def __init__(self, values):
        self._src = values
        self._host = None

    @property
    def _a(self) -> np.ndarray:
        if self._host is None:
            a = np.array(self._src, dtype=np.float64).ravel()
            a.flags.writeable = False
            self._host, self._src = a, None
        return self._host

    def __len__(self) -> int:
        if self._host is None and hasattr(self._src, "size"):  # an array: its length without a copy
            return int(self._src.size)
        return self._a.size

    def __getitem__(self, i):
        return self._a[i].tolist()  # a float, or a list of floats for a slice

    def __iter__(self):
        return iter(self._a.tolist())

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)

    def tolist(self) -> list:
        return self._a.tolist()

    def __eq__(self, other):
        if isinstance(other, Floats):
            return np.array_equal(self._a, other._a)
        if isinstance(other, (list, tuple)):
            return self.tolist() == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        if self._a.size <= 8:
            return repr(self.tolist())
        head = ", ".join(repr(x) for x in self._a[:3].tolist())
        return f"Floats([{head}, ...], n={self._a.size})"


@dataclass(frozen=True, eq=False)
class InferenceResult:
    """What an inference run produced.

    Attributes:
        traces: the kept traces (posterior samples / final particles), a list of `Trace`.
        log_weights: per-trace log importance weights (plain floats, a `Floats` sequence), where they apply.
        log_ml: log marginal likelihood estimate (a float), where it applies.
        stats: plain Python numbers and lists, never arrays: `acceptance_rate`,
            per-iteration `accepted`, `accept_prob`, `step_size`, `num_steps`,
            `diverging`, per-step `ess`, `resampled`, summaries `ess_bulk`,
            `ess_tail`, `r_hat`, ... plus `iterations`, `steps`, `syncs`, `duration_s`.
        posterior: algorithm-specific fitted quantities (VI: addr -> (mean, std)).
        state: the final algorithm state (for resuming or inspection); given as a
            `Deferred`, it is made on first access.
    """

    traces: list
    stats: dict
    log_weights: Sequence | None = None
    log_ml: float | None = None
    posterior: dict = field(default_factory=dict)
    state: Any = None

    def __getattribute__(self, name):
        v = object.__getattribute__(self, name)
        if name == "state" and type(v) is Deferred:
            v = v.get()
            object.__setattr__(self, "state", v)
        return v

    def __len__(self) -> int:
        return len(self.traces)

    def values(self, addr) -> list:
        """The value at `addr` in every kept trace, as Python numbers (or nested lists)."""
        batched = getattr(self.traces, "values", None)  # views over batched or stacked storage
        if batched is not None:
            v = batched(addr)
            return v.tolist() if hasattr(v, "tolist") else list(v)
        out = []
        for t in self.traces:
            v = t[addr]
            out.append(v.item() if v.size == 1 else v.tolist())
        return out
