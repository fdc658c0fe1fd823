"""The measured choice between symbp's product kernels and the BLAS (compiler/lower/tuning.py):
each kind measured only when a program first needs it, kept per CPU in the cache directory,
and pinned by SYMBP_MATMUL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = """
import json, sys
from symbp.compiler.lower import tuning
kind = sys.argv[1]
faster = tuning.blas_faster(kind)
print(json.dumps({"faster": faster, "measured": sorted(tuning._LAST)}))
"""


def run(kind, cache_dir, **env):
    full = {k: v for k, v in os.environ.items() if k != "SYMBP_MATMUL"}  # the user's pin
    full.update(SYMBP_CACHE_DIR=str(cache_dir), **env)
    p = subprocess.run([sys.executable, "-c", SCRIPT, kind], env=full, capture_output=True,
                       text=True, timeout=600)  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.splitlines()[-1])


def stored(cache_dir):
    (entry,) = json.loads((cache_dir / "tuning.json").read_text()).values()
    return entry


def test_a_kind_is_measured_when_first_needed_and_then_read_back(tmp_path):
    first = run("small", tmp_path)
    assert first["measured"] == ["small"]  # the large kernel was neither compiled nor timed
    assert stored(tmp_path) == {"small": first["faster"]}
    again = run("small", tmp_path)
    assert again == {"faster": first["faster"], "measured": []}  # read from the note
    large = run("large", tmp_path)
    assert large["measured"] == ["large"]
    assert stored(tmp_path) == {"small": first["faster"], "large": large["faster"]}
    remeasured = run("small", tmp_path, SYMBP_MATMUL="measure")
    assert remeasured["measured"] == ["small"]


def test_a_pinned_choice_measures_nothing(tmp_path):
    for pin, want in (("own", False), ("blas", True)):
        got = run("large", tmp_path, SYMBP_MATMUL=pin)
        assert got == {"faster": want, "measured": []}
    assert not (tmp_path / "tuning.json").exists()
