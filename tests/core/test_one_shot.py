"""`fuse.one_shot`: work done once per run builds no compiled kernel, and gives the same values.

MLX compiles each new fused kernel once per machine (C++ on a CPU, NVRTC on a GPU) and keeps it
under `$TMPDIR/mlx/<version>/`; a kernel that runs once pays that for nothing. The kernel files
are counted in a fresh process with its own TMPDIR, so the count starts from an empty cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import mlx.core as mx
import numpy as np
import pytest

from genmlx.distributions import beta, gamma, normal
from genmlx.special.fuse import compiled, fused, one_shot

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _kernels_built(tmp_path, body: str) -> dict:
    """Run `body` in a fresh process whose MLX kernel cache starts empty; returns the dict `out`
    it fills. `built()` there counts the kernel libraries MLX has written (one per kernel compiled)."""
    script = textwrap.dedent("""
        import glob, json, os, sys
        import mlx.core as mx
        def built():
            return len(glob.glob(os.path.join(os.environ["TMPDIR"], "mlx", "*", "*", "*.so")))
        out = {}
    """) + textwrap.dedent(body) + "\nprint(json.dumps(out))\n"
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": ROOT}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(mx.default_device() != mx.cpu, reason="counts the CPU backend's kernel files")
def test_sampler_setup_builds_no_kernel_and_a_compiled_call_does(tmp_path):
    out = _kernels_built(tmp_path, """
        from genmlx.inference._gradient import initial_gradient, setup
        from tests.inference.gradient_models import LR_VEC_ARGS, LR_VEC_OBS, linreg_vec
        s = setup("nuts", linreg_vec, LR_VEC_ARGS, LR_VEC_OBS, ["slope", "intercept"], mx.random.key(0))
        lp, g = initial_gradient(mx.value_and_grad(s.logp), s.z0)
        mx.eval(lp, g)
        out["setup"] = built()
        lp, g = mx.compile(mx.value_and_grad(s.logp))(s.z0)
        mx.eval(lp, g)
        out["compiled"] = built()
    """)
    assert out["setup"] == 0
    assert out["compiled"] > 0  # the count sees kernels: the zero above is not for want of looking


def test_fused_and_compiled_run_plainly_inside_and_agree():
    calls = []

    def body(x, y):
        calls.append(1)  # runs when traced for the compiled kernel, or on every plain call
        return mx.exp(x) * y + 1.0

    f, g = fused(body), compiled(lambda x: mx.sqrt(x) + 2.0)
    x = mx.array([0.5, 1.5, -2.0])
    want_f, want_g = f(x, 3.0), g(mx.abs(x))
    mx.eval(want_f, want_g)
    traced = len(calls)
    f(x, 3.0)
    assert len(calls) == traced  # compiled: the body is not run again
    with one_shot():
        got_f, got_g = f(x, 3.0), g(mx.abs(x))
        assert len(calls) == traced + 1  # plain: the body runs
    np.testing.assert_allclose(np.asarray(got_f), np.asarray(want_f), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(got_g), np.asarray(want_g), rtol=1e-6)
    f(x, 3.0)
    assert len(calls) == traced + 1  # outside again: compiled


@pytest.mark.parametrize("dist", [normal(0.5, 2.0), gamma(0.7, 1.3), beta(2.0, 3.0)], ids=["normal", "gamma", "beta"])
def test_draws_and_scores_agree_inside_one_shot(dist):
    key = mx.random.key(7)
    x = dist.sample(key, (64,))
    lp = dist.log_prob(x)
    with one_shot():
        x1 = dist.sample(key, (64,))
        lp1 = dist.log_prob(x1)
    np.testing.assert_allclose(np.asarray(x1), np.asarray(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(lp1), np.asarray(lp), rtol=1e-5, atol=1e-5)


def test_one_shot_is_a_threads_own_and_ends_on_error():
    import threading

    seen = []
    with pytest.raises(RuntimeError):
        with one_shot():
            t = threading.Thread(target=lambda: seen.append(_inside()))
            t.start()
            t.join()
            seen.append(_inside())
            raise RuntimeError("boom")
    assert seen == [False, True]
    assert not _inside()


def _inside() -> bool:
    from genmlx.special import fuse
    return fuse._ONE_SHOT.get()

