"""genmlx: a Gen-family probabilistic programming system on MLX whose loops never leak."""

import mlx.core as _mx

from . import cpu_kernels as _cpu_kernels

if _mx.default_device() == _mx.cpu:  # first, before any kernel: they build 3-4x faster (genmlx/cpu_kernels.py)
    _cpu_kernels.prepare()

from . import distributions as dist
from . import events, inference, memory
from .address import Address, AddressError
from .boundary import defer_checks
from .choicemap import ChoiceMap, choicemap
from .dynamic import DynamicGenFn, gen
from .gfi import GenerativeFunction
from .handler import splice, trace
from .rng import seed
from .selection import Selection, select, select_all, select_none
from .trace import Trace
from . import vectorize
from .combinators import map_, mask, mix, recurse, scan, switch, unfold, vmap
from .vectorize import VectorizationError

__all__ = [
    "dist", "events", "inference", "memory", "defer_checks",
    "Address", "AddressError", "ChoiceMap", "choicemap", "DynamicGenFn", "gen",
    "GenerativeFunction", "splice", "trace", "seed", "Selection", "select",
    "select_all", "select_none", "Trace",
    "vectorize", "VectorizationError",
    "map_", "unfold", "switch", "scan", "mix", "recurse", "mask", "vmap",
]
