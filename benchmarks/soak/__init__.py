"""Soak: every algorithm for a long run under budget(499_000); are RSS, live arrays and pending nodes flat?

    python -m benchmarks.soak [--iterations 1000000] [--algorithms mh,hmc,...] [--out FILE.json]

Each algorithm (`algorithms.ALGORITHMS`) runs `--iterations` iterations (SMC family: particle-steps,
100 particles x time steps; importance sampling: particles, in batches) keeping about 100 samples
(thin), under `gm.memory.budget(499_000)`. A census (`census.Census`) every `--every` iterations after a
10% warm-up records RSS, live arrays outside the state and kept samples, and pending graph nodes; the
report per quantity is the least-squares slope per 1,000 iterations with its standard error, and a
verdict (`census.verdict`). With `--out`, each algorithm runs in its own process, one after another,
and its row is appended to FILE as one JSON line as soon as it ends (a crash loses only its own row).
Not part of the test command.
"""

from .run import run

__all__ = ["run"]
