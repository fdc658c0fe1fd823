"""Compiled training trajectories equal hand-written NumPy updates and PyTorch's, per option.

Each optimizer class is compiled once, with one parameter group per option set (six groups
for the six tensors of a small MLP), so every option is checked in one program.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import symbp
from symbp import nn

STEPS = 20

# (symbp class, torch class name, per-group options, lr)
CONFIGS = {
    "SGD": (
        symbp.optim.SGD,
        "SGD",
        [
            {},
            {"momentum": 0.9},
            {"momentum": 0.9, "dampening": 0.3},
            {"momentum": 0.9, "nesterov": True},
            {"weight_decay": 0.1},
            {"momentum": 0.5, "weight_decay": 0.1, "maximize": True},
        ],
        0.05,
    ),
    "Adam": (
        symbp.optim.Adam,
        "Adam",
        [
            {},
            {"amsgrad": True},
            {"weight_decay": 0.1},
            {"amsgrad": True, "weight_decay": 0.1},
            {"betas": (0.8, 0.9)},
            {"eps": 1e-3, "maximize": True},
        ],
        0.05,
    ),
    "AdamW": (
        symbp.optim.AdamW,
        "AdamW",
        [{}, {"amsgrad": True}, {"weight_decay": 0.0}, {"weight_decay": 0.3}, {}, {}],
        0.05,
    ),
    "RMSprop": (
        symbp.optim.RMSprop,
        "RMSprop",
        [
            {},
            {"momentum": 0.9},
            {"centered": True},
            {"centered": True, "momentum": 0.5},
            {"weight_decay": 0.1},
            {"alpha": 0.9, "eps": 1e-3},
        ],
        0.01,
    ),
    "Adagrad": (
        symbp.optim.Adagrad,
        "Adagrad",
        [
            {},
            {"lr_decay": 0.1},
            {"weight_decay": 0.1},
            {"eps": 1e-3},
            {"lr_decay": 0.05, "weight_decay": 0.1},
            {"lr_decay": 0.05, "eps": 1e-3},
        ],
        0.1,
    ),
}


def _net():
    symbp.manual_seed(3)
    return nn.Sequential(
        nn.Linear(3, 4, dtype=np.float64),
        nn.Tanh(),
        nn.Linear(4, 4, dtype=np.float64),
        nn.Tanh(),
        nn.Linear(4, 2, dtype=np.float64),
    )


def _data():
    rng = np.random.default_rng(7)
    return rng.standard_normal((5, 3)), rng.standard_normal((5, 2))


COMMON = {"Adagrad": {"initial_accumulator_value": 0.5}}  # torch reads it from the constructor


def _groups(net, options):
    params = list(net.parameters())
    return [{"params": [p], **o} for p, o in zip(params, options)]


# ---------------------------------------------------------------- hand-written NumPy updates


def _numpy_update(kind, p, g, st, o, lr, t):
    """PyTorch's documented update equations, written out by hand."""
    g = -g if o.get("maximize") else g
    wd = o.get("weight_decay", 0.01 if kind == "AdamW" else 0.0)
    if kind == "SGD":
        if wd:
            g = g + wd * p
        mu = o.get("momentum", 0.0)
        if mu:
            b = g if t == 1 else mu * st["b"] + (1 - o.get("dampening", 0.0)) * g
            st["b"] = b
            g = g + mu * b if o.get("nesterov") else b
        return p - lr * g
    if kind in ("Adam", "AdamW"):
        b1, b2 = o.get("betas", (0.9, 0.999))
        eps = o.get("eps", 1e-8)
        if kind == "AdamW":
            p = p * (1 - lr * wd)
        elif wd:
            g = g + wd * p
        st["m"] = b1 * st.get("m", 0 * p) + (1 - b1) * g
        st["v"] = b2 * st.get("v", 0 * p) + (1 - b2) * g * g
        v = st["v"]
        if o.get("amsgrad"):
            st["vmax"] = v = np.maximum(st.get("vmax", 0 * p), v)
        step = lr / (1 - b1**t)
        return p - step * st["m"] / (np.sqrt(v) / math.sqrt(1 - b2**t) + eps)
    if kind == "RMSprop":
        alpha, eps = o.get("alpha", 0.99), o.get("eps", 1e-8)
        if wd:
            g = g + wd * p
        st["sq"] = alpha * st.get("sq", 0 * p) + (1 - alpha) * g * g
        if o.get("centered"):
            st["ga"] = alpha * st.get("ga", 0 * p) + (1 - alpha) * g
            avg = np.sqrt(st["sq"] - st["ga"] ** 2) + eps
        else:
            avg = np.sqrt(st["sq"]) + eps
        mu = o.get("momentum", 0.0)
        if mu:
            st["b"] = mu * st.get("b", 0 * p) + g / avg
            return p - lr * st["b"]
        return p - lr * g / avg
    if kind == "Adagrad":
        if wd:
            g = g + wd * p
        clr = lr / (1 + (t - 1) * o.get("lr_decay", 0.0))
        st["sum"] = st.get("sum", 0 * p + o.get("initial_accumulator_value", 0.0)) + g * g
        return p - clr * g / (np.sqrt(st["sum"]) + o.get("eps", 1e-10))
    raise KeyError(kind)


def _loss(out, y):
    return ((out - y) ** 2).mean()


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory):
    """Compiled parameters after every step, per optimizer (one compile per optimizer)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SYMBP_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "symbp-cache"))
    x, y = _data()
    out = {}
    for kind, (cls, _, options, lr) in CONFIGS.items():
        net = _net()
        opt = cls(_groups(net, options), lr=lr, **COMMON.get(kind, {}))
        model = symbp.compile(net, _loss, opt)
        traj = []
        for _ in range(STEPS):
            model.step(x, y)
            traj.append([p.data.numpy().copy() for p in net.parameters()])
        out[kind] = traj
    mp.undo()
    return out


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_matches_numpy_updates(kind, trajectories):
    _, _, options, lr = CONFIGS[kind]
    net = _net()
    x, y = _data()
    params = list(net.parameters())
    states = [{} for _ in params]
    for t in range(1, STEPS + 1):
        loss = _loss(net(symbp.tensor(x)), symbp.tensor(y))
        loss.backward()  # gradients from the reference executor
        for p, st, o in zip(params, states, options):
            o = {**COMMON.get(kind, {}), **o}
            p.data = _numpy_update(kind, p.data, p.grad, st, o, lr, t)
            p.grad = None
        for k, (want, got) in enumerate(zip(params, trajectories[kind][t - 1])):
            np.testing.assert_allclose(
                got, want.data, rtol=1e-10, atol=1e-12, err_msg=f"{kind} group {k} step {t}"
            )


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_matches_torch(kind, trajectories):
    torch = pytest.importorskip("torch")
    _, tname, options, lr = CONFIGS[kind]
    net = _net()
    x, y = (torch.tensor(a) for a in _data())
    tparams = [torch.tensor(p.data.numpy().copy(), requires_grad=True) for p in net.parameters()]
    topt = getattr(torch.optim, tname)(
        [{"params": [p], **o} for p, o in zip(tparams, options)], lr=lr, **COMMON.get(kind, {})
    )

    def forward(x):
        w1, b1, w2, b2, w3, b3 = tparams
        h = torch.tanh(x @ w1.T + b1)
        h = torch.tanh(h @ w2.T + b2)
        return h @ w3.T + b3

    for t in range(STEPS):
        topt.zero_grad()
        ((forward(x) - y) ** 2).mean().backward()
        topt.step()
        for k, (want, got) in enumerate(zip(tparams, trajectories[kind][t])):
            np.testing.assert_allclose(
                got, want.detach().numpy(), rtol=1e-10, atol=1e-12,
                err_msg=f"{kind} group {k} ({options[k]}) step {t + 1}",
            )  # fmt: skip


def test_state_dict_round_trip(tmp_path, monkeypatch):
    """Optimizer state lives in the compiled buffers and survives state_dict/load_state_dict."""
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(tmp_path))
    x, y = _data()
    net = _net()
    opt = symbp.optim.Adam(net.parameters(), lr=0.05)
    model = symbp.compile(net, _loss, opt)
    for _ in range(3):
        model.step(x, y)
    saved_net, saved_opt = net.state_dict(), opt.state_dict()
    assert all(st["step"] == 3 for st in saved_opt["state"].values())
    after = []
    for _ in range(2):
        model.step(x, y)
        after.append([p.data.numpy().copy() for p in net.parameters()])
    # back to step 3 through the state dicts, then the same two steps again
    net.load_state_dict(saved_net)
    opt.load_state_dict(saved_opt)
    for k in range(2):
        model.step(x, y)
        for want, p in zip(after[k], net.parameters()):
            np.testing.assert_array_equal(p.data, want)
    # and a fresh eager optimizer loaded from the compiled one continues identically
    net2 = _net()
    net2.load_state_dict(net.state_dict())
    opt2 = symbp.optim.Adam(net2.parameters(), lr=0.05)
    opt2.load_state_dict(opt.state_dict())
    model.step(x, y)
    loss = _loss(net2(symbp.tensor(x)), symbp.tensor(y))
    loss.backward()
    opt2.step()
    for p, q in zip(net.parameters(), net2.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-10)


def test_eager_and_compiled_steps_interleave(tmp_path, monkeypatch):
    """An eager opt.step() between compiled steps is seen by the next compiled step."""
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(tmp_path))
    x, y = _data()
    nets = [_net(), _net()]
    opts = [symbp.optim.Adam(n.parameters(), lr=0.05) for n in nets]
    model = symbp.compile(nets[0], _loss, opts[0])
    for k in range(4):
        if k == 2:  # eager step on the compiled model's net
            nets[0].zero_grad()  # .grad holds the compiled step's gradient, as in PyTorch
            _loss(nets[0](symbp.tensor(x)), symbp.tensor(y)).backward()
            opts[0].step()
            nets[0].zero_grad()
        else:
            model.step(x, y)
        _loss(nets[1](symbp.tensor(x)), symbp.tensor(y)).backward()
        opts[1].step()
        nets[1].zero_grad()
    for p, q in zip(nets[0].parameters(), nets[1].parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-10)


def test_large_update_runs_in_parallel_and_matches(tmp_path, monkeypatch):
    """A group of >= PARALLEL_UPDATE entries is updated in a prange loop: same numbers."""
    from symbp.lower.emit import PARALLEL_UPDATE

    monkeypatch.setenv("SYMBP_CACHE_DIR", str(tmp_path))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 256)), rng.integers(0, 128, 6)
    nets = []
    for _ in range(2):
        symbp.manual_seed(1)
        nets.append(nn.Sequential(nn.Linear(256, 128, dtype=np.float64)))
    assert sum(p.data.numpy().size for p in nets[0].parameters()) >= PARALLEL_UPDATE
    opts = [symbp.optim.SGD(n.parameters(), lr=0.1, momentum=0.9) for n in nets]
    model = symbp.compile(nets[0], nn.CrossEntropyLoss(), opts[0])
    for _ in range(3):
        model.step(x, y)
        nn.CrossEntropyLoss()(nets[1](symbp.tensor(x)), symbp.tensor(y)).backward()
        opts[1].step()
        nets[1].zero_grad()
    assert "prange(" in model.source and "parallel=True" in model.source
    for p, q in zip(nets[0].parameters(), nets[1].parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-12, atol=1e-14)
