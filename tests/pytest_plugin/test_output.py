"""What the leak gate prints and writes: sections by verbosity, the terminal
summary, the JSON artifact, xdist aggregation, pytest-benchmark, marker help."""

from __future__ import annotations

import re

import pytest

import genmlx  # noqa: F401  (imported before the inner runs, so they share it)

pytest_plugins = ("pytester",)
pytestmark = pytest.mark.no_leak_gate

FOUR_TESTS = """
import loops

def test_clean_a():
    loops.run(loops.clean, n=300)

def test_clean_b():
    loops.run(loops.clean, n=300)

def test_leaky_one():
    loops.run(loops.leaky(per_step=1), n=300)

def test_leaky_three():
    loops.run(loops.leaky(per_step=3), n=300)
"""


def _section(text: str) -> list[str]:
    """Lines of the first "genmlx leak gate" report section."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"^-+ genmlx leak gate -+$", line))
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"^(=+|_+|-+) ", lines[i])), len(lines))
    return lines[start + 1 : end]


def test_section_length_follows_verbosity(gate):
    gate.pytester.makepyfile(
        """
        import loops

        def test_many_loops():
            for _ in range(12):
                loops.run(loops.clean, n=120)
            loops.run(loops.leaky(per_step=2), n=300)
        """
    )
    sizes = {}
    for flag in ("-q", "", "-v"):
        result = gate.run(*([flag] if flag else []))
        result.assert_outcomes(failed=1)
        sizes[flag] = len(_section(result.stdout.str()))
        if flag == "-q":
            quiet = _section(result.stdout.str())
        section = "\n".join(_section(result.stdout.str()))
        assert "growth per loop:" in section
        assert ("memory report" in section) == (flag != "-q")
        assert ("census (iteration, live, pending, state)" in section) == (flag == "-v")
    assert sizes["-q"] < sizes[""] < sizes["-v"], sizes
    assert sizes["-q"] <= 6  # the limits, what holds the growth, the table head and the leaking loop
    assert any(re.match(r"loop \d+: 2\.00 arrays/iteration held by list `loops\.LEAK`, created at loops\.py:\d+$", line)
               for line in quiet), quiet


def test_terminal_summary_lists_fastest_and_slowest(gate):
    body = "import loops\n" + "".join(
        f"\ndef test_leak_{i}():\n    loops.run(loops.leaky(per_step=1, every={i}), n=200)\n" for i in range(1, 8)
    )
    gate.pytester.makepyfile(body)
    result = gate.run("--leak-gate-summary=2")
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*= genmlx leak gate =*",
        "7 tests measured (7 loops, 0 too short to judge), 7 leaked; default limits 0.10 arrays/iteration, "
        "0.10 pending nodes/iteration",
        "fastest-growing:",
        "*1.00 arrays/it*test_leak_1 *LEAKED",
        "*0.50 arrays/it*test_leak_2 *LEAKED",
        "slowest-growing:",
        "*test_leak_6 *LEAKED",
        "*test_leak_7 *LEAKED",
    ])
    summary = out.split("= genmlx leak gate =")[1].split("short test summary")[0]
    assert "test_leak_4" not in summary
    # -q keeps only the headline
    quiet = gate.run("-q").stdout.str()
    assert "7 tests measured" in quiet and "fastest-growing" not in quiet


def test_json_artifact_has_every_measurement(gate):
    gate.pytester.makeini("[pytest]\ngenmlx_leak_gate_json = reports/leaks.json\n")
    gate.pytester.makepyfile(FOUR_TESTS)
    result = gate.run()
    result.assert_outcomes(passed=2, failed=2)
    doc = gate.json("reports/leaks.json")  # ini paths are relative to the rootdir
    assert doc["format"] == "genmlx-leak-gate" and doc["version"] == 1
    assert doc["limits"]["wrapper_per_iteration"] == 0.1
    tests = {t["nodeid"].split("::")[1]: t for t in doc["tests"]}
    assert set(tests) == {"test_clean_a", "test_clean_b", "test_leaky_one", "test_leaky_three"}
    assert tests["test_leaky_three"]["wrapper_growth"] == 3.0 and tests["test_leaky_three"]["leaked"]
    assert tests["test_clean_a"]["outcome"] == "passed"
    loop = tests["test_leaky_one"]["loops"][0]
    for key in ("run_id", "algorithm", "model", "iterations", "points", "census_points", "census_every",
                "wrapper_growth", "pending_growth", "kept_arrays", "census_s", "loop_s", "verdict"):
        assert key in loop
    assert loop["census_points"] == len(loop["points"]) >= 5
    # the command line wins over the ini file
    gate.run("--leak-gate-json=cli.json")
    assert len(gate.json("cli.json")["tests"]) == 4


def test_xdist_run_aggregates_results(gate):
    pytest.importorskip("xdist")
    gate.pytester.makepyfile(FOUR_TESTS)
    result = gate.run("-n", "2", "--leak-gate-json=gate.json", subprocess=True)
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines([
        "*wrapper growth 3.00 arrays/iteration over 300 iterations exceeds limit 0.10",
        "*= genmlx leak gate =*",
        "4 tests measured (4 loops, 0 too short to judge), 2 leaked;*",
        "*3.00 arrays/it*test_leaky_three*LEAKED",
    ])
    tests = gate.json()["tests"]
    assert len(tests) == 4
    assert {t["worker"] for t in tests} <= {"gw0", "gw1"} and all(t["worker"] for t in tests)
    assert sum(t["leaked"] for t in tests) == 2


def test_benchmark_tests_are_not_slowed_by_the_census(gate, monkeypatch):
    pytest.importorskip("pytest_benchmark")
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # else pytest-benchmark turns itself off
    gate.pytester.makepyfile(
        """
        import pytest
        import loops

        def test_bench(benchmark):
            benchmark.pedantic(loops.run, args=(loops.clean,), kwargs={"n": 50}, rounds=3)

        @pytest.mark.limit_wrapper_growth(per_iteration=0.5)
        def test_bench_gated_on_request(benchmark):
            benchmark.pedantic(loops.run, args=(loops.leaky(per_step=1),), kwargs={"n": 100}, rounds=1)
        """
    )
    result = gate.run("--leak-gate-json=gate.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*benchmark*", "*test_bench *"])
    assert [t["nodeid"].split("::")[1] for t in gate.json()["tests"]] == ["test_bench_gated_on_request"]


def test_markers_are_registered_with_generated_help(gate):
    result = gate.run("--markers")
    result.stdout.fnmatch_lines([
        "@pytest.mark.limit_wrapper_growth(per_iteration: 'float | None' = None, *, warmup: 'int | None' = None, "
        "pending_per_iteration: 'float | None' = None, enabled: 'bool' = True): Judge this test*",
        "@pytest.mark.no_leak_gate(): Neither measure nor judge*",
        "@pytest.mark.limit_buffers_per_site(max_nodes: 'int'): Fail the test when one trace site*",
    ])
    # --strict-markers accepts them without any ini registration
    gate.pytester.makepyfile(
        """
        import pytest

        @pytest.mark.no_leak_gate
        @pytest.mark.limit_wrapper_growth(per_iteration=1)
        @pytest.mark.limit_buffers_per_site(max_nodes=40)
        def test_marked():
            pass
        """
    )
    gate.run("--strict-markers").assert_outcomes(passed=1)


def test_bad_settings_are_named(gate):
    gate.pytester.makepyfile(
        """
        import pytest

        @pytest.mark.limit_wrapper_growth(per_iteration="lots")
        def test_bad_marker():
            pass

        @pytest.mark.limit_wrapper_growth(0.5, bogus=1)
        def test_unknown_argument():
            pass
        """
    )
    result = gate.run()
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([
        "*@pytest.mark.limit_wrapper_growth: per_iteration must be a number >= 0, got 'lots'*",
        "*@pytest.mark.limit_wrapper_growth: *unexpected keyword argument 'bogus'*",
    ])
    result = gate.run("--leak-gate-limit=abc")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*genmlx leak gate: --leak-gate-limit must be a number >= 0, got 'abc'*"])
