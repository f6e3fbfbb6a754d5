"""accept_scan.chain_states: the accept recursion of an independence chain, resolved at once, equals the
sequential rule decision for decision (NaN and -inf densities included, across chunk boundaries)."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from genmlx.inference.accept_scan import chain_states, resolve


def sequential(lls, logu, ll0) -> list:
    """The rule as K scalar steps (float32, as the kernels compute it)."""
    f = np.float32
    state, ll, out = 0, f(ll0), [0]
    for j, (l, u) in enumerate(zip(lls, logu), start=1):
        if f(u) < f(l) - ll:  # NaN compares False: never accepted
            state, ll = j, f(l)
        out.append(state)
    return out


@pytest.mark.parametrize("k, chunk", [(1, 512), (2, 512), (7, 512), (50, 512), (300, 64), (129, 128), (600, 256),
                                      (1024, 512), (1025, 512), (2500, 512)])  # the CUDA kernel's tiles: 1,024
def test_chain_states_equal_the_sequential_rule(k, chunk):
    rng = np.random.default_rng(k * 31 + chunk)
    for trial in range(4):
        lls = rng.normal(size=k).astype(np.float32) * 2.0
        lls[rng.random(k) < 0.05] = np.nan  # invalid proposals
        lls[rng.random(k) < 0.05] = -np.inf  # outside the support
        logu = np.log(rng.random(k)).astype(np.float32)
        ll0 = float(rng.normal()) if trial else -math.inf  # a start outside the support moves at once
        got = chain_states(mx.array(lls), mx.array(logu), mx.array(ll0, dtype=mx.float32), chunk=chunk)
        assert got.tolist() == sequential(lls, logu, ll0)


def test_chain_states_under_compile_and_a_chain_that_never_moves():
    k = 40
    lls = mx.full((k,), -1e9)
    logu = mx.log(mx.random.uniform(shape=(k,), key=mx.random.key(0)))
    got = mx.compile(lambda a, b, c: chain_states(a, b, c))(lls, logu, mx.array(0.0))
    assert got.tolist() == [0] * (k + 1)
    always = chain_states(mx.full((k,), 1e9), logu, mx.array(0.0))
    assert always.tolist() == list(range(k + 1))


def sequential_stats(lls, logu, ll0):
    """`resolve`'s accepted flags, accept probabilities and last density by the sequential rule."""
    f = np.float32
    ll, acc, prob = f(ll0), [], []
    for l, u in zip(lls, logu):
        d = f(l) - ll
        prob.append(float(np.exp(np.minimum(d, f(0.0)))))  # NaN stays NaN
        a = bool(f(u) < d)
        acc.append(a)
        if a:
            ll = f(l)
    return acc, prob, float(ll)


@pytest.mark.parametrize("k", [1, 7, 50, 513, 1025])
def test_resolve_reports_the_sequential_rules_decisions(k):
    rng = np.random.default_rng(k)
    for trial in range(3):
        lls = rng.normal(size=k).astype(np.float32) * 2.0
        lls[rng.random(k) < 0.05] = np.nan
        lls[rng.random(k) < 0.05] = -np.inf
        logu = np.log(rng.random(k)).astype(np.float32)
        ll0 = float(rng.normal()) if trial else -math.inf
        states, accepted, prob, last = mx.compile(resolve)(mx.array(lls), mx.array(logu),
                                                            mx.array(ll0, dtype=mx.float32))
        acc, p, l = sequential_stats(lls, logu, ll0)
        assert states.tolist() == sequential(lls, logu, ll0)
        assert accepted.tolist() == acc and last.shape == () and last.item() == l
        np.testing.assert_allclose(np.asarray(prob), p, rtol=1e-6, atol=0)  # NaN where the rule's is NaN
