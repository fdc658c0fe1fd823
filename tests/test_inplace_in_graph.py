"""In-place updates of tensors inside a graph (computed from tensors that require grad), as
PyTorch records them: the gradient flows through the update. Each case against torch."""

import numpy as np
import pytest

import symbp

torch = pytest.importorskip("torch")


def _mask_zero(lib, x):
    y = x * 2
    y[y < 0] = 0
    return y.sum()


def _set_entry(lib, x):
    y = x * 2
    y[1] = 5.0
    return (y * y).sum()


def _arith(lib, x):
    y = x * 2
    y += 1
    y *= 3
    y -= x
    y /= 2
    y **= 2
    return y.sum()


def _slice_from_x(lib, x):
    y = x * 2
    y[0:2] = x[1:3] * 3
    return (y * x).sum()


def _clamp_and_math(lib, x):
    y = x * 2
    y.clamp_(max=3.0)
    z = x * 1
    z.sin_()
    z.sub_(x, alpha=2)
    return y.sum() + z.sum()


def _into_a_constant(lib, x):
    c = lib.zeros(3, dtype=lib.float64)
    c.add_(x)  # the constant now depends on x, as in PyTorch
    c.mul_(x)
    return c.sum()


def _unary(lib, x):
    y = x * 1.5
    y.abs_()
    y.neg_()
    y.exp_()
    return y.sum()


CASES = [_mask_zero, _set_entry, _arith, _slice_from_x, _clamp_and_math, _into_a_constant, _unary]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_gradient_flows_through_the_update(case):
    x0 = np.array([1.0, -2.0, 3.0])
    grads = []
    for lib in (symbp, torch):
        x = lib.tensor(x0, requires_grad=True)
        loss = case(lib, x)
        loss.backward()
        grads.append((float(loss), x.grad.numpy()))
    (mine, g_mine), (theirs, g_theirs) = grads
    np.testing.assert_allclose(mine, theirs, rtol=1e-12)
    np.testing.assert_allclose(g_mine, g_theirs, rtol=1e-12, atol=1e-15)


def test_a_float_result_into_an_integer_tensor_is_refused():
    x = symbp.tensor(np.ones(3), requires_grad=True)
    n = symbp.tensor([1, 2, 3])
    with pytest.raises(RuntimeError, match="can't be cast to the desired output type Long"):
        n.add_(x * 2)


def test_the_update_keeps_the_shape():
    x = symbp.tensor(np.ones(3), requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match="doesn't match the broadcast shape"):
        y.add_(symbp.ones(2, 3, dtype=symbp.float64))


def test_a_leaf_that_requires_grad_is_still_refused():
    x = symbp.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        x.add_(1)


def _clone_then_mask(lib, x):
    c = x.clone()
    c[c < 0] = 0  # a mask of c's own shape, one value
    return (c * x).sum()


def test_clone_is_a_copy_in_the_same_graph():
    x0 = np.array([1.0, -2.0, 3.0])
    out = []
    for lib in (symbp, torch):
        x = lib.tensor(x0, requires_grad=True)
        loss = _clone_then_mask(lib, x)
        loss.backward()
        c = x.clone()
        out.append((float(loss), x.grad.tolist(), x.tolist(), c.grad_fn.name()))
        y = lib.tensor([1.0, 2.0])
        z = y.clone()
        z += 1  # the copy's memory is its own
        out.append((y.tolist(), z.tolist(), z.requires_grad))
    assert out[:2] == out[2:]


def test_a_whole_mask_set_in_a_custom_backward_is_traced():
    """The tutorial's custom ReLU: its backward (traced, without values) clones the gradient
    and zeroes it where the input is negative, which is where(mask, 0, g)."""

    class MyReLU(symbp.autograd.Function):
        @staticmethod
        def forward(ctx, inp):
            ctx.save_for_backward(inp)
            return inp.clamp(min=0)

        @staticmethod
        def backward(ctx, grad_output):
            (inp,) = ctx.saved_tensors
            grad_input = grad_output.clone()
            grad_input[inp < 0] = 0
            return grad_input

    x0 = np.array([[1.0, -2.0], [-0.5, 3.0]])
    x = symbp.tensor(x0, requires_grad=True)
    (MyReLU.apply(x) * symbp.tensor(np.array([[1.0, 2.0], [3.0, 4.0]]))).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[1.0, 0.0], [0.0, 4.0]])
