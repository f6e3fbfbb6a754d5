"""The peers benchmark's machinery (benchmarks/peers): data, worker protocol, interleaving, ratios, targets, report.

No peer is run here (GenJAX and NumPyro live under another Python, an optional
extra); these tests check what decides the numbers: that the peers read the
same data as genmlx, that the worker answers and reports failures, that rounds
interleave and ratios are genmlx / peer per round, and that the targets and the
report's Peers section are judged from them.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import models as M  # noqa: E402
from benchmarks.peers import data as peer_data  # noqa: E402
from benchmarks.peers import rows as R  # noqa: E402
from benchmarks.peers import run as runner  # noqa: E402
from benchmarks.peers import worker  # noqa: E402
from benchmarks.summary import judge_peers  # noqa: E402


# -- data: the same numbers as benchmarks.models ------------------------------------------------

def test_peer_data_equals_the_models_data():
    d = peer_data.load()
    xs, ys = M.regression100()
    assert d["bb_data"] == [float(y) for y in M.BB_DATA]
    assert (d["lr5_xs"], d["lr5_ys"]) == (M.LR5_XS, M.LR5_YS)
    assert (d["reg100_xs"], d["reg100_ys"]) == (xs, ys)
    assert d["prior_sd"] == M.PRIOR_SD and d["funnel_dim"] == M.FUNNEL_DIM


def test_module_constants_names_a_missing_constant(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("A = [1, 2]\nB = f(3)\n")
    assert peer_data._module_constants(src, ("A",)) == {"A": [1, 2]}
    with pytest.raises(KeyError, match="C"):
        peer_data._module_constants(src, ("A", "C"))


# -- the worker's request loop ------------------------------------------------------------------

def _serve(requests, build, compile_time=None):
    out = io.StringIO()
    n = worker.serve(io.StringIO("".join(json.dumps(r) + "\n" for r in requests)), out, {"d": 1}, build=build,
                     compile_time=compile_time)
    return n, [json.loads(line) for line in out.getvalue().splitlines()]


def test_worker_builds_a_row_once_and_times_each_call():
    built = []
    compiled = [0.0]

    def build(spec, data):
        built.append((spec["n"], data))

        def fn():
            compiled[0] += 0.5
            return spec["n"]

        return fn, lambda out: {"n": out}

    row = {"system": "genjax", "kind": "is", "n": 3}
    n, replies = _serve([{"op": "time", "row": row}, {"op": "time", "row": dict(reversed(list(row.items())))},
                         {"op": "quit"}, {"op": "time", "row": row}], build, compile_time=lambda: compiled[0])
    assert n == 3  # nothing after quit
    assert built == [(3, {"d": 1})]  # the same spec (any key order) is built once
    assert [r["summary"] for r in replies[:2]] == [{"n": 3}, {"n": 3}]
    assert all(r["cpu_s"] >= 0 and r["wall_s"] >= 0 for r in replies[:2])
    assert [r["compile_wall_s"] for r in replies[:2]] == [0.5, 0.5]
    assert replies[2] == {"ok": True}


def test_worker_reports_a_failure_and_goes_on():
    def build(spec, data):
        raise ValueError(f"no model {spec['model']!r}")

    n, replies = _serve([{"op": "time", "row": {"model": "nope"}}, {"op": "bogus"}, {"op": "quit"}], build)
    assert n == 3
    assert "no model 'nope'" in replies[0]["error"]
    assert "unknown op 'bogus'" in replies[1]["error"]
    assert replies[2] == {"ok": True}


def test_worker_rejects_an_unknown_system():
    with pytest.raises(ValueError, match="system must be one of"):
        worker._build_from_module({"system": "pyro"}, {})


def test_worker_process_speaks_json_lines():
    """The real worker under this Python: versions answer, a bad row comes back as a PeerError."""
    w = runner.PeerWorker(sys.executable)
    try:
        v = w.call(op="versions")
        assert v["python"].count(".") == 2 and "jax_device" in v
        with pytest.raises(runner.PeerError, match="system must be one of"):
            w.call(op="time", row={"system": "pyro", "kind": "is"})
        assert w.call(op="versions")["python"] == v["python"]  # still serving after the failure
    finally:
        w.close()
    assert w.proc.returncode == 0


# -- the runner: interpreter, ratios, interleaving ----------------------------------------------

def test_peers_python_resolution(tmp_path, monkeypatch):
    exe = tmp_path / "python"
    exe.write_text("")
    assert runner.peers_python(str(exe)) == str(exe)
    assert runner.peers_python(str(tmp_path / "missing")) is None
    monkeypatch.setenv("GENMLX_PEERS_PYTHON", "none")
    assert runner.peers_python() is None
    monkeypatch.setenv("GENMLX_PEERS_PYTHON", str(exe))
    assert runner.peers_python() == str(exe)


def test_ratios_are_genmlx_over_peer_per_round():
    r = runner.ratios([2.0, 4.0, 9.0], [1.0, 1.0, 3.0], g_first=10.0, p_first=20.0)
    assert r["per_round"] == [2.0, 4.0, 3.0]
    assert r["paired_median"] == 3.0
    assert r["of_min"] == 2.0
    assert r["first"] == 0.5
    assert runner.ratios([], [1.0]) == {}


class _FakeClock:
    """Stands for the `time` module and `cpu_seconds` in benchmarks.peers.run: time moves only when a side runs."""

    def __init__(self):
        self.now = 0.0

    def process_time(self):
        return self.now

    def perf_counter(self):
        return 2 * self.now


def test_measure_interleaves_genmlx_and_each_peer(monkeypatch):
    clock = _FakeClock()
    monkeypatch.setattr(runner, "time", clock)
    monkeypatch.setattr(runner, "cpu_seconds", clock.process_time)
    log = []

    def genmlx_fn():
        log.append("genmlx")
        clock.now += 30.0 if len(log) == 1 else 3.0  # a slow first call, then 3 s per call
        return 7

    def peer(name, cost):
        def call():
            log.append(name)
            return {"cpu_s": cost, "wall_s": 2 * cost, "compile_wall_s": 0.0, "summary": {"x": cost}}
        return call

    row = R.Row("t-1", "mh", "test row", {"kind": "mh"}, {"a": {"system": "genjax"}, "b": {"system": "numpyro"}},
                per=10, unit="iteration", rounds=2,
                targets=({"name": "within 2x of a", "peer": "a", "statistic": "paired_median", "max": 2.0},))
    res = runner.measure(row, (genmlx_fn, lambda out: {"out": out}), {"a": peer("a", 1.0), "b": peer("b", 6.0)},
                         "cpu")
    assert log == ["genmlx", "a", "b"] * 3  # first calls, then two rounds in the same order
    assert res["genmlx"]["first"]["cpu_s"] == 30.0 and res["genmlx"]["cpu_s"] == [3.0, 3.0]
    assert res["genmlx"]["summary"] == {"out": 7}
    assert res["peers"]["a"]["cpu_per_unit_median_s"] == pytest.approx(0.1)
    assert res["peers"]["b"]["spec"] == {"system": "numpyro"}
    assert res["ratios"]["a"]["paired_median"] == 3.0 and res["ratios"]["b"]["paired_median"] == 0.5
    assert res["ratios"]["a"]["first"] == 30.0
    assert res["ratios"]["a"]["wall_paired_median"] == 3.0  # the other clock's ratio (6 s / 2 s)
    assert res["targets"] == [dict(row.targets[0])]
    assert judge_peers({"rows": [res]})[0]["met"] is False  # 3x misses "within 2x"


def test_a_target_that_names_a_device_is_kept_only_on_that_device():
    """compiled_mh's peer target is "within 3x" on the CPU and "ahead of" GenJAX's scan on the GPU."""
    row = next(r for r in R.ROWS if r.id == "cmh50-bb")
    peer = {name: (lambda: {"cpu_s": 1.0, "wall_s": 1.0, "summary": {}}) for name in row.peers}
    for device, limit in (("cpu", 3.0), ("gpu", 1.0)):
        res = runner.measure(row._replace(rounds=1), (lambda: 0, lambda out: {}), peer, "cpu", device)
        assert [t["max"] for t in res["targets"]] == [limit]
        assert ("on the GPU" in res["targets"][0]["name"]) == (device == "gpu")


# -- rows and targets ------------------------------------------------------------------------------

def test_every_target_names_a_peer_of_its_row_and_a_known_statistic():
    ids = [r.id for r in R.ROWS]
    assert len(ids) == len(set(ids))
    targets = 0
    for row in R.ROWS:
        for t in row.targets:
            assert t["peer"] in row.peers and t["statistic"] in ("paired_median", "first", "first_cold")
            targets += 1
    # MH: 2 models x (2 forms x (mh, mh(compile=True)), K = 50 and K = 500 each on the CPU and the GPU);
    # NUTS: 2 forms x (later runs, first run in a later process, first run on a new machine)
    assert targets == 2 * (4 + 2 * 2) + 2 * 3
    assert all(r.fresh_worker for r in R.ROWS if r.group == "nuts")
    assert {r.genmlx["model"] for r in R.ROWS if r.group == "nuts"} == {
        "regression100", "regression100_vec", "funnel", "funnel_vec"}


def test_rows_selection_by_id_and_its_error():
    assert {r.id for r in R.rows(["nuts-reg100"])} == {"nuts-reg100", "nuts-reg100vec"}
    with pytest.raises(ValueError, match="no peers row matches"):
        R.rows(["no-such-row"])


def test_merge_keeps_the_rows_not_measured_again_in_table_order():
    previous = {"rows": [{"id": "nuts-reg100", "old": True}, {"id": "is-bb-1000", "old": True}]}
    kept = runner.kept_rows(previous, R.rows(["nuts-"]))
    assert kept == [{"id": "is-bb-1000", "old": True}]
    merged = runner.in_table_order([{"id": "nuts-funnel"}, *kept, {"id": "mh-bb"}])
    assert [r["id"] for r in merged] == ["is-bb-1000", "mh-bb", "nuts-funnel"]


def _peers_json(monkeypatch, g_times, p_times, g_first=5.0, p_first=4.0, error=None, first_runs=None):
    """A peers JSON with one NUTS row: genmlx and NumPyro taking the given CPU seconds per run."""
    clock = _FakeClock()
    monkeypatch.setattr(runner, "time", clock)
    monkeypatch.setattr(runner, "cpu_seconds", clock.process_time)
    row = R.rows(["nuts-reg100vec"])[0]._replace(rounds=len(g_times))
    g_it, p_it = iter([g_first, *g_times]), iter([p_first, *p_times])

    def genmlx_run():
        clock.now += next(g_it)

    def numpyro_run():
        return {"cpu_s": next(p_it), "wall_s": 1.0, "compile_wall_s": 0.5, "summary": {"leapfrog_steps": 90}}

    res = runner.measure(row, (genmlx_run, lambda out: {"leapfrog_steps": 100}), {"numpyro": numpyro_run}, "cpu",
                         genmlx_first_runs=first_runs)
    rows = [res]
    if error:
        rows.append({"id": "is-bb-1000", "group": "importance", "label": "bb", "error": error})
    return {"clock": "cpu", "versions": {"peers": {"genjax": "1.0.14", "numpyro": "0.22.0"}}, "rows": rows}


def _new_process(cpu_s: float) -> dict:
    return {"cpu_s": cpu_s, "wall_s": cpu_s, "summary": {}, "kernels_cached": 11}


def test_first_runs_in_new_processes_replace_the_runners_first_call(monkeypatch):
    """With `genmlx_first_runs`, genmlx's first run is a new process's (kernel cache kept), beside the one on
    a new machine (cache empty); the runner's own first call is kept apart and judged by nothing."""
    data = _peers_json(monkeypatch, [1.0, 1.0], [2.0, 2.0], g_first=50.0, p_first=4.0,
                       first_runs=lambda: (_new_process(6.0), _new_process(1.0)))
    row = data["rows"][0]
    assert row["genmlx"]["first"]["cpu_s"] == 1.0 and row["genmlx"]["first_cold"]["cpu_s"] == 6.0
    assert row["genmlx"]["first_in_runner"]["cpu_s"] == 50.0
    assert row["ratios"]["numpyro"]["first"] == pytest.approx(0.25)
    assert row["ratios"]["numpyro"]["first_cold"] == pytest.approx(1.5)
    got = {r["statistic"]: r["met"] for r in judge_peers(data)}
    assert got == {"paired_median": True, "first": True, "first_cold": False}


def test_the_cpu_clock_counts_finished_child_processes():
    """MLX compiles a CPU kernel in a child process (the C++ compiler): its CPU time is the run's."""
    import subprocess

    from benchmarks.peers.clock import cpu_seconds

    t0 = cpu_seconds()
    subprocess.run([sys.executable, "-c", "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"],
                   check=True)
    assert cpu_seconds() - t0 >= 0.25


def test_first_runs_measures_a_new_machine_then_a_later_process():
    """Real processes: the first builds MLX kernels into its own empty cache, the second finds them there."""
    from benchmarks.peers.first_run import first_runs

    cold, warm = first_runs({"kind": "is", "model": "beta_bernoulli", "n": 100}, timeout=300)
    assert cold["kernels_cached"] > 0 and warm["kernels_cached"] == cold["kernels_cached"]
    assert cold["summary"]["log_ml"] == pytest.approx(warm["summary"]["log_ml"], abs=1e-6)
    assert cold["cpu_s"] > 0 and warm["cpu_s"] > 0


def test_judge_peers_judges_each_target_and_misses_a_missing_value(monkeypatch):
    data = _peers_json(monkeypatch, [1.4, 2.0, 1.0], [1.0, 1.0, 1.0], g_first=5.0, p_first=4.0)
    got = {r["statistic"]: r for r in judge_peers(data)}
    assert set(got) == {"paired_median", "first", "first_cold"}
    assert got["first_cold"]["value"] is None and not got["first_cold"]["met"]  # not measured: missed
    assert got["paired_median"]["value"] == pytest.approx(1.4) and got["paired_median"]["met"]
    assert got["first"]["value"] == pytest.approx(1.25) and not got["first"]["met"]  # behind NumPyro's first run
    data["rows"][0]["ratios"]["numpyro"]["first"] = float("nan")
    got = {r["statistic"]: r for r in judge_peers(data)}
    assert got["first"]["value"] is None and not got["first"]["met"]
    data["rows"][0]["ratios"]["numpyro"]["paired_median"] = 1.6
    assert not {r["statistic"]: r for r in judge_peers(data)}["paired_median"]["met"]


def test_peers_section_shows_versions_targets_rows_and_failures(monkeypatch):
    from benchmarks.peers.section import peers_section

    text = peers_section(_peers_json(monkeypatch, [1.0, 1.0], [1.0, 1.0], error="Traceback\nValueError: boom\n"))
    assert "GenJAX 1.0.14, NumPyro 0.22.0" in text
    assert "Peer targets (issue 14): " in text and "of 3 met" in text
    assert "### NUTS, 1 chain, whole run" in text and "100 / 90" in text
    assert "- is-bb-1000: failed (ValueError: boom)" in text


def test_report_adds_the_peers_section_from_the_json_beside_the_suite(tmp_path, monkeypatch):
    from benchmarks.report import main as report

    suite = {"benchmarks": [], "genmlx": {"device_tag": "cpu-test"}, "datetime": "2026-01-01T00:00:00"}
    (tmp_path / "cpu-test.json").write_text(json.dumps(suite))
    out = tmp_path / "doc.md"
    assert report([str(tmp_path / "cpu-test.json"), "--out", str(out)]) == 0
    assert "## Peers" not in out.read_text()
    (tmp_path / "peers-cpu-test.json").write_text(json.dumps(_peers_json(monkeypatch, [2.0], [1.0], 1.0, 4.0)))
    report([str(tmp_path / "cpu-test.json"), "--out", str(out)])
    text = out.read_text()
    assert "## Peers: GenJAX and NumPyro" in text
    assert "1 of 3 met" in text  # ahead of the first run (0.25x), 2x the later run (limit 1.5x), no new-machine run
    assert "| 2.00x | <= 1.5x | paired_median | **missed** |" in text
