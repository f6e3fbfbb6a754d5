"""World size 1 (a process on its own) and the group's pieces that need no second process."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

import genmlx.distributed as gd
from genmlx import inference as infer, select
from genmlx.distributed.group import Group, _to_words

import dist_models as dm


class _Inner:
    """Stands in for an mx.distributed group in the sharding arithmetic (no collective is called)."""

    def __init__(self, rank, size):
        self._r, self._s = rank, size

    def rank(self):
        return self._r

    def size(self):
        return self._s


def test_a_process_on_its_own_is_world_size_1():
    g = gd.world()
    assert (g.rank, g.size) == (0, 1) and gd.current() is g
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(g.all_gather(x), x[None])
    np.testing.assert_array_equal(g.gather_rows(x), x)
    other = Group(None, "single", timeout_s=1.0)
    with gd.using(other):
        assert gd.current() is other
    assert gd.current() is g


@pytest.mark.parametrize("size,n", [(2, 11), (3, 10), (4, 4)])
def test_shards_cover_the_items_once(size, n):
    shards = [Group(_Inner(r, size)).shard(n) for r in range(size)]
    assert sum(c for _, c in shards) == n
    assert [s for s, _ in shards] == list(np.cumsum([0] + [c for _, c in shards[:-1]]))
    assert max(c for _, c in shards) - min(c for _, c in shards) <= 1


def test_bad_counts_and_keys_are_named():
    g = Group(_Inner(0, 4))
    with pytest.raises(ValueError, match="n_particles must be an int >= the world size 4"):
        g.shard(3, "n_particles")
    with pytest.raises(ValueError, match="key"):
        gd.importance_sampling(dm.linreg, dm.ARGS, dm.OBS, n_particles=10, key=None, group=g)
    with pytest.raises(ValueError, match=r"n_particles \(10\) must be a multiple of the world size \(4\)"):
        gd.smc(dm.lg, [(1,)], [{("y", 0): 0.0}], 10, key=mx.random.key(0), group=g)
    with pytest.raises(ValueError, match="sampler 'nope'"):
        gd.chains("nope", dm.normal_mean, dm.NM_ARGS, dm.NM_OBS, n_chains=2, key=mx.random.key(0))
    with pytest.raises(ValueError, match="timeout_s"):
        Group(None, timeout_s=0)
    with pytest.raises(ValueError, match="backend"):
        gd.init(backend="tcp")


@pytest.mark.parametrize("a", [np.array([1e-300, -2.5, np.inf]), np.array([2**40, -3], np.int64),
                               np.array([True, False]), np.array([0.5, 1.5], np.float16),
                               np.array([[1.0, 2.0]], np.float32)])
def test_arrays_cross_ranks_bit_for_bit(a):
    words, restore = _to_words(a)
    assert words.dtype == np.uint32
    back = restore(np.stack([words, words])).reshape((2,) + a.shape)
    assert back.dtype == a.dtype and np.array_equal(back[1], a)


def test_importance_at_world_size_1_is_the_single_process_run():
    key = mx.random.key(5)
    res = gd.importance_sampling(dm.linreg, dm.ARGS, dm.OBS, n_particles=2000, key=key, gather_addresses=["slope"])
    ref = infer.importance_sampling(dm.linreg, dm.ARGS, dm.OBS, n_particles=2000, vectorized=True, key=key)
    assert list(res.log_weights) == list(ref.log_weights)
    assert res.log_ml == pytest.approx(ref.log_ml, rel=1e-6)  # the reference's summaries use float32 exponentials
    assert res.stats["world_size"] == 1 and res.posterior["slope"].shape == (2000,)


def test_vectorized_chains_at_world_size_1_match_mh_chains():
    key = mx.random.key(2)
    res = gd.chains("mh_chains", dm.normal_mean, dm.NM_ARGS, dm.NM_OBS, n_chains=4, key=key, n_samples=100,
                    selection=select("mu"), track=["mu"])
    ref = infer.mh_chains(dm.normal_mean, dm.NM_ARGS, dm.NM_OBS, n_chains=4, key=key, n_samples=100,
                          selection=select("mu"))
    assert res.stats["r_hat"]["mu"] == ref.stats["r_hat"]["mu"]
    assert res.posterior["mu"].shape == (4, 100)


@pytest.mark.statistical
def test_smc_at_world_size_1_is_within_tolerance_of_kalman():
    args_seq, obs_seq = dm.smc_problem()
    res = gd.smc(dm.lg, args_seq, obs_seq, dm.SMC_N, key=mx.random.key(dm.KEY))
    assert abs(res.log_ml - dm.exact_log_ml()) < dm.SMC_TOL
    assert math.isclose(sum(res.stats["log_weight"]), res.log_ml, abs_tol=1e-9)
    assert res.stats["migrated"] == [0] * dm.SMC_T


def test_all_gather_many_at_world_size_1_keeps_every_array():
    arrays = [np.array([1.5, 2.5]), np.array([[1, 2]], np.int64), np.array([True])]
    got = gd.world().all_gather_many(arrays)
    assert all(np.array_equal(g[0], a) and g.dtype == a.dtype for g, a in zip(got, arrays))
