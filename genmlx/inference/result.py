"""The result object every inference function returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["InferenceResult"]


@dataclass(frozen=True, eq=False)
class InferenceResult:
    """What an inference run produced.

    Attributes:
        traces: the kept traces (posterior samples / final particles), a list of `Trace`.
        log_weights: per-trace log importance weights (plain floats), where they apply.
        log_ml: log marginal likelihood estimate (a float), where it applies.
        stats: plain Python numbers and lists, never arrays: `acceptance_rate`,
            per-iteration `accepted`, `accept_prob`, `step_size`, `num_steps`,
            `diverging`, per-step `ess`, `resampled`, summaries `ess_bulk`,
            `ess_tail`, `r_hat`, ... plus `iterations`, `steps`, `syncs`, `duration_s`.
        posterior: algorithm-specific fitted quantities (VI: addr -> (mean, std)).
        state: the final algorithm state (for resuming or inspection).
    """

    traces: list
    stats: dict
    log_weights: list | None = None
    log_ml: float | None = None
    posterior: dict = field(default_factory=dict)
    state: Any = None

    def __len__(self) -> int:
        return len(self.traces)

    def values(self, addr) -> list:
        """The value at `addr` in every kept trace, as Python numbers (or nested lists)."""
        out = []
        for t in self.traces:
            v = t[addr]
            out.append(v.item() if v.size == 1 else v.tolist())
        return out
