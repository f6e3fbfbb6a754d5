"""The peers benchmark: GenJAX and NumPyro on the suite's models and data, timed beside genmlx (see README.md).

Nothing here imports MLX or genmlx at import time: the worker side
(`worker`, `data`, `genjax_rows`, `numpyro_rows`) runs under the peers'
Python, which has neither.
"""
