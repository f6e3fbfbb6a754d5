"""compiled_gibbs: exact posteriors, agreement with gibbs, blocks and thinning, fallback, memory, same key."""

from __future__ import annotations

import itertools
import math

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats as sps

import genmlx as gm
from genmlx import dist, events, flat_density
from genmlx import inference as infer
from genmlx.distributions.base import Distribution
from genmlx.inference.compiled_gibbs import CompiledGibbs, _default_block, kernel_for
from memory_flat import FlatRecorder, KeepStore

from .discrete_models import two_bits, two_bits_posterior

# -- a model of four dependent discrete sites ------------------------------------------------------

C_PROBS = [0.5, 0.3, 0.2]
C_LOGITS = mx.log(mx.array(C_PROBS))
Y_OBS = 0.3
FOUR = ["a", "b", "c", "d"]


@gm.gen
def four():
    a = gm.trace("a", dist.bernoulli(0.4))
    b = gm.trace("b", dist.bernoulli(0.3 + 0.4 * a))
    c = gm.trace("c", dist.categorical(C_LOGITS))
    d = gm.trace("d", dist.bernoulli(0.1 + 0.2 * a + 0.25 * b + 0.2 * c))
    gm.trace("y", dist.normal(a + 2.0 * b - 1.5 * c + d, 1.0))


def four_posterior() -> dict:
    """p(a, b, c, d | y), by enumeration of the 24 joint states."""
    joint = {}
    for a, b, c, d in itertools.product((0, 1), (0, 1), (0, 1, 2), (0, 1)):
        pb, pd = 0.3 + 0.4 * a, 0.1 + 0.2 * a + 0.25 * b + 0.2 * c
        joint[(a, b, c, d)] = ((0.4 if a else 0.6) * (pb if b else 1 - pb) * C_PROBS[c] * (pd if d else 1 - pd)
                               * sps.norm.pdf(Y_OBS, a + 2 * b - 1.5 * c + d, 1.0))
    z = sum(joint.values())
    return {s: p / z for s, p in joint.items()}


def frequencies(res, addresses) -> dict:
    cols = list(zip(*(res.values(a) for a in addresses)))
    n = len(cols)
    out: dict = {}
    for s in cols:
        out[s] = out.get(s, 0) + 1 / n
    return out


@pytest.mark.statistical
def test_visited_states_match_the_enumerated_posterior():
    res = infer.compiled_gibbs(four, (), {"y": Y_OBS}, addresses=FOUR, n_samples=4000, key=mx.random.key(1))
    assert res.stats["compiled"] is True and res.stats["syncs"] == 0
    post, freq = four_posterior(), frequencies(res, FOUR)
    tv = 0.5 * sum(abs(freq.get(s, 0.0) - p) for s, p in post.items())
    # 24 states, 4000 sweeps, ESS per site >= 700 (measured 730-2100): the TV distance of 700 iid
    # draws from this posterior averages 0.056 (simulated, sd 0.011); 0.10 is that mean + 4 sd
    assert tv < 0.10, tv


# -- the mixture: many assignment sites, exact per-site posteriors ----------------------------------

WEIGHTS = [0.5, 0.3, 0.2]
MEANS = [-2.0, 0.0, 3.0]
LOG_W, MEANS_MX = mx.log(mx.array(WEIGHTS)), mx.array(MEANS)
N_MIX = 48


@gm.gen
def mixture(n):
    for i in range(n):
        z = gm.trace(("z", i), dist.categorical(LOG_W))
        gm.trace(("y", i), dist.normal(mx.take(MEANS_MX, z), 1.0))


def mixture_data(n: int):
    rng = np.random.default_rng(0)
    ys = np.asarray(MEANS)[rng.choice(3, size=n, p=WEIGHTS)] + rng.standard_normal(n)
    return {("y", i): float(y) for i, y in enumerate(ys)}, [("z", i) for i in range(n)]


@pytest.mark.statistical
def test_mixture_marginals_match_the_exact_per_site_posteriors():
    obs, zs = mixture_data(N_MIX)
    n = 1200
    res = infer.compiled_gibbs(mixture, (N_MIX,), obs, addresses=zs, n_samples=n, key=mx.random.key(2))
    # the speed lives in benchmarks/test_bench_gibbs.py; here: it compiled, and no host sync
    assert res.stats["compiled"] is True and res.stats["syncs"] == 0
    assert res.stats["iterations_per_step"] == round(500 / N_MIX) and len(res.traces) == n
    for i, z in enumerate(zs):
        lik = np.asarray(WEIGHTS) * np.exp(-0.5 * (obs[("y", i)] - np.asarray(MEANS)) ** 2)
        post = lik / lik.sum()
        draws = res.traces.array(z)
        for k in range(3):
            # with fixed means each sweep draws z_i exactly from its posterior (iid draws): 4.5
            # binomial SEs per frequency (144 comparisons: false alarm rate about 0.1% in all)
            se = math.sqrt(post[k] * (1 - post[k]) / n)
            assert abs(np.mean(draws == k) - post[k]) <= 4.5 * se + 1e-9, (i, k)


@pytest.mark.statistical
def test_agrees_with_gibbs():
    kw = dict(addresses=FOUR, key=mx.random.key(3))
    fast = infer.compiled_gibbs(four, (), {"y": Y_OBS}, n_samples=4000, **kw)
    slow = infer.gibbs(four, (), {"y": Y_OBS}, n_samples=800, **kw)
    assert fast.stats["compiled"] is True
    for addr, values in [("a", (1,)), ("b", (1,)), ("c", (0, 1, 2)), ("d", (1,))]:
        x, y = np.asarray(fast.values(addr)), np.asarray(slow.values(addr))
        for v in values:
            p, q = np.mean(x == v), np.mean(y == v)
            # each frequency with an ESS of a fifth of its draws (measured: a third or more): 4 SEs of the difference
            pp = max((p + q) / 2, 0.02)
            se = math.sqrt(pp * (1 - pp) * (5 / len(x) + 5 / len(y)))
            assert abs(p - q) < 4 * se, (addr, v, p, q)


# -- blocks, burn-in, thinning, validation ----------------------------------------------------------

def run_four(**kw):
    return infer.compiled_gibbs(four, (), {"y": Y_OBS}, addresses=FOUR, key=mx.random.key(5), **kw)


def test_thin_keeps_every_thin_th_sweep_of_the_same_chain():
    every = run_four(n_samples=150, iterations_per_step=10)
    thinned = run_four(n_samples=30, thin=5, iterations_per_step=10)
    assert len(thinned.traces) == 30 and thinned.stats["iterations"] == 150
    for a in FOUR:
        assert thinned.values(a) == every.values(a)[::5]


def test_burn_is_rounded_up_to_whole_blocks():
    whole = run_four(n_samples=60, iterations_per_step=10)
    burned = run_four(n_samples=30, burn=25, iterations_per_step=10)  # 3 blocks of burn-in
    assert burned.stats["iterations"] == 60 and len(burned.traces) == 30
    assert burned.values("c") == whole.values("c")[30:]


def test_a_block_that_does_not_divide_n_samples():
    res = run_four(n_samples=25, iterations_per_step=10)
    assert len(res.traces) == 25 and res.stats["iterations"] == 30 and res.stats["steps"] == 3
    assert res.stats["iterations_per_step"] == 10
    # a kept view is the model's trace at those values, scored anew
    tr = res.traces[24]
    assert int(tr["c"].item()) == res.values("c")[24]
    score, _ = four.assess((), gm.choicemap({**{a: tr[a] for a in FOUR}, "y": Y_OBS}))
    assert tr.score.item() == pytest.approx(score.item(), rel=1e-5)
    # the final state is the last block's: after sweep 30, the 30th kept of the same chain run longer
    longer = run_four(n_samples=30, iterations_per_step=10)
    assert longer.values("c")[:25] == res.values("c")
    assert [int(res.state[a].item()) for a in FOUR] == [longer.values(a)[29] for a in FOUR]
    assert res.state.score.item() == pytest.approx(longer.traces[29].score.item(), rel=1e-5)


@pytest.mark.parametrize("n_samples, burn, thin, n_sites, k", [
    (4000, 0, 1, 4, 125),  # about 500 site updates
    (4000, 0, 1, 40, 12),
    (4000, 0, 5, 40, 10),  # the multiple of thin nearest 12
    (50, 0, 1, 4, 50),  # a short run: one block of its length
    (0, 30, 1, 4, 30),  # burn-in only
])
def test_default_block_length(n_samples, burn, thin, n_sites, k):
    assert _default_block(n_samples, burn, thin, n_sites) == k


def test_default_block_of_a_run():
    res = run_four(n_samples=40, thin=2)
    assert res.stats["iterations_per_step"] == 80 and len(res.traces) == 40


@pytest.mark.parametrize("kw, match", [
    ({"iterations_per_step": 0}, "iterations_per_step must be >= 1"),
    ({"iterations_per_step": 4, "thin": 3}, r"iterations_per_step \(4\) must be a multiple of thin \(3\)"),
    ({"thin": 0}, "thin must be >= 1"),
    ({"burn": -1}, "burn must be >= 0"),
])
def test_bad_block_parameters(kw, match):
    with pytest.raises(ValueError, match=match):
        infer.compiled_gibbs(four, (), {"y": Y_OBS}, addresses=FOUR, n_samples=10, **kw)


@pytest.mark.parametrize("kw, match", [
    ({"addresses": ["a"], "n_samples": -1}, "n_samples"),
    ({"addresses": [], "n_samples": 5}, "addresses"),
    ({"addresses": ["zz"], "n_samples": 5}, "'zz' is not a random choice"),
    ({"addresses": ["y"], "n_samples": 5}, "observed address 'y'"),
])
def test_bad_addresses_as_gibbs(kw, match):
    for alg in (infer.gibbs, infer.compiled_gibbs):
        with pytest.raises(ValueError, match=match):
            alg(four, (), {"y": Y_OBS}, **kw)


@gm.gen
def gauss():
    gm.trace("x", dist.normal(0.0, 1.0))


def test_continuous_site_is_rejected():
    with pytest.raises(ValueError, match="'x' has distribution normal, whose support is not finite"):
        infer.compiled_gibbs(gauss, (), {}, addresses=["x"], n_samples=3)


# -- fallback -----------------------------------------------------------------------------------------

@gm.gen
def branchy():
    k = gm.trace("k", dist.bernoulli(0.3))
    if k.item():  # a Python branch on the value: the sites change with it
        gm.trace("x", dist.bernoulli(0.9))
    gm.trace("y", dist.normal(2.0 * k, 1.0))


@pytest.mark.statistical
def test_a_structure_change_runs_gibbs():
    kw = dict(addresses=["k"], n_samples=600, key=mx.random.key(6))
    res = infer.compiled_gibbs(branchy, (), {"y": 1.5}, **kw)
    assert res.stats["compiled"] is False and "flatten" in res.stats["fallback"]
    assert res.values("k") == infer.gibbs(branchy, (), {"y": 1.5}, **kw).values("k")  # gibbs' chain, same keys
    w1, w0 = 0.3 * sps.norm.pdf(1.5, 2.0, 1.0), 0.7 * sps.norm.pdf(1.5, 0.0, 1.0)
    p = w1 / (w0 + w1)
    # one site: each sweep is an exact draw from p(k | y), iid; 4 binomial SEs
    assert abs(np.mean(res.values("k")) - p) < 4 * math.sqrt(p * (1 - p) / 600)


@pytest.mark.statistical
def test_a_model_comparing_random_values_compiles_and_is_right():
    # two_bits compares random values with == (an array while flattening, as on MLX arrays)
    res = infer.compiled_gibbs(two_bits, (), {"c": 1}, addresses=["a", "b"], n_samples=1200, key=mx.random.key(1))
    assert res.stats["compiled"] is True
    pairs = list(zip(res.values("a"), res.values("b")))
    for s, p in two_bits_posterior().items():
        freq = sum(1 for q in pairs if q == s) / len(pairs)
        # as test_gibbs: 4 SEs with an ESS of a quarter of the draws
        assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / (len(pairs) / 4)), (s, freq, p)


@gm.gen
def four_other():  # four's sites with another dependence: a density four's kernel must not use
    a = gm.trace("a", dist.bernoulli(0.4))
    b = gm.trace("b", dist.bernoulli(0.7 - 0.4 * a))
    c = gm.trace("c", dist.categorical(C_LOGITS))
    d = gm.trace("d", dist.bernoulli(0.1 + 0.2 * a + 0.25 * b + 0.2 * c))
    gm.trace("y", dist.normal(a + 2.0 * b - 1.5 * c + d, 1.0))


def test_a_flattened_density_that_disagrees_with_the_model_is_not_used(monkeypatch):
    build = flat_density.build
    monkeypatch.setattr(flat_density, "build", lambda model, *a, **k: build(four_other, *a, **k))
    tr, _ = four.generate((), {"y": Y_OBS}, key=mx.random.key(0))
    kernel = CompiledGibbs(tr, [(a,) for a in FOUR], 4, 1)
    assert kernel.compiled is False and "disagrees" in kernel.reason


class UpTo(Distribution):
    """Uniform on 0..n, its support enumerated from its parameter's value."""

    name = "up_to"

    def __init__(self, n):
        super().__init__()
        self.n = n

    def _sample(self, key, shape):
        return mx.floor(mx.random.uniform(shape=shape, key=key) * (self.n + 1)).astype(mx.int32)

    def _log_prob(self, x):
        return mx.where((x >= 0) & (x <= self.n), -mx.log(self.n + 1.0), -mx.inf)

    def enumerate_support(self):
        return list(range(int(self.n) + 1))


@gm.gen
def growing():
    a = gm.trace("a", dist.bernoulli(0.5))
    k = gm.trace("k", UpTo(1 + a))
    gm.trace("y", dist.normal(1.0 * k, 1.0))


def test_a_support_that_follows_other_values_runs_gibbs():
    res = infer.compiled_gibbs(growing, (), {"y": 1.8}, addresses=["a", "k"], n_samples=20, key=mx.random.key(0))
    assert res.stats["compiled"] is False and "support of address 'k'" in res.stats["fallback"]
    assert set(res.values("k")) <= {0, 1, 2}


@gm.gen
def invalid_corner():
    a = gm.trace("a", dist.bernoulli(0.5))
    b = gm.trace("b", dist.bernoulli(0.5))
    gm.trace("y", dist.exponential(1.0 - 2.0 * a * b))  # a rate <= 0 at a = b = 1


def test_a_nan_conditional_is_an_error_naming_the_address():
    init, _ = invalid_corner.generate((), {"a": 1, "b": 0, "y": 0.5})
    with pytest.raises(ValueError, match="full conditional of address '[ab]' is NaN"):
        infer.compiled_gibbs(invalid_corner, (), {"y": 0.5}, addresses=["a", "b"], n_samples=50, init=init,
                             key=mx.random.key(0))


# -- flat_density's readers, the kernel cache ----------------------------------------------------------

def test_readers_are_the_sites_whose_parameters_read_a_variable():
    tr, _ = four.generate((), {"y": Y_OBS}, key=mx.random.key(0))
    flat = flat_density.build(four, (), tr.get_choices(), FOUR)
    assert flat.readers("a") == [("b",), ("d",), ("y",)]
    assert flat.readers("c") == [("d",), ("y",)]
    assert flat.readers(("d",)) == [("y",)]
    with pytest.raises(ValueError, match="not a variable"):
        flat.readers("y")


def test_the_kernel_is_cached_per_run_and_not_reused_for_other_observations():
    tr, _ = four.generate((), {"y": Y_OBS}, key=mx.random.key(0))
    paths = [(a,) for a in FOUR]
    kernel = kernel_for(tr, paths, 10, 1)
    assert kernel_for(four.generate((), {"y": Y_OBS}, key=mx.random.key(1))[0], paths, 10, 1) is kernel
    assert kernel_for(four.generate((), {"y": -1.0}, key=mx.random.key(1))[0], paths, 10, 1) is not kernel
    assert kernel_for(tr, paths, 20, 1) is not kernel


# -- memory, same key ----------------------------------------------------------------------------------

def test_compiled_gibbs_memory_flat_under_budget():
    rec = FlatRecorder(every=10, warmup=20)
    with gm.memory.budget(499_000), events.subscribed(KeepStore(rec)):
        res = infer.compiled_gibbs(four, (), {"y": Y_OBS}, addresses=FOUR, n_samples=600, iterations_per_step=2,
                                   key=mx.random.key(0), callback=rec)
    assert res.stats["steps"] == 300
    rec.assert_flat()


def test_same_key_same_chain():
    a, b = run_four(n_samples=60, iterations_per_step=20), run_four(n_samples=60, iterations_per_step=20)
    for addr in FOUR:
        assert a.values(addr) == b.values(addr)
    other = infer.compiled_gibbs(four, (), {"y": Y_OBS}, addresses=FOUR, n_samples=60, iterations_per_step=20,
                                 key=mx.random.key(6))
    assert any(other.values(x) != a.values(x) for x in FOUR)


_HMM_T = [[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]]
_HMM_MEANS = [-2.0, 0.0, 2.0]
_HMM_Y = [-2.1, -1.5, 0.2, 0.1, 2.3, 1.9]


@gm.gen
def hmm(n):
    """A 3-state HMM: each state's categorical reads the previous state (its logits are computed)."""
    log_t, means = mx.log(mx.array(_HMM_T)), mx.array(_HMM_MEANS)
    z = gm.trace(("z", 0), dist.categorical(mx.zeros(3)))
    for i in range(n):
        if i:
            z = gm.trace(("z", i), dist.categorical(mx.take(log_t, z, axis=0)))
        gm.trace(("y", i), dist.normal(mx.take(means, z), 1.0))


def _hmm_marginals() -> np.ndarray:
    """p(z_i = s | y) for every i, s, by enumerating the 3^6 state paths."""
    import itertools

    n, out = len(_HMM_Y), np.zeros((len(_HMM_Y), 3))
    for path in itertools.product(range(3), repeat=n):
        w = 1 / 3 * np.prod([_HMM_T[a][b] for a, b in zip(path, path[1:])])
        w *= np.prod([sps.norm.pdf(y, _HMM_MEANS[s], 1.0) for y, s in zip(_HMM_Y, path)])
        out[range(n), path] += w
    return out / out[0].sum()


@pytest.mark.statistical
def test_an_hmm_whose_categoricals_read_other_states_compiles_and_matches_its_posterior():
    obs = {("y", i): y for i, y in enumerate(_HMM_Y)}
    zs = [("z", i) for i in range(len(_HMM_Y))]
    res = infer.compiled_gibbs(hmm, (len(_HMM_Y),), obs, addresses=zs, n_samples=3000, key=mx.random.key(2))
    assert res.stats["compiled"] is True, res.stats.get("fallback")
    exact = _hmm_marginals()
    for i, p in enumerate(zs):
        freq = np.bincount(np.asarray(res.values(p)).astype(int), minlength=3) / 3000
        # sticky transitions: neighbouring sweeps are correlated; 4 SEs at an ESS of a tenth of the draws
        tol = 4 * np.sqrt(exact[i] * (1 - exact[i]) / 300) + 1e-3
        assert np.all(np.abs(freq - exact[i]) < tol), (p, freq, exact[i])
