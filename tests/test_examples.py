"""Every example script runs, as users run it (``python examples/NAME.py``), in the reduced
mode CI uses (``SYMBP_EXAMPLE_QUICK=1``), and checks its own numbers (exit code 0).

The tutorials' step-by-step scripts are run in-process, with their numbers, by
tests/test_tutorials.py; they are not run twice.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
IN_TEST_TUTORIALS = {
    "two_two_two.py",
    "linear_regression.py",
    "activation_gradients.py",
    "custom_op.py",
    "mlp_10_5_1.py",
}
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if p.name not in IN_TEST_TUTORIALS)


def needs_torch(script: str) -> bool:
    """A script that imports torch without a fallback (none do yet: they compare when present)."""
    text = (EXAMPLES / script).read_text()
    return "import torch" in text and "except ImportError" not in text


def test_the_tutorial_scripts_are_still_run_elsewhere():
    text = (ROOT / "tests" / "test_tutorials.py").read_text()
    assert all(f'"{name}"' in text for name in IN_TEST_TUTORIALS)


@pytest.mark.slow  # each a subprocess that compiles its programs
@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs_in_quick_mode(script, tmp_path):
    if needs_torch(script) and importlib.util.find_spec("torch") is None:
        pytest.skip("needs PyTorch")
    env = {**os.environ, "SYMBP_EXAMPLE_QUICK": "1", "MPLBACKEND": "Agg"}
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # scripts that save pictures write them here
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, f"{script} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    assert "Traceback" not in out.stderr
