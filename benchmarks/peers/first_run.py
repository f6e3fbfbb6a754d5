"""genmlx's first run of a row in a new process, as NumPyro's first run is (a fresh worker).

    python -m benchmarks.peers.first_run '<genmlx spec as JSON>'   # prints {"cpu_s", "wall_s", "summary"}

MLX compiles each fused kernel the first time a machine meets it (C++ on a CPU, NVRTC on a GPU)
and keeps it on disk, under `$TMPDIR/mlx/<version>/` or `$MLX_PTX_CACHE_DIR`; JAX compiles again in
every process unless told to keep its cache. So genmlx has two first runs: on a new machine (the
kernel cache empty) and in any later process (the cache kept). On a CUDA GPU, NUTS's first run on a
new machine runs its leapfrog unfused while a background process builds the fused kernels
(`genmlx.tiered_compile`): the later process starts after that build has ended, and the build's
wall time is reported beside the first run (`background_build_s`), not in it. `first_runs` measures both, each in
its own process with its own cache folder, so the runner's process and the machine's default cache
change neither. On a new machine `import genmlx` also builds the precompiled preamble of MLX's CPU
kernels (`genmlx.cpu_kernels`); that build is counted in the first run's time (`kernel_header_build`).
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["first_runs", "FirstRunError"]


class FirstRunError(RuntimeError):
    """The new process failed (its stderr's tail is the message)."""


def _kernels(cache: str) -> int:
    """Kernels MLX has built into `cache` (a CPU kernel is a .so, a GPU kernel a .cubin or .ptx file)."""
    return sum(len(glob.glob(os.path.join(cache, "**", pat), recursive=True)) for pat in ("*.so", "*.cubin", "*.ptx"))


def _in_new_process(spec: dict, cache: str, timeout: float) -> dict:
    env = {**os.environ, "TMPDIR": cache, "MLX_PTX_CACHE_DIR": os.path.join(cache, "ptx")}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.peers.first_run", json.dumps(spec)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise FirstRunError(f"genmlx's first run in a new process failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["kernels_cached"] = _kernels(cache)
    return out


def _wait_for_builds(cache: str, timeout: float) -> float | None:
    """Wait until the background kernel builds the first run started have ended; their wall time
    (the first exported graph to the last marker), or None when it started none."""
    folder = os.path.join(cache, "ptx", "genmlx-tiered")
    end = time.monotonic() + timeout
    while glob.glob(os.path.join(folder, "*.building")) and time.monotonic() < end:
        time.sleep(0.2)
    started = [os.path.getmtime(p) for p in glob.glob(os.path.join(folder, "*.mlxfn"))]
    ended = [os.path.getmtime(p) for p in glob.glob(os.path.join(folder, "*.built"))
             + glob.glob(os.path.join(folder, "*.failed"))]
    return max(ended) - min(started) if started and ended else None


def first_runs(spec: dict, timeout: float = 600.0) -> tuple[dict, dict]:
    """`(cold, warm)`: the first run in a new process with an empty kernel cache, then in another
    new process with the kernels the first one built (after any background build has ended)."""
    with tempfile.TemporaryDirectory(prefix="genmlx-first-run-") as cache:
        cold = _in_new_process(spec, cache, timeout)
        build = _wait_for_builds(cache, timeout)
        if build is not None:
            cold["background_build_s"] = build
        warm = _in_new_process(spec, cache, timeout)
    return cold, warm


def main(argv: list[str] | None = None) -> int:
    spec = json.loads((argv if argv is not None else sys.argv[1:])[0])
    from benchmarks.peers import genmlx_rows
    from benchmarks.peers.run import suite_cache_limit, timed

    from genmlx import cpu_kernels

    suite_cache_limit()
    out = timed(*genmlx_rows.build(spec))
    # `import genmlx` built MLX's precompiled kernel preamble if the cache had none (a new machine's
    # first process): that build is compilation, so the first run's time includes it
    build = cpu_kernels.last_build
    if build is not None:
        out["cpu_s"] += build["cpu_s"]
        out["wall_s"] += build["wall_s"]
        out["kernel_header_build"] = build
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
