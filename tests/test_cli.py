"""The command line, run as users run it: a subprocess, its output and its exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "examples" / "model_222.py")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "symbp.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def test_help_lists_every_command():
    out = run("--help")
    assert out.returncode == 0
    for command in ("demo", "formulas", "check", "show", "cache"):
        assert command in out.stdout
    for command in ("formulas", "check", "show"):
        sub = run(command, "--help")
        assert sub.returncode == 0 and "MODEL" in sub.stdout.upper()


def test_show_ir_lists_the_forward_graph():
    out = run("show", MODEL, "--stage", "ir")
    assert out.returncode == 0, out.stderr
    # two matmuls, one per Linear, and the input/parameter leaves by their model names
    assert out.stdout.count("= matmul") == 2
    assert "linear1.weight" in out.stdout and "linear2.bias" in out.stdout


def test_show_backward_lists_the_gradients():
    out = run("show", MODEL, "--stage", "backward")
    assert out.returncode == 0, out.stderr
    for name in ("linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias"):
        assert f"grad_{name}" in out.stdout


def test_formulas_scalar_w5_prints_its_value():
    out = run("formulas", MODEL, "--scalar", "--param", "w5")
    assert out.returncode == 0, out.stderr
    assert "w5" in out.stdout or "w_5" in out.stdout


def test_check_passes_on_the_tutorial_network():
    out = run("check", MODEL)
    assert out.returncode == 0, out.stdout + out.stderr
    for name in ("linear1.weight", "linear2.bias"):
        assert name in out.stdout


def test_bad_model_path_is_one_clear_line():
    out = run("check", "no/such/model.py")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "no/such/model.py" in lines[0]


def test_shape_error_names_the_layer_in_one_line():
    out = run("check", str(ROOT / "examples" / "model_shape_error.py"))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert "Linear '2'" in line and "expects 3 input features" in line and "[5,4]" in line


def test_debug_shows_the_traceback():
    out = run("--debug", "check", "no/such/model.py")
    assert out.returncode != 0 and "Traceback" in out.stderr


@pytest.mark.parametrize("module", ["examples.model_222"])
def test_module_attr_spec_loads(module, monkeypatch):
    from symbp.cli import load_model

    monkeypatch.syspath_prepend(str(ROOT))
    ns = load_model(module)
    assert ns.model is not None and ns.loss_fn is not None
    np.testing.assert_allclose(ns.sample[0], [[0.05, 0.10]], rtol=0, atol=1e-7)
