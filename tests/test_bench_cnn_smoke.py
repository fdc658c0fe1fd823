"""Smoke test of benchmarks/bench_cnn.py: one short run of both CNN workloads prints its table,
with symbp's and PyTorch's first losses agreeing from the same initial weights.

Tests never assert timings (the host is shared and noisy); this checks that the benchmark runs
(it once stopped at symbp's no-grad check on ``copy_``, unnoticed) and that its two
contenders train the same model.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # two CNN programs compiled in subprocesses

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cnn.py"


def test_both_workloads_run_and_agree_with_torch(tmp_path):
    pytest.importorskip("torch")
    env = {**os.environ, "SYMBP_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--processes", "1", "--rounds", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    out = proc.stdout
    for workload in ("W4", "digits"):
        assert re.search(rf"^{workload}\s+symbp\s+[\d.]+ ms/", out, re.M), out
        assert re.search(rf"^{workload}\s+torch\s+[\d.]+ ms/", out, re.M), out
        assert re.search(rf"^{workload}\s+PyTorch / symbp: [\d.]+x", out, re.M), out
    agree = re.search(r"^W4\s+losses after 1-3 steps agree: (\w+) \((.*)\)$", out, re.M)
    assert agree, out
    assert agree.group(1) == "True", agree.group(2)
    assert "load average" in out
