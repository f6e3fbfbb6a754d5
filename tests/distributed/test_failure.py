"""A rank that raises, dies or hangs ends the job in bounded time with a message naming the rank."""

from __future__ import annotations

import sys
import time

import pytest

from genmlx.distributed import EXIT_PEER_LOST, EXIT_TIMEOUT, JobFailed, launch

from jobs import HERE, ROOT, env

BOUND_S = 90.0  # generous for 2 shared cores; a healthy 2-rank job of this script takes ~3 s


def run(mode: str, bad: int, **extra):
    t0 = time.monotonic()
    with pytest.raises(JobFailed) as e:
        launch([sys.executable, f"{HERE}/rank_fail.py", mode, str(bad)], 2, timeout_s=BOUND_S, cwd=ROOT,
               env=env(**extra), grace_s=2.0)
    return e.value, time.monotonic() - t0


def test_healthy_job_passes():
    res = launch([sys.executable, f"{HERE}/rank_fail.py", "ok", "1"], 2, timeout_s=BOUND_S, cwd=ROOT, env=env())
    assert res.ok and all("done" in o.stdout for o in res.outcomes)


def test_a_rank_that_raises_fails_the_job_naming_it():
    err, took = run("raise", 1)
    assert err.rank == 1 and took < BOUND_S
    assert "rank 1 of 2 failed" in str(err) and "a model error on this rank" in str(err)
    assert "genmlx.distributed: rank 1 of 2 failed: RuntimeError" in err.result.outcomes[1].stderr


def test_a_rank_that_dies_fails_the_job_naming_it():
    err, took = run("die", 0)
    assert err.rank == 0 and took < BOUND_S
    assert "rank 0 exited with status 9" in str(err)
    survivor = err.result.outcomes[1]  # lost its peer in a collective, or was terminated
    assert survivor.killed or survivor.returncode == EXIT_PEER_LOST


def test_a_hung_rank_ends_by_the_collective_watchdog():
    err, took = run("hang", 1, GENMLX_DIST_TIMEOUT="5")
    assert took < 30
    waiting = err.result.outcomes[0]
    assert waiting.returncode == EXIT_TIMEOUT and err.rank == 0
    assert "rank 0 of 2 (ring): importance_sampling: log-ML combination did not complete within 5 s" in waiting.stderr
    assert err.result.outcomes[1].killed  # the hung rank did not outlive the job


def test_the_job_timeout_bounds_a_job_whose_ranks_all_hang():
    with pytest.raises(JobFailed) as e:
        launch([sys.executable, "-c", "import time; time.sleep(600)"], 2, timeout_s=3.0, grace_s=1.0, env=env())
    assert e.value.result.timed_out and "did not finish within 3 s" in str(e.value)
    assert all(o.killed for o in e.value.result.outcomes)
