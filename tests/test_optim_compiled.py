"""Compiled training trajectories equal hand-written NumPy updates and PyTorch's, per option.

Each optimizer class is compiled once, with one parameter group per option set (six groups
for the six tensors of a small MLP), so every option is checked in one program.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from conftest import everyday

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
    "Adadelta": (
        symbp.optim.Adadelta,
        "Adadelta",
        [{}, {"rho": 0.5}, {"eps": 1e-3}, {"weight_decay": 0.1}, {"maximize": True}, {}],
        1.0,
    ),
    "Adamax": (
        symbp.optim.Adamax,
        "Adamax",
        [{}, {"betas": (0.8, 0.9)}, {"eps": 1e-3}, {"weight_decay": 0.1}, {"maximize": True}, {}],
        0.05,
    ),
    "NAdam": (
        symbp.optim.NAdam,
        "NAdam",
        [
            {},
            {"momentum_decay": 0.05},
            {"weight_decay": 0.1},
            {"weight_decay": 0.1, "decoupled_weight_decay": True},
            {"betas": (0.8, 0.9), "eps": 1e-3},
            {"maximize": True},
        ],
        0.05,
    ),
    "RAdam": (
        symbp.optim.RAdam,
        "RAdam",
        # beta2 = 0.9: rho_t passes 5 at step 6, so the trajectory has both regimes
        [
            {},
            {"betas": (0.9, 0.9)},
            {"betas": (0.8, 0.9), "weight_decay": 0.1},
            {"betas": (0.9, 0.9), "weight_decay": 0.1, "decoupled_weight_decay": True},
            {"eps": 1e-3, "betas": (0.9, 0.9)},
            {"maximize": True, "betas": (0.9, 0.9)},
        ],
        0.05,
    ),
    "Rprop": (
        symbp.optim.Rprop,
        "Rprop",
        [
            {},
            {"etas": (0.3, 1.5)},
            {"step_sizes": (1e-3, 0.02)},
            {"maximize": True},
            {"lr": 0.1},
            {"etas": (0.6, 1.1), "step_sizes": (1e-4, 1.0)},
        ],
        0.01,
    ),
    "ASGD": (
        symbp.optim.ASGD,
        "ASGD",
        # t0 = 5: the average starts inside the trajectory (mu = 1 / (t - t0) after it)
        [
            {},
            {"t0": 5.0},
            {"lambd": 0.1, "t0": 3.0},
            {"alpha": 0.5},
            {"weight_decay": 0.1},
            {"maximize": True, "t0": 8.0},
        ],
        0.05,
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
            # PyTorch: the buffer starts as the gradient, at the first step with momentum
            b = g if "b" not in st else mu * st["b"] + (1 - o.get("dampening", 0.0)) * g
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
    if kind == "Adadelta":
        rho, eps = o.get("rho", 0.9), o.get("eps", 1e-6)
        if wd:
            g = g + wd * p
        st["sq"] = rho * st.get("sq", 0 * p) + (1 - rho) * g * g
        delta = np.sqrt(st.get("acc", 0 * p) + eps) / np.sqrt(st["sq"] + eps) * g
        st["acc"] = rho * st.get("acc", 0 * p) + (1 - rho) * delta * delta
        return p - lr * delta
    if kind == "Adamax":
        b1, b2 = o.get("betas", (0.9, 0.999))
        if wd:
            g = g + wd * p
        st["m"] = b1 * st.get("m", 0 * p) + (1 - b1) * g
        st["u"] = np.maximum(b2 * st.get("u", 0 * p), np.abs(g) + o.get("eps", 1e-8))
        return p - lr / (1 - b1**t) * st["m"] / st["u"]
    if kind == "NAdam":
        b1, b2 = o.get("betas", (0.9, 0.999))
        psi, eps = o.get("momentum_decay", 4e-3), o.get("eps", 1e-8)
        if wd and o.get("decoupled_weight_decay"):
            p = p * (1 - lr * wd)
        elif wd:
            g = g + wd * p
        mu = b1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        st["prod"] = st.get("prod", 1.0) * mu
        st["m"] = b1 * st.get("m", 0 * p) + (1 - b1) * g
        st["v"] = b2 * st.get("v", 0 * p) + (1 - b2) * g * g
        denom = np.sqrt(st["v"] / (1 - b2**t)) + eps
        p = p - lr * (1 - mu) / (1 - st["prod"]) * g / denom
        return p - lr * mu_next / (1 - st["prod"] * mu_next) * st["m"] / denom
    if kind == "RAdam":
        b1, b2 = o.get("betas", (0.9, 0.999))
        if wd and o.get("decoupled_weight_decay"):
            p = p * (1 - lr * wd)
        elif wd:
            g = g + wd * p
        st["m"] = b1 * st.get("m", 0 * p) + (1 - b1) * g
        st["v"] = b2 * st.get("v", 0 * p) + (1 - b2) * g * g
        m_hat = st["m"] / (1 - b1**t)
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * t * b2**t / (1 - b2**t)
        if rho_t <= 5:
            return p - lr * m_hat
        rect = math.sqrt(
            (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
        )
        adaptive = math.sqrt(1 - b2**t) / (np.sqrt(st["v"]) + o.get("eps", 1e-8))
        return p - lr * m_hat * rect * adaptive
    if kind == "Rprop":
        lr = o.get("lr", lr)
        em, ep = o.get("etas", (0.5, 1.2))
        lo, hi = o.get("step_sizes", (1e-6, 50))
        prev, size = st.get("prev", 0 * p), st.get("size", 0 * p + lr)
        agree = g * prev
        size = np.clip(np.where(agree > 0, size * ep, np.where(agree < 0, size * em, size)), lo, hi)
        g = np.where(agree < 0, 0.0, g)
        st["prev"], st["size"] = g, size
        return p - np.sign(g) * size
    if kind == "ASGD":
        lambd, alpha, t0 = o.get("lambd", 1e-4), o.get("alpha", 0.75), o.get("t0", 1e6)
        if wd:
            g = g + wd * p
        eta, mu = st.get("eta", lr), st.get("mu", 1.0)
        p = p * (1 - lambd * eta) - eta * g
        st["ax"] = p.copy() if mu == 1 else st["ax"] + (p - st["ax"]) * mu
        st["eta"] = lr / (1 + lambd * lr * t) ** alpha
        st["mu"] = 1 / max(1, t - t0)
        return p
    raise KeyError(kind)


def _loss(out, y):
    return ((out - y) ** 2).mean()


@pytest.fixture(scope="module")
def trajectories():
    """Compiled parameters after every step, per optimizer (one compile per optimizer)."""
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
    return out


@pytest.mark.parametrize("kind", sorted(CONFIGS))
@pytest.mark.slow
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
            p.data = _numpy_update(kind, p.numpy(), p.grad.numpy(), st, o, lr, t)
            p.grad = None
        for k, (want, got) in enumerate(zip(params, trajectories[kind][t - 1])):
            np.testing.assert_allclose(
                got, want.data, rtol=1e-10, atol=1e-12, err_msg=f"{kind} group {k} step {t}"
            )


@pytest.mark.parametrize("kind", sorted(CONFIGS))
@pytest.mark.slow
def test_matches_torch(kind, trajectories):
    torch = pytest.importorskip("torch")
    # PyTorch keeps per-parameter scalar state (ASGD's eta and mu, NAdam's mu_product) in the
    # default dtype: float64 here, as the parameters are
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        _torch_trajectory(torch, kind, trajectories)
    finally:
        torch.set_default_dtype(default)


def _torch_trajectory(torch, kind, trajectories):
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


@pytest.mark.slow
def test_state_dict_round_trip():
    """Optimizer state lives in the compiled buffers and survives state_dict/load_state_dict."""
    x, y = _data()
    net = _net()
    opt = symbp.optim.Adam(net.parameters(), lr=0.05)
    model = symbp.compile(net, _loss, opt)
    for _ in range(3):
        model.step(x, y)
    # a snapshot, as in PyTorch: state_dict() values share the model's (and state's) memory
    saved_net, saved_opt = copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict())
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


# Everyday: Adagrad, whose program (weight decay off) the everyday options test below builds
# too, so this costs no compile of its own (~15 s of CPU each on a busy host); Adam, whose
# bias corrections count the steps an eager step takes, in the full suite.
@pytest.mark.parametrize("kind", everyday(["Adagrad", "Adam"], keep=[0], ids=str))
def test_eager_and_compiled_steps_interleave(kind):
    """An eager opt.step() between compiled steps is seen by the next compiled step."""
    cls, _, _, lr = CONFIGS[kind]
    x, y = _data()
    nets = [_net(), _net()]
    opts = [cls(n.parameters(), lr=lr, **COMMON.get(kind, {})) for n in nets]
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


@pytest.mark.slow
def test_large_update_runs_in_parallel_and_matches():
    """A group of >= PARALLEL_UPDATE entries is updated in a prange loop: same numbers."""
    from symbp.compiler.lower.emit import PARALLEL_UPDATE

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


# ---------------------------------------------------------------- options changed mid-run


def _run_with_changes(kind, options, changes, compiled, steps=None):
    """Train _net() with ``kind``, applying ``changes[k]`` to every group before step k;
    returns the parameters after each step and, compiled, the programs used."""
    cls, _, _, lr = CONFIGS[kind]
    x, y = _data()
    net = _net()
    opt = cls(net.parameters(), lr=lr, **COMMON.get(kind, {}), **options)
    model = symbp.compile(net, _loss, opt) if compiled else None
    traj, programs = [], []
    for k in range(steps or max(changes) + 2):
        for g in opt.param_groups:
            g.update(changes.get(k, {}))
        if model is not None:
            model.step(x, y)
            programs.append(model._train)
        else:
            opt.zero_grad()
            _loss(net(symbp.tensor(x)), symbp.tensor(y)).backward()
            opt.step()
        traj.append([p.numpy().copy() for p in net.parameters()])
    return traj, programs


def _numpy_with_changes(kind, options, changes, steps):
    _, _, _, lr = CONFIGS[kind]
    net = _net()
    x, y = _data()
    params = list(net.parameters())
    states = [{} for _ in params]
    o = {**COMMON.get(kind, {}), **options}
    traj = []
    for t in range(1, steps + 1):
        o.update(changes.get(t - 1, {}))
        lr = o.get("lr", lr)
        loss = _loss(net(symbp.tensor(x)), symbp.tensor(y))
        loss.backward()
        for p, st in zip(params, states):
            p.data = _numpy_update(kind, p.numpy(), p.grad.numpy(), st, o, lr, t)
            p.grad = None
        traj.append([p.numpy().copy() for p in params])
    return traj


# before step k: these options (a structural one rebuilds the program, a value one does not)
CHANGES = {  # (few programs: each new structure is a Numba compile)
    "SGD": (
        {},
        {
            1: {"dampening": 0.3},  # a value: the same program
            2: {"momentum": 0.9},  # switched on: the buffer starts as the gradient, undamped
            3: {"nesterov": True, "dampening": 0.0},
            4: {"momentum": 0.0},  # off: PyTorch keeps the buffer...
            5: {"momentum": 0.5},  # ...and uses it again (nesterov still on)
            6: {"weight_decay": 0.5, "maximize": True},  # 0 -> nonzero: a term more
        },
    ),
    "Adam": (
        {"amsgrad": True},
        {
            1: {"betas": (0.5, 0.9)},  # values: the same program
            2: {"eps": 1e-3, "lr": 0.01},
            3: {"amsgrad": False},  # off: max_exp_avg_sq is kept...
            4: {"amsgrad": True},  # ...and used again
            5: {"weight_decay": 0.2, "maximize": True},
        },
    ),
    "RMSprop": (
        {"centered": True, "momentum": 0.9},
        {
            1: {"alpha": 0.8},
            2: {"centered": False, "momentum": 0.0},  # grad_avg and the buffer are kept...
            3: {"eps": 1e-3},
            4: {"momentum": 0.5, "centered": True},  # ...and used again
        },
    ),
    "Adagrad": ({}, {1: {"lr_decay": 0.1}, 2: {"eps": 1e-3}, 3: {"weight_decay": 0.1}}),
}


# each kind compiles a program per structure (12-30 s of CPU each): Adagrad's is everyday
@pytest.mark.parametrize("kind", everyday(sorted(CHANGES), keep=[0], ids=str))
@pytest.mark.usefixtures("tmp_cache")
def test_compiled_follows_options_changed_between_steps(kind):
    """opt.param_groups[0][option] = value between compiled steps acts as it does in PyTorch
    (hand-written updates): values at the next step, structural options by another program
    that takes over the parameters and the optimizer state (a switched-off buffer is kept)."""
    options, changes = CHANGES[kind]
    steps = max(changes) + 2
    want = _numpy_with_changes(kind, options, changes, steps)
    got, programs = _run_with_changes(kind, options, changes, compiled=True, steps=steps)
    eager, _ = _run_with_changes(kind, options, changes, compiled=False, steps=steps)
    for t in range(steps):
        for k, (w, g, e) in enumerate(zip(want[t], got[t], eager[t])):
            where = f"{kind} param {k} step {t + 1}"
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12, err_msg=f"compiled {where}")
            np.testing.assert_allclose(e, w, rtol=1e-10, atol=1e-12, err_msg=f"eager {where}")
    # a changed value keeps the program; a structural option builds another one
    cls = CONFIGS[kind][0]
    opt = cls(_net().parameters(), **options)
    for t in range(1, steps):
        before = [opt.structure(g) for g in opt.param_groups]
        for g in opt.param_groups:
            g.update(changes.get(t, {}))
        same = before == [opt.structure(g) for g in opt.param_groups]
        assert (programs[t] is programs[t - 1]) == same, f"{kind} step {t + 1}: {changes.get(t)}"


def test_structure_is_what_the_rule_branches_on():
    """Runtime values (lr, dampening, betas, lr_decay) are no part of the structure, so a
    scheduler taking lr to 0 or a dampening change needs no new program."""
    sgd = symbp.optim.SGD(_net().parameters(), lr=0.1)
    g = sgd.param_groups[0]
    assert sgd.structure(g) == (("maximize", False), ("momentum", False), ("weight_decay", False))
    g.update(lr=0.0, dampening=0.5)
    assert sgd.structure(g) == (("maximize", False), ("momentum", False), ("weight_decay", False))
    g.update(momentum=0.9)  # nesterov matters only with momentum
    assert dict(sgd.structure(g)) == {
        "maximize": False, "momentum": True, "nesterov": False, "weight_decay": False
    }  # fmt: skip
    adam = symbp.optim.Adam(_net().parameters(), betas=(0.8, 0.9))
    assert adam.param_groups[0]["betas"] == (0.8, 0.9)  # PyTorch's key, as in its state dict
    assert dict(adam.structure(adam.param_groups[0])) == {
        "amsgrad": False, "maximize": False, "weight_decay": False
    }  # fmt: skip
    assert adam.hyper_values(adam.param_groups[0]) == [1e-3, 0.8, 0.9, 1e-8, 0.0]
    adam.param_groups[0]["betas"] = 0.9
    with pytest.raises(ValueError, match="betas must be 2 numbers"):
        adam.hyper_values(adam.param_groups[0])


def test_eager_adam_follows_a_changed_betas():
    """group["betas"] = ... is PyTorch's spelling; eager Adam used to keep its old betas."""
    changes = {1: {"betas": (0.5, 0.8)}}
    want = _numpy_with_changes("Adam", {}, changes, 3)
    got, _ = _run_with_changes("Adam", {}, changes, compiled=False, steps=3)
    for w, g in zip(want[-1], got[-1]):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_old_state_dict_with_beta1_beta2_loads():
    opt = symbp.optim.Adam(_net().parameters())
    sd = opt.state_dict()
    group = sd["param_groups"][0]
    del group["betas"]
    group.update(beta1=0.7, beta2=0.8)
    opt.load_state_dict(sd)
    assert opt.param_groups[0]["betas"] == (0.7, 0.8) and "beta1" not in opt.param_groups[0]


@pytest.mark.slow  # a program per membership change: ~28 s of CPU
@pytest.mark.usefixtures("tmp_cache")
def test_compiled_follows_param_group_membership():
    """add_param_group, appending to or removing from a group after compiling: the program
    steps exactly the optimizer's parameters (as eager and PyTorch do), never the old set."""
    x, y = _data()
    net, ref = _net(), _net()
    p, q = list(net.parameters()), list(ref.parameters())
    opt = symbp.optim.SGD(p[:2], lr=0.1)
    ref_opt = symbp.optim.SGD(q[:2], lr=0.1)
    model = symbp.compile(net, _loss, opt)

    def step_both():
        model.step(x, y)
        ref.zero_grad()
        _loss(ref(symbp.tensor(x)), symbp.tensor(y)).backward()
        ref_opt.step()
        for a, b in zip(p, q):
            np.testing.assert_allclose(a.data, b.data, rtol=1e-12, atol=1e-14)

    step_both()
    frozen = [a.numpy().copy() for a in p[2:]]
    step_both()
    for a, f in zip(p[2:], frozen):  # not in any group: not stepped
        np.testing.assert_array_equal(a.data, f)
    opt.add_param_group({"params": p[2:4], "lr": 0.5, "momentum": 0.9})
    ref_opt.add_param_group({"params": q[2:4], "lr": 0.5, "momentum": 0.9})
    step_both()
    opt.param_groups[0]["params"].append(p[4])  # in place: the same list object
    ref_opt.param_groups[0]["params"].append(q[4])
    step_both()
    # pop, not remove(p[3]): list.remove compares tensors with ==, elementwise in PyTorch
    assert opt.param_groups[1]["params"].pop() is p[3]
    assert ref_opt.param_groups[1]["params"].pop() is q[3]
    step_both()
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [p[0]]})


@pytest.mark.slow  # several programs: ~16 s of CPU
@pytest.mark.usefixtures("tmp_cache")
def test_sgd_momentum_started_in_one_group_of_several():
    """PyTorch starts a momentum buffer as the gradient whenever momentum is switched on.
    Eager does; the compiled program counts one step for all groups, so a buffer started
    while another group's goes on would get (1 - dampening)·g: a clear error instead."""
    x, y = _data()
    net, ref = _net(), _net()
    groups = [{"params": [p], "momentum": 0.9 if k == 0 else 0.0, "dampening": 0.3}
              for k, p in enumerate(net.parameters())]  # fmt: skip
    opt = symbp.optim.SGD(groups, lr=0.05)
    eager = symbp.optim.SGD(
        [{**g, "params": [q]} for g, q in zip(groups, ref.parameters())], lr=0.05
    )
    states: list[dict] = [{} for _ in groups]
    want = [p.numpy().copy() for p in ref.parameters()]
    model = symbp.compile(net, _loss, opt)
    for t in range(1, 4):
        if t == 3:
            for o in (opt, eager):
                o.param_groups[1]["momentum"] = 0.9
        ref.zero_grad()
        _loss(ref(symbp.tensor(x)), symbp.tensor(y)).backward()
        for k, (q, st) in enumerate(zip(ref.parameters(), states)):
            o = {"momentum": eager.param_groups[k]["momentum"], "dampening": 0.3}
            want[k] = _numpy_update("SGD", q.numpy(), q.grad.numpy(), st, o, 0.05, t)
        eager.step()
        for q, w in zip(ref.parameters(), want):
            np.testing.assert_allclose(q.data, w, rtol=1e-12, atol=1e-14)
        if t < 3:
            model.step(x, y)
        else:
            with pytest.raises(NotImplementedError, match="param group 1 starts its momentum_b"):
                model.step(x, y)
    opt.param_groups[1]["dampening"] = 0.0  # then the two agree: no error
    model.step(x, y)


# a structural option a callback switches on after the first epoch. Everyday: Adagrad's
# weight decay, whose two programs the everyday options test builds too (no compile of its
# own); SGD's momentum, whose buffer starts inside fit, in the full suite
FIT_CHANGES = {"Adagrad": {1: {"weight_decay": 0.1}}, "SGD": {1: {"momentum": 0.9}}}


@pytest.mark.parametrize("kind", everyday(sorted(FIT_CHANGES), keep=[0], ids=str))
@pytest.mark.usefixtures("tmp_cache")
def test_fit_follows_options_a_callback_changes(kind):
    """fit re-reads the options before each epoch: an option that changes the update's
    structure, switched on by a callback after the first epoch (one batch an epoch), acts from
    the second, as in the hand-written run."""
    cls, _, _, lr = CONFIGS[kind]
    x, y = _data()
    net = _net()
    opt = cls(net.parameters(), lr=lr, **COMMON.get(kind, {}))
    model = symbp.compile(net, _loss, opt)

    def callback(epoch, history):
        if epoch == 0:
            opt.param_groups[0].update(FIT_CHANGES[kind][1])

    model.fit(x, y, epochs=3, batch_size=len(x), shuffle=False, callback=callback)
    want = _numpy_with_changes(kind, {}, FIT_CHANGES[kind], 3)
    for p, w in zip(net.parameters(), want[-1]):
        np.testing.assert_allclose(p.data, w, rtol=1e-10, atol=1e-12)
