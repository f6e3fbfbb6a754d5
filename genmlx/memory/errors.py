"""Errors of the memory layer."""

from __future__ import annotations

__all__ = ["ResourceLimitExceeded"]


class ResourceLimitExceeded(RuntimeError):
    """Live arrays + pending graph nodes went over the active resource budget.

    Raised by `check_budget` (which the inference loop driver calls every
    step) after `mx.clear_cache()`, a garbage collection and an exact recount
    confirmed the overrun.

    Attributes:
        live: live `mx.array` Python objects (wrappers) counted.
        pending: unevaluated primitive graph nodes reachable from live arrays.
        limit: the budget that was exceeded.
        where: what was running (e.g. ``"mh step 4211"``), or ``""``.
        grew: (live, pending) growth since the budget's first measurement, or
            None; the message names the cause by what grew when it is known
            (what a process already held says nothing about the leak).
    """

    def __init__(self, live: int, pending: int, limit: int, where: str = "", grew: tuple | None = None):
        self.live = live
        self.pending = pending
        self.limit = limit
        self.where = where
        self.grew = grew
        super().__init__(self._message())

    def __reduce__(self):
        return (type(self), (self.live, self.pending, self.limit, self.where, self.grew))

    def _message(self) -> str:
        at = f" at {self.where}" if self.where else ""
        used = self.live + self.pending
        by_growth = bool(self.grew) and max(self.grew) > 0
        live, pending = self.grew if by_growth else (self.live, self.pending)
        most = "Most of what grew since the budget's first check is" if by_growth else "Most of it is"
        if pending >= live:
            cause = (
                f"{most} pending graph nodes: a lazily accumulated array "
                "(e.g. `score = score + x` or `score += x` in a loop) keeps its "
                "whole history alive. Evaluate lazy accumulators each iteration "
                "with mx.eval(...) or gm.memory.materialize(...)."
            )
        else:
            cause = (
                f"{most} live array objects: something keeps arrays in a "
                "growing container (a list of per-iteration arrays, a memo cache, "
                "closures or exception tracebacks). Don't keep per-iteration "
                "arrays; keep Python numbers (`x.item()`) or evaluated summaries."
            )
        return (
            f"genmlx resource budget exceeded{at}: {used:,} used = "
            f"{self.live:,} live arrays + {self.pending:,} pending graph nodes, "
            f"over the limit of {self.limit:,}. On Apple GPUs (Metal) a process "
            f"dies at 499,000 buffers; this budget is a proxy for that count. "
            f"{cause} If the usage is intended, raise the budget with "
            f"gm.memory.budget(limit=...) or the GENMLX_BUDGET environment variable."
        )
