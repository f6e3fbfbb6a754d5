"""The leak gate's verdicts, through real pytest runs (`pytester`)."""

from __future__ import annotations

import pytest

import genmlx  # noqa: F401  (imported before the inner runs, so they share it)

pytest_plugins = ("pytester",)
pytestmark = pytest.mark.no_leak_gate


def test_leaky_loop_fails_with_the_one_line_message(gate):
    gate.pytester.makepyfile(
        """
        import pytest
        import loops

        @pytest.mark.limit_wrapper_growth(per_iteration=0.5, warmup=50)
        def test_leaks_two_per_iteration():
            loops.run(loops.leaky(per_step=2), n=1000)
        """
    )
    result = gate.run("-rf", "--leak-gate-json=gate.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*test_leaks_two_per_iteration*",
        "wrapper growth 2.00 arrays/iteration over 1,000 iterations exceeds limit 0.50",
        "*- genmlx leak gate -*",
        "LEAKED *test_leaks_two_per_iteration*",
    ])
    entry = gate.entries()["test_leaks_two_per_iteration"]
    assert entry["leaked"] and entry["outcome"] == "leaked"
    (loop,) = entry["loops"]
    assert loop["wrapper_growth"] == 2.0 and loop["pending_growth"] == 0.0
    assert loop["warmup"] == 50 and loop["points"][0][0] >= 50
    assert loop["confirm_growth"] == [2.0, 0.0]


def test_pipelined_loops_are_measured_exactly(gate):
    # A pipelined run holds its next step while one lands (`StepEnded.ahead`): neither a leak nor
    # an offset that hides one between the loop's first census and its end
    gate.pytester.makepyfile(
        """
        import pytest
        import loops

        @pytest.mark.limit_wrapper_growth(per_iteration=0.5, warmup=50)
        def test_pipelined_leaks_two_per_iteration():
            loops.run(loops.leaky(per_step=2), n=1000, pipeline=True)

        def test_pipelined_clean():
            loops.run(loops.clean, n=1000, pipeline=True)
        """
    )
    result = gate.run("-rf", "--leak-gate-json=gate.json")
    result.assert_outcomes(failed=1, passed=1)
    (loop,) = gate.entries()["test_pipelined_leaks_two_per_iteration"]["loops"]
    assert loop["wrapper_growth"] == 2.0 and loop["confirm_growth"] == [2.0, 0.0]
    entry = gate.entries()["test_pipelined_clean"]
    assert not entry["leaked"] and entry["loops"][0]["wrapper_growth"] == 0.0


def test_status_letter_is_L(gate):
    gate.pytester.makepyfile(
        """
        import loops

        def test_leaks():
            loops.run(loops.leaky())

        def test_clean():
            loops.run(loops.clean)
        """
    )
    result = gate.run()
    result.stdout.re_match_lines([r"test_status_letter_is_L\.py L\. .*"])
    result.assert_outcomes(failed=1, passed=1)


def test_lazily_accumulated_score_fails_on_pending_nodes(gate):
    gate.pytester.makepyfile(
        """
        import loops

        def test_lazy_score():
            loops.run(loops.lazy, n=400)
        """
    )
    result = gate.run("--leak-gate-json=gate.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["pending graph node growth 1.00 nodes/iteration over 400 iterations exceeds limit 0.10"]
    )
    (loop,) = gate.entries()["test_lazy_score"]["loops"]
    assert loop["wrapper_growth"] == 0.0  # the wrapper count stays flat: only the graph grows
    assert loop["pending_growth"] == 1.0


def test_clean_loop_passes(gate):
    gate.pytester.makepyfile(
        """
        import loops

        def test_clean():
            res = loops.run(loops.clean, n=400)
            assert len(res.stats["accepted"]) == 400
        """
    )
    result = gate.run("--leak-gate-json=gate.json")
    result.assert_outcomes(passed=1)
    entry = gate.entries()["test_clean"]
    assert entry["outcome"] == "passed" and not entry["leaked"] and entry["message"] is None
    (loop,) = entry["loops"]
    assert loop["wrapper_growth"] == 0.0 and loop["pending_growth"] == 0.0
    assert loop["census_points"] >= 5  # a loop long enough always gets at least 5 points


@pytest.mark.parametrize("scale, accept", [(1e4, "near 0"), (1e-3, "near 1")])
def test_loop_keeping_its_samples_passes(gate, scale, accept):
    gate.pytester.makepyfile(
        f"""
        import loops

        def test_keeps_samples(leak_gate):
            res = loops.run(loops.keeping({scale}), n=400)
            rate = sum(res.stats["accepted"]) / 400
            assert ({accept!r} == "near 0" and rate < 0.02) or ({accept!r} == "near 1" and rate > 0.98), rate
            assert len(res.samples) == 400
            (loop,) = leak_gate.loops
            assert loop.wrapper_growth == 0.0 and loop.pending_growth == 0.0
            # what the store keeps is subtracted: distinct (prop, lq) pairs when
            # accepting, the same object over and over when rejecting
            if {accept!r} == "near 1":
                assert loop.kept_arrays > 1.9 * 400
            else:
                assert loop.kept_arrays < 0.1 * 400
        """
    )
    gate.run().assert_outcomes(passed=1)


@pytest.mark.parametrize("limit, outcome", [("1.0", "passed"), ("0.99", "failed")])
def test_boundary_one_array_per_iteration(gate, limit, outcome):
    gate.pytester.makepyfile(
        f"""
        import pytest
        import loops

        @pytest.mark.limit_wrapper_growth(per_iteration={limit})
        def test_one_per_iteration():
            loops.run(loops.leaky(per_step=1), n=300)
        """
    )
    result = gate.run()
    result.assert_outcomes(**{outcome: 1})
    if outcome == "failed":
        result.stdout.fnmatch_lines(
            ["wrapper growth 1.00 arrays/iteration over 300 iterations exceeds limit 0.99"]
        )


@pytest.mark.parametrize("per_step, outcome", [(1, "passed"), (2, "failed")])
def test_boundary_default_limit_with_fused_steps(gate, per_step, outcome):
    """A step of 10 fused iterations leaking 1 array is 0.10 per iteration: at the default limit."""
    gate.pytester.makepyfile(
        f"""
        import loops

        def test_fused():
            loops.run(loops.leaky(per_step={per_step}), n=200, iterations_per_step=10)
        """
    )
    result = gate.run("--leak-gate-json=gate.json")
    result.assert_outcomes(**{outcome: 1})
    (loop,) = gate.entries()["test_fused"]["loops"]
    assert loop["iterations"] == 2000
    assert loop["wrapper_growth"] == pytest.approx(per_step / 10, abs=1e-12)
    if outcome == "failed":
        result.stdout.fnmatch_lines(
            ["wrapper growth 0.20 arrays/iteration over 2,000 iterations exceeds limit 0.10"]
        )


def test_ini_default_and_marker_override(gate):
    gate.pytester.makeini(
        """
        [pytest]
        genmlx_wrapper_growth_limit = 2.0
        """
    )
    gate.pytester.makepyfile(
        """
        import pytest
        import loops

        def test_ini_limit_allows_one():
            loops.run(loops.leaky(per_step=1), n=300)

        @pytest.mark.limit_wrapper_growth(per_iteration=0.5)
        def test_marker_limit_is_tighter():
            loops.run(loops.leaky(per_step=1), n=300)

        @pytest.mark.limit_wrapper_growth(per_iteration=5)
        def test_marker_limit_is_looser():
            loops.run(loops.leaky(per_step=3), n=300)
        """
    )
    result = gate.run("-rf")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["wrapper growth 1.00 arrays/iteration over 300 iterations exceeds limit 0.50",
                                 "LEAKED *test_marker_limit_is_tighter*"])
    # the command line overrides the ini file; a marker still overrides both
    result = gate.run("--leak-gate-limit=0.5")
    result.assert_outcomes(passed=1, failed=2)


def test_opt_out_and_switch_off(gate):
    gate.pytester.makepyfile(
        """
        import pytest
        import loops

        @pytest.mark.no_leak_gate
        def test_opted_out():
            loops.run(loops.leaky())

        @pytest.mark.limit_wrapper_growth(enabled=False)
        def test_disabled_by_marker():
            loops.run(loops.leaky())

        def test_default():
            loops.run(loops.leaky())

        @pytest.mark.limit_wrapper_growth(per_iteration=0.5)
        def test_explicit_marker():
            loops.run(loops.leaky())
        """
    )
    gate.run().assert_outcomes(passed=2, failed=2)
    # switched off: only the test with an explicit limit is still judged
    gate.run("--no-leak-gate").assert_outcomes(passed=3, failed=1)
    gate.pytester.makeini("[pytest]\ngenmlx_leak_gate = false\n")
    gate.run().assert_outcomes(passed=3, failed=1)


def test_cycles_that_die_old_do_not_fake_a_leak(gate):
    """Each step drops a reference cycle holding 5 arrays after it reached the oldest GC generation."""
    gate.pytester.makepyfile(
        """
        import mlx.core as mx
        import loops

        HOLD = [None]

        def step(key, s):
            out = loops.clean(key, s)
            cycle = {"arrays": [mx.array(1.0) for _ in range(5)]}
            cycle["self"] = cycle
            HOLD[0] = cycle  # the previous cycle is garbage now, and old: a census promoted it
            return out

        def test_cycles(leak_gate):
            loops.run(step, n=200)
            (loop,) = leak_gate.loops
            assert loop.wrapper_growth > 1  # the cheap censuses see the garbage pile up...
            assert loop.confirm_growth[0] < 0.1  # ...the exact end census does not
        """
    )
    gate.run("--leak-gate-census-every=1").assert_outcomes(passed=1)


def test_old_garbage_before_the_loop_does_not_hide_a_leak(gate):
    gate.pytester.makepyfile(
        """
        import gc
        import mlx.core as mx
        import loops

        def test_garbage_then_leak():
            junk = []
            for _ in range(200):
                c = {"arrays": [mx.array(1.0) for _ in range(5)]}
                c["self"] = c
                junk.append(c)
            gc.collect(1), gc.collect(1)  # promoted to the oldest generation...
            del junk, c  # ...and garbage there: 1,000 arrays a young collection never frees
            loops.run(loops.leaky(per_step=1), n=300)
        """
    )
    result = gate.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["wrapper growth 1.00 arrays/iteration over 300 iterations exceeds limit 0.10"])


def test_test_without_genmlx_loops_is_untouched(gate):
    gate.pytester.makepyfile(
        """
        import mlx.core as mx
        import genmlx

        LEAK = []

        def test_plain_python():
            assert 1 + 1 == 2

        def test_arrays_but_no_loop():
            for _ in range(100):
                LEAK.append(mx.array(1.0))
        """
    )
    result = gate.run("-v", "--leak-gate-json=gate.json")
    result.assert_outcomes(passed=2)
    assert "genmlx leak gate" not in result.stdout.str()
    assert gate.json()["tests"] == []


def test_short_loop_is_reported_not_failed(gate):
    gate.pytester.makepyfile(
        """
        import loops

        def test_short(leak_gate):
            loops.run(loops.leaky(per_step=5), n=3)  # one census point after the warm-up of 3
            assert leak_gate.loops[0].verdict == "too short"
        """
    )
    result = gate.run("--leak-gate-json=gate.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*1 tests measured (1 loops, 1 too short to judge), 0 leaked*"])
    (loop,) = gate.entries()["test_short"]["loops"]
    assert loop["verdict"] == "too short" and loop["wrapper_growth"] is None


def test_fixture_gives_the_test_its_measurements(gate):
    gate.pytester.makepyfile(
        """
        import loops

        def test_reads_own_growth(leak_gate):
            loops.run(loops.clean, n=300)
            loops.run(loops.leaky(per_step=1, every=4), n=300)
            first, second = leak_gate.loops
            assert first.wrapper_growth == 0.0
            assert abs(second.wrapper_growth - 0.25) < 0.02
            assert leak_gate.worst() == second.wrapper_growth
            assert leak_gate.settings.limit == 0.1
        """
    )
    result = gate.run("-rf")
    result.assert_outcomes(failed=1)  # the test's asserts pass; the gate then fails it
    result.stdout.fnmatch_lines(["wrapper growth 0.2* arrays/iteration over 300 iterations exceeds limit 0.10"])


def test_worst_loop_decides(gate):
    gate.pytester.makepyfile(
        """
        import loops

        def test_three_loops():
            loops.run(loops.clean, n=300)
            loops.run(loops.leaky(per_step=3), n=300)
            loops.run(loops.leaky(per_step=1), n=300)
        """
    )
    result = gate.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["wrapper growth 3.00 arrays/iteration over 300 iterations exceeds limit 0.10"])


def test_site_budget_marker(gate):
    gate.pytester.makepyfile(
        """
        import pytest
        import genmlx as gm
        from genmlx import dist

        @gm.gen
        def model():
            x = gm.trace("x", dist.normal(0.0, 1.0))
            gm.trace("y", dist.normal(x, 1.0))
            return x

        @pytest.mark.limit_buffers_per_site(max_nodes=1)
        def test_over_budget():
            for _ in range(3):
                model.simulate(())

        @pytest.mark.limit_buffers_per_site(max_nodes=10_000)
        def test_within_budget(leak_gate):
            model.simulate(())
            assert {tuple(s["address"]) for s in leak_gate.sites} == {("x",), ("y",)}
        """
    )
    result = gate.run("-rf")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.re_match_lines(
        [r"trace site '[xy]' \(normal, simulate\) adds \d+ graph nodes, over the budget of 1 per site.*",
         r"LEAKED .*test_over_budget.*"]
    )


def test_real_mh_keeping_traces(gate):
    """infer.mh keeps every trace; a rejection keeps the old one (acceptance near 0 and near 1)."""
    gate.pytester.makepyfile(
        """
        import mlx.core as mx
        import pytest
        import genmlx as gm
        from genmlx import dist
        from genmlx import inference as infer

        @gm.gen
        def model(noise):
            mu = gm.trace("mu", dist.normal(0.0, 1.0))
            gm.trace("y", dist.normal(mu, noise))
            return mu

        # prior proposals: an uninformative y accepts nearly all, a far, sharp y nearly none
        @pytest.mark.parametrize("noise, obs, accept", [(1000.0, 0.0, "near 1"), (0.01, 30.0, "near 0")])
        def test_mh_keeps_traces(noise, obs, accept, leak_gate):
            res = infer.mh(model, (noise,), {"y": obs}, selection=gm.select("mu"), n_samples=300,
                           key=mx.random.key(1))
            rate = res.stats["acceptance_rate"]
            assert rate > 0.9 if accept == "near 1" else rate < 0.1
            assert len(res.traces) == 300
            loops = [r for r in leak_gate.loops if r.verdict != "too short"]
            assert loops and all(r.wrapper_growth <= 0.1 for r in loops)
        """
    )
    gate.run().assert_outcomes(passed=2)


def test_real_model_leaking_one_array_per_execution_fails(gate):
    gate.pytester.makepyfile(
        """
        import mlx.core as mx
        import genmlx as gm
        from genmlx import dist
        from genmlx import inference as infer

        SEEN = []

        @gm.gen
        def model():
            mu = gm.trace("mu", dist.normal(0.0, 1.0))
            SEEN.append(mx.array(1.0))  # a "debugging" list that outlives every execution
            gm.trace("y", dist.normal(mu, 1.0))
            return mu

        def test_mh_on_leaky_model():
            infer.mh(model, (), {"y": 0.3}, selection=gm.select("mu"), n_samples=300, key=mx.random.key(0))
        """
    )
    result = gate.run("--leak-gate-json=gate.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "wrapper growth 1.00 arrays/iteration over 300 iterations exceeds limit 0.10",
        "*trace sites by buffers*",
        "*'mu'*normal*",
    ])
    (loop,) = [r for r in gate.entries()["test_mh_on_leaky_model"]["loops"] if r["algorithm"] == "mh"]
    assert loop["wrapper_growth"] == 1.0 and loop["verdict"] == "leak"


def test_loop_that_raises_is_reported_not_judged(gate):
    gate.pytester.makepyfile(
        """
        import pytest
        import loops

        def test_expects_the_error(leak_gate):
            leaky = loops.leaky(per_step=3)

            def step(key, s):
                if len(loops.LEAK) >= 600:
                    raise MemoryError("budget")
                return leaky(key, s)

            with pytest.raises(MemoryError):
                loops.run(step, n=400)
            (loop,) = leak_gate.loops
            assert loop.verdict == "raised" and loop.wrapper_growth == 3.0
            assert loop.error == "MemoryError: budget"
        """
    )
    gate.run().assert_outcomes(passed=1)
