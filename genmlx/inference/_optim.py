"""Pure optimizers over parameter trees (dicts, lists, tuples of `mx.array`).

`opt.init(params) -> state` and `opt.update(grads, state, params) -> (params,
state)`, which *descends* `grads`. States are `NamedTuple`s of arrays (Adam's
step count included, so a compiled update never retraces): return them in a
driver step's state and the driver's one `mx.eval` per step cuts their graph.
Re-exported by `genmlx.inference.learning` (`infer.adam`, `infer.sgd`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import mlx.core as mx

from ._gradient import check_positive

__all__ = ["Optimizer", "AdamState", "SGDState", "adam", "sgd", "tree_map", "as_params"]


# -- parameter trees -------------------------------------------------------------------------

def tree_map(fn: Callable, tree, *rest):
    """`fn` over the array leaves of `tree` (and the same-structured `rest`); other leaves kept."""
    if isinstance(tree, mx.array):
        return fn(tree, *rest)
    if isinstance(tree, dict):
        return {k: tree_map(fn, v, *(r[k] for r in rest)) for k, v in tree.items()}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(tree_map(fn, v, *(r[i] for r in rest)) for i, v in enumerate(tree)))
    if isinstance(tree, (list, tuple)):
        return type(tree)(tree_map(fn, v, *(r[i] for r in rest)) for i, v in enumerate(tree))
    return tree


def _leaves(tree) -> list:
    out: list = []
    tree_map(lambda x: out.append(x), tree)
    return out


def as_params(algorithm: str, params, name: str = "params"):
    """`params` with numbers (and lists of numbers) as float32 arrays; ValueError naming `name` if it holds none."""
    def conv(x):
        if isinstance(x, mx.array):
            return x if mx.issubdtype(x.dtype, mx.floating) else x.astype(mx.float32)
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            return mx.array(float(x))
        if isinstance(x, (list, tuple)):
            if x and all(isinstance(v, (int, float, list)) and not isinstance(v, bool) for v in x):
                return mx.array(x, dtype=mx.float32)
            vals = [conv(v) for v in x]
            return type(x)(*vals) if hasattr(x, "_fields") else type(x)(vals)
        raise ValueError(f"{algorithm}: {name} must hold numbers or mx.arrays, got {type(x).__name__} {x!r}")

    if not isinstance(params, (dict, list, tuple, mx.array)):
        raise ValueError(f"{algorithm}: {name} must be a dict (or list/tuple) of mx.arrays, got {type(params).__name__}")
    out = conv(params)
    if not _leaves(out):
        raise ValueError(f"{algorithm}: {name} holds no arrays to train: {params!r}")
    return out


# -- optimizers ------------------------------------------------------------------------------

class Optimizer(NamedTuple):
    """A pure optimizer: `init(params) -> state`, `update(grads, state, params) -> (params, state)` (descent)."""

    name: str
    init: Callable[[Any], Any]
    update: Callable[[Any, Any, Any], tuple]
    learning_rate: float


class AdamState(NamedTuple):
    step: mx.array  # float32 scalar: iterations done (an array, so a compiled update never retraces)
    m: Any
    v: Any


class SGDState(NamedTuple):
    velocity: Any  # () without momentum


def _unit(algorithm: str, name: str, x) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0.0 <= x < 1.0:
        raise ValueError(f"{algorithm}: {name} must be in [0, 1), got {x!r}")
    return float(x)


def adam(learning_rate: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    """Adam (Kingma & Ba 2015) with bias correction.

    Raises:
        ValueError: learning_rate <= 0 (or not finite), b1/b2 outside [0, 1), eps <= 0.
    """
    lr = check_positive("adam", "learning_rate", learning_rate)
    b1, b2 = _unit("adam", "b1", b1), _unit("adam", "b2", b2)
    eps = check_positive("adam", "eps", eps)

    def init(params):
        z = tree_map(mx.zeros_like, params)
        return AdamState(mx.array(0.0), z, tree_map(mx.zeros_like, params))

    def update(grads, state, params):
        t = state.step + 1.0
        m = tree_map(lambda m, g: b1 * m + (1.0 - b1) * g, state.m, grads)
        v = tree_map(lambda v, g: b2 * v + (1.0 - b2) * (g * g), state.v, grads)
        size = lr * mx.sqrt(1.0 - mx.power(b2, t)) / (1.0 - mx.power(b1, t))
        new = tree_map(lambda p, m, v: p - size * m / (mx.sqrt(v) + eps), params, m, v)
        return new, AdamState(t, m, v)

    return Optimizer("adam", init, update, lr)


def sgd(learning_rate: float, momentum: float = 0.0) -> Optimizer:
    """Gradient descent, optionally with (heavy-ball) momentum: v = momentum v + g; p -= lr v.

    Raises:
        ValueError: learning_rate <= 0 (or not finite), momentum outside [0, 1).
    """
    lr = check_positive("sgd", "learning_rate", learning_rate)
    mu = _unit("sgd", "momentum", momentum)

    def init(params):
        return SGDState(tree_map(mx.zeros_like, params) if mu else ())

    def update(grads, state, params):
        if not mu:
            return tree_map(lambda p, g: p - lr * g, params, grads), state
        vel = tree_map(lambda v, g: mu * v + g, state.velocity, grads)
        return tree_map(lambda p, v: p - lr * v, params, vel), SGDState(vel)

    return Optimizer("sgd", init, update, lr)


def _check_optimizer(algorithm: str, optimizer, default_lr: float) -> Optimizer:
    if optimizer is None:
        return adam(default_lr)
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{algorithm}: optimizer must be an Optimizer (infer.adam(...), infer.sgd(...)), "
                        f"got {type(optimizer).__name__}")
    return optimizer
