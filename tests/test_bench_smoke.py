"""Smoke test of benchmarks/bench.py: a tiny --quick run prints its table and writes valid JSON.

It checks the shape of the output only: tests never assert timings (the host is shared and
noisy; the numbers are the benchmark's business).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a benchmark run in a subprocess, compiling from empty

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "out.json"
    # A step workload, an epoch workload and the compile measurement, with the one peer that
    # needs no optional package (torch and jax would add ~20 s of imports and JIT here).
    args = ["--quick", "--workloads", "W1,W2,compile", "--peers", "symbp,numba_hand"]
    args += ["--repeats", "2", "--call-ms", "2", "--gap-ms", "20", "--json", str(out)]
    # A private symbp cache: the run compiles its programs as on a fresh machine and leaves the
    # user's cache alone.
    env = {**os.environ, "SYMBP_CACHE_DIR": str(tmp / "cache")}
    proc = subprocess.run(
        [sys.executable, str(BENCH), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    return proc.stdout, json.loads(out.read_text())


def test_prints_the_table(quick_run):
    stdout, _ = quick_run
    assert "W1  2-2-2 sigmoid" in stdout
    assert "W2  64-128-10 relu" in stdout
    assert "median" in stdout and "IQR" in stdout and "vs torch" in stdout
    assert "reference" in stdout  # the agreement column names the reference row
    for row in ("symbp_fit", "symbp_step", "numba_hand"):
        assert row in stdout
    assert "compile  W2" in stdout
    assert "targets (issue 3)" in stdout
    assert "load average" in stdout


def test_json_is_complete(quick_run):
    _, results = quick_run
    assert results["meta"]["quick"] is True
    assert len(results["meta"]["load_start"]) == 3
    assert set(results["workloads"]) == {"W1", "W2"}
    for name, res in results["workloads"].items():
        rows = res["rows"]
        assert len(res["rounds"]["used"]) >= 2 and len(res["rounds"]["other_cpu_share"]) >= 2
        assert {"symbp_fit", "symbp_step", "numba_hand"} <= set(rows), name
        for row_name, row in rows.items():
            assert row["median_s"] > 0 and row["min_s"] <= row["median_s"] <= row["max_s"]
            assert row["q1_s"] <= row["median_s"] <= row["q3_s"]
            assert len(row["times_s"]) >= 2 and row["units_per_call"] >= 1  # reruns: more
            assert row["agree"]["ok"], (name, row_name, row["agree"])
    for row in results["workloads"]["W2"]["rows"].values():
        assert 0.0 <= row["train_accuracy"] <= 1.0
    comp = results["compile"]
    assert comp["cold"]["first_step_s"] > 0 and comp["warm"]["first_step_s"] > 0
    assert comp["warm"]["runs"][0]["symbp_timings"]["cache_hit"] == 1.0  # the warm run hit
    assert comp["cold"]["runs"][0]["symbp_timings"]["cache_hit"] == 0.0
    assert all(t["met"] in (True, False, None) for t in results["targets"])
