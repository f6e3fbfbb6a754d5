"""report(), the public names, and the core/plugin boundary of genmlx.memory."""

from __future__ import annotations

import ast
import gc
import os
import pathlib
import subprocess
import sys

import mlx.core as mx
import pytest

import genmlx
import genmlx.memory as memory
from genmlx.memory import budget, count_nodes, live_arrays, pending_nodes, report

REQUIRED = {
    "active_bytes", "cache_bytes", "peak_bytes", "live_arrays", "pending_nodes", "budget_limit",
    "budget_used", "resource_limit", "backend", "device",
}
FORBIDDEN = ("opentelemetry", "prometheus_client", "psutil", "pytest")
PACKAGE = pathlib.Path(memory.__file__).parent


def test_report_has_the_documented_keys_and_consistent_counts():
    gc.collect()
    x = mx.array(1.0)
    lazy = [x * float(i) + 1.0 for i in range(10)]  # 10 wrappers, 2 pending nodes each
    r = report()
    assert REQUIRED <= set(r)
    assert r["live_arrays"] == live_arrays()
    assert r["pending_nodes"] == pending_nodes() >= count_nodes(*lazy) == 20
    assert r["budget_limit"] is None
    assert r["budget_used"] == r["live_arrays"] + r["pending_nodes"]
    assert r["backend"] == memory.device_info()["backend"]
    assert all(isinstance(r[k], int) for k in ("active_bytes", "cache_bytes", "peak_bytes"))
    with budget(limit=12_345):
        assert report()["budget_limit"] == 12_345
    mx.eval(lazy)
    assert report()["pending_nodes"] == pending_nodes()


def test_report_exclude():
    keep = {"a": mx.array(1.0), "b": [mx.array(2.0)]}
    assert report(exclude=keep)["live_arrays"] == live_arrays() - 2


@pytest.mark.parametrize("name", memory.__all__)
def test_every_public_name_imports(name):
    assert getattr(memory, name) is not None
    ns: dict = {}
    exec(f"from genmlx.memory import {name}", ns)
    assert ns[name] is getattr(memory, name)


def test_init_only_re_exports():
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    for node in tree.body:
        assert isinstance(node, (ast.ImportFrom, ast.Assign, ast.Expr)), ast.dump(node)[:80]


def test_modules_stay_small():
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text().splitlines()) < 260, path.name


def test_memory_modules_import_only_mlx_numpy_stdlib_and_genmlx():
    allowed_third_party = {"mlx", "numpy", "genmlx"}
    stdlib = set(sys.stdlib_module_names)
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            for n in names:
                top = n.split(".")[0]
                assert top in stdlib or top in allowed_third_party, f"{path.name} imports {n}"


def test_importing_genmlx_memory_pulls_in_no_observability_library():
    root = os.path.dirname(os.path.dirname(genmlx.__file__))
    code = (
        "import sys, genmlx.memory, genmlx.memory as m; m.report(); "
        f"print([k for k in sys.modules if k.split('.')[0] in {FORBIDDEN!r}])"
    )
    env = {**os.environ, "PYTHONPATH": root}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
