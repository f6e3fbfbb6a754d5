"""genmlx benchmarks: pytest-benchmark suites, plain-MLX floors and the report (see README.md)."""
