"""Layers point one way: no import cycle among symbp's modules (STYLE.md, habit 12).

The import graph is read from the source with ``ast``, not by importing: an edge is a
module-level ``import`` or ``from ... import`` of a symbp module (inside a class body or a
``try`` too). An import inside a function runs when it is called, one under
``if TYPE_CHECKING:`` never, so neither is an edge of the module-level graph; a cycle there is
a design bug. Such a deferred import may still point upward, where it is a call-time
dependency (``Tensor.backward`` runs the autograd engine, which works on tensors): each one
that closes a cycle, of module-level imports or of deferred ones, is listed in ``CALL_TIME``
with why, so that a new one is a decision.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "symbp"

# (importer, imported): why the importer defers an import of a module above it
CALL_TIME = {
    ("symbp.tensor", "symbp.autograd.engine"): "Tensor.backward runs the engine on tensors",
    ("symbp.api", "symbp.autograd.engine"): "api.backward is the pipeline's door to the engine, "
    "which derives with api.derive",
    ("symbp.random", "symbp.tensor"): "get_rng_state returns the state as a Tensor, as PyTorch",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", None)
    return name == "TYPE_CHECKING"


def _module_level(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """The imports a module runs when it is imported: not in functions, not for type checkers."""
    found: list[ast.Import | ast.ImportFrom] = []
    for stmt in body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            found.append(stmt)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        elif isinstance(stmt, ast.If) and _is_type_checking(stmt.test):
            found += _module_level(stmt.orelse)
        else:  # class bodies, if/else, try/except/finally, with: run at import
            for block in ("body", "orelse", "finalbody"):
                found += _module_level(getattr(stmt, block, []))
            for handler in getattr(stmt, "handlers", []):
                found += _module_level(handler.body)
    return found


def _owner(name: str) -> str | None:
    """The symbp module an imported dotted name lives in (``symbp.nn.Linear`` -> ``symbp.nn``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _targets(module: str, stmt: ast.Import | ast.ImportFrom) -> set[str]:
    if isinstance(stmt, ast.Import):
        names = [a.name for a in stmt.names]
    else:
        base = stmt.module or ""
        if stmt.level:  # relative: from the importer's package, one level up per dot
            package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
            for _ in range(stmt.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        names = [f"{base}.{a.name}" for a in stmt.names]  # a submodule, or a name in base
    owners = {_owner(n) for n in names if n == "symbp" or n.startswith("symbp.")}
    return {o for o in owners if o is not None and o != module}


def import_graph(deferred: bool = False) -> dict[str, set[str]]:
    """Module -> the symbp modules it imports at module level (``deferred``: those it imports
    anywhere else instead, in functions; never those for type checkers only)."""
    graph = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        top = _module_level(tree.body)
        edges = set().union(*(_targets(module, s) for s in top))
        if deferred:
            checked = {id(s) for s in top}
            for stmt in ast.walk(tree):
                if isinstance(stmt, ast.If) and _is_type_checking(stmt.test):
                    checked |= {id(s) for s in ast.walk(stmt)}
            anywhere = [
                s
                for s in ast.walk(tree)
                if isinstance(s, (ast.Import, ast.ImportFrom)) and id(s) not in checked
            ]
            edges = set().union(*(_targets(module, s) for s in anywhere)) - edges
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a sorted
    list; a module importing itself is no cycle here."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        v = todo.pop()
        if v == goal:
            return True
        if v not in seen:
            seen.add(v)
            todo.extend(graph.get(v, ()))
    return False


def test_the_analysis_sees_the_package():
    graph = import_graph()
    assert {
        "symbp",
        "symbp.compiler.ir",
        "symbp.compiler.ops",
        "symbp.compiler.lower.emit",
        "symbp.nn.module",
    } <= set(graph)
    assert "symbp.compiler.ir" in graph["symbp.compiler.ops"]  # from symbp.compiler.ir import (...)
    assert "symbp.tensor" in graph["symbp.api"]
    assert "symbp.compiler.ops" in graph["symbp.tensor"]  # from symbp.compiler import ops
    assert graph["symbp.compiler.ir"] == set()  # the bottom: numpy and sympy only
    # the analysis finds a cycle where there is one
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_level_import_cycle():
    found = cycles(import_graph())
    assert found == [], "module-level import cycles (move the shared piece down): " + "; ".join(
        " <-> ".join(c) for c in found
    )


def test_imports_in_functions_close_no_cycle_but_the_known_call_time_ones():
    graph, deferred = import_graph(), import_graph(deferred=True)
    every = {m: graph[m] | deferred[m] for m in graph}
    gone = [e for e in CALL_TIME if e[1] not in deferred[e[0]] or not reaches(every, e[1], e[0])]
    assert gone == [], f"CALL_TIME lists imports that no longer close a cycle: {gone}"
    for importer, imported in CALL_TIME:
        every[importer].discard(imported)
    found = cycles(every)
    assert found == [], (
        "imports inside functions close these cycles (move the shared piece down, or list the "
        "upward import in CALL_TIME with why it is a call-time dependency): "
        + "; ".join(" <-> ".join(c) for c in found)
    )


# (importer, imported): a compiler module's import of a module above the compiler, and why
UPWARD = {
    ("symbp.compiler.ops", "symbp.distributed"): "psum's eager value is the sum over the ranks "
    "of the job that symbp.distributed runs over MPI (the identity in one process)",
    ("symbp.compiler.cache", "symbp.version"): "a cache key names the package's version "
    "(symbp.version: one constant, importing nothing)",
    ("symbp.compiler.lower.emit", "symbp.formulas.text"): "the kernels' comments are printed "
    "as the formulas print them (issue 15), when a program is written",
    ("symbp.compiler.lower.emit", "symbp.formulas.vocabulary"): "the comments' products and "
    "sums are the formulas' own symbols (Dot, SumOver, MaxOver)",
}


def test_the_compiler_imports_nothing_above_it():
    """Layers point one way: the tools use the front end, which uses the compiler
    (``symbp.compiler``). A compiler module importing the front end or a tool, at module level
    or in a function, is listed in UPWARD with why, so that a new one is a decision."""
    at_import, later = import_graph(), import_graph(deferred=True)
    upward = {
        (m, t)
        for m in MODULES
        if m.startswith("symbp.compiler")
        for t in at_import[m] | later[m]
        if t != "symbp.compiler" and not t.startswith("symbp.compiler.")
    }
    assert upward - set(UPWARD) == set(), "the compiler imports from above it"
    assert set(UPWARD) - upward == set(), "UPWARD lists imports that are gone"


# ---------------------------------------------------------------- one definition, no re-parsing


def test_trains_mode_bits_and_statuses_are_defined_once():
    """The names of ``train``'s mode bits and statuses are program.Mode's and program.Status's;
    the generated module's constants and the export driver's line are written from them, so no
    other file assigns them (a second list would drift from the first)."""
    import re

    from symbp.compiler.lower.program import CONSTANTS, Mode, Status

    for m in (*Mode, *Status):
        assert f"\n{m.name} = {m.value}\n" in CONSTANTS
    names = "|".join(m.name for m in (*Mode, *Status))
    assigned = re.compile(rf"^\s*(?:{names})(?:\s*,\s*(?:{names}))*\s*=", re.M)
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if assigned.search(path.read_text()) and path.name != "program.py"
    ]
    assert not offenders, f"mode bits or statuses assigned outside program.Mode/Status: {offenders}"


def test_export_takes_the_generated_module_apart_by_its_recorded_layout(tmp_path, monkeypatch):
    """export reads a generated module's pieces from its spec (``layout``, ``helpers``), never by
    parsing the generated text back: here parsing any generated module fails, and the export
    still writes a module that trains and predicts as the compiled model does."""
    import importlib.util

    import numpy as np

    import symbp
    from symbp import nn
    from symbp.export import export_model

    real_parse = ast.parse

    def parse(source, *args, **kwargs):
        if isinstance(source, str) and "Generated by symbp" in source:
            raise AssertionError("export parsed a generated module")
        if isinstance(source, str) and source.lstrip().startswith(("def train(", "def predict(")):
            raise AssertionError("export parsed a piece of a generated module")
        return real_parse(source, *args, **kwargs)

    symbp.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((12, 4)).astype(np.float32), rng.integers(0, 3, size=12)
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
    model.build(x, y)
    layout = model._train.spec["layout"]
    assert [n for kind, n, *_ in layout if kind == "def"][-1] == "train"
    monkeypatch.setattr(ast, "parse", parse)
    path, _ = export_model(model, tmp_path / "exported_mlp.py")
    monkeypatch.setattr(ast, "parse", real_parse)
    spec = importlib.util.spec_from_file_location("exported_mlp", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    np.testing.assert_allclose(mod.predict(x), model.predict(x), rtol=1e-6)
    assert mod.train_step(x, y) == pytest.approx(model.step(x, y), rel=1e-6)


def test_the_lowering_parses_no_printed_code_back(tmp_path, monkeypatch):
    """The lowering computes sizes from shapes, not by parsing the code it printed back into
    SymPy (which cost a third of each lowering, and the lowering runs twice: ``_reserving``)."""
    import numpy as np
    import sympy.parsing.sympy_parser as parser

    import symbp
    from symbp import nn

    def parse_expr(*args, **kwargs):
        raise AssertionError(f"the lowering parsed {args[0]!r} back")

    monkeypatch.setenv("SYMBP_CACHE_DIR", str(tmp_path))  # an empty cache: it lowers
    monkeypatch.setattr(parser, "parse_expr", parse_expr)
    symbp.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(64, 10))  # fmt: skip
    x = np.zeros((16, 1, 8, 8), np.float32)
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
    built = model.build(x, np.zeros(16, np.int64))
    assert not built._train.program.hit and "def train(" in built.source
