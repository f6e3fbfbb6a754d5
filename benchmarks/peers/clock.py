"""The peers' CPU clock: this process's CPU time (all its threads) plus that of its finished children.

A first run's compilation may happen in another process: MLX compiles a CPU kernel by running the
system's C++ compiler, while XLA compiles in its own threads. `time.process_time` would count XLA's
and miss MLX's; this clock counts both. Imports nothing but the standard library (the peers'
worker runs it under their Python).
"""

from __future__ import annotations

import resource
import time

__all__ = ["cpu_seconds"]


def cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # microseconds; os.times() ticks at 10 ms
    return time.process_time() + children.ru_utime + children.ru_stime
