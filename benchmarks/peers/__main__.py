"""`python -m benchmarks.peers`: see benchmarks/peers/run.py."""

import sys

from benchmarks.peers.run import main

raise SystemExit(main(sys.argv[1:]))
