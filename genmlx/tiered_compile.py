"""Compiled functions that run unfused until their fused kernels are built (a CUDA machine's first use).

MLX builds each fused kernel of a compiled function the first time a machine meets it and keeps it
on disk: ~0.4 s a kernel with the C++ compiler on a CPU, ~3.5 s with NVRTC on a CUDA GPU, where a
NUTS leapfrog's 11 kernels cost 40 s once per machine, four times NumPyro's whole first run. The
same function unfused runs MLX's prebuilt kernels: more launches, no builds.

`tiered(fn)` is a callable whose first call's arguments are the example: while this machine
lacks `fn`'s fused kernels for them, it runs `fn` unfused and has a background process build the
kernels from `fn`'s exported graph (`mx.export_function`); `poll()` switches it to the compiled
form once they are on disk, and a later process finds them there (a marker beside MLX's kernel
cache) and starts compiled. The
compiled form is the *imported* graph's, in this process and in the builder alike, so both name
the same kernels (a graph compiled from Python inlines its constants; an imported one takes them
as inputs). Results agree to rounding, not bit for bit: on a GPU a fused kernel's arithmetic
(contracted multiply-adds) differs from the prebuilt kernels'; `mode="fused"` keeps a chain
identical whatever the machine's cache holds.

Modes: "auto" (tiered on a CUDA GPU, fused elsewhere), "fused" (`mx.compile(fn)`, building in
this process), "unfused" (`fn` as it is), "tiered" (tiered on any device: tests use it on a CPU).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import mlx.core as mx
import numpy as np

from .evaluation import evaluate

__all__ = ["tiered", "Tiered", "FusedFrom", "MODES", "marker_dir"]

MODES = ("auto", "fused", "unfused", "tiered")
MAX_BUILDERS = 4  # background builds at once on a machine (each holds a CUDA context and a CPU core)

# The builder: import the graph, compile it, run it once on the saved example inputs, then mark
# it built. Plain MLX, so the background process starts in a fraction of genmlx's import time.
_BUILD = """
import sys, os
fn_path, args_path, marker, claim = sys.argv[1:5]
done = marker
try:
    import mlx.core as mx
    f = mx.import_function(fn_path)
    saved = mx.load(args_path)
    mx.eval(mx.compile(f)(*[saved[f"a{i}"] for i in range(len(saved))]))
except BaseException:
    done = marker[:-len(".built")] + ".failed"
    raise
finally:
    tmp = done + f".{os.getpid()}"
    open(tmp, "w").close()
    os.replace(tmp, done)
    if os.path.exists(claim):
        os.unlink(claim)
"""


def marker_dir() -> Path:
    """Where the built-kernel markers live: a folder in MLX's kernel cache (`MLX_PTX_CACHE_DIR`, or
    `<temp>/mlx/<version>/ptx` as MLX's CUDA backend has it), so clearing the cache clears them."""
    root = os.environ.get("MLX_PTX_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "mlx", mx.__version__, "ptx")
    return Path(root) / "genmlx-tiered"


def _is_cuda() -> bool:
    return mx.default_device() != mx.cpu and mx.cuda.is_available()


class Tiered:
    """`fn` unfused until its fused kernels are on this machine, then compiled (see the module docstring).

    Attributes:
        mode: "fused", "unfused" or "tiered" ("auto" resolved for this device).
        form: "unfused" or "fused", the form calls run now (None before the first call).
        builder: the background build process (None when none was started by this object).
    """

    def __init__(self, fn: Callable, mode: str = "auto"):
        if mode not in MODES:
            raise ValueError(f"tiered_compile: mode must be one of {MODES}, got {mode!r}")
        self.fn, self.builder, self.form = fn, None, None
        self._marker = self._compiled = None
        self.mode = ("tiered" if _is_cuda() else "fused") if mode == "auto" else mode
        self._call = self._first_call

    def _first_call(self, *args):
        """The first call: its arguments are the example that the tiered form exports."""
        if self.mode == "unfused":
            self._call, self.form = self.fn, "unfused"
        elif self.mode == "tiered":
            try:
                self._tier(list(args))
            except Exception:  # noqa: BLE001 - a graph MLX cannot export: compiled here, as "fused" is
                self._call, self.form = mx.compile(self.fn), "fused"
        else:
            self._call, self.form = mx.compile(self.fn), "fused"
        return self._call(*args)

    def _tier(self, args: list) -> None:
        folder = marker_dir()
        folder.mkdir(parents=True, exist_ok=True)
        evaluate(args)  # once, at the first call: the example inputs are saved for the builder
        key = _graph_key(self.fn, args)
        fn_path = folder / f"{key}.mlxfn"
        if not fn_path.exists():
            tmp = folder / f"{key}.{os.getpid()}.mlxfn"
            mx.export_function(str(tmp), self.fn, *args)
            os.replace(tmp, fn_path)
        self._marker = folder / f"{key}.built"
        if (folder / f"{key}.failed").exists():  # an earlier build failed here: compile in this process
            raise RuntimeError("an earlier background build of this graph failed")
        imported = mx.compile(mx.import_function(str(fn_path)))
        if isinstance(self.fn(*args), mx.array):  # the imported graph returns a tuple of every output
            self._compiled = lambda *a: imported(*a)[0]
        else:
            self._compiled = imported
        if self._marker.exists():
            self._call, self.form = self._compiled, "fused"
            return
        self._call, self.form = self.fn, "unfused"
        claim = folder / f"{key}.building"
        if not claim.exists() and sum(map(_builder_alive, folder.glob("*.building"))) >= MAX_BUILDERS:
            return  # enough builds under way on this machine: this call runs unfused, a later one builds
        try:  # one builder per graph on the machine; a later process polls the marker only
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if _builder_alive(claim):
                return
            claim.unlink(missing_ok=True)  # its builder died: claim it anew
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        args_path = folder / f"{key}.inputs.npz"
        mx.savez(str(args_path), **{f"a{i}": a for i, a in enumerate(args)})
        # its own session: the build outlives this process if the run ends first (the next run's gain)
        argv = [sys.executable, "-c", _BUILD, str(fn_path), str(args_path), str(self._marker), str(claim)]
        self.builder = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        os.write(fd, str(self.builder.pid).encode())
        os.close(fd)

    def poll(self) -> str:
        """Switch to the compiled form if the fused kernels are built now; the form calls run."""
        if self.form == "unfused" and self._marker is not None:
            if self.builder is not None and self.builder.poll() is None:
                return self.form  # still building
            if self._marker.exists():
                self._call, self.form = self._compiled, "fused"
            elif self.builder is not None:  # the build failed (a `.failed` marker says so): stay unfused
                self._marker = None
        return self.form

    def __call__(self, *args):
        return self._call(*args)


def _graph_key(fn: Callable, args: list) -> str:
    """A key of `fn`'s graph on `args` that is the same in every process: its primitives, their
    arguments and the inputs' and outputs' shapes and dtypes in MLX's export order (names, not
    addresses), the constants' values, and this device and MLX version."""
    h = hashlib.sha256(f"{mx.__version__} {mx.default_device()} {mx.device_info().get('device_name', '')}".encode())

    def visit(entry) -> None:
        entry = dict(entry)
        if entry.get("type") == "constants":
            for name, a in entry["constants"]:
                h.update(f"{name} {a.shape} {a.dtype}".encode())
                h.update(np.asarray(a).tobytes())
        else:
            h.update(repr(sorted(entry.items())).encode())

    mx.export_function(visit, fn, *args)
    return h.hexdigest()[:32]


def _builder_alive(claim: Path) -> bool:
    """Whether the process named in a `.building` claim still runs (an empty claim: being written)."""
    try:
        text = claim.read_text().strip()
    except OSError:
        return False
    if not text:
        return True
    try:
        os.kill(int(text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


class FusedFrom:
    """A sampler's record of when its tiered functions ran fused: `after(i)` between iterations
    (after iteration i) polls them; `stats()` is `{"fused_from": the first iteration that ran every
    one fused, or None}` for tiered functions, and nothing for fused or unfused ones."""

    def __init__(self, fns):
        self.fns, self.first = tuple(fns), None
        self.tiered = any(f.mode == "tiered" for f in self.fns)

    def after(self, i: int) -> None:
        if self.first is None and self.tiered:
            ran_fused = all(f.form != "unfused" for f in self.fns)  # None: not called yet
            for f in self.fns:
                f.poll()
            if ran_fused:
                self.first = i

    def stats(self) -> dict:
        return {"fused_from": self.first} if self.tiered else {}


def tiered(fn: Callable, mode: str = "auto") -> Tiered:
    """`Tiered(fn, mode)`: see the module docstring."""
    return Tiered(fn, mode)
