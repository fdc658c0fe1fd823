"""Issue 12 acceptance: a model built from the tensor language trains as PyTorch does.

One ``nn.Module`` whose forward slices its input (``x[:, a:b]``), joins two branches with
``cat``, gates them with a comparison mask through ``where``, looks rows of an embedding table
up by an index computed from the data (``E[idx]``), picks one entry per sample with ``gather``
and reduces over a dim (``logsumexp``, ``amax``). It is written once, as a function of the
library (``torch`` or ``symbp``), so the same code builds both. The weights come from NumPy;
five SGD-with-momentum steps in float64, compiled symbp (one program) and eager symbp, must give
PyTorch's losses and parameters to 1e-10 relative.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import symbp
from symbp import nn as snn

torch = pytest.importorskip("torch")

STEPS = 5
LR, MOMENTUM = 0.1, 0.9
RTOL = 1e-10
N_FEAT, N_CLASS, BATCH = 7, 3, 8


def build(lib: Any, nn: Any) -> Any:
    """The model, written once: ``lib`` is ``torch`` or ``symbp``, ``nn`` its ``nn``."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.left = nn.Linear(3, 4)  # reads x[:, 0:3]
            self.right = nn.Linear(4, 4)  # reads x[:, 3:7]
            self.emb = nn.Parameter(lib.zeros(4, 8, dtype=lib.float64))  # 4 "buckets"
            self.out = nn.Linear(8, N_CLASS)

        def forward(self, x: Any) -> Any:
            h = lib.cat([self.left(x[:, 0:3]), self.right(x[:, 3:7])], dim=1)  # [B, 8]
            h = lib.where(h > 0, h, 0.1 * h)  # a comparison mask feeding where (leaky gate)
            # A bucket per sample, computed from the data: (x0 > 0) + 2 (x1 > 0), in 0..3.
            idx = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
            h = h + self.emb[idx]  # embedding-style gather of rows
            o = self.out(h)  # [B, C]
            # The logit of class 0 or 2 (by the sign of x2), picked per sample with gather.
            pick = 2 * (x[:, 2] > 0).long()
            picked = o.gather(1, pick.unsqueeze(1))  # [B, 1]
            o = o + 0.5 * lib.where(picked > o.amax(dim=1, keepdim=True) - 1.0, picked, 0 * picked)
            return o - lib.logsumexp(o, dim=1, keepdim=True)  # log-probabilities

    return Net()


def nll(logp: Any, y: Any) -> Any:
    """Mean negative log-likelihood of the labels, through ``gather``."""
    return -logp.gather(1, y.unsqueeze(1)).mean()


def initial_weights(net: Any) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(12)
    return {name: rng.standard_normal(tuple(p.shape)) * 0.5 for name, p in net.named_parameters()}


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((BATCH, N_FEAT))
    x[0, 0], x[1, 1] = 0.0, 0.0  # exact ties of the comparisons: > 0 is False, as PyTorch
    y = rng.integers(0, N_CLASS, BATCH)
    return x, y


def torch_trajectory(w0: dict[str, np.ndarray]) -> tuple[list[float], dict[str, np.ndarray]]:
    net = build(torch, torch.nn).double()
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.from_numpy(w0[name]))
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    x, y = data()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = nll(net(xt), yt)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, {n: p.detach().numpy().copy() for n, p in net.named_parameters()}


def symbp_net(w0: dict[str, np.ndarray]) -> Any:
    # Built in float64 (symbp's layers, like torch's, take the default float dtype).
    default = symbp.get_default_dtype()
    symbp.set_default_dtype(symbp.float64)
    try:
        net = build(symbp, snn)
    finally:
        symbp.set_default_dtype(default)
    for name, p in net.named_parameters():
        p.data = w0[name].copy()
    return net


def assert_same(losses, params, ref_losses, ref_params, what: str) -> None:
    np.testing.assert_allclose(losses, ref_losses, rtol=RTOL, atol=0, err_msg=f"{what}: losses")
    assert set(params) == set(ref_params)
    for name, ref in ref_params.items():
        # Relative to the tensor's scale: an entry near 0 is not held to 1e-10 of itself.
        err = np.max(np.abs(params[name] - ref)) / np.max(np.abs(ref))
        assert err <= RTOL, f"{what}: parameter {name} differs by {err:.3g} relative"


@pytest.fixture(scope="module")
def reference() -> tuple[dict[str, np.ndarray], list[float], dict[str, np.ndarray]]:
    w0 = initial_weights(build(torch, torch.nn))
    losses, params = torch_trajectory(w0)
    # The run moves: a trajectory that stands still would compare nothing.
    assert losses[-1] < losses[0]
    return w0, losses, params


def test_the_model_uses_every_family(reference):
    """The gather really picks different buckets and the where really gates both ways."""
    x, _ = data()
    idx = (x[:, 0] > 0).astype(int) + 2 * (x[:, 1] > 0).astype(int)
    assert len(set(idx.tolist())) >= 3


def test_eager_symbp_trains_as_torch(reference):
    w0, ref_losses, ref_params = reference
    net = symbp_net(w0)
    opt = symbp.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    x, y = data()
    xs, ys = symbp.tensor(x), symbp.tensor(y)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = nll(net(xs), ys)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    params = {n: np.array(p.data) for n, p in net.named_parameters()}
    assert_same(losses, params, ref_losses, ref_params, "eager symbp")


@pytest.mark.slow
def test_compiled_symbp_trains_as_torch(reference):
    w0, ref_losses, ref_params = reference
    net = symbp_net(w0)
    opt = symbp.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    model = symbp.compile(net, nll, opt)
    x, y = data()
    losses = [model.step(x, y) for _ in range(STEPS)]
    params = {n: np.array(p.data) for n, p in net.named_parameters()}
    assert_same(losses, params, ref_losses, ref_params, "compiled symbp")
