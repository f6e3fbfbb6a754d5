"""Cholesky and triangular solves with gradients, on MLX's CPU stream.

MLX 0.32 has no VJP for `Cholesky` or for `solve_triangular` with respect to
the matrix, so mvn/wishart log-densities would not be differentiable in their
covariance. These wrappers add the standard rules (Murray 2016, "Differentiation
of the Cholesky decomposition") through `mx.custom_function`; they batch over
leading axes and work under `mx.vmap`.

A non-positive-definite input gives a factor with a non-positive or NaN
diagonal (LAPACK stops at the failing column), which `chol_ok` detects.

MLX's triangular solve inverts the factor with LAPACK's `trtri`, which fails on
an exactly zero diagonal element, and MLX turns that into an unnamed
`RuntimeError` at evaluation (`[Inverse::eval_cpu] triangular inversion
failed`). A factor of a matrix that is singular in float32 (a draw whose small
entries underflowed, a scale or covariance that is not positive definite) has
such a zero, so every solve here takes a factor passed through `nonsingular`,
which turns a zero diagonal element into NaN: the solve then propagates NaN,
which the callers already map to a -inf log density (a value outside the
support) or to a deferred check naming the parameter. (A log-density kernel
that already reads the factor's diagonal does the same in its own fused node
and calls `tri_solve_nonsingular`: no extra graph node.)
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from ..special.fuse import compiled

__all__ = ["cholesky", "tri_solve", "tri_solve_nonsingular", "nonsingular", "chol_ok", "chol_logdet",
           "tri_inv", "mT", "f32_factor_ok"]

_CPU = mx.cpu
_EYES: dict = {}


def _eye(n: int) -> mx.array:
    e = _EYES.get(n)
    if e is None:
        e = _EYES[n] = mx.array(np.eye(n, dtype=bool))  # a constant: no graph node
    return e


@compiled
def _nan_zero_diag(l, eye):
    return mx.where(eye & (l == 0), mx.nan, l)


def nonsingular(l):
    """`l` with each exactly-zero diagonal element replaced by NaN (one fused node): LAPACK's
    triangular inverse fails on a zero diagonal element, not on NaN."""
    return _nan_zero_diag(l, _eye(l.shape[-1]))


def mT(a):
    return mx.swapaxes(a, -1, -2)


def _solve_lower(l, b):  # l: no exactly-zero diagonal element
    return mx.linalg.solve_triangular(l, b, upper=False, stream=_CPU)


def _solve_upper(u, b):
    return mx.linalg.solve_triangular(nonsingular(u), b, upper=True, stream=_CPU)


def _bcast(l, b):
    """Broadcast a batch of matrices l (..., n, n) and right-hand sides b (..., n, k)."""
    batch = mx.broadcast_shapes(l.shape[:-2], b.shape[:-2])
    return mx.broadcast_to(l, batch + l.shape[-2:]), mx.broadcast_to(b, batch + b.shape[-2:])


def tri_solve(l, b):
    """L^{-1} B for lower-triangular L (..., n, n) and B (..., n, k); NaN where L has a zero on its diagonal."""
    return _tri_solve(nonsingular(l), b)


def tri_solve_nonsingular(l, b):
    """`tri_solve` for a factor whose zero diagonal elements are already NaN (see `nonsingular`)."""
    return _tri_solve(l, b)


@mx.custom_function
def _tri_solve(l, b):
    l, b = _bcast(l, b)
    return _solve_lower(l, b)


@_tri_solve.vjp
def _tri_solve_vjp(primals, cot, out):
    l, b = primals
    lb, _ = _bcast(l, b)
    bbar = _solve_upper(mT(lb), cot)
    lbar = -mx.tril(bbar @ mT(out))
    return _unbcast(lbar, l.shape), _unbcast(bbar, b.shape)


def _unbcast(g, shape):
    shape = tuple(shape)
    extra = g.ndim - len(shape)
    if extra:
        g = mx.sum(g, axis=tuple(range(extra)))
    axes = tuple(i for i, (s, t) in enumerate(zip(shape, g.shape)) if s == 1 and t != 1)
    return mx.sum(g, axis=axes, keepdims=True) if axes else g


@mx.custom_function
def cholesky(a):
    """Lower Cholesky factor of symmetric positive-definite a (..., n, n)."""
    return mx.linalg.cholesky(a, stream=_CPU)


@cholesky.vjp
def _cholesky_vjp(primals, cot, out):
    l = out
    p = mT(l) @ cot
    p = mx.tril(p) - 0.5 * mx.eye(l.shape[-1]) * p  # lower triangle, halved diagonal
    s = _solve_upper(mT(l), mT(_solve_upper(mT(l), mT(p))))  # L^{-T} P L^{-1}
    return 0.5 * (s + mT(s))


def tri_inv(l):
    """Inverse of a lower-triangular matrix (differentiable)."""
    eye = mx.broadcast_to(mx.eye(l.shape[-1]), l.shape)
    return tri_solve(l, eye)


def diag(l):
    return mx.diagonal(l, axis1=-2, axis2=-1)


def chol_ok(l):
    """True where the factor is a valid Cholesky factor (finite, positive diagonal)."""
    d = diag(l)
    return mx.all(d > 0, axis=-1) & mx.all(mx.isfinite(l), axis=(-2, -1))


def chol_logdet(l):
    """log det(L L^T) from the factor L."""
    return 2.0 * mx.sum(mx.log(mx.maximum(diag(l), 1e-38)), axis=-1)


def f32_factor_ok(l64: np.ndarray) -> bool:
    """A host (float64) Cholesky factor is usable as the float32 constants it becomes: it and its
    inverse finite in float32, its diagonal positive there (a scale of 1e-90 or 1e80 is positive
    definite in float64, but its factor or the factor's inverse under- or overflows float32, and every
    density and draw made from it would be NaN)."""
    with np.errstate(all="ignore"):
        l32 = l64.astype(np.float32)
        inv32 = np.linalg.inv(l64).astype(np.float32)
        d = np.diagonal(l32, axis1=-2, axis2=-1)
        return bool(np.all(np.isfinite(l32)) and np.all(d > 0) and np.all(np.isfinite(inv32)))
