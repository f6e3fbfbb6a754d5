"""dirichlet (alpha) and mvn (mean, cov): distributions over vectors (event_ndim = 1)."""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from ..special.fuse import as_float, fused
from ..special.gamma import bd0_raw, lgamma_pos, stirlerr_big
from . import support
from ._common import HALF_LOG_2PI, LOG_2PI, std_normal
from ._linalg import chol_logdet, chol_ok, cholesky, tri_solve
from .base import Distribution
from .gamma_sampler import gamma_full

__all__ = ["Dirichlet", "MVN", "dirichlet", "mvn"]

_BIG = 11.0


def _vector_param(dist, name, value):
    """A vector parameter as an array (lists/NumPy converted: constants, no graph node)."""
    if isinstance(value, mx.array):
        return value if mx.issubdtype(value.dtype, mx.floating) else value.astype(mx.float32)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        dist._fail(ValueError(f"{dist.name}: parameter {name} must be an array of numbers, got {value!r}"))
        return None
    return arr


# -- dirichlet ---------------------------------------------------------------------------------


@fused
def _dirichlet_terms(x, alpha):
    """Per-component terms, summed over the last axis by the caller."""
    x = as_float(x)
    nonneg = x >= 0
    xs = mx.where(x > 0, x, 1.0)
    lx = mx.log(xs)
    am1 = alpha - 1.0
    direct = mx.where(x > 0, am1 * lx, mx.where(am1 == 0, 0.0, mx.where(am1 < 0, mx.inf, -mx.inf)))
    direct = direct - lgamma_pos(alpha)
    return mx.where(nonneg, direct, -mx.inf)


def _dirichlet_lp(x, alpha):
    x = as_float(x)
    k = alpha.shape[-1]
    s = mx.sum(x, axis=-1)
    on_simplex = mx.abs(s - 1.0) <= 1e-5 * k + 1e-6
    a0 = mx.sum(alpha, axis=-1)
    direct = mx.sum(_dirichlet_terms(x, alpha), axis=-1) + _lgamma_fused(a0)
    # all alpha >= 11: multinomial form with Loader's terms (no large cancelling lgammas)
    big = mx.all(alpha >= _BIG, axis=-1)
    loader = _dirichlet_loader(x, alpha, s, k)
    return mx.where(on_simplex, mx.where(big, loader, direct), -mx.inf)


@fused
def _lgamma_fused(a):
    return lgamma_pos(a)


@fused
def _dir_loader_terms(x, kk, n):
    xs = mx.maximum(x, 0.0)
    return (stirlerr_big(kk) + 0.5 * mx.log(kk)) + bd0_raw(kk, n * xs)


def _dirichlet_loader(x, alpha, s, k):
    kk = mx.maximum(alpha - 1.0, _BIG - 1.0)
    n = mx.sum(kk, axis=-1)
    terms = mx.sum(_dir_loader_terms(x, kk, n[..., None]), axis=-1)
    j = mx.arange(1, k, dtype=mx.float32)
    ratio = mx.sum(mx.log(n[..., None] + j), axis=-1) if k > 1 else 0.0
    return _dir_loader_finish(n, terms, ratio, s, float(k))


@fused
def _dir_loader_finish(n, terms, ratio, s, k):
    return ((ratio + stirlerr_big(n)) + 0.5 * (mx.log(n) - (k - 1.0) * LOG_2PI)) - terms + n * (s - 1.0)


class Dirichlet(Distribution):
    """Dirichlet(alpha) over the simplex (last axis of alpha: the K categories)."""

    name = "dirichlet"
    support = support.simplex
    event_ndim = 1

    def __init__(self, alpha):
        super().__init__()
        a = _vector_param(self, "alpha", alpha)
        if a is None:
            self.alpha = mx.ones((2,))
            return
        if a.ndim == 0 or a.shape[-1] < 2:
            self._fail(ValueError(f"dirichlet: parameter alpha must have at least 2 components (shape {tuple(a.shape)})"))
        if isinstance(a, np.ndarray):
            if not (np.all(a > 0) and np.all(np.isfinite(a))):
                self._fail(ValueError(f"dirichlet: parameter alpha must be > 0 and finite, got {alpha!r}"))
            a = mx.array(a.astype(np.float32))
            self.alpha = a
        else:
            self.alpha = self._param("alpha", a, lambda v: (v > 0) & mx.isfinite(v), "> 0 and finite")

    def _sample(self, key, shape):
        full = shape + tuple(self.alpha.shape)
        logg = gamma_full(key, self.alpha, shape, full)
        return mx.softmax(logg, axis=-1, precise=True)

    def _log_prob(self, x):
        return _dirichlet_lp(x, self.alpha)


# -- multivariate normal -----------------------------------------------------------------------


@fused
def _mvn_finish(sq, half_logdet, d):
    return -0.5 * sq - (half_logdet + d * HALF_LOG_2PI)


class MVN(Distribution):
    """Multivariate normal with mean (..., d) and covariance (..., d, d)."""

    name = "mvn"
    support = support.real_vector
    event_ndim = 1

    def __init__(self, mean, cov):
        super().__init__()
        m = _vector_param(self, "mean", mean)
        c = _vector_param(self, "cov", cov)
        if m is None or c is None:
            self.mean, self.cov = mx.zeros((1,)), mx.ones((1, 1))
            return
        if m.ndim == 0:
            self._fail(ValueError(f"mvn: parameter mean must be a vector, got shape {tuple(m.shape)}"))
        elif c.ndim < 2 or c.shape[-1] != c.shape[-2] or c.shape[-1] != m.shape[-1]:
            self._fail(ValueError(f"mvn: parameter shapes do not match: mean {tuple(m.shape)}, cov {tuple(c.shape)} "
                                  "(cov must be (..., d, d) with d = mean.shape[-1])"))
        if isinstance(c, np.ndarray) and self._invalid is None:
            c64 = c
            if not np.all(np.isfinite(c64)) or not np.allclose(c64, np.swapaxes(c64, -1, -2), rtol=1e-5, atol=1e-8):
                self._fail(ValueError("mvn: parameter cov must be symmetric and finite"))
            else:
                try:
                    np.linalg.cholesky(c64)
                except np.linalg.LinAlgError:
                    self._fail(ValueError("mvn: parameter cov must be positive definite"))
        if isinstance(m, np.ndarray) and not np.all(np.isfinite(m)):
            self._fail(ValueError("mvn: parameter mean must be finite"))
        self.mean = mx.array(m.astype(np.float32)) if isinstance(m, np.ndarray) else m
        self.cov = mx.array(c.astype(np.float32)) if isinstance(c, np.ndarray) else c
        if self._invalid is None:
            self.scale_tril = cholesky(self.cov)
            if isinstance(cov, mx.array):
                self._lazy_checks.append(("cov", "positive definite", self.scale_tril, chol_ok))

    @property
    def event_shape(self) -> tuple:
        return (self.mean.shape[-1],)

    def _sample(self, key, shape):
        batch = tuple(mx.broadcast_shapes(self.mean.shape[:-1], self.cov.shape[:-2]))
        d = self.mean.shape[-1]
        z = std_normal(key, shape + batch + (d, 1))
        return self.mean + (self.scale_tril @ z)[..., 0]

    def _log_prob(self, x):
        x = as_float(x if isinstance(x, mx.array) else mx.array(x))
        y = tri_solve(self.scale_tril, (x - self.mean)[..., None])[..., 0]
        sq = mx.sum(y * y, axis=-1)
        half_logdet = 0.5 * chol_logdet(self.scale_tril)
        return _mvn_finish(sq, half_logdet, float(self.mean.shape[-1]))


dirichlet = Dirichlet
mvn = MVN
