"""Weights from PyTorch (.pt) and NumPy (.npz): the reference is PyTorch's own forward pass on
the same weights, and the arrays written out."""

import sys

import numpy as np
import pytest

import symbp
from symbp import nn
from symbp.interop import WeightsError, load_weights, read_state_dict, save_weights


def symbp_mlp():
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def symbp_cnn():
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 5),
    )


def torch_models(torch):
    tnn = torch.nn
    torch.manual_seed(0)
    mlp = tnn.Sequential(tnn.Linear(6, 5), tnn.Tanh(), tnn.Linear(5, 3))
    cnn = tnn.Sequential(
        tnn.Conv2d(2, 4, 3, padding=1),
        tnn.BatchNorm2d(4),
        tnn.ReLU(),
        tnn.MaxPool2d(2),
        tnn.Flatten(),
        tnn.Linear(4 * 3 * 3, 5),
    )
    # running statistics that are not the defaults, so that loading them matters
    cnn.train()
    with torch.no_grad():
        for _ in range(3):
            cnn(torch.randn(8, 2, 6, 6))
    return mlp.eval(), cnn.eval()


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_pt_from_torch_gives_the_same_forward(tmp_path, which):
    torch = pytest.importorskip("torch")
    tmlp, tcnn = torch_models(torch)
    tmodel, model = (tmlp, symbp_mlp()) if which == "mlp" else (tcnn, symbp_cnn())
    torch.save(tmodel.state_dict(), tmp_path / "w.pt")
    load_weights(model, tmp_path / "w.pt")
    model.eval()
    shape = (7, 6) if which == "mlp" else (7, 2, 6, 6)
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    with torch.no_grad():
        want = tmodel(torch.from_numpy(x)).numpy()
    got = model(symbp.tensor(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for name, value in tmodel.state_dict().items():
        ours = dict(model.named_parameters()).get(name)
        ours = ours.numpy() if ours is not None else dict(model.named_buffers())[name]
        np.testing.assert_array_equal(ours, value.numpy(), err_msg=name)


def test_a_training_checkpoint_pt_is_unwrapped(tmp_path):
    torch = pytest.importorskip("torch")
    tmlp, _ = torch_models(torch)
    torch.save({"epoch": 4, "model_state_dict": tmlp.state_dict()}, tmp_path / "ckpt.pt")
    model = symbp_mlp()
    load_weights(model, tmp_path / "ckpt.pt")
    np.testing.assert_array_equal(model[2].bias.data, tmlp[2].bias.detach().numpy())
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match=r"holds no state dict \(a list\)"):
        load_weights(model, tmp_path / "list.pt")


def test_save_pt_loads_into_torch(tmp_path):
    torch = pytest.importorskip("torch")
    tmlp, _ = torch_models(torch)
    symbp.manual_seed(3)
    model = symbp_mlp()
    save_weights(model, tmp_path / "out.pt")
    tmlp.load_state_dict(torch.load(tmp_path / "out.pt", weights_only=True))
    x = np.random.default_rng(1).normal(size=(4, 6)).astype(np.float32)
    with torch.no_grad():
        want = tmlp(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model(symbp.tensor(x)).numpy(), want, rtol=1e-5, atol=1e-6)


def test_npz_round_trip(tmp_path):
    symbp.manual_seed(1)
    model = symbp_cnn()
    model[1].register_buffer("running_mean", np.arange(4, dtype=np.float32))
    path = save_weights(model, tmp_path / "w.npz")
    with np.load(path) as z:  # plain NumPy on the other side
        assert sorted(z.files) == sorted(model.state_dict())
        np.testing.assert_array_equal(z["0.weight"], model[0].weight.data)
    symbp.manual_seed(2)
    other = symbp_cnn()
    load_weights(other, path)
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)
        assert a.dtype == b.dtype
    x = np.random.default_rng(2).normal(size=(3, 2, 6, 6)).astype(np.float32)
    model.eval(), other.eval()
    np.testing.assert_array_equal(model(symbp.tensor(x)).numpy(), other(symbp.tensor(x)).numpy())


def test_checkpoint_npz_gives_its_model_weights(tmp_path):
    symbp.manual_seed(4)
    model = symbp_mlp()
    symbp.save_checkpoint(tmp_path / "c.npz", model, symbp.optim.SGD(model.parameters(), lr=0.1))
    assert read_state_dict(tmp_path / "c.npz").keys() == model.state_dict().keys()
    other = symbp_mlp()
    load_weights(other, tmp_path / "c.npz")
    np.testing.assert_array_equal(other[0].weight.data, model[0].weight.data)


def test_from_a_mapping_with_rename():
    symbp.manual_seed(5)
    model = symbp_mlp()
    state = {f"module.{k}": v * 2 for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError, match=r"start with 'module\.'.*removeprefix\('module\.'\)"):
        load_weights(symbp_mlp(), state)
    other = symbp_mlp()
    load_weights(other, state, rename=lambda k: k.removeprefix("module."))
    np.testing.assert_array_equal(other[0].weight.data, model[0].weight.data * 2)
    table = {k: k.removeprefix("module.") for k in state}
    load_weights(other, state, rename=table)


def test_name_mismatch_lists_both_sides():
    model = symbp_mlp()
    state = model.state_dict()
    state["2.scale"] = state.pop("2.bias")
    with pytest.raises(
        WeightsError,
        match=r"missing from the state dict: 2\.bias; .*not in the model: 2\.scale \[3\]",
    ):
        load_weights(symbp_mlp(), state)
    result = load_weights(symbp_mlp(), state, strict=False)
    assert result.missing_keys == ["2.bias"] and result.unexpected_keys == ["2.scale"]


def test_shape_mismatch_names_the_parameter_and_changes_nothing():
    model = symbp_mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = dict(before)
    state["0.weight"] = np.zeros((6, 5), np.float32)
    state["0.bias"] = np.ones(5, np.float32)
    with pytest.raises(
        WeightsError, match=r"'0\.weight' is \[5,6\] in Sequential but \[6,5\].*transposed"
    ):
        load_weights(model, state)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    bn = symbp_cnn()
    state = bn.state_dict()
    state["1.running_var"] = np.ones(3, np.float32)  # buffers are checked too
    with pytest.raises(WeightsError, match=r"'1\.running_var' is \[4\]"):
        load_weights(bn, state)


def test_pt_without_torch_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "w.pt").write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails
    with pytest.raises(ImportError, match=r"needs PyTorch \(pip install torch\).*np\.savez"):
        load_weights(symbp_mlp(), tmp_path / "w.pt")


def test_unknown_suffix_and_missing_file(tmp_path):
    (tmp_path / "w.h5").write_bytes(b"")
    with pytest.raises(WeightsError, match=r"unknown weights format '\.h5'"):
        load_weights(symbp_mlp(), tmp_path / "w.h5")
    with pytest.raises(FileNotFoundError, match="no such weights file"):
        load_weights(symbp_mlp(), tmp_path / "none.pt")


# ---------------------------------------------------------------- safetensors


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_safetensors_from_torch_gives_the_same_forward(tmp_path, which):
    """A file safetensors.torch wrote from a PyTorch module (as Hugging Face users share
    weights) loads into the same symbp model, which then computes PyTorch's forward."""
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    tmlp, tcnn = torch_models(torch)
    tmodel, model = (tmlp, symbp_mlp()) if which == "mlp" else (tcnn, symbp_cnn())
    st_torch.save_file(tmodel.state_dict(), str(tmp_path / "w.safetensors"))
    load_weights(model, tmp_path / "w.safetensors")
    model.eval()
    shape = (7, 6) if which == "mlp" else (7, 2, 6, 6)
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    with torch.no_grad():
        want = tmodel(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model(symbp.tensor(x)).numpy(), want, rtol=1e-5, atol=1e-6)


def test_safetensors_written_by_symbp_loads_into_torch(tmp_path):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    model = symbp_cnn()
    model.train()
    model(symbp.tensor(np.random.default_rng(1).normal(size=(8, 2, 6, 6)).astype(np.float32)))
    save_weights(model, tmp_path / "w.safetensors")
    _, tcnn = torch_models(torch)
    tcnn.load_state_dict(st_torch.load_file(str(tmp_path / "w.safetensors")))
    for name, value in tcnn.state_dict().items():
        ours = dict(model.named_parameters()).get(name)
        ours = ours.numpy() if ours is not None else dict(model.named_buffers())[name]
        np.testing.assert_array_equal(value.numpy(), ours, err_msg=name)
        assert value.numpy().dtype == np.asarray(ours).dtype, name  # num_batches_tracked int64


def test_safetensors_round_trip_without_torch(tmp_path, monkeypatch):
    pytest.importorskip("safetensors")
    monkeypatch.setitem(sys.modules, "torch", None)  # the NumPy API needs no torch
    model = symbp_mlp()
    save_weights(model, tmp_path / "w.safetensors")
    again = symbp_mlp()
    load_weights(again, tmp_path / "w.safetensors")
    for (n, p), q in zip(model.named_parameters(), again.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=n)


def test_a_corrupt_safetensors_file_is_a_clear_error(tmp_path):
    pytest.importorskip("safetensors")
    (tmp_path / "w.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(WeightsError, match=r"cannot read .* as safetensors"):
        load_weights(symbp_mlp(), tmp_path / "w.safetensors")


def test_safetensors_without_the_package_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "w.safetensors").write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match=r"symbp\[safetensors\]"):
        load_weights(symbp_mlp(), tmp_path / "w.safetensors")
