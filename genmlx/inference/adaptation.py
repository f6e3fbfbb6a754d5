"""Warm-up adaptation for gradient-based samplers: step size and diagonal mass matrix.

Step size: Nesterov dual averaging on log(step size), as in Hoffman & Gelman
(2014, section 3.2) with Stan's constants (gamma = 0.05, t0 = 10, kappa = 0.75,
mu = log(10 * initial step size)). Each warm-up iteration feeds the sampler's
acceptance statistic; at the end of warm-up the step size is frozen at the
averaged iterate exp(x_bar).

Mass matrix: Stan's windowed scheme. Warm-up is split into a fast initial
buffer (75 iterations), slow windows of doubling length (25, 50, 100, ...,
the last one stretched to fill) and a fast terminal buffer (50); short
warm-ups (< 150) scale these to 15% / 75% / 10%, and warm-ups < 20 adapt only
the step size. During each slow window a Welford accumulator collects the
variance of the unconstrained position; at the window's end the inverse mass
matrix becomes the regularized variance (n / (n + 5)) var + 1e-3 * 5 / (n + 5)
and dual averaging restarts from the current step size.

Everything here is plain MLX arithmetic: the updates stay lazy and the loop
driver evaluates them with the step (no host sync). Which window an iteration
falls in is decided on the host from its index alone.

`HostAdaptation` / `host_adapt` are the same updates on the host (Python
floats, float64 NumPy for the Welford sums), for samplers whose acceptance
statistic and position are on the host anyway (NUTS): a few microseconds per
iteration where the lazy form costs a compiled call and an evaluation.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import mlx.core as mx
import numpy as np

__all__ = ["DualAveraging", "Welford", "Adaptation", "slow_windows", "da_init", "da_update",
           "welford_init", "welford_update", "regularized_variance", "init_adaptation", "adapt", "Schedule",
           "schedule", "HostAdaptation", "host_init_adaptation", "host_adapt"]

GAMMA, T0, KAPPA = 0.05, 10.0, 0.75


class DualAveraging(NamedTuple):
    """Dual-averaging state (scalars): x = log step, x_bar its average, s_bar the averaged error."""

    x: mx.array
    x_bar: mx.array
    s_bar: mx.array
    mu: mx.array
    count: mx.array


def da_init(step_size) -> DualAveraging:
    x = mx.log(mx.array(step_size, dtype=mx.float32))
    zero = mx.array(0.0)
    return DualAveraging(x, zero, zero, math.log(10.0) + x, zero)


def _da_update(x, x_bar, s_bar, mu, count, accept_prob, target):
    count = count + 1.0
    a = mx.minimum(mx.where(mx.isnan(accept_prob), 0.0, accept_prob), 1.0)
    eta = 1.0 / (count + T0)
    s_bar = (1.0 - eta) * s_bar + eta * (target - a)
    x = mu - s_bar * mx.sqrt(count) / GAMMA
    w = mx.power(count, -KAPPA)
    x_bar = (1.0 - w) * x_bar + w * x
    return x, x_bar, s_bar, mu, count


_da_update_c = mx.compile(_da_update)


def da_update(s: DualAveraging, accept_prob, target: float) -> DualAveraging:
    """One dual-averaging step toward acceptance statistic `target`."""
    return DualAveraging(*_da_update_c(*s, mx.array(accept_prob), mx.array(target, dtype=mx.float32)))


class Welford(NamedTuple):
    n: mx.array
    mean: mx.array
    m2: mx.array


def welford_init(dim: int) -> Welford:
    return Welford(mx.array(0.0), mx.zeros((dim,)), mx.zeros((dim,)))


@mx.compile
def _welford(n, mean, m2, z):
    n = n + 1.0
    d = z - mean
    mean = mean + d / n
    return n, mean, m2 + d * (z - mean)


def welford_update(w: Welford, z) -> Welford:
    return Welford(*_welford(*w, z))


def regularized_variance(w: Welford) -> mx.array:
    """Stan's shrunk sample variance, as the new inverse (diagonal) mass matrix."""
    n = w.n
    var = w.m2 / mx.maximum(n - 1.0, 1.0)
    return (n / (n + 5.0)) * var + 1e-3 * (5.0 / (n + 5.0))


def slow_windows(burn: int, init_buffer: int = 75, term_buffer: int = 50, base_window: int = 25) -> list:
    """The `[start, end)` iteration ranges of the slow (mass-matrix) windows of a warm-up of `burn`."""
    if burn < 20:
        return []
    if init_buffer + base_window + term_buffer > burn:
        init_buffer, term_buffer = int(0.15 * burn), int(0.1 * burn)
        base_window = burn - init_buffer - term_buffer
    stop = burn - term_buffer
    out, start, size = [], init_buffer, base_window
    while start < stop:
        end = start + size
        if end + 2 * size > stop:
            end = stop
        out.append((start, end))
        start, size = end, 2 * size
    return out


class Adaptation(NamedTuple):
    """What the sampler state carries for adaptation (arrays; the schedule is the host's)."""

    step_size: mx.array
    inv_mass: mx.array
    da: DualAveraging
    welford: Welford


def init_adaptation(step_size: float, dim: int) -> Adaptation:
    s = mx.array(step_size, dtype=mx.float32)
    return Adaptation(s, mx.ones((dim,)), da_init(step_size), welford_init(dim))


class Schedule(NamedTuple):
    """Host-side plan of a warm-up: which iterations adapt what."""

    burn: int
    step_size: bool
    windows: tuple  # slow windows (start, end); empty: no mass adaptation
    target: float


def schedule(burn: int, adapt_step_size: bool, adapt_mass: bool, target: float) -> Schedule:
    return Schedule(burn, adapt_step_size and burn > 0,
                    tuple(slow_windows(burn)) if adapt_mass else (), target)


def adapt(a: Adaptation, plan: Schedule, i: int, z, accept_prob) -> Adaptation:
    """The adaptation state after warm-up iteration `i` (0-based) produced position `z`."""
    if i >= plan.burn:
        return a
    step, inv_mass, da, w = a
    if plan.step_size:
        da = da_update(da, accept_prob, plan.target)
        step = mx.exp(da.x)
    for start, end in plan.windows:
        if start <= i < end:
            w = welford_update(w, z)
            if i == end - 1:
                inv_mass = regularized_variance(w)
                w = welford_init(inv_mass.shape[0])
                if plan.step_size:
                    da = da_init(step)  # restart: mu = log(10 * the current step size)
            break
    if plan.step_size and i == plan.burn - 1:
        step = mx.exp(da.x_bar)
    return Adaptation(step, inv_mass, da, w)


# -- the same, on the host ------------------------------------------------------------------------

class HostAdaptation:
    """Adaptation state on the host. `step_size` (float) and `inv_mass` (tuple of float32-representable
    floats) are what the sampler uses; `step_mx` / `inv_mass_mx` the same values as MLX arrays (made once
    per change). Treat as immutable: `host_adapt` returns a new one."""

    __slots__ = ("step_size", "inv_mass", "step_mx", "neg_step_mx", "inv_mass_mx", "da", "welford")

    def __init__(self, step_size: float, inv_mass: tuple, da: tuple, welford: tuple | None, inv_mass_mx=None,
                 step_mx=None, neg_step_mx=None):
        self.step_size = step_size
        self.inv_mass = inv_mass
        self.step_mx = mx.array(step_size, dtype=mx.float32) if step_mx is None else step_mx
        self.neg_step_mx = mx.array(-step_size, dtype=mx.float32) if neg_step_mx is None else neg_step_mx
        self.inv_mass_mx = mx.array(inv_mass, dtype=mx.float32) if inv_mass_mx is None else inv_mass_mx
        self.da = da  # (x, x_bar, s_bar, mu, count) as floats
        self.welford = welford  # (n, mean, m2): float64 NumPy; None: empty

    def _genmlx_arrays(self):  # for the driver's walk: the arrays it holds
        return (self.step_mx, self.neg_step_mx, self.inv_mass_mx)


def _f32(x: float) -> float:
    return float(np.float32(x))


def _log(x: float) -> float:
    return math.log(x) if x > 0.0 else (-math.inf if x == 0.0 else math.nan)


def _host_da_init(step_size: float) -> tuple:
    x = _log(_f32(step_size))
    return (x, 0.0, 0.0, math.log(10.0) + x, 0.0)


def host_init_adaptation(step_size: float, dim: int) -> HostAdaptation:
    return HostAdaptation(_f32(step_size), (1.0,) * dim, _host_da_init(step_size), None)


def _host_da_update(da: tuple, accept_prob: float, target: float) -> tuple:
    x, x_bar, s_bar, mu, count = da
    count += 1.0
    a = 0.0 if accept_prob != accept_prob else min(accept_prob, 1.0)
    eta = 1.0 / (count + T0)
    s_bar = (1.0 - eta) * s_bar + eta * (target - a)
    x = mu - s_bar * math.sqrt(count) / GAMMA
    w = count ** -KAPPA
    x_bar = (1.0 - w) * x_bar + w * x
    return (x, x_bar, s_bar, mu, count)


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def host_adapt(a: HostAdaptation, plan: Schedule, i: int, z, accept_prob: float) -> HostAdaptation:
    """`adapt` on the host: the state after warm-up iteration `i` (0-based) produced position `z`
    (an evaluated MLX array, or anything NumPy reads)."""
    if i >= plan.burn:
        return a
    step, inv_mass, da, w = a.step_size, a.inv_mass, a.da, a.welford
    inv_mass_mx = a.inv_mass_mx
    if plan.step_size:
        da = _host_da_update(da, accept_prob, plan.target)
        step = _exp(da[0])
    for start, end in plan.windows:
        if start <= i < end:
            zh = np.asarray(z, dtype=np.float64).reshape(-1)
            if w is None:
                w = (1.0, zh.copy(), np.zeros_like(zh))
            else:
                n, mean, m2 = w
                n += 1.0
                d = zh - mean
                mean = mean + d / n
                w = (n, mean, m2 + d * (zh - mean))
            if i == end - 1:
                n, _, m2 = w
                var = m2 / max(n - 1.0, 1.0)
                im = ((n / (n + 5.0)) * var + 1e-3 * (5.0 / (n + 5.0))).astype(np.float32)
                inv_mass, inv_mass_mx = tuple(im.astype(np.float64).tolist()), mx.array(im)
                w = None
                if plan.step_size:
                    da = _host_da_init(step)  # restart: mu = log(10 * the current step size)
            break
    if plan.step_size and i == plan.burn - 1:
        step = _exp(da[1])
    step = _f32(step)
    same = step == a.step_size
    return HostAdaptation(step, inv_mass, da, w, inv_mass_mx,
                          a.step_mx if same else None, a.neg_step_mx if same else None)
