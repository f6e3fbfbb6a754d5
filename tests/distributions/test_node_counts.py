"""Graph nodes per log-prob, asserted: a fusion that silently stops working (no C++ compiler, an MLX
upgrade, an edit that deepens a kernel past MLX's fusion depth) fails here.

Counts are primitive applications in mx.export_to_dot of the unevaluated log_prob output
(dist_helpers.graph_nodes, independent of genmlx.memory). Columns: Python-number
parameters with a scalar / a 100-vector value, then mx.array parameters likewise.
The same table is published in docs/distributions.md.
"""

import re

import mlx.core as mx
import pytest

import genmlx as gm
from genmlx import dist
from dist_helpers import graph_nodes
from node_table import ROWS, measure

EXPECTED = {
    "normal": (1, 1, 1, 1),
    "poisson": (2, 2, 2, 2),
    "gamma": (1, 1, 3, 3),
    "beta": (1, 1, 4, 4),
    "student_t": (1, 1, 4, 4),
    "inv_gamma": (1, 1, 2, 2),
    "neg_binomial": (3, 3, 4, 4),
    "binomial": (3, 3, 4, 4),
    "dirichlet": (5, 5, 11, 15),
    "uniform": (1, 1, 1, 1),
    "bernoulli": (1, 1, 1, 1),
    "exponential": (1, 1, 1, 1),
    "laplace": (1, 1, 1, 1),
    "cauchy": (1, 1, 1, 1),
    "lognormal": (1, 1, 1, 1),
    "geometric": (1, 1, 1, 1),
    "discrete_uniform": (1, 1, 1, 1),
    "categorical": (4, 4, 6, 6),
    "truncated_normal": (1, 1, 7, 7),
    "von_mises": (1, 1, 2, 2),
    "wrapped_cauchy": (1, 1, 1, 1),
    "wrapped_normal": (2, 3, 6, 7),
    "mvn": (8, 6, 14, 15),
    "wishart": (15, 16, 28, 29),
    "inv_wishart": (18, 19, 28, 29),
    "delta": (2, 5, 2, 5),
    "mixture": (9, 9, 9, 9),
    "product": (7, 7, 9, 9),
    "iid": (3, 4, 3, 4),
}


def test_node_counts_match_the_published_table():
    got = measure(graph_nodes)
    diff = {k: (got[k], EXPECTED[k]) for k in EXPECTED if got[k] != EXPECTED[k]}
    assert not diff, f"graph nodes per log-prob changed (got, expected): {diff}"


@pytest.mark.parametrize("name", [n for n, r in ROWS.items() if r[3] is not None])
def test_at_most_half_the_seed_table(name):
    """Issue 3's target: every seed-table distribution at most half the seed's buffers (Python-number parameters;
    array parameters too, except dirichlet with K = 3, documented)."""
    seed = ROWS[name][3]
    f_x, f_vec, a_x, a_vec = EXPECTED[name]
    assert max(f_x, f_vec) <= seed / 2
    if name != "dirichlet":
        assert max(a_x, a_vec) <= seed / 2


def test_scalar_log_prob_in_a_model_adds_few_nodes():
    """generate with a constrained Normal/Beta/Gamma site: the site adds its kernel plus the handler's
    score/weight additions, nothing else."""

    @gm.gen
    def model():
        a = gm.trace("a", dist.beta(2.0, 3.0))
        b = gm.trace("b", dist.gamma(2.0, 1.0))
        c = gm.trace("c", dist.normal(0.0, 1.0))
        return a, b, c

    obs = gm.choicemap({"a": 0.3, "b": 1.2, "c": 0.5})
    tr, w = model.generate((), obs, key=mx.random.key(0))
    nodes = graph_nodes(tr.get_score(), w)
    # (the handler sums the scores and the weights with one fused node each: CompiledAdd...)
    kernels = [n for n in nodes if n.startswith("Compiled") and not re.fullmatch(r"Compiled(Add|Subtract)+", n)]
    assert len(kernels) == 3, nodes  # one fused log-density per site
    assert len(nodes) <= 3 + 2 * 3, nodes  # plus score and weight accumulation
