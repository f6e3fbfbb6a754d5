"""Whole-process observation from the environment, checked in real subprocesses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

from prometheus_client.parser import text_string_to_metric_families

from .helpers import otlp_attrs, otlp_spans

SCRIPT = """
import sys
import mlx.core as mx
from genmlx.inference import driver
from genmlx.inference.driver import Step

def step(key, state):
    x = state + mx.random.normal(key=key)
    return Step(x, None, {"accepted": True})

print("argv", sys.argv[1:], __name__)
driver.run(step, mx.array(0.0), 7, algorithm="rw", model="walk", key=mx.random.key(0))
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GENMLX_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env.update(extra)
    return env


def _run(args, env, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


def test_launcher_observes_an_unedited_script(tmp_path, receiver):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    env = _env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_SERVICE_NAME="nightly",
               GENMLX_OBSERVE_STEP_SPANS="0")
    out = _run(["-m", "genmlx_observe.cli", "run", str(script), "3"], env, tmp_path)
    assert out.returncode == 3, out.stderr[-3000:]  # the script's own exit status
    assert "argv ['3'] __main__" in out.stdout
    spans = list(otlp_spans(receiver.received))  # flushed at exit although the script called sys.exit
    assert [s.name for _, _, s in spans] == ["rw run"]
    resource, _, run = spans[0]
    assert resource["service.name"] == "nightly"
    a = otlp_attrs(run.attributes)
    assert a["genmlx.run.iterations"] == 7 and a["genmlx.model"] == "walk"


def test_genmlx_observe_env_starts_at_import_and_pushes_at_exit(tmp_path, pushgateway):
    code = textwrap.dedent("""
        import genmlx_observe
        assert genmlx_observe.autostart() is not None
    """) + SCRIPT
    env = _env(GENMLX_OBSERVE="1", GENMLX_PUSHGATEWAY_URL=pushgateway.url, GENMLX_PUSHGATEWAY_JOB="cron")
    out = _run(["-c", code], env, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    ((method, path, body),) = pushgateway.requests
    assert (method, path) == ("PUT", "/metrics/job/cron")
    fams = {f.name: f for f in text_string_to_metric_families(body)}
    (s,) = fams["genmlx_inference_iterations"].samples[1:]  # warmup 0, sampling 7
    assert s.labels["phase"] == "sampling" and s.value == 7


def test_a_configuration_that_cannot_start_warns_and_the_program_runs(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = _env(GENMLX_OBSERVE="1", GENMLX_PROMETHEUS_PORT=str(taken.getsockname()[1]))
        out = _run(["-c", "import genmlx_observe\n" + SCRIPT], env, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "GENMLX_OBSERVE: genmlx_observe could not start (PortInUseError" in out.stderr
    assert "argv [] __main__" in out.stdout


def test_launcher_without_arguments_prints_usage(tmp_path):
    out = _run(["-m", "genmlx_observe.cli", "run"], _env(), tmp_path)
    assert out.returncode == 2 and "usage: genmlx-observe run" in out.stdout
