"""The disk cache: hits across processes, damaged entries rebuilt, concurrent compiles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import symbp
from symbp.compiler import cache

SCRIPT = textwrap.dedent(
    """
    import json, time
    import numpy as np, symbp
    from symbp import nn
    symbp.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    model = symbp.compile(net, nn.MSELoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
    x = np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3)
    y = np.ones((5, 2), np.float32)
    t0 = time.perf_counter()
    loss = model.step(x, y)
    first = time.perf_counter() - t0
    stats = model._train.mod.train.stats  # Numba's: loaded from its cache, or compiled
    print(json.dumps({"loss": loss, "hit": model.timings["cache_hit"], "first": first,
                      "w": net[0].weight.data.tolist(),
                      "numba_hit": sum(stats.cache_hits.values()),
                      "numba_miss": sum(stats.cache_misses.values())}))
    """
)


def _run(cache_dir: Path, n: int = 1) -> list[dict]:
    env = {**os.environ, "SYMBP_CACHE_DIR": str(cache_dir)}
    procs = [
        subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(n)
    ]  # fmt: skip
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stderr
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


@pytest.mark.slow
def test_second_process_hits_and_damaged_entries_are_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(tmp_path))
    tmp_path.chmod(0o755)  # a cache made before symbp made them 0700 is still private enough
    (first,) = _run(tmp_path)
    assert first["hit"] == 0.0 and (first["numba_hit"], first["numba_miss"]) == (0, 1)
    (second,) = _run(tmp_path)
    assert second["hit"] == 1.0 and second["loss"] == first["loss"] and second["w"] == first["w"]
    # no rebuild at all: Numba's machine code, as symbp recorded it, is loaded too
    assert (second["numba_hit"], second["numba_miss"]) == (1, 0)

    # a truncated module file fails its digest: rebuilt, never loaded
    (entry,) = tmp_path.glob("m_*.py")
    entry.write_text(entry.read_text()[:200])
    (third,) = _run(tmp_path)
    assert third["hit"] == 0.0 and third["loss"] == first["loss"]
    assert cache.read_entry(entry.stem[2:]) is not None

    # a truncated Numba code file is detected when loading and recompiled
    for f in (tmp_path / "__pycache__").glob(f"{entry.stem}.*.nbc"):
        f.write_bytes(f.read_bytes()[:50])
    (fourth,) = _run(tmp_path)
    assert fourth["hit"] == 1.0 and fourth["loss"] == first["loss"]
    assert fourth["numba_miss"] == 1  # the damaged code differs from its record: recompiled


@pytest.mark.slow
def test_two_concurrent_compiles_both_succeed(tmp_path):
    a, b = _run(tmp_path, n=2)
    assert a["loss"] == b["loss"] and a["w"] == b["w"]
    assert len(list(tmp_path.glob("m_*.py"))) == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_cache_info_and_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(tmp_path))
    key = cache.make_key("test")
    cache.write_entry(key, "x = 1\n")
    info = symbp.cache_info()
    assert info["dir"] == str(tmp_path) and info["entries"] == 1 and info["bytes"] > 0
    assert "numba=" in info["versions"]
    assert symbp.clear_cache() == 1
    assert symbp.cache_info()["entries"] == 0


def test_numba_cache_dir_is_checked_before_symbp_kernels_use_it(tmp_path, monkeypatch):
    from numba.core import config

    import symbp.compiler.lower.conv_kernels as kernels

    shared = tmp_path / "numba"
    shared.mkdir()
    monkeypatch.setattr(config, "CACHE_DIR", str(shared))
    assert cache._numba_dir(kernels.__file__) is None  # private: Numba's own locator uses it
    shared.chmod(0o777)
    with pytest.warns(cache.CacheWarning, match=f"NUMBA_CACHE_DIR = {shared}: .*mode 0777"):
        where = cache._numba_dir(kernels.__file__)
    assert where is not None and Path(where).is_relative_to(cache.kernel_cache_dir())


def test_key_depends_on_the_program_not_the_process(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(tmp_path))
    assert cache.make_key("a", 1) == cache.make_key("a", 1) != cache.make_key("a", 2)


@pytest.mark.parametrize("bad", ["", "# symbp-cache sha256=00\nx = 1\n", "x = 1\n"])
def test_invalid_entries_are_not_read(tmp_path, monkeypatch, bad):
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(tmp_path))
    cache.entry_path("k").write_text(bad)
    assert cache.read_entry("k") is None


CNN_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, symbp
    from symbp import nn
    symbp.manual_seed(0)
    outputs = int(sys.argv[1])
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(64, outputs)).double()
    x = np.linspace(-1, 1, 2 * 36).reshape(2, 1, 6, 6)
    y = np.ones((2, outputs))
    eager = float(nn.MSELoss()(net(symbp.tensor(x)), symbp.tensor(y)).item())
    model = symbp.compile(net, nn.MSELoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
    loss = model.step(x, y)
    print(json.dumps({"loss": loss, "eager": eager, "hit": model.timings["cache_hit"]}))
    """
)


@pytest.mark.slow
def test_cached_program_calling_cached_parallel_kernels_runs(tmp_path):
    """A program compiled while the conv kernels came from the cache, then loaded from the
    cache itself, must start Numba's thread pool (Numba does not: it crashed)."""
    env = {**os.environ, "SYMBP_CACHE_DIR": str(tmp_path)}

    def run(outputs: int) -> dict:
        cmd = [sys.executable, "-c", CNN_SCRIPT, str(outputs)]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, f"exit {p.returncode}: {p.stderr[-2000:]}"
        return json.loads(p.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    first = run(3)  # compiles the kernels and its program
    second = run(2)  # another program: compiled, with the kernels loaded from the cache
    third = run(2)  # that program loaded from the cache
    assert (first["hit"], second["hit"], third["hit"]) == (0.0, 0.0, 1.0)
    for r in (first, second, third):
        assert r["loss"] == pytest.approx(r["eager"], rel=1e-12)
    assert third["loss"] == second["loss"]
