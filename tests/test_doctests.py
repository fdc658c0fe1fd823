"""The package's docstring examples run, and print what they say: every module of ``symbp``
that has ``>>>`` examples is one test (``-k symbp.compiled``). An example that is not meant to
run here says so with ``# doctest: +SKIP``."""

from __future__ import annotations

import contextlib
import doctest
import importlib
import pkgutil

import pytest

import symbp
from symbp import api
from symbp.compiler import ops


def _modules() -> list[str]:
    names = ["symbp"]
    for info in pkgutil.walk_packages(symbp.__path__, "symbp."):
        names.append(info.name)
    return sorted(names)


def _with_examples(name: str) -> bool:
    tests = doctest.DocTestFinder().find(importlib.import_module(name))
    return any(t.examples for t in tests)


MODULES = [name for name in _modules() if _with_examples(name)]


def test_the_package_has_examples():
    # a guard for the discovery above: these modules document themselves with examples
    for name in ("symbp", "symbp.compiled", "symbp.check", "symbp.formulas"):
        assert name in MODULES


@contextlib.contextmanager
def _restored_registries():
    """An example may register an op (``symbp.elementwise("swish", ...)``): the op tables are
    global, and a test module's own "swish" would then run the example's formula, whose
    globals doctest clears (NameError: sympy). Examples leave the tables as they found them."""
    saved = dict(ops.ELEMENTWISE), set(api._CUSTOM)
    try:
        yield
    finally:
        ops.ELEMENTWISE.clear()
        ops.ELEMENTWISE.update(saved[0])
        api._CUSTOM.clear()
        api._CUSTOM.update(saved[1])


def _run_examples(name: str) -> tuple[int, str]:
    """(failures, report) of the examples of module ``name``."""
    runner = doctest.DocTestRunner()  # no option flags: as `python -m doctest` runs them
    report: list[str] = []
    with _restored_registries():
        for test in doctest.DocTestFinder().find(importlib.import_module(name)):
            runner.run(test, out=report.append)
    return runner.failures, "".join(report)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    failures, report = _run_examples(name)
    assert failures == 0, report


def test_examples_leave_the_op_tables_as_they_were():
    before = dict(ops.ELEMENTWISE), set(api._CUSTOM)
    assert _run_examples("symbp.api")[0] == 0  # its example registers "swish"
    assert (dict(ops.ELEMENTWISE), set(api._CUSTOM)) == before
