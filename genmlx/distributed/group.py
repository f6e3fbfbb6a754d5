"""Process groups: `mx.distributed` behind a small API, with failure behaviour that names the rank.

A `Group` is this process's place in a job: its `rank`, the job's `size`
(world size) and host-side collectives over NumPy arrays. A single process is
a group of size 1 whose collectives return their input without touching
`mx.distributed`, so every distributed algorithm runs unchanged in one process.

Failure behaviour (what the issue calls "not hang forever"):

* every collective runs under a watchdog: one that has not completed after
  `timeout_s` seconds (a peer rank hung, or died without closing its sockets)
  prints `genmlx.distributed: rank R of W: <collective> did not complete within
  T s ...` and ends this process with exit status `EXIT_TIMEOUT`;
* a collective the backend fails (the ring backend reports "connection to a
  peer was lost" when a peer dies) raises `PeerLostError` naming this rank;
* `init()` installs an exception hook: an uncaught exception in a rank prints
  `genmlx.distributed: rank R of W failed: <type>: <message>` before the
  traceback, and a rank that failed only because a peer did exits with
  `EXIT_PEER_LOST`, so a launcher can tell the cause from the consequence
  (`genmlx.distributed.launch` does).

Arrays cross ranks exactly: float64 and int64 values travel as pairs of 32-bit
words (MLX would otherwise convert float64 to float32).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from typing import Iterator

import mlx.core as mx
import numpy as np

from ..evaluation import evaluate

__all__ = [
    "Group", "PeerLostError", "init", "world", "current", "using", "rank_from_env",
    "EXIT_TIMEOUT", "EXIT_PEER_LOST", "DEFAULT_TIMEOUT_S",
]

EXIT_TIMEOUT = 124  # a collective did not complete in time (like timeout(1))
EXIT_PEER_LOST = 75  # this rank failed because a peer rank did (EX_TEMPFAIL)
DEFAULT_TIMEOUT_S = 300.0
_BACKENDS = ("any", "ring", "nccl", "mpi", "jaccl")


class PeerLostError(RuntimeError):
    """A collective failed because another rank of the job is gone (the message names this rank)."""


class Group:
    """This process's rank in a job and host-side collectives over its ranks.

    Args:
        inner: an `mx.distributed.Group` (None: a single process, world size 1).
        backend: the backend name (reported in telemetry and errors).
        timeout_s: the watchdog limit of one collective (None: `GENMLX_DIST_TIMEOUT`, else 300 s).
    """

    def __init__(self, inner=None, backend: str = "single", timeout_s: float | None = None):
        self._inner = inner
        self.backend = backend
        self.rank = 0 if inner is None else int(inner.rank())
        self.size = 1 if inner is None else int(inner.size())
        if timeout_s is None:
            timeout_s = _env_float("GENMLX_DIST_TIMEOUT", DEFAULT_TIMEOUT_S)
        if not float(timeout_s) > 0:
            raise ValueError(f"Group: timeout_s must be a number of seconds > 0, got {timeout_s!r}")
        self.timeout_s = float(timeout_s)
        # The ring and MPI backends run on the CPU; NCCL on the GPU with the arrays.
        self._stream = mx.cpu if backend in ("ring", "mpi", "jaccl") else None

    def __repr__(self) -> str:
        return f"Group(rank={self.rank}, size={self.size}, backend={self.backend!r})"

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    @property
    def where(self) -> str:
        """`rank R of W`, for messages."""
        return f"rank {self.rank} of {self.size}"

    # -- sharding ---------------------------------------------------------------------
    def shard(self, n: int, name: str = "n") -> tuple[int, int]:
        """`(start, count)` of this rank's share of `n` items (the first `n % size` ranks get one more)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < self.size:
            raise ValueError(f"{name} must be an int >= the world size {self.size} (one item per rank at least), "
                             f"got {n!r}")
        base, extra = divmod(n, self.size)
        return self.rank * base + min(self.rank, extra), base + (self.rank < extra)

    def keys(self, key, n: int) -> mx.array:
        """`n` keys split from `key` (the same on every rank): item i of a job uses key i wherever it runs."""
        if key is None:
            raise ValueError("a distributed run needs key= (the same MLX key on every rank), got None")
        return mx.random.split(key, n)

    # -- collectives (host side, exact) -------------------------------------------------
    def all_gather(self, x, what: str = "all_gather") -> np.ndarray:
        """Every rank's `x` (same shape on every rank) stacked along a new first axis: `[size, *x.shape]`."""
        a = np.ascontiguousarray(np.asarray(x))
        if self.size == 1:
            return a[None].copy()
        words, restore = _to_words(a)
        out = self._run(what, lambda: mx.distributed.all_gather(mx.array(words.reshape(1, -1)),
                                                                 group=self._inner, stream=self._stream))
        return restore(np.asarray(out).reshape(self.size, -1)).reshape((self.size,) + a.shape)

    def all_gather_many(self, arrays: list, what: str = "all_gather") -> list[np.ndarray]:
        """`all_gather` of several arrays (shapes and dtypes may differ) in one collective."""
        arrays = [np.ascontiguousarray(np.asarray(x)) for x in arrays]
        if self.size == 1 or not arrays:
            return [a[None].copy() for a in arrays]
        packed = [_to_words(a) for a in arrays]
        sizes = [w.size for w, _ in packed]
        got = self.all_gather(np.concatenate([w for w, _ in packed]), what)  # [size, total words]
        out, at = [], 0
        for a, (w, restore), k in zip(arrays, packed, sizes):
            out.append(restore(got[:, at:at + k]).reshape((self.size,) + a.shape))
            at += k
        return out

    def gather_rows(self, x, what: str = "gather_rows") -> np.ndarray:
        """Every rank's rows of `x` (`[n_r, ...]`, `n_r` may differ), concatenated in rank order."""
        a = np.asarray(x)
        if self.size == 1:
            return a.copy()
        counts = self.all_gather(np.array([a.shape[0]], np.int64), what + " (row counts)").ravel()
        top = int(counts.max())
        pad = np.zeros((top - a.shape[0],) + a.shape[1:], a.dtype)
        got = self.all_gather(np.concatenate([a, pad]), what)
        return np.concatenate([got[r, : int(c)] for r, c in enumerate(counts)])

    def all_sum(self, x, what: str = "all_sum") -> np.ndarray:
        """The sum over ranks of `x`, computed in float64 from the gathered values (exact order: rank 0 first)."""
        return self.all_gather(np.asarray(x, np.float64), what).sum(axis=0)

    def barrier(self) -> None:
        """Return when every rank has reached this call."""
        self.all_gather(np.zeros(1, np.int32), "barrier")

    def _run(self, what: str, make):
        done = threading.Event()
        timer = threading.Thread(target=self._watch, args=(what, done), daemon=True)
        timer.start()
        try:
            out = make()
            evaluate(out)
            return out
        except RuntimeError as e:
            raise PeerLostError(f"genmlx.distributed: {self.where} ({self.backend}): {what} failed: {e}; "
                                "another rank of the job has probably failed (its own message names it)") from e
        finally:
            done.set()

    def _watch(self, what: str, done: threading.Event) -> None:
        if done.wait(self.timeout_s):
            return
        sys.stdout.flush()
        sys.stderr.write(f"genmlx.distributed: {self.where} ({self.backend}): {what} did not complete within "
                         f"{self.timeout_s:g} s: a peer rank is hung or died; ending this rank "
                         f"(set GENMLX_DIST_TIMEOUT or timeout_s= to wait longer)\n")
        sys.stderr.flush()
        os._exit(EXIT_TIMEOUT)


def _to_words(a: np.ndarray):
    """`a` as uint32 words (MLX carries them exactly), and the function that turns gathered words back."""
    orig = a.dtype
    if orig == np.bool_ or orig.itemsize < 4:
        a = a.astype(np.float64 if orig.kind == "f" else np.int32)
    elif orig.itemsize not in (4, 8) or orig.kind not in "fiu":
        raise TypeError(f"genmlx.distributed: cannot send arrays of dtype {orig}")
    dt = a.dtype
    words = np.ascontiguousarray(a).reshape(-1).view(np.uint32)

    def restore(g: np.ndarray) -> np.ndarray:
        g = np.ascontiguousarray(g.astype(np.uint32, copy=False))
        return g.view(dt).astype(orig, copy=False)

    return words, restore


# -- the world group and the current group ------------------------------------------------

_world: Group | None = None
_stack: list[Group] = []


def init(backend: str = "any", *, timeout_s: float | None = None, strict: bool = False) -> Group:
    """Join the job this process was launched in (`mlx.launch` or `genmlx.distributed.launch`).

    Args:
        backend: "ring" (TCP, CPU), "nccl" (CUDA GPUs: one GPU per rank, chosen by
            the launcher through `CUDA_VISIBLE_DEVICES`), "mpi", "jaccl" or "any".
        timeout_s: the watchdog limit of one collective (see `Group`).
        strict: raise when no job is there (False: a process started on its own is world size 1).

    Returns:
        The world `Group` (also what `world()` and, outside `using(...)`, `current()` return).
    """
    global _world
    if backend not in _BACKENDS:
        raise ValueError(f"init: backend must be one of {list(_BACKENDS)}, got {backend!r}")
    if _world is not None and _world.size > 1:
        return _world
    launched = rank_from_env()
    # a process on its own, or a job of one rank: nothing to connect to (NCCL still initializes, to test it)
    if (launched is None and not strict) or (launched is not None and launched[1] == 1 and backend != "nccl"):
        _world = Group(None, "single", timeout_s)
        return _world
    inner = mx.distributed.init(strict=True, backend=backend)
    name = backend if backend != "any" else _guess_backend()
    _world = Group(inner if inner.size() > 1 else None, name if inner.size() > 1 else "single", timeout_s)
    _install_hook()
    return _world


def world() -> Group:
    """The world group (`init()` with the defaults when it was not called)."""
    return _world if _world is not None else init()


def current() -> Group:
    """The group distributed algorithms use by default: the innermost `using(...)`, else `world()`."""
    return _stack[-1] if _stack else world()


@contextlib.contextmanager
def using(group: Group) -> Iterator[Group]:
    """Make `group` the default of the distributed algorithms inside the block."""
    if not isinstance(group, Group):
        raise TypeError(f"using: group must be a genmlx.distributed.Group, got {type(group).__name__}")
    _stack.append(group)
    try:
        yield group
    finally:
        _stack.pop()


def rank_from_env(environ=None) -> tuple[int, int] | None:
    """`(rank, world size)` a launcher put in the environment, or None for a process started on its own.

    Reads `GENMLX_RANK`/`GENMLX_WORLD_SIZE` (set by `genmlx.distributed.launch`), else
    MLX's own `MLX_RANK` with `MLX_WORLD_SIZE` (NCCL) or the ring hostfile's length.
    """
    env = os.environ if environ is None else environ
    for rk, sz in (("GENMLX_RANK", "GENMLX_WORLD_SIZE"), ("MLX_RANK", "MLX_WORLD_SIZE")):
        if rk in env:
            rank = int(env[rk])
            size = int(env[sz]) if sz in env else _hostfile_size(env.get("MLX_HOSTFILE"))
            if size is not None:
                return rank, size
    return None


def _hostfile_size(path) -> int | None:
    if not path:
        return None
    try:
        with open(path) as f:
            text = f.read().strip()
        return len(json.loads(text)) if text else 1
    except (OSError, ValueError):
        return None


def _guess_backend() -> str:
    if os.environ.get("NCCL_HOST_IP") or os.environ.get("NCCL_PORT"):
        return "nccl"
    if os.environ.get("MLX_HOSTFILE"):
        return "ring"
    return "mpi" if os.environ.get("OMPI_COMM_WORLD_RANK") else "any"


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a number of seconds") from None


def _install_hook() -> None:
    previous = sys.excepthook
    if getattr(previous, "_genmlx_rank_hook", False):
        return

    def hook(kind, value, tb):
        g = _world
        where = g.where if g is not None else "rank ?"
        sys.stderr.write(f"genmlx.distributed: {where} failed: {kind.__name__}: {value}\n")
        previous(kind, value, tb)
        if issubclass(kind, PeerLostError):
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_PEER_LOST)

    hook._genmlx_rank_hook = True
    sys.excepthook = hook
