"""A small discrete model with an exactly known posterior, for MH and Gibbs invariance tests."""

import mlx.core as mx

import genmlx as gm
from genmlx import dist


@gm.gen
def two_bits():
    a = gm.trace("a", dist.bernoulli(0.3))
    b = gm.trace("b", dist.bernoulli(mx.where(a == 1, 0.8, 0.2)))
    gm.trace("c", dist.bernoulli(mx.where(a == b, 0.9, 0.4)))


def two_bits_posterior() -> dict:
    """p(a, b | c = 1), by enumeration."""
    joint = {}
    for a in (0, 1):
        for b in (0, 1):
            pa = 0.3 if a else 0.7
            pb = (0.8 if a else 0.2) if b else (0.2 if a else 0.8)
            joint[(a, b)] = pa * pb * (0.9 if a == b else 0.4)
    z = sum(joint.values())
    return {k: v / z for k, v in joint.items()}
