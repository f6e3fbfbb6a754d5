"""Issue 22 regressions: gm.vmap over zero elements; gm.switch changing branch keeps shared addresses.

The vmap case runs in a child process: before the fix MLX died with SIGFPE, which would kill pytest.
"""

import subprocess
import sys
import textwrap

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats

import genmlx as gm
from genmlx import dist


def test_vmap_over_zero_elements_is_an_empty_trace_not_a_signal():
    code = textwrap.dedent("""
        import mlx.core as mx, genmlx as gm
        from genmlx import dist
        @gm.gen
        def k(x, s):
            a = gm.trace("a", dist.normal(x, s))
            gm.trace("b", dist.bernoulli(0.3))
            return a + x
        v = gm.vmap(k, (0, None))
        args = (mx.zeros((0,)), 1.0)
        tr = v.simulate(args)
        print(tr.get_score().item(), tuple(tr["a"].shape), tuple(tr["b"].shape), tuple(tr.get_retval().shape))
        t2, w = v.generate(args, {"a": mx.zeros((0,))}); print(w.item())
        t3, w, d = v.update(tr, {"a": mx.zeros((0,))}); print(w.item())
        t4, w = v.regenerate(tr, gm.select("a")); print(w.item())
        print(v.project(tr, gm.select("a")).item())
        print(v.assess(args, {"a": mx.zeros((0,)), "b": mx.zeros((0,), dtype=mx.bool_)})[0].item())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"exit code {out.returncode} (negative: a signal): {out.stderr[-2000:]}"
    lines = out.stdout.split("\n")
    assert lines[0] == "0.0 (0,) (0,) (0,)"
    assert lines[1:6] == ["0.0"] * 5


def test_vmap_over_zero_elements_matches_map_over_zero_elements():
    @gm.gen
    def k(x):
        return gm.trace("y", dist.normal(x, 1.0))

    v = gm.vmap(k).simulate((mx.zeros((0,)),))
    m = gm.map_(k).simulate(([],))
    assert v.get_score().item() == m.get_score().item() == 0.0
    assert v["y"].shape == (0,) and len(m.get_choices()) == 0


def test_vmap_over_zero_elements_still_checks_python_parameters():
    @gm.gen
    def k(x):
        return gm.trace("y", dist.normal(x, -1.0))

    with pytest.raises(ValueError, match="sigma.*'y'"):
        gm.vmap(k).simulate((mx.zeros((0,)),))


# -- switch: an address shared through different callees ------------------------------------------

@gm.gen
def _inner_a():
    return gm.trace("x", dist.normal(0.0, 1.0))


@gm.gen
def _inner_b():
    x = gm.trace("x", dist.normal(1.0, 2.0))
    return gm.trace("z", dist.normal(x, 1.0))


@gm.gen
def _branch_a():
    return gm.trace("sub", _inner_a)


@gm.gen
def _branch_b():
    return gm.trace("sub", _inner_b)


SW = gm.switch(_branch_a, _branch_b)


def _gen_weight(new_branch_logpdf_of_kept_and_constrained, old_score):
    """Gen's Switch (src/modeling_library/switch/update.jl): generate(new branch, merge(old choices,
    constraints)) gives w = log density of every merged choice the new branch visits; weight = w - old score."""
    return new_branch_logpdf_of_kept_and_constrained - old_score


def test_switch_branch_change_keeps_and_rescores_an_address_reached_through_another_callee():
    tr = SW.simulate((0,), key=mx.random.key(0))
    x = tr[("sub", "x")].item()
    new, w, d = SW.update(tr, None, args=(1,), key=mx.random.key(1))
    assert new[("sub", "x")].item() == x  # kept, not drawn fresh
    z = new[("sub", "z")].item()
    np.testing.assert_allclose(new.score.item(), stats.norm.logpdf(x, 1, 2) + stats.norm.logpdf(z, x, 1), rtol=1e-5)
    gen = _gen_weight(stats.norm.logpdf(x, 1.0, 2.0), stats.norm.logpdf(x, 0.0, 1.0))
    np.testing.assert_allclose(w.item(), gen, rtol=1e-5, atol=1e-5)
    assert len(d) == 0 and new.aux[0] == 1


def test_switch_branch_change_back_removes_the_extra_choice_and_discards_it():
    tr = SW.simulate((1,), key=mx.random.key(2))
    x, z = tr[("sub", "x")].item(), tr[("sub", "z")].item()
    back, w, d = SW.update(tr, None, args=(0,))
    assert back[("sub", "x")].item() == x and d.addresses() == [("sub", "z")] and d[("sub", "z")].item() == z
    np.testing.assert_allclose(w.item(), _gen_weight(stats.norm.logpdf(x, 0, 1), tr.score.item()), rtol=1e-5, atol=1e-5)


def test_switch_branch_change_with_a_constraint_on_the_shared_address():
    tr = SW.simulate((0,), key=mx.random.key(3))
    x_old = tr[("sub", "x")].item()
    new, w, d = SW.update(tr, {("sub", "x"): 0.25}, args=(1,), key=mx.random.key(4))
    assert new[("sub", "x")].item() == 0.25 and d[("sub", "x")].item() == x_old
    np.testing.assert_allclose(w.item(), _gen_weight(stats.norm.logpdf(0.25, 1, 2), tr.score.item()), rtol=1e-5, atol=1e-5)


def test_switch_branch_change_with_a_constraint_the_new_branch_never_visits_raises():
    tr = SW.simulate((0,), key=mx.random.key(5))
    with pytest.raises(gm.AddressError, match="nope"):
        SW.update(tr, {"nope": 1.0}, args=(1,))
