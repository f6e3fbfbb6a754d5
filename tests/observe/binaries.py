"""External binaries the observe tests run (Debian's `prometheus` package ships both).

Missing on a developer's machine, the tests that need them skip; in CI
(`CI` set, as `.ci/run` runs) they fail, so a broken install cannot pass green.
"""

from __future__ import annotations

import os
import shutil

import pytest

__all__ = ["require"]


def require(name: str) -> str:
    """The path of binary `name`; skips the test without it, or fails it in CI."""
    path = shutil.which(name)
    if path is None:
        msg = f"the `{name}` binary is not installed (apt-get install prometheus; .ci/run installs it)"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(msg + " and CI is set: this test must run in CI", pytrace=False)
        pytest.skip(msg)
    return path
