"""gradcheck on max pooling with exact ties: no false failures, and wrong gradients still fail.

A window whose maximum is tied is a kink: moving one tied entry up by h raises the max, moving
it down does not, so a central difference measures half the one-sided slope, which neither
PyTorch's gradient (all of it to the first maximum) nor any other matches. gradcheck reads
the kinks from the IR (which taps of each window are its maximum) and skips the entries whose
±h differences change them.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import symbp
import symbp.functional as F
from symbp import nn
from symbp.check import GradcheckWarning, gradcheck
from symbp.compiler.ops import OPS


def tied_pair_net():
    """1×1 convolution of two channels, max pool, linear: the pooled max is max(w0, w1)."""
    net = nn.Sequential(
        nn.Conv2d(2, 1, 1, bias=False), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1, 1)
    ).double()
    net[0].weight.data = np.array([[[[0.5]], [[0.5]]]])  # w0 = w1: a tie
    net[3].weight.data = np.array([[2.0]])
    net[3].bias.data = np.array([0.25])
    x = np.zeros((1, 2, 2, 2))
    x[0, 0, 0, 0] = 1.0  # position (0, 0) outputs w0, position (0, 1) outputs w1
    x[0, 1, 0, 1] = 1.0
    return net, x


def loss_fn(out, t):
    return ((out - t) ** 2).sum()


def test_a_tie_between_parameters_is_skipped_not_failed():
    net, x = tied_pair_net()
    t = np.zeros((1, 1))
    with pytest.warns(GradcheckWarning, match=r"max pooling in '1': 1 window\(s\) with tied"):
        report = gradcheck(net, loss_fn, x, t)
    assert report.ok, report
    row = report["0.weight"]
    # both weights move the tie: each ±h difference crosses the kink
    assert row.skipped_indices == ((0, 0, 0, 0), (0, 1, 0, 0))
    assert row.checked == 0 and row.verdict == "ok (all near kinks)"
    # PyTorch's convention, which symbp follows: everything to the first maximum, w0
    out = 2 * 0.5 + 0.25
    np.testing.assert_allclose(row.symbolic.ravel(), [2 * out * 2, 0.0])
    # and why skipping is right: the central difference straddles the kink, half of each
    h = 1e-6
    w = net[0].weight.numpy()
    w[0, 0, 0, 0] = 0.5 + h
    up = loss_fn(net(symbp.tensor(x)), symbp.tensor(t)).item()
    w[0, 0, 0, 0] = 0.5 - h
    down = loss_fn(net(symbp.tensor(x)), symbp.tensor(t)).item()
    w[0, 0, 0, 0] = 0.5
    assert (up - down) / (2 * h) == pytest.approx(out * 2, rel=1e-5)  # half of 2·out·2


def test_tied_inputs_skip_exactly_the_tied_entries():
    def pooled(x):
        return (F.max_pool2d(x, 2) * symbp.tensor(np.arange(1.0, 5.0).reshape(1, 1, 2, 2))).sum()

    x = np.arange(16.0).reshape(1, 1, 4, 4) / 16
    x[0, 0, 0, 0] = x[0, 0, 0, 1] = x[0, 0, 1, 1] = 0.75  # window (0, 0): a three-way tie
    with pytest.warns(GradcheckWarning, match="tied maxima"):
        report = gradcheck(None, pooled, x)
    assert report.ok, report
    row = report["x"]
    assert set(row.skipped_indices) == {(0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 1, 1)}
    assert row.checked == 13
    # the first maximum (row-major) takes the window's gradient, the other tied entries none
    assert row.symbolic[0, 0, 0, 0] == 1.0
    assert row.symbolic[0, 0, 0, 1] == 0.0 and row.symbolic[0, 0, 1, 1] == 0.0


def test_ties_that_move_together_are_checked():
    """A zero patch of the input gives every conv output there the bias: tied windows whose
    entries move together under every parameter, so nothing is skipped and all must match."""
    symbp.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * 3 * 3, 3)
    ).double()
    x = np.random.default_rng(1).standard_normal((2, 1, 6, 6))
    x[:, :, :4, :4] = 0.0  # windows (0, 0) of both samples see only zeros
    labels = np.array([0, 2])
    with pytest.warns(GradcheckWarning, match="tied maxima"):
        report = gradcheck(net, nn.CrossEntropyLoss(), x, labels)
    assert report.ok, report
    assert all(r.skipped == 0 for r in report.rows)
    assert report["0.bias"].max_rel_error < 1e-6


def test_a_wrong_pooling_gradient_is_still_caught(monkeypatch):
    symbp.manual_seed(2)
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * 2 * 2, 3),
    ).double()
    x = np.random.default_rng(2).standard_normal((2, 1, 4, 4))
    x[0, 0, 0, :2] = 3.0  # and a tie in the first window, as above
    labels = np.array([1, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GradcheckWarning)
        assert gradcheck(net, nn.CrossEntropyLoss(), x, labels).ok

        rule = OPS["maxpool2d_grad"]
        right = rule.numpy

        def last_tap(node, vals, dims):  # routes to the window's bottom-right tap instead
            x, ct = vals
            out = np.zeros_like(x)
            out[:, :, 1::2, 1::2] = ct
            return out

        for wrong in (lambda node, vals, dims: 2 * right(node, vals, dims), last_tap):
            monkeypatch.setattr(rule, "numpy", wrong)
            report = gradcheck(net, nn.CrossEntropyLoss(), x, labels)
            assert not report.ok
            assert report["0.weight"].verdict == "FAIL"
            assert report["4.weight"].verdict == "ok"  # after the pooling: unaffected
