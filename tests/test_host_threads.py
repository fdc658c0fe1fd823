"""What symbp does to its host's threads: a program that calls BLAS runs OpenBLAS on its
caller's thread alone and gives the host's thread count back (compiler.runtime.one_blas_thread:
OpenBLAS's pool, spinning after each call, otherwise took the cores Numba's threads need
next); Numba's threading layer is chosen when symbp first loads a program, not on import."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import symbp
from symbp import compiled, nn, optim
from symbp.compiler import runtime

torch = pytest.importorskip("torch")


def _setters():
    setters = runtime._openblas_thread_setters()
    if not setters:
        pytest.skip("no OpenBLAS with openblas_set_num_threads_local in this process")
    return setters


def test_one_thread_inside_and_restored_after():
    setters = _setters()
    inside = []

    def fn(a, b):
        inside.extend(s(1) for s in setters)  # reads each library's count (as set for the call)
        return a + b

    before = [s(3) for s in setters]  # a host setting of 3 threads
    try:
        assert runtime.one_blas_thread(fn)(2, 5) == 7
        assert inside == [1] * len(setters)
        assert [s(3) for s in setters] == [3] * len(setters)  # given back
    finally:
        for s, n in zip(setters, before):
            s(n)


def test_one_thread_restored_when_the_call_raises():
    setters = _setters()

    def fn():
        raise ValueError("boom")

    before = [s(2) for s in setters]
    try:
        with pytest.raises(ValueError, match="boom"):
            runtime.one_blas_thread(fn)()
        assert [s(2) for s in setters] == [2] * len(setters)
    finally:
        for s, n in zip(setters, before):
            s(n)


def test_program_with_blas_products_trains_as_torch():
    # x @ W.T with 200-long rows at 32 x 200 x 10: a mid-sized product that stays with BLAS
    _setters()
    symbp.manual_seed(3)
    net = nn.Sequential(nn.Linear(200, 10), nn.Tanh(), nn.Linear(10, 3))
    tnet = torch.nn.Sequential(
        torch.nn.Linear(200, 10), torch.nn.Tanh(), torch.nn.Linear(10, 3)
    ).double()
    net = net.double()
    tnet.load_state_dict({k: torch.from_numpy(v.numpy()) for k, v in net.state_dict().items()})
    model = symbp.compile(net, nn.CrossEntropyLoss(), optim.SGD(net.parameters(), lr=0.1))
    topt = torch.optim.SGD(tnet.parameters(), lr=0.1)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 200)), rng.integers(0, 3, 32)
    for _ in range(3):
        loss = model.step(x, y)
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(tnet(torch.from_numpy(x)), torch.from_numpy(y))
        tloss.backward()
        topt.step()
        assert loss == pytest.approx(tloss.item(), rel=1e-10)
    assert compiled._calls_blas(model._train.mod)
    pred = model.predict(x)
    np.testing.assert_allclose(pred, tnet(torch.from_numpy(x)).detach().numpy(), rtol=1e-9)


_HOST = """
import numba, numpy as np
default = list(numba.config.THREADING_LAYER_PRIORITY)
import symbp
from symbp import nn, optim
assert list(numba.config.THREADING_LAYER_PRIORITY) == default, "import changed the layer order"
net = nn.Sequential(nn.Linear(3, 2))
model = symbp.compile(net, nn.MSELoss(), optim.SGD(net.parameters(), lr=0.1))
model.step(np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32))
print(numba.config.THREADING_LAYER_PRIORITY[0])
"""


def test_import_leaves_numbas_threading_layer_alone(tmp_path):
    try:
        from numba.np.ufunc import omppool  # noqa: F401
    except ImportError:
        pytest.skip("Numba's OpenMP layer does not load here")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_THREADING_LAYER")}
    env["SYMBP_CACHE_DIR"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", _HOST], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "omp"  # chosen once symbp loaded its first program
