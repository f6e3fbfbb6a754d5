"""`genmlx-observe run script.py [args]` / `run -m module [args]`: run a program observed (in production).

Unlike `genmlx-observe profile` (a report on a script's loops), this only observes:
the program runs as `__main__`, unedited, inside one process-wide observation
configured from the environment (see `genmlx_observe.autostart`); metrics are
flushed and pushed when it ends, also when it raises or calls `sys.exit`.
"""

from __future__ import annotations

import runpy
import sys

from .autostart import _stop, autostart

__all__ = ["main"]

USAGE = "usage: genmlx-observe run (script.py | -m module) [args...]"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        print(__doc__)
        raise SystemExit(0 if argv else 2)
    autostart(force=True)
    try:
        if argv[0] == "-m":
            if len(argv) < 2:
                raise SystemExit(USAGE)
            sys.argv = argv[1:]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = argv
            runpy.run_path(argv[0], run_name="__main__")
    finally:
        _stop()

