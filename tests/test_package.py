"""Package-level invariants: exports, the core/plugin boundary, import hygiene."""

import importlib
import json
import pkgutil
import subprocess
import sys

import pytest

import genmlx

PACKAGES = ["genmlx", "genmlx.distributions", "genmlx.inference", "genmlx.memory", "genmlx_observe"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_name_in_all_imports(package):
    mod = importlib.import_module(package)
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing, f"{package}.__all__ names that do not resolve: {missing}"


def _core_modules():
    return sorted(m.name for m in pkgutil.walk_packages(genmlx.__path__, "genmlx."))


def test_core_never_imports_the_plugins_world():
    code = (
        "import importlib, json, sys\n"
        f"for m in {_core_modules()!r}: importlib.import_module(m)\n"
        "import genmlx.inference as inf\n"
        "[getattr(inf, n) for n in inf.__all__]\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('opentelemetry', 'prometheus_client', 'psutil', 'pytest', '_pytest', 'genmlx_observe'))\n"
        "print(json.dumps(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_importing_genmlx_leaves_no_pending_graph_nodes():
    code = (
        "import gc, importlib\n"
        f"for m in {_core_modules()!r}: importlib.import_module(m)\n"
        "import genmlx.inference as inf\n"
        "[getattr(inf, n) for n in inf.__all__]\n"
        "from genmlx import memory\n"
        "gc.collect()\n"
        "print(memory.pending_nodes())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "0", "a module keeps a lazy (unevaluated) array at import"
