"""The package's docstring examples run, and print what they say: every module of ``symbp``
that has ``>>>`` examples is one test (``-k symbp.compiled``). An example that is not meant to
run here says so with ``# doctest: +SKIP``."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import symbp


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


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()  # no option flags: as `python -m doctest` runs them
    report = []
    for test in finder.find(module):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
