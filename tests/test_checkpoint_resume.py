"""Resuming from a checkpoint is the same as never stopping: N epochs in one run against N/2,
a checkpoint, and N/2 more from it, in float64, compared exactly -- the parameters, the
optimizer's and the scheduler's state, the history and early stopping's counters -- through
``fit`` and through ``symbp train --checkpoint FILE --resume``."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import symbp
from symbp import nn
from symbp.checkpoint import CheckpointError, load_checkpoint, read_npz
from symbp.optim import lr_scheduler
from symbp.training import EarlyStopping

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(3)
X = RNG.normal(size=(48, 5))
Y = RNG.integers(0, 3, size=48)
XV = RNG.normal(size=(16, 5))
YV = RNG.integers(0, 3, size=16)


def make(seed=0):
    symbp.manual_seed(seed)
    net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    opt = symbp.optim.Adam(net.parameters(), lr=0.05)
    return net, opt, symbp.compile(net, nn.CrossEntropyLoss(), opt)


def params(net):
    return {name: p.data.numpy().copy() for name, p in net.named_parameters()}


def assert_same_params(a, b):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def counters(stop):
    return (stop.best, stop.best_epoch, stop.wait, stop.stopped_epoch, stop._epoch)


def cosine_run(path, epochs, resume=None, seed=0):
    """lr follows a cosine with period 4 (0.05, 0.025, 0, 0.025, 0.05 ...) and early stopping
    watches it: its minimum is epoch 2, and patience 3 stops training after epoch 5."""
    net, opt, model = make(seed)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=2)
    stop = EarlyStopping(monitor="lr", mode="min", patience=3, min_delta=1e-9)
    history = model.fit(X, Y, epochs=epochs, batch_size=8, seed=11, scheduler=sched,
                        early_stopping=stop, checkpoint=path, resume=resume)  # fmt: skip
    return net, sched, stop, history


@pytest.mark.slow
def test_early_stopping_resumes_with_its_counters_and_best_parameters(tmp_path):
    full_net, _, full_stop, full_history = cosine_run(tmp_path / "full.npz", epochs=20)
    assert len(full_history["loss"]) == 6 and full_stop.stopped_epoch == 5
    assert full_stop.best_epoch == 2

    # stopped after 4 epochs: early stopping has seen its best (epoch 2) and one bad epoch
    path = tmp_path / "half.npz"
    _, _, half_stop, _ = cosine_run(path, epochs=4)
    assert (half_stop.best_epoch, half_stop.wait, half_stop.stopped_epoch) == (2, 1, None)
    saved = load_checkpoint(path).early_stopping
    assert saved["best_epoch"] == 2 and saved["wait"] == 1 and saved["epoch"] == 4
    assert set(saved["best_weights"]) == set(params(full_net))

    # resumed from other initial values: everything comes from the file, and the parameters
    # restored at the stop are epoch 2's, which only the checkpoint still holds
    net, _, stop, history = cosine_run(path, epochs=20, resume=path, seed=99)
    assert counters(stop) == counters(full_stop)
    assert history == full_history
    assert_same_params(params(net), params(full_net))
    ref_net, opt, ref = make()
    ref.fit(X, Y, epochs=3, batch_size=8, seed=11,
            scheduler=lr_scheduler.CosineAnnealingLR(opt, T_max=2))  # fmt: skip
    assert_same_params(params(net), params(ref_net))


@pytest.mark.slow
def test_a_run_early_stopping_ended_stays_ended(tmp_path):
    path = tmp_path / "run.npz"
    full_net, _, _, full_history = cosine_run(path, epochs=20)
    net, _, stop, history = cosine_run(path, epochs=30, resume=path, seed=5)
    assert history == full_history and stop.stopped_epoch == 5
    assert_same_params(params(net), params(full_net))  # the best epoch's, as the run ended


@pytest.mark.slow
def test_resume_with_validation_and_plateau_matches_one_run(tmp_path):
    """ReduceLROnPlateau and early stopping on val_loss, 8 epochs against 4 + 4."""

    def run(path, epochs, resume=None, seed=0):
        net, opt, model = make(seed)
        sched = lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0)
        stop = EarlyStopping(monitor="val_loss", patience=5, restore_best=True)
        history = model.fit(X, Y, epochs=epochs, batch_size=8, seed=2, scheduler=sched,
                            early_stopping=stop, validation_data=(XV, YV), checkpoint=path,
                            resume=resume)  # fmt: skip
        return net, opt, sched, stop, history

    full = run(tmp_path / "full.npz", 8)
    half = tmp_path / "half.npz"
    run(half, 4)
    resumed = run(half, 8, resume=half, seed=7)
    assert_same_params(params(resumed[0]), params(full[0]))
    assert resumed[2].state_dict() == full[2].state_dict()
    assert counters(resumed[3]) == counters(full[3])
    assert resumed[4] == full[4]
    a, b = read_npz(tmp_path / "full.npz"), read_npz(half)
    assert a.keys() == b.keys()
    for key in a:
        if key != "__symbp__":
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_early_stopping_state_round_trip_and_mismatches(tmp_path):
    net, opt, _ = make()
    stop = EarlyStopping(monitor="val_loss", patience=4)
    for value in (1.0, 0.5, 0.7):
        stop.update(value)
    stop.best_weights = {"0.weight": np.arange(6.0).reshape(2, 3)}
    path = symbp.save_checkpoint(tmp_path / "c.npz", net, opt, early_stopping=stop)
    again = EarlyStopping(monitor="val_loss", patience=10)  # more patience is allowed
    load_checkpoint(path, early_stopping=again)
    assert counters(again) == (0.5, 1, 1, None, 3)
    np.testing.assert_array_equal(again.best_weights["0.weight"], np.arange(6.0).reshape(2, 3))
    fresh = EarlyStopping(monitor="val_loss")
    assert math.isnan(fresh.state_dict()["best"])  # NaN survives the JSON metadata too
    load_checkpoint(symbp.save_checkpoint(tmp_path / "n.npz", net, early_stopping=fresh),
                    early_stopping=fresh)  # fmt: skip
    with pytest.raises(CheckpointError, match=r"c\.npz: early stopping has monitor='val_loss'"):
        load_checkpoint(path, early_stopping=EarlyStopping(monitor="loss"))
    plain = symbp.save_checkpoint(tmp_path / "p.npz", net, opt)
    with pytest.raises(CheckpointError, match=r"p\.npz holds no early-stopping state"):
        load_checkpoint(plain, early_stopping=EarlyStopping())


# ---------------------------------------------------------------- the command line

MODEL_FILE = '''
"""A float64 MLP on fixed random data, for the resume tests."""
import numpy as np
import symbp
from symbp import nn

rng = np.random.default_rng(5)
X = rng.normal(size=(60, 5))
y = rng.integers(0, 3, size=60)
symbp.manual_seed(0)
model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
loss_fn = nn.CrossEntropyLoss()
optimizer = symbp.optim.Adam(model.parameters(), lr=0.05)
data = (X, y)
sample = (X[:4], y[:4])
'''


def cli(*args):
    return subprocess.run([sys.executable, "-m", "symbp.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)  # fmt: skip


@pytest.mark.parametrize(
    "options",
    [
        ["--scheduler", "step:2:0.5", "--patience", "10"],
        ["--scheduler", "cosine:2", "--patience", "1", "--val-split", "0"],
    ],
    ids=["step-lr", "cosine-stopping"],
)
@pytest.mark.slow
def test_cli_resume_matches_one_run(tmp_path, options):
    model = tmp_path / "mlp.py"
    model.write_text(textwrap.dedent(MODEL_FILE))
    common = [str(model), "--batch-size", "16", "--quiet", *options]
    full, half = tmp_path / "full.npz", tmp_path / "half.npz"
    out = cli("train", *common, "--epochs", "6", "--checkpoint", str(full))
    assert out.returncode == 0, out.stderr
    # --resume with no file yet starts afresh, then picks up where the file left off
    out = cli("train", *common, "--epochs", "3", "--checkpoint", str(half), "--resume",
              )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"no checkpoint {half} yet" in out.stdout
    out = cli("train", *common, "--epochs", "6", "--checkpoint", str(half), "--resume",
              )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"resuming from {half} after epoch 3" in out.stdout
    a, b = read_npz(full), read_npz(half)
    assert a.keys() == b.keys() and any(k.startswith("early_stopping/") for k in a)
    for key in a:
        if key != "__symbp__":
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    ca, cb = load_checkpoint(full), load_checkpoint(half)
    assert ca.history == cb.history and ca.epoch == cb.epoch
    assert (
        ca.scheduler == cb.scheduler
        and ca.optimizer["param_groups"] == cb.optimizer["param_groups"]
    )
    state_a, state_b = dict(ca.early_stopping), dict(cb.early_stopping)
    state_a.pop("best_weights"), state_b.pop("best_weights")
    assert state_a == state_b and state_a["epoch"] == len(ca.history["loss"])
    if "cosine:2" in options:  # lr 0 at epoch 3 stalls the loss: stopped after the resume
        assert state_a["stopped_epoch"] is not None and 3 <= ca.epoch < 6


@pytest.mark.slow
def test_cli_resume_needs_a_checkpoint_and_a_known_scheduler(tmp_path):
    model = tmp_path / "mlp.py"
    model.write_text(textwrap.dedent(MODEL_FILE))
    out = cli("train", str(model), "--resume")
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert "--resume needs --checkpoint FILE" in line
    out = cli("train", str(model), "--scheduler", "linear:3")
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert "unknown scheduler 'linear:3'" in line
