"""The cache runs what it finds, so only its owner may write it (issue 19).

A directory others can write, or that belongs to someone else, is refused: nothing in it runs,
the compile still succeeds (into a private directory) and one warning names the path. Files
written by another user, symlinks leading out, Numba files changed since symbp recorded them,
and pickles in weight files are never loaded. Each planted payload would write a marker file;
the marker must never appear.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import symbp
from symbp import nn
from symbp.compiler import cache, runtime
from symbp.compiler.cache import CacheWarning

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="chown to another user needs root")
X = np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3)
Y = np.linspace(0, 1, 5, dtype=np.float32).reshape(5, 1)


def _nobody() -> int:
    import pwd

    try:
        return pwd.getpwnam("nobody").pw_uid
    except KeyError:
        pytest.skip("no user 'nobody' to give files to")


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _model():
    """A Linear+Sigmoid layer (the same program, so the same key, at every call) and the loss
    of its first step recomputed in float64 NumPy from its initial weights. One layer: the
    tests here compile it into several fresh caches, and a program's compile time grows with
    its size (~3 s of CPU for this one, ~5 s with a second layer)."""
    symbp.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 1), nn.Sigmoid())
    w, b = (p.data.numpy().astype(np.float64) for p in net.parameters())
    out = 1 / (1 + np.exp(-(X @ w.T + b)))
    model = symbp.compile(net, nn.MSELoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
    return model, float(np.mean((out - Y) ** 2))


class Payload:
    """Unpickling this writes the marker file: what an attacker's pickle would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    """The MLP compiled once into a fresh cache: its key, entry text and Numba file names."""
    d = tmp_path_factory.mktemp("good") / "a" / "cache"  # missing: symbp creates it
    mp = pytest.MonkeyPatch()
    mp.setenv("SYMBP_CACHE_DIR", str(d))
    mp.setattr(runtime, "_LOADED", {})
    try:
        model, want = _model()
        loss = model.step(X, Y)
    finally:
        mp.undo()
    (entry,) = d.glob("m_*.py")
    key = entry.stem[2:]
    numba_files = sorted(f.name for f in (d / "__pycache__").iterdir())
    return {"dir": d, "key": key, "text": entry.read_text(), "loss": loss, "want": want,
            "numba": numba_files}  # fmt: skip


@pytest.fixture
def fresh(monkeypatch):
    """As in a new process: no program loaded yet (a hit then executes the cached file)."""
    monkeypatch.setattr(runtime, "_LOADED", {})


def _plant(d: Path, program: dict, marker: Path) -> None:
    """A cached program (with a valid digest line) and a Numba index that would each write the
    marker, under the names the real program's files have."""
    body = program["text"].partition("\n")[2]
    evil = f"open({str(marker)!r}, 'w').write('ran')\n" + body
    (d / f"m_{program['key']}.py").write_text(cache.entry_text(evil))
    (d / "__pycache__").mkdir(exist_ok=True)
    for name in program["numba"]:
        (d / "__pycache__" / name).write_bytes(pickle.dumps(Payload(marker)))


def test_a_fresh_cache_is_private_and_hits_without_rebuilding(program, fresh, monkeypatch):
    d = program["dir"]
    assert program["loss"] == pytest.approx(program["want"], rel=1e-5)
    for sub in (d.parent, d, d / "__pycache__"):  # every directory symbp created: 0700
        assert _mode(sub) == 0o700, sub
    files = [f for f in d.rglob("*") if f.is_file()]
    assert {f.suffix for f in files} >= {".py", ".seal", ".nbi", ".nbc"}
    assert all(_mode(f) == 0o600 for f in files), [(f, oct(_mode(f))) for f in files]
    # the same program again: a hit for symbp and for Numba (its sealed files are loaded)
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(d))
    model, _ = _model()
    assert model.step(X, Y) == program["loss"]
    assert model.timings["cache_hit"] == 1.0
    fn = model._train.mod.train
    assert sum(fn.stats.cache_hits.values()) == 1 and not sum(fn.stats.cache_misses.values())


@pytest.mark.parametrize("how", ["mode 0777", "owned by nobody", "parent 0777"])
def test_a_cache_others_can_write_is_refused(program, fresh, monkeypatch, tmp_path, how):
    marker = tmp_path / "marker"
    top = tmp_path / "shared"
    d = top / "cache" if how == "parent 0777" else top
    d.mkdir(parents=True)
    _plant(d, program, marker)
    if how == "mode 0777":
        d.chmod(0o777)
    elif how == "parent 0777":
        top.chmod(0o777)  # not sticky: anyone can swap the cache folder for their own
    else:
        if not ROOT:
            pytest.skip("chown to another user needs root")
        uid = _nobody()
        for f in [d, *d.rglob("*")]:
            os.chown(f, uid, -1)
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(d))
    with pytest.warns(CacheWarning) as caught:
        model, want = _model()
        loss = model.step(X, Y)
    assert not marker.exists()  # neither the module nor Numba's index ran
    assert loss == pytest.approx(want, rel=1e-5) and loss == program["loss"]
    (warning,) = [str(w.message) for w in caught if "not using" in str(w.message)]
    bad = top if how == "parent 0777" else d
    assert str(bad) in warning and "SYMBP_CACHE_DIR" in warning
    if how == "owned by nobody":
        assert "nobody" in warning and "another user" in warning
    else:
        assert "mode 0777" in warning
        assert ("chmod 700 " if bad == d else "chmod go-w ") + str(bad) in warning
    assert not Path(model._train.mod.__file__).is_relative_to(top)  # compiled elsewhere
    assert symbp.cache_info()["refused"] == warning  # and `symbp cache info` says so


def test_cache_info_on_the_command_line_names_the_refused_directory(tmp_path):
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o777)
    env = {**os.environ, "SYMBP_CACHE_DIR": str(d)}
    cmd = [sys.executable, "-c", "from symbp.cli import main; main(['cache', 'info'])"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert f"chmod 700 {d}" in p.stderr and "'refused': 'symbp: not using" in p.stdout
    assert p.stderr.count("not using") == 1  # said once, not also as a warning


def test_cache_dir_naming_a_file_warns_naming_the_variable(tmp_path, monkeypatch):
    f = tmp_path / "file"
    f.write_text("not a directory")
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(f))
    with pytest.warns(CacheWarning, match=f"SYMBP_CACHE_DIR = {re.escape(str(f))}: .*is a file"):
        d = cache.cache_dir()
    assert d.is_dir() and d != f and _mode(d) == 0o700  # the compile goes on, privately
    assert "point SYMBP_CACHE_DIR at a directory" in symbp.cache_info()["refused"]


def test_an_administrators_shared_cache_is_trusted_when_asked(monkeypatch, tmp_path):
    d = tmp_path / "shared"
    d.mkdir()
    text = cache.entry_text("x = 'shared'\n")
    (d / "m_shared.py").write_text(text)
    d.chmod(0o777)
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(d))
    with pytest.warns(CacheWarning):
        assert cache.read_entry("shared") is None
    monkeypatch.setenv(cache.TRUST_SHARED, "1")
    assert cache.read_entry("shared") == text
    assert cache.cache_info()["refused"] is None
    # read-only for us (as root, access() says yes to all): new programs go elsewhere
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != d.resolve())
    with pytest.warns(CacheWarning, match=f"{re.escape(str(d))} is read-only"):
        path = cache.write_entry("mine", "x = 'mine'\n")
    assert path.parent != d.resolve() and _mode(path.parent) == 0o700
    assert cache.read_entry("mine", path.parent) == cache.entry_text("x = 'mine'\n")


@needs_root
def test_an_entry_written_by_another_user_is_not_loaded(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(tmp_path))
    path = cache.write_entry("k", "x = 1\n")
    assert cache.read_entry("k") is not None
    os.chown(path, _nobody(), -1)
    with pytest.warns(CacheWarning, match=f"{re.escape(str(path))}.*written by another user"):
        assert cache.read_entry("k") is None
    cache.write_entry("k", "x = 1\n")  # replaced by ours
    assert os.stat(path).st_uid == os.geteuid() and cache.read_entry("k") is not None


def test_symlinks_out_of_the_cache_are_not_loaded(monkeypatch, tmp_path):
    d, outside = tmp_path / "cache", tmp_path / "elsewhere"
    d.mkdir()
    outside.mkdir()
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(d))
    text = cache.entry_text("x = 1\n")
    (outside / "m_out.py").write_text(text)
    (d / "m_out.py").symlink_to(outside / "m_out.py")
    with pytest.warns(CacheWarning, match="symlink leading out of the cache directory"):
        assert cache.read_entry("out") is None
    (d / "real.py").write_text(text)  # a link that stays inside is the file it names
    (d / "m_in.py").symlink_to(d / "real.py")
    assert cache.read_entry("in") == text


def test_an_entry_changed_since_it_was_written_is_not_loaded(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(tmp_path))
    path = cache.write_entry("k", "x = 1\n")
    st = os.stat(path)
    assert cache.read_entry("k") is not None
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, other mtime
    assert cache.read_entry("k") is None
    cache.write_entry("k", "x = 1\n")  # rebuilt and recorded again
    assert cache.read_entry("k") is not None


def test_numba_files_are_loaded_only_as_symbp_recorded_them(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(tmp_path))
    d = cache.cache_dir()
    cache.write_entry("k", "x = 1\n")
    pyc = d / "__pycache__"
    pyc.mkdir()
    index, code = pyc / "m_k.f-1.py311.nbi", pyc / "m_k.f-1.py311.1.nbc"
    index.write_bytes(b"index")
    code.write_bytes(b"code")
    cache.seal_numba_files(d, "k")  # as after Numba saved them
    assert _mode(index) == _mode(code) == 0o600
    cache.vet_numba_files(d, "k")
    assert index.exists() and code.exists()  # recorded and unchanged: kept
    code.write_bytes(b"c0de")  # same size, other bytes
    extra = pyc / "m_k.g-9.py311.nbi"  # never recorded
    extra.write_bytes(b"planted")
    cache.vet_numba_files(d, "k")
    assert index.exists() and not code.exists() and not extra.exists()


@needs_root
@pytest.mark.parametrize("how", ["owned by nobody", "changed after it was recorded"])
def test_a_planted_numba_index_in_a_private_cache_never_runs(
    program, fresh, monkeypatch, tmp_path, how
):
    d = tmp_path / "cache"
    d.mkdir(mode=0o700)
    marker = tmp_path / "marker"
    entry = d / f"m_{program['key']}.py"
    entry.write_text(program["text"])
    entry.chmod(0o600)
    (d / "__pycache__").mkdir(mode=0o700)
    index = d / "__pycache__" / next(n for n in program["numba"] if n.endswith(".nbi"))
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(d))
    if how == "owned by nobody":
        index.write_bytes(pickle.dumps(Payload(marker)))
        index.chmod(0o600)
        os.chown(index, _nobody(), -1)
        expect = pytest.warns(CacheWarning, match=f"{re.escape(str(index))}.*another user")
    else:  # recorded as symbp does, then replaced by a payload with our owner and mode
        (d / f"m_{program['key']}.seal").write_text(json.dumps({"entry": cache._stamp(entry)}))
        index.write_bytes(b"what Numba wrote")
        cache.seal_numba_files(d, program["key"])
        index.write_bytes(pickle.dumps(Payload(marker)))
        expect = contextlib.nullcontext()  # a changed file is simply rebuilt, as a damaged one
    assert _mode(index) == 0o600
    with expect:
        model, want = _model()
        loss = model.step(X, Y)
    assert loss == program["loss"] and loss == pytest.approx(want, rel=1e-5)
    assert model.timings["cache_hit"] == 1.0  # symbp's entry was fine: only Numba recompiled
    assert not marker.exists()


def test_the_planted_payloads_are_real(tmp_path):
    """The payloads above do run when unpickled, so their markers' absence means something."""
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.read_text() == "ran"


# ---------------------------------------------------------------- weights never unpickle


def test_a_pt_file_with_a_pickle_that_runs_code_is_rejected(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "marker"
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(1, 3), "bias": Payload(marker)}, path)
    net = nn.Linear(3, 1)
    before = net.weight.data.numpy().copy()
    with pytest.raises(
        symbp.WeightsError, match=r"pickled Python objects besides tensors \(exec\)"
    ):
        symbp.load_weights(net, path)
    assert not marker.exists() and np.array_equal(net.weight.data, before)
    torch.load(path, weights_only=False)  # what symbp must never do: it runs the payload
    assert marker.exists()


def test_an_npz_file_with_an_object_array_is_rejected(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "weights.npz"
    evil = np.empty(1, dtype=object)
    evil[0] = Payload(marker)
    np.savez(path, weight=np.zeros((1, 3), np.float32), bias=evil)
    net = nn.Linear(3, 1)
    for load in (lambda: symbp.load_weights(net, path), lambda: symbp.load_checkpoint(path)):
        with pytest.raises(symbp.CheckpointError, match="'bias' holds pickled Python objects"):
            load()
    assert not marker.exists()
    with np.load(path, allow_pickle=True) as archive:  # what symbp must never do
        archive["bias"]
    assert marker.exists()


# ---------------------------------------------------------------- the standalone export


def test_export_writes_with_the_umask_and_returns_what_it_wrote(
    program, fresh, monkeypatch, tmp_path
):
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(program["dir"]))
    model, _ = _model()
    model.step(X, Y)
    mask = os.umask(0)
    os.umask(mask)
    module, weights = model.export(tmp_path / "mlp.py")
    assert (module, weights) == (tmp_path / "mlp.py", tmp_path / "mlp.npz")
    for f in (module, weights):
        assert _mode(f) == 0o666 & ~mask
