"""Distributions: `from genmlx import dist; dist.normal(0.0, 1.0)`.

Every distribution has `.sample(key=None, shape=())`, `.log_prob(value)`,
`name`, `support` and `event_ndim`, and is a generative function (traced with
`gm.trace(addr, dist.normal(mu, 1.0))`). Log-densities are fused MLX kernels
(a few graph nodes each, see docs/distributions.md), broadcast over batched
values and parameters, give -inf outside the support and are differentiable.
Define your own by subclassing `Distribution` (see its docstring).
"""

from . import support
from .base import Distribution, batch_shape, shape_of
from .circular import VonMises, WrappedCauchy, WrappedNormal, von_mises, wrapped_cauchy, wrapped_normal
from .combinators import IID, Delta, Mixture, Product, delta, iid, mixture, product
from .continuous import (Cauchy, Exponential, Laplace, LogNormal, Normal, StudentT, Uniform, cauchy, exponential,
                         laplace, lognormal, normal, student_t, uniform)
from .discrete import (Bernoulli, Binomial, Categorical, DiscreteUniform, Geometric, NegBinomial, Poisson,
                       bernoulli, binomial, categorical, discrete_uniform, geometric, neg_binomial, poisson)
from .gamma_family import Beta, Gamma, InvGamma, beta, gamma, inv_gamma
from .multivariate import MVN, Dirichlet, dirichlet, mvn
from .piecewise import PiecewiseUniform, piecewise_uniform
from .truncated import TruncatedNormal, truncated_normal
from .wishart import InvWishart, Wishart, inv_wishart, wishart

__all__ = [
    "Distribution", "support", "batch_shape", "shape_of",
    # constructors (DESIGN.md names)
    "normal", "uniform", "bernoulli", "beta", "gamma", "exponential", "laplace", "cauchy", "poisson",
    "binomial", "geometric", "lognormal", "inv_gamma", "student_t", "categorical", "dirichlet", "mvn",
    "neg_binomial", "discrete_uniform", "truncated_normal", "von_mises", "wrapped_cauchy", "wrapped_normal",
    "wishart", "inv_wishart", "delta", "mixture", "product", "iid", "piecewise_uniform",
    # classes
    "Normal", "Uniform", "Bernoulli", "Beta", "Gamma", "Exponential", "Laplace", "Cauchy", "Poisson",
    "Binomial", "Geometric", "LogNormal", "InvGamma", "StudentT", "Categorical", "Dirichlet", "MVN",
    "NegBinomial", "DiscreteUniform", "TruncatedNormal", "VonMises", "WrappedCauchy", "WrappedNormal",
    "Wishart", "InvWishart", "Delta", "Mixture", "Product", "IID", "PiecewiseUniform",
]
