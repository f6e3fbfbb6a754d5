"""tiered_compile: unfused until a background process has built the fused kernels, then compiled.

Run on a CPU with mode "tiered" (on a CUDA GPU "auto" picks it): the builder builds CPU kernels
into the machine's kernel cache, as the test process does; the markers go to the test's own
MLX_PTX_CACHE_DIR, so each test starts with none.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import mlx.core as mx
import numpy as np
import pytest

from genmlx import tiered_compile as tc

SCALE = mx.array([1.5, -2.0, 0.25])


def _fn(x, y):
    return mx.exp(x * SCALE) + y * 0.5, (x * y).sum()


def _single(x):
    return mx.tanh(x * SCALE) * 3.0


def _other(x, y):  # the same structure, another constant: another graph
    return mx.exp(x * (SCALE + 1.0)) + y * 0.5, (x * y).sum()


ARGS = (mx.array([0.1, 0.2, 0.3]), mx.array([1.0, 2.0, 3.0]))


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLX_PTX_CACHE_DIR", str(tmp_path / "ptx"))
    return tmp_path


def _wait(t: tc.Tiered, timeout: float = 60.0) -> None:
    if t.builder is not None:
        t.builder.wait(timeout)
    end = time.monotonic() + timeout
    while t.poll() != "fused" and time.monotonic() < end:
        time.sleep(0.05)


def _same(a, b) -> None:
    for x, y in zip(a, b):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=0)


def test_unfused_until_built_then_fused_with_the_same_results():
    t = tc.tiered(_fn, "tiered")
    assert t.form is None
    expected = _fn(*ARGS)
    _same(t(*ARGS), expected)
    assert t.form == "unfused" and t.builder is not None
    _wait(t)
    assert t.form == "fused" and t.builder.returncode == 0
    _same(t(*ARGS), expected)
    assert list(tc.marker_dir().glob("*.built"))
    assert not list(tc.marker_dir().glob("*.building"))  # the builder released its claim


def _built(fn) -> None:
    """`fn`'s fused kernels built on this machine (a first instance's builder ended)."""
    first = tc.tiered(fn, "tiered")
    first(*ARGS)
    _wait(first)


def test_a_later_instance_starts_fused_and_starts_no_builder():
    _built(_fn)
    later = tc.tiered(_fn, "tiered")
    _same(later(*ARGS), _fn(*ARGS))
    assert later.form == "fused" and later.builder is None


def test_a_graph_with_another_constant_is_another_graph():
    _built(_fn)
    other = tc.tiered(_other, "tiered")
    _same(other(*ARGS), _other(*ARGS))
    assert other.form == "unfused" and other.builder is not None
    _wait(other)
    assert len(list(tc.marker_dir().glob("*.built"))) == 2


def test_the_key_is_the_same_in_another_process():
    here = tc._graph_key(_fn, list(ARGS))
    code = ("import mlx.core as mx; from tests.core.test_tiered_compile import _fn, ARGS; "
            "from genmlx.tiered_compile import _graph_key; print(_graph_key(_fn, list(ARGS)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert out.stdout.strip() == here
    assert tc._graph_key(_fn, [mx.stack([ARGS[0]] * 2), ARGS[1]]) != here  # other shapes, another key


def test_a_single_output_stays_a_single_array_when_fused():
    t = tc.tiered(_single, "tiered")
    t(ARGS[0])
    _wait(t)
    out = t(ARGS[0])
    assert isinstance(out, mx.array)
    np.testing.assert_allclose(np.asarray(out), np.asarray(_single(ARGS[0])), rtol=1e-6)


def test_a_second_instance_while_one_builds_waits_for_its_marker():
    first = tc.tiered(_fn, "tiered")
    first(*ARGS)
    second = tc.tiered(_fn, "tiered")
    second(*ARGS)
    assert second.form == "unfused" and second.builder is None  # the first one's builder builds
    _wait(first)
    assert second.poll() == "fused"


def test_a_dead_builders_claim_is_taken_over():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    key = tc._graph_key(_fn, list(ARGS))
    tc.marker_dir().mkdir(parents=True)
    (tc.marker_dir() / f"{key}.building").write_text(str(dead.pid))
    t = tc.tiered(_fn, "tiered")
    t(*ARGS)
    assert t.builder is not None
    _wait(t)
    assert t.form == "fused"


def test_no_builder_beyond_the_machines_limit(monkeypatch):
    monkeypatch.setattr(tc, "MAX_BUILDERS", 1)
    busy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tc.marker_dir().mkdir(parents=True)
        (tc.marker_dir() / "another-graph.building").write_text(str(busy.pid))
        t = tc.tiered(_fn, "tiered")
        _same(t(*ARGS), _fn(*ARGS))
        assert t.form == "unfused" and t.builder is None
    finally:
        busy.kill()
        busy.wait()
    later = tc.tiered(_fn, "tiered")  # the other build has ended: this one builds
    later(*ARGS)
    assert later.builder is not None
    _wait(later)
    assert later.form == "fused"


def test_a_failed_build_keeps_the_run_unfused_and_later_ones_compile_here(monkeypatch):
    failing = ("import sys, os; m = sys.argv[3]; open(m[:-len('.built')] + '.failed', 'w').close(); "
               "os.unlink(sys.argv[4]); sys.exit(3)")
    monkeypatch.setattr(tc, "_BUILD", failing)
    t = tc.tiered(_fn, "tiered")
    t(*ARGS)
    t.builder.wait(30)
    assert t.poll() == "unfused" and t.builder.returncode == 3
    _same(t(*ARGS), _fn(*ARGS))
    later = tc.tiered(_fn, "tiered")
    later(*ARGS)
    assert later.form == "fused" and later.builder is None  # compiled in this process, as "fused" is


def test_modes():
    assert tc.tiered(_fn, "fused").form is None  # decided at the first call
    f, u, a = tc.tiered(_fn, "fused"), tc.tiered(_fn, "unfused"), tc.tiered(_fn, "auto")
    for t in (f, u, a):
        _same(t(*ARGS), _fn(*ARGS))
    assert (f.form, u.form, a.form) == ("fused", "unfused", "fused")  # auto on a CPU: fused
    assert not tc.marker_dir().exists()  # no mode but "tiered" wrote anything here
    with pytest.raises(ValueError, match="mode must be one of"):
        tc.tiered(_fn, "sometimes")


@pytest.mark.parametrize("sampler, extra", [("nuts", {}), ("hmc", {}), ("hmc", {"n_leapfrog": 40}), ("mala", {}),
                                            ("mala_chains", {"n_chains": 3})])
def test_samplers_tiered_are_the_fused_chain_and_say_when_they_fused(sampler, extra):
    from genmlx import inference as infer
    from tests.inference.gradient_models import LR_OBS, XS, linreg

    run = getattr(infer, sampler)  # n_leapfrog = 40: HMC's looped kernel (three tiered pieces)
    kw = dict(addresses=["slope", "intercept"], n_samples=150, burn=100, key=mx.random.key(3), **extra)
    values = (lambda r, a: [float(t[a]) for t in r.traces]) if sampler != "mala_chains" else \
        (lambda r, a: [np.asarray(t[a]).tolist() for t in r.traces])
    fused = run(linreg, (XS,), LR_OBS, fuse="fused", **kw)
    tiered = run(linreg, (XS,), LR_OBS, fuse="tiered", **kw)
    unfused = run(linreg, (XS,), LR_OBS, fuse="unfused", **kw)
    assert "fused_from" not in fused.stats and "fused_from" not in unfused.stats  # a tiered kernel's only
    f = tiered.stats["fused_from"]
    assert f is None or 0 < f <= 250
    for r in (tiered, unfused):  # on a CPU the fused kernels' arithmetic is the prebuilt kernels'
        for a in ("slope", "intercept"):
            np.testing.assert_array_equal(values(r, a), values(fused, a))
    with pytest.raises(ValueError, match=f"{sampler}: fuse must be one of"):
        run(linreg, (XS,), LR_OBS, fuse=True, **kw)


def test_auto_is_tiered_where_the_device_is_a_cuda_gpu(monkeypatch):
    from genmlx import inference as infer
    from tests.inference.gradient_models import LR_OBS, XS, linreg

    monkeypatch.setattr(tc, "_is_cuda", lambda: True)  # what a CUDA GPU's "auto" resolves to, run here
    assert tc.tiered(_fn).mode == "tiered"
    r = infer.nuts(linreg, (XS,), LR_OBS, addresses=["slope", "intercept"], n_samples=40, burn=20,
                   key=mx.random.key(4))
    assert "fused_from" in r.stats and list(tc.marker_dir().glob("*.mlxfn"))
