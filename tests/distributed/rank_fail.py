"""A rank program that fails on one rank (run by tests/distributed/test_failure.py).

    rank_fail.py MODE FAILING_RANK     MODE: raise | die | hang | ok
"""

import os
import sys
import time

import mlx.core as mx

import genmlx.distributed as gd

import dist_models as dm

mode, bad = sys.argv[1], int(sys.argv[2])
g = gd.init(backend="ring")
print(f"rank {g.rank} of {g.size} started", flush=True)
gd.importance_sampling(dm.linreg, dm.ARGS, dm.OBS, n_particles=1000, key=mx.random.key(0))  # one collective
if g.rank == bad:
    if mode == "raise":
        raise RuntimeError("a model error on this rank")
    if mode == "die":
        os._exit(9)
    if mode == "hang":
        time.sleep(3600)
# the next collective: the healthy ranks wait here for the failed one
gd.importance_sampling(dm.linreg, dm.ARGS, dm.OBS, n_particles=1000, key=mx.random.key(1))
print(f"rank {g.rank} done", flush=True)
