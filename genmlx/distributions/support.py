"""Supports of distributions: what values are legal, and whether they are discrete.

Gradient-based inference (HMC, NUTS, MALA, VI) maps each constrained support to
the real line through a bijection (`genmlx.inference.transforms`), chosen by
the support's `kind`.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Support", "real", "positive", "nonnegative", "unit_interval", "interval", "simplex",
           "boolean", "nonnegative_integer", "integer_interval", "circular", "positive_definite",
           "real_vector", "any_value"]


class Support(NamedTuple):
    kind: str  # "real", "positive", "interval", "simplex", "circular", "positive_definite", "integer", ...
    discrete: bool = False
    low: float | None = None
    high: float | None = None

    def __repr__(self) -> str:
        if self.kind in ("interval", "integer_interval"):
            return f"{self.kind}({self.low}, {self.high})"
        return self.kind


real = Support("real")
real_vector = Support("real_vector")
positive = Support("positive", low=0.0)
nonnegative = Support("nonnegative", low=0.0)
unit_interval = Support("interval", low=0.0, high=1.0)
simplex = Support("simplex")
circular = Support("circular", low=-3.141592653589793, high=3.141592653589793)
positive_definite = Support("positive_definite")
boolean = Support("boolean", discrete=True, low=0, high=1)
nonnegative_integer = Support("nonnegative_integer", discrete=True, low=0)
any_value = Support("any")


def interval(low, high) -> Support:
    return Support("interval", low=low, high=high)


def integer_interval(low, high) -> Support:
    return Support("integer_interval", discrete=True, low=low, high=high)
