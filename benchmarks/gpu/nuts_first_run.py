"""NUTS's first run on a new machine: `fuse="auto"` (tiered on CUDA), "fused" and "unfused".

    python -m benchmarks.gpu.nuts_first_run [OUT.json]

Each run is `benchmarks.peers.first_run.first_runs`: a new process with an empty kernel cache,
then another with the kernels the first built. On CUDA a fused kernel costs ~3.5 s of NVRTC once
per machine; an unfused program runs MLX's prebuilt kernels, more launches and no builds; the
tiered one runs unfused while a background process builds the fused kernels (genmlx.tiered_compile).
"""

from __future__ import annotations

import json
import sys

from benchmarks.peers.first_run import first_runs


def main(argv: list[str]) -> int:
    rows = []
    for model in ("regression100_vec", "regression100"):
        for fuse in ("auto", "fused", "unfused"):
            spec = {"kind": "nuts", "model": model, "n": 1000, "burn": 1000, "fuse": fuse}
            cold, warm = first_runs(spec)
            row = {"model": model, "fuse": fuse, "cold_wall_s": cold["wall_s"], "warm_wall_s": warm["wall_s"],
                   "background_build_s": cold.get("background_build_s"), "kernels": cold.get("kernels_cached"),
                   "cold_summary": cold.get("summary"), "warm_summary": warm.get("summary")}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if argv:
        with open(argv[0], "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
