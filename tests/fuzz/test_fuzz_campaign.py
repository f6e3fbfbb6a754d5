"""The fuzz campaign, reduced for CI: a fixed seed and GENMLX_FUZZ_EXAMPLES (default 300) inputs per entry point.

Every generated input runs in the persistent worker process (worker.py); a crash (signal), a
hang, a silent non-finite result or an exception that names nothing fails the entry point's
test with hypothesis's minimal input. The full campaign (>= 10,000 inputs, docs/fuzzing.md) is
`python -m tests.fuzz --examples 300 --report docs/fuzzing.md`.
"""

import os

import pytest

from .campaign import fuzz_entry
from .entries import all_entries
from .worker import Pool

EXAMPLES = int(os.environ.get("GENMLX_FUZZ_EXAMPLES", "300"))

pytestmark = [pytest.mark.fuzz, pytest.mark.no_leak_gate]  # the work happens in the worker process


@pytest.fixture(scope="module")
def pool():
    with Pool(timeout_s=60.0) as p:
        yield p


@pytest.mark.parametrize("name", all_entries())
def test_entry_point_survives_generated_input(name, pool):
    rep = fuzz_entry(name, pool, EXAMPLES)
    assert rep.tried > 0
    assert rep.failure is None, (f"{name}: {rep.failure[1]} on the minimal input {rep.failure[0]!r}: "
                                 f"{rep.failure[2]} (outcomes {dict(rep.counts)})")


def test_the_worker_survives_a_signal_and_a_hang_and_reports_them():
    """The harness itself: a case that kills the worker (SIGFPE, as gm.vmap over zero keys did) is a
    `crash`, one past the timeout a `hang`, and the next case runs in a fresh worker."""
    with Pool(timeout_s=3.0) as p:
        out = p.run("selftest:signal", None)
        assert out.cls == "crash" and "SIGFPE" in out.detail
        out = p.run("selftest:hang", None)
        assert out.cls == "hang"
        assert p.run("selftest:ok", None).cls == "result" and p.restarts == 2
