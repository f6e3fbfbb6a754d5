"""Location-scale families: a finite location, a positive scale, a draw by transformation.

Normal, Laplace, Cauchy, LogNormal and WrappedNormal differ only in their
parameter names, their noise (standard normal or uniform), the fused draw
`draw(noise, loc, scale)` and the fused log-density `lp(x, loc, scale)`; the
parameter checks, batching and sampling live here once.
"""

from __future__ import annotations

from ._common import FINITE, POS, std_normal
from .base import Distribution, batch_shape

__all__ = ["LocationScale"]


class LocationScale(Distribution):
    """Subclasses set `params` (attribute names), `noise`, `draw` and `lp` (staticmethods)."""

    params: tuple[str, str] = ("loc", "scale")
    noise = staticmethod(std_normal)
    draw = None
    lp = None

    def __init__(self, loc, scale):
        super().__init__()
        a, b = self.params
        loc = self._param(a, loc, *FINITE)
        scale = self._param(b, scale, *POS)
        setattr(self, a, loc)
        setattr(self, b, scale)
        self._check_shapes(**{a: loc, b: scale})

    def _loc_scale(self):
        a, b = self.params
        return getattr(self, a), getattr(self, b)

    def _sample(self, key, shape):
        loc, scale = self._loc_scale()
        return self.draw(self.noise(key, shape + batch_shape(loc, scale)), loc, scale)

    def _log_prob(self, x):
        loc, scale = self._loc_scale()
        return self.lp(x, loc, scale)
