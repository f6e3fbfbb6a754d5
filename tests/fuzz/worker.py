"""A persistent child process that runs fuzz cases, and the classification of what came back.

Importing MLX and genmlx costs about half a second, so one worker serves every
case of a campaign; it is restarted only when a case kills it (a signal) or
runs past the timeout (a hang). The parent never runs generated input itself:
whatever the input does, the parent survives to count it and to shrink it.

Outcome classes:
    result      the call returned and every number it was asked to check is sound
    error       a Python exception whose message names the parameter, the
                address or the distribution / algorithm at fault
    range       a non-finite result from valid but extreme finite parameters (|x| >= 1e6 or
                0 < |x| <= 1e-6, no NaN or inf in the input): float32's range, reported apart
    unnamed     a Python exception whose message names none of those
    nonfinite   the call returned a NaN (or an infinite sample) without an error
    crash       the worker died (a signal: SIGFPE, SIGSEGV, SIGABRT, ...)
    hang        the case ran past the timeout
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
import traceback
from typing import NamedTuple

GOOD = ("result", "error", "range")
BAD = ("unnamed", "nonfinite", "crash", "hang")
CLASSES = GOOD + BAD


class Outcome(NamedTuple):
    cls: str
    detail: str = ""
    seconds: float = 0.0


def _serve(conn, compiled: bool) -> None:  # pragma: no cover - runs in the child
    os.environ.setdefault("GENMLX_OBSERVE", "0")
    import mlx.core as mx

    if not compiled:
        # MLX's CPU backend compiles every new (kernel, shape, dtype) with a C++ compiler: 10-40 s a
        # case on a loaded 2-core machine, and fuzzed shapes and dtypes are new nearly every time
        mx.disable_compile()
    from . import entries, runners  # noqa: F401 - MLX, genmlx and the runners: imported once

    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg is None:
            return
        name, spec = msg
        t0 = time.perf_counter()
        try:
            cls, detail = entries.run(name, spec)
            if cls == "nonfinite" and entries.extreme_only(spec):
                cls = "range"
        except BaseException as e:  # noqa: BLE001 - every exception is an outcome to classify
            cls, detail = entries.classify_error(name, spec, e), f"{type(e).__name__}: {str(e)[:300]}"
            if cls == "unnamed":
                detail += "\n" + "".join(traceback.format_exception(e)[-3:])[:800]
        conn.send((cls, detail, time.perf_counter() - t0))


class Pool:
    """One worker process, restarted after a crash or a hang."""

    def __init__(self, timeout_s: float = 30.0, startup_s: float = 300.0, compiled: bool = False):
        self.timeout_s, self.startup_s, self.compiled = timeout_s, startup_s, compiled
        self.ctx = mp.get_context("spawn")
        self.proc = None
        self.conn = None
        self.restarts = 0

    def _start(self) -> None:
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_serve, args=(child, self.compiled), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent
        # the per-case timeout starts once the worker has imported MLX and genmlx
        if not parent.poll(self.startup_s) or parent.recv() != "ready":
            raise RuntimeError(f"fuzz worker did not start within {self.startup_s} s")

    def _stop(self, kill: bool) -> None:
        if self.proc is None:
            return
        if kill and self.proc.is_alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join(timeout=5)
        self.conn.close()
        self.proc = self.conn = None

    def run(self, name: str, spec) -> Outcome:
        if self.proc is None or not self.proc.is_alive():
            if self.proc is not None:
                self._stop(kill=True)
                self.restarts += 1
            self._start()
        t0 = time.perf_counter()
        try:
            self.conn.send((name, spec))
            ready = self.conn.poll(self.timeout_s)
        except (BrokenPipeError, EOFError, OSError):
            ready = False
        if not ready:
            dead = not self.proc.is_alive()
            code = self.proc.exitcode
            self._stop(kill=True)
            self.restarts += 1
            if dead:
                return Outcome("crash", _signal_name(code), time.perf_counter() - t0)
            return Outcome("hang", f"no answer within {self.timeout_s} s", time.perf_counter() - t0)
        try:
            cls, detail, secs = self.conn.recv()
        except (EOFError, OSError):
            self.proc.join(timeout=5)
            code = self.proc.exitcode
            self._stop(kill=True)
            self.restarts += 1
            return Outcome("crash", _signal_name(code), time.perf_counter() - t0)
        return Outcome(cls, detail, secs)

    def close(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.proc.join(timeout=5)
        self._stop(kill=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _signal_name(code) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"worker exited with code {code}"
