"""Faster first builds of MLX's fused CPU kernels: a precompiled preamble in MLX's kernel cache.

On a CPU, `mx.compile` builds each fused kernel the first time a machine meets it: MLX writes a
small C++ file into its kernel cache (`<temp dir>/mlx/<version>/cpu/`) and runs
`g++ -std=c++17 -O3 -Wall -fPIC -shared -I <mlx>/include <file>`. The file includes MLX's kernel
preamble (`mlx/backend/cpu/compiled_preamble.h`, about 69,000 lines once preprocessed), and
parsing it is most of the build: 0.5-0.7 s a kernel on the 2-core box, where a first NUTS run
meets 11 kernels. GCC looks for a precompiled header (`<header>.gch`) before each header it
includes, first in the directory of the file it compiles, which for MLX's kernels is the cache.
`prepare()` builds one there, once per machine, with MLX's own flags: about 2 s and 50 MB.
Then a kernel builds in 0.13-0.2 s (benchmarks/analysis.md).

GCC uses the header only where it is valid for the build (the same compiler and flags); one it
cannot use it ignores, and it reads the real header as before (tests/core/test_cpu_kernels.py
checks both, and that MLX's command takes it). The header is written under another name and
renamed into place, so a build running beside it never reads half a file.

`import genmlx` calls `prepare()` when MLX's default device is a CPU, on Linux (GCC); it costs
nothing once the header is there. `GENMLX_CPU_PCH=0` turns it off. It never raises: without
g++, or with a cache it cannot write, kernels build as before.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlx.core as mx

__all__ = ["prepare", "header_path", "last_build"]

PREAMBLE = Path("mlx") / "backend" / "cpu" / "compiled_preamble.h"
# MLX 0.32's kernel build (mlx/backend/cpu/compiled.cpp): the header must be built with the same flags
FLAGS = ("-std=c++17", "-O3", "-Wall", "-fPIC")

last_build: dict | None = None  # this process's build, if it made one: {"cpu_s", "wall_s"}


def _temp_dir() -> Path:
    """The directory C++'s `std::filesystem::temp_directory_path` gives MLX (POSIX)."""
    for name in ("TMPDIR", "TMP", "TEMP", "TEMPDIR"):
        v = os.environ.get(name)
        if v:
            return Path(v)
    return Path("/tmp")


def header_path() -> Path:
    """Where GCC looks for the precompiled preamble of MLX's CPU kernels (beside their sources)."""
    return _temp_dir() / "mlx" / mx.__version__ / "cpu" / PREAMBLE.with_name(PREAMBLE.name + ".gch")


def _include_dir() -> Path:
    return Path(mx.__file__).resolve().parent / "include"


def prepare() -> bool:
    """Build the precompiled preamble into MLX's CPU kernel cache unless it is there; True when it
    is there afterwards. Never raises."""
    global last_build
    try:
        target = header_path()
        if target.exists():
            return True
        if os.environ.get("GENMLX_CPU_PCH", "1") == "0" or not sys.platform.startswith("linux"):
            return False
        gxx = shutil.which("g++")
        source = _include_dir() / PREAMBLE
        if gxx is None or not source.exists():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            done = subprocess.run([gxx, *FLAGS, "-x", "c++-header", "-I", str(_include_dir()), str(source),
                                   "-o", str(tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  timeout=300, check=False)
            if done.returncode != 0:
                return False
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        last_build = {"cpu_s": (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime),
                      "wall_s": time.perf_counter() - t0}
        return True
    except Exception:  # a cache it cannot write, a compiler that fails: kernels build as before
        return False
