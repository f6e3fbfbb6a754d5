"""Every public name imports, and the combinators are reachable from `genmlx`."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("module", ["genmlx", "genmlx.combinators", "genmlx.vectorize"])
def test_every_name_in_all_imports(module):
    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name


def test_combinators_and_vectorize_are_exported_from_genmlx():
    import genmlx as gm

    for name in ["map_", "unfold", "switch", "scan", "mix", "recurse", "mask", "vmap", "VectorizationError"]:
        assert name in gm.__all__
    assert issubclass(gm.VectorizationError, TypeError)
