"""Start a job of N ranks on this machine, and fail it in bounded time with a message naming the rank.

    python -m genmlx.distributed.launch -n 2 [--backend ring|nccl] [--timeout 600] script.py [args...]

The ranks get the environment `mlx.launch` would give them (the ring backend:
`MLX_RANK` and an `MLX_HOSTFILE` of loopback addresses; NCCL: `MLX_RANK`,
`MLX_WORLD_SIZE`, `NCCL_HOST_IP`, `NCCL_PORT` and one GPU per rank through
`CUDA_VISIBLE_DEVICES`), plus `GENMLX_RANK` / `GENMLX_WORLD_SIZE` for telemetry.
For several machines use `mlx.launch` itself: the ranks behave the same.

Why not only `mlx.launch`: MLX 0.32's launcher exits with status 0 even when a
rank failed, and has no overall timeout. Here:

* the first rank to fail (an exception, a signal, a non-zero status) ends the
  job: the others are terminated (SIGTERM, then SIGKILL after `grace_s`) and
  `JobFailed` / the exit status names that rank, with the tail of its stderr;
  a rank that failed only because a peer did (`EXIT_PEER_LOST`) or whose
  collective timed out (`EXIT_TIMEOUT`) is reported as such, and a rank that
  failed on its own is preferred as the cause;
* `timeout_s` bounds the whole job (exit status 124, the ranks still running named).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from .group import EXIT_PEER_LOST, EXIT_TIMEOUT

__all__ = ["launch", "LaunchResult", "RankOutcome", "JobFailed", "free_ports", "main"]


@dataclass
class RankOutcome:
    """How one rank ended: `returncode` (negative: killed by that signal), its output, whether we killed it."""

    rank: int
    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    killed: bool = False

    def describe(self) -> str:
        rc = self.returncode
        if self.killed:
            return f"rank {self.rank} was terminated by the launcher"
        if rc == EXIT_PEER_LOST:
            return f"rank {self.rank} lost a peer rank (exit status {rc})"
        if rc == EXIT_TIMEOUT:
            return f"rank {self.rank}: a collective timed out (exit status {rc})"
        if rc is not None and rc < 0:
            return f"rank {self.rank} died of signal {signal.Signals(-rc).name}"
        return f"rank {self.rank} exited with status {rc}"


@dataclass
class LaunchResult:
    """Every rank's outcome; `failed` is the rank blamed for a failure (None: all succeeded)."""

    outcomes: list[RankOutcome]
    duration_s: float
    failed: int | None = None
    timed_out: bool = False
    message: str = ""
    env: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failed is None and not self.timed_out


class JobFailed(RuntimeError):
    """A launched job failed; `.rank` is the rank blamed, `.result` the whole `LaunchResult`."""

    def __init__(self, result: LaunchResult):
        super().__init__(result.message)
        self.result, self.rank = result, result.failed


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` TCP ports free on `host` right now (bound then released together, so distinct)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _rank_envs(n: int, backend: str, host: str, gpus: list[str] | None) -> tuple[list[dict], str | None]:
    envs = [{"MLX_RANK": str(r), "GENMLX_RANK": str(r), "GENMLX_WORLD_SIZE": str(n)} for r in range(n)]
    hostfile = None
    if backend == "ring":
        if n > 1:
            fd, hostfile = tempfile.mkstemp(prefix="genmlx-ring-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                json.dump([[f"{host}:{p}"] for p in free_ports(n, host)], f)
            for e in envs:
                e["MLX_HOSTFILE"] = hostfile
    elif backend == "nccl":
        port = free_ports(1, host)[0]
        for r, e in enumerate(envs):
            e.update(MLX_WORLD_SIZE=str(n), NCCL_HOST_IP=host, NCCL_PORT=str(port))
            e["CUDA_VISIBLE_DEVICES"] = gpus[r % len(gpus)] if gpus else str(r)
    else:
        raise ValueError(f"launch: backend must be 'ring' or 'nccl' on one machine (mlx.launch for mpi/jaccl), "
                         f"got {backend!r}")
    return envs, hostfile


def launch(command: list[str], n: int, *, backend: str = "ring", timeout_s: float = 600.0, env: dict | None = None,
           cwd: str | None = None, capture: bool = True, check: bool = True, grace_s: float = 5.0,
           host: str = "127.0.0.1", gpus: list[str] | None = None) -> LaunchResult:
    """Run `command` as ranks 0..n-1 of one job on this machine.

    Args:
        command: the argv of every rank (e.g. `[sys.executable, "script.py"]`).
        n: the world size (>= 1).
        backend: "ring" (loopback TCP, CPU) or "nccl" (one GPU per rank).
        timeout_s: bound on the whole job; past it every rank is terminated.
        env: extra environment variables for every rank.
        capture: keep each rank's stdout/stderr in the result (False: they go to ours).
        check: raise `JobFailed` when the job fails (else return the result).
        grace_s: how long terminated ranks get before SIGKILL.
        gpus: NCCL: the devices to hand out round-robin (default: rank r gets GPU r).

    Raises:
        JobFailed: (with `check`) a rank failed or the job timed out; the message names the rank.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"launch: n (the number of ranks) must be an int >= 1, got {n!r}")
    if not command:
        raise ValueError("launch: command is empty")
    if not float(timeout_s) > 0:
        raise ValueError(f"launch: timeout_s must be > 0, got {timeout_s!r}")
    envs, hostfile = _rank_envs(n, backend, host, gpus)
    files, procs = [], []
    t0 = time.monotonic()
    try:
        for r in range(n):
            out = [tempfile.TemporaryFile() for _ in range(2)] if capture else [None, None]
            files.append(out)
            procs.append(subprocess.Popen(command, cwd=cwd, env={**os.environ, **(env or {}), **envs[r]},
                                          stdout=out[0], stderr=out[1], stdin=subprocess.DEVNULL,
                                          start_new_session=True))
        first, timed_out, killed = _wait(procs, t0 + float(timeout_s), grace_s)
    finally:
        for p in procs:  # whatever happened above, no rank outlives the launch
            if p.poll() is None:
                _kill(p, 0.0)
        if hostfile:
            os.unlink(hostfile)
    outcomes = []
    for r, p in enumerate(procs):
        o = RankOutcome(r, p.returncode, killed=r in killed)
        if capture:
            o.stdout, o.stderr = (_read(f) for f in files[r])
        outcomes.append(o)
    res = LaunchResult(outcomes, time.monotonic() - t0, timed_out=timed_out, env={"backend": backend, "n": n})
    _blame(res, first, float(timeout_s))
    if check and not res.ok:
        raise JobFailed(res)
    return res


def _wait(procs, deadline: float, grace_s: float):
    """Wait for every rank; on the first failure (or the deadline) terminate the rest."""
    first, killed = None, set()
    while True:
        running = [p for p in procs if p.poll() is None]
        bad = [r for r, p in enumerate(procs) if p.returncode not in (None, 0)]
        if bad and first is None:
            time.sleep(0.2)  # let near-simultaneous failures land, so the cause can be told from the echoes
            bad = [r for r, p in enumerate(procs) if p.returncode not in (None, 0)]
            first = min(bad, key=lambda r: (procs[r].returncode in (EXIT_PEER_LOST, EXIT_TIMEOUT), r))
        if not running:
            return first, False, killed
        if first is not None or time.monotonic() > deadline:
            for r, p in enumerate(procs):
                if p.poll() is None:
                    killed.add(r)
                    _kill(p, grace_s)
            return first, first is None, killed
        time.sleep(0.05)


def _kill(p: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM the rank's process group (it runs in a session of its own), SIGKILL after `grace_s`."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _read(f) -> str:
    f.seek(0)
    text = f.read().decode(errors="replace")
    f.close()
    return text


def _blame(res: LaunchResult, first: int | None, timeout_s: float) -> None:
    if res.timed_out:
        alive = [o.rank for o in res.outcomes if o.killed]
        res.message = (f"genmlx.distributed.launch: the job of {len(res.outcomes)} ranks did not finish within "
                       f"{timeout_s:g} s; ranks still running (terminated): {alive}")
        res.failed = alive[0] if alive else None
        return
    if first is None:
        return
    res.failed = first
    o = res.outcomes[first]
    tail = "\n".join(o.stderr.strip().splitlines()[-15:])
    others = "; ".join(x.describe() for x in res.outcomes if x.rank != first and x.returncode != 0)
    res.message = (f"genmlx.distributed.launch: rank {first} of {len(res.outcomes)} failed: {o.describe()}"
                   + (f"\n--- rank {first} stderr (last lines) ---\n{tail}" if tail else "")
                   + (f"\nother ranks: {others}" if others else ""))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m genmlx.distributed.launch", description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=2, help="number of ranks (default 2)")
    p.add_argument("--backend", default="ring", choices=["ring", "nccl"])
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds the whole job may take (default 3600)")
    p.add_argument("--gpus", default=None, help="NCCL: comma-separated GPU ids handed out round-robin")
    p.add_argument("script", help="the Python script every rank runs")
    p.add_argument("args", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    res = launch([sys.executable, a.script, *a.args], a.n, backend=a.backend, timeout_s=a.timeout, capture=False,
                 check=False, gpus=a.gpus.split(",") if a.gpus else None)
    if res.ok:
        return 0
    print(res.message, file=sys.stderr)
    return 124 if res.timed_out else 1


if __name__ == "__main__":
    sys.exit(main())
