"""Shared models and exact answers for the SMC tests (not a test module)."""

from __future__ import annotations

import numpy as np

import genmlx as gm
from genmlx import dist

Q, R = 1.0, 0.5  # transition and observation standard deviations


@gm.gen
def lg(T):
    """Linear-Gaussian state space model: x_0 = 0, x_t ~ N(x_{t-1}, 1), y_t ~ N(x_t, 0.5)."""
    x = 0.0
    for t in range(T):
        x = gm.trace(("x", t), dist.normal(x, Q))
        gm.trace(("y", t), dist.normal(x, R))
    return x


def kalman(ys, q: float = Q, r: float = R):
    """Exact log evidence and filtering means / variances of `lg` (numpy)."""
    m, p, ll = 0.0, 0.0, 0.0
    means, variances = [], []
    for y in ys:
        p = p + q * q
        s = p + r * r
        ll += -0.5 * np.log(2 * np.pi * s) - 0.5 * (y - m) ** 2 / s
        k = p / s
        m, p = m + k * (y - m), (1 - k) * p
        means.append(m)
        variances.append(p)
    return float(ll), np.array(means), np.array(variances)


def rts_smoother(ys, q: float = Q, r: float = R):
    """Exact smoothing means and variances of `lg` (Rauch-Tung-Striebel)."""
    _, mf, pf = kalman(ys, q, r)
    T = len(ys)
    ms, ps = mf.copy(), pf.copy()
    for t in range(T - 2, -1, -1):
        pp = pf[t] + q * q
        g = pf[t] / pp
        ms[t] = mf[t] + g * (ms[t + 1] - mf[t])
        ps[t] = pf[t] + g * g * (ps[t + 1] - pp)
    return ms, ps


def data(T: int, seed: int = 1):
    """Simulated observations of `lg` (numpy), deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    xs = np.cumsum(rng.normal(size=T) * Q)
    return xs + R * rng.normal(size=T)


def sequence(ys):
    """args_seq and observations_seq for `lg`: step t has args (t+1,) and observes y_t."""
    return [(t + 1,) for t in range(len(ys))], [{("y", t): float(y)} for t, y in enumerate(ys)]


def weighted_mean(log_weights, values) -> float:
    lw = np.asarray(log_weights, dtype=float)
    w = np.exp(lw - lw.max())
    return float(np.dot(w / w.sum(), np.asarray(values, dtype=float)))


def unfold_lg():
    """`lg` as an unfold model: args (n, 0.0), step t's choices at (t, "x"), (t, "y")."""
    unfold = getattr(gm, "unfold", None)
    if unfold is None:  # before the combinators are re-exported at the top level
        from genmlx.combinators.unfold import unfold

    @gm.gen
    def lg_step(t, x):
        x = gm.trace("x", dist.normal(x, Q))
        gm.trace("y", dist.normal(x, R))
        return x

    return unfold(lg_step)


def unfold_sequence(ys):
    """args_seq and observations_seq for `unfold_lg()`."""
    return [(t + 1, 0.0) for t in range(len(ys))], [{(t, "y"): float(y)} for t, y in enumerate(ys)]
