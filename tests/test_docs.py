"""The documentation: ``mkdocs build --strict`` passes (every page in the nav, every link and
anchor resolves, every ``:::`` API entry imports), and the docs agree with the code and the
README they describe."""

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    site = tmp_path / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            ROOT / "mkdocs.yml",
            "-d",
            site,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    api = (site / "api" / "index.html").read_text()
    for name in ("save_checkpoint", "StepLR", "computation_graph", "CompiledModel", "gradcheck"):
        assert name in api, f"the API reference lacks {name}"


def test_getting_started_has_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start\s+```bash\n(.*?)```", readme, re.S)
    assert block, "README.md lost its Quick start block"
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    page = (DOCS / "getting-started.md").read_text()
    for command in commands:
        assert command in page, f"getting-started.md lacks the README's {command!r}"


def _resolve(dotted: str) -> bool:
    """Whether ``symbp.<dotted>`` names something: an attribute, or a module to import."""
    obj = importlib.import_module("symbp")
    path = "symbp"
    for part in dotted.split("."):
        path += "." + part
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        try:
            obj = importlib.import_module(path)
        except ImportError:
            return False
    return True


def test_every_symbp_name_in_the_docs_exists():
    """Drift check: every ``symbp.something`` the docs mention is real. (``:::`` lines are
    module paths for mkdocstrings, checked by the build.)"""
    missing = set()
    for page in [*DOCS.rglob("*.md"), ROOT / "README.md"]:
        lines = page.read_text().splitlines()
        text = "\n".join(line for line in lines if not line.startswith(":::"))
        for dotted in re.findall(r"\bsymbp\.([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*)", text):
            dotted = dotted.rstrip(".")
            if dotted.endswith(("_py", ".py", ".md")) or not _resolve(dotted):
                missing.add(f"{page.relative_to(ROOT)}: symbp.{dotted}")
    assert not missing, "\n".join(sorted(missing))


def test_every_example_the_docs_name_exists():
    named = set()
    for page in DOCS.rglob("*.md"):
        named |= set(re.findall(r"examples/([a-z0-9_]+\.py)", page.read_text()))
    assert named, "the docs should point at the examples"
    assert not [n for n in named if not (ROOT / "examples" / n).is_file()]


def test_architecture_lists_every_op_and_every_stage_table():
    """docs/architecture/ir.md's op list names each op of ``ops.OPS`` and gives their number, and
    its table of stage tables names each one that has a row per op."""
    from symbp.compiler.ops import OPS

    page = (DOCS / "architecture" / "ir.md").read_text()
    section = page.split("## The op table")[1].split("\n## ")[0]
    listed = section.split("by kind:")[1].split("\nEvery elementwise operation")[0]
    assert set(OPS) <= set(re.findall(r"`(\w+)`", listed)), sorted(
        set(OPS) - set(re.findall(r"`(\w+)`", listed))
    )
    count = re.search(r"It holds (\d+) primitives", section)
    assert count and int(count.group(1)) == len(OPS), (count and count.group(0), len(OPS))
    tables = re.findall(r"^\| \w+ \| `symbp\.([\w.]+)`", section, re.M)
    assert len(tables) == 5, tables
    for dotted in tables:
        module, _, name = f"symbp.{dotted}".rpartition(".")
        table = getattr(importlib.import_module(module), name)
        assert set(table) == set(OPS), dotted
