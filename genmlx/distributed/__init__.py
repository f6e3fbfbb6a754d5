"""Distributed inference on `mx.distributed`: the same algorithms over the ranks of a job.

    import genmlx.distributed as gd

    g = gd.init()                      # world size 1 when not launched as a job
    res = gd.importance_sampling(model, args, obs, n_particles=1_000_000, key=mx.random.key(0))
    res.log_ml                         # the same on every rank

Launch N ranks on one machine with `python -m genmlx.distributed.launch -n N script.py`
(the ring backend on CPU, `--backend nccl` for one GPU per rank), or across
machines with `mlx.launch`. See docs/distributed.md.
"""

from .chains import chains
from .group import (DEFAULT_TIMEOUT_S, EXIT_PEER_LOST, EXIT_TIMEOUT, Group, PeerLostError, current, init,
                    rank_from_env, using, world)
from .importance import importance_sampling, logsumexp64, rank_key
from .launch import JobFailed, LaunchResult, RankOutcome, launch
from .smc import island_smc, smc

__all__ = [
    "Group", "init", "world", "current", "using", "rank_from_env", "PeerLostError",
    "EXIT_TIMEOUT", "EXIT_PEER_LOST", "DEFAULT_TIMEOUT_S",
    "importance_sampling", "chains", "smc", "island_smc", "logsumexp64", "rank_key",
    "launch", "LaunchResult", "RankOutcome", "JobFailed",
]
