"""symbp.save / symbp.load: round trips of what PyTorch programs save (tensors, module and
optimizer state dicts, checkpoints of both), PyTorch's own files read back, and nothing ever
unpickled."""

from __future__ import annotations

import io
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import symbp
from symbp import nn
from symbp.checkpoint import CheckpointError


def _equal(a, b):
    """Structural equality, arrays and tensors by value and dtype."""
    if isinstance(a, symbp.Tensor):
        assert isinstance(b, symbp.Tensor) and type(a) is type(b)
        assert a.requires_grad == b.requires_grad
        a, b = a.numpy(), b.numpy()
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
        return
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, dict):
        assert list(a) == list(b) and all(type(k) is type(j) for k, j in zip(a, b))
        for k in a:
            _equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _equal(x, y)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b


def _trained():
    symbp.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = symbp.optim.Adam(net.parameters(), lr=0.01, betas=(0.8, 0.9))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    y = rng.standard_normal((5, 2)).astype(np.float32)
    return net, opt, x, y


def _steps(net, opt, x, y, n):
    for _ in range(n):
        opt.zero_grad()
        ((net(symbp.tensor(x)) - symbp.tensor(y)) ** 2).mean().backward()
        opt.step()


@pytest.mark.parametrize(
    "obj",
    [
        symbp.tensor(np.arange(6.0).reshape(2, 3)),
        symbp.tensor(np.ones(3, np.float32), requires_grad=True),
        symbp.tensor(np.array([1, 2, 3], np.int64)),
        nn.Parameter(np.ones((2, 2), np.float32)),
        {"epoch": 3, "loss": 0.25, "best": float("inf"), "gap": float("nan"), "tag": None},
        [1, (2.5, "x"), {"nested": [np.zeros((0, 4))]}],
        OrderedDict([("b", 1), ("a", 2)]),
        {0: {"step": 2}, 1: {"step": 7}},
    ],
    ids=["tensor", "requires-grad", "int", "parameter", "scalars", "nested", "ordered", "int-keys"],
)
def test_round_trip(obj, tmp_path):
    path = tmp_path / "obj.pt"
    symbp.save(obj, path)
    _equal(obj, symbp.load(path))


def test_training_resumes_from_saved_state_dicts_as_if_never_stopped(tmp_path):
    net, opt, x, y = _trained()
    _steps(net, opt, x, y, 3)
    symbp.save(
        {"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}, tmp_path / "c.pt"
    )
    _steps(net, opt, x, y, 3)  # the uninterrupted run

    fresh, fresh_opt, _, _ = _trained()
    ckpt = symbp.load(tmp_path / "c.pt")
    fresh.load_state_dict(ckpt["model"])
    fresh_opt.load_state_dict(ckpt["optimizer"])
    assert ckpt["epoch"] == 3 and fresh_opt.param_groups[0]["betas"] == (0.8, 0.9)
    _steps(fresh, fresh_opt, x, y, 3)
    for p, q in zip(net.parameters(), fresh.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_file_like_objects():
    buf = io.BytesIO()
    symbp.save({"w": symbp.tensor(np.eye(2))}, buf)
    buf.seek(0)
    np.testing.assert_array_equal(symbp.load(buf)["w"].numpy(), np.eye(2))


def test_the_file_holds_no_pickle(tmp_path):
    symbp.save({"w": symbp.tensor(np.ones(2)), "opt": {0: {"step": 1}}}, tmp_path / "f.pt")
    with np.load(tmp_path / "f.pt", allow_pickle=False) as archive:  # NumPy refuses pickles
        assert all(archive[k].dtype != object for k in archive.files)


def test_objects_that_would_need_a_pickle_are_refused():
    with pytest.raises(TypeError, match="save a module's state_dict"):
        symbp.save(nn.Linear(2, 2), io.BytesIO())
    with pytest.raises(TypeError, match="object array"):
        symbp.save({"x": np.array([{}], dtype=object)}, io.BytesIO())


def test_a_truncated_or_foreign_file_is_a_clear_error(tmp_path):
    symbp.save({"w": symbp.tensor(np.ones(100))}, tmp_path / "f.pt")
    data = (tmp_path / "f.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        symbp.load(tmp_path / "cut.pt")
    with pytest.raises(FileNotFoundError, match="no such file"):
        symbp.load(tmp_path / "missing.pt")


def test_map_location_names_the_cpu_only():
    buf = io.BytesIO()
    symbp.save(symbp.tensor(np.ones(2)), buf)
    buf.seek(0)
    assert symbp.load(buf, map_location="cpu").shape == (2,)
    buf.seek(0)
    with pytest.raises(symbp.DeviceError, match="CPU"):
        symbp.load(buf, map_location="cuda:0")


# ---------------------------------------------------------------- files PyTorch wrote


def test_reads_what_torch_save_wrote(tmp_path):
    torch = pytest.importorskip("torch")
    tnet = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    topt = torch.optim.SGD(tnet.parameters(), lr=0.1, momentum=0.9)
    tnet(torch.ones(1, 3)).sum().backward()
    topt.step()
    torch.save(
        {"model": tnet.state_dict(), "optimizer": topt.state_dict(), "t": torch.arange(3)},
        tmp_path / "torch.pt",
    )
    got = symbp.load(tmp_path / "torch.pt")
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    net.load_state_dict(got["model"])
    for p, q in zip(net.parameters(), tnet.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.detach().numpy())
    assert isinstance(got["t"], symbp.Tensor) and got["t"].tolist() == [0, 1, 2]
    opt = symbp.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    opt.load_state_dict(got["optimizer"])  # PyTorch's param group keys (foreach ...) load
    buf = topt.state_dict()["state"][0]["momentum_buffer"].numpy()
    np.testing.assert_array_equal(opt.state_dict()["state"][0]["momentum_buffer"], buf)


def test_pickled_code_in_a_torch_file_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"fn": print, "w": torch.ones(2)}, tmp_path / "code.pt")  # code, by name
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        symbp.load(tmp_path / "code.pt", weights_only=False)
    assert zipfile.is_zipfile(tmp_path / "code.pt")
