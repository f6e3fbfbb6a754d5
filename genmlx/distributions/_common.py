"""Shared pieces of the built-in distributions: parameter predicates, random helpers.

Every random draw goes through `genmlx.rng.lanewise` (here, in `gamma_sampler`
and in `rng.uniform` / `rng.categorical`), so the samplers follow the lane
layout of a vectorized pass (see `genmlx.rng`).
"""

from __future__ import annotations

import math

import mlx.core as mx

from ..rng import lanewise
from ..special.fuse import compiled
from ..special.normal import std_normal_from_uniform
from .base import shape_of

__all__ = ["POS", "NONNEG", "PROB", "FINITE", "COUNT", "HALF_LOG_2PI", "LOG_2PI", "NEG_INF",
           "uniform01", "std_normal", "shape_of", "ok_pos", "ok_prob", "ok_count", "ok_finite"]

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
LOG_2PI = math.log(2.0 * math.pi)
NEG_INF = float("-inf")


def _isfinite(v):
    return mx.isfinite(v) if isinstance(v, mx.array) else math.isfinite(v)


def ok_pos(v):
    return (v > 0) & mx.isfinite(v) if isinstance(v, mx.array) else (v > 0 and math.isfinite(v))


def ok_prob(v):
    return (v >= 0) & (v <= 1) if isinstance(v, mx.array) else (0 <= v <= 1)


def ok_count(v):
    if isinstance(v, mx.array):
        return (v >= 0) & (v == mx.floor(v)) & mx.isfinite(v)
    return v >= 0 and math.isfinite(v) and float(v).is_integer()


def ok_finite(v):
    return _isfinite(v)


# (predicate, what it must be) pairs for Distribution._param
POS = (ok_pos, "> 0 and finite")
NONNEG = (lambda v: (v >= 0) & mx.isfinite(v) if isinstance(v, mx.array) else (v >= 0 and math.isfinite(v)), ">= 0")
PROB = (ok_prob, "in [0, 1]")
FINITE = (ok_finite, "finite")
COUNT = (ok_count, "a non-negative integer")


@compiled
def _uniform01(key, shape):
    u = mx.random.uniform(shape=shape, key=key)
    return u * (1.0 - 2.0 ** -24) + 2.0 ** -25


def uniform01(key, shape) -> mx.array:
    """Uniforms in the open interval (0, 1) (log u and log(1 - u) are finite)."""
    return lanewise(_uniform01, key, shape)


@compiled
def _std_normal(key, shape):
    u = mx.random.uniform(shape=shape, key=key)
    return std_normal_from_uniform(u * (1.0 - 2.0 ** -24) + 2.0 ** -25)


def _mlx_normal(key, shape):
    return mx.random.normal(shape=shape, key=key)


def std_normal(key, shape) -> mx.array:
    """Standard normals by the inverse CDF of uniforms in (0, 1).

    On a CPU, Giles' polynomial of w = -log(4u(1 - u)) (faster there than MLX's `erfinv`, and
    accurate to 4e-7 relative). On a GPU, `mx.random.normal` (sqrt(2) erfinv(2u - 1)): the
    polynomial is too deep for MLX to fuse into one kernel (6 fused kernels and 4 more ops, each
    a launch on a GPU), while MLX's normal is uniform bits and one fused kernel. The two map the
    same random bits to values that agree to about 1e-4 and differ by up to 1e-3 relative in the
    far tails (|z| > 4: float32's 2u - 1), so a GPU's draws differ from a CPU's; each is a normal
    draw.
    """
    return lanewise(_mlx_normal if _normal_by_erfinv() else _std_normal, key, shape)


def _normal_by_erfinv() -> bool:
    """`std_normal` uses MLX's normal: on a GPU (tests force it on a CPU)."""
    return mx.default_device().type == mx.DeviceType.gpu
