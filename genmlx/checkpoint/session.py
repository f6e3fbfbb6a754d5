"""`checkpointing(path)` and `resume(path)`: the block whose driver runs are checkpointed.

    with gm.checkpoint.checkpointing("fit.db", every=500):      # or seconds=60
        res = infer.nuts(model, args, obs, addresses=[...], n_samples=100_000, key=key)

    # after a Ctrl-C, a SIGTERM, a SIGKILL or a crash, the same call, resumed:
    with gm.checkpoint.resume("fit.db"):
        res = infer.nuts(model, args, obs, addresses=[...], n_samples=100_000, key=key)

Inside the block the loop driver writes the whole state of each run (the
algorithm's state, the step index, the kept samples, the per-iteration
statistics, the counters) every `every` driver steps and/or `seconds` seconds,
and once more when the run ends. Under `resume`, each run of the block (in the
order the block starts them) checks that it is the run the database recorded
(algorithm, model, steps, parameters and key: same call, same keys), then
continues from its newest good checkpoint, or returns the stored result of a
run that had finished. With the same keys the resumed result equals the
uninterrupted one bit for bit. Only the outermost driver run is checkpointed
(a run nested inside another's step is part of that step).

The block is per thread (a `contextvars` variable): another thread's runs
are not checkpointed by it.
"""

from __future__ import annotations

import contextvars
import json
import math
import time
from typing import Any

import mlx.core as mx
import numpy as np

from .program import Program
from .schema import decode, encode
from .store import CheckpointError, Store, open_for_resume

__all__ = ["checkpointing", "resume", "active", "RunCheckpoint"]

_active: contextvars.ContextVar = contextvars.ContextVar("genmlx_checkpoint", default=None)


def active():
    """The innermost checkpointing block of this thread, or None."""
    return _active.get()


def _number(name: str, v, minimum: float, integer: bool):
    if v is None:
        return None
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok or not math.isfinite(v) or v < minimum:
        kind = "an int" if integer else "a number"
        raise ValueError(f"checkpoint: {name} must be {kind} >= {minimum}, got {v!r}")
    return v


class checkpointing:
    """Checkpoint every driver run started in this block to the SQLite database at `path`.

    Args:
        path: the database file (created; its directory must exist).
        every: write a checkpoint every `every` driver steps.
        seconds: write one when `seconds` have passed since the last (default
            60 when neither is given).
        keep: checkpoints kept per run (>= 1; the older ones are deleted in the
            same transaction that writes a new one).
        overwrite: start over in a database that already holds runs (else that
            is an error: use `resume`).

    Raises:
        CheckpointError: the path cannot be created or is not a checkpoint
            database (names the path).
        ValueError: a bad `every`, `seconds` or `keep`.
    """

    resuming = False

    def __init__(self, path, *, every: int | None = None, seconds: float | None = None, keep: int = 2,
                 overwrite: bool = False):
        self.path = str(path)
        self.every = _number("every", every, 1, True)
        self.seconds = _number("seconds", seconds, 0, False)
        if self.every is None and self.seconds is None:
            self.seconds = 60.0
        self.keep = _number("keep", keep, 1, True)
        self.overwrite = overwrite
        self.store: Store | None = None
        self.slot = 0
        self._token = None

    def _open(self) -> Store:
        store = Store(self.path, create=True)
        if store.has_runs():
            if not self.overwrite:
                store.close()
                raise CheckpointError(f"checkpoint: {self.path} already holds a checkpointed run; "
                                      "use genmlx.checkpoint.resume to continue it, or overwrite=True")
            store.clear()
        store.discard_backup()  # an earlier run's: never resumed in place of this one
        store.set_settings({"every": self.every, "seconds": self.seconds, "keep": self.keep})
        return store

    def __enter__(self):
        self.store = self._open()
        self.slot = 0
        self._token = _active.set(self)
        return self

    def __exit__(self, *exc) -> bool:
        _active.reset(self._token)
        if self.store is not None:
            self.store.close()
        self.store = None
        return False

    def next_slot(self) -> int:
        s = self.slot
        self.slot += 1
        return s


class resume(checkpointing):
    """Continue the runs checkpointed in `path` (same calls, same keys); settings as stored unless given.

    A damaged database (a checksum that fails, SQLite's integrity check
    failing, a truncated file) is replaced by its backup `<path>.bak` (the copy
    taken after the last committed checkpoint), or, without a usable backup,
    repaired in place: each run continues from its newest good checkpoint,
    with one `CheckpointWarning`.

    Raises:
        CheckpointError: `path` does not exist or holds no usable run.
    """

    resuming = True

    def __init__(self, path, *, every: int | None = None, seconds: float | None = None, keep: int | None = None):
        super().__init__(path, every=every, seconds=seconds, keep=keep or 2)
        self._given = {"every": every, "seconds": seconds, "keep": keep}

    def _open(self) -> Store:
        store = open_for_resume(self.path)
        s = store.settings()
        if self._given["every"] is None and self._given["seconds"] is None:
            self.every, self.seconds = s.get("every"), s.get("seconds")
        if self._given["keep"] is None:
            self.keep = s.get("keep", 2)
        return store


class Restored:
    """What a resumed run starts from."""

    def __init__(self, step: int, state, samples: list, history: dict, counters: dict, done: bool):
        self.step, self.state, self.samples, self.history = step, state, samples, history
        self.counters, self.done = counters, done


def _key_hex(key) -> str:
    return np.asarray(key).tobytes().hex()


def _plain(v):
    try:
        json.dumps(v)
        return v
    except (TypeError, ValueError):
        return repr(v)


class RunCheckpoint:
    """The driver's handle on one checkpointed run: `restore()` once, `due()` / `save()` per step."""

    def __init__(self, block: checkpointing, *, step_fn, state, algorithm: str, model: str, n_steps: int,
                 burn: int, thin: int, iterations_per_step: int, chain: int, params: dict, key: mx.array):
        self.block, self.store, self.path = block, block.store, block.path
        self.slot = block.next_slot()
        self.program = Program(step_fn, state)
        self.fingerprint = {"algorithm": algorithm, "model": model, "n_steps": n_steps, "burn": burn,
                            "thin": thin, "iterations_per_step": iterations_per_step, "chain": chain,
                            "params": {str(k): _plain(v) for k, v in params.items()}, "key": _key_hex(key)}
        self.seq = 0
        self.n_samples = 0
        self.hist_len: dict = {}
        self.last_step = 0
        self.finished = False  # the run's final checkpoint is written
        self.last_time = time.monotonic()

    def restore(self) -> Restored | None:
        """The stored run to continue (None: start from the beginning). Checks it is this run."""
        row = self.store.run(self.slot)
        if row is None or not self.block.resuming:
            self.store.start_run(self.slot, self.fingerprint)
            return None
        fp, _ = row
        diff = [k for k in self.fingerprint if fp.get(k) != self.fingerprint[k]]
        if diff:
            what = ", ".join(f"{k}: stored {fp.get(k)!r}, now {self.fingerprint[k]!r}" for k in diff)
            raise CheckpointError(f"checkpoint: run {self.slot} in {self.path} is not this call ({what}); "
                                  "resume needs the same call with the same key")
        got = self.store.load(self.slot)
        if got is None:
            return None
        ck, chunks = got
        samples: list = []
        history: dict = {}
        for c in chunks:
            new_samples, new_hist = decode(c.body, c.blob, self.program)
            samples.extend(new_samples)
            for k, v in new_hist.items():
                history.setdefault(k, []).extend(v)
        state = decode(ck.body, ck.blob, self.program)
        self.seq = ck.seq + 1
        self.n_samples = len(samples)
        self.hist_len = {k: len(v) for k, v in history.items()}
        self.last_step = ck.step
        self.finished = ck.done
        return Restored(ck.step, state, samples, history, ck.meta, ck.done)

    def due(self, step: int) -> bool:
        b = self.block
        if b.every is not None and step - self.last_step >= b.every:
            return True
        return b.seconds is not None and time.monotonic() - self.last_time >= b.seconds

    def save(self, step: int, state, samples: list, history, counters: dict, done: bool = False) -> int:
        """Write the checkpoint after `step` driver steps; returns its bytes. Raises CheckpointError.

        `history`: the driver's `History`; only its entries since the last checkpoint become lists."""
        from .schema import SchemaError

        new_hist, lengths = history.since(self.hist_len), history.lengths()
        try:
            chunk = encode((samples[self.n_samples:], new_hist), self.program)
            body = encode(state, self.program)
        except (SchemaError, RecursionError) as e:
            raise CheckpointError(f"checkpoint: cannot write the state of run {self.slot} to {self.path}: {e}") from e
        n = self.store.save(self.slot, self.seq, step, done, counters, chunk, self.last_step, body, self.block.keep)
        self.seq += 1
        self.n_samples = len(samples)
        self.hist_len = lengths
        self.last_step = step
        self.finished = done
        self.last_time = time.monotonic()
        return n


def begin(**kwargs: Any) -> RunCheckpoint | None:
    """A `RunCheckpoint` when this thread is inside a checkpointing block, else None."""
    block = _active.get()
    if block is None or block.store is None:
        return None
    return RunCheckpoint(block, **kwargs)
