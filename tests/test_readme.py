"""The README's quick start, as a new user runs it: on a fresh virtual environment, ``pip install
.`` then ``symbp demo``. Slow-ish (a venv, a wheel build, Numba compiling from an empty cache:
about 30-60 s). Set SYMBP_SKIP_README_TEST=1 to skip it.

The venv sees the packages of the environment running these tests, and nothing else: not the
system's site-packages, which on a new machine hold none of them (a venv made by ``python3 -m
venv`` and ``pip install ".[test]"`` is all this test may assume). So numpy, numba and sympy
need no network, and ``--no-deps --no-build-isolation`` builds with the setuptools that the test
extra installs (it lists the ``[build-system]`` requirements, a test below checks). What is
tested is that *this* checkout installs and that its console script runs the demo. ``.ci/run``
runs the two README commands themselves, verbatim, in a new venv.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import site
import subprocess
import sysconfig
import venv
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [
    "pip install . && symbp demo",
    'pip install ".[test]" && python -m pytest -n auto --dist loadfile',
]


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README: no ```bash block under ## Quick start"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_has_exactly_the_two_commands():
    assert quick_start_commands() == COMMANDS


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_test_extra_holds_the_build_backend():
    """The quick-start test builds the wheel offline, with the environment's build backend: the
    test extra must install it (a new venv's own setuptools may predate `bdist_wheel`)."""
    meta = _pyproject()
    test_extra = {Requirement(r).name: r for r in meta["project"]["optional-dependencies"]["test"]}
    for req in meta["build-system"]["requires"]:
        name = Requirement(req).name
        assert test_extra.get(name) == req, f"the test extra lacks the build requirement {req!r}"


def _outer_site_packages() -> list[str]:
    """The site-packages directories of the interpreter running the tests (a venv's own, or the
    system's when the tests run there), where `pip install ".[test]"` put everything."""
    dirs = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    dirs += site.getsitepackages()
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


def _missing_build_requirements() -> list[str]:
    missing = []
    for req in _pyproject()["build-system"]["requires"]:
        r = Requirement(req)
        try:
            version = importlib.metadata.version(r.name)
        except importlib.metadata.PackageNotFoundError:
            version = None
        if version is None or not r.specifier.contains(version, prereleases=True):
            missing.append(f"{req} (installed: {version})")
    return missing


@pytest.mark.slow
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
    missing = _missing_build_requirements()
    assert not missing, f'install the test extra (`pip install ".[test]"`): {missing}'
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=False, with_pip=False, symlinks=os.name != "nt").create(
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

    # the running environment's packages, after the venv's own (where symbp will be installed);
    # path lines only, so the .pth files there (an editable symbp's finder) are not run
    purelib = run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    Path(purelib.stdout.strip(), "_outer_environment.pth").write_text(
        "".join(f"{d}\n" for d in _outer_site_packages())
    )

    # pip from the running environment (the venv sees it), installing into the venv
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
