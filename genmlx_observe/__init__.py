"""genmlx_observe: observability for genmlx inference (OpenTelemetry, Prometheus, pytest)."""
