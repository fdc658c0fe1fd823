"""CNNs through ``symbp.compile``: the digits CNN trains to the issue's accuracy with ``fit``,
and the tutorial CIFAR CNN's compiled SGD steps match eager symbp and PyTorch (float64)."""

from __future__ import annotations

import numpy as np
import pytest

import symbp
from symbp import functional as F
from symbp import nn
from symbp.datasets import load_digits, train_test_split
from symbp.models import digits_cnn, tutorial_cnn

pytestmark = pytest.mark.slow  # each test compiles a CNN's program (20-60 s on a busy machine)


def test_digits_cnn_compiled_fit_reaches_97_percent():
    X, y = load_digits()
    X = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
    symbp.manual_seed(0)
    net = digits_cnn()  # examples/digits_cnn.py's network, its Dropout included
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.Adam(net.parameters(), lr=0.005))
    model.fit(X_train, y_train, epochs=8, batch_size=32, seed=0)
    net.eval()
    acc = float(np.mean(model.predict(X_test).argmax(1) == y_test))
    assert acc >= 0.97


def test_tutorial_cnn_compiled_sgd_steps_match_eager_and_pytorch(rng):
    x = rng.normal(size=(2, 3, 32, 32))
    y = np.array([3, 7])
    symbp.manual_seed(0)
    eager = tutorial_cnn().double()
    compiled_net = tutorial_cnn().double()
    compiled_net.load_state_dict({k: v.clone() for k, v in eager.state_dict().items()})
    opt = symbp.optim.SGD(eager.parameters(), lr=0.001)
    model = symbp.compile(
        compiled_net, nn.CrossEntropyLoss(), symbp.optim.SGD(compiled_net.parameters(), lr=0.001)
    )
    loss_fn = nn.CrossEntropyLoss()
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        theirs = tutorial_cnn(torch.nn).double()
        theirs.load_state_dict({k: torch.tensor(v.numpy()) for k, v in eager.state_dict().items()})
        topt = torch.optim.SGD(theirs.parameters(), lr=0.001)
    for _ in range(3):
        opt.zero_grad()
        want = loss_fn(eager(symbp.tensor(x)), symbp.tensor(y))
        want.backward()
        opt.step()
        got = model.step(x, y)
        assert got == pytest.approx(want.item(), rel=1e-10)
        if torch is not None:
            topt.zero_grad()
            tloss = torch.nn.CrossEntropyLoss()(theirs(torch.tensor(x)), torch.tensor(y))
            tloss.backward()
            topt.step()
            assert got == pytest.approx(tloss.item(), rel=1e-10)
    for k, v in compiled_net.state_dict().items():
        np.testing.assert_allclose(v, eager.state_dict()[k], rtol=1e-10, atol=1e-12, err_msg=k)
        if torch is not None:
            np.testing.assert_allclose(v, theirs.state_dict()[k].numpy(), rtol=1e-10, atol=1e-12)


def test_flatten_is_a_view_not_a_copy(rng):
    """Flatten of a stored feature map, and its gradient's reshape back, are carved from the
    same memory (no copy loop), in training and in predict; the numbers are eager's."""
    import re

    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 4))
    x, y = rng.normal(size=(5, 2, 6, 6)), np.array([0, 3, 1, 2, 3])
    net = net.double()
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
    got_loss, got = model.loss_and_grads(x, y)
    src = model.source
    assert "copy of" not in src
    offsets = dict(re.findall(r"(\w+) = carve\(work, ([^,]+),", src))
    views = re.findall(r"(\w+) = carve\(work, [^,]+, [^)]+\)\)  # (\w+), reshaped", src)
    assert len(views) == 2  # the flatten, and its cotangent's reshape back to [B, 3, 2, 2]
    for view, base in views:
        assert offsets[view] == offsets[base]
    for p in net.parameters():
        p.grad = None  # loss_and_grads filled them
    loss = nn.CrossEntropyLoss()(net(symbp.tensor(x)), symbp.tensor(y))
    loss.backward()
    assert got_loss == pytest.approx(loss.item(), rel=1e-12)
    for name, p in net.named_parameters():
        np.testing.assert_allclose(got[name], p.grad, rtol=1e-10, atol=1e-14, err_msg=name)
    np.testing.assert_allclose(model.predict(x), net(symbp.tensor(x)).numpy(), rtol=1e-12)
    predict = symbp.compile(net)  # a model without a loss: the predict program only
    np.testing.assert_allclose(predict.predict(x), net(symbp.tensor(x)).numpy(), rtol=1e-12)
    assert "copy of" not in predict.source and "maxpool0, reshaped" in predict.source


def test_parameters_named_like_the_pooling_loops_locals(rng):
    """Parameters called hk, gv, take, best (names the generated pooling loops use for their
    locals) keep their own names' meaning: the compiled gradients equal eager's."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            for k, name in enumerate(("hk", "gv", "take", "best")):
                setattr(self, name, nn.Parameter(rng.uniform(0.5, 1.5, (1, 2, 1, 1)) + k))

        def forward(self, x):
            y = F.max_pool2d(x * self.hk, 2) * self.gv
            return F.max_pool2d(y * self.take, 3, 1, 1).sum((2, 3)) * self.best.reshape(1, 2)

    net = Net()
    x, y = rng.normal(size=(3, 2, 6, 6)), np.array([0, 1, 1])
    got_loss, got = symbp.compile(net, nn.CrossEntropyLoss()).loss_and_grads(x, y)
    for p in net.parameters():
        p.grad = None
    loss = nn.CrossEntropyLoss()(net(symbp.tensor(x)), symbp.tensor(y))
    loss.backward()
    assert got_loss == pytest.approx(loss.item(), rel=1e-12)
    for name, p in net.named_parameters():
        np.testing.assert_allclose(got[name], p.grad, rtol=1e-10, atol=1e-14, err_msg=name)
