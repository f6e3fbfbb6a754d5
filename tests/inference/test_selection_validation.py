"""Issue 22: every algorithm that takes a selection validates it in one place (inference._common), the same way."""

import mlx.core as mx
import pytest

import genmlx as gm
from genmlx import dist
from genmlx import inference as infer


@gm.gen
def model(T):
    x = gm.trace("x", dist.normal(0.0, 1.0))
    for t in range(T):
        gm.trace(("y", t), dist.normal(x, 1.0))


ARGS = [(t + 1,) for t in range(4)]
OBS = [{("y", t): 0.5} for t in range(4)]


@pytest.mark.parametrize("alg", [infer.smc, infer.vsmc])
@pytest.mark.parametrize("sel", [gm.select(("y", 2)), gm.select("y"), gm.select("x", ("y", 0))], ids=["later-step", "prefix", "mixed"])
def test_smc_rejuvenation_naming_an_observation_raises_like_mh(alg, sel):
    with pytest.raises(ValueError, match=r"rejuvenation includes the observed address \('y', \d\)"):
        alg(model, ARGS, OBS, n_particles=5, rejuvenation=sel, key=mx.random.key(0))


def test_mh_and_smc_raise_the_same_error_for_the_same_mistake():
    with pytest.raises(ValueError) as e_mh:
        infer.mh(model, (1,), OBS[0], selection=gm.select(("y", 0)), n_samples=2)
    with pytest.raises(ValueError) as e_smc:
        infer.smc(model, ARGS[:1], OBS[:1], n_particles=3, rejuvenation=gm.select(("y", 0)))
    tail = "includes the observed address ('y', 0)"
    assert tail in str(e_mh.value) and tail in str(e_smc.value)


def test_smc_rejuvenation_observations_are_never_resampled():
    r = infer.smc(model, ARGS, OBS, n_particles=50, rejuvenation=gm.select("x"), key=mx.random.key(1))
    for tr in r.traces:
        assert all(tr[("y", t)].item() == 0.5 for t in range(4))


@pytest.mark.parametrize("alg", [infer.smc, infer.vsmc])
def test_rejuvenation_naming_no_latent_choice_raises(alg):
    with pytest.raises(ValueError, match=r"rejuvenation \('nope'\) names no unobserved random choice"):
        alg(model, ARGS, OBS, n_particles=3, rejuvenation=gm.select("nope"), key=mx.random.key(0))


def test_complemented_selection_containing_an_observation_raises():
    with pytest.raises(ValueError, match="observed address"):
        infer.mh(model, (1,), OBS[0], selection=gm.select("x").complement(), n_samples=2)


@pytest.mark.parametrize("alg", [infer.gibbs, infer.elliptical_slice])
def test_per_address_algorithms_share_the_validator(alg):
    with pytest.raises(ValueError, match=r"addresses includes the observed address \('y', 0\)"):
        alg(model, (1,), OBS[0], addresses=[("y", 0)], n_samples=2)
    with pytest.raises(ValueError, match="'zz' is not a random choice"):
        alg(model, (1,), OBS[0], addresses=["zz"], n_samples=2)
