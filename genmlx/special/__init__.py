"""Special functions MLX 0.32 lacks, in float32, fused (one graph node per call) and differentiable.

`lgamma`, `digamma`, `lbeta`, `lbinom` (log binomial coefficient), Loader's
`stirlerr` and `bd0`, Bessel `i0e`/`i1e`/`log_i0`, `log1mexp`, `xlogy`,
`xlog1py`, `logsubexp`, and the normal CDF family `ndtr`/`log_ndtr`/`ndtri`.
Each public function accepts Python numbers or arrays and broadcasts. The
`*_raw` / `*_pos` variants are the same math as plain MLX ops, for composing
inside other fused kernels (`genmlx.special.fuse.fused`).

Should a later MLX ship a native `lgamma`, `HAS_NATIVE_LGAMMA` says so; the
Lanczos version stays the default because it fuses with its neighbours.
"""

import mlx.core as mx

from .bessel import i0e, i1e, log_i0
from .fuse import fused
from .gamma import bd0, digamma, lbeta, lbinom, lgamma, stirlerr
from .misc import log1mexp, logsubexp, xlog1py, xlogy
from .normal import log_ndtr, ndtr, ndtri, ndtri_exp

HAS_NATIVE_LGAMMA = hasattr(mx, "lgamma")

__all__ = [
    "lgamma", "digamma", "lbeta", "lbinom", "stirlerr", "bd0",
    "i0e", "i1e", "log_i0", "log1mexp", "logsubexp", "xlogy", "xlog1py",
    "ndtr", "log_ndtr", "ndtri", "ndtri_exp", "fused", "HAS_NATIVE_LGAMMA",
]
