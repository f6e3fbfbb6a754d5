"""Inference: `from genmlx import inference as infer`.

Every algorithm runs through the one loop driver (`driver.run`) and returns an
`InferenceResult`. Names resolve lazily to the module that defines them, so
importing this package costs nothing until an algorithm is used.
"""

from __future__ import annotations

import importlib
import sys
import types

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
    "smc": "smc", "csmc": "csmc", "csmc_kernel": "csmc", "vsmc": "vsmc", "smcp3": "smcp3",
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


class _Package(types.ModuleType):
    """Keeps `infer.smc` the function when submodule `genmlx.inference.smc` is imported.

    Importing a submodule binds it as an attribute of the package *after* the
    submodule ran, which would shadow the function of the same name (`smc`,
    `mh`, `vi`, ...) for everyone once any code imported the submodule directly.
    """

    def __setattr__(self, name, value):
        if (
            isinstance(value, types.ModuleType)
            and _WHERE.get(name) == name
            and value.__name__ == f"{__name__}.{name}"
            and hasattr(value, name)
        ):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
