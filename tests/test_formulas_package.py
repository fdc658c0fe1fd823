"""symbp.formulas is a package of modules that each do one job (issue 15): every module says
its job, stays small, and imports only modules below it, so the import graph has no cycle."""

import ast
import pathlib

import symbp  # noqa: F401  (symbp.formulas imports through symbp)

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "symbp" / "formulas"


def _imports(path: pathlib.Path) -> set[str]:
    """The package's own modules that ``path`` imports."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("symbp.formulas."):
                out.add(node.module.split(".")[2])
            elif node.module == "symbp.formulas":
                out.update(a.name for a in node.names)
    return out


def test_every_module_says_its_job_and_stays_small():
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f"{path.name} has no module docstring"
        assert len(path.read_text().splitlines()) < 500, f"{path.name} has grown past 500 lines"


def test_the_modules_import_one_way():
    graph = {p.stem: _imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert all(dep in graph for deps in graph.values() for dep in deps), graph
    done: set[str] = set()

    def visit(mod: str, path: tuple[str, ...]) -> None:
        assert mod not in path, f"import cycle: {' -> '.join((*path, mod))}"
        if mod not in done:
            for dep in graph[mod]:
                visit(dep, (*path, mod))
            done.add(mod)

    for mod in graph:
        visit(mod, ())


def test_the_names_imported_from_symbp_formulas_still_resolve():
    import sys

    f = sys.modules["symbp.formulas"]
    names = [
        "Equation", "Formulas", "ScalarGradient", "ScalarGradients", "formulas",  # __all__
        "PRINTING", "Printing", "_ScalarLevel", "_express", "Cat", "Crop", "Flip",
        "TextPrinter", "LatexPrinter", "to_text", "to_latex", "printing",
    ]  # fmt: skip
    missing = [n for n in names if not hasattr(f, n)]
    assert not missing, missing
    from symbp.compiler.ops import OPS

    missing_rows = set(OPS) - set(f.PRINTING)  # filled by symbp.formulas.table on import
    assert not missing_rows, missing_rows
