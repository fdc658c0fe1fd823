"""CI itself: ``.ci/run`` runs the README's commands verbatim in a new venv with PyTorch, and under
its ``SYMBP_REQUIRE_TORCH=1`` a PyTorch comparison that would skip fails instead (the conftest's
hooks, run here on a throwaway test directory in a subprocess)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_readme import COMMANDS

import symbp

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / ".ci" / "run"


def test_ci_runs_the_readme_commands_in_a_new_venv_with_torch():
    lines = [line.strip() for line in CI.read_text().splitlines()]
    for command in COMMANDS:
        assert command in lines, f".ci/run does not run the README's {command!r} verbatim"
    assert "pip install torch==2.13.0" in lines  # the one spelling that gets the CPU build here
    assert "export SYMBP_REQUIRE_TORCH=1" in lines
    assert any(line.startswith("python3 -m venv ") for line in lines)
    # the venv is made before anything is installed, and torch before the test command
    order = [lines.index(x) for x in ("pip install torch==2.13.0", COMMANDS[1])]
    assert next(i for i, x in enumerate(lines) if x.startswith("python3 -m venv ")) < order[0]
    assert order == sorted(order)


# without torch importable: `sys.modules["torch"] = None` makes `import torch` raise ImportError
TESTS = {
    "test_in_a_test.py": """
import sys
import pytest
sys.modules["torch"] = None
def test_compare():
    pytest.importorskip("torch")
def test_other_skips_stay_skips():
    pytest.importorskip("no_such_module_here")
""",
    "test_at_module_level.py": """
import sys
import pytest
sys.modules["torch"] = None
torch = pytest.importorskip("torch")
def test_compare():
    pass
""",
    "test_by_hand.py": """
import pytest
def test_compare():
    pytest.skip("needs PyTorch")
""",
}


def _pytest(tmp_path, require: bool, block_torch: bool = False) -> subprocess.CompletedProcess:
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    for name, text in TESTS.items():
        (tmp_path / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "SYMBP_REQUIRE_TORCH"}
    env["PYTHONPATH"] = str(ROOT)  # the conftest imports symbp
    if require:
        env["SYMBP_REQUIRE_TORCH"] = "1"
    block = "sys.modules['torch'] = None; " if block_torch else ""
    code = f"import sys; {block}import pytest; sys.exit(pytest.main(['-p', 'no:cacheprovider']))"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


@pytest.mark.slow  # a pytest subprocess importing symbp
def test_torch_skips_are_skips_by_default(tmp_path):
    out = _pytest(tmp_path, require=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 skipped" in out.stdout and "failed" not in out.stdout, out.stdout


@pytest.mark.slow  # a pytest subprocess importing symbp
def test_torch_skips_fail_under_require_torch(tmp_path):
    pytest.importorskip("torch")  # else the configure check below stops the run first
    out = _pytest(tmp_path, require=True)
    assert out.returncode == 1, out.stdout + out.stderr
    # the two tests fail; the module's skip (reported at the end) and the other one stay skips
    assert "2 failed, 2 skipped" in out.stdout, out.stdout
    assert "PyTorch comparisons skipped: 3" in out.stdout, out.stdout
    for name in TESTS:
        assert f"SKIPPED PyTorch comparison (a failure here): {name}" in out.stdout, out.stdout
    assert "no_such_module_here" not in out.stdout, out.stdout


@pytest.mark.slow  # a pytest subprocess importing symbp
def test_require_torch_without_torch_stops_before_any_test(tmp_path):
    out = _pytest(tmp_path, require=True, block_torch=True)
    assert out.returncode == pytest.ExitCode.USAGE_ERROR, out.stdout + out.stderr
    assert "pip install torch==2.13.0" in out.stderr, out.stderr


# ---------------------------------------------------------------- one program cache per session

_first_build: list[float] = []


def _tiny_model():
    from symbp import nn

    symbp.manual_seed(0)
    net = nn.Linear(3, 1, dtype=np.float64)
    model = symbp.compile(net, nn.MSELoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
    model.step(np.ones((4, 3)), np.zeros((4, 1)))
    return model


def test_one_test_compiles_a_program():
    _first_build.append(_tiny_model().timings["cache_hit"])


def test_the_next_test_loads_it_from_the_session_cache():
    if not _first_build:
        pytest.skip("run with the test before it")
    assert _tiny_model().timings["cache_hit"] == 1.0  # not compiled again
    assert os.environ["SYMBP_CACHE_DIR"] == str(symbp.compiler.cache.cache_dir())
