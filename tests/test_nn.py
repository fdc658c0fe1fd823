"""nn.Module protocol, initialisation, and optimizers against hand-written NumPy updates and
PyTorch (float64)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import symbp
from symbp import nn

try:
    import torch
except ImportError:
    torch = None


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear1 = nn.Linear(3, 4)
        self.act = nn.Tanh()
        self.linear2 = nn.Linear(4, 2, bias=False)

    def forward(self, x):
        return self.linear2(self.act(self.linear1(x)))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(5, 3), nn.ReLU())
        self.block = Block()
        self.scale = nn.Parameter(np.ones(2, np.float32))
        self.not_a_param = symbp.tensor([1.0, 2.0])  # a plain tensor is not registered

    def forward(self, x):
        return self.block(self.encoder(x)) * self.scale


# ---------------------------------------------------------------- module protocol


def test_registration_and_dotted_names():
    m = Model()
    names = [n for n, _ in m.named_parameters()]
    assert names == [
        "scale",
        "encoder.0.weight",
        "encoder.0.bias",
        "block.linear1.weight",
        "block.linear1.bias",
        "block.linear2.weight",
    ]
    assert list(m.parameters()) == [p for _, p in m.named_parameters()]
    assert [n for n, _ in m.named_children()] == ["encoder", "block"]
    assert [n for n, _ in m.named_modules()][:4] == ["", "encoder", "encoder.0", "encoder.1"]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in m.parameters())
    # reassigning replaces, deleting unregisters
    m.block.linear2 = nn.Identity()
    assert "block.linear2.weight" not in dict(m.named_parameters())
    del m.scale
    assert "scale" not in dict(m.named_parameters())


def _block_grads(net, x):
    """d(Σ out²/2) by each parameter of a Block, in closed form with NumPy."""
    w1, b1, w2 = (p.numpy() for p in net.parameters())
    h = np.tanh(x @ w1.T + b1)
    d_out = h @ w2.T
    d_z = (d_out @ w2) * (1 - h**2)
    return [d_z.T @ x, d_z.sum(0), d_out.T @ h]


def test_a_second_live_model_leaves_the_first_ones_names_and_parameters_alone():
    # Two identical models alive beside the first: a copy of it and one built and run anew.
    # Neither may rename the first one's parameters in its trace, nor answer for them.
    x = np.random.default_rng(0).normal(size=(5, 3))
    net = Block().double()
    net(symbp.tensor(x))  # names its parameters
    twin = copy.deepcopy(net)
    for p in twin.parameters():  # other values, so that a mix-up shows in the gradients
        p.data = p.numpy() * 2 + 0.5
    other = Block().double()
    other(symbp.tensor(x))
    names = ["linear1.weight", "linear1.bias", "linear2.weight"]

    traced = symbp.trace(net, x)
    assert list(traced.params) == names
    assert all(p is q for p, q in zip(traced.params.values(), net.parameters(), strict=True))
    traced_twin = symbp.trace(twin, x)
    assert all(p is q for p, q in zip(traced_twin.params.values(), twin.parameters(), strict=True))
    assert not set(map(id, twin.parameters())) & set(map(id, net.parameters()))

    # the formulas of a trace of the first model name its parameters as the model does
    f = symbp.formulas(symbp.trace(lambda x: (net(x) ** 2).sum() / 2, x))
    where = [line.split()[:2] for line in str(f).split("where\n")[1].splitlines()[:3]]
    assert where == [["W1", "linear1.weight"], ["b1", "linear1.bias"], ["W2", "linear2.weight"]]
    assert "#" not in str(f)

    # one eager loss reading both copies: each parameter gets its own model's gradient
    loss = (net(symbp.tensor(x)) ** 2).sum() / 2 + (twin(symbp.tensor(x)) ** 2).sum() / 2
    loss.backward()
    for model in (net, twin):
        for p, want in zip(model.parameters(), _block_grads(model, x), strict=True):
            np.testing.assert_allclose(p.grad.numpy(), want, rtol=1e-12, atol=1e-14)


def test_shared_parameter_is_listed_once():
    shared = nn.Linear(2, 2)
    seq = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(seq.parameters())) == 2


def test_forgotten_super_init():
    class Broken(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match=r"Broken: call super\(\).__init__\(\)"):
        Broken()


def test_parameter_data_is_assignable_and_keeps_dtype():
    lin = nn.Linear(2, 2)
    lin.weight.data = np.array([[1.0, 2.0], [3.0, 4.0]])  # a float64 literal
    assert lin.weight.data.dtype == np.float32  # the layer's dtype, as in the tutorials
    out = lin(symbp.tensor([[1.0, 1.0]]))
    np.testing.assert_allclose(out.numpy(), np.array([[3.0, 7.0]]) + lin.bias.data, rtol=1e-6)
    lin.double()
    assert (
        lin.weight.data.dtype == np.float64
        and lin(symbp.tensor([[1.0, 1.0]]).double()).dtype == np.float64
    )


def test_state_dict_round_trip():
    symbp.manual_seed(0)
    a = Model()
    state = a.state_dict()
    assert list(state) == [n for n, _ in a.named_parameters()]
    # detached tensors sharing the model's memory, as PyTorch's (torch.nn.Module.state_dict)
    assert isinstance(state["scale"], symbp.Tensor) and not state["scale"].requires_grad
    state["scale"][:] = 99
    assert np.all(a.scale.numpy() == 99)
    state["scale"][:] = 1
    state = a.state_dict()

    symbp.manual_seed(1)
    b = Model()
    x = symbp.tensor(np.random.default_rng(0).normal(size=(4, 5)).tolist())  # float32
    assert not np.allclose(a(x).numpy(), b(x).numpy())
    b.load_state_dict(state)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=n)
        assert not np.shares_memory(p.numpy(), q.numpy())
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    b.load_state_dict({"scale": np.full(2, 3.0)}, strict=False)
    np.testing.assert_array_equal(b.scale.data, [3.0, 3.0])


def test_sequential_indexing():
    layers = [nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)]
    seq = nn.Sequential(*layers)
    assert len(seq) == 3
    assert seq[0] is layers[0] and seq[-1] is layers[2]
    assert list(seq) == layers
    head = seq[:2]
    assert isinstance(head, nn.Sequential) and list(head) == layers[:2]
    x = symbp.tensor(np.ones((2, 3)), dtype=np.float32)
    np.testing.assert_array_equal(seq(x).numpy(), seq[2](seq[1](seq[0](x))).numpy())
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    seq.append(nn.Sigmoid())
    assert len(seq) == 4 and isinstance(seq[3], nn.Sigmoid)


def test_train_eval_flags():
    m = Model()
    assert all(mod.training for mod in m.modules())
    assert m.eval() is m
    assert not any(mod.training for mod in m.modules())
    m.train()
    assert all(mod.training for mod in m.modules())


# ---------------------------------------------------------------- initialisation


def test_linear_default_init_bounds():
    symbp.manual_seed(0)
    lin = nn.Linear(64, 400)
    bound = 1 / math.sqrt(64)  # U(-1/sqrt(in), 1/sqrt(in)) for weight and bias
    for p in (lin.weight, lin.bias):
        assert p.data.dtype == np.float32
        assert np.abs(p.data).max() <= bound
        assert np.abs(p.data).max() > 0.95 * bound  # and it fills the range
    w = lin.weight.data.numpy().astype(np.float64)
    assert abs(w.mean()) < 0.01 * bound * 3
    assert w.var() == pytest.approx(bound**2 / 3, rel=0.03)  # the variance of U(-a, a)


def test_manual_seed_reproduces_init():
    symbp.manual_seed(7)
    a = nn.Linear(5, 5).weight.data.numpy().copy()
    symbp.manual_seed(7)
    b = nn.Linear(5, 5).weight.data
    symbp.manual_seed(8)
    c = nn.Linear(5, 5).weight.data
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def _p(*shape):
    return nn.Parameter(np.zeros(shape, np.float64))


@pytest.mark.parametrize(
    "init,mean,std",
    [
        (lambda p: nn.init.uniform_(p, -2.0, 4.0), 1.0, 6 / math.sqrt(12)),
        (lambda p: nn.init.normal_(p, 0.5, 2.0), 0.5, 2.0),
        (lambda p: nn.init.kaiming_uniform_(p, nonlinearity="relu"), 0.0, math.sqrt(2 / 200)),
        (lambda p: nn.init.kaiming_normal_(p, nonlinearity="relu"), 0.0, math.sqrt(2 / 200)),
        (lambda p: nn.init.kaiming_normal_(p, mode="fan_out"), 0.0, math.sqrt(2 / 300)),
        (nn.init.xavier_uniform_, 0.0, math.sqrt(2 / 500)),
        (lambda p: nn.init.xavier_normal_(p, gain=2.0), 0.0, 2 * math.sqrt(2 / 500)),
    ],
    ids=[
        "uniform",
        "normal",
        "kaiming_uniform",
        "kaiming_normal",
        "kaiming_fan_out",
        "xavier_uniform",
        "xavier_normal",
    ],
)
def test_init_statistics(init, mean, std):
    symbp.manual_seed(0)
    p = _p(300, 200)  # fan_in 200, fan_out 300; 60000 samples
    assert init(p) is p
    err = std / math.sqrt(p.data.numpy().size)  # standard error of the mean
    assert abs(p.data.numpy().mean() - mean) < 5 * err
    assert p.data.numpy().std() == pytest.approx(std, rel=0.02)


def test_init_bounds_of_uniform_schemes():
    symbp.manual_seed(0)
    p = nn.init.kaiming_uniform_(_p(300, 200), a=math.sqrt(5))
    bound = math.sqrt(2 / (1 + 5)) * math.sqrt(3 / 200)  # = 1/sqrt(fan_in)
    assert bound == pytest.approx(1 / math.sqrt(200))
    assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.99 * bound
    p = nn.init.xavier_uniform_(_p(300, 200))
    bound = math.sqrt(6 / 500)
    assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.99 * bound


def test_constant_inits():
    p = _p(3, 4)
    assert np.all(nn.init.ones_(p).numpy() == 1)
    assert np.all(nn.init.zeros_(p).numpy() == 0)
    assert np.all(nn.init.constant_(p, 0.25).numpy() == 0.25)
    assert p.data.shape == (3, 4) and p.data.dtype == np.float64
    with pytest.raises(ValueError, match="fan in and fan out need at least 2 dimensions"):
        nn.init.xavier_uniform_(_p(5))


# ---------------------------------------------------------------- optimizers


A = np.array([[1.0, 2.0, 0.5], [3.0, 0.2, 1.5]])
C = np.array([[0.3, -0.1, 0.2], [0.0, 0.4, -0.5]])
P0 = np.array([[0.5, -1.0, 2.0], [0.1, 0.7, -0.3]])


def loss_of(p):
    """A smooth non-quadratic loss: sum(A p² / 2 + C p + p⁴ / 4)."""
    return (A * p**2 / 2 + C * p + p**4 / 4).sum()


def grad_of(p):
    return A * p + C + p**3  # by hand


def np_sgd(
    p, steps, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False
):
    """torch.optim.SGD's documented algorithm, in NumPy."""
    buf = None
    for t in range(steps):
        g = grad_of(p)
        g = -g if maximize else g
        g = g + weight_decay * p
        if momentum:
            buf = g.copy() if t == 0 else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    return p


def np_adam(
    p,
    steps,
    lr,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    amsgrad=False,
    decoupled=False,
    maximize=False,
):
    """torch.optim.Adam / AdamW's documented algorithm, in NumPy."""
    b1, b2 = betas
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    vmax = np.zeros_like(p)
    for t in range(1, steps + 1):
        g = grad_of(p)
        g = -g if maximize else g
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        mhat = m / (1 - b1**t)
        if amsgrad:
            vmax = np.maximum(vmax, v)
            vhat = vmax / (1 - b2**t)
        else:
            vhat = v / (1 - b2**t)
        p = p - lr * mhat / (np.sqrt(vhat) + eps)
    return p


OPTIMIZERS = [
    ("SGD", {"lr": 0.05}, np_sgd),
    ("SGD", {"lr": 0.05, "momentum": 0.9}, np_sgd),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}, np_sgd),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "nesterov": True}, np_sgd),
    ("SGD", {"lr": 0.01, "maximize": True}, np_sgd),
    ("Adam", {"lr": 0.05}, np_adam),
    ("Adam", {"lr": 0.05, "betas": (0.8, 0.99), "weight_decay": 0.1}, np_adam),
    ("Adam", {"lr": 0.05, "amsgrad": True}, np_adam),
    (
        "AdamW",
        {"lr": 0.05},
        lambda p, n, **kw: np_adam(p, n, weight_decay=0.01, decoupled=True, **kw),
    ),
    (
        "AdamW",
        {"lr": 0.05, "weight_decay": 0.2, "amsgrad": True},
        lambda p, n, **kw: np_adam(p, n, decoupled=True, **kw),
    ),
]


def run_symbp(name, kw, steps):
    p = nn.Parameter(P0.copy())
    opt = getattr(symbp.optim, name)([p], **kw)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = (symbp.tensor(A) * p**2 / 2 + symbp.tensor(C) * p + p**4 / 4).sum()
        loss.backward()
        np.testing.assert_allclose(p.grad, grad_of(p.data), rtol=1e-13)
        losses.append(loss.item())
        opt.step()
    return p, losses


@pytest.mark.parametrize("name,kw,ref", OPTIMIZERS, ids=[f"{n}-{kw}" for n, kw, _ in OPTIMIZERS])
def test_optimizer_trajectory(name, kw, ref):
    p, losses = run_symbp(name, kw, 6)
    np.testing.assert_allclose(p.data, ref(P0.copy(), 6, **kw), rtol=1e-12, atol=1e-15)
    assert losses[0] == pytest.approx(loss_of(P0), rel=1e-14)
    if torch is None:
        return
    tp = torch.tensor(P0.copy(), requires_grad=True)
    topt = getattr(torch.optim, name)([tp], **kw)
    for _ in range(6):
        topt.zero_grad()
        tA, tC = torch.tensor(A), torch.tensor(C)
        (tA * tp**2 / 2 + tC * tp + tp**4 / 4).sum().backward()
        topt.step()
    np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-12, atol=1e-15)


def test_sgd_steps_every_parameter_of_a_model_by_lr_times_grad():
    symbp.manual_seed(0)
    m = Block().double()
    opt = symbp.optim.SGD(m.parameters(), lr=0.1)
    before = {n: p.data.numpy().copy() for n, p in m.named_parameters()}
    (m(symbp.tensor(np.ones((2, 3)))) ** 2).sum().backward()
    grads = {n: p.grad.numpy().copy() for n, p in m.named_parameters()}
    opt.step()
    for n, p in m.named_parameters():
        np.testing.assert_allclose(p.data, before[n] - 0.1 * grads[n], rtol=1e-15)


def test_step_skips_parameters_without_grad_and_zero_grad_modes():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    opt = symbp.optim.SGD([a, b], lr=0.5)
    (a * 3).sum().backward()
    opt.step()
    np.testing.assert_array_equal(a.data, [-0.5, -0.5])
    np.testing.assert_array_equal(b.data, [1.0, 1.0])
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(a.grad, [0.0, 0.0])
    assert b.grad is None
    opt.zero_grad()
    assert a.grad is None


def test_param_groups_with_their_own_lr():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    opt = symbp.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.01}], lr=0.1)
    (a + b).sum().backward()
    opt.step()
    np.testing.assert_allclose(a.data, [0.9, 0.9])
    np.testing.assert_allclose(b.data, [0.99, 0.99])
    opt.param_groups[0]["lr"] = 1.0  # a scheduler changes lr between steps
    opt.step()
    np.testing.assert_allclose(a.data, [-0.1, -0.1])


@pytest.mark.parametrize(
    "name,kw", [("Adam", {"lr": 0.05, "amsgrad": True}), ("SGD", {"lr": 0.05, "momentum": 0.9})]
)
def test_optimizer_state_dict_round_trip(name, kw):
    straight, _ = run_symbp(name, kw, 5)

    p = nn.Parameter(P0.copy())
    opt = getattr(symbp.optim, name)([p], **kw)

    def step(p, opt):
        opt.zero_grad()
        (symbp.tensor(A) * p**2 / 2 + symbp.tensor(C) * p + p**4 / 4).sum().backward()
        opt.step()

    for _ in range(3):
        step(p, opt)
    saved, saved_p = opt.state_dict(), p.data.numpy().copy()
    step(p, opt)  # changing the optimizer after saving does not change what was saved
    state = next(iter(saved["state"].values()))
    assert state["step"] == 3

    q = nn.Parameter(saved_p)
    opt2 = getattr(symbp.optim, name)([q], lr=123.0)
    opt2.load_state_dict(saved)
    assert opt2.param_groups[0]["lr"] == kw["lr"]
    for _ in range(2):
        step(q, opt2)
    np.testing.assert_allclose(q.data, straight.data, rtol=1e-14)
