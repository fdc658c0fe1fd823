"""Smoke test of benchmarks/bench_tensor_language.py: a tiny --quick run prints its table.

Only the shape of the output and the agreement of the losses are checked: tests never assert
timings (the host is shared and noisy).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a benchmark run in subprocesses, compiling from empty

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench_tensor_language.py"


def test_quick_run_prints_the_table(tmp_path):
    pytest.importorskip("torch")
    args = ["--quick", "--processes", "1", "--rounds", "2", "--steps", "2"]
    # A private symbp cache, and this checkout's symbp first on the workers' path.
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "SYMBP_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": path}
    proc = subprocess.run(
        [sys.executable, str(BENCH), *args], env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    out = proc.stdout
    assert out.startswith("cpu ") and "load average" in out
    assert "bag  symbp" in out and "bag  torch" in out and "ms/step" in out and "IQR" in out
    assert "PyTorch / symbp:" in out and "target >= 3.0x" in out
    assert "warm-up steps agree: True" in out
