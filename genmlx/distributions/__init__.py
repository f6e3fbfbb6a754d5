"""Distributions: `from genmlx import dist; dist.normal(0.0, 1.0)`."""

from . import support
from .base import Distribution
from .basic import Bernoulli, Beta, Normal, Uniform, bernoulli, beta, normal, uniform

__all__ = ["Distribution", "support", "normal", "bernoulli", "uniform", "beta",
           "Normal", "Bernoulli", "Uniform", "Beta"]
