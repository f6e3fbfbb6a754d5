"""The one loop driver every inference algorithm runs through (DESIGN.md rule 2).

An algorithm is a `step(key, state) -> Step` function. The driver owns the
loop and everything that made the seed leak when each loop did it alone:

* one batched `mx.eval` per step over the new state, the kept sample, the
  step's statistics and its deferred parameter checks (cutting lazy graphs);
* the cache policy (applied once) and the resource budget (checked each step);
* sampler statistics converted to plain Python numbers;
* the run / step events of `genmlx.events` (one truth test when nobody listens);
* burn-in, thinning, callbacks and a progress bar.

Any other host sync inside a step (an accept decision on the host, an
ESS-triggered resampling decision, a rejection sampler's round) must go
through `host()`, which counts it: syncs per iteration is a metric.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, Mapping, NamedTuple

import mlx.core as mx

from .. import events, rng
from ..checkpoint.session import begin as _begin_checkpoint
from ..checkpoint.store import CheckpointError
from ..evaluation import clean_up_at_thread_end, evaluate, evaluate_async, item, wait_for
from ..tree import arrays_and_checks, mark_ready
from . import interrupt as _interrupt
from .history import History, to_python
from .interrupt import RunInterrupted

__all__ = ["Step", "Decide", "RunResult", "run", "host", "sync_count", "RunInterrupted"]

_local = threading.local()  # run depth on this thread: only the outermost run is checkpointed


class Step(NamedTuple):
    """What one driver step returns."""

    state: Any  # the algorithm's new state (arrays are materialized by the driver)
    sample: Any = None  # what to keep for the caller (None keeps nothing)
    stats: Mapping[str, Any] = {}  # sampler statistics: arrays, numbers; shape [K] for K iterations


class Decide(NamedTuple):
    """A state chosen by the step's one `mx.eval`: `new` if `accept` (a 0-d bool array) else `old`.

    An MH step on its own (not inside a fused kernel) returns this instead of
    merging the two traces leaf by leaf with `mx.where`: the driver evaluates
    `accept` with everything else and then reads it, so the choice costs no
    graph nodes and no extra sync. `old` must be materialized (the previous
    state); `new` is evaluated whether it is accepted or not, as a merge would,
    and its failed parameter checks are raised only if it is accepted. A `new`
    with a `_genmlx_build()` method (a proposal held as array leaves) is built
    into the state only when accepted.
    """

    accept: Any
    new: Any
    old: Any


class RunResult(NamedTuple):
    state: Any
    samples: list
    stats: dict[str, list]  # per-iteration statistics, plain Python
    steps: int
    iterations: int
    syncs: int
    duration_s: float


_syncs = 0


def host(x) -> Any:
    """Bring `x` to the host (a counted sync). Use for decisions the algorithm must make in Python."""
    global _syncs
    _syncs += 1
    if isinstance(x, mx.array):
        if x.size == 1:
            return item(x)
        evaluate(x)
        return x.tolist()
    evaluate(x)
    return x


def sync_count() -> int:
    """Process-wide number of counted syncs so far."""
    return _syncs


_policy_applied = False


def _apply_cache_policy() -> None:
    global _policy_applied
    if not _policy_applied:
        from ..memory import apply_default_cache_policy

        apply_default_cache_policy()
        _policy_applied = True


def _progress(total: int, enabled: bool | None, desc: str):
    if enabled is None:
        enabled = total >= 2000 and sys.stderr.isatty()
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency; stay quiet if someone removed it
        return None
    return tqdm(total=total, desc=desc, leave=False, mininterval=0.5)


class _Launched(NamedTuple):
    done: list  # what to wait for before the step's results are read (scheduled steps)
    checks: list
    walked: list


def _launch(out: Step, keep: bool, wait: bool) -> _Launched:
    """Evaluate the step's new state, kept sample, stats and deferred checks: at once (`wait`), or
    scheduled on the device (a pipelined run lands them after building the next step).

    A scheduled step is waited for through a scalar of its own evaluation (one evaluation's
    arrays share one event): reading one of its arrays instead would move a GPU array's buffer
    to host-visible memory (MLX's CUDA backend does) while the next step's kernels read it.
    """
    walked: list = []
    decide = isinstance(out.state, Decide)
    sample = out.sample if keep and out.sample is not out.state else None
    pending = (out.state.accept, out.state.new) if decide else out.state
    arrays, checks = arrays_and_checks((pending, sample, out.stats), walked)
    oks = [c.ok for c in checks]
    if wait:
        evaluate(arrays, oks)
        return _Launched([], checks, walked)
    done = mx.zeros((), mx.bool_)
    evaluate_async(arrays, oks, done)
    return _Launched([done], checks, walked)


def _land(out: Step, keep: bool, launched: _Launched) -> tuple[Any, Any]:
    """The step's evaluated results: a `Decide` resolved, failed checks raised, traces marked ready;
    returns (state, sample)."""
    wait_for(launched.done)
    checks = launched.checks
    state = out.state
    built = None
    if isinstance(state, Decide):
        if state.accept.item():
            state = state.new
            build = getattr(state, "_genmlx_build", None)
            if build is not None:  # a proposal held as leaves (a compiled step): its trace, built now
                state = built = build()
        else:
            state = state.old
            checks = ()  # a rejected proposal's parameters are not the run's business
    if checks:
        from ..checks import raise_failed

        raise_failed(checks)
    mark_ready(launched.walked)
    if built is not None:
        mark_ready([built])
    if not keep:
        return state, None
    return state, (state if out.sample is out.state else out.sample)


def run(
    step: Callable[[mx.array, Any], Step],
    state: Any,
    n_steps: int,
    *,
    algorithm: str,
    model: str = "",
    key: mx.array | None = None,
    params: Mapping[str, Any] | None = None,
    burn: int = 0,
    thin: int = 1,
    iterations_per_step: int = 1,
    callback: Callable[[int, Any, dict], None] | None = None,
    progress: bool | None = None,
    chain: int = 0,
    summarize: Callable[["RunResult"], dict] | None = None,
    pipeline: bool = False,
) -> RunResult:
    """Run `step` `n_steps` times from `state`.

    Args:
        step: `step(key, state) -> Step`; must not evaluate arrays itself except
            through `host()`.
        state: the initial algorithm state.
        n_steps: driver steps (each of `iterations_per_step` iterations).
        algorithm, model, params: what the events say the run is.
        key: an MLX key; without one, genmlx's stream (`gm.seed`).
        burn: steps run before samples are kept (their phase is "warmup").
        thin: keep every `thin`-th sample after burn-in.
        callback: `callback(step_index, state, stats)` after each step, with
            stats as plain Python.
        progress: show a progress bar (default: long runs on a terminal only).
        summarize: builds the run's final diagnostics for `RunEnded`.
        pipeline: the step reads nothing on the host (no `host()`, no `Decide`):
            step i + 1 is built and scheduled on the device (`mx.async_eval`)
            before step i is landed (its checks raised, its statistics,
            events, budget check and callback), so the host's work of a step
            overlaps the device's work of the next. Everything a step reports
            is what it reports unpipelined; at most two steps are in flight.
    """
    if n_steps < 0 or burn < 0 or thin < 1:
        raise ValueError(f"{algorithm}: need n_steps >= 0, burn >= 0, thin >= 1; got {n_steps}, {burn}, {thin}")
    clean_up_at_thread_end()  # MLX's per-thread state, freed before the process exits (genmlx.evaluation)
    from ..memory import check_budget

    _apply_cache_policy()
    key = rng.resolve(key)
    # evaluated with the first step that uses a key (one sync fewer than evaluating it here)
    keys = mx.random.split(key, max(n_steps, 1))
    samples: list = []
    history = History()  # compact while the run lasts; lists in the result
    params = dict(params or {})
    nested = getattr(_local, "depth", 0)
    ck = None if nested else _begin_checkpoint(
        step_fn=step, state=state, algorithm=algorithm, model=model, n_steps=n_steps, burn=burn, thin=thin,
        iterations_per_step=iterations_per_step, chain=chain, params=params, key=key)
    start, syncs_before, duration_before = 0, 0, 0.0
    if ck is not None:
        restored = ck.restore()
        if restored is not None:
            state, start = restored.state, restored.step
            samples.extend(restored.samples)
            for k, v in restored.history.items():
                history.extend(k, v)
            syncs_before = restored.counters.get("syncs", 0)
            duration_before = restored.counters.get("duration_s", 0.0)
            restored = None
    run_id = events.new_run_id()
    if events.run_listeners:
        events.emit_run_start(
            events.RunStarted(run_id, algorithm, model, params, n_steps, chain, samples)
        )
    bar = _progress(n_steps, progress, algorithm)
    if bar is not None and start:
        bar.update(start)
    syncs0 = _syncs - syncs_before
    t_start = time.perf_counter() - duration_before
    done = start
    error: BaseException | None = None

    def result(stats=None) -> RunResult:
        return RunResult(state, samples, history.lists() if stats is None else stats, done,
                         done * iterations_per_step, _syncs - syncs0, time.perf_counter() - t_start)

    def save(final: bool) -> None:
        r = result(stats=history)  # the checkpoint writes the history's new entries only
        _save_checkpoint(ck, run_id, algorithm, model, chain, r, final)

    _local.depth = nested + 1
    try:
        with _interrupt.guard():
            stats = None  # the last landed step's (held until the next lands, as at the run's end)

            def land(flight: list, ahead: list | None) -> None:
                """Step i's results, evaluated (`flight`: its [i, Step, keep, launched, t0, s0], emptied:
                the `Step` dies before the step's census and events, a rejected proposal with it), then
                kept, recorded and reported. `ahead`: a pipelined run's next step, in flight."""
                nonlocal state, stats, done
                i, out, keep, launched, t0, s0 = flight
                flight.clear()
                state, kept = _land(out, keep, launched)
                stats, out, launched = out.stats, None, None
                if callback is not None or events.stats_listeners:
                    stats = {k: to_python(v) for k, v in stats.items()}
                # else arrays as they are: on a GPU the history reads them back in batches
                ahead = (ahead[1], ahead[3].done) if ahead else None
                warm = i < burn
                if keep:
                    samples.append(kept)
                kept = None
                history.add(stats, iterations_per_step)
                done = i + 1
                counts = check_budget(f"{algorithm} step {i}", exclude=samples)
                if events.step_listeners:
                    live, pending = counts if counts is not None else (None, None)
                    events.emit_step(
                        events.StepEnded(
                            run_id, algorithm, model, i, i * iterations_per_step, iterations_per_step,
                            time.perf_counter() - t0, _syncs - s0, "warmup" if warm else "sampling",
                            stats, chain, samples, live, pending, state, ahead,
                        )
                    )
                if callback is not None:
                    callback(i, state, stats)
                if bar is not None:
                    bar.update(1)
                if ck is not None and done < n_steps and ck.due(done):
                    save(False)
                sig = _interrupt.pending()
                if sig is not None:
                    if ck is not None and ck.last_step != done:
                        save(False)
                    raise RunInterrupted(sig, algorithm, done, result(), ck.path if ck is not None else None)

            # Unpipelined, each step lands before the next is built (on the landed state: a `Decide`
            # resolved). Pipelined, step i + 1 is built on step i's scheduled state and scheduled before
            # step i lands.
            flight = None  # the step scheduled and not yet landed: [i, Step, keep, launched, t0, s0]
            for i in range(start, n_steps):
                t0 = time.perf_counter()
                s0 = _syncs
                try:
                    out = step(rng.row(keys, i), state if flight is None else flight[1].state)
                except BaseException:
                    if flight is not None:  # the step before is reported before the error
                        land(flight, None)
                    raise
                if not isinstance(out, Step):
                    out = Step(*out)
                if pipeline and isinstance(out.state, Decide):
                    raise TypeError(f"{algorithm}: a pipelined run's step cannot return a Decide")
                keep = out.sample is not None and i >= burn and (i - burn) % thin == 0
                nxt = [i, out, keep, _launch(out, keep, wait=not pipeline), t0, s0]
                out = None
                if flight is not None:
                    land(flight, nxt)
                if pipeline:
                    flight = nxt
                else:
                    land(nxt, None)
                nxt = None
            if flight is not None:
                land(flight, None)
                flight = None
            if ck is not None and (ck.last_step != n_steps or not ck.finished):
                save(True)
    except BaseException as e:
        error = e
        if not isinstance(e, RunInterrupted):
            _note_partial(e, algorithm, result(), ck)
        raise
    finally:
        _local.depth = nested
        if bar is not None:
            bar.close()
        res = result()
        if events.run_listeners:
            summary = {}
            if summarize is not None and error is None:
                try:
                    summary = summarize(res)
                except Exception:  # diagnostics never hide the run's result
                    summary = {}
            events.emit_run_end(
                events.RunEnded(
                    run_id, algorithm, model, res.steps, res.iterations, res.syncs,
                    res.duration_s, summary, error, chain, res.state,
                )
            )
    return res


def _save_checkpoint(ck, run_id: int, algorithm: str, model: str, chain: int, r: RunResult, final: bool) -> None:
    """Write one checkpoint and tell observers (its bytes and duration, or the error)."""
    t0 = time.perf_counter()
    counters = {"syncs": r.syncs, "duration_s": r.duration_s}
    try:
        n = ck.save(r.steps, r.state, r.samples, r.stats, counters, done=final)
    except CheckpointError as e:
        events.emit_checkpoint(events.Checkpointed(run_id, algorithm, model, chain, r.steps, 0,
                                                   time.perf_counter() - t0, ck.path, e))
        raise
    events.emit_checkpoint(events.Checkpointed(run_id, algorithm, model, chain, r.steps, n,
                                               time.perf_counter() - t0, ck.path))


def _note_partial(e: BaseException, algorithm: str, r: RunResult, ck) -> None:
    """Give an exception raised inside a step the run's partial result (`e.partial_result`)."""
    where = f"; its last checkpoint (step {ck.last_step}) is in {ck.path}" if ck is not None else ""
    try:
        e.partial_result = r
        e.add_note(f"genmlx: the {algorithm} run stopped after {r.steps} completed steps "
                   f"(partial result in .partial_result){where}")
    except (AttributeError, TypeError):  # an exception type that takes no attributes
        pass
