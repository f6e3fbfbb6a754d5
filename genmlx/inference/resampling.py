"""Resampling schemes and particle ESS, vectorized in MLX.

Each scheme takes normalized-or-not log weights `[N]` and returns `n` ancestor
indices (`int32 [n]`, default `n = N`), without a host sync: the whole
computation stays lazy until the loop driver's one `mx.eval` per step.

* `multinomial`: n i.i.d. draws from the categorical of the weights.
* `stratified`: one uniform in each of the n strata `[i/n, (i+1)/n)`.
* `systematic`: one uniform `u`, positions `(i + u)/n`.
* `residual`: `floor(n w_j)` copies of particle j, the remaining
  `n - sum floor(n w_j)` slots drawn multinomially from the residual weights.

All four are unbiased (the expected number of copies of particle j is
`n w_j`); stratified, systematic and residual have lower variance of the
counts than multinomial. A particle of weight zero is never selected.
Ancestor indices come out sorted for the three inverse-CDF schemes
(multinomial, stratified, systematic) and for residual's deterministic part.

Math: ESS = (sum w)^2 / sum w^2 = exp(2 logsumexp(lw) - logsumexp(2 lw)).
"""

from __future__ import annotations

from typing import Callable

import mlx.core as mx

__all__ = [
    "SCHEMES",
    "get_scheme",
    "multinomial",
    "stratified",
    "systematic",
    "residual",
    "normalize",
    "ess",
    "log_ess",
    "particle_ess",
    "ZeroLikelihoodError",
]


class ZeroLikelihoodError(ValueError):
    """Every particle has log weight -inf (or NaN): the observations are impossible under all particles."""


def normalize(log_weights: mx.array) -> mx.array:
    """Normalized weights `exp(lw - logsumexp(lw))` (NaN when every weight is -inf)."""
    lw = mx.array(log_weights)
    return mx.exp(lw - mx.logsumexp(lw))


def log_ess(log_weights: mx.array) -> mx.array:
    """Log of the effective sample size of log weights `[N]` (a lazy scalar)."""
    lw = mx.array(log_weights)
    return 2.0 * mx.logsumexp(lw) - mx.logsumexp(2.0 * lw)


def ess(log_weights: mx.array) -> mx.array:
    """Effective sample size (sum w)^2 / sum w^2, in [1, N] (a lazy scalar)."""
    return mx.exp(log_ess(log_weights))


particle_ess = ess


def _cdf(log_weights: mx.array):
    w = normalize(log_weights)
    c = mx.cumsum(w)
    # Divide by the last entry so that the CDF ends at exactly 1.0 (x / x == 1 in IEEE).
    return w, c / c[-1]


def _invert(w: mx.array, cdf: mx.array, positions: mx.array) -> mx.array:
    """Ancestor j of each position u: cdf[j-1] <= u < cdf[j]."""
    n_part = w.shape[0]
    idx = mx.searchsorted(cdf, positions, side="right").astype(mx.int32)
    # A float32 position that rounds up to 1.0 must still land on a particle of positive weight.
    last = (n_part - 1) - mx.argmax((w > 0)[::-1]).astype(mx.int32)
    return mx.minimum(idx, last)


def _n(log_weights: mx.array, n: int | None) -> int:
    if log_weights.ndim != 1 or log_weights.shape[0] < 1:
        raise ValueError(f"resampling: log_weights must have shape [N] with N >= 1, got {tuple(log_weights.shape)}")
    n = log_weights.shape[0] if n is None else n
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"resampling: n must be an int >= 1, got {n!r}")
    return n


def multinomial(key: mx.array, log_weights: mx.array, n: int | None = None) -> mx.array:
    """n i.i.d. ancestors with P(j) = w_j (sorted, by inverse CDF of sorted uniforms)."""
    lw = mx.array(log_weights)
    n = _n(lw, n)
    w, cdf = _cdf(lw)
    # Sorted i.i.d. uniforms from normalized exponential spacings: O(n), no sort needed.
    e = -mx.log1p(-mx.random.uniform(shape=(n + 1,), key=key))
    s = mx.cumsum(e)
    u = s[:-1] / s[-1]
    return _invert(w, cdf, u)


def stratified(key: mx.array, log_weights: mx.array, n: int | None = None) -> mx.array:
    """One uniform in each stratum [i/n, (i+1)/n)."""
    lw = mx.array(log_weights)
    n = _n(lw, n)
    w, cdf = _cdf(lw)
    u = (mx.arange(n, dtype=mx.float32) + mx.random.uniform(shape=(n,), key=key)) / n
    return _invert(w, cdf, u)


def systematic(key: mx.array, log_weights: mx.array, n: int | None = None) -> mx.array:
    """One uniform u shared by all positions (i + u)/n."""
    lw = mx.array(log_weights)
    n = _n(lw, n)
    w, cdf = _cdf(lw)
    u = (mx.arange(n, dtype=mx.float32) + mx.random.uniform(shape=(), key=key)) / n
    return _invert(w, cdf, u)


def residual(key: mx.array, log_weights: mx.array, n: int | None = None) -> mx.array:
    """floor(n w_j) deterministic copies; the rest multinomial on the residual weights.

    Fixed shapes throughout (no host sync): n residual draws are made and the
    first `n - D` of them fill the slots after the `D` deterministic copies.
    """
    lw = mx.array(log_weights)
    n = _n(lw, n)
    w = normalize(lw)
    nw = n * w
    copies = mx.floor(nw)
    cum = mx.cumsum(copies)
    slots = mx.arange(n, dtype=mx.float32)
    det = mx.searchsorted(cum, slots, side="right").astype(mx.int32)
    n_det = cum[-1]
    r = nw - copies
    r_tot = mx.sum(r)
    # When nothing is left over (r_tot == 0) the draws are never used; keep them finite anyway.
    rw = mx.where(r_tot > 0, r, w)
    rw = rw / mx.sum(rw)
    rc = mx.cumsum(rw)
    rc = rc / rc[-1]
    extra = _invert(rw, rc, mx.random.uniform(shape=(n,), key=key))
    j = mx.maximum(slots - n_det, 0).astype(mx.int32)
    return mx.where(slots < n_det, mx.minimum(det, w.shape[0] - 1), extra[j])


SCHEMES: dict[str, Callable[..., mx.array]] = {
    "systematic": systematic,
    "stratified": stratified,
    "residual": residual,
    "multinomial": multinomial,
}


def get_scheme(resample) -> Callable[..., mx.array]:
    """The scheme named `resample` (or a callable `(key, log_weights, n) -> indices`, returned as is)."""
    if callable(resample):
        return resample
    f = SCHEMES.get(resample) if isinstance(resample, str) else None
    if f is None:
        raise ValueError(f"resample must be one of {sorted(SCHEMES)} or a callable, got {resample!r}")
    return f
