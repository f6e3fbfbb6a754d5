"""The peers' side of the runner: a process that times GenJAX / NumPyro rows on request.

    /root/.venvs/peers/bin/python -m benchmarks.peers.worker      (cwd: the repository root)

Started by `benchmarks.peers.run` under the peers' Python; it speaks JSON
lines: one request on stdin, one reply on stdout (everything else the
libraries print goes to stderr). Requests:

* ``{"op": "versions"}`` -> the Python, jax, jaxlib, genjax and numpyro versions and JAX's device;
* ``{"op": "time", "row": <spec>}`` -> one timed call of the row (built on first use, so the
  first call of a row includes its tracing and compilation):
  ``{"cpu_s", "wall_s", "compile_wall_s", "summary"}``. `cpu_s` is this process's CPU time
  (all threads) and its finished children's (`clock.cpu_seconds`), `wall_s` wall time, `compile_wall_s` the
  time JAX reported spending in tracing, lowering and XLA compilation during the call;
* ``{"op": "quit"}``.

A row's spec names its system (``genjax`` or ``numpyro``) and what the system's
module (`genjax_rows`, `numpyro_rows`) needs (kind, model, form, n, ...). A failing
request gets ``{"error": <traceback>}`` and the worker goes on.
"""

from __future__ import annotations

import gc
import importlib
import json
import platform
import sys
import time
import traceback
from typing import Callable, TextIO

from benchmarks.peers.clock import cpu_seconds

__all__ = ["serve", "versions", "compile_clock", "SYSTEMS"]

SYSTEMS = {"genjax": "benchmarks.peers.genjax_rows", "numpyro": "benchmarks.peers.numpyro_rows"}


def _build_from_module(spec: dict, data: dict):
    system = spec.get("system")
    if system not in SYSTEMS:
        raise ValueError(f"row spec's system must be one of {sorted(SYSTEMS)}, got {system!r}")
    return importlib.import_module(SYSTEMS[system]).build(spec, data)


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("jax", "jaxlib", "genjax", "numpyro"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    try:
        import jax

        d = jax.devices()[0]
        out["jax_device"] = f"{d.platform}: {getattr(d, 'device_kind', '?')}"
    except Exception as e:  # no jax, or no device: reported, not fatal
        out["jax_device"] = f"unavailable ({type(e).__name__})"
    return out


class compile_clock:
    """Sums JAX's compile-phase durations (tracing, lowering, XLA) reported while it is installed."""

    EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
              "/jax/core/compile/backend_compile_duration")

    def __init__(self):
        self.total = 0.0
        try:
            from jax import monitoring
        except ImportError:
            self.available = False
            return
        self.available = True
        monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, name, duration, **_kw):
        if name in self.EVENTS:
            self.total += float(duration)


def serve(inp: TextIO, out: TextIO, data: dict, build: Callable = _build_from_module,
          compile_time: Callable[[], float] | None = None) -> int:
    """Answer requests from `inp` on `out` until ``quit`` or end of input; returns requests served."""
    rows: dict[str, tuple] = {}
    served = 0

    def reply(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    for line in inp:
        if not line.strip():
            continue
        served += 1
        try:
            req = json.loads(line)
            op = req.get("op")
            if op == "quit":
                reply({"ok": True})
                break
            if op == "versions":
                reply(versions())
            elif op == "time":
                spec = req["row"]
                key = json.dumps(spec, sort_keys=True)
                if key not in rows:
                    rows[key] = build(spec, data)
                fn, summarize = rows[key]
                gc.collect()
                c_before = compile_time() if compile_time else 0.0
                c0, w0 = cpu_seconds(), time.perf_counter()
                result = fn()
                cpu, wall = cpu_seconds() - c0, time.perf_counter() - w0
                compiled = (compile_time() - c_before) if compile_time else None
                reply({"cpu_s": cpu, "wall_s": wall, "compile_wall_s": compiled, "summary": summarize(result)})
            else:
                raise ValueError(f"unknown op {op!r} (versions, time, quit)")
        except Exception:
            reply({"error": traceback.format_exc()})
    return served


def main() -> int:
    from benchmarks.peers.data import load

    protocol_out = sys.stdout
    sys.stdout = sys.stderr  # library prints must not corrupt the protocol
    clock = compile_clock()
    serve(sys.stdin, protocol_out, load(), compile_time=(lambda: clock.total) if clock.available else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
