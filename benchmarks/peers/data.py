"""The standard models' data, read from the suite's own files with the standard library only.

The peers (GenJAX, NumPyro) run under another Python (3.12, no MLX), so they
cannot import `benchmarks.models`. They read its literal constants
(`BB_DATA`, `LR5_XS`, `LR5_YS`, `PRIOR_SD`, `FUNNEL_DIM`) from the source
text with `ast`, and the 100-point regression from `data/regression100.json`,
the file `benchmarks.models.regression100` reads: no number is copied here.
tests/benchmarks/test_peers.py checks that both sides see the same values.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

__all__ = ["MODELS_PY", "REGRESSION100_JSON", "load"]

BENCH_DIR = Path(__file__).resolve().parents[1]
MODELS_PY = BENCH_DIR / "models.py"
REGRESSION100_JSON = BENCH_DIR / "data" / "regression100.json"
CONSTANTS = ("BB_DATA", "LR5_XS", "LR5_YS", "PRIOR_SD", "FUNNEL_DIM")


def _module_constants(path: Path, names: tuple[str, ...]) -> dict:
    """Top-level `NAME = <literal>` assignments of a module, without importing it."""
    found = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in names:
                found[name] = ast.literal_eval(node.value)
    missing = [n for n in names if n not in found]
    if missing:
        raise KeyError(f"{path} has no literal top-level assignment of {', '.join(missing)}")
    return found


def load() -> dict:
    """Every dataset the peer rows use: Beta-Bernoulli, the 5-site and 100-point regressions, the funnel."""
    c = _module_constants(MODELS_PY, CONSTANTS)
    with open(REGRESSION100_JSON) as f:
        r = json.load(f)
    return {
        "bb_data": [float(y) for y in c["BB_DATA"]],
        "lr5_xs": [float(v) for v in c["LR5_XS"]],
        "lr5_ys": [float(v) for v in c["LR5_YS"]],
        "prior_sd": float(c["PRIOR_SD"]),
        "reg100_xs": [float(v) for v in r["xs"]],
        "reg100_ys": [float(v) for v in r["ys"]],
        "funnel_dim": int(c["FUNNEL_DIM"]),
    }
