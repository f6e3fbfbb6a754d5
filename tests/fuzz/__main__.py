"""The full fuzz campaign: `python -m tests.fuzz [--examples 300] [--report docs/fuzzing.md] [--only dist:normal]`."""

from __future__ import annotations

import argparse
import sys
import time

from . import entries
from .campaign import campaign, markdown
from .worker import BAD


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    ap.add_argument("--examples", type=int, default=300, help="generated inputs per entry point (default 300)")
    ap.add_argument("--seed", type=int, default=22)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds before a case counts as a hang")
    ap.add_argument("--compiled", action="store_true", help="keep mx.compile on in the worker (slow: a C++ compile per new kernel)")
    ap.add_argument("--only", action="append", help="an entry point (repeatable); default: all")
    ap.add_argument("--report", default=None, help="write the markdown report here (e.g. docs/fuzzing.md)")
    a = ap.parse_args(argv)
    names = a.only or entries.all_entries()
    t0 = time.perf_counter()
    reps = campaign(names, a.examples, a.timeout, a.seed, log=lambda s: print(s, flush=True), compiled=a.compiled)
    secs = time.perf_counter() - t0
    text = markdown(reps, a.examples, secs, a.seed, a.compiled)
    if a.report:
        with open(a.report, "w") as f:
            f.write(text)
    print(text)
    bad = sum(r.counts[c] for r in reps for c in BAD)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
