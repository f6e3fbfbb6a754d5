"""NUTS's first run on a new machine, fused (MLX's default) against unfused (`MLX_DISABLE_COMPILE`).

    python -m benchmarks.gpu.nuts_first_run [OUT.json]

Each run is `benchmarks.peers.first_run.first_runs`: a new process with an empty kernel cache,
then another with the kernels the first built. On CUDA a fused kernel costs ~3.5 s of NVRTC once
per machine; an unfused program runs MLX's prebuilt kernels, more launches and no builds.
"""

from __future__ import annotations

import json
import os
import sys

from benchmarks.peers.first_run import first_runs


def main(argv: list[str]) -> int:
    rows = []
    for model in ("regression100_vec", "regression100"):
        spec = {"kind": "nuts", "model": model, "n": 1000, "burn": 1000}
        for mode in ("fused", "unfused"):
            saved = os.environ.get("MLX_DISABLE_COMPILE")
            if mode == "unfused":
                os.environ["MLX_DISABLE_COMPILE"] = "1"
            try:
                cold, warm = first_runs(spec)
            finally:
                os.environ.pop("MLX_DISABLE_COMPILE", None)
                if saved is not None:
                    os.environ["MLX_DISABLE_COMPILE"] = saved
            row = {"model": model, "mode": mode, "cold_wall_s": cold["wall_s"], "warm_wall_s": warm["wall_s"],
                   "kernels": cold.get("kernels_cached"), "summary": cold.get("summary")}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if argv:
        with open(argv[0], "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
