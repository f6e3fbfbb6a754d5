"""The core's event bus: what inference loops and the handler tell observers.

`genmlx` never imports an observability library (DESIGN.md, rule 1). It emits
plain `NamedTuple` events at two places:

* the loop driver (`genmlx.inference.driver`): `RunStarted`, one `StepEnded`
  per driver step, `RunEnded`, and `Checkpointed` per checkpoint written;
* the handler, only while someone listens for sites: `SiteHandled`, with the
  number of MLX graph nodes the site added.

Observers (`genmlx_observe`, the pytest plugin, user code) implement any
subset of the `Observer` methods and call `subscribe`. With no subscriber an
emission point costs one truth test of a module-level tuple. An observer that
raises never stops inference: the error is counted in `dropped` and warned
about once per observer.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple, Protocol, runtime_checkable

__all__ = [
    "RunStarted",
    "StepEnded",
    "RunEnded",
    "SiteHandled",
    "Checkpointed",
    "Observer",
    "subscribe",
    "unsubscribe",
    "subscribed",
    "observers",
    "dropped",
    "run_listeners",
    "step_listeners",
    "site_listeners",
]


class RunStarted(NamedTuple):
    """An inference run begins (one per `driver.run` call and chain)."""

    run_id: int
    algorithm: str  # "mh", "hmc", "nuts", "smc", "importance", "vi", ...
    model: str  # the generative function's name
    params: dict[str, Any]  # plain Python: n_samples, burn, step_size, ...
    total_steps: int | None  # planned driver steps, None when open-ended
    chain: int  # 0 for a single chain
    store: Any  # the list the driver keeps results in (not a leak)


class StepEnded(NamedTuple):
    """One driver step ended: `iterations` iterations, materialized once."""

    run_id: int
    algorithm: str
    model: str
    step: int  # 0-based driver step
    iteration: int  # index of the step's first iteration
    iterations: int  # iterations in this step (K for a fused K-iteration kernel)
    duration_s: float  # wall time of the step, materialization included
    syncs: int  # host syncs inside the step besides the driver's one eval
    phase: str  # "warmup" or "sampling"
    stats: dict[str, Any]  # sampler statistics as plain Python numbers (as the step gave them, arrays
    # included, when no observer reads them: every step observer says `reads_stats = False`)
    chain: int
    store: Any  # same object as RunStarted.store
    live_arrays: int | None  # the driver's census, when it took one this step
    pending_nodes: int | None
    state: Any = None  # the algorithm's state after the step (what the loop carries, not a leak)
    ahead: Any = None  # a pipelined run's next step, scheduled while this one lands (its `driver.Step` and the
    # driver's marker of its evaluation): held by the loop, not a leak


class RunEnded(NamedTuple):
    """A run finished, normally or with `error` set."""

    run_id: int
    algorithm: str
    model: str
    steps: int
    iterations: int
    syncs: int
    duration_s: float
    summary: dict[str, Any]  # final diagnostics: acceptance_rate, ess_bulk, r_hat, log_ml, ...
    error: BaseException | None
    chain: int
    state: Any = None  # the algorithm's final state


class SiteHandled(NamedTuple):
    """The handler finished a trace site (only emitted while site listeners exist)."""

    address: tuple  # full hierarchical path of the site
    gen_fn: str  # name of the distribution or generative function at the site
    op: str  # "simulate", "generate", "update", "regenerate", "assess"
    nodes: int  # MLX graph nodes genmlx added for the site (sampling, log-prob, score, weight)
    breakdown: dict[str, int]  # nodes per part; for a nested call, per sub-site


class Checkpointed(NamedTuple):
    """The driver wrote (or failed to write) a checkpoint of a run (`genmlx.checkpoint`)."""

    run_id: int
    algorithm: str
    model: str
    chain: int
    step: int  # driver steps the checkpoint holds
    bytes: int  # bytes written (0 when it failed)
    duration_s: float  # encoding and the SQLite transaction
    path: str
    error: BaseException | None = None  # the CheckpointError of a failed write


@runtime_checkable
class Observer(Protocol):
    """Implement any subset of these methods; missing ones are never called.

    A step observer that never reads `StepEnded.stats` may set `reads_stats = False`:
    while every step observer does, the driver leaves the statistics on the device and
    reads them back in batches (on a GPU a read back per step costs as much as a fused
    block), and `stats` holds the step's own values, arrays included.
    """

    def on_run_start(self, event: RunStarted) -> None: ...

    def on_step(self, event: StepEnded) -> None: ...

    def on_run_end(self, event: RunEnded) -> None: ...

    def on_site(self, event: SiteHandled) -> None: ...

    def on_checkpoint(self, event: Checkpointed) -> None: ...


# Module-level tuples: the emission points test their truth and loop over them.
run_listeners: tuple = ()
step_listeners: tuple = ()
stats_listeners: tuple = ()  # step observers that read StepEnded.stats (all but those with reads_stats = False)
site_listeners: tuple = ()
_observers: list = []
dropped: dict[str, int] = {}
_warned: set[int] = set()


def observers() -> tuple:
    """The subscribed observers, in subscription order."""
    return tuple(_observers)


def _rebuild() -> None:
    global run_listeners, step_listeners, stats_listeners, site_listeners
    run_listeners = tuple(o for o in _observers if hasattr(o, "on_run_start") or hasattr(o, "on_run_end"))
    step_listeners = tuple(o.on_step for o in _observers if hasattr(o, "on_step"))
    stats_listeners = tuple(o.on_step for o in _observers if hasattr(o, "on_step") and getattr(o, "reads_stats", True))
    site_listeners = tuple(o.on_site for o in _observers if hasattr(o, "on_site"))


def subscribe(observer: object) -> object:
    """Subscribe `observer` (idempotent). Returns it, for chaining."""
    if observer not in _observers:
        _observers.append(observer)
        _rebuild()
    return observer


def unsubscribe(observer: object) -> None:
    """Remove `observer`; harmless when it was not subscribed."""
    if observer in _observers:
        _observers.remove(observer)
        _rebuild()


class subscribed:
    """Context manager: `with events.subscribed(obs): ...` subscribes for a block."""

    def __init__(self, observer: object):
        self.observer = observer

    def __enter__(self):
        subscribe(self.observer)
        return self.observer

    def __exit__(self, *exc):
        unsubscribe(self.observer)
        return False


def _failed(callback, error: BaseException) -> None:
    owner = getattr(callback, "__self__", callback)
    name = type(owner).__name__
    dropped[name] = dropped.get(name, 0) + 1
    if id(owner) not in _warned:
        _warned.add(id(owner))
        warnings.warn(
            f"genmlx observer {name} raised {type(error).__name__}: {error}; "
            "inference continues and further events to it are still sent "
            "(failures are counted in genmlx.events.dropped)",
            RuntimeWarning,
            stacklevel=3,
        )


def emit_run_start(event: RunStarted) -> None:
    for o in run_listeners:
        cb = getattr(o, "on_run_start", None)
        if cb is not None:
            try:
                cb(event)
            except Exception as e:  # an observer never stops inference
                _failed(cb, e)


def emit_step(event: StepEnded) -> None:
    for cb in step_listeners:
        try:
            cb(event)
        except Exception as e:
            _failed(cb, e)


def emit_run_end(event: RunEnded) -> None:
    for o in run_listeners:
        cb = getattr(o, "on_run_end", None)
        if cb is not None:
            try:
                cb(event)
            except Exception as e:
                _failed(cb, e)


def emit_checkpoint(event: Checkpointed) -> None:
    """To every observer with `on_checkpoint` (checkpoints are rare: no listener tuple)."""
    for o in tuple(_observers):
        cb = getattr(o, "on_checkpoint", None)
        if cb is not None:
            try:
                cb(event)
            except Exception as e:
                _failed(cb, e)


def emit_site(event: SiteHandled) -> None:
    for cb in site_listeners:
        try:
            cb(event)
        except Exception as e:
            _failed(cb, e)


_next_run_id = 0


def new_run_id() -> int:
    """A process-unique id for a run."""
    global _next_run_id
    _next_run_id += 1
    return _next_run_id
