"""Launching 2-rank ring jobs on loopback from the tests (not a test module)."""

from __future__ import annotations

import json
import os
import sys

from genmlx.distributed import launch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
JOB_TIMEOUT_S = 240.0  # bound on a whole job (2 cores shared by the suite's workers)


def env(**extra) -> dict:
    path = os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")])
    return {"PYTHONPATH": path, "GENMLX_DIST_TIMEOUT": "120", **extra}


def rank_pytest(case: str, out_dir, n: int = 2, check: bool = True):
    """Run `rank_cases.py::case` as a pytest session (leak gate on) in each of `n` ranks."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-W", "ignore",
           f"{HERE}/rank_cases.py::{case}"]
    return launch(cmd, n, timeout_s=JOB_TIMEOUT_S, env=env(GENMLX_TEST_OUT=str(out_dir)), cwd=ROOT, check=check)


def outputs(out_dir, case: str, n: int = 2) -> list[dict]:
    got = []
    for r in range(n):
        with open(os.path.join(out_dir, f"{case}-rank{r}.json")) as f:
            got.append(json.load(f))
    return got
