"""The import graph of genmlx's core is a DAG, layered as the architecture says.

The graph is read from the source (`ast`): an import inside a function counts
like one at module level, so a cycle cannot hide behind a lazy import. Imports
by a computed name (`importlib.import_module(s)`) are not seen.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import genmlx

ROOT = Path(genmlx.__file__).parent

# The core, bottom first: a module imports modules of its own layer or below, never above.
LAYERS = [
    ("address", "sums", "rng", "deferred", "events"),
    ("choicemap", "selection", "checks"),
    ("trace", "tree", "site_counts"),
    ("vectorize",),  # the batched engine: runs any object with the GFI's internals
    ("gfi",),  # GenerativeFunction (its vsimulate & co. call vectorize)
    ("handler",),
    ("dynamic",),
    ("compiled_pass", "flat_density"),
]
RANK = {f"genmlx.{m}": i for i, layer in enumerate(LAYERS) for m in layer}
ABOVE_THE_CORE = ("genmlx.inference", "genmlx.combinators")  # the algorithms and combinators


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """{module: the modules of `package` it imports}, for every module under `root` (module- and function-level)."""
    files = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        is_pkg = parts[-1] == "__init__"
        name = ".".join((package, *(parts[:-1] if is_pkg else parts)))
        files[name] = (path, is_pkg)

    def owner(name: str) -> str | None:  # the module a dotted name lives in (`genmlx.gfi.same_callee` -> genmlx.gfi)
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for mod, (path, is_pkg) in files.items():
        here = mod.split(".") if is_pkg else mod.split(".")[:-1]
        targets = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(here[: len(here) - node.level + 1] + [node.module or ""]).strip(".") \
                    if node.level else node.module
                targets += [f"{base}.{a.name}" for a in node.names]  # `from . import x` names a module
        deps = {owner(t) for t in targets if t.split(".")[0] == package}
        graph[mod] = {d for d in deps if d is not None and d != mod}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a path a -> ... -> a) per strongly connected component with more than one module."""
    return [_cycle_through(min(c), c, graph) for c in components(graph)]


def components(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (the modules on some cycle)."""
    index: dict = {}
    low: dict = {}
    stack: list = []
    on_stack: set = set()
    comps: list = []

    def visit(v):  # Tarjan; the graph is small, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def _cycle_through(start: str, comp: set, graph) -> list[str]:
    """The shortest path start -> ... -> start inside `comp` (breadth first)."""
    prev = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & comp):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [*reversed(path), start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")  # unreachable for a strongly connected component


@pytest.fixture(scope="module")
def graph():
    return import_graph(ROOT, "genmlx")


def test_core_modules_are_in_no_import_cycle(graph):
    # the core: the layered modules and any other module directly under genmlx/
    core = set(RANK) | {m for m in graph if m.count(".") == 1 and (ROOT / f"{m.split('.')[1]}.py").is_file()}
    found = [c for c in components(graph) if core & c]
    assert not found, "import cycles through genmlx's core:\n" + "\n".join(
        f"{' -> '.join(_cycle_through(min(c), c, graph))}  (modules on cycles: {', '.join(sorted(c))})" for c in found
    )


def test_core_imports_only_its_own_layer_or_below(graph):
    upward = [
        f"{m} (layer {RANK[m]}) imports {d} (layer {RANK[d]})"
        for m in sorted(RANK) for d in sorted(graph[m]) if d in RANK and RANK[d] > RANK[m]
    ]
    upward += [f"{m} imports {d}" for m in sorted(RANK) for d in sorted(graph[m]) if d.startswith(ABOVE_THE_CORE)]
    assert not upward, "the core imports a module above it:\n" + "\n".join(upward)


def test_the_graph_sees_function_level_imports_and_names_the_cycle(tmp_path):
    """The checker itself: a cycle closed by an import inside a function is found and listed."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import a\n")
    (pkg / "a.py").write_text("from .b import f\n")
    (pkg / "b.py").write_text("def f():\n    from .sub import c\n    return c\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("import os\nfrom ..a import g\n")
    (pkg / "d.py").write_text("from pkg import b\n")
    g = import_graph(pkg, "pkg")
    assert g["pkg.b"] == {"pkg.sub.c"} and g["pkg.d"] == {"pkg.b"} and g["pkg"] == {"pkg.a"}
    assert cycles(g) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]
    (pkg / "b.py").write_text("def f():\n    return 1\n")
    assert cycles(import_graph(pkg, "pkg")) == []
