"""Graph nodes per log-prob: the table published in docs/distributions.md (asserted by test_node_counts.py).

Measured as primitive applications in `mx.export_to_dot` of the unevaluated log_prob
output, value and parameters already evaluated, with MLX's CPU compiler fusing.
"float" = Python-number parameters (their parameter-only terms are host float64
constants), "array" = mx.array parameters; "x" = scalar value, "vec" = 100 values.
SEED = the seed document's table (section 2.1, native lgamma); the target is at
most half of it.
"""

import mlx.core as mx
import numpy as np

from genmlx import dist

A = lambda v: mx.array(v, dtype=mx.float32)  # noqa: E731

# name: (float-param dist, array-param dist, scalar value, seed count or None)
ROWS = {
    "normal": (lambda: dist.normal(0.0, 1.0), lambda: dist.normal(A(0.0), A(1.0)), 0.5, 8),
    "poisson": (lambda: dist.poisson(3.0), lambda: dist.poisson(A(3.0)), 2, 7),
    "gamma": (lambda: dist.gamma(2.0, 1.5), lambda: dist.gamma(A(2.0), A(1.5)), 0.5, 11),
    "beta": (lambda: dist.beta(2.0, 3.0), lambda: dist.beta(A(2.0), A(3.0)), 0.3, 13),
    "student_t": (lambda: dist.student_t(3.0, 0.0, 1.0), lambda: dist.student_t(A(3.0), A(0.0), A(1.0)), 0.5, 12),
    "inv_gamma": (lambda: dist.inv_gamma(3.0, 2.0), lambda: dist.inv_gamma(A(3.0), A(2.0)), 0.5, 11),
    "neg_binomial": (lambda: dist.neg_binomial(3.0, 0.4), lambda: dist.neg_binomial(A(3.0), A(0.4)), 2, 11),
    "binomial": (lambda: dist.binomial(10, 0.3), lambda: dist.binomial(A(10.0), A(0.3)), 3, 11),
    "dirichlet": (lambda: dist.dirichlet([1.0, 2.0, 3.0]), lambda: dist.dirichlet(A([1.0, 2.0, 3.0])), [0.2, 0.3, 0.5], 17),
    "uniform": (lambda: dist.uniform(0.0, 1.0), lambda: dist.uniform(A(0.0), A(1.0)), 0.5, None),
    "bernoulli": (lambda: dist.bernoulli(0.3), lambda: dist.bernoulli(A(0.3)), 1, None),
    "exponential": (lambda: dist.exponential(2.0), lambda: dist.exponential(A(2.0)), 0.5, None),
    "laplace": (lambda: dist.laplace(0.0, 1.0), lambda: dist.laplace(A(0.0), A(1.0)), 0.5, None),
    "cauchy": (lambda: dist.cauchy(0.0, 1.0), lambda: dist.cauchy(A(0.0), A(1.0)), 0.5, None),
    "lognormal": (lambda: dist.lognormal(0.0, 1.0), lambda: dist.lognormal(A(0.0), A(1.0)), 0.5, None),
    "geometric": (lambda: dist.geometric(0.3), lambda: dist.geometric(A(0.3)), 2, None),
    "discrete_uniform": (lambda: dist.discrete_uniform(1, 6), lambda: dist.discrete_uniform(A(1.0), A(6.0)), 3, None),
    "categorical": (lambda: dist.categorical([0.0, 1.0, 2.0]), lambda: dist.categorical(A([0.0, 1.0, 2.0])), 1, None),
    "truncated_normal": (lambda: dist.truncated_normal(0.0, 1.0, -1.0, 2.0),
                         lambda: dist.truncated_normal(A(0.0), A(1.0), A(-1.0), A(2.0)), 0.5, None),
    "von_mises": (lambda: dist.von_mises(0.0, 2.0), lambda: dist.von_mises(A(0.0), A(2.0)), 0.5, None),
    "wrapped_cauchy": (lambda: dist.wrapped_cauchy(0.0, 0.5), lambda: dist.wrapped_cauchy(A(0.0), A(0.5)), 0.5, None),
    "wrapped_normal": (lambda: dist.wrapped_normal(0.0, 1.0), lambda: dist.wrapped_normal(A(0.0), A(1.0)), 0.5, None),
    "mvn": (lambda: dist.mvn([0.0, 0.0], [[1.0, 0.5], [0.5, 1.0]]),
            lambda: dist.mvn(A([0.0, 0.0]), A([[1.0, 0.5], [0.5, 1.0]])), [0.1, 0.2], None),
    "wishart": (lambda: dist.wishart(4.0, [[1.0, 0.0], [0.0, 1.0]]), lambda: dist.wishart(A(4.0), A([[1.0, 0.0], [0.0, 1.0]])),
                [[1.0, 0.2], [0.2, 1.0]], None),
    "inv_wishart": (lambda: dist.inv_wishart(4.0, [[1.0, 0.0], [0.0, 1.0]]),
                    lambda: dist.inv_wishart(A(4.0), A([[1.0, 0.0], [0.0, 1.0]])), [[1.0, 0.2], [0.2, 1.0]], None),
    "delta": (lambda: dist.delta(1.5), lambda: dist.delta(A(1.5)), 1.5, None),
    "mixture": (lambda: dist.mixture([dist.normal(0.0, 1.0), dist.normal(3.0, 1.0)], [0.0, 0.0]),
                lambda: dist.mixture([dist.normal(A(0.0), A(1.0)), dist.normal(A(3.0), A(1.0))], A([0.0, 0.0])), 0.5, None),
    "product": (lambda: dist.product(dist.normal(0.0, 1.0), dist.gamma(2.0, 1.0)),
                lambda: dist.product(dist.normal(A(0.0), A(1.0)), dist.gamma(A(2.0), A(1.0))), [0.1, 0.5], None),
    "iid": (lambda: dist.iid(dist.normal(0.0, 1.0), 3), lambda: dist.iid(dist.normal(A(0.0), A(1.0)), 3), [0.1, 0.2, 0.3], None),
}


def values(v, batch: bool):
    arr = np.asarray(v)
    dtype = np.int32 if arr.dtype.kind in "iu" else np.float32
    if batch:
        arr = np.broadcast_to(arr, (100,) + arr.shape).copy()
    return mx.array(arr.astype(dtype))


def measure(graph_nodes) -> dict:
    """{name: (float x, float vec, array x, array vec)} node counts."""
    out = {}
    for name, (mk_f, mk_a, v, _) in ROWS.items():
        row = []
        for mk in (mk_f, mk_a):
            d = mk()
            mx.eval([a for a in d.__dict__.values() if isinstance(a, mx.array)])
            for batch in (False, True):
                x = values(v, batch)
                mx.eval(x)
                row.append(len(graph_nodes(d.log_prob(x))))
        out[name] = tuple(row)
    return out
