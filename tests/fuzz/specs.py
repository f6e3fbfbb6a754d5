"""Hypothesis strategies for fuzz inputs, as plain picklable data, and their decoding in the worker.

A generated input never holds an MLX array: it is a tree of Python numbers,
strings, lists and tagged tuples (`("mx", values, dtype)` becomes an
`mx.array` in the worker), so it crosses the pipe to the worker and shrinks
in the parent like any other Python value.
"""

from __future__ import annotations

import math

from hypothesis import strategies as st

NAN, INF = math.nan, math.inf

# scalars: valid, boundary, invalid (zero, negative, NaN, inf) and huge values
SPECIAL = [0.0, -1.0, NAN, INF, -INF, 1e30, -1e30, 1e-30, 0.5, 1.0, 2.0, 3.0, 1e6]
num = st.one_of(st.sampled_from(SPECIAL), st.floats(-10, 10, allow_nan=False), st.integers(-3, 6))
small_list = st.lists(num, min_size=0, max_size=4)
matrix = st.lists(st.lists(num, min_size=2, max_size=2), min_size=2, max_size=2)
odd = st.sampled_from(["a", None, True, (), {}, "1.0"])
dtype = st.sampled_from(["float32", "int32", "bool", "float16"])
mx_array = st.one_of(
    st.tuples(st.just("mx"), num, dtype),
    st.tuples(st.just("mx"), small_list, dtype),
    st.tuples(st.just("mx"), matrix, dtype),
)
param = st.one_of(num, num, small_list, matrix, odd, mx_array)

# counts: zero, negative, non-integers, strings and small valid values (a valid 2**40 is a long run, not a bug)
count = st.one_of(st.integers(-3, 12), st.sampled_from([0, -1, 1.5, NAN, "3", None, True, -(2 ** 40)]))
step = st.one_of(num, st.sampled_from([0.0, -0.1, NAN, INF, 1e-8, 0.1, 10.0, "x", None]))
address = st.one_of(st.sampled_from(["x", "y", "z", "y0", "nope", 0, 3, -1, ("sub", "x"), ("sub",), (0, "x"), (9, "x")]),
                    st.sampled_from([1.5, None, ("x", "y", "z")]))
selection = st.one_of(st.lists(address, max_size=3).map(lambda a: ("select", a)),
                      st.sampled_from([("select_all",), ("select_none",), ("complement", ["x"]), None, "x", 3]))
value = st.one_of(num, small_list, matrix, odd, mx_array)
constraints = st.one_of(st.dictionaries(address.filter(lambda a: a is not None), value, max_size=3), odd)


def decode(v):
    """A generated spec as the value the entry point gets (`("mx", ...)` -> mx.array)."""
    import mlx.core as mx
    import numpy as np

    if isinstance(v, tuple) and v and v[0] == "mx":
        raw = np.asarray(v[1], dtype=np.float64)
        with np.errstate(all="ignore"):
            return mx.array(raw.astype(np.float32)).astype(getattr(mx, v[2]))
    if isinstance(v, list):
        return [decode(x) for x in v]
    return v


def has_array(v) -> bool:
    if isinstance(v, tuple) and v and v[0] == "mx":
        return True
    return isinstance(v, list) and any(has_array(x) for x in v)


def make_selection(spec):
    import genmlx as gm

    if isinstance(spec, tuple) and spec:
        if spec[0] == "select":
            return gm.select(*spec[1])
        if spec[0] == "select_all":
            return gm.select_all()
        if spec[0] == "select_none":
            return gm.select_none()
        if spec[0] == "complement":
            return gm.select(*spec[1]).complement()
    return spec
