"""``symbp demo`` times compiling and training apart: cold (an empty cache) every program is
derived and compiled before the training clock starts, warm every one is found in the cache;
the training time is the same either way, with no compile inside it."""

import os
import re
import subprocess
import sys

import pytest

PROGRAM = re.compile(
    r"^  (training|inference) program: traced, (found in the cache|derived and generated) "
    r"([\d.]+) s; machine code (compiled by Numba|loaded from Numba's cache|already loaded in "
    r"this process) ([\d.]+) s$"
)
COMPILE = re.compile(
    r"^compile ([\d.]+) s: (\d) of 2 programs found in the cache, (\d) derived and generated$"
)
TRAIN = re.compile(
    r"^training ([\d.]+) s \(([\d.]+) ms per epoch of 1438 samples, validation on 359 after "
    r"each; no compiling\)$"
)


def demo_lines(cache: str) -> dict:
    env = {**os.environ, "SYMBP_CACHE_DIR": cache}
    out = subprocess.run(
        [sys.executable, "-c", "from symbp import demo; demo.train_digits(2, quiet=True)"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=os.getcwd(),
    ).stdout.splitlines()
    assert out[0] == "compiling (before the training clock):"
    programs = [PROGRAM.match(line) for line in out[1:3]]
    assert all(programs), out
    assert [m.group(1) for m in programs] == ["training", "inference"]
    compiled, trained = COMPILE.match(out[3]), TRAIN.match(out[5])
    assert compiled and trained and out[4].startswith("test accuracy "), out
    build = [float(m.group(3)) for m in programs]
    machine = [float(m.group(5)) for m in programs]
    # the compile line is the programs' times together (and nothing of training)
    assert float(compiled.group(1)) == pytest.approx(sum(build) + sum(machine), abs=0.05)
    train_s = float(trained.group(1))
    # per epoch: the printed total (rounded to 10 ms) over 2 epochs, to rounding
    assert float(trained.group(2)) == pytest.approx(train_s * 1e3 / 2, abs=2.51)
    return {
        "found": [m.group(2) for m in programs],
        "numba": [m.group(4) for m in programs],
        "n_found": int(compiled.group(2)),
        "machine": machine,
        "train_s": train_s,
        "accuracy": out[4],
    }


@pytest.mark.slow
def test_cold_and_warm_report_what_was_compiled(tmp_path):
    cold = demo_lines(str(tmp_path / "cache"))
    assert cold["found"] == ["derived and generated"] * 2 and cold["n_found"] == 0
    assert cold["numba"] == ["compiled by Numba"] * 2
    warm = demo_lines(str(tmp_path / "cache"))
    assert warm["found"] == ["found in the cache"] * 2 and warm["n_found"] == 2
    assert warm["numba"] == ["loaded from Numba's cache"] * 2
    # the old demo counted the validation (inference) program's compile, made during the
    # first epoch, as training: now training, cold, takes less than that compile alone
    assert cold["train_s"] < cold["machine"][1]
    assert warm["machine"][0] < cold["machine"][0]  # loading machine code beats compiling it
    assert cold["accuracy"] == warm["accuracy"]  # the same training, whatever the cache held
