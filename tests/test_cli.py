"""The command line, run as users run it: a subprocess, its output and its exit code."""

from __future__ import annotations

import json
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


# Each new interpreter pays for importing symbp, Numba and SymPy (2-2.5 s of CPU): the quick
# commands below run in ONE subprocess, ``symbp.cli.main`` called once per command line with
# its own stdout and stderr, its exit code as the interpreter would give it (SystemExit's, or
# 1 and the traceback for an exception that escapes, as with --debug). Tests get their
# command's result from ``cli``; ``run`` still starts ``python -m symbp.cli`` itself (the
# first test below and the slow ones), so the real entry point stays tested.
DRIVER = """
import contextlib, io, json, sys, traceback
from symbp.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
    results.append([code, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


def run_many(commands: dict[str, list[str]]) -> dict[str, subprocess.CompletedProcess]:
    """Run each command line through ``symbp.cli.main`` in one subprocess: name -> result."""
    argvs = list(commands.values())
    p = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(argvs)], capture_output=True,
                       text=True, cwd=ROOT, timeout=600)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    results = json.loads(p.stdout.splitlines()[-1])
    return {
        name: subprocess.CompletedProcess(argv, code, out, err)
        for (name, argv), (code, out, err) in zip(commands.items(), results)
    }


@pytest.fixture(scope="module")
def cli() -> dict[str, subprocess.CompletedProcess]:
    return run_many(QUICK)


@pytest.mark.slow
def test_help_lists_every_command():
    out = run("--help")
    assert out.returncode == 0
    for command in ("demo", "formulas", "check", "show", "train", "export", "bench", "cache"):
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


def test_show_backward_lists_the_gradients(cli):
    out = cli["show backward"]
    assert out.returncode == 0, out.stderr
    for name in ("linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias"):
        assert f"grad_{name}" in out.stdout


def test_formulas_scalar_w5_prints_its_value(cli):
    out = cli["formulas w5"]
    assert out.returncode == 0, out.stderr
    assert "w5" in out.stdout or "w_5" in out.stdout


@pytest.mark.parametrize("options", [[], ["--scalar", "--param", "w5"]], ids=["deltas", "w5"])
@pytest.mark.slow
def test_formulas_png_renders_a_picture(tmp_path, options):
    pytest.importorskip("matplotlib")
    png = tmp_path / "formulas.png"
    out = run("formulas", MODEL, *options, "--png", str(png))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"formulas rendered to {png}"
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 100 and height > 20  # the IHDR chunk: a picture of some text, not a dot


def test_formulas_png_without_matplotlib_is_one_line(tmp_path):
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from symbp.cli import main\n"
        f"sys.exit(main(['formulas', {MODEL!r}, '--png', {str(tmp_path / 'f.png')!r}]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)  # fmt: skip
    assert out.returncode == 2 and "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert "plotting needs matplotlib" in line and "pip install" in line
    assert not (tmp_path / "f.png").exists()


def test_check_passes_on_the_tutorial_network(cli):
    out = cli["check"]
    assert out.returncode == 0, out.stdout + out.stderr
    for name in ("linear1.weight", "linear2.bias"):
        assert name in out.stdout


def test_bad_model_path_is_one_clear_line(cli):
    out = cli["check missing"]
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "no/such/model.py" in lines[0]


def test_shape_error_names_the_layer_in_one_line(cli):
    out = cli["check shape error"]
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert "Linear '2'" in line and "expects 3 input features" in line and "[5,4]" in line


def test_debug_shows_the_traceback(cli):
    out = cli["debug"]
    assert out.returncode != 0 and "Traceback" in out.stderr


@pytest.mark.parametrize("module", ["examples.model_222"])
def test_module_attr_spec_loads(module, monkeypatch):
    from symbp.cli import load_model

    monkeypatch.syspath_prepend(str(ROOT))
    ns = load_model(module)
    assert ns.model is not None and ns.loss_fn is not None
    np.testing.assert_allclose(ns.sample[0], [[0.05, 0.10]], rtol=0, atol=1e-7)


# ---------------------------------------------------------------- train, bench, show kernels

DIGITS = str(ROOT / "examples" / "model_digits.py")
TRAIN_ERRORS = [
    (["train", MODEL], "defines no data"),
    (["train", DIGITS, "--optimizer", "nope"], "unknown optimizer 'nope'"),
    (["train", "no/such/model.py"], "no/such/model.py"),
]
HELP = ["train", "bench", "show", "export"]
QUICK: dict[str, list[str]] = {  # the commands ``cli`` runs, by the name the tests use
    "show backward": ["show", MODEL, "--stage", "backward"],
    "formulas w5": ["formulas", MODEL, "--scalar", "--param", "w5"],
    "check": ["check", MODEL],
    "check missing": ["check", "no/such/model.py"],
    "check shape error": ["check", str(ROOT / "examples" / "model_shape_error.py")],
    "debug": ["--debug", "check", "no/such/model.py"],
    **{f"{c} --help": [c, "--help"] for c in HELP},
    **{" ".join(args): args for args, _ in TRAIN_ERRORS},
}


@pytest.mark.parametrize("command", HELP)
def test_new_commands_have_help(command, cli):
    out = cli[f"{command} --help"]
    assert out.returncode == 0 and "usage: symbp " + command in out.stdout


@pytest.mark.slow
def test_train_prints_epochs_and_final_metrics(tmp_path):
    ckpt = tmp_path / "digits.npz"
    out = run("train", DIGITS, "--epochs", "3", "--batch-size", "64", "--optimizer", "adam",
              "--lr", "0.01", "--checkpoint", str(ckpt))  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [e.split(":")[0] for e in epochs] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert "lr=0.01" in epochs[0] and "val_accuracy=" in epochs[0]
    final = next(line for line in lines if line.startswith("Adam, 3 epochs"))
    acc = float(final.rsplit("accuracy ", 1)[1].rstrip("%")) / 100
    assert acc > 0.85  # the digits MLP learns quickly with Adam at 0.01
    from symbp.checkpoint import load_checkpoint

    assert load_checkpoint(ckpt).epoch == 3


@pytest.mark.slow
def test_train_quiet_prints_only_the_result():
    out = run("train", DIGITS, "--epochs", "1", "--quiet", "--optimizer", "sgd", "--lr", "0.1")
    assert out.returncode == 0, out.stderr
    (line,) = out.stdout.strip().splitlines()
    assert line.startswith("SGD, 1 epochs") and "validation loss" in line


@pytest.mark.slow
def test_train_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    out = run("train", DIGITS, "--epochs", "2", "--quiet", "--plot", str(png))
    assert out.returncode == 0, out.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, message", TRAIN_ERRORS)
def test_train_errors_are_one_line(args, message, cli):
    out = cli[" ".join(args)]
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert message in line and "Traceback" not in out.stderr


@pytest.mark.slow
def test_show_kernels_lists_the_schedule():
    out = run("show", MODEL, "--stage", "kernels")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[1].startswith("11 kernels")
    sections = [line for line in lines if line and not line.startswith(" ")][2:]
    assert sections == ["forward", "backward", "optimizer update"]
    numbered = [line.split()[0] for line in lines if line.startswith("  ")]
    assert numbered.count("+") == 2  # one fused loop, one update
    assert [int(n) for n in numbered if n != "+"] == list(range(1, 12))
    assert any("h:f32[B,2] = σ(linear1_bias + x_W1)" in line for line in lines)  # formulas names


@pytest.mark.slow
def test_bench_runs_the_quick_benchmark_or_says_why(tmp_path):
    # options after the command go to bench.py; the smallest run (bench.py's own smoke test,
    # tests/test_bench_smoke.py, checks its table)
    out = run("bench", "--workloads", "W1", "--peers", "symbp", "--repeats", "1",
              "--call-ms", "1", "--gap-ms", "0", "--json", str(tmp_path / "b.json"))  # fmt: skip
    if (ROOT / "benchmarks" / "bench.py").is_file():
        assert out.returncode == 0, out.stderr[-3000:]
        assert "W1" in out.stdout and (tmp_path / "b.json").is_file()
    else:
        assert out.returncode == 1 and "source checkout" in out.stderr
