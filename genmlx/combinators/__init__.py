"""Combinators: generative functions built from other generative functions.

Each module's docstring states its addresses; `docs/combinators.md` collects them.
"""

from .map_ import Map, map_
from .mask import Mask, mask
from .mix import Mix, mix
from .recurse import Recurse, recurse
from .scan import Scan, scan
from .switch import Switch, switch
from .unfold import Unfold, unfold
from .vmap import Vmap, vmap

__all__ = ["map_", "unfold", "switch", "scan", "mix", "recurse", "mask", "vmap",
           "Map", "Unfold", "Switch", "Scan", "Mix", "Recurse", "Mask", "Vmap"]
