"""The normal sampler's GPU form (`mx.random.normal`, one fused kernel there) run on this CPU: the
same guarantees as the CPU form (normal draws; a vectorized pass's lane i equals the scalar run with
key i bit for bit; shared-layout lanes distinct and independent), and it really is the form used."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats

import genmlx as gm
from genmlx import dist
from genmlx.distributions import _common

from core import test_shared_layout as shared
from core import test_vectorize as vec
from core.models import VECTORIZABLE


@pytest.fixture(autouse=True)
def gpu_form(monkeypatch):
    monkeypatch.setattr(_common, "_normal_by_erfinv", lambda: True)


def test_the_gpu_form_is_mlx_normal_and_differs_from_the_cpu_form_in_last_bits():
    key = mx.random.key(3)
    got = _common.std_normal(key, (20_000,))
    assert mx.array_equal(got, mx.random.normal(shape=(20_000,), key=key)).item()
    cpu = _common._std_normal(key, (20_000,))  # the same uniforms through Giles' polynomial
    np.testing.assert_allclose(np.asarray(got), np.asarray(cpu), rtol=2e-3, atol=2e-5)  # the far tails: 1e-3


@pytest.mark.parametrize("mu, sigma", [(0.0, 1.0), (1.5, 2.0), (-3.0, 0.1)])
def test_normal_draws_pass_a_ks_test(mu, sigma):
    x = np.asarray(dist.normal(mu, sigma).sample(key=mx.random.key(7), shape=(20_000,)), np.float64)
    assert stats.kstest(x, "norm", args=(mu, sigma)).pvalue > 1e-3


@pytest.mark.parametrize("case", VECTORIZABLE, ids=[c.name for c in VECTORIZABLE])
def test_lanes_equal_scalar_runs_bit_for_bit(case):
    vec.test_vsimulate_lane_i_equals_scalar_run_with_split_key_bit_for_bit(case)
    vec.test_vgenerate_lanes_and_weights_equal_scalar_runs_bit_for_bit(case)


def test_shared_lanes_are_distinct_and_independent():
    shared.test_shared_lanes_are_distinct_and_have_the_right_moments()
    shared.test_a_shared_lane_takes_its_row_of_the_one_draw_without_a_gather()
