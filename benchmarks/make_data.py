"""Generate the saved benchmark data once (committed in benchmarks/data/; do not rerun casually).

    python -m benchmarks.make_data

* regression100.json: xs = linspace(-2, 2, 100), ys = 2 xs - 1 + N(0, 1) noise.
* ssm100.json: x_0 = 0, x_t = x_{t-1} + N(0, 1), y_t = x_t + N(0, 0.5^2), T = 100.

Both from fixed MLX keys (`mx.random.key(8001)`, `mx.random.key(8002)`), stored
as float lists (float32 values written as Python floats), with the exact log
evidence (conjugate Gaussian for the regression, Kalman filter for the state
space) so that estimates can be checked without recomputing it.
"""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np

from .models import DATA_DIR, SSM_Q, SSM_R, kalman_log_evidence, regression_log_evidence

REG_KEY, SSM_KEY = 8001, 8002


def regression100() -> dict:
    xs = np.linspace(-2.0, 2.0, 100).astype(np.float32)
    noise = mx.random.normal((100,), key=mx.random.key(REG_KEY))
    ys = 2.0 * mx.array(xs) - 1.0 + noise
    xs_l, ys_l = [float(x) for x in xs], [float(y) for y in np.asarray(ys)]
    return {"model": "y_i ~ N(slope x_i + intercept, 1), slope, intercept ~ N(0, 10)",
            "true_slope": 2.0, "true_intercept": -1.0, "noise_sd": 1.0, "key": REG_KEY,
            "log_evidence": regression_log_evidence(xs_l, ys_l), "xs": xs_l, "ys": ys_l}


def ssm100() -> dict:
    k1, k2 = mx.random.split(mx.random.key(SSM_KEY))
    xs = mx.cumsum(SSM_Q * mx.random.normal((100,), key=k1))
    ys = xs + SSM_R * mx.random.normal((100,), key=k2)
    ys_l = [float(y) for y in np.asarray(ys)]
    return {"model": "x_0 = 0, x_t ~ N(x_{t-1}, 1), y_t ~ N(x_t, 0.5)", "T": 100, "key": SSM_KEY,
            "log_evidence": kalman_log_evidence(ys_l), "xs": [float(x) for x in np.asarray(xs)], "ys": ys_l}


def main() -> None:
    DATA_DIR.mkdir(exist_ok=True)
    for name, d in (("regression100.json", regression100()), ("ssm100.json", ssm100())):
        with open(DATA_DIR / name, "w") as f:
            json.dump(d, f, indent=1)
            f.write("\n")
        print(f"wrote {DATA_DIR / name}: log evidence {d['log_evidence']:.4f}")


if __name__ == "__main__":
    main()
