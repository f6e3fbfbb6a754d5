"""Inference: `from genmlx import inference as infer`.

Every algorithm runs through the one loop driver (`driver.run`) and returns an
`InferenceResult`. Names resolve lazily to the module that defines them, so
importing this package costs nothing until an algorithm is used.
"""

from __future__ import annotations

import importlib

from .result import InferenceResult

_WHERE = {
    # importance sampling
    "importance_sampling": "importance", "importance_resampling": "importance",
    # Metropolis-Hastings family and kernels
    "mh": "mh", "mh_step": "mh", "mh_custom": "mh", "custom_mh_step": "mh",
    "gibbs": "gibbs", "gibbs_step": "gibbs",
    "involutive_mh": "involutive", "involutive_mh_step": "involutive",
    "elliptical_slice": "elliptical", "elliptical_slice_step": "elliptical",
    "chain": "kernels", "repeat": "kernels", "cycle": "kernels", "mix": "kernels",
    "run_kernel": "kernels", "collect": "kernels",
    "mh_chains": "chains", "mala_chains": "mala",
    "compiled_mh": "compiled",
    # gradient-based MCMC
    "mala": "mala", "hmc": "hmc", "nuts": "nuts",
    # particle methods
    "smc": "smc", "csmc": "csmc", "vsmc": "vsmc", "smcp3": "smcp3",
    "systematic": "resampling", "residual": "resampling", "stratified": "resampling", "multinomial": "resampling",
    # variational inference and learning
    "vi": "vi", "elbo": "elbo", "iwelbo": "elbo", "programmable_vi": "elbo",
    "adev_grad": "adev", "train": "learning", "adam": "learning", "sgd": "learning",
    "wake_sleep": "learning", "amortized_proposal": "amortized",
    # diagnostics
    "r_hat": "diagnostics", "ess_bulk": "diagnostics", "ess_tail": "diagnostics",
    "mcse": "diagnostics", "particle_ess": "diagnostics", "acceptance_rate": "diagnostics",
    "summary": "diagnostics",
}

__all__ = ["InferenceResult", "driver", *_WHERE]


def __getattr__(name: str):
    if name == "driver":
        return importlib.import_module(".driver", __name__)
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'genmlx.inference' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
