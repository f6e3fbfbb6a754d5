"""One parameter set and one in-support value per built-in distribution (for node counts).

`CASES[name] = (make, value)`: `make(arr)` builds the distribution with its
parameters passed through `arr` (identity for Python-number parameters,
`mx.array` for array parameters), so the same case measures a log-prob with
constant parameters and with evaluated array parameters (the usual case in
a model, where parameters come from other choices).

`SEED_BUFFERS`: the seed's table of buffers per log-prob (GenMLX with a
native `lgamma`, seed/metal-gpu-resource-management.md section 2.1); the
target is at most half of it. Dirichlet's entry is (k + 1) + 10 + k for k
categories (k = 3 here).
"""

from __future__ import annotations

import mlx.core as mx

from genmlx import dist

__all__ = ["CASES", "SEED_BUFFERS"]


def _v(x):
    return mx.array(x)


_I2 = [[1.0, 0.2], [0.2, 1.5]]

CASES = {
    "normal": (lambda a: dist.normal(a(0.5), a(1.5)), 0.3),
    "uniform": (lambda a: dist.uniform(a(-1.0), a(2.0)), 0.5),
    "bernoulli": (lambda a: dist.bernoulli(a(0.3)), 1.0),
    "beta": (lambda a: dist.beta(a(2.0), a(3.0)), 0.4),
    "gamma": (lambda a: dist.gamma(a(2.0), a(1.5)), 1.2),
    "exponential": (lambda a: dist.exponential(a(1.5)), 0.7),
    "laplace": (lambda a: dist.laplace(a(0.0), a(1.0)), 0.3),
    "cauchy": (lambda a: dist.cauchy(a(0.0), a(1.0)), 0.3),
    "poisson": (lambda a: dist.poisson(a(3.0)), 2.0),
    "binomial": (lambda a: dist.binomial(a(10.0), a(0.3)), 4.0),
    "geometric": (lambda a: dist.geometric(a(0.3)), 2.0),
    "lognormal": (lambda a: dist.lognormal(a(0.0), a(1.0)), 1.3),
    "inv_gamma": (lambda a: dist.inv_gamma(a(3.0), a(2.0)), 0.8),
    "student_t": (lambda a: dist.student_t(a(4.0), a(0.0), a(1.0)), 0.5),
    "categorical": (lambda a: dist.categorical(a([0.1, -0.3, 0.7])), 1),
    "dirichlet": (lambda a: dist.dirichlet(a([1.5, 2.0, 3.0])), [0.2, 0.3, 0.5]),
    "mvn": (lambda a: dist.mvn(a([0.0, 1.0]), a(_I2)), [0.1, 0.8]),
    "neg_binomial": (lambda a: dist.neg_binomial(a(3.0), a(0.4)), 2.0),
    "discrete_uniform": (lambda a: dist.discrete_uniform(0, 5), 3),
    "truncated_normal": (lambda a: dist.truncated_normal(a(0.0), a(1.0), a(-1.0), a(2.0)), 0.5),
    "von_mises": (lambda a: dist.von_mises(a(0.0), a(2.0)), 0.5),
    "wrapped_cauchy": (lambda a: dist.wrapped_cauchy(a(0.0), a(0.5)), 0.5),
    "wrapped_normal": (lambda a: dist.wrapped_normal(a(0.0), a(1.0)), 0.5),
    "wishart": (lambda a: dist.wishart(a(4.0), a(_I2)), [[2.0, 0.3], [0.3, 1.0]]),
    "inv_wishart": (lambda a: dist.inv_wishart(a(4.0), a(_I2)), [[0.8, 0.1], [0.1, 0.5]]),
    "delta": (lambda a: dist.delta(a(1.0)), 1.0),
    "mixture": (lambda a: dist.mixture([dist.normal(a(0.0), a(1.0)), dist.normal(a(2.0), a(0.5))], a([0.3, -0.2])), 0.4),
    "product": (lambda a: dist.product(dist.normal(a(0.0), a(1.0)), dist.gamma(a(2.0), a(1.0))), [0.3, 1.1]),
    "iid": (lambda a: dist.iid(dist.normal(a(0.0), a(1.0)), 3), [0.1, -0.4, 0.9]),
}

SEED_BUFFERS = {
    "normal": 8, "poisson": 7, "gamma": 11, "beta": 13, "dirichlet": (3 + 1) + 10 + 3, "inv_gamma": 11,
    "neg_binomial": 11, "binomial": 11, "student_t": 12,
}
