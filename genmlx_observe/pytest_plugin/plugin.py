"""genmlx leak gate: fail a test whose genmlx loops grow per iteration.

Registered as the ``genmlx`` `pytest11` entry point, so it is active in every
suite of an environment where genmlx is installed (``-p no:genmlx`` removes
it). For each test that runs genmlx inference loops it measures the growth
per iteration of live arrays (wrappers) and pending graph nodes
(`growth.py`), judges the test by its worst loop, and fails it with a
one-line message, a report section, a status of its own ("L" / LEAKED), a
terminal summary and, on request, a JSON artifact (`report.py`). See
docs/pytest-plugin.md.

Importing this module imports only pytest and the standard library; genmlx
itself is imported when the first test is set up.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import pytest

from . import marks, report

__all__ = ["leak_gate", "LeakGate", "Measurements", "DEFAULT_LIMIT", "DEFAULT_PENDING_LIMIT"]

DEFAULT_LIMIT = 0.1  # arrays per iteration; see docs/pytest-plugin.md for why
DEFAULT_PENDING_LIMIT = 0.1  # pending graph nodes per iteration
DEFAULT_SUMMARY = 5
SECTION = "genmlx leak gate"
_FLAGS: dict[str, str] = {}  # option dest (= ini key) -> command-line flag, for error messages
_RECORDER = pytest.StashKey[Any]()
_SETTINGS = pytest.StashKey[Any]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("genmlx", "genmlx leak gate (growth per iteration of genmlx inference loops)")

    def option(flag, ini, help, ini_type="string", ini_default=None, **kw):
        _FLAGS[ini] = flag
        group.addoption(flag, dest=ini, help=f"{help} [ini: {ini}]", **kw)
        parser.addini(ini, help.replace("%%", "%"), type=ini_type, default=ini_default)

    group.addoption("--no-leak-gate", dest="genmlx_no_leak_gate", action="store_true", default=None,
                    help="do not gate tests by default (tests with a limit_* marker still are) "
                         "[ini: genmlx_leak_gate = false]")
    parser.addini("genmlx_leak_gate", "gate every test that runs genmlx loops (default true)", type="bool", default=True)
    option("--leak-gate-limit", "genmlx_wrapper_growth_limit", f"live arrays per iteration a loop may grow by "
           f"(default {DEFAULT_LIMIT})", metavar="FLOAT")
    option("--leak-gate-pending-limit", "genmlx_pending_growth_limit", "pending graph nodes per iteration a loop "
           f"may grow by (default {DEFAULT_PENDING_LIMIT})", metavar="FLOAT")
    option("--leak-gate-warmup", "genmlx_leak_gate_warmup", "iterations before the first census "
           "(default: max(3, 10%% of the loop))", metavar="N")
    option("--leak-gate-census-every", "genmlx_leak_gate_census_every", "driver steps between censuses "
           "(default 0: adaptive, census under ~10%% of loop time, at least 10 points)", metavar="K")
    option("--leak-gate-json", "genmlx_leak_gate_json", "write every measurement to this JSON file "
           "(default: none)", metavar="PATH")
    option("--leak-gate-summary", "genmlx_leak_gate_summary", "tests listed in the terminal summary "
           f"per end (default {DEFAULT_SUMMARY}; 0 hides the lists)", metavar="N")


def _setting(config: pytest.Config, name: str, convert, default, least=0):
    raw = config.getoption(name)
    where = _FLAGS.get(name, name)
    if raw is None:
        raw, where = config.getini(name), f"ini {name}"
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return default
    try:
        value = convert(raw)
        if not value >= least:
            raise ValueError
    except (TypeError, ValueError):
        kind = "a number" if convert is float else "an int"
        raise pytest.UsageError(f"genmlx leak gate: {where} must be {kind} >= {least}, got {raw!r}") from None
    return value


def defaults(config: pytest.Config) -> marks.Settings:
    """Suite-wide settings: command line, else ini, else the documented defaults."""
    off = config.getoption("genmlx_no_leak_gate")
    enabled = not off if off is not None else bool(config.getini("genmlx_leak_gate"))
    return marks.Settings(
        enabled=enabled,
        limit=_setting(config, "genmlx_wrapper_growth_limit", float, DEFAULT_LIMIT),
        pending_limit=_setting(config, "genmlx_pending_growth_limit", float, DEFAULT_PENDING_LIMIT),
        warmup=_setting(config, "genmlx_leak_gate_warmup", int, None),
        census_every=_setting(config, "genmlx_leak_gate_census_every", int, 0),
        site_budget=None,
    )


def pytest_configure(config: pytest.Config) -> None:
    for name in marks.MARKERS:
        config.addinivalue_line("markers", marks.marker_help(name))
    config.pluginmanager.register(LeakGate(config), "genmlx-leak-gate")


class Measurements:
    """What the `leak_gate` fixture gives a test: its own loops, as measured so far.

    A loop's record is final once the loop returned (`verdict` is then "ok" or
    "too short"; the gate itself judges after the test).
    """

    def __init__(self, recorder, settings: marks.Settings):
        self._recorder = recorder
        self.settings = settings

    @property
    def loops(self) -> list:
        """`LoopRecord`s, one per loop, in the order the loops started."""
        return self._recorder.records()

    @property
    def sites(self) -> list[dict]:
        """Trace sites seen, largest node count first."""
        return self._recorder.tap.ranked()

    def worst(self, what: str = "wrapper_growth") -> float | None:
        """Largest `wrapper_growth` (or `pending_growth`) over judged loops; None if none."""
        vals = [getattr(r, what) for r in self.loops if getattr(r, what) is not None]
        return max(vals, default=None)


@pytest.fixture
def leak_gate(request: pytest.FixtureRequest) -> Measurements:
    """This test's genmlx loop measurements (measured even where the gate is off)."""
    rec = request.node.stash.get(_RECORDER, None)
    if rec is None:
        pytest.fail("leak_gate: genmlx could not be imported, so nothing is measured", pytrace=False)
    return Measurements(rec, request.node.stash[_SETTINGS])


class LeakGate:
    """The plugin object: per-test recorders, verdicts, summary and JSON."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.defaults = defaults(config)
        self.entries: list[dict] = []
        self.is_worker = hasattr(config, "workerinput")
        self._import_failed = False

    def _recorder(self, settings: marks.Settings):
        if self._import_failed:
            return None
        try:
            from .growth import TestRecorder

            return TestRecorder(settings)
        except ImportError as e:  # genmlx broken or absent: never break unrelated tests
            self._import_failed = True
            warnings.warn(f"genmlx leak gate is off: {e}", pytest.PytestWarning, stacklevel=1)
            return None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item):
        settings = marks.resolve(list(item.iter_markers())[::-1], self.defaults)
        names = getattr(item, "fixturenames", ())
        if "benchmark" in names and not settings.explicit:  # a census would skew the timings
            settings = settings._replace(enabled=False)
        item.stash[_SETTINGS] = settings
        if settings.enabled or settings.site_budget is not None or "leak_gate" in names:
            rec = self._recorder(settings)
            if rec is not None:
                item.stash[_RECORDER] = rec
                rec.start()
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        try:
            return (yield)
        finally:
            rec = item.stash.get(_RECORDER, None)
            if rec is not None:
                rec.stop()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item):
        rec = item.stash.get(_RECORDER, None)
        if rec is not None:  # setup failed, so the call never ran
            rec.stop()
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        rep = yield
        rec = item.stash.get(_RECORDER, None)
        if call.when != "call" or rec is None or rep.skipped or not (rec.loops or rec.tap.sites):
            return rep
        rec.stop()
        settings = item.stash[_SETTINGS]
        verdict = report.judge([r.to_dict() for r in rec.loops], rec.tap.ranked(), settings)
        worker = getattr(self.config, "workerinput", {}).get("workerid")
        entry = {"nodeid": item.nodeid, "worker": worker, **verdict, "leaked": False}
        if verdict["message"] is not None:
            memory = None
            if rep.passed:
                rep.outcome = "failed"
                rep.longrepr = verdict["message"]
                entry["leaked"] = True
                memory = _memory_report()
            rep.sections.append((SECTION, report.section(verdict, memory, self.config.option.verbose)))
        entry["outcome"] = "leaked" if entry["leaked"] else rep.outcome
        rep.genmlx_leak_gate = entry  # plain data: travels from xdist workers with the report
        return rep

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report: pytest.TestReport, config: pytest.Config):
        entry = getattr(report, "genmlx_leak_gate", None)
        if report.when == "call" and report.failed and entry and entry.get("leaked"):
            return "failed", "L", ("LEAKED", {"red": True})
        return None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = getattr(report, "genmlx_leak_gate", None)
        if report.when == "call" and entry is not None:
            self.entries.append(entry)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.is_worker or not self.entries:
            return
        n = _setting(self.config, "genmlx_leak_gate_summary", int, DEFAULT_SUMMARY)
        lines = report.summary_lines(self.entries, (self.defaults.limit, self.defaults.pending_limit),
                                     n, self.config.option.verbose)
        terminalreporter.write_sep("=", "genmlx leak gate")
        for line in lines:
            terminalreporter.write_line(line)
        if getattr(self, "json_path", None):
            terminalreporter.write_line(f"measurements written to {self.json_path}")

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.is_worker:
            return
        path = self.config.getoption("genmlx_leak_gate_json")
        if not path:
            path = self.config.getini("genmlx_leak_gate_json")
            if path:
                path = os.path.join(str(self.config.rootpath), path)
        if path:
            limits = {"wrapper_per_iteration": self.defaults.limit,
                      "pending_per_iteration": self.defaults.pending_limit,
                      "warmup": self.defaults.warmup, "enabled": self.defaults.enabled}
            self.json_path = report.write_json(path, self.entries, limits)


def _memory_report() -> dict | None:
    try:
        from genmlx.memory import report as memory_report

        return memory_report()
    except Exception as e:  # the report is evidence, never a reason to break the run
        return {"error": f"{type(e).__name__}: {e}"}
