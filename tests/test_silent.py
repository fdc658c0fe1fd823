"""Issue 11, items 2-6: what used to give a silent wrong result is now right or a clear error.

Every item has tests that fail on the code before the fix (a few rows beside them are
regression checks: sums of empty tensors, BCE inside (0, 1)). PyTorch (when installed) shows
that each case is real: the same model gives a NaN gradient with a finite loss, and it defines
the empty means, BCELoss's gradient and its domain error.
"""

from __future__ import annotations

import numpy as np
import pytest

import symbp
from symbp import nn
from symbp.checkpoint import load_checkpoint, save_checkpoint
from symbp.compiler.ir import ShapeError

try:
    import torch
except ImportError:  # the comparisons below skip; the checks of symbp's own errors still run
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


def _mlp(momentum: float = 0.0, check_finite: bool = True):
    """The small model most tests share (one compiled program, from the disk cache)."""
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = symbp.optim.SGD(net.parameters(), lr=0.1, momentum=momentum)
    return net, symbp.compile(net, nn.MSELoss(), opt, check_finite=check_finite)


def _data(n: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 3)).astype(np.float32), rng.random((n, 1)).astype(np.float32)


def _params(net) -> dict[str, np.ndarray]:
    return {k: v.numpy().copy() for k, v in net.state_dict().items()}


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- 2: non-finite gradients


class SqrtNet(nn.Module):
    """fc2(sqrt(fc1 x)). Where a unit of fc1 is exactly 0 (zero weights and bias) the loss is
    finite and the gradient of fc1 is not: d sqrt/dh = inf at h = 0 (PyTorch's too)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.fc2 = nn.Linear(4, 1)

    def forward(self, x):
        return self.fc2(self.fc1(x).sqrt())


def _switch(net, off: bool) -> None:
    """Unit 0 of fc1 exactly 0 (off) or 1 (on); the others positive for inputs in [0, 1)."""
    w = np.abs(net.fc1.weight.data)
    w[0] = 0.0
    net.fc1.weight.data = w
    net.fc1.bias.data = np.array([0.0 if off else 1.0, 1, 1, 1], np.float32)


def _sqrt_model(off: bool = True):
    net = SqrtNet()
    _switch(net, off)
    opt = symbp.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    return net, opt, symbp.compile(net, nn.MSELoss(), opt)


@needs_torch
def test_the_nonfinite_gradient_case_is_real_in_pytorch():
    net, _, _ = _sqrt_model()
    x, y = _data()
    w1 = torch.tensor(net.fc1.weight.numpy(), requires_grad=True)
    h = torch.tensor(x) @ w1.T + torch.tensor(net.fc1.bias.numpy())
    out = h.sqrt() @ torch.tensor(net.fc2.weight.numpy()).T + torch.tensor(net.fc2.bias.numpy())
    loss = ((out - torch.tensor(y)) ** 2).mean()
    loss.backward()
    assert np.isfinite(loss.item())
    assert not np.isfinite(w1.grad.numpy()).all()


def test_step_refuses_a_nonfinite_gradient_before_the_update_lands():
    net, opt, model = _sqrt_model()
    x, y = _data()
    before = _params(net)
    for _ in range(2):  # the general path, then step's fast path
        with pytest.raises(
            FloatingPointError, match=r"step: the gradient of 'fc1\.\w+'.*not finite"
        ):
            model.step(x, y)
    assert _same(before, _params(net))
    assert all(np.isfinite(v).all() for v in _params(net).values())
    assert all(int(st.get("step", 0)) == 0 for st in opt.state.values())
    # the same model with its unit on trains
    _switch(net, off=False)
    assert np.isfinite(model.step(x, y))
    assert not _same(before, _params(net))


def test_fit_stops_at_a_nonfinite_gradient_and_its_checkpoint_stays_finite(tmp_path):
    net, _, model = _sqrt_model(off=False)
    x, y = _data(8)
    path = tmp_path / "ck.npz"
    seen: dict[str, dict[str, np.ndarray]] = {}

    def switch_a_unit_off(epoch, history):  # after epoch 1: epoch 2's gradients are NaN
        if epoch == 0:
            seen["after1"] = _params(net)
            _switch(net, off=True)
            seen["set"] = _params(net)

    with pytest.raises(FloatingPointError, match=r"fit: the gradient .* at epoch 2, batch 1"):
        model.fit(x, y, epochs=3, batch_size=4, checkpoint=path, callback=switch_a_unit_off)
    assert _same(seen["set"], _params(net))  # as before the batch whose update was refused
    ckpt = load_checkpoint(path)
    assert ckpt.epoch == 1
    assert _same(seen["after1"], ckpt.model)


def test_save_checkpoint_refuses_nonfinite_parameters_unless_asked(tmp_path):
    net, _ = _mlp()
    net[0].weight.data[1, 2] = np.nan
    with pytest.raises(FloatingPointError, match=r"save_checkpoint: '0\.weight' holds 1 non-fin"):
        save_checkpoint(tmp_path / "a.npz", net)
    assert not (tmp_path / "a.npz").exists()
    save_checkpoint(tmp_path / "b.npz", net, allow_nonfinite=True)
    assert np.isnan(load_checkpoint(tmp_path / "b.npz").model["0.weight"][1, 2])


# ---------------------------------------------------------------- 3: NaN/Inf data


ENTRY_POINTS = {
    "step": lambda m, x, y, **kw: m.step(x, y, **kw),
    "loss_and_grads": lambda m, x, y, **kw: m.loss_and_grads(x, y, **kw),
    "evaluate": lambda m, x, y, **kw: m.evaluate(x, y, metrics=(), **kw),
    "fit": lambda m, x, y, **kw: m.fit(x, y, epochs=1, batch_size=2, shuffle=False, **kw),
    "predict": lambda m, x, y, **kw: m.predict(x, **kw),
}


@pytest.mark.parametrize("where", list(ENTRY_POINTS))
@pytest.mark.parametrize("bad", ["x", "y"])
def test_every_entry_point_refuses_nonfinite_data_before_any_change(where, bad):
    if where == "predict" and bad == "y":
        pytest.skip("predict takes no targets")
    net, model = _mlp(momentum=0.9)
    x, y = _data()
    model.step(x[:2], y[:2])  # built; the fast path of step in place
    before = _params(net)
    a = x if bad == "x" else y
    a[3, -1] = np.inf if bad == "x" else np.nan
    what = "inputs" if bad == "x" else "targets"
    call = ENTRY_POINTS[where]
    with pytest.raises(ValueError, match=rf"^{where}: {what} \w+ have a non-finite .* in row 3"):
        call(model, x, y)
    assert _same(before, _params(net))
    # the opt-out, per call and for the model: used as it is (PyTorch trains on NaN too)
    out = call(model, x, y, check_finite=False)
    if where == "predict":
        # row 3 is whatever the inf makes of it (nan, or +-inf, or finite if the ReLUs are
        # off: the weights are random), as in eager mode; the other rows are finite
        with np.errstate(invalid="ignore"):  # inf * 0 in eager's matmul, as in the kernel
            eager = net(symbp.tensor(x)).numpy()
        np.testing.assert_allclose(out, eager, rtol=1e-5)
        assert np.isfinite(out[[0, 1, 2, 4, 5]]).all()
    if where in ("step", "fit"):
        assert not all(np.isfinite(v).all() for v in _params(net).values())


def test_check_finite_off_for_the_model_trains_as_pytorch_does():
    net, model = _mlp(check_finite=False)
    x, y = _data()
    x[0, 0] = np.nan
    assert np.isnan(model.step(x, y))  # as PyTorch's loss: nan, and the weights with it
    assert np.isnan(net[0].weight.data).all(axis=1).any()
    model.check_finite = True
    with pytest.raises(ValueError, match="step: inputs x have a non-finite value"):
        model.step(x, y)
    with pytest.raises(TypeError, match="check_finite must be True or False"):
        model.check_finite = "yes"


# ---------------------------------------------------------------- 4: empty batches


def test_a_training_step_on_no_data_is_an_error():
    net, model = _mlp()
    x, y = _data()
    model.step(x, y)
    before = _params(net)
    for where, call in [("step", model.step), ("loss_and_grads", model.loss_and_grads)]:
        with pytest.raises(ValueError, match=rf"{where}: the batch has 0 rows"):
            call(x[:0], y[:0])
    with pytest.raises(ValueError, match=r"evaluate: X has 0 rows"):
        model.evaluate(x[:0], y[:0])
    assert _same(before, _params(net))
    assert model.predict(x[:0]).shape == (0, 1)  # as a PyTorch module on an empty batch


@needs_torch
@pytest.mark.parametrize(
    "reduce", [lambda t: t.mean(), lambda t: t.sum(), lambda t: t.mean(0), lambda t: t.mean(1),
               lambda t: t.sum(0), lambda t: t.mean(0, keepdim=True)],
)  # fmt: skip
def test_reductions_of_an_empty_tensor_follow_pytorch(reduce):
    got = reduce(symbp.tensor(np.zeros((0, 3))))
    want = reduce(torch.zeros((0, 3), dtype=torch.float64)).numpy()
    assert got.shape == want.shape
    np.testing.assert_array_equal(got.numpy(), want)


# ---------------------------------------------------------------- 5: BCELoss


# (p, t) rows: saturated correct predictions (PyTorch's gradient 0 there), a saturated wrong
# one (-1e12 / N), soft targets and interior points
BCE_P = np.array([0.0, 1.0, 0.0, 0.5, 0.25, 1.0, 0.9])
BCE_T = np.array([0.0, 1.0, 1.0, 1.0, 0.3, 0.0, 0.9])


@needs_torch
def test_bce_loss_and_gradient_match_pytorch_at_saturation():
    p = symbp.tensor(BCE_P, requires_grad=True)
    loss = nn.BCELoss()(p, symbp.tensor(BCE_T))
    loss.backward()
    tp = torch.tensor(BCE_P, requires_grad=True)
    tloss = torch.nn.functional.binary_cross_entropy(tp, torch.tensor(BCE_T))
    tloss.backward()
    np.testing.assert_allclose(float(loss), tloss.item(), rtol=1e-12)
    assert p.grad.numpy()[0] == 0.0 and p.grad.numpy()[1] == 0.0  # were +-1/N
    np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-7)


class Shift(nn.Module):
    """p = x + b: the compiled BCE sees the probabilities x exactly (b = 0)."""

    def __init__(self):
        super().__init__()
        self.b = symbp.Parameter(np.zeros(1, np.float32))

    def forward(self, x):
        return x + self.b


def _bce_model():
    net = Shift()
    return net, symbp.compile(net, nn.BCELoss(), symbp.optim.SGD(net.parameters(), lr=0.1))


@needs_torch
@pytest.mark.parametrize(
    "rows",
    [[0], [1], [0, 1, 3], [3, 4, 6], [0, 1, 2, 3, 4, 6], [0, 1, 5]],
    ids=["p0-t0", "p1-t1", "saturated-right", "inside", "with-saturated-wrong", "saturated-wrong"],
)  # (not rows 2 and 5 together: their +-1e12/N cancel, float32 keeps no digits of the rest)
def test_compiled_bce_gradient_matches_pytorch_at_saturation(rows):
    _, model = _bce_model()
    x = BCE_P.astype(np.float32)[rows, None]
    y = BCE_T.astype(np.float32)[rows, None]
    loss, grads = model.loss_and_grads(x, y)
    tp = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tloss = torch.nn.functional.binary_cross_entropy(tp, torch.tensor(y, dtype=torch.float64))
    tloss.backward()
    np.testing.assert_allclose(loss, tloss.item(), rtol=1e-6)
    np.testing.assert_allclose(grads["b"], [tp.grad.sum().item()], rtol=1e-6)
    if rows in ([0], [1]):
        assert grads["b"][0] == 0.0  # PyTorch's 0, not +-1/N


@needs_torch
def test_bce_probabilities_outside_0_1_are_an_error_as_in_pytorch():
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        torch.nn.functional.binary_cross_entropy(torch.tensor([1.5]), torch.tensor([1.0]))
    for bad in (1.5, -0.25, np.nan):
        with pytest.raises(ValueError, match=r"BCELoss: input probabilities must be in \[0, 1\]"):
            nn.BCELoss()(symbp.tensor(np.array([0.5, bad])), symbp.tensor(np.array([1.0, 0.0])))
    net, model = _bce_model()
    x = np.array([[0.5], [1.5]], np.float32)
    y = np.array([[1.0], [0.0]], np.float32)
    for _ in range(2):  # general and fast path: stopped before the update
        with pytest.raises(
            FloatingPointError, match=r"step: the loss is not finite \(BCELoss: inp"
        ):
            model.step(x, y)
    assert net.b.numpy()[0] == 0.0
    with pytest.raises(FloatingPointError, match=r"evaluate: the loss is not finite \(BCELoss"):
        model.evaluate(x, y, metrics=())


# ---------------------------------------------------------------- 6: arguments


def test_arguments_are_checked_up_front_each_error_naming_the_argument(tmp_path):
    net, model = _mlp()
    x, y = _data()
    before = _params(net)
    cases = [
        (lambda: model.evaluate(x, y, batch_size=0), ValueError, "evaluate: batch_size must be >="),
        (lambda: model.predict(x, batch_size=0), ValueError, "predict: batch_size must be >= 1"),
        (lambda: model.fit(x, y, epochs=1.5), TypeError, "fit: epochs must be an integer"),
        (lambda: model.fit(x, y, batch_size=2.0), TypeError, "fit: batch_size must be an integer"),
        (lambda: model.fit(x, y, epochs=-1), ValueError, "fit: epochs must be >= 0"),
        (lambda: model.fit(x, y, checkpoint_every=0), ValueError, "fit: checkpoint_every must"),
        (lambda: model.fit(x, y, seed=0.5), TypeError, "fit: seed must be an integer"),
        (lambda: model.fit(x, y, check_finite="no"), TypeError, "fit: check_finite must be"),
        (lambda: model.fit(x, y, validation_data=x), TypeError, "fit: validation_data must be"),
        (lambda: model.fit(x, y, epochs=2, checkpoint=tmp_path / "none" / "ck.npz"),
         FileNotFoundError, "fit: checkpoint: cannot write .* no directory"),
        (lambda: model.fit(x, y, epochs=2, checkpoint=tmp_path), IsADirectoryError,
         "fit: checkpoint: cannot write .* it is a directory"),
        (lambda: model.step(np.float32(1.0), y), ShapeError, "step: inputs x must have a batch"),
    ]  # fmt: skip
    for call, kind, message in cases:
        with pytest.raises(kind, match=message):
            call()
    assert _same(before, _params(net))  # nothing trained before any of these errors
    assert model.fit(x, y, epochs=np.int64(2), batch_size=np.int32(3))["loss"]  # NumPy ints do


def test_a_0d_input_to_a_first_predict_is_a_clear_error():
    _, model = _mlp()
    with pytest.raises(ShapeError, match=r"predict: inputs X must have a batch dimension"):
        model.predict(np.float32(0.5))


@pytest.mark.parametrize("name", ["relu", "softplus", "sigmoid", "tanh", "exp", "abs", "silu"])
def test_eager_activations_at_infinities_and_nan_are_pytorchs(name):
    torch = pytest.importorskip("torch")
    v = np.array([-np.inf, -1.0, -0.0, 0.0, 2.0, np.inf, np.nan])
    got = getattr(symbp, name)(symbp.tensor(v)).numpy()
    want = getattr(torch.nn.functional, name, None) or getattr(torch, name)
    ref = want(torch.tensor(v)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-12)  # nan where PyTorch's is nan, only
    assert not np.signbit(got[1:4]).any() or name not in ("relu", "softplus")  # relu(-1) is +0
