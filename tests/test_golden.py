"""The generated training source of two small models, against reviewed golden files.

The generated code is for people too (STYLE.md, habit 6): its buffers are named as the formulas
name the layers' tensors (``z2``, ``h``, ``delta1``), its comments print the formulas, it imports
what it calls. A change to the emitter shows here as a diff of real programs, which a reviewer
reads. After a deliberate change, rewrite the goldens and review their diff:

    SYMBP_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py
    git diff tests/golden/

Each program is generated in a fresh process: the product kernels pinned (``SYMBP_MATMUL=own``:
the choice is otherwise measured on each CPU, ``compiler.lower.tuning``), the vector width too
(AVX2 code: a layer narrow enough for one vector calls the narrow kernels), an empty cache (a cached
program from an older emitter would hide a change).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("SYMBP_UPDATE_GOLDEN") == "1"

# prints {name: the generated training source}; built, not run (Numba compiles nothing here)
SCRIPT = """
import gc
import json
import numpy as np
import symbp
from symbp import nn

rng = np.random.default_rng(0)
models = {
    "mlp_train": lambda: (
        nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)),
        rng.standard_normal((16, 64)).astype(np.float32),
    ),
    "cnn_train": lambda: (
        nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                      nn.Linear(4 * 4 * 4, 10)),
        rng.standard_normal((16, 1, 8, 8)).astype(np.float32),
    ),
}
out = {}
for name, make in models.items():
    net, x = make()
    y = rng.integers(0, 10, size=16)
    opt = symbp.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    out[name] = symbp.compile(net, nn.CrossEntropyLoss(), opt).build(x, y).source
    del net, opt
    gc.collect()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    cache = tmp_path_factory.mktemp("golden-cache")
    # the machine's choices pinned: the products' kernels, and the vector width (which picks
    # the kernels of layers narrow enough for one vector): AVX2 code, on any x86-64
    env = {**os.environ, "SYMBP_MATMUL": "own", "SYMBP_CACHE_DIR": str(cache),
           "NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "+avx2,+fma"}  # fmt: skip
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr
    return dict(json.loads(run.stdout), _cache=str(cache), _root=str(root))


@pytest.mark.parametrize("name", ["mlp_train", "cnn_train"])
def test_generated_source_matches_golden(generated: dict[str, str], name: str) -> None:
    source = generated[name]
    path = GOLDEN / f"{name}.py.txt"
    # nothing of this machine in it: no paths (the checkout's, the cache's, the home's)
    for where in (generated["_root"], generated["_cache"], str(Path.home()), sys.prefix):
        assert where not in source, f"{name}: the generated source names {where}"
    assert "#2" not in source  # the model's own parameter names
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(source)
    assert path.exists(), f"no golden {path}: run with SYMBP_UPDATE_GOLDEN=1 and review it"
    want = path.read_text()
    assert source == want, (
        f"the generated {name} differs from {path}; if the change is meant, rewrite the "
        "goldens (SYMBP_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py) and review "
        "their diff"
    )


def test_goldens_read_like_the_formulas() -> None:
    """What the goldens were kept for: the formulas' names and operators, no bare mode bits,
    comments within 100 columns, and the helpers imported exactly: none unused, none missing
    (pyflakes' checks, by ruff)."""
    pytest.importorskip("ruff")
    mlp = (GOLDEN / "mlp_train.py.txt").read_text()
    cnn = (GOLDEN / "cnn_train.py.txt").read_text()
    for source in (mlp, cnn):
        assert "noqa" not in source
        lint = subprocess.run(
            [sys.executable, "-m", "ruff", "check", "--isolated", "--select", "F401,F811,F821",
             "--stdin-filename", "generated.py", "-"],
            input=source, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert lint.returncode == 0, lint.stdout
        assert "if mode & SHUFFLE:" in source and "mode & 4" not in source
        assert "delta1" in source and "delta2" in source and "z2" in source
        assert all(len(line) <= 100 for line in source.splitlines() if line.strip()[:1] == "#")
    assert "= h·layer2_weightᵀ" in mlp  # the hidden layer's activation, h, times W2ᵀ
    assert "s1 = carve(" in cnn  # the pooled image, named as the formulas name it
