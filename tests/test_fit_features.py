"""``fit`` as PyTorch and Keras users expect it: schedulers, early stopping, checkpoints, resume.

Each test compares against a reference computed independently of the feature under test: an
uninterrupted run, a closed-form schedule, a hand count of patience on a known curve, a
sequence of one-epoch ``fit`` calls with ``lr`` set by hand.
"""

from __future__ import annotations

import importlib.util
import math
import os

import numpy as np
import pytest

import symbp
import symbp.checkpoint
import symbp.progress
from symbp import nn
from symbp.checkpoint import load_checkpoint
from symbp.optim import lr_scheduler
from symbp.training import EarlyStopping

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 4)).astype(np.float32)
Y = RNG.integers(0, 3, size=40)
XV = RNG.normal(size=(16, 4)).astype(np.float32)
YV = RNG.integers(0, 3, size=16)


def make(opt="sgd", lr=0.1, seed=0):
    symbp.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    cls = {"sgd": symbp.optim.SGD, "adam": symbp.optim.Adam}[opt]
    optimizer = cls(net.parameters(), lr=lr)
    return net, optimizer, symbp.compile(net, nn.CrossEntropyLoss(), optimizer)


def params(net):
    return [p.data.numpy().copy() for p in net.parameters()]


def assert_same(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_history_records_lr():
    _, _, model = make(lr=0.05)
    history = model.fit(X, Y, epochs=3, batch_size=8, seed=1)
    assert history["lr"] == [0.05] * 3
    assert len(history["loss"]) == 3


def test_steplr_sequence_is_the_closed_form():
    _, opt, model = make(lr=0.1)
    sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    history = model.fit(X, Y, epochs=7, batch_size=8, seed=1, scheduler=sched)
    assert history["lr"] == pytest.approx([0.1 * 0.5 ** (e // 2) for e in range(7)], rel=1e-12)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)


def test_cosine_sequence_is_the_closed_form():
    _, opt, model = make(lr=0.2)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=4, eta_min=0.01)
    history = model.fit(X, Y, epochs=5, batch_size=8, seed=1, scheduler=sched)
    want = [0.01 + (0.2 - 0.01) * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(5)]
    assert history["lr"] == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_scheduled_lr_takes_effect_each_epoch():
    """The reference: one-epoch fits with lr set by hand (no shuffle, so orders match)."""
    net, opt, model = make(lr=0.3)
    sched = lr_scheduler.ExponentialLR(opt, gamma=0.5)
    model.fit(X, Y, epochs=4, batch_size=8, shuffle=False, scheduler=sched)
    ref_net, ref_opt, ref = make(lr=0.3)
    for e in range(4):
        ref_opt.param_groups[0]["lr"] = 0.3 * 0.5**e
        ref.fit(X, Y, epochs=1, batch_size=8, shuffle=False)
    assert_same(params(net), params(ref_net))


def test_callback_changing_lr_takes_effect():
    net, opt, model = make(lr=0.3)

    def halve(epoch, history):
        opt.param_groups[0]["lr"] *= 0.5

    history = model.fit(X, Y, epochs=3, batch_size=8, shuffle=False, callback=halve)
    assert history["lr"] == [0.3, 0.15, 0.075]
    ref_net, ref_opt, ref = make(lr=0.3)
    for lr in (0.3, 0.15, 0.075):
        ref_opt.param_groups[0]["lr"] = lr
        ref.fit(X, Y, epochs=1, batch_size=8, shuffle=False)
    assert_same(params(net), params(ref_net))


def test_reduce_on_plateau_gets_the_monitored_metric():
    _, opt, model = make(lr=0.5)
    sched = lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0, threshold=0.0)
    history = model.fit(
        X, Y, epochs=6, batch_size=8, seed=2, validation_data=(XV, YV), scheduler=sched
    )
    # by hand: after each epoch whose val_loss is not a new minimum, lr halves
    lr, best, want = 0.5, math.inf, []
    for v in history["val_loss"]:
        want.append(lr)
        if v < best:
            best = v
        else:
            lr *= 0.5
    assert history["lr"] == want
    assert sched.best == min(history["val_loss"])


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    path = tmp_path / "run.npz"
    full_net, _, full = make("adam", lr=0.01)
    full_history = full.fit(X, Y, epochs=6, batch_size=8, seed=7)

    _, _, part = make("adam", lr=0.01)
    part.fit(X, Y, epochs=3, batch_size=8, seed=7, checkpoint=path)
    assert load_checkpoint(path).epoch == 3

    new_net, _, resumed = make("adam", lr=0.01, seed=99)  # other initial values: all loaded
    history = resumed.fit(X, Y, epochs=6, batch_size=8, resume=path)  # seed from the file
    assert_same(params(new_net), params(full_net))
    assert history["loss"] == full_history["loss"]
    assert len(history["lr"]) == 6


def test_resume_with_a_scheduler(tmp_path):
    path = tmp_path / "run.npz"
    full_net, opt, full = make(lr=0.2)
    full.fit(X, Y, epochs=5, batch_size=8, seed=3, scheduler=lr_scheduler.StepLR(opt, 2, 0.5))
    _, opt, part = make(lr=0.2)
    part.fit(X, Y, epochs=3, batch_size=8, seed=3, scheduler=lr_scheduler.StepLR(opt, 2, 0.5),
             checkpoint=path)  # fmt: skip
    new_net, opt, resumed = make(lr=0.2)
    sched = lr_scheduler.StepLR(opt, 2, 0.5)
    history = resumed.fit(X, Y, epochs=5, batch_size=8, resume=path, scheduler=sched)
    assert history["lr"] == pytest.approx([0.2, 0.2, 0.1, 0.1, 0.05])
    assert_same(params(new_net), params(full_net))


def test_checkpoint_written_atomically_every_n_epochs(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        replaced.append((os.path.basename(src), os.fspath(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(symbp.checkpoint.os, "replace", spy)
    on_disk = []

    def look(epoch, history):
        on_disk.append(load_checkpoint(path).epoch if path.exists() else None)

    _, _, model = make()
    model.fit(X, Y, epochs=5, batch_size=8, seed=0, checkpoint=path, checkpoint_every=2,
              callback=look)  # fmt: skip
    assert on_disk == [None, 2, 2, 4, 5]  # every 2 epochs, and the last
    assert len(replaced) == 3
    assert all(dst == str(path) and src.endswith(".tmp") for src, dst in replaced)
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]  # no temporary file left
    ckpt = load_checkpoint(path)
    assert len(ckpt.history["loss"]) == 5 and "seed" in ckpt.extra


def test_early_stopping_on_a_flat_curve():
    """lr = 0: val_loss is the same every epoch, so patience 2 stops after epoch 3."""
    _, _, model = make(lr=0.0)
    stop = EarlyStopping(monitor="val_loss", patience=2)
    history = model.fit(
        X, Y, epochs=20, batch_size=8, seed=0, validation_data=(XV, YV), early_stopping=stop
    )
    assert len(history["loss"]) == 3
    assert stop.best_epoch == 0 and stop.stopped_epoch == 2


def test_early_stopping_restores_the_best_parameters():
    """Monitor the lr of a cosine schedule with period 4 (1, .5, 0, .5, 1, .5, 0 ...): its
    minimum is epoch 2; patience 3 stops after epoch 5, and the parameters go back to those
    after epoch 2, which a 3-epoch run reproduces."""
    net, opt, model = make(lr=0.2)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=2)
    stop = EarlyStopping(monitor="lr", mode="min", patience=3, min_delta=1e-6)
    history = model.fit(X, Y, epochs=20, batch_size=8, seed=0, scheduler=sched,
                        early_stopping=stop)  # fmt: skip
    assert len(history["loss"]) == 6
    assert stop.best_epoch == 2
    ref_net, opt, ref = make(lr=0.2)
    ref.fit(X, Y, epochs=3, batch_size=8, seed=0,
            scheduler=lr_scheduler.CosineAnnealingLR(opt, T_max=2))  # fmt: skip
    assert_same(params(net), params(ref_net))


def test_early_stopping_accepts_a_dict_and_checks_the_monitor():
    _, _, model = make(lr=0.0)
    # lr 0 and no shuffling: every epoch sums the same losses in the same order, a flat curve
    # (shuffled, float32 sums in another order can differ in the last bit and "improve")
    history = model.fit(X, Y, epochs=10, batch_size=8, shuffle=False,
                        early_stopping={"monitor": "loss", "patience": 1})  # fmt: skip
    assert len(history["loss"]) == 2
    with pytest.raises(ValueError, match=r"val_loss.*validation_data"):
        model.fit(X, Y, epochs=2, early_stopping=True)


def test_verbose_shows_progress(capsys, monkeypatch):
    _, _, model = make()
    model.fit(X, Y, epochs=2, batch_size=8, verbose=2, validation_data=(XV, YV))
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert "val_accuracy=" in lines[-1]
    monkeypatch.setenv("SYMBP_PROGRESS", "1")
    with monkeypatch.context() as without:  # symbp's own bar, where tqdm is not installed
        without.setattr(symbp.progress, "_tqdm", lambda: None)
        model.fit(X, Y, epochs=2, batch_size=8, verbose=True)
    out = capsys.readouterr().out
    assert "epoch 2/2 [####################] loss" in out and "samples/s" in out
    if importlib.util.find_spec("tqdm") is not None:  # tqdm's bar, with the same numbers
        history = model.fit(X, Y, epochs=2, batch_size=8, verbose=True)
        final = capsys.readouterr().out.rstrip("\n").split("\r")[-1]
        assert final.startswith("epoch: 100%") and "2/2" in final and "samples/s" in final
        assert f"loss={history['loss'][-1]:.4g}" in final
    monkeypatch.setenv("SYMBP_PROGRESS", "0")
    model.fit(X, Y, epochs=2, batch_size=8, verbose=True)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("bar", ["tqdm", "own"])
def test_verbose_shows_the_compile_before_the_epochs(bar, capsys, monkeypatch):
    """fit compiles what it needs before epoch 1, its stages shown as the epochs' bar is: in a
    notebook's output (tqdm's bar, or symbp's where tqdm is not installed), not in a pipe."""
    tqdm = bar == "tqdm"
    if tqdm:
        pytest.importorskip("tqdm")
    else:
        monkeypatch.setattr(symbp.progress, "_tqdm", lambda: None)
    monkeypatch.delenv("SYMBP_PROGRESS", raising=False)
    _, _, model = make()  # a new model: both programs built (or found in the cache) here
    model.fit(X, Y, epochs=2, batch_size=8, verbose=True, validation_data=(XV, YV))
    assert capsys.readouterr().out == ""  # captured output is no terminal: a pipe's case
    assert model.timings["fit_compile"] > 0  # compiled all the same
    monkeypatch.setattr(symbp.progress, "_in_notebook", lambda: True)  # a notebook's output
    _, _, model = make()
    history = model.fit(X, Y, epochs=2, batch_size=8, verbose=True, validation_data=(XV, YV))
    lines = [line.split("\r")[-1] for line in capsys.readouterr().out.split("\n")]
    done = ": 100%" if tqdm else " 5/5 [####################]"
    assert lines[0].startswith("compiling training program" + done) and "5/5" in lines[0]
    assert "stage" in lines[0] and "Numba compile" in lines[0]  # the last stage's name
    assert lines[1].startswith("compiling inference program") and "4/4" in lines[1]
    loss = f"loss{'=' if tqdm else ' '}{history['loss'][-1]:.4g}"  # tqdm's postfix, or ours
    assert lines[2].startswith("epoch") and loss in lines[2]
    assert len(lines) == 4 and model.timings["fit_compile"] > 0
    model.fit(X, Y, epochs=1, batch_size=8, verbose=True, validation_data=(XV, YV))
    out = capsys.readouterr().out  # compiled: the epochs' bar alone
    assert "compiling" not in out and "1/1" in out and model.timings["fit_compile"] == 0.0
    _, _, model = make()
    model.fit(X, Y, epochs=1, batch_size=8, verbose=False, validation_data=(XV, YV))
    assert capsys.readouterr().out == ""


def test_validation_data_are_checked_before_training():
    """fit builds the validation accuracy's program before epoch 1, from data the training
    program accepts: wrong ones are an error before any update, not after the first epoch."""
    net, _, model = make()
    before = params(net)
    with pytest.raises(TypeError, match=r"fit: validation_data: inputs x are float64"):
        model.fit(X, Y, epochs=2, batch_size=8, validation_data=(XV.astype(np.float64), YV))
    with pytest.raises(IndexError, match=r"fit: validation_data: label 3 \(row 0\) out of range"):
        model.fit(X, Y, epochs=2, batch_size=8, validation_data=(XV, YV * 0 + 3))
    assert_same(params(net), before)
    assert model.predict(XV).dtype == np.float32  # no float64 inference program was built


def test_restore_best_only_when_stopping_early():
    """As Keras: when the epochs run out first, the last parameters stay (lr of the cosine
    schedule, 4 epochs, patience 3: the minimum at epoch 2 is never followed by 3 bad ones)."""
    net, opt, model = make(lr=0.2)
    stop = EarlyStopping(monitor="lr", mode="min", patience=3, min_delta=1e-6)
    model.fit(X, Y, epochs=4, batch_size=8, seed=0, early_stopping=stop,
              scheduler=lr_scheduler.CosineAnnealingLR(opt, T_max=2))  # fmt: skip
    assert stop.stopped_epoch is None and stop.best_epoch == 2
    ref_net, opt, ref = make(lr=0.2)
    ref.fit(X, Y, epochs=4, batch_size=8, seed=0,
            scheduler=lr_scheduler.CosineAnnealingLR(opt, T_max=2))  # fmt: skip
    assert_same(params(net), params(ref_net))
