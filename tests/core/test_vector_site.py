"""A site whose distribution has array parameters scores its whole value as one choice (a scalar)."""

import mlx.core as mx
import numpy as np
from scipy import stats

import genmlx as gm
from genmlx import dist

XS = np.array([1.0, 2.0, 3.0])
YS = np.array([3.1, 5.0, 6.9])


@gm.gen
def linreg_vec(xs):
    slope = gm.trace("slope", dist.normal(0.0, 10.0))
    intercept = gm.trace("intercept", dist.normal(0.0, 10.0))
    gm.trace("y", dist.normal(slope * xs + intercept, 1.0))


def _exact(s, b):
    return (stats.norm.logpdf(s, 0, 10) + stats.norm.logpdf(b, 0, 10)
            + stats.norm.logpdf(YS, s * XS + b, 1.0).sum())


def test_vector_site_score_is_the_sum_of_its_elements():
    tr, w = linreg_vec.generate((mx.array(XS),), {"y": mx.array(YS)}, key=mx.random.key(3))
    s, b = tr["slope"].item(), tr["intercept"].item()
    assert tr.score.shape == () and w.shape == ()
    np.testing.assert_allclose(tr.score.item(), _exact(s, b), rtol=1e-5)
    np.testing.assert_allclose(w.item(), stats.norm.logpdf(YS, s * XS + b, 1.0).sum(), rtol=1e-5)


def test_vector_site_assess_and_update_weights():
    args = (mx.array(XS),)
    choices = {"slope": 2.0, "intercept": 1.0, "y": mx.array(YS)}
    lp, _ = linreg_vec.assess(args, choices)
    assert lp.shape == ()
    np.testing.assert_allclose(lp.item(), _exact(2.0, 1.0), rtol=1e-5)
    tr, _ = linreg_vec.generate(args, choices, key=mx.random.key(0))
    tr2, w, _ = linreg_vec.update(tr, {"slope": 1.5})
    np.testing.assert_allclose(w.item(), _exact(1.5, 1.0) - _exact(2.0, 1.0), rtol=1e-4)
    assert tr2.score.shape == ()


def test_vector_site_under_vectorized_generate():
    args = (mx.array(XS),)
    vtr, w = linreg_vec.vgenerate(args, {"y": mx.array(YS)}, 16, key=mx.random.key(1))
    assert w.shape == (16,) and vtr.score.shape == (16,)
    s, b = np.array(vtr["slope"]), np.array(vtr["intercept"])
    want = [stats.norm.logpdf(YS, si * XS + bi, 1.0).sum() for si, bi in zip(s, b)]
    np.testing.assert_allclose(np.array(w), want, rtol=1e-5)
