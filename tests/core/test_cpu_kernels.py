"""genmlx.cpu_kernels: `import genmlx` builds the precompiled preamble where GCC looks for it, MLX's own
kernel build takes it, a header GCC cannot use changes nothing, and no failure ever raises.

Each case runs in a new process with its own temp dir (MLX's kernel cache), as a new machine would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from genmlx import cpu_kernels

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="GCC's precompiled headers: Linux")

# the first kernel MLX meets: a fused exp, multiply, add
PROGRAM = textwrap.dedent("""
    import json
    import mlx.core as mx
    import genmlx
    from genmlx import cpu_kernels
    f = mx.compile(lambda x: mx.exp(x) * 2.0 + 1.0)
    print(json.dumps({"value": f(mx.zeros(4)).tolist(), "header": str(cpu_kernels.header_path()),
                      "built": cpu_kernels.last_build is not None}))
""")


def _gxx() -> str:
    path = shutil.which("g++")
    if path is None:
        msg = "g++ is not installed (MLX's CPU kernels need it; .ci/run installs it)"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(msg + " and CI is set", pytrace=False)
        pytest.skip(msg)
    return path


def _run(tmp_path: Path, **env) -> dict:
    import json

    cache = tmp_path / "tmp"
    cache.mkdir(exist_ok=True)
    full = {**os.environ, "TMPDIR": str(cache), **env}
    for name in ("TMP", "TEMP", "TEMPDIR"):
        full.pop(name, None)
    done = subprocess.run([sys.executable, "-c", PROGRAM], env=full, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_mlx_builds_its_kernels_with_the_header_genmlx_made(tmp_path):
    """A logging g++ ahead on PATH records MLX's own kernel build; re-run with -H, GCC reports the
    precompiled header as used ("! <path>.gch"), so the flags match and the path is where it looks."""
    real = _gxx()
    shim = tmp_path / "bin"
    shim.mkdir()
    log = tmp_path / "gxx.log"
    (shim / "g++").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{real}" "$@"\n')
    (shim / "g++").chmod(0o755)
    out = _run(tmp_path, PATH=f"{shim}{os.pathsep}{os.environ.get('PATH', '')}")
    assert out["value"] == [3.0] * 4 and out["built"]
    header = Path(out["header"])
    assert header.exists() and header.stat().st_size > 1_000_000
    builds = [line.split() for line in log.read_text().splitlines() if "-shared" in line]
    assert builds, "MLX built no kernel with g++"
    cmd = builds[0]
    assert all(flag in cmd for flag in cpu_kernels.FLAGS)
    source = next(a for a in cmd if a.endswith(".cpp"))
    root = header.parents[3]
    assert Path(source).parent == root  # the kernel's source sits in the cache's root, where GCC looks first
    kept = sorted(root.glob("*.cpp"))  # (MLX renames the source it built to the kernel's name)
    assert kept
    again = [kept[0].as_posix() if a == source else str(tmp_path / "k.so") if a == cmd[cmd.index("-o") + 1] else a
             for a in cmd]
    used = subprocess.run([real, *again, "-H"], capture_output=True, text=True, timeout=120)
    assert used.returncode == 0
    assert f"! {header}" in used.stderr.splitlines(), used.stderr[:500]


def test_a_header_gcc_cannot_use_changes_nothing(tmp_path):
    _gxx()
    header = tmp_path / "tmp" / cpu_kernels.header_path().relative_to(cpu_kernels._temp_dir())
    header.parent.mkdir(parents=True)
    header.write_bytes(b"not a precompiled header")
    out = _run(tmp_path)
    assert out["value"] == [3.0] * 4 and not out["built"]  # there already: kept, and GCC reads the real preamble
    assert list(header.parents[3].glob("*.so"))


def test_the_off_switch(tmp_path):
    _gxx()
    out = _run(tmp_path, GENMLX_CPU_PCH="0")
    assert out["value"] == [3.0] * 4 and not out["built"] and not Path(out["header"]).exists()


def test_no_compiler_or_an_unwritable_cache_never_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "no-gxx"))
    monkeypatch.setattr(cpu_kernels.shutil, "which", lambda name: None)
    assert cpu_kernels.prepare() is False and not cpu_kernels.header_path().exists()
    monkeypatch.undo()
    _gxx()
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache's folder would be")
    monkeypatch.setenv("TMPDIR", str(blocked))
    assert cpu_kernels.prepare() is False
