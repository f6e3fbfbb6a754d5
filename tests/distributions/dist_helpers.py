"""Helpers of the distribution tests: independent graph-node counting, float32 rounding, tolerances."""

import io
import re

import mlx.core as mx
import numpy as np

_RECT = re.compile(r'^\{ (\d+) \[label ="([^"]+)", shape=rectangle\]', re.MULTILINE)


def graph_nodes(*arrays) -> list:
    """Labels of the primitive applications (rectangles of mx.export_to_dot) behind `arrays`, unevaluated.

    Counted here independently of genmlx.memory, as issue 3 asks. Every rectangle
    line is one application: a compiled function called twice shares one
    primitive object (the same id is printed twice), so ids must not be deduplicated.
    """
    buf = io.StringIO()
    mx.export_to_dot(buf, *arrays)
    return [label for _, label in _RECT.findall(buf.getvalue())]


def f32(a):
    """Round to float32 and back: the reference sees exactly the value genmlx sees."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def assert_close_logp(ours, ref, tol, what=""):
    """|ours - ref| <= tol * max(1, |ref|) where ref is finite; the same infinity where it is not."""
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    ref = np.where(np.abs(ref) > 3.4e38, np.sign(ref) * np.inf, ref)  # beyond float32: the float32 infinity
    ours, ref = np.broadcast_arrays(ours, ref)
    assert not np.any(np.isnan(ours)), f"{what}: NaN at {np.argwhere(np.isnan(ours))[:5].tolist()}"
    fin = np.isfinite(ref)
    bad_inf = ~fin & (ours != ref)
    assert not bad_inf.any(), f"{what}: expected {ref[bad_inf][:5]}, got {ours[bad_inf][:5]}"
    if fin.any():
        err = np.abs(ours[fin] - ref[fin]) / np.maximum(1.0, np.abs(ref[fin]))
        i = int(np.argmax(err))
        assert err[i] <= tol, f"{what}: error {err[i]:.3g} > {tol:g} (ours {ours[fin][i]}, ref {ref[fin][i]})"
