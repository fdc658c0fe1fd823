"""Eager optimizer steps of every optimizer against PyTorch's, option by option, and PyTorch's
implementation options (``foreach``, ``fused`` ...) accepted without changing the update."""

from __future__ import annotations

import numpy as np
import pytest

import symbp
from symbp import nn

torch = pytest.importorskip("torch")

STEPS = 12

# (optimizer, options): each a short trajectory on a small MLP, compared with torch.optim's
CASES = [
    ("Adadelta", {}),
    ("Adadelta", {"lr": 0.5, "rho": 0.6, "weight_decay": 0.1}),
    ("Adamax", {}),
    ("Adamax", {"lr": 0.05, "betas": (0.8, 0.95), "weight_decay": 0.1, "maximize": True}),
    ("NAdam", {}),
    ("NAdam", {"lr": 0.05, "momentum_decay": 0.1, "weight_decay": 0.2}),
    ("NAdam", {"lr": 0.05, "weight_decay": 0.2, "decoupled_weight_decay": True}),
    ("RAdam", {}),
    ("RAdam", {"lr": 0.05, "betas": (0.9, 0.9), "weight_decay": 0.1}),
    (
        "RAdam",
        {"lr": 0.05, "betas": (0.9, 0.9), "weight_decay": 0.1, "decoupled_weight_decay": True},
    ),
    ("Rprop", {}),
    ("Rprop", {"lr": 0.05, "etas": (0.4, 1.3), "step_sizes": (1e-3, 0.04), "maximize": True}),
    ("ASGD", {}),
    ("ASGD", {"lr": 0.05, "lambd": 0.05, "alpha": 0.6, "t0": 4.0, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "foreach": True}),
    ("Adam", {"lr": 0.05, "fused": False, "foreach": False, "capturable": False}),
]


def _setup(seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    w = [rng.standard_normal(s) * 0.5 for s in [(4, 3), (4,), (2, 4), (2,)]]
    return x, y, w


def _symbp_run(name, options):
    x, y, w = _setup()
    params = [nn.Parameter(a.copy()) for a in w]
    opt = getattr(symbp.optim, name)(params, **options)
    for _ in range(STEPS):
        opt.zero_grad()
        h = symbp.tanh(symbp.tensor(x) @ params[0].T + params[1])
        ((h @ params[2].T + params[3] - symbp.tensor(y)) ** 2).mean().backward()
        opt.step()
    return [p.numpy() for p in params], opt


def _torch_run(name, options):
    x, y, w = _setup()
    x, y = torch.tensor(x), torch.tensor(y)
    params = [torch.tensor(a.copy(), requires_grad=True) for a in w]
    opt = getattr(torch.optim, name)(params, **options)
    for _ in range(STEPS):
        opt.zero_grad()
        h = torch.tanh(x @ params[0].T + params[1])
        ((h @ params[2].T + params[3] - y) ** 2).mean().backward()
        opt.step()
    return [p.detach().numpy() for p in params]


@pytest.mark.parametrize("name,options", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_eager_trajectory_matches_torch(name, options):
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # PyTorch's scalar state (ASGD's eta) as float64
    try:
        want = _torch_run(name, options)
    finally:
        torch.set_default_dtype(default)
    got, _ = _symbp_run(name, options)
    for k, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12, err_msg=f"{name} tensor {k}")


def test_implementation_options_are_kept_in_param_groups_as_pytorch_does():
    p = nn.Parameter(np.ones(2))
    opt = symbp.optim.Adam([p], foreach=True, fused=None)
    tp = torch.optim.Adam([torch.ones(2, requires_grad=True)], foreach=True, fused=None)
    for k in ("foreach", "fused", "capturable", "differentiable"):
        assert opt.param_groups[0][k] == tp.param_groups[0][k], k


def test_differentiable_step_is_refused_by_name():
    with pytest.raises(ValueError, match="differentiable=True"):
        symbp.optim.SGD([nn.Parameter(np.ones(2))], lr=0.1, differentiable=True)


def test_unknown_option_still_raises():
    with pytest.raises(TypeError, match="unknown option 'momentun'"):
        symbp.optim.SGD([nn.Parameter(np.ones(2))], lr=0.1, momentun=0.9)


@pytest.mark.parametrize(
    "name,bad",
    [("Rprop", {"etas": (1.2, 0.5)}), ("Adamax", {"betas": (0.9,)}), ("ASGD", {"lr": -1.0})],
)
def test_invalid_options_are_errors(name, bad):
    with pytest.raises(ValueError, match=name):
        getattr(symbp.optim, name)([nn.Parameter(np.ones(2))], **bad)


@pytest.mark.parametrize("name", ["NAdam", "ASGD", "Rprop"])
def test_state_dict_round_trip_continues_the_trajectory(name):
    """State that starts away from zero (mu_product = 1, eta = lr, step_size = lr) survives a
    state dict: 6 steps, save, a fresh optimizer loads it, 6 more = 12 in one go."""
    x, y, w = _setup()
    params = [nn.Parameter(a.copy()) for a in w]

    def run(opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            h = symbp.tanh(symbp.tensor(x) @ params[0].T + params[1])
            ((h @ params[2].T + params[3] - symbp.tensor(y)) ** 2).mean().backward()
            opt.step()

    opt = getattr(symbp.optim, name)(params, lr=0.05)
    run(opt, STEPS // 2)
    state = opt.state_dict()
    fresh = getattr(symbp.optim, name)(params, lr=0.05)
    fresh.load_state_dict(state)
    run(fresh, STEPS - STEPS // 2)
    want, _ = _symbp_run(name, {"lr": 0.05})
    for g, e in zip(params, want):
        np.testing.assert_allclose(g.numpy(), e, rtol=1e-12)
