"""wishart (df, scale) and inv_wishart (df, scale): distributions over p x p SPD matrices (event_ndim = 2).

Densities work through Cholesky factors (log-determinants from the diagonal,
traces as squared Frobenius norms of triangular solves), so a near-singular
scale costs accuracy only through its condition number. A value that is not
symmetric positive definite has log-density -inf. Sampling is Bartlett's
decomposition: A lower triangular with A_ii = sqrt(chi2(df - i)) (two gamma
draws' worth of Marsaglia-Tsang, vectorized over i) and N(0, 1) below the
diagonal; wishart = (L A)(L A)^T, inv_wishart = (L A^{-T})(L A^{-T})^T.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

from ..special.fuse import fused
from ..special.gamma import lgamma_pos
from . import support
from ._common import std_normal
from ._linalg import chol_ok, cholesky, f32_factor_ok, mT, tri_inv, tri_solve_nonsingular
from .base import Distribution
from .gamma_sampler import gamma_full

__all__ = ["Wishart", "InvWishart", "wishart", "inv_wishart", "mvlgamma"]

_LN2 = math.log(2.0)
_LOG_PI = math.log(math.pi)


def mvlgamma(a, p: int):
    """Multivariate log-gamma: log Gamma_p(a) = p(p-1)/4 log pi + sum_j lgamma(a - j/2)."""
    a = a if isinstance(a, mx.array) else mx.array(a, dtype=mx.float32)
    return _mvlg_kernel(a[..., None], _half_steps(p)).sum(axis=-1) + p * (p - 1) / 4.0 * _LOG_PI


_mvlg_kernel = fused(lambda a, j: lgamma_pos(a - j))
_STEPS: dict = {}


def _half_steps(p: int) -> mx.array:
    j = _STEPS.get(p)
    if j is None:
        j = _STEPS[p] = mx.array(np.arange(p, dtype=np.float32) * 0.5)  # a constant: no graph node
    return j


@fused
def _sym_dev(x, xt):
    return mx.abs(x - xt) - 1e-4 * mx.abs(x)


@fused
def _log_diag(lx, eye):
    """log of the Cholesky factor's diagonal (0 off the diagonal); NaN/-inf where the factorization failed."""
    return mx.log(mx.where(eye, lx, 1.0))  # log 1 = 0 off the diagonal; finite gradients there


@fused
def _log_diag_nonsingular(lx, eye):
    """(log of the diagonal, the factor with its zero diagonal elements NaN as `_linalg.nonsingular` makes
    them): one fused node. A zero diagonal element's log is NaN here, not -inf (both are refused alike)."""
    lg = mx.where(eye & (lx == 0), mx.nan, lx)
    return mx.log(mx.where(eye, lg, 1.0)), lg


def _eye(p: int) -> mx.array:
    """A boolean identity as a constant (built from NumPy: no graph nodes)."""
    e = _EYES.get(p)
    if e is None:
        e = _EYES[p] = mx.array(np.eye(p, dtype=bool))
    return e


_EYES: dict = {}


def _chol_parts(x, p):
    """(L, log det X / 2, symmetry deviation): X is valid where the deviation is <= 0 and log det finite.
    L's zero diagonal elements (X singular in float32) are NaN, so that L can be solved with."""
    logd, lx = _log_diag_nonsingular(cholesky(x), _eye(p))
    half_logdet = mx.sum(logd, axis=(-2, -1))
    dev = mx.max(_sym_dev(x, mT(x)), axis=(-2, -1))
    return lx, half_logdet, dev


@fused
def _wishart_finish(half_logdet_x, tr, dev, df, p, c):
    ok = (dev <= 0) & mx.isfinite(half_logdet_x)
    return mx.where(ok, (df - p - 1.0) * half_logdet_x - 0.5 * tr + c, -mx.inf)


@fused
def _inv_wishart_finish(half_logdet_x, tr, dev, df, p, c):
    ok = (dev <= 0) & mx.isfinite(half_logdet_x)
    return mx.where(ok, c - ((df + p + 1.0) * half_logdet_x + 0.5 * tr), -mx.inf)


@fused
def _wishart_c(df, half_logdet_v, mvlg, p):
    return -(df * (0.5 * p * _LN2 + half_logdet_v) + mvlg)


@fused
def _inv_wishart_c(df, half_logdet_psi, mvlg, p):
    return df * (half_logdet_psi - 0.5 * p * _LN2) - mvlg


def _mvlgamma_host(a: float, p: int) -> float:
    return p * (p - 1) / 4.0 * _LOG_PI + sum(math.lgamma(a - 0.5 * j) for j in range(p))


class _WishartBase(Distribution):
    support = support.positive_definite
    event_ndim = 2

    def __init__(self, df, scale):
        super().__init__()
        s = scale
        if not isinstance(s, mx.array):
            try:
                s = np.asarray(s, dtype=np.float64)
            except (TypeError, ValueError):
                self._fail(ValueError(f"{self.name}: parameter scale must be a matrix of numbers, got {scale!r}"))
                s = np.eye(1)
        if s.ndim < 2 or s.shape[-1] != s.shape[-2]:
            self._fail(ValueError(f"{self.name}: parameter scale must be (..., p, p), got shape {tuple(s.shape)}"))
            s = np.eye(1) if isinstance(s, np.ndarray) else mx.eye(1)
        p = int(s.shape[-1])
        self.p = p
        self.df = self._param("df", df, lambda v: (v > p - 1) & mx.isfinite(v) if isinstance(v, mx.array)
                              else (v > p - 1 and math.isfinite(v)), f"> p - 1 = {p - 1} (p = {p}) and finite")
        if isinstance(s, np.ndarray):
            if self._invalid is None:
                if not np.all(np.isfinite(s)) or not np.allclose(s, np.swapaxes(s, -1, -2), rtol=1e-5, atol=1e-8):
                    self._fail(ValueError(f"{self.name}: parameter scale must be symmetric and finite"))
                else:
                    try:
                        l64 = np.linalg.cholesky(s)
                    except np.linalg.LinAlgError:
                        self._fail(ValueError(f"{self.name}: parameter scale must be positive definite"))
                    else:
                        if not f32_factor_ok(l64):
                            self._fail(ValueError(f"{self.name}: parameter scale must have a Cholesky factor "
                                                  "representable in float32 (its factor or the factor's inverse "
                                                  "under- or overflows float32)"))
            self._host = None
            if self._invalid is None:
                l64 = np.linalg.cholesky(s)
                self.scale_tril = mx.array(l64.astype(np.float32))
                if isinstance(self.df, float) and s.ndim == 2:
                    logdet = 2.0 * float(np.sum(np.log(np.diagonal(l64))))
                    self._host = (mx.array(np.linalg.inv(l64).astype(np.float32)), logdet,
                                  _mvlgamma_host(0.5 * self.df, p))
            else:
                self.scale_tril = mx.array(np.eye(p, dtype=np.float32))
            with np.errstate(over="ignore", under="ignore"):  # out-of-range factors were refused above
                s = mx.array(s.astype(np.float32))
            self.scale = s
        else:
            self._host = None
            self.scale = s if s.dtype in (mx.float32, mx.float64) else s.astype(mx.float32)  # linalg: f32/f64 only
            self.scale_tril = cholesky(self.scale)
            self._lazy_checks.append(("scale", "positive definite", self.scale_tril, chol_ok))

    @property
    def event_shape(self) -> tuple:
        return (self.p, self.p)

    def _bartlett(self, key, shape):
        """A: lower triangular (..., p, p) with A A^T ~ Wishart(df, I)."""
        p = self.p
        k1, k2 = mx.random.split(key)
        df = self.df
        dfb = df if isinstance(df, mx.array) else mx.array(df, dtype=mx.float32)
        batch = tuple(mx.broadcast_shapes(tuple(dfb.shape), tuple(self.scale.shape[:-2])))
        half = (mx.broadcast_to(dfb, batch)[..., None] - mx.arange(p, dtype=mx.float32)) * 0.5  # (..., p)
        logg = gamma_full(k1, half, shape, shape + batch + (p,))
        diag = mx.exp(0.5 * (logg + _LN2))  # sqrt(chi2) = sqrt(2 G)
        z = std_normal(k2, shape + batch + (p, p))
        lower = mx.tril(z, k=-1)
        return lower + diag[..., None] * mx.eye(p)


class Wishart(_WishartBase):
    """Wishart(df, scale): sum of df outer products of N(0, scale) vectors (df > p - 1 real)."""

    name = "wishart"

    def _sample(self, key, shape):
        m = self.scale_tril @ self._bartlett(key, shape)
        return m @ mT(m)

    def _log_prob(self, x):
        x = _as_matrix(x)
        p = self.p
        lx, half_logdet_x, dev = _chol_parts(x, p)
        if self._host is not None:
            prec, logdet_v, mvlg = self._host
            m = prec @ lx  # L_V^{-1} L_X: tr(V^{-1} X) = |m|_F^2
            c = -(0.5 * self.df * (p * _LN2 + logdet_v) + mvlg)
        else:
            logd, lv = _log_diag_nonsingular(self.scale_tril, _eye(p))
            m = tri_solve_nonsingular(lv, lx)
            half_logdet_v = mx.sum(logd, axis=(-2, -1))
            c = _wishart_c(self.df, half_logdet_v, mvlgamma(0.5 * self.df, p), float(p))
        tr = mx.sum(mx.square(m), axis=(-2, -1))
        return _wishart_finish(half_logdet_x, tr, dev, self.df, float(p), c)


class InvWishart(_WishartBase):
    """Inverse Wishart(df, scale): X^{-1} ~ Wishart(df, scale^{-1})."""

    name = "inv_wishart"

    def _sample(self, key, shape):
        m = self.scale_tril @ mT(tri_inv(self._bartlett(key, shape)))
        return m @ mT(m)

    def _log_prob(self, x):
        x = _as_matrix(x)
        p = self.p
        lx, half_logdet_x, dev = _chol_parts(x, p)
        lpsi = self.scale_tril
        m = tri_solve_nonsingular(lx, mx.broadcast_to(lpsi, lx.shape[:-2] + (p, p)) if lx.ndim > lpsi.ndim else lpsi)
        tr = mx.sum(mx.square(m), axis=(-2, -1))  # tr(Psi X^{-1}) = |L_X^{-1} L_Psi|_F^2
        if self._host is not None:
            _, logdet_psi, mvlg = self._host
            c = 0.5 * self.df * (logdet_psi - p * _LN2) - mvlg
        else:
            half_logdet_psi = mx.sum(_log_diag(lpsi, _eye(p)), axis=(-2, -1))
            c = _inv_wishart_c(self.df, half_logdet_psi, mvlgamma(0.5 * self.df, p), float(p))
        return _inv_wishart_finish(half_logdet_x, tr, dev, self.df, float(p), c)


def _as_matrix(x):
    x = x if isinstance(x, mx.array) else mx.array(np.asarray(x, dtype=np.float32))
    return x if mx.issubdtype(x.dtype, mx.floating) else x.astype(mx.float32)


wishart = Wishart
inv_wishart = InvWishart
