"""An example for `genmlx-observe profile`: one clean MH loop, then one that leaks.

    genmlx-observe profile tests/observe/scripts/two_loops.py [iterations]

The second loop's callback keeps a new lazy array per iteration (exp of the
trace's score): one more live array and one more pending graph node per
iteration, which the profile's verdict attributes to this file's line.
"""

import sys

import mlx.core as mx

import genmlx as gm
from genmlx import dist
from genmlx import inference as infer

N = int(sys.argv[1]) if len(sys.argv) > 1 else 300


@gm.gen
def coin(n):
    p = gm.trace("p", dist.beta(2.0, 2.0))
    for i in range(n):
        gm.trace(f"y{i}", dist.bernoulli(p))
    return p


obs = gm.choicemap({f"y{i}": bool(v) for i, v in enumerate((1, 1, 0, 1, 1, 1, 0, 1, 1, 0))})
clean = infer.mh(coin, (10,), obs, selection=gm.select("p"), n_samples=N, key=mx.random.key(0))

kept = []  # the leak: a callback keeping arrays across iterations
leaky = infer.mh(coin, (10,), obs, selection=gm.select("p"), n_samples=N, key=mx.random.key(1),
                 callback=lambda step, trace, stats: kept.append(mx.exp(trace.get_score())))
print(f"clean acceptance {clean.stats['acceptance_rate']:.2f}, leaky kept {len(kept)} arrays")
