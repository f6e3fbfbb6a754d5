"""Inference: `from genmlx import inference as infer`.

Every algorithm runs through the one loop driver (`driver.run`) and returns an
`InferenceResult`. Each name below is imported from the module that defines it.
"""

from . import driver
from .result import InferenceResult
from .adev import adev_grad
from .amortized import amortized_proposal
from .chains import mh_chains
from .compiled import compiled_mh
from .compiled_elliptical import compiled_elliptical_slice
from .compiled_gibbs import compiled_gibbs
from .csmc import csmc, csmc_kernel
from .diagnostics import acceptance_rate, ess_bulk, ess_tail, mcse, particle_ess, r_hat, summary
from .elbo import elbo, iwelbo, programmable_vi
from .elliptical import elliptical_slice, elliptical_slice_step
from .enumerative import choice_vol_grid, enumerative
from .gibbs import gibbs, gibbs_step
from .hmc import hmc
from .importance import importance_resampling, importance_sampling
from .involutive import involutive_mh, involutive_mh_step
from .kernels import chain, collect, cycle, mix, repeat, run_kernel
from .learning import adam, sgd, train, wake_sleep
from .mala import mala, mala_chains
from .mh import custom_mh_step, mh, mh_custom, mh_step
from .nuts import nuts
from .resampling import multinomial, residual, stratified, systematic
from .smc import smc
from .smcp3 import smcp3
from .vi import vi
from .vsmc import vsmc

__all__ = [
    "InferenceResult",
    "driver",
    "importance_sampling",
    "importance_resampling",
    "enumerative",
    "choice_vol_grid",
    "mh",
    "mh_step",
    "mh_custom",
    "custom_mh_step",
    "gibbs",
    "gibbs_step",
    "compiled_gibbs",
    "involutive_mh",
    "involutive_mh_step",
    "elliptical_slice",
    "elliptical_slice_step",
    "compiled_elliptical_slice",
    "chain",
    "repeat",
    "cycle",
    "mix",
    "run_kernel",
    "collect",
    "mh_chains",
    "mala_chains",
    "compiled_mh",
    "mala",
    "hmc",
    "nuts",
    "smc",
    "csmc",
    "csmc_kernel",
    "vsmc",
    "smcp3",
    "systematic",
    "residual",
    "stratified",
    "multinomial",
    "vi",
    "elbo",
    "iwelbo",
    "programmable_vi",
    "adev_grad",
    "train",
    "adam",
    "sgd",
    "wake_sleep",
    "amortized_proposal",
    "r_hat",
    "ess_bulk",
    "ess_tail",
    "mcse",
    "particle_ess",
    "acceptance_rate",
    "summary",
]
