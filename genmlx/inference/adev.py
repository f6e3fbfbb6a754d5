"""ADEV-style unbiased gradient estimation for expected values of probabilistic programs.

An objective is a `@gm.gen` function `objective(params, *args)` whose random
choices are the integration variables and whose return value is f. The
gradient of E_{x ~ p_params}[f(x, params)] is estimated choice by choice, as
ADEV (Lew et al. 2023) does, by each distribution's *strategy*:

* reparam: the value is a differentiable function of the parameters and
  independent noise (normal = mu + sigma eps, ...): gradients flow pathwise.
* score (REINFORCE): discrete choices, and continuous ones without a
  differentiable sampler (beta, gamma: rejection samplers). The value is
  `mx.stop_gradient`-ed and its log density l(x) joins a score-function term.

Math: with l the summed log density of the score-function choices,

    d/dθ E[f] = E[ ∂f/∂θ (pathwise) + (f - b) ∂l/∂θ ]

for any baseline b independent of the sample. We differentiate the surrogate

    S = mean_i [ f_i + (stop(f_i) - b_i) (l_i - stop(l_i)) ]

whose *value* is the plain Monte Carlo estimate mean_i f_i and whose gradient
is the estimator. The default baseline is leave-one-out, b_i = mean of the
other samples' f (unbiased, no extra state; with one sample, b = 0).

The n samples run as one `mx.vmap` pass (a Python loop when the program cannot
be batched). Strategies apply to distributions traced in `@gen` functions,
nested `@gen` calls and `gm.splice`; a combinator call is simulated as is,
so all its choices must be reparameterizable (else a ValueError).
"""

from __future__ import annotations

from typing import Callable

import mlx.core as mx

from ..address import from_path
from ..dynamic import DynamicGenFn
from ..handler import SimulateHandler, _is_dist
from ..rng import KeyStream, resolve
from ..trace import Trace
from ..vectorize import VectorizationError, vmap_tree

__all__ = ["adev_grad", "surrogate", "adev_simulate", "estimate", "strategy", "register_strategy", "map_keys"]

_STRATEGY: dict[str, str] = {n: "reparam" for n in
                             ("normal", "uniform", "exponential", "laplace", "cauchy", "lognormal", "mvn", "delta")}


def register_strategy(name: str, kind: str) -> None:
    """Use `kind` ("reparam" or "score") for distributions named `name`."""
    if kind not in ("reparam", "score"):
        raise ValueError(f"register_strategy: kind must be 'reparam' or 'score', got {kind!r}")
    _STRATEGY[name] = kind


def strategy(d) -> str:
    """"score" for discrete supports and unregistered samplers, else the registered strategy."""
    if getattr(d.support, "discrete", False):
        return "score"
    return _STRATEGY.get(d.name, "score")


class _ADEVHandler(SimulateHandler):
    """simulate, plus: stop the gradient at score-function choices and sum their log densities."""

    __slots__ = ("sf",)

    def __init__(self, gen_fn, keys):
        super().__init__(gen_fn, keys)
        self.sf = None

    def _add_sf(self, lp) -> None:
        self.sf = lp if self.sf is None else self.sf + lp

    def visit(self, path, obj, args):
        if _is_dist(obj):
            v = obj._sample(self.keys(), ())
            if strategy(obj) == "score":
                v = mx.stop_gradient(v)
                lp = obj._score(v)
                self._add_sf(lp)
            else:
                lp = obj._score(v)
            st = Trace(obj, (), v, lp)
            self.dist_checks(path, obj)
        elif isinstance(obj, DynamicGenFn):
            st, sf = adev_simulate(obj, args, self.keys.child())
            if sf is not None:
                self._add_sf(sf)
        else:
            st = obj._simulate(args, self.keys.child())
            _check_pathwise(st, path)
        self.record(path, obj, st)
        return st.retval


def _check_pathwise(tr: Trace, path) -> None:
    if tr.sites is None:
        if _is_dist(tr.gen_fn) and strategy(tr.gen_fn) == "score":
            raise ValueError(f"adev: the call at {from_path(path)!r} ({getattr(tr.gen_fn, 'name', tr.gen_fn)}) holds a "
                             "choice that needs a score-function gradient inside a combinator; trace it in a "
                             "@gen function instead")
        return
    for p, st in tr.sites.items():
        _check_pathwise(st, path + p)


def adev_simulate(gen_fn, args: tuple, key) -> tuple[Trace, mx.array | None]:
    """Simulate `gen_fn` with ADEV strategies; returns (trace, summed log density of score-function choices or None)."""
    keys = key if isinstance(key, KeyStream) else KeyStream(key)
    if not isinstance(gen_fn, DynamicGenFn):
        tr = gen_fn._simulate(args, keys)
        _check_pathwise(tr, ())
        return tr, None
    h = _ADEVHandler(gen_fn, keys)
    with h:
        r = gen_fn.fn(*args)
    return gen_fn._make(args, r, h), h.sf


def map_keys(fn: Callable, keys: mx.array, name: str, op: str) -> tuple:
    """`fn(key) -> tuple of arrays` for each key, stacked: one `mx.vmap` pass, else a Python loop."""
    try:
        return tuple(vmap_tree(lambda k: tuple(fn(k)), (keys,), name, op))
    except VectorizationError:
        outs = [tuple(fn(keys[i])) for i in range(keys.shape[0])]
        return tuple(mx.stack(col) for col in zip(*outs))


def _check_baseline(baseline):
    if baseline is None or baseline == "loo" or (isinstance(baseline, (int, float, mx.array))
                                                 and not isinstance(baseline, bool)):
        return baseline
    raise ValueError(f"adev: baseline must be 'loo', None or a number, got {baseline!r}")


def estimate(f: mx.array, sf: mx.array | None, baseline="loo") -> mx.array:
    """The surrogate S over samples `f` [n] with score-function log densities `sf` [n] (or None)."""
    if sf is None:
        return mx.mean(f)
    fs = mx.stop_gradient(f)
    n = f.shape[0]
    if baseline == "loo":
        b = (mx.sum(fs) - fs) / (n - 1) if n > 1 else 0.0
    else:
        b = 0.0 if baseline is None else baseline
    return mx.mean(f + (fs - b) * (sf - mx.stop_gradient(sf)))


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"adev: n_samples must be an int >= 1, got {n!r}")
    return n


def surrogate(objective, *, n_samples: int = 1, baseline="loo", args: tuple = ()) -> Callable:
    """`S(params, key)`: the ADEV surrogate of E[objective(params, *args)] over `n_samples` draws.

    Its value is the Monte Carlo estimate of the expectation; `mx.grad` of it
    is the unbiased ADEV gradient estimate. Use it as `train`'s objective.
    """
    n = _check_n(n_samples)
    baseline = _check_baseline(baseline)
    if not hasattr(objective, "_simulate"):
        raise TypeError(f"adev: objective must be a generative function (@gm.gen), got {type(objective).__name__}")

    def s(params, key):
        box = {}

        def one(k):
            tr, sf = adev_simulate(objective, (params, *args), KeyStream(k))
            f = tr.retval if isinstance(tr.retval, mx.array) else mx.array(tr.retval, dtype=mx.float32)
            if f.size != 1:
                raise ValueError(f"adev: {objective.name} must return a scalar, got shape {tuple(f.shape)}")
            f = f.reshape(()).astype(mx.float32)
            box["sf"] = sf is not None
            return f, (sf if sf is not None else 0.0 * f)

        f, sf = map_keys(one, mx.random.split(key, n), objective.name, "adev")
        return estimate(f, sf if box["sf"] else None, baseline)

    s.__name__ = getattr(objective, "name", "adev_objective")
    return s


def adev_grad(objective, params, key=None, *, n_samples: int = 1, baseline="loo", args: tuple = ()):
    """Estimate E[f] and its gradient in `params` for `objective(params, *args)` returning f.

    Args:
        objective: a `@gm.gen` function of (params, *args) returning a scalar f.
        params: a dict (or list/tuple) of mx.arrays.
        key: an MLX key (same key, same estimate).
        n_samples: draws averaged (one vmap pass).
        baseline: "loo" (leave-one-out mean of the other draws), None, or a number.

    Returns:
        (value, grads): the Monte Carlo estimate of E[f] and a gradient tree
        like `params` (lazy arrays).
    """
    return mx.value_and_grad(surrogate(objective, n_samples=n_samples, baseline=baseline, args=args))(
        params, resolve(key))
