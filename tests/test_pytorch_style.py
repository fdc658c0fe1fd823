"""The PyTorch programs of examples/pytorch_style/ print PyTorch's numbers under symbp.

Each program is plain PyTorch code (``import torch``, ``from torch import nn, optim``, ...).
tests/pytorch_style_runner.py runs all of them in one interpreter with real PyTorch, and all
of them again in a second one where ``torch`` and its submodules are symbp's modules; this
test compares what the two printed, line by line: every number within the program's
tolerance, and the text around the numbers equal.

Random streams differ between the libraries (symbp does not reproduce PyTorch's bit stream),
so the programs take their data and initial weights from seeded NumPy generators.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = ROOT / "examples" / "pytorch_style"
RUNNER = ROOT / "tests" / "pytorch_style_runner.py"

# program -> relative tolerance of its numbers (float64 programs tight, float32 ones at
# float32's precision grown over their training steps)
ACTIVE = {
    "02_autograd_basics.py": 1e-5,
    "04_linear_regression_optim.py": 1e-5,
    "05_sequential_adam.py": 1e-4,
    "06_custom_module.py": 1e-4,
    "10_save_load.py": 1e-5,
    "11_lr_schedulers.py": 1e-5,
    "14_tutorial_linear_regression.py": 1e-5,
    "16_tutorial_mlp_10_5_1.py": 1e-9,
    "03_polynomial_manual.py": 1e-5,
    "07_dataloader_classifier.py": 1e-5,
    "08_functional_from_scratch.py": 1e-5,
    "09_cnn_training.py": 1e-5,
    "12_custom_dataset.py": 1e-5,
    "18_device_and_init.py": 1e-5,
    "01_tensors.py": 1e-5,
    "19_losses_and_functional.py": 1e-9,
    "15_tutorial_activation_gradients.py": 1e-5,
    "17_tutorial_custom_relu.py": 1e-5,
    "13_tutorial_222_network.py": 1e-5,
    "20_batchnorm_dropout_modes.py": 1e-5,
    "21_layers_inplace.py": 1e-4,
}
# Programs that stop under symbp on a feature another branch of issue 12/13 is adding; the
# lead moves each to ACTIVE (with its tolerance) once that branch is merged.
WAITING: dict[str, str] = {}

# a number not glued to a name (the 64 of float64 and the 1 of linear1 are text)
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w])")


def test_every_program_is_listed():
    on_disk = {p.name for p in PROGRAMS.glob("*.py")}
    assert on_disk == set(ACTIVE) | set(WAITING)
    assert not set(ACTIVE) & set(WAITING)
    assert len(on_disk) >= 12


def split_numbers(line: str) -> tuple[str, list[str]]:
    """The line's text with each number replaced by '#' and without spaces (symbp pads the
    columns of a printed tensor as NumPy does, PyTorch with its own widths), and the numbers
    as printed."""
    numbers = NUMBER.findall(line)
    return "".join(NUMBER.sub("#", line).split()), numbers


def normalize_text(text: str) -> str:
    """symbp's module name where PyTorch prints its own (symbp.float32 for torch.float32)."""
    return text.replace("symbp.", "torch.")


def last_place(printed: str) -> float:
    """One unit in the last printed digit (0.0001 for '0.1235'), 0 for exact forms."""
    mantissa, _, exponent = printed.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (-decimals + (int(exponent) if exponent else 0)) if decimals else 0.0


def compare(program: str, expected: str, got: str, rtol: float) -> list[str]:
    """Differences between PyTorch's printout and symbp's, one message each."""
    problems = []
    want_lines, got_lines = expected.splitlines(), got.splitlines()
    if len(want_lines) != len(got_lines):
        problems.append(f"{len(want_lines)} lines from PyTorch, {len(got_lines)} from symbp")
    for i, (want, have) in enumerate(zip(want_lines, got_lines), 1):
        want_text, want_numbers = split_numbers(want)
        have_text, have_numbers = split_numbers(normalize_text(have))
        if want_text != have_text or len(want_numbers) != len(have_numbers):
            problems.append(f"line {i}: PyTorch {want!r}, symbp {have!r}")
            continue
        for a, b in zip(want_numbers, have_numbers):
            x, y = float(a), float(b)
            # printed values may round apart by one unit of their last digit
            tol = rtol * max(abs(x), abs(y)) + max(last_place(a), last_place(b)) + 1e-30
            if not math.isclose(x, y, rel_tol=0.0, abs_tol=tol):
                problems.append(f"line {i}: PyTorch {a}, symbp {b} (in {want!r} / {have!r})")
    return [f"{program}: {p}" for p in problems]


def run_all(library: str, programs: list[str], tmp_path: Path) -> dict[str, dict]:
    out = tmp_path / f"{library}.json"
    workdir = tmp_path / library  # programs that save files write them here
    workdir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, str(RUNNER), library, str(out), *(str(PROGRAMS / p) for p in programs)],
        capture_output=True,
        text=True,
        cwd=workdir,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, f"the {library} runner failed:\n{done.stderr[-3000:]}"
    return {Path(k).name: v for k, v in json.loads(out.read_text()).items()}


@pytest.fixture(scope="module")
def printouts(tmp_path_factory):
    if importlib.util.find_spec("torch") is None:
        pytest.skip("needs PyTorch as the reference")
    tmp = tmp_path_factory.mktemp("pytorch_style")
    programs = sorted({*ACTIVE, *WAITING})
    return run_all("torch", programs, tmp), run_all("symbp", programs, tmp)


def check_program(printouts, program: str, rtol: float) -> None:
    by_torch, by_symbp = printouts
    assert by_torch[program]["error"] is None, by_torch[program]["error"]
    assert by_symbp[program]["error"] is None, (
        f"{program} stopped under symbp:\n{by_symbp[program]['error']}"
    )
    assert by_torch[program]["stdout"].strip(), f"{program} printed nothing"
    problems = compare(program, by_torch[program]["stdout"], by_symbp[program]["stdout"], rtol)
    assert not problems, "\n".join(problems[:20])


@pytest.mark.slow  # two interpreters, each running every program
@pytest.mark.parametrize("program", sorted(ACTIVE))
def test_program_prints_pytorchs_numbers(printouts, program):
    check_program(printouts, program, ACTIVE[program])


@pytest.mark.slow
@pytest.mark.parametrize("program", sorted(WAITING))
def test_waiting_program_is_pytorch_and_waits_on_its_feature(printouts, program):
    """Each waiting program runs under PyTorch; under symbp it is expected to fail until its
    feature is merged (a pass here says: move it to ACTIVE, with its tolerance)."""
    by_torch, _ = printouts
    assert by_torch[program]["error"] is None, by_torch[program]["error"]
    try:
        check_program(printouts, program, 1e-5)
    except AssertionError as exc:
        pytest.xfail(f"waits on {WAITING[program]}: {str(exc).splitlines()[0][:300]}")


def test_compare_sees_a_wrong_number_and_forgives_the_last_digit():
    assert compare("p", "loss 0.1235\n", "loss 0.1234\n", 1e-5) == []
    assert compare("p", "loss 0.1235\n", "loss 0.1240\n", 1e-5) != []
    assert compare("p", "torch.float32 1.5e-03\n", "symbp.float32 1.5e-03\n", 1e-9) == []
    assert compare("p", "tensor([1., 2.])\n", "tensor([1., 3.])\n", 1e-5) != []
    assert compare("p", "linear1 2\n", "linear2 2\n", 1e-5) != []


def test_shapes_print_as_pytorchs_under_symbps_name():
    import symbp

    x = symbp.zeros(1, 3)
    printed = f"{x.shape} {x.sum().shape}\n"
    assert compare("p", "torch.Size([1, 3]) torch.Size([])\n", printed, 0) == []


def test_flatten_prints_its_dims_as_pytorch():
    from symbp import nn

    assert repr(nn.Flatten(0, 1)) == "Flatten(start_dim=0, end_dim=1)"
    assert repr(nn.Sequential(nn.Flatten())) == (
        "Sequential(\n  (0): Flatten(start_dim=1, end_dim=-1)\n)"
    )
