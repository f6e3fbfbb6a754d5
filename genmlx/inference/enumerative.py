"""Enumerative inference: exact posterior weights over a grid of choices (Gen.jl's `enumerative_inference`).

Math: for each grid point g with choices c_g and log volume v_g (0 for a
discrete grid; log of the cell's width for a gridded continuous choice),
`generate(args, observations + c_g)` gives w_g = log p(c_g, observations)
when the grid and the observations fix every random choice of the model. Then

    log_ml     = logsumexp_g (w_g + v_g)          (exact: log p(observations))
    log_weight = w_g + v_g - log_ml               (exact: log p(c_g | observations))

For a continuous choice the grid is a Riemann sum (midpoint by default) and
both are approximations that converge as the cells shrink. A choice that is
neither observed nor on the grid is sampled from its prior (as in Gen.jl), and
the weights are then an importance-weighted estimate.

One grid point is one step of the loop driver (one `generate` and one
`mx.eval` each), so memory stays flat over a grid of any size.
"""

from __future__ import annotations

import itertools
import math
from typing import Iterable

import numpy as np

from ..address import from_path
from ..choicemap import ChoiceMap, choicemap
from ..gfi import as_choicemap
from ..rng import KeyStream
from ..selection import Selection
from . import driver
from ._common import _bad_score, check_selection, finish_stats, run_name
from .result import Floats, InferenceResult

__all__ = ["enumerative", "choice_vol_grid"]

_SUPPORTS = ("discrete", "continuous")
_ANCHORS = ("midpoint", "left", "right")


def choice_vol_grid(*specs, anchor: str = "midpoint") -> list:
    """The grid of `(choices, log_volume)` pairs over the product of per-address specs.

    Each spec is `(addr, values)` (a discrete choice: each value is a grid point,
    log volume 0) or `(addr, edges, "continuous")` (a scalar continuous choice:
    one point per cell between consecutive increasing `edges`, at its `anchor`,
    "midpoint", "left" or "right", with log volume log(cell width)). A point's log
    volume is the sum over its addresses.
    """
    if anchor not in _ANCHORS:
        raise ValueError(f"choice_vol_grid: anchor must be one of {_ANCHORS}, got {anchor!r}")
    if not specs:
        raise ValueError("choice_vol_grid: give at least one (addr, values[, support]) spec")
    axes = []
    seen = set()
    for j, spec in enumerate(specs):
        if not isinstance(spec, tuple) or len(spec) not in (2, 3):
            raise TypeError(f"choice_vol_grid: spec {j} must be a tuple (addr, values) or (addr, edges, support), got {spec!r}")
        addr, vals = spec[0], spec[1]
        kind = spec[2] if len(spec) == 3 else "discrete"
        if kind not in _SUPPORTS:
            raise ValueError(f"choice_vol_grid: spec {j} ({addr!r}): support must be one of {_SUPPORTS}, got {kind!r}")
        if addr in seen:
            raise ValueError(f"choice_vol_grid: address {addr!r} appears in two specs")
        seen.add(addr)
        vals = list(vals) if not isinstance(vals, np.ndarray) else list(vals)
        if kind == "discrete":
            if not vals:
                raise ValueError(f"choice_vol_grid: spec {j} ({addr!r}): values is empty")
            axes.append([(addr, v, 0.0) for v in vals])
            continue
        try:
            e = np.asarray(vals, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"choice_vol_grid: spec {j} ({addr!r}): edges must be numbers, got {vals!r}") from None
        if e.ndim != 1 or e.size < 2 or not np.all(np.isfinite(e)) or not np.all(np.diff(e) > 0):
            raise ValueError(f"choice_vol_grid: spec {j} ({addr!r}): edges must be at least 2 finite, strictly "
                             f"increasing numbers, got {vals!r}")
        lo, hi = e[:-1], e[1:]
        pts = {"midpoint": lo + (hi - lo) / 2, "left": lo, "right": hi}[anchor]
        axes.append([(addr, float(p), float(math.log(h - l))) for p, l, h in zip(pts, lo, hi)])
    out = []
    for combo in itertools.product(*axes):
        out.append((choicemap({a: v for a, v, _ in combo}), sum(lv for _, _, lv in combo)))
    return out


def _as_grid(grid) -> list:
    """`grid=`: a dict {addr: values} (a discrete grid) or an iterable of (choices, log_volume) pairs."""
    if isinstance(grid, dict):
        if not grid:
            raise ValueError("enumerative: grid is empty")
        return choice_vol_grid(*((a, v) for a, v in grid.items()))
    if isinstance(grid, (str, bytes)) or not isinstance(grid, Iterable):
        raise TypeError(f"enumerative: grid must be a dict {{addr: values}} or an iterable of (choices, log_volume) "
                        f"pairs (see choice_vol_grid), got {type(grid).__name__}")
    points = []
    for i, item in enumerate(grid):
        if not isinstance(item, tuple) or len(item) != 2:
            raise TypeError(f"enumerative: grid point {i} must be a (choices, log_volume) pair, got {item!r}")
        c, lv = item
        if isinstance(lv, bool) or not isinstance(lv, (int, float)) or math.isnan(lv) or lv == math.inf:
            raise ValueError(f"enumerative: grid point {i} has log_volume {lv!r} (need a number < inf)")
        points.append((as_choicemap(c), float(lv)))
    if not points:
        raise ValueError("enumerative: grid is empty")
    return points


def enumerative(model, args: tuple, observations=None, *, grid, key=None, callback=None,
                progress=None) -> InferenceResult:
    """Exact (discrete) or gridded (continuous) posterior by enumeration.

    Args:
        model, args, observations: the target p(choices | observations).
        grid: the points to enumerate: a dict `{addr: values}` (every
            combination of discrete values), or `(choices, log_volume)` pairs
            such as `choice_vol_grid(...)` gives.
        key: an MLX key for choices neither observed nor on the grid.

    Returns:
        `InferenceResult` with `.traces` (one per grid point, in grid order),
        `.log_weights` (normalized: log posterior probability of each point's
        cell), `.log_ml` (log p(observations)), `.stats`: `n_points`,
        `log_weight` (unnormalized, per point), `syncs`, `duration_s`, ...

    Raises:
        ValueError: an empty grid, a grid address that is observed (naming
            `grid` and the address), a grid point the model never visits, or
            every point of zero density / a NaN weight (naming the site).
    """
    obs = as_choicemap(observations)
    points = _as_grid(grid)
    paths = {p for c, _ in points for p in c.paths()}
    check_selection("enumerative", Selection(paths), obs, param="grid")
    model._check_args(args)
    merged = [ChoiceMap._from_leaves({**obs._leaves, **c._leaves}) for c, _ in points]
    vols = [lv for _, lv in points]

    def step(k, i):
        tr, w = model._generate(args, merged[i], KeyStream(k))
        return driver.Step(i + 1, tr, {"log_weight": w + vols[i]})

    res = driver.run(step, 0, len(points), algorithm="enumerative", model=run_name(model), key=key,
                     params={"n_points": len(points)}, callback=callback, progress=progress)
    traces = res.samples
    lw = np.asarray(res.stats["log_weight"], dtype=np.float64)
    if np.isnan(lw).any():
        i = int(np.flatnonzero(np.isnan(lw))[0])
        raise ValueError(f"enumerative: grid point {i} ({_show(points[i][0])}) has a NaN log weight: "
                         + _bad_score("enumerative", traces[i], merged[i], math.nan))
    top = lw.max()
    if top == -math.inf:
        raise ValueError(f"enumerative: every one of the {lw.size} grid points has log weight -inf; "
                         + _bad_score("enumerative", traces[0], merged[0], -math.inf))
    log_ml = float(top + math.log(np.exp(lw - top).sum()))
    stats = finish_stats(res)
    stats["n_points"] = len(points)
    return InferenceResult(traces, stats, log_weights=Floats(lw - log_ml), log_ml=log_ml)


def _show(c: ChoiceMap) -> str:
    return ", ".join(f"{from_path(p)!r}: {v.tolist() if hasattr(v, 'tolist') else v}" for p, v in c._leaves.items())
