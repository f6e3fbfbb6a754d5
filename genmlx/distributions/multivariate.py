"""dirichlet (alpha) and mvn (mean, cov): distributions over vectors (event_ndim = 1)."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

from ..special import host
from ..special.fuse import as_float, fused
from ..special.gamma import bd0_fast, lgamma_pos, stirlerr_big
from . import support
from ._common import HALF_LOG_2PI, LOG_2PI, std_normal
from ._linalg import chol_ok, cholesky, f32_factor_ok, tri_solve_nonsingular
from .wishart import _eye, _log_diag_nonsingular
from .base import Distribution
from .gamma_sampler import gamma_full

__all__ = ["Dirichlet", "MVN", "dirichlet", "mvn"]

_BIG = 11.0


def _vector_param(dist, name, value):
    """A vector parameter as an array (lists/NumPy converted: constants, no graph node)."""
    if isinstance(value, mx.array):  # float16/bfloat16 too: MLX's linear algebra takes float32 or float64 only
        return value if value.dtype in (mx.float32, mx.float64) else value.astype(mx.float32)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        dist._fail(ValueError(f"{dist.name}: parameter {name} must be an array of numbers, got {value!r}"))
        return None
    return arr


# -- dirichlet ---------------------------------------------------------------------------------
#
# lp(x) = sum_i (alpha_i - 1) log x_i + lgamma(sum alpha) - sum_i lgamma(alpha_i) on the simplex.
# When every alpha_i >= 11 the multinomial form with Loader's terms replaces the lgamma sums
# (which would cancel in float32): with k_i = alpha_i - 1 and n = sum k_i,
# lp = sum_{j<K} log(n + j) + stirlerr(n) + log(n)/2 - (K-1) log(2 pi)/2
#      - sum_i [stirlerr(k_i) + log(k_i)/2 + bd0(k_i, n x_i)] + n (sum x - 1).


def _on_simplex(sx, k):
    return mx.abs(sx - 1.0) <= 1e-5 * k + 1e-6


def _direct_term(x, alpha):
    """(alpha - 1) log x, with the right limits at x = 0 and -inf at x < 0."""
    am1 = alpha - 1.0
    t = mx.where(x > 0, am1 * mx.log(x), mx.where(am1 == 0, 0.0, mx.where(am1 < 0, mx.inf, -mx.inf)))
    return mx.where(x >= 0, t, -mx.inf)


@fused
def _dir_direct_terms(x, alpha):
    return _direct_term(as_float(x), alpha)


@fused
def _dir_bd0_terms(x, k, n):
    x = as_float(x)
    return mx.where(x >= 0, bd0_fast(k, n * x), mx.inf)


@fused
def _dir_finish_host(sdirect, sx, c, k):
    # sdirect is NaN where x_i = 0 meets both alpha_i < 1 (+inf) and alpha_j > 1 (-inf): density 0
    ok = _on_simplex(sx, k) & ~mx.isnan(sdirect)
    return mx.where(ok, sdirect + c, -mx.inf)[..., 0]


@fused
def _dir_dev(x, mean):
    return as_float(x) - mean


@fused
def _dir_loader_finish_host(sterms, sdev, n, c, c_mean, k):
    # sum(x) - 1 = sum(x - mean) + (sum(mean) - 1): the deviations sum without rounding to 1e-7
    sxm1 = sdev + c_mean
    return mx.where(_on_simplex(sxm1 + 1.0, k), (c - sterms) + n * sxm1, -mx.inf)[..., 0]


def _dir_host_consts(a: np.ndarray):
    """(loader?, c, n) from a host alpha of shape (K,)."""
    k = a.shape[-1]
    if np.all(a >= _BIG):
        kk = a - 1.0
        n = float(np.sum(kk))
        c = sum(math.log(n + j) for j in range(1, k)) + host.stirlerr(n) + 0.5 * math.log(n) - 0.5 * (k - 1) * LOG_2PI
        c -= float(sum(host.stirlerr(float(v)) + 0.5 * math.log(v) for v in kk))
        return True, c, n
    return False, math.lgamma(float(np.sum(a))) - float(sum(math.lgamma(float(v)) for v in a)), 0.0


@fused
def _dir_direct_lg(x, alpha):
    """(alpha_i - 1) log x_i - lgamma(alpha_i) per component."""
    return _direct_term(as_float(x), alpha) - lgamma_pos(alpha)


@fused
def _dir_terms_arrays(x, alpha, n, amin, direct):
    """Per component: the direct term, or where every alpha >= 11 Loader's
    stirlerr(k_i) + log(k_i)/2 + bd0(k_i, n x_i) (k_i = alpha_i - 1, n = sum k_i)."""
    x = as_float(x)
    kk = mx.maximum(alpha - 1.0, _BIG - 1.0)  # finite in rows that use the direct form
    loader = (stirlerr_big(kk) + 0.5 * mx.log(kk)) + bd0_fast(kk, n * x)
    big = amin >= _BIG
    return mx.where(big & (x >= 0), loader, mx.where(big, mx.inf, direct))


def _dir_finish_for(k: int):
    """The array-parameter finishing kernel for K categories (K baked in: the sum below is unrolled)."""
    f = _FINISH.get(k)
    if f is None:
        def finish(s, lg_a0, n, amin, sx):
            ratio = 0.0  # sum_{j=1}^{K-1} log(n + j)
            for j in range(1, k):
                ratio = ratio + mx.log(n + float(j))
            loader = ((ratio + stirlerr_big(n)) + (0.5 * mx.log(n) - 0.5 * (k - 1.0) * LOG_2PI)) - s + n * (sx - 1.0)
            lp = mx.where(amin >= _BIG, loader, s + lg_a0)
            ok = _on_simplex(sx, float(k)) & ~mx.isnan(s)
            return mx.where(ok, lp, -mx.inf)[..., 0]

        f = _FINISH[k] = fused(finish)
    return f


_lgamma_kernel = fused(lambda a: lgamma_pos(a))


@fused
def _dir_n(a0, k):
    """n = sum(alpha) - K (exact where every alpha >= 11; a harmless value elsewhere)."""
    return mx.maximum(a0 - k, k * (_BIG - 1.0))


_FINISH: dict = {}


def _dirichlet_lp_arrays(x, alpha):
    k = alpha.shape[-1]
    a0 = mx.sum(alpha, axis=-1, keepdims=True)
    amin = mx.min(alpha, axis=-1, keepdims=True)
    n = _dir_n(a0, float(k))
    terms = _dir_terms_arrays(x, alpha, n, amin, _dir_direct_lg(x, alpha))
    s = mx.sum(terms, axis=-1, keepdims=True)
    return _dir_finish_for(k)(s, _lgamma_kernel(a0), n, amin, mx.sum(x, axis=-1, keepdims=True))


_TINY32 = float(np.finfo(np.float32).tiny)


class Dirichlet(Distribution):
    """Dirichlet(alpha) over the simplex (last axis of alpha: the K categories)."""

    name = "dirichlet"
    support = support.simplex
    event_ndim = 1

    def __init__(self, alpha):
        super().__init__()
        a = _vector_param(self, "alpha", alpha)
        if a is None:
            self.alpha, self._host = mx.ones((2,)), None
            return
        if a.ndim == 0 or a.shape[-1] < 2:
            self._fail(ValueError(f"dirichlet: parameter alpha must have at least 2 components (shape {tuple(a.shape)})"))
        if isinstance(a, np.ndarray):
            if not (np.all(a > 0) and np.all(np.isfinite(a))):
                self._fail(ValueError(f"dirichlet: parameter alpha must be > 0 and finite, got {alpha!r}"))
            self._host = _dir_host_consts(a) if self._invalid is None and a.ndim == 1 else None
            if self._host is not None and self._host[0]:
                m32 = (a / a.sum()).astype(np.float32)
                self._mean = (mx.array(m32), float(np.sum(m32.astype(np.float64)) - 1.0))
            self.alpha = mx.array(a.astype(np.float32))
        else:
            self._host = None
            self.alpha = self._param("alpha", a, lambda v: (v > 0) & mx.isfinite(v), "> 0 and finite")

    def _sample(self, key, shape):
        full = shape + tuple(self.alpha.shape)
        logg = gamma_full(key, self.alpha, shape, full)
        # A component that underflows float32 (tiny alpha) is kept at the smallest normal float32, not 0:
        # an exact 0 is outside the open simplex, and (alpha - 1) log 0 would score it +inf.
        return mx.maximum(mx.softmax(logg, axis=-1, precise=True), _TINY32)

    @property
    def event_shape(self) -> tuple:
        return (self.alpha.shape[-1],)

    def _log_prob(self, x):
        if self._host is None:
            return _dirichlet_lp_arrays(x, self.alpha)
        x = x if isinstance(x, mx.array) else mx.array(x)
        loader, c, n = self._host
        k = float(self.alpha.shape[-1])
        if loader:
            kk = self.alpha - 1.0
            mean, c_mean = self._mean
            sdev = mx.sum(_dir_dev(x, mean), axis=-1, keepdims=True)
            return _dir_loader_finish_host(mx.sum(_dir_bd0_terms(x, kk, n), axis=-1, keepdims=True), sdev, n, c, c_mean, k)
        sx = mx.sum(x, axis=-1, keepdims=True)
        return _dir_finish_host(mx.sum(_dir_direct_terms(x, self.alpha), axis=-1, keepdims=True), sx, c, k)


# -- multivariate normal -----------------------------------------------------------------------


@fused
def _mvn_diff(x, mean):
    return as_float(x) - mean


@fused
def _mvn_finish_host(sq, neg_half_logdet, d):
    return (-0.5 * sq + neg_half_logdet) - d * HALF_LOG_2PI


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
                    l64 = np.linalg.cholesky(c64)
                except np.linalg.LinAlgError:
                    self._fail(ValueError("mvn: parameter cov must be positive definite"))
                else:
                    if not f32_factor_ok(l64):
                        self._fail(ValueError("mvn: parameter cov must have a Cholesky factor representable in float32 "
                                              "(its factor or the factor's inverse under- or overflows float32)"))
        if isinstance(m, np.ndarray) and not np.all(np.isfinite(m)):
            self._fail(ValueError("mvn: parameter mean must be finite"))
        with np.errstate(over="ignore", under="ignore"):  # out-of-range entries were refused above
            self.mean = mx.array(m.astype(np.float32)) if isinstance(m, np.ndarray) else m
            self.cov = mx.array(c.astype(np.float32)) if isinstance(c, np.ndarray) else c
        self._prec_tril = None
        if self._invalid is None:
            if isinstance(c, np.ndarray):
                # a host covariance: factor it once in float64 (constants, no graph nodes)
                l64 = np.linalg.cholesky(c)
                self.scale_tril = mx.array(l64.astype(np.float32))
                self._prec_tril = mx.array(np.swapaxes(np.linalg.inv(l64), -1, -2).astype(np.float32))  # L^{-T}
                self._c = float(-np.sum(np.log(np.diagonal(l64, axis1=-2, axis2=-1)), axis=-1).ravel()[0]) \
                    if l64.ndim == 2 else None
                if l64.ndim > 2:
                    self._c_arr = mx.array((-np.sum(np.log(np.diagonal(l64, axis1=-2, axis2=-1)), axis=-1)).astype(np.float32))
            else:
                self.scale_tril = cholesky(self.cov)
                self._lazy_checks.append(("cov", "positive definite", self.scale_tril, chol_ok))

    @property
    def event_shape(self) -> tuple:
        return (self.mean.shape[-1],)

    def _sample(self, key, shape):
        batch = tuple(mx.broadcast_shapes(self.mean.shape[:-1], self.cov.shape[:-2]))
        d = self.mean.shape[-1]
        z = std_normal(key, shape + batch + (d, 1))
        x = self.mean + (self.scale_tril @ z)[..., 0]
        if self._prec_tril is None:
            # an array covariance that is not positive definite leaves a factor with a NaN or
            # non-positive diagonal: its draws are NaN (never finite garbage), and the deferred
            # check names `cov` at the driver's materialization
            x = mx.where(chol_ok(self.scale_tril)[..., None], x, mx.nan)
        return x

    def _log_prob(self, x):
        x = x if isinstance(x, mx.array) else mx.array(x)
        d = float(self.mean.shape[-1])
        if self._prec_tril is not None:
            diff = _mvn_diff(x, self.mean)
            if self._prec_tril.ndim == 2:
                y = diff @ self._prec_tril  # (x - mu)^T L^{-T}
            else:
                y = (diff[..., None, :] @ self._prec_tril)[..., 0, :]
            neg_half_logdet = self._c if getattr(self, "_c", None) is not None else self._c_arr
            return _mvn_finish_host(mx.sum(mx.square(y), axis=-1), neg_half_logdet, d)
        logd, lc = _log_diag_nonsingular(self.scale_tril, _eye(self.mean.shape[-1]))
        y = tri_solve_nonsingular(lc, _mvn_diff(x, self.mean)[..., None])[..., 0]
        sq = mx.sum(mx.square(y), axis=-1)
        half_logdet = mx.sum(logd, axis=(-2, -1))
        return _mvn_finish(sq, half_logdet, d)


dirichlet = Dirichlet
mvn = MVN
