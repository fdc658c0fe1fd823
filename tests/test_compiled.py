"""symbp.compile: the compiled step, fit, predict and evaluate, and their errors."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import B1_222, B2_222, T222, W1_222, W2_222, X222, Net222, backprop_222, half_sse

import symbp
from symbp import nn
from symbp.compiler.lower.support import epoch_order

pytestmark = pytest.mark.usefixtures("tmp_cache")  # compile into this session's cache


def _mlp(seed=0, dtype=np.float64, sizes=(4, 6, 3)):
    symbp.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(sizes[0], sizes[1], dtype=dtype),
        nn.ReLU(),
        nn.Linear(sizes[1], sizes[2], dtype=dtype),
    )


def _blobs(n=23, dtype=np.float64):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 4)) + np.eye(3, 4)[y] * 2
    return x.astype(dtype), y


# ---------------------------------------------------------------- the 2-2-2 tutorial network


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_step_222_matches_hand_backprop(dtype):
    net = Net222(dtype)
    model = symbp.compile(net, half_sse, symbp.optim.SGD(net.parameters(), lr=0.5))
    x, t = X222.astype(dtype), T222.astype(dtype)
    loss_want, grads = backprop_222()
    loss = model.step(x, t)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    assert loss == pytest.approx(loss_want, rel=tol)
    start = {"linear1.weight": W1_222, "linear1.bias": B1_222,
             "linear2.weight": W2_222, "linear2.bias": B2_222}  # fmt: skip
    for name, p in net.named_parameters():
        assert p.data.dtype == dtype and p.grad.dtype == dtype
        np.testing.assert_allclose(p.grad, grads[name], rtol=tol, atol=tol)
        np.testing.assert_allclose(p.data, start[name] - 0.5 * grads[name], rtol=tol, atol=tol)


def test_source_is_readable():
    net = Net222(np.float32)
    model = symbp.compile(net, half_sse, symbp.optim.SGD(net.parameters(), lr=0.5))
    with pytest.raises(RuntimeError, match="nothing compiled yet"):
        model.source
    model.step(X222.astype(np.float32), T222.astype(np.float32))
    src = model.source
    assert "def train(" in src and "@njit" in src
    for name in ("linear1_weight", "grad_linear2_bias", "sigmoid_f32("):
        assert name in src
    assert "# update group 0 (linear1_weight" in src and "σ(" in src  # formulas as comments
    assert "select" not in src and "object" not in src
    assert len(model._train.mod.train.signatures) == 1


# ---------------------------------------------------------------- fit


@pytest.mark.slow
def test_fit_equals_step_by_step_with_the_same_shuffle():
    x, y = _blobs()
    nets = [_mlp(), _mlp()]
    models = [symbp.compile(n, nn.CrossEntropyLoss(), symbp.optim.Adam(n.parameters(), lr=0.01))
              for n in nets]  # fmt: skip
    hist = models[0].fit(x, y, epochs=3, batch_size=5, seed=11)  # 23 = 4*5 + 3: short last batch
    losses = []
    for epoch in range(3):
        order = epoch_order(len(x), 11, epoch)
        total = 0.0
        for s in range(0, len(x), 5):
            idx = order[s : s + 5]
            total += models[1].step(x[idx], y[idx]) * len(idx)
        losses.append(total / len(x))
    for p, q in zip(nets[0].parameters(), nets[1].parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(hist["loss"], losses, rtol=1e-12)
    for m in models:  # the short batch did not need a second compiled version
        assert len(m._train.mod.train.signatures) == 1


@pytest.mark.slow  # its own program (64-128-10, Adam): ~14 s of CPU
def test_fit_digits_reaches_95_percent():
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x = digits.data.astype(np.float32)
    x = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1)
    y = digits.target
    symbp.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.Adam(net.parameters(), lr=1e-3))
    hist = model.fit(x, y, epochs=20, batch_size=32, seed=0)
    assert len(hist["loss"]) == 20 and hist["loss"][-1] < hist["loss"][0]
    result = model.evaluate(x, y)
    assert result["accuracy"] >= 0.95
    assert result["loss"] == pytest.approx(hist["loss"][-1], rel=0.5)
    pred = model.predict(x[:7])
    assert pred.shape == (7, 10) and pred.dtype == np.float32


def test_fit_validation_history_and_callback():
    x, y = _blobs()
    net = _mlp()
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
    seen = []
    hist = model.fit(x, y, epochs=5, batch_size=8, validation_data=(x, y),
                     callback=lambda e, h: seen.append(e) or e == 2)  # fmt: skip
    assert seen == [0, 1, 2] and len(hist["loss"]) == 3
    assert len(hist["val_loss"]) == 3 and 0 <= hist["val_accuracy"][-1] <= 1


def test_loss_and_grads_does_not_update():
    x, y = _blobs()
    net = _mlp()
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
    before = [p.data.numpy().copy() for p in net.parameters()]
    loss, grads = model.loss_and_grads(x, y)
    ref = nn.CrossEntropyLoss()(net(symbp.tensor(x)), symbp.tensor(y))
    assert loss == pytest.approx(float(ref), rel=1e-12)
    net.zero_grad()
    ref.backward()
    for (name, p), b in zip(net.named_parameters(), before):
        np.testing.assert_array_equal(p.data, b)
        np.testing.assert_allclose(grads[name], p.grad, rtol=1e-12, atol=1e-14)


def test_predict_matches_eager():
    x, _ = _blobs()
    net = _mlp()
    model = symbp.compile(net)
    np.testing.assert_allclose(model.predict(x, batch_size=4), net(symbp.tensor(x)).numpy(),
                               rtol=1e-12)  # fmt: skip


def test_parameters_named_like_the_data_and_the_output():
    """Parameters called x, y and out (the names of the generated modules' batch buffers of
    the inputs, the targets and predict's output) keep their own meaning: the compiled loss,
    gradients and predictions equal eager's. They had shared the data's buffer name."""

    class Net(nn.Module):
        def __init__(self, rng):
            super().__init__()
            self.x = nn.Parameter(rng.normal(size=(4, 3)))  # 2-D, as the batch of inputs
            self.y = nn.Parameter(rng.normal(size=3))
            self.out = nn.Parameter(rng.uniform(0.5, 1.5, size=3))

        def forward(self, inp):
            return (inp @ self.x) * self.out + self.y

    rng = np.random.default_rng(5)
    net = Net(rng)
    x, y = rng.normal(size=(9, 4)), rng.normal(size=(9, 3))
    model = _assert_loss_and_grads_are_eagers(net, nn.MSELoss(), x, y)
    np.testing.assert_allclose(model.predict(x, batch_size=4), net(symbp.tensor(x)).numpy(),
                               rtol=1e-12)  # fmt: skip


def test_a_live_parameter_named_x_leaves_other_models_data_alone():
    """A parameter called x (or y) alive elsewhere is not taken for another model's data
    input of that name: tracing had looked the data's leaf up by name among all parameters."""

    class Other(nn.Module):
        def __init__(self):
            super().__init__()
            self.x, self.y = nn.Parameter(np.ones((4, 3))), nn.Parameter(np.zeros(3))

        def forward(self, inp):
            return inp @ self.x + self.y

    other = Other()
    other(symbp.tensor(np.ones((2, 4))))  # its first call names its parameters
    assert other.x.name == "x"  # alive, and labelled as the data input is
    x, y = _blobs()
    net = _mlp()
    _assert_loss_and_grads_are_eagers(net, nn.CrossEntropyLoss(), x, y)


def _assert_loss_and_grads_are_eagers(net, loss_fn, x, y):
    """The compiled loss and gradients of ``net`` on (x, y) equal eager's; returns the model."""
    model = symbp.compile(net, loss_fn, symbp.optim.SGD(net.parameters(), lr=0.1))
    loss, grads = model.loss_and_grads(x, y)
    ref = loss_fn(net(symbp.tensor(x)), symbp.tensor(y))
    net.zero_grad()
    ref.backward()
    assert loss == pytest.approx(float(ref), rel=1e-12)
    assert sorted(grads) == sorted(name for name, _ in net.named_parameters())
    for name, p in net.named_parameters():
        np.testing.assert_allclose(grads[name], p.grad, rtol=1e-12, atol=1e-14, err_msg=name)
    return model


def test_user_assigned_data_is_picked_up():
    x, y = _blobs()
    net = _mlp()
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
    model.step(x, y)
    net[0].bias.data = np.zeros(6)  # a new array: copied into the compiled memory next call
    _, grads = model.loss_and_grads(x, y)
    ref = nn.CrossEntropyLoss()(net(symbp.tensor(x)), symbp.tensor(y))
    net.zero_grad()
    ref.backward()
    np.testing.assert_allclose(grads["0.bias"], net[0].bias.grad, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def trained():
    x, y = _blobs()
    net = _mlp()
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
    model.step(x, y)
    return net, model, x, y


def _unchanged(net, fn):
    before = [p.data.numpy().copy() for p in net.parameters()]
    fn()
    for p, b in zip(net.parameters(), before):
        np.testing.assert_array_equal(p.data, b)


def test_wrong_feature_count_speaks_the_models_language(trained):
    net, model, x, y = trained
    with pytest.raises(symbp.ShapeError, match="Linear '0' expects 4 input features"):
        _unchanged(net, lambda: model.step(x[:, :3], y))
    with pytest.raises(symbp.ShapeError, match="Linear '0' expects 4 input features"):
        _unchanged(net, lambda: model.fit(x[:, :3], y))


def test_wrong_dtype_and_lengths(trained):
    _net, model, x, y = trained
    with pytest.raises(TypeError, match="inputs x are float32, the model is float64"):
        model.step(x.astype(np.float32), y)
    with pytest.raises(TypeError, match="targets y are float64"):
        model.step(x, y.astype(np.float64))
    with pytest.raises(symbp.ShapeError, match="23 inputs but 22 targets"):
        model.fit(x, y[:-1])


def test_step_checks_every_batch_after_a_good_one(trained):
    """step()'s fast path remembers the shapes of the last good batch, and nothing else: a
    batch of another shape but the same strides still gets every check."""
    net, model, x, y = trained
    model.step(x, y)
    with pytest.raises(symbp.ShapeError, match="22 inputs but 23 targets"):
        _unchanged(net, lambda: model.step(x[:-1], y))
    narrow = np.lib.stride_tricks.as_strided(x, shape=(len(x), 3), strides=x.strides)
    with pytest.raises(symbp.ShapeError, match="Linear '0' expects 4 input features"):
        _unchanged(net, lambda: model.step(narrow, y))
    want = model.loss_and_grads(x[:5], y[:5])[0]
    assert model.step(x[:5], y[:5]) == want  # another batch size: checked, then taken


def test_labels_out_of_range(trained):
    net, model, x, y = trained
    bad = y.copy()
    bad[4] = 3
    with pytest.raises(IndexError, match=r"label 3 \(row 4\) out of range for 3 classes"):
        _unchanged(net, lambda: model.step(x, bad))
    bad[4] = -1
    with pytest.raises(IndexError, match=r"label -1 \(row 4\) out of range"):
        _unchanged(net, lambda: model.fit(x, bad, epochs=2))
    model.step(x, y)  # still usable


def test_nonfinite_loss_stops_fit_with_epoch_and_batch():
    x, y = _blobs()
    x = x * 1e3
    net = _mlp()
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.SGD(net.parameters(), lr=1e30))
    with pytest.raises(FloatingPointError, match=r"not finite at epoch \d+, batch \d+"):
        model.fit(x, y, epochs=5, batch_size=4, shuffle=False)
    assert all(np.isfinite(p.data).all() for p in net.parameters())
