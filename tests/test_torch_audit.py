"""Gaps the issue-13 audit found in PyTorch's API, each closed and checked against PyTorch:
nn.init on any tensor (calculate_gain, orthogonal_, trunc_normal_, eye_), Tensor helpers
(element_size, is_floating_point, new_*, contiguous), top-level numel/is_tensor/allclose/
equal, nn.utils (gradient clipping, parameter vectors), and named AttributeErrors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import symbp
from symbp import nn

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(
    "args",
    [("linear",), ("conv2d",), ("sigmoid",), ("tanh",), ("relu",), ("leaky_relu",),
     ("leaky_relu", 0.2), ("selu",)],
)  # fmt: skip
def test_calculate_gain_is_pytorchs(args):
    assert nn.init.calculate_gain(*args) == pytest.approx(torch.nn.init.calculate_gain(*args))


def test_calculate_gain_refuses_what_pytorch_refuses():
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        nn.init.calculate_gain("swish")


@pytest.mark.parametrize("shape", [(4, 3), (3, 5), (2, 3, 2)])
def test_orthogonal_gives_orthonormal_rows_or_columns(shape):
    symbp.manual_seed(0)
    w = nn.Parameter(symbp.zeros(*shape))
    assert nn.init.orthogonal_(w, gain=2.0) is w
    flat = w.numpy().reshape(shape[0], -1).astype(np.float64) / 2.0
    small = min(flat.shape)
    gram = flat.T @ flat if flat.shape[0] >= flat.shape[1] else flat @ flat.T
    np.testing.assert_allclose(gram, np.eye(small), atol=1e-6)
    t = torch.empty(*shape)
    torch.nn.init.orthogonal_(t, gain=2.0)  # PyTorch's has the same property
    tf = t.numpy().reshape(shape[0], -1) / 2.0
    tg = tf.T @ tf if tf.shape[0] >= tf.shape[1] else tf @ tf.T
    np.testing.assert_allclose(tg, np.eye(small), atol=1e-5)


def test_initialisers_work_on_plain_tensors_as_pytorchs():
    symbp.manual_seed(1)
    t = symbp.empty(20, 30)
    assert nn.init.xavier_uniform_(t) is t
    bound = math.sqrt(6 / 50)
    assert np.abs(t.numpy()).max() <= bound and t.numpy().std() > bound / 3
    nn.init.constant_(t, 0.5)
    assert np.all(t.numpy() == 0.5)
    nn.init.trunc_normal_(t, std=1.0, a=-0.5, b=0.5)
    assert np.abs(t.numpy()).max() <= 0.5 and t.numpy().std() > 0.2
    e = symbp.empty(3, 4)
    nn.init.eye_(e)
    np.testing.assert_array_equal(e.numpy(), torch.nn.init.eye_(torch.empty(3, 4)).numpy())
    w = symbp.zeros(2, 3, requires_grad=True)  # a leaf that requires grad: under no_grad
    nn.init.kaiming_normal_(w)
    assert w.is_leaf and w.requires_grad and np.any(w.numpy() != 0)


def test_tensor_helpers_are_pytorchs():
    x, t = symbp.zeros(2, 3), torch.zeros(2, 3)
    d, td = symbp.zeros(2, dtype=symbp.float64), torch.zeros(2, dtype=torch.float64)
    assert x.element_size() == t.element_size() and d.element_size() == td.element_size()
    i, ti = symbp.arange(3), torch.arange(3)
    assert i.element_size() == ti.element_size() and not i.is_floating_point()
    assert x.is_floating_point() and x.contiguous() is x and x.is_contiguous()
    assert x.nelement() == t.nelement() == 6
    for ours, theirs in [
        (d.new_zeros(2, 2), td.new_zeros(2, 2)),
        (d.new_ones((3,)), td.new_ones((3,))),
        (d.new_full((2,), 7), td.new_full((2,), 7)),
        (d.new_tensor([1, 2]), td.new_tensor([1, 2])),
        (i.new_zeros(2), ti.new_zeros(2)),
    ]:
        assert str(ours).replace("symbp.", "torch.") == str(theirs)
    assert symbp.numel(x) == torch.numel(t) and symbp.is_tensor(x) and not symbp.is_tensor(1)
    assert symbp.is_floating_point(x)
    a, b = symbp.tensor([1.0, 2.0]), symbp.tensor([1.0, 2.0 + 1e-6])
    assert symbp.allclose(a, b) and not symbp.equal(a, b) and symbp.equal(a, a.clone())
    assert not symbp.equal(a, symbp.tensor([1.0, 2.0, 3.0]))


def _grads_pair(seed: int = 0):
    rng = np.random.default_rng(seed)
    ours = [nn.Parameter(symbp.tensor(rng.normal(size=s))) for s in [(3, 2), (4,)]]
    theirs = [torch.nn.Parameter(torch.tensor(p.numpy().copy())) for p in ours]
    for p, q in zip(ours, theirs):
        g = rng.normal(size=tuple(p.shape)) * 3
        p.grad, q.grad = symbp.tensor(g), torch.tensor(g)
    return ours, theirs


@pytest.mark.parametrize(
    "max_norm, norm_type", [(1.0, 2.0), (100.0, 2.0), (0.5, 1.0), (2.0, math.inf)]
)
def test_clip_grad_norm_matches_pytorch(max_norm, norm_type):
    ours, theirs = _grads_pair()
    got = nn.utils.clip_grad_norm_(ours, max_norm, norm_type)
    want = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-12)


def test_clip_grad_value_and_parameter_vectors_match_pytorch():
    ours, theirs = _grads_pair(1)
    nn.utils.clip_grad_value_(ours, 0.7)
    torch.nn.utils.clip_grad_value_(theirs, 0.7)
    for p, q in zip(ours, theirs):
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())
    vec = nn.utils.parameters_to_vector(ours)
    np.testing.assert_array_equal(vec.numpy(), torch.nn.utils.parameters_to_vector(theirs).detach())
    nn.utils.vector_to_parameters(vec * 2, ours)
    np.testing.assert_array_equal(ours[1].numpy(), theirs[1].detach().numpy() * 2)


def test_pytorch_names_symbp_lacks_say_why():
    with pytest.raises(AttributeError, match=r"symbp has no 'torch\.amp': symbp runs in float32"):
        symbp.amp
    with pytest.raises(AttributeError, match=r"symbp has no 'torch\.cuda\.amp'"):
        symbp.cuda.amp
    with pytest.raises(AttributeError, match=r"symbp\.compile"):
        symbp.jit
    with pytest.raises(AttributeError, match="module 'symbp' has no attribute 'nonsense'"):
        symbp.nonsense
    assert not hasattr(symbp, "bfloat16")
