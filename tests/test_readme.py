"""The README's quick start, as a new user runs it: on a fresh virtual environment, ``pip install
.`` then ``symbp demo``. Slow-ish (a venv, a wheel build, Numba compiling from an empty cache:
about 30-60 s). Set SYMBP_SKIP_README_TEST=1 to skip it.

The venv sees the system's site-packages (``--system-site-packages``) so numpy, numba and
sympy need no network; ``--no-deps --no-build-isolation`` keeps pip offline too. What is
tested is that *this* checkout installs and that its console script runs the demo.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["pip install . && symbp demo", 'pip install ".[test]" && python -m pytest']


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README: no ```bash block under ## Quick start"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_has_exactly_the_two_commands():
    assert quick_start_commands() == COMMANDS


@pytest.mark.skipif(
    os.environ.get("SYMBP_SKIP_README_TEST") == "1", reason="SYMBP_SKIP_README_TEST=1"
)
def test_quick_start_on_a_fresh_venv(tmp_path):
    # a copy of the checkout, so the build's egg-info and build/ stay out of the repository
    src = tmp_path / "symbp-src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", "build", "dist", "*.egg-info", "__pycache__", ".venv", "site", ".*_cache"
        ),
    )
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False, symlinks=os.name != "nt").create(
        env_dir
    )
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{bindir}{os.pathsep}{env['PATH']}", VIRTUAL_ENV=str(env_dir),
               SYMBP_CACHE_DIR=str(tmp_path / "cache"), PIP_NO_INDEX="1")  # fmt: skip

    def run(*cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env,
                             timeout=timeout)  # fmt: skip
        assert out.returncode == 0, f"{cmd}:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
        return out

    # pip from the system (the venv sees it), installing into the venv: `pip install .`
    run(str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q", str(src))
    where = run(str(python), "-c", "import symbp; print(symbp.__file__)").stdout.strip()
    assert Path(where).is_relative_to(env_dir), f"symbp imported from {where}, not the venv"
    symbp_script = bindir / "symbp"
    assert symbp_script.is_file(), "pip did not install the `symbp` console script"

    out = run(str(symbp_script), "demo", "--epochs", "2", "--quiet").stdout
    for expected in ("gradcheck passed", "test accuracy", "after 2 epochs"):
        assert expected in out, out[-2000:]
    acc = float(re.search(r"test accuracy ([\d.]+)%", out).group(1))
    assert acc > 80.0, out[-1000:]
