"""An update re-scores only what changed: a retained, unchanged site costs no log-prob, at most its share of one fused sum."""

import mlx.core as mx

import genmlx as gm
from genmlx import dist, memory


@gm.gen
def chain(T):
    x = 0.0
    for t in range(T):
        x = gm.trace(("x", t), dist.normal(x, 1.0))
        gm.trace(("y", t), dist.normal(x, 0.5))
    return x


def _extension_nodes(T: int) -> int:
    obs = {("y", t): 0.1 * t for t in range(T)}
    tr, _ = chain.generate((T,), obs, key=mx.random.key(0))
    memory.materialize(tr)
    with gm.defer_checks():  # the update's own graph, unevaluated (a user's update evaluates its checks)
        new, w, _ = chain.update(tr, {("y", T): 1.0}, args=(T + 1,), key=mx.random.key(1))
        return memory.count_nodes(new.get_score(), w)


def test_extending_a_dynamic_trace_reuses_the_scores_of_unchanged_sites():
    short, long = _extension_nodes(10), _extension_nodes(40)
    # 30 more steps = 60 more retained sites: no log-prob each, only their share of the fused
    # score sums (one node per 16 scores); without the reuse every retained site would rebuild
    # its log-prob kernel (60 nodes or more).
    assert long - short <= 30
    assert short > 2 * 10


def test_update_that_reuses_unchanged_sites_still_has_the_exact_weight():
    T = 6
    obs = {("y", t): 0.3 * t for t in range(T)}
    tr, _ = chain.generate((T,), obs, key=mx.random.key(2))
    new, w, _ = chain.update(tr, {("y", T): 1.0}, args=(T + 1,), key=mx.random.key(3))
    fresh_x = new[("x", T)]
    expected = new.get_score() - tr.get_score() - dist.normal(tr[("x", T - 1)], 1.0).log_prob(fresh_x)
    assert abs(w.item() - expected.item()) < 1e-4
    rescored, _ = chain.assess((T + 1,), new.get_choices())
    assert abs(rescored.item() - new.get_score().item()) < 1e-4
