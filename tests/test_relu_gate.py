"""Issue 11: ReLU's gradient at infinities. Its backward is ``ct * Heaviside(z, 0)``; as a
product, an infinite cotangent where the unit is off gave 0 * inf = nan, where PyTorch's
(a select) gives 0. Eager and compiled now select too (``symbp.compiler.scalar.gated``), and agree
with PyTorch at z = +-inf, at an infinite cotangent, and with a NaN pre-activation."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

import symbp
from symbp import nn
from symbp.compiler import scalar

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")

# pre-activations: both infinities, off, the kink, on
Z = np.array([-np.inf, -1.0, 0.0, 2.0, np.inf])
INF = np.full(5, np.inf)
FINITE = np.array([1.5, -2.0, 0.5, 3.0, -1.0])


def _torch_loss(lib, z, w_fused, w_mm):
    """Two paths into relu's backward: fused with the product (ct * w * H(z) in one formula)
    and through a matrix product (ct a separate array, infinite in some entries)."""
    zs = [lib.tensor(z.copy(), requires_grad=True) for _ in range(3)]
    fused = (lib.relu(zs[0]) * lib.tensor(w_fused)).sum()
    finite = (lib.relu(zs[1]) * lib.tensor(FINITE)).sum()  # z infinite, ct finite
    mm = (lib.relu(zs[2]).reshape(1, 5) @ lib.tensor(w_mm).reshape(5, 1)).sum()
    return fused + finite + mm, zs


def _torch_grads():
    loss, zs = _torch_loss(torch, Z, INF, INF)
    loss.backward()
    return loss.item(), [z.grad.numpy() for z in zs]


def test_gated_writes_a_heaviside_product_as_a_select():
    z, ct, w = sympy.symbols("z ct w", real=True)
    e = scalar.gated(ct * w * sympy.Heaviside(z, 0))
    assert e == sympy.Piecewise((0, z <= 0), (ct * w, True))
    half = scalar.gated(ct * sympy.Heaviside(z))  # SymPy's own: 1/2 at 0
    f = sympy.lambdify([z, ct], half, "numpy")
    assert [float(f(v, np.inf)) for v in (-np.inf, -1.0, 2.0)] == [0.0, 0.0, np.inf]
    assert float(f(0.0, 4.0)) == 2.0
    assert scalar.gated(ct * w) == ct * w  # nothing else changes


@needs_torch
def test_eager_relu_gradient_at_infinities_matches_torch(float64):
    want_loss, want = _torch_grads()
    with np.errstate(invalid="ignore"):  # the eager matmul's 0 * inf: a NaN, as in torch
        loss, zs = _torch_loss(symbp, Z.copy(), INF, INF)
        loss.backward()
    np.testing.assert_equal(float(loss), want_loss)  # nan (0 * inf in the forward), as torch
    for k, (g, t) in enumerate(zip(zs, want)):
        np.testing.assert_array_equal(g.grad.numpy(), t, err_msg=f"path {k}")
    # torch: 0 where z <= 0 even for an infinite cotangent
    np.testing.assert_array_equal(want[0], [0.0, 0.0, 0.0, np.inf, np.inf])


@needs_torch
def test_eager_relu_gradient_at_nan_passes_the_cotangent_as_torch(float64):
    z = np.array([np.nan, -1.0, 1.0])
    t = torch.tensor(z, requires_grad=True)
    (torch.relu(t) * torch.tensor([2.0, 2.0, 2.0])).sum().backward()
    s = symbp.tensor(z, requires_grad=True)
    (symbp.relu(s) * symbp.tensor([2.0, 2.0, 2.0])).sum().backward()
    np.testing.assert_array_equal(s.grad.numpy(), t.grad.numpy())


class ReluInf(nn.Module):
    """The three paths of ``_torch_loss`` as a model whose parameters are the z's."""

    def __init__(self):
        super().__init__()
        self.z0, self.z1, self.z2 = (nn.Parameter(Z.copy()) for _ in range(3))

    def forward(self, x):
        fused = (symbp.relu(self.z0) * symbp.tensor(INF)).sum()
        finite = (symbp.relu(self.z1) * symbp.tensor(FINITE)).sum()
        mm = (symbp.relu(self.z2).reshape(1, 5) @ symbp.tensor(INF).reshape(5, 1)).sum()
        return fused + finite + mm + 0 * x.sum()


def _out(out, y):
    return out + 0 * y.sum()


@pytest.mark.slow  # one compiled program
@needs_torch
def test_compiled_relu_gradient_at_infinities_matches_torch(float64):
    want_loss, want = _torch_grads()
    net = ReluInf()
    x = np.zeros((2, 1))
    with np.errstate(invalid="ignore"):  # tracing runs the forward eagerly: 0 * inf
        loss, grads = symbp.compile(net, _out, check_finite=False).loss_and_grads(x, x)
    np.testing.assert_equal(loss, want_loss)
    for k in range(3):
        np.testing.assert_array_equal(grads[f"z{k}"], want[k], err_msg=f"path {k}")
