"""The tutorials' worked examples, each checked against a reference worked out independently:
a hand-written NumPy backprop, closed forms worked by hand, central differences, PyTorch."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest
import sympy
from conftest import T222, X222, backprop_222, half_sse, numeric_grad

import symbp
from symbp import api, nn

try:  # tests that need PyTorch call pytest.importorskip; the others use it when present
    import torch
except ImportError:
    torch = None


# ---------------------------------------------------------------- the 2-2-2 sigmoid network


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_222_loss_and_gradients(dtype, net222):
    symbp.set_default_dtype(dtype)  # float32 is the default, as in PyTorch
    net, _, _ = net222()
    x = symbp.tensor([[0.05, 0.10]])  # the tutorial's code: Python lists, default dtype
    t = symbp.tensor([[0.01, 0.99]])
    out = net(x)
    loss = half_sse(out, t)
    assert loss.dtype == dtype and out.dtype == dtype
    assert loss.item() == pytest.approx(0.298371, abs=5e-7)  # the tutorial's number

    ref_loss, ref_grads = backprop_222()
    loss.backward()
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert loss.item() == pytest.approx(ref_loss, rel=rtol)
    for name, p in net.named_parameters():
        assert p.grad.dtype == dtype and p.grad.shape == p.data.shape
        np.testing.assert_allclose(p.grad, ref_grads[name], rtol=rtol, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_222_one_sgd_step(dtype, net222):
    net, x, t = net222(dtype)
    opt = symbp.optim.SGD(net.parameters(), lr=0.5)
    before = {n: p.data.numpy().astype(np.float64) for n, p in net.named_parameters()}
    opt.zero_grad()
    half_sse(net(x), t).backward()
    opt.step()

    _, grads = backprop_222()
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    for name, p in net.named_parameters():
        assert p.data.dtype == dtype
        np.testing.assert_allclose(p.data, before[name] - 0.5 * grads[name], rtol=rtol)
    # The tutorial's published weights after the step (it does not update the biases)
    np.testing.assert_allclose(
        net.linear2.weight.data, [[0.35891648, 0.408666186], [0.511301270, 0.561370121]], rtol=1e-6
    )
    np.testing.assert_allclose(
        net.linear1.weight.data, [[0.149780716, 0.19956143], [0.24975114, 0.29950229]], rtol=1e-6
    )


def test_222_against_pytorch(net222):
    pytest.importorskip("torch")
    net, x, t = net222(np.float64)
    opt = symbp.optim.SGD(net.parameters(), lr=0.5)
    tnet = torch.nn.Sequential(
        torch.nn.Linear(2, 2), torch.nn.Sigmoid(), torch.nn.Linear(2, 2), torch.nn.Sigmoid()
    ).double()
    load_torch(tnet, net)
    topt = torch.optim.SGD(tnet.parameters(), lr=0.5)
    tx, tt = torch.tensor(X222), torch.tensor(T222)
    for _ in range(3):
        opt.zero_grad()
        loss = half_sse(net(x), t)
        loss.backward()
        topt.zero_grad()
        tloss = ((tnet(tx) - tt) ** 2).sum() / 2
        tloss.backward()
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-12)
        assert_grads_match(net, tnet)
        opt.step()
        topt.step()
    assert_params_match(net, tnet, rtol=1e-12)


# ---------------------------------------------------------------- small worked examples


def test_linear_regression_gradients():
    # pred = w x + b = [3, 5, 7]; err = pred - y = [-3, -4, -5]; L = mean(err²) = 50/3
    # dL/dw = 2/3 Σ err·x = 2/3 (-3 - 8 - 15) = -52/3
    # dL/db = 2/3 Σ err = 2/3 (-12) = -8
    # dL/dx = 2/3 err·w = 4/3 err = [-4, -16/3, -20/3]
    x = symbp.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w = symbp.tensor(2.0, requires_grad=True)
    b = symbp.tensor(1.0, requires_grad=True)
    y = symbp.tensor([6.0, 9.0, 12.0])
    loss = nn.MSELoss()(w * x + b, y)
    loss.backward()
    assert loss.item() == pytest.approx(50 / 3, rel=1e-6)
    assert float(w.grad) == pytest.approx(-52 / 3, rel=1e-6)
    assert float(b.grad) == pytest.approx(-8, rel=1e-6)
    np.testing.assert_allclose(x.grad, [-4, -16 / 3, -20 / 3], rtol=1e-6)
    assert w.grad.shape == () and x.grad.shape == (3,)


def test_relu_gradient():
    x = symbp.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    symbp.relu(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 1.0])  # PyTorch: relu'(0) = 0


def test_sigmoid_gradient_at_zero():
    x = symbp.tensor(0.0, requires_grad=True)
    y = symbp.sigmoid(x)
    y.backward()
    assert y.item() == 0.5
    assert float(x.grad) == 0.25  # σ'(0) = σ(0)(1 - σ(0)) = 1/4


def test_softmax_jacobian():
    xs = np.array([1.0, 2.0, 0.5, -1.0])
    x = symbp.tensor(xs, dtype=np.float64, requires_grad=True)
    rows = []
    for i in range(len(xs)):  # row i: the gradient of output component i
        x.grad = None
        s = symbp.softmax(x, 0)
        (s * symbp.tensor(np.eye(len(xs))[i])).sum().backward()
        rows.append(x.grad.numpy().copy())
    jac = np.array(rows)
    e = np.exp(xs - xs.max())
    sv = e / e.sum()
    np.testing.assert_allclose(jac, np.diag(sv) - np.outer(sv, sv), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(jac.sum(1), 0, atol=1e-15)  # softmax sums to one


def test_symbolic_grad_of_a_neuron():
    w, x, b = symbp.symbols("w x b")
    got = symbp.grad(symbp.sigmoid(w * x + b), w)
    s = 1 / (1 + sympy.exp(-(w * x + b)))
    hand = x * s * (1 - s)  # dσ(u)/dw = σ(u)(1 - σ(u)) · x
    assert not got.has(sympy.exp)  # stays in σ, the form backprop reuses
    assert sympy.simplify(got.rewrite(sympy.exp) - hand) == 0
    f = sympy.lambdify((w, x, b), got.rewrite(sympy.exp))
    g = sympy.lambdify((w, x, b), hand)
    for point in [(0.3, -1.2, 0.5), (2.0, 0.7, -3.0)]:
        assert f(*point) == pytest.approx(g(*point), rel=1e-14)


def test_grads_accumulate_until_zero_grad(net222):
    net, x, t = net222(np.float64)
    opt = symbp.optim.SGD(net.parameters(), lr=0.1)
    half_sse(net(x), t).backward()
    once = {n: p.grad.numpy().copy() for n, p in net.named_parameters()}
    half_sse(net(x), t).backward()
    for n, p in net.named_parameters():
        np.testing.assert_allclose(p.grad, 2 * once[n], rtol=1e-15)
    opt.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    half_sse(net(x), t).backward()
    for n, p in net.named_parameters():
        np.testing.assert_allclose(p.grad, once[n], rtol=1e-15)


def test_backward_graph_is_cached(net222, monkeypatch):
    calls = []
    real = api.derive

    def counting(*args, **kw):
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(api, "derive", counting)
    monkeypatch.setattr(api, "_BACKWARD_CACHE", {})
    net, x, t = net222(np.float64)
    opt = symbp.optim.SGD(net.parameters(), lr=0.5)
    grads = []
    for step in range(3):
        opt.zero_grad()
        half_sse(net(x), t).backward()
        grads.append(net.linear1.weight.grad.numpy().copy())
        opt.step()
        assert len(calls) == 1, f"step {step} derived again"
    assert not np.allclose(grads[0], grads[2])  # the cached program saw the new weights
    # same structure, other data (and a fresh copy of the model): still no new derivation
    other, _, _ = net222(np.float64)
    half_sse(other(symbp.tensor(2 * X222, dtype=np.float64)), t).backward()
    assert len(calls) == 1
    _, ref = backprop_222(x=2 * X222)
    np.testing.assert_allclose(other.linear1.weight.grad, ref["linear1.weight"], rtol=1e-12)


# ---------------------------------------------------------------- the 10-5-1 ReLU MLP


def _mlp_10_5_1_numpy(params, x, y, lr, steps):
    """Hand-written forward, backward and SGD of Linear(10,5)-ReLU-Linear(5,1) under MSE."""
    names = ("0.weight", "0.bias", "2.weight", "2.bias")
    W1, b1, W2, b2 = (np.array(params[k].numpy()) for k in names)
    losses = []
    for _ in range(steps):
        z = x @ W1.T + b1
        h = np.maximum(z, 0)
        o = h @ W2.T + b2
        losses.append(np.mean((o - y) ** 2))
        do = 2 * (o - y) / o.size
        dW2, db2 = do.T @ h, do.sum(0)
        dz = (do @ W2) * (z > 0)
        dW1, db1 = dz.T @ x, dz.sum(0)
        W1, b1, W2, b2 = W1 - lr * dW1, b1 - lr * db1, W2 - lr * dW2, b2 - lr * db2
    return losses, {"0.weight": W1, "0.bias": b1, "2.weight": W2, "2.bias": b2}


def test_mlp_10_5_1_sgd_against_numpy_and_pytorch():
    rng = np.random.default_rng(0)
    xs, ys = rng.normal(size=(16, 10)), rng.normal(size=(16, 1))
    symbp.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 1)).double()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    opt = symbp.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.MSELoss()
    x, y = symbp.tensor(xs), symbp.tensor(ys)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]

    ref_losses, ref_params = _mlp_10_5_1_numpy(init, xs, ys, 0.01, 5)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-10)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.data, ref_params[name], rtol=1e-10, err_msg=name)

    if torch is None:
        return
    tmodel = torch.nn.Sequential(torch.nn.Linear(10, 5), torch.nn.ReLU(), torch.nn.Linear(5, 1))
    tmodel = tmodel.double()
    tmodel.load_state_dict({k: torch.tensor(v.numpy()) for k, v in init.items()})
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.01)
    tlosses = []
    for _ in range(5):
        topt.zero_grad()
        tloss = torch.nn.functional.mse_loss(tmodel(torch.tensor(xs)), torch.tensor(ys))
        tloss.backward()
        topt.step()
        tlosses.append(tloss.item())
    np.testing.assert_allclose(losses, tlosses, rtol=1e-10)
    assert_params_match(model, tmodel, rtol=1e-10)


# ---------------------------------------------------------------- custom ops


swish = symbp.elementwise("swish", lambda x: x / (1 + sympy.exp(-x)))
# The tutorials' custom ReLU: its forward, and its backward given explicitly (an
# autograd.Function in PyTorch); the derivative 0 at 0 is the explicit choice.
my_relu = symbp.elementwise(
    "my_relu", lambda x: sympy.Max(x, 0), derivative=lambda x: sympy.Heaviside(x, 0)
)


def test_custom_swish_from_a_formula():
    xs = np.array([-3.0, -0.5, 0.0, 0.7, 4.0])
    x = symbp.tensor(xs, dtype=np.float64, requires_grad=True)
    y = swish(x)
    np.testing.assert_allclose(y.numpy(), xs / (1 + np.exp(-xs)), rtol=1e-14)
    y.sum().backward()
    fd = numeric_grad(lambda a: np.sum(a / (1 + np.exp(-a))), xs)
    np.testing.assert_allclose(x.grad, fd, rtol=1e-8, atol=1e-10)
    # and SymPy's derivative is the textbook one: σ(x) + x σ(x)(1 - σ(x))
    u = sympy.Symbol("u", real=True)
    s = 1 / (1 + sympy.exp(-u))
    d = sympy.diff(swish(u), u)
    assert sympy.simplify(d - (s + u * s * (1 - s))) == 0
    if torch is not None:
        tx = torch.tensor(xs, requires_grad=True)
        (tx * torch.sigmoid(tx)).sum().backward()
        np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-12)


def test_custom_relu_with_explicit_derivative():
    xs = np.array([-1.0, 0.0, 2.0, -0.3, 0.5])
    x = symbp.tensor(xs, dtype=np.float64, requires_grad=True)
    w = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    y = my_relu(x)
    np.testing.assert_array_equal(y.numpy(), np.maximum(xs, 0))
    (y * symbp.tensor(w)).sum().backward()
    np.testing.assert_array_equal(x.grad, w * (xs > 0))  # the given derivative, 0 at 0
    away = np.abs(xs) > 0.1
    fd = numeric_grad(lambda a: np.sum(np.maximum(a, 0) * w), xs)
    np.testing.assert_allclose(x.grad.numpy()[away], fd[away], rtol=1e-8)
    if torch is None:
        return

    class MyReLU(torch.autograd.Function):
        @staticmethod
        def forward(ctx, inp):
            ctx.save_for_backward(inp)
            return inp.clamp(min=0)

        @staticmethod
        def backward(ctx, grad_output):
            (inp,) = ctx.saved_tensors
            grad = grad_output.clone()
            grad[inp <= 0] = 0
            return grad

    tx = torch.tensor(xs, requires_grad=True)
    (MyReLU.apply(tx) * torch.tensor(w)).sum().backward()
    np.testing.assert_array_equal(x.grad, tx.grad.numpy())


def test_custom_op_inside_a_model():
    class SwishNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(3, 4, dtype=np.float64)
            self.fc2 = nn.Linear(4, 1, dtype=np.float64)

        def forward(self, x):
            return self.fc2(swish(self.fc1(x)))

    symbp.manual_seed(3)
    net = SwishNet()
    xs = np.random.default_rng(3).normal(size=(5, 3))
    (net(symbp.tensor(xs)) ** 2).mean().backward()
    W = net.fc1.weight.data.numpy().copy()

    def loss_of_w1(w1):
        net.fc1.weight.data = w1
        return float((net(symbp.tensor(xs)) ** 2).mean().item())

    fd = numeric_grad(loss_of_w1, W)
    np.testing.assert_allclose(net.fc1.weight.grad, fd, rtol=1e-7, atol=1e-10)


# ---------------------------------------------------------------- whole models vs PyTorch


def load_torch(tmodel, model):
    """Copy symbp parameters into a torch model whose parameters come in the same order."""
    with torch.no_grad():
        for tp, p in zip(tmodel.parameters(), model.parameters(), strict=True):
            tp.copy_(torch.tensor(p.data.numpy()))


def assert_grads_match(model, tmodel, rtol=1e-10):
    for (name, p), tp in zip(model.named_parameters(), tmodel.parameters(), strict=True):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=rtol, atol=1e-14, err_msg=name)


def assert_params_match(model, tmodel, rtol=1e-10):
    for (name, p), tp in zip(model.named_parameters(), tmodel.parameters(), strict=True):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=rtol, err_msg=name)


ACTIVATIONS = {
    "ReLU": (nn.ReLU, lambda: torch.nn.ReLU()),
    "Sigmoid": (nn.Sigmoid, lambda: torch.nn.Sigmoid()),
    "Tanh": (nn.Tanh, lambda: torch.nn.Tanh()),
    "GELU": (nn.GELU, lambda: torch.nn.GELU()),
    "SiLU": (nn.SiLU, lambda: torch.nn.SiLU()),
    "Softmax": (lambda: nn.Softmax(dim=1), lambda: torch.nn.Softmax(dim=1)),
    "LogSoftmax": (lambda: nn.LogSoftmax(dim=1), lambda: torch.nn.LogSoftmax(dim=1)),
}


def _pair(act):
    """The same 4-6-3 MLP (hidden activation ``act``) in symbp and PyTorch, float64."""
    mine, theirs = ACTIVATIONS[act]
    model = nn.Sequential(nn.Linear(4, 6), mine(), nn.Linear(6, 3)).double()
    tmodel = torch.nn.Sequential(torch.nn.Linear(4, 6), theirs(), torch.nn.Linear(6, 3)).double()
    load_torch(tmodel, model)
    return model, tmodel


def _compare(model, tmodel, loss_of, tloss_of, xs):
    x = symbp.tensor(xs, requires_grad=True)
    tx = torch.tensor(xs, requires_grad=True)
    loss = loss_of(model(x))
    tloss = tloss_of(tmodel(tx))
    loss.backward()
    tloss.backward()
    assert loss.item() == pytest.approx(tloss.item(), rel=1e-10, abs=1e-14)
    assert_grads_match(model, tmodel)
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_mlp_activation_against_pytorch(act):
    pytest.importorskip("torch")
    symbp.manual_seed(1)
    rng = np.random.default_rng(1)
    xs, ys = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    model, tmodel = _pair(act)
    _compare(
        model,
        tmodel,
        lambda o: nn.MSELoss()(o, symbp.tensor(ys)),
        lambda o: torch.nn.MSELoss()(o, torch.tensor(ys)),
        xs,
    )


def _targets(loss, rng):
    """(symbp head, torch head, target) for each loss: what the model output goes through."""
    labels = rng.integers(0, 3, size=5)
    probs = rng.uniform(0.05, 0.95, size=(5, 3))
    real = rng.normal(size=(5, 3))
    return {
        "MSELoss": (None, None, real),
        "L1Loss": (None, None, real),
        "CrossEntropyLoss": (None, None, labels),
        "CrossEntropyLoss(probs)": (None, None, probs / probs.sum(1, keepdims=True)),
        "BCELoss": (symbp.sigmoid, torch.sigmoid, probs),
        "BCEWithLogitsLoss": (None, None, probs),
        "NLLLoss": (lambda o: symbp.log_softmax(o, 1), lambda o: torch.log_softmax(o, 1), labels),
    }[loss]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(
    "loss",
    [
        "MSELoss",
        "L1Loss",
        "CrossEntropyLoss",
        "CrossEntropyLoss(probs)",
        "BCELoss",
        "BCEWithLogitsLoss",
        "NLLLoss",
    ],
)
def test_mlp_loss_against_pytorch(loss, reduction):
    pytest.importorskip("torch")
    symbp.manual_seed(2)
    rng = np.random.default_rng(2)
    xs = rng.normal(size=(5, 4))
    model, tmodel = _pair("Tanh")
    head, thead, target = _targets(loss, rng)
    name = loss.split("(")[0]
    mine = getattr(nn, name)(reduction=reduction)
    theirs = getattr(torch.nn, name)(reduction=reduction)
    _compare(
        model,
        tmodel,
        lambda o: mine(head(o) if head else o, symbp.tensor(target)),
        lambda o: theirs(thead(o) if thead else o, torch.tensor(target)),
        xs,
    )


# ---------------------------------------------------------------- the example scripts

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize(
    "script",
    [
        "two_two_two.py",
        "linear_regression.py",
        "activation_gradients.py",
        "custom_op.py",
        "mlp_10_5_1.py",
    ],
)
def test_example_runs_and_checks_itself(script, capsys):
    runpy.run_path(str(EXAMPLES / script), run_name="__main__")  # each asserts its numbers
    assert "all checks passed" in capsys.readouterr().out
