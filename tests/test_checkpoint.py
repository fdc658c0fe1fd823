"""Checkpoints: exact round trips (the reference is the uninterrupted run), atomic writes under
a simulated crash, and clear errors for corrupt files and models that do not fit."""

import os
import zipfile

import numpy as np
import pytest

import symbp
from symbp import nn
from symbp.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from symbp.optim import lr_scheduler


def make(seed=0, hidden=3):
    symbp.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 2))
    opt = symbp.optim.Adam(net.parameters(), lr=0.05)
    sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    return net, opt, sched


RNG = np.random.default_rng(1)
DATA = RNG.normal(size=(16, 4)).astype(np.float32), RNG.normal(size=(16, 2)).astype(np.float32)


def train(net, opt, sched, epochs):
    x, y = symbp.tensor(DATA[0]), symbp.tensor(DATA[1])
    losses = []
    for _ in range(epochs):
        opt.zero_grad()
        loss = nn.MSELoss()(net(x), y)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


def params(net):
    return {n: p.data.numpy().copy() for n, p in net.named_parameters()}


def test_round_trip_resumes_exactly(tmp_path):
    net, opt, sched = make()
    history = {"loss": train(net, opt, sched, 3)}
    path = save_checkpoint(
        tmp_path / "run.npz", net, opt, scheduler=sched, epoch=3, history=history
    )

    # the uninterrupted run is the reference
    ref_losses = train(net, opt, sched, 4)
    ref = params(net)

    net2, opt2, sched2 = make(seed=7)  # other weights, fresh optimizer and schedule
    ckpt = load_checkpoint(path, net2, opt2, scheduler=sched2)
    assert ckpt.epoch == 3 and ckpt.history == history
    assert sched2.last_epoch == 3 and opt2.param_groups[0]["lr"] == 0.05 * 0.5
    assert train(net2, opt2, sched2, 4) == ref_losses
    for name, value in params(net2).items():
        np.testing.assert_array_equal(value, ref[name], err_msg=name)


def test_the_file_is_plain_numpy(tmp_path):
    net, opt, sched = make()
    train(net, opt, sched, 1)
    save_checkpoint(tmp_path / "c.npz", net, opt)
    with np.load(tmp_path / "c.npz") as z:  # no symbp needed to read the weights
        for name, p in net.named_parameters():
            np.testing.assert_array_equal(z[f"model/{name}"], p.data)
        np.testing.assert_array_equal(
            z["optimizer/state/0/exp_avg"], opt.state[id(net[0].weight)]["exp_avg"]
        )


def test_optimizer_and_scheduler_state_round_trip(tmp_path):
    net, opt, _ = make()
    plateau = lr_scheduler.ReduceLROnPlateau(opt)  # best = inf must survive JSON
    multi = lr_scheduler.MultiStepLR(opt, milestones=[2, 2, 5])  # a Counter keyed by int
    train(net, opt, multi, 3)
    save_checkpoint(tmp_path / "a.npz", net, opt, scheduler=plateau)
    save_checkpoint(
        tmp_path / "b.npz", net, opt, scheduler=multi, extra={"note": "x", "w": np.eye(2)}
    )
    net2, opt2, _ = make(seed=3)
    p2, m2 = lr_scheduler.ReduceLROnPlateau(opt2), lr_scheduler.MultiStepLR(opt2, milestones=[9])
    load_checkpoint(tmp_path / "a.npz", net2, opt2, scheduler=p2)
    assert p2.state_dict() == plateau.state_dict() and p2.best == float("inf")
    ckpt = load_checkpoint(tmp_path / "b.npz", net2, opt2, scheduler=m2)
    assert m2.state_dict() == multi.state_dict() and m2.milestones == multi.milestones
    assert ckpt.extra["note"] == "x"
    np.testing.assert_array_equal(ckpt.extra["w"], np.eye(2))
    saved, loaded = opt.state_dict(), opt2.state_dict()
    assert saved["param_groups"] == loaded["param_groups"]
    for i, st in saved["state"].items():
        for k, v in st.items():
            np.testing.assert_array_equal(loaded["state"][i][k], v)


@pytest.mark.slow
def test_compiled_training_resumes(tmp_path):
    X, y = DATA
    net, opt, _ = make()
    model = symbp.compile(net, nn.MSELoss(), opt)
    model.fit(X, y, epochs=2, batch_size=4, shuffle=False)
    save_checkpoint(tmp_path / "c.npz", model, epoch=2)  # the network and its optimizer
    ref = model.fit(X, y, epochs=2, batch_size=4, shuffle=False)["loss"]

    net2, opt2, _ = make(seed=5)
    model2 = symbp.compile(net2, nn.MSELoss(), opt2)
    model2.fit(X, y, epochs=1, batch_size=4, shuffle=False)  # compiled and trained elsewhere
    assert load_checkpoint(tmp_path / "c.npz", model2).epoch == 2
    resumed = model2.fit(X, y, epochs=2, batch_size=4, shuffle=False)["loss"]
    np.testing.assert_array_equal(resumed, ref)
    for (name, a), b in zip(net.named_parameters(), net2.parameters()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)


# ---------------------------------------------------------------- atomicity


def saved_weight(path):
    with np.load(path) as z:
        return z["model/0.weight"].copy()


def test_failed_replace_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    net, opt, sched = make()
    path = save_checkpoint(tmp_path / "run.npz", net, opt, epoch=1)
    before = saved_weight(path)
    train(net, opt, sched, 2)

    def no_space(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, net, opt, epoch=3)
    monkeypatch.undo()
    np.testing.assert_array_equal(saved_weight(path), before)
    assert load_checkpoint(path).epoch == 1
    assert os.listdir(tmp_path) == ["run.npz"]  # the temporary file is gone


def test_crash_mid_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    net, opt, sched = make()
    path = save_checkpoint(tmp_path / "run.npz", net, opt, epoch=1)
    before = path.read_bytes()
    train(net, opt, sched, 2)

    def crash(f, **arrays):  # half an archive, then the process is interrupted
        f.write(b"PK\x03\x04" + b"\0" * 100)
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, net, opt, epoch=3)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["run.npz"]


def test_written_with_the_usual_permissions(tmp_path):
    net, opt, _ = make()
    path = save_checkpoint(tmp_path / "run.npz", net, opt)
    mask = os.umask(0)
    os.umask(mask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~mask)


# ---------------------------------------------------------------- corrupt files


def test_truncated_file_is_a_clear_error(tmp_path):
    net, opt, _ = make()
    path = save_checkpoint(tmp_path / "run.npz", net, opt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"run\.npz: the file is truncated or corrupt"):
        load_checkpoint(path, net, opt)


def test_flipped_bytes_fail_the_crc(tmp_path):
    net, opt, _ = make()
    path = save_checkpoint(tmp_path / "run.npz", net, opt)
    with zipfile.ZipFile(path) as z:  # find the weight's data inside the archive
        info = z.getinfo("model/0.weight.npy")
    data = bytearray(path.read_bytes())
    at = info.header_offset + 30 + len(info.filename) + 128 + 4  # past headers, into the floats
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"hello, not a zip file")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "junk.npz")
    np.savez(tmp_path / "weights.npz", w=np.ones(3))
    with pytest.raises(CheckpointError, match=r"not a symbp checkpoint.*symbp\.load_weights"):
        load_checkpoint(tmp_path / "weights.npz")
    with pytest.raises(FileNotFoundError, match=r"nowhere\.npz"):
        load_checkpoint(tmp_path / "nowhere.npz")


# ---------------------------------------------------------------- models that do not fit


def test_mismatched_shape_names_the_parameter_and_changes_nothing(tmp_path):
    net, opt, _ = make(hidden=3)
    path = save_checkpoint(tmp_path / "run.npz", net, opt)
    other, other_opt, _ = make(seed=4, hidden=5)
    before = params(other)
    with pytest.raises(
        CheckpointError, match=r"'0\.weight' has shape \[3,4\] in the file but \[5,4\]"
    ):
        load_checkpoint(path, other, other_opt)
    for name, value in params(other).items():
        np.testing.assert_array_equal(value, before[name])


def test_missing_and_unexpected_names(tmp_path):
    net, opt, _ = make()
    path = save_checkpoint(tmp_path / "run.npz", net, opt)
    symbp.manual_seed(0)
    bigger = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2), nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match=r"missing from the file: 3\.weight, 3\.bias"):
        load_checkpoint(path, bigger)
    load_checkpoint(path, bigger, strict=False)  # the common names load
    np.testing.assert_array_equal(bigger[0].weight.data, net[0].weight.data)


def test_optimizer_mismatches(tmp_path):
    net, opt, _ = make()
    path = save_checkpoint(tmp_path / "run.npz", net, opt)
    with pytest.raises(CheckpointError, match="holds Adam state, the optimizer is SGD"):
        load_checkpoint(path, net, symbp.optim.SGD(net.parameters(), lr=0.1))
    reordered = symbp.optim.Adam(list(net.parameters())[::-1], lr=0.05)
    with pytest.raises(
        CheckpointError, match=r"slot 0 holds '0\.weight' in the file but '2\.bias'"
    ):
        load_checkpoint(path, net, reordered)
    net_only = save_checkpoint(tmp_path / "net.npz", net)
    with pytest.raises(CheckpointError, match="holds no optimizer state"):
        load_checkpoint(net_only, net, opt)
    with pytest.raises(CheckpointError, match="holds no scheduler state"):
        load_checkpoint(path, net, opt, scheduler=lr_scheduler.StepLR(opt, 3))


def test_numpy_scalars_and_a_missing_directory(tmp_path):
    net, opt, _ = make()
    history = {"loss": [np.float32(0.5), np.float64(0.25)]}  # what NumPy code tends to collect
    save_checkpoint(tmp_path / "c.npz", net, opt, epoch=np.int64(3), history=history)
    ckpt = load_checkpoint(tmp_path / "c.npz")
    assert ckpt.epoch == 3 and ckpt.history == {"loss": [0.5, 0.25]}
    with pytest.raises(FileNotFoundError, match="no directory"):
        save_checkpoint(tmp_path / "nowhere" / "c.npz", net, opt)
