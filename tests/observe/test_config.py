"""Configuration: keyword arguments over environment variables over defaults."""

from __future__ import annotations

import math

import pytest

from genmlx_observe.config import Config, ConfigError, from_env
from genmlx_observe.otlp import resource


def test_defaults():
    c = from_env({})
    assert (c.sample_every, c.step_spans, c.census_overhead, c.site_metrics) == (100, True, 0.01, False)
    assert c.prometheus_port is None and c.prometheus_addr == "127.0.0.1"


def test_environment_is_read_and_keywords_win():
    env = {"GENMLX_OBSERVE_SAMPLE_EVERY": "7", "GENMLX_OBSERVE_STEP_SPANS": "off", "GENMLX_OBSERVE_SITES": "1",
           "GENMLX_PROMETHEUS_PORT": "9464", "GENMLX_OBSERVE_CENSUS_OVERHEAD": "inf", "OTEL_SERVICE_NAME": "svc"}
    c = from_env(env)
    assert (c.sample_every, c.step_spans, c.site_metrics, c.prometheus_port) == (7, False, True, 9464)
    assert c.census_overhead == math.inf and c.service_name == "svc"
    assert from_env(env, sample_every=3, prometheus_port=None).sample_every == 3


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigError, match="GENMLX_OBSERVE_SAMPLE_EVERY='often'"):
        from_env({"GENMLX_OBSERVE_SAMPLE_EVERY": "often"})
    with pytest.raises(ConfigError, match="GENMLX_OBSERVE_STEP_SPANS='maybe'"):
        from_env({"GENMLX_OBSERVE_STEP_SPANS": "maybe"})


def test_otlp_is_on_only_with_an_endpoint(monkeypatch):
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER",
                "OTEL_METRICS_EXPORTER", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(var, raising=False)
    assert not Config().otlp_traces_enabled and not Config().otlp_metrics_enabled
    c = Config(otlp_endpoint="http://collector:4318/")
    assert c.otlp_traces_enabled and c.otlp_url("traces") == "http://collector:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4318/v1/traces")
    assert Config().otlp_traces_enabled and not Config().otlp_metrics_enabled
    assert Config().otlp_url("traces") is None  # the SDK's exporter reads the variable itself
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert not Config().otlp_traces_enabled
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not c.otlp_metrics_enabled


def test_service_name_and_resource_attributes(monkeypatch):
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert resource(Config()).attributes["service.name"] == "genmlx"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,team=ppl")
    r = resource(Config())
    assert r.attributes["service.name"] == "from-attrs" and r.attributes["team"] == "ppl"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    assert resource(Config()).attributes["service.name"] == "from-env"
    r = resource(Config(service_name="kw", resource_attributes={"run": "7"}))
    assert r.attributes["service.name"] == "kw" and r.attributes["run"] == "7" and r.attributes["team"] == "ppl"
