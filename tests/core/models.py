"""Canonical models for the core tests: plain, nested, branching and combinator models.

Each `Case` names a generative function, its args, and whether it can run
vectorized (no Python decision on a random value).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import mlx.core as mx

import genmlx as gm
from genmlx import dist


class Case(NamedTuple):
    name: str
    gf: Any
    args: tuple
    vectorizable: bool = True


# -- plain and nested dynamic models ----------------------------------------------------

@gm.gen
def beta_bernoulli(n):
    """p ~ Beta(2, 2); n Bernoulli(p) observations as scalar sites ("y", i)."""
    p = gm.trace("p", dist.beta(2.0, 2.0))
    for i in range(n):
        gm.trace(("y", i), dist.bernoulli(p))
    return p



@gm.gen
def linreg(xs):
    slope = gm.trace("slope", dist.normal(0.0, 10.0))
    intercept = gm.trace("intercept", dist.normal(0.0, 10.0))
    for i, x in enumerate(xs):
        gm.trace(("y", i), dist.normal(slope * x + intercept, 1.0))
    return slope


@gm.gen
def noisy(mu):
    z = gm.trace("z", dist.normal(mu, 1.0))
    return gm.trace("obs", dist.normal(z, 0.5))


@gm.gen
def shared():
    gm.trace("s", dist.uniform(-1.0, 1.0))


@gm.gen
def nested():
    a = gm.trace("a", dist.normal(0.0, 1.0))
    b = gm.trace("sub", noisy, a)
    gm.splice(shared)
    p = gm.trace("p", dist.beta(2.0, 3.0))
    gm.trace("c", dist.bernoulli(p))
    return a + b


@gm.gen
def branching():
    """Python `if` on a random choice: not vectorizable."""
    c = gm.trace("coin", dist.bernoulli(0.5))
    if c.item():
        gm.trace("heads", dist.normal(0.0, 1.0))
    else:
        gm.trace("tails", dist.uniform(0.0, 1.0))
        gm.trace("extra", dist.normal(1.0, 2.0))
    return c


# -- combinator models ------------------------------------------------------------------------


@gm.gen
def point(x):
    z = gm.trace("z", dist.normal(x, 1.0))
    gm.trace("y", dist.normal(z, 0.5))
    return z


@gm.gen
def step(t, s, drift):
    s2 = gm.trace("s", dist.normal(s + drift, 1.0))
    gm.trace("o", dist.normal(s2, 0.3))
    return s2


@gm.gen
def accumulate(c, x):
    n = gm.trace("n", dist.normal(c + x, 1.0))
    return n, n * 2.0


@gm.gen
def low():
    return gm.trace("x", dist.normal(-2.0, 1.0))


@gm.gen
def high():
    return gm.trace("x", dist.normal(3.0, 0.5))


@gm.gen
def coin_switch():
    """A random index picks the branch (vectorizable: branches share their structure)."""
    k = gm.trace("k", dist.bernoulli(0.4))
    return gm.trace("v", gm.switch(low, high), k)


@gm.gen
def tree_node(depth):
    v = gm.trace("v", dist.normal(0.0, 1.0))
    grow = gm.trace("grow", dist.bernoulli(0.6 if depth < 2 else 0.0))
    return v, ([(depth + 1,), (depth + 1,)] if grow.item() else [])


@gm.gen
def maybe(flag_p):
    on = gm.trace("on", dist.bernoulli(flag_p))
    return gm.trace("m", gm.mask(point), bool(on.item()), 1.0)


@gm.gen
def composite(xs):
    """map_ and unfold inside a dynamic model."""
    drift = gm.trace("drift", dist.normal(0.0, 1.0))
    gm.trace("pts", gm.map_(point), xs)
    return gm.trace("chain", gm.unfold(step), 3, 0.0, drift)


MAP = gm.map_(point)
UNFOLD = gm.unfold(step)
SCAN = gm.scan(accumulate)
SWITCH = gm.switch(low, high)
MIX = gm.mix([low, high], [0.3, -0.2])
RECURSE = gm.recurse(tree_node, combine=lambda v, rs: v + sum(rs))
MASK = gm.mask(point)
VMAP = gm.vmap(point)

CASES = [
    Case("linreg", linreg, ([1.0, 2.0, 3.0],)),
    Case("nested", nested, ()),
    Case("branching", branching, (), vectorizable=False),
    Case("map_", MAP, ([0.5, 1.5, -1.0],)),
    Case("unfold", UNFOLD, (4, 0.0, 0.5)),
    Case("scan", SCAN, (0.0, [1.0, -1.0, 2.0])),
    Case("switch", coin_switch, ()),
    Case("mix", MIX, ()),
    Case("recurse", RECURSE, (0,), vectorizable=False),
    Case("mask", maybe, (0.7,), vectorizable=False),
    Case("vmap", VMAP, (mx.array([0.5, 1.5, -1.0]),)),
    Case("composite", composite, ([1.0, 2.0],)),
]

VECTORIZABLE = [c for c in CASES if c.vectorizable]


def by_name(name: str) -> Case:
    return next(c for c in CASES if c.name == name)
