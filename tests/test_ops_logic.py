"""Comparisons, logic, where/clamp and dtypes (issue 12, the logic family), against PyTorch
and NumPy: values and dtypes (NaN, inf, ties, broadcasting, numbers on either side), PyTorch's
type promotion against ``torch.result_type``, gradients at ties and bounds against PyTorch's
autograd, and the same ops compiled (float32 and float64) against eager."""

from __future__ import annotations

import itertools
import operator

import numpy as np
import pytest
import sympy
from conftest import assert_kernel_matches, kernel_results

import symbp
from symbp import nn

torch = pytest.importorskip("torch")

NAN, INF = float("nan"), float("inf")
SPECIAL = np.array([[-INF, -2.0, -0.0, 0.0], [0.5, 1.0, INF, NAN], [1.0, -1.0, 2.0, NAN]])
OTHER = np.array([[1.0, -2.0, 0.0, NAN], [0.5, 2.0, INF, 1.0], [-INF, -1.0, 2.5, NAN]])

TORCH_DTYPES = {
    np.dtype(np.float32): torch.float32,
    np.dtype(np.float64): torch.float64,
    np.dtype(np.int64): torch.int64,
    np.dtype(np.int32): torch.int32,
    np.dtype(np.bool_): torch.bool,
}


def both(a, dtype=np.float64):
    a = np.asarray(a, dtype=dtype)
    return symbp.tensor(a, dtype=dtype), torch.tensor(a)


def same(got, want):
    """got (symbp) equals want (torch): dtype, shape and values, NaN where NaN."""
    assert TORCH_DTYPES[np.dtype(got.dtype)] == want.dtype, (got.dtype, want.dtype)
    assert tuple(got.shape) == tuple(want.shape)
    np.testing.assert_array_equal(got.numpy(), want.numpy())


# ---------------------------------------------------------------- values and dtypes

COMPARISONS = [operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge]


@pytest.mark.parametrize("op", COMPARISONS, ids=lambda o: o.__name__)
def test_comparisons_nan_inf_broadcast_and_numbers(op):
    x, tx = both(SPECIAL)
    y, ty = both(OTHER)
    same(op(x, y), op(tx, ty))
    row, trow = both(OTHER[1])  # [4] against [3, 4]
    same(op(x, row), op(tx, trow))
    same(op(row, x), op(trow, tx))
    for v in (0.5, 1, -INF, True):
        same(op(x, v), op(tx, v))
        same(op(v, x), op(v, tx))
    same(op(x, x), op(tx, tx))  # NaN != NaN, even compared with itself
    name = op.__name__
    same(getattr(symbp, name)(x, y), getattr(torch, name)(tx, ty))
    same(getattr(x, name)(y), getattr(tx, name)(ty))


def test_comparison_rounds_a_number_to_the_tensors_dtype():
    # float32(0.1) == 0.1 in PyTorch: the number is converted to float32 first
    x, tx = both([0.1, 0.2], np.float32)
    for op in COMPARISONS:
        same(op(x, 0.1), op(tx, 0.1))
    n, tn = both([0, 1, 2], np.int64)  # an integer tensor against 0.5 compares in float
    for op in COMPARISONS:
        same(op(n, 0.5), op(tn, 0.5))
        same(op(n, 1), op(tn, 1))


def test_comparison_between_float32_and_float64_is_exact():
    a, ta = both([0.1, 1.0], np.float32)
    b, tb = both([0.1, 1.0], np.float64)
    same(a == b, ta == tb)  # compared in float64, as PyTorch: float32(0.1) != 0.1
    same(a < b, ta < tb)


def test_comparisons_give_bool_tensors_without_grad():
    x = symbp.tensor([1.0, -1.0], requires_grad=True)
    m = x > 0
    assert m.dtype is symbp.bool and not m.requires_grad and m.is_leaf
    tm = torch.tensor([1.0, -1.0], requires_grad=True) > 0
    assert not tm.requires_grad


LOGICAL = ["logical_and", "logical_or", "logical_xor"]


@pytest.mark.parametrize("name", LOGICAL)
def test_logical_ops_on_floats_bools_and_ints(name):
    x, tx = both(SPECIAL)
    y, ty = both(OTHER)
    same(getattr(symbp, name)(x, y), getattr(torch, name)(tx, ty))
    m, tm = both([[True, False, True, False]], np.bool_)
    same(getattr(symbp, name)(x, m), getattr(torch, name)(tx, tm))
    n, tn = both([0, 3, -1, 0], np.int64)
    same(getattr(x, name)(n), getattr(tx, name)(tn))


def test_logical_not_and_bool_operators():
    x, tx = both(SPECIAL)
    same(symbp.logical_not(x), torch.logical_not(tx))
    a, ta = x > 0, tx > 0
    b, tb = x.isnan(), tx.isnan()
    same(~a, ~ta)
    same(a & b, ta & tb)
    same(a | b, ta | tb)
    same(a ^ b, ta ^ tb)
    same(a & True, ta & True)
    with pytest.raises(NotImplementedError, match="bitwise"):
        x & x
    with pytest.raises(NotImplementedError, match="bitwise"):
        ~symbp.tensor([1, 2])


@pytest.mark.parametrize("name", ["isnan", "isinf", "isposinf", "isneginf", "isfinite"])
def test_ieee_tests(name):
    x, tx = both(SPECIAL)
    same(getattr(symbp, name)(x), getattr(torch, name)(tx))
    same(getattr(x, name)(), getattr(tx, name)())
    x32, tx32 = both(SPECIAL, np.float32)
    same(getattr(symbp, name)(x32), getattr(torch, name)(tx32))
    n, tn = both([1, -2], np.int64)
    same(getattr(symbp, name)(n), getattr(torch, name)(tn))


@pytest.mark.parametrize("name", ["any", "all"])
def test_any_all_whole_and_over_dims(name):
    x, tx = both([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [NAN, 2.0, 3.0], [1.0, -1.0, 1.0]])
    same(getattr(symbp, name)(x), getattr(torch, name)(tx))
    for dim, keepdim in itertools.product([0, 1, -1, (0, 1)], [False, True]):
        same(getattr(x, name)(dim, keepdim), getattr(tx, name)(dim, keepdim))
    m, tm = x > 0, tx > 0
    same(getattr(m, name)(1), getattr(tm, name)(1))
    same(getattr(symbp.tensor(np.zeros((0, 2))), name)(), getattr(torch.zeros(0, 2), name)())


def test_where_values_numbers_and_promotion():
    x, tx = both(SPECIAL)
    y, ty = both(OTHER)
    c, tc = x > y, tx > ty
    same(symbp.where(c, x, y), torch.where(tc, tx, ty))
    same(symbp.where(c, x, 0.0), torch.where(tc, tx, 0.0))
    same(symbp.where(c, 1.0, y), torch.where(tc, 1.0, ty))
    same(symbp.where(c, 1, 0), torch.where(tc, 1, 0))  # two ints: int64
    same(symbp.where(c, 1.0, 0.0), torch.where(tc, 1.0, 0.0))  # two floats: the default
    n, tn = both([[1, 2, 3, 4]], np.int64)
    same(symbp.where(c, n, y), torch.where(tc, tn, ty))  # broadcast and promoted
    same(symbp.where(c, n, 0.5), torch.where(tc, tn, 0.5))
    same(x.where(c, y), tx.where(tc, ty))
    with pytest.raises(RuntimeError, match="where expected condition to be a boolean tensor"):
        symbp.where(x, x, y)
    with pytest.raises(RuntimeError, match="where expected condition to be a boolean tensor"):
        torch.where(tx, tx, ty)


def test_masked_fill_and_in_place():
    x, tx = both(SPECIAL)
    m, tm = x > 0, tx > 0
    same(x.masked_fill(m, -1.5), tx.masked_fill(tm, -1.5))
    row, trow = both(SPECIAL[0] > 0, np.bool_)
    same(symbp.masked_fill(x, row, 7), torch.masked_fill(tx, trow, 7))  # broadcast mask
    same(x.masked_fill(m, symbp.tensor(2.0)), tx.masked_fill(tm, torch.tensor(2.0)))
    n, tn = both([[1, 2, 3, 4]], np.int64)
    same(n.masked_fill(n > 2, 0), tn.masked_fill(tn > 2, 0))  # the input's dtype
    with pytest.raises(RuntimeError, match="only supports boolean masks"):
        x.masked_fill(x, 0.0)
    with pytest.raises(RuntimeError, match="0-dimensional value tensor"):
        x.masked_fill(m, symbp.tensor([1.0, 2.0, 3.0, 4.0]))
    x2, tx2 = both(SPECIAL)
    out = x2.masked_fill_(x2 > 0, 9.0)
    tx2.masked_fill_(tx2 > 0, 9.0)
    assert out is x2
    same(x2, tx2)


@pytest.mark.parametrize("name", ["clamp", "clip"])
def test_clamp_scalar_tensor_and_missing_bounds(name):
    x, tx = both(SPECIAL)
    fn, tfn = getattr(symbp, name), getattr(torch, name)
    same(fn(x, -1.0, 1.0), tfn(tx, -1.0, 1.0))
    same(fn(x, min=0.5), tfn(tx, min=0.5))
    same(fn(x, max=0.5), tfn(tx, max=0.5))
    same(fn(x, 2.0, -1.0), tfn(tx, 2.0, -1.0))  # min > max: max
    lo, tlo = both([-1.0, 0.5, 0.0, -INF])
    hi, thi = both([[1.0], [2.0], [NAN]])
    same(fn(x, lo, hi), tfn(tx, tlo, thi))
    same(fn(x, min=lo), tfn(tx, min=tlo))
    same(getattr(x, name)(-1, 1), getattr(tx, name)(-1, 1))
    same(x.clamp_min(0.0), tx.clamp_min(0.0))
    same(x.clamp_max(0.0), tx.clamp_max(0.0))
    n, tn = both([-3, 0, 5], np.int64)
    same(fn(n, -1, 2), tfn(tn, -1, 2))  # stays int64
    same(fn(n, -0.5, 2), tfn(tn, -0.5, 2))  # a float bound: the default float
    with pytest.raises(RuntimeError, match="At least one of 'min' or 'max'"):
        fn(x)


@pytest.mark.parametrize("name", ["maximum", "minimum", "fmax", "fmin"])
def test_pairwise_extrema(name):
    x, tx = both(SPECIAL)
    y, ty = both(OTHER)
    same(getattr(symbp, name)(x, y), getattr(torch, name)(tx, ty))
    row, trow = both(OTHER[0])
    same(getattr(x, name)(row), getattr(tx, name)(trow))
    n, tn = both([[1, 5, -2, 0]], np.int64)
    same(getattr(symbp, name)(n, n * 0 + 1), getattr(torch, name)(tn, tn * 0 + 1))
    same(getattr(symbp, name)(x, n), getattr(torch, name)(tx, tn))
    with pytest.raises(TypeError, match="must be Tensor"):
        getattr(symbp, name)(x, 1.0)


def test_torch_max_of_two_tensors_is_elementwise():
    x, tx = both([1.0, 5.0, 2.0])
    y, ty = both([3.0, 1.0, 2.0])
    same(symbp.max(x, y), torch.max(tx, ty))
    same(x.max(y), tx.max(ty))


def test_sign_and_sgn():
    x, tx = both(SPECIAL)
    same(symbp.sign(x), torch.sign(tx))
    same(x.sgn(), tx.sgn())
    n, tn = both([-3, 0, 5], np.int64)
    same(n.sign(), tn.sign())


def test_sums_of_bools_and_int32_are_int64():
    x, tx = both(SPECIAL)
    same((x > 0).sum(), (tx > 0).sum())
    same((x > 0).sum(1), (tx > 0).sum(1))
    same((x > 0).sum(0, keepdim=True), (tx > 0).sum(0, keepdim=True))
    n, tn = both([[1, 2], [3, 4]], np.int32)
    same(n.sum(), tn.sum())
    same(symbp.sum(n, 0), torch.sum(tn, 0))


def test_casts_and_type():
    x, tx = both([[-1.5, 0.0, 2.7, NAN]])
    same(x.bool(), tx.bool())  # NaN is True, as any nonzero
    f, tf = both([[-1.5, 0.0, 2.7, 3.0]])
    same(f.int(), tf.int())  # truncated toward zero
    same(f.long(), tf.long())
    same(f.to(symbp.int32), tf.to(torch.int32))
    same(f.type(symbp.int64), tf.type(torch.int64))
    assert f.type() == tf.type() == "torch.DoubleTensor"
    assert (f > 0).type() == (tf > 0).type() == "torch.BoolTensor"
    same(f.type("torch.FloatTensor"), tf.type("torch.FloatTensor"))
    same((f > 0).float(), (tf > 0).float())
    same((f > 0).long() + (f > 1), (tf > 0).long() + (tf > 1))


# ---------------------------------------------------------------- type promotion


def _operand(kind, lib):
    """One operand of the promotion table: a dimensioned tensor, a 0-d tensor or a number."""
    what, name = kind
    if what == "number":
        return {"bool": True, "int": 2, "float": 2.5}[name]
    shape = (3,) if what == "dim" else ()
    dt = np.dtype(name)
    values = np.ones(shape, dtype=dt)
    if lib == "torch":
        return torch.tensor(values)
    return symbp.tensor(values, dtype=dt)


KINDS = [
    *((w, d) for w in ("dim", "zero") for d in ("bool", "int32", "int64", "float32", "float64")),
    *(("number", n) for n in ("bool", "int", "float")),
]


def _mixes_precisions(a, b):
    """symbp refuses float32 with float64 where that pair decides the result (PyTorch would
    quietly compute in float64): both dimensioned, or both 0-d with no dimensioned tensor."""
    floats = {"float32", "float64"}
    if a[1] not in floats or b[1] not in floats or a[1] == b[1]:
        return False
    return a[0] == b[0] and a[0] in ("dim", "zero")


@pytest.mark.parametrize("default", [np.float32, np.float64])
def test_result_type_is_torchs(default):
    old = symbp.get_default_dtype()
    old_torch = torch.get_default_dtype()
    symbp.set_default_dtype(default)
    torch.set_default_dtype(torch.float32 if default == np.float32 else torch.float64)
    try:
        for a, b in itertools.product(KINDS, KINDS):
            if a[0] == b[0] == "number":
                continue
            ta, tb = _operand(a, "torch"), _operand(b, "torch")
            sa, sb = _operand(a, "symbp"), _operand(b, "symbp")
            want = torch.result_type(ta, tb)
            if _mixes_precisions(a, b):
                with pytest.raises(symbp.ShapeError, match="mixes float32 and float64"):
                    symbp.result_type(sa, sb)
                with pytest.raises(symbp.ShapeError, match="mixes float32 and float64"):
                    sa * sb
                continue
            got = symbp.result_type(sa, sb)
            assert TORCH_DTYPES[np.dtype(got)] == want, (a, b, got, want)
            # and the arithmetic computes in it (bool - bool is refused by PyTorch)
            if a[1] == b[1] == "bool":
                continue
            for op in (operator.add, operator.mul):
                out, tout = op(sa, sb), op(ta, tb)
                assert TORCH_DTYPES[np.dtype(out.dtype)] == tout.dtype, (op, a, b)
                np.testing.assert_array_equal(out.numpy(), tout.numpy())
            # true division of integers is a float
            if a[1] != "bool" or b[1] != "bool":
                out, tout = sa / sb, ta / tb
                assert TORCH_DTYPES[np.dtype(out.dtype)] == tout.dtype, ("div", a, b)
    finally:
        symbp.set_default_dtype(old)
        torch.set_default_dtype(old_torch)


def test_promote_types_is_torchs():
    names = ["bool", "int32", "int64", "float32", "float64"]
    for a, b in itertools.product(names, names):
        got = symbp.promote_types(np.dtype(a), np.dtype(b))
        want = torch.promote_types(getattr(torch, a), getattr(torch, b))
        assert TORCH_DTYPES[np.dtype(got)] == want, (a, b)


def test_integer_ops_are_not_differentiable():
    with pytest.raises(TypeError, match="only float tensors can require grad"):
        symbp.tensor([1, 2], requires_grad=True)
    with pytest.raises(RuntimeError, match="floating point"):
        symbp.tensor([1, 2]).requires_grad_()
    with pytest.raises(RuntimeError, match="floating point"):
        torch.tensor([1, 2]).requires_grad_()
    x = symbp.tensor([1.5, 2.5], requires_grad=True)
    n = (x * 2).long()
    assert not n.requires_grad  # as PyTorch: a cast to an integer cuts the graph
    assert not (torch.tensor([1.5], requires_grad=True) * 2).long().requires_grad
    with pytest.raises(RuntimeError, match="does not depend on any tensor that requires grad"):
        (n * 3).sum().backward()
    # a float computed from it again is a constant of x's graph: x gets only the direct path
    loss = (x * n).sum()
    loss.backward()
    tx = torch.tensor([1.5, 2.5], requires_grad=True)
    (tx * (tx * 2).long()).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())


# ---------------------------------------------------------------- gradients at ties and bounds


def _grads(fn, tfn, *arrays):
    """Gradients of sum(fn(...) * w) for symbp and torch, float64."""
    w = np.linspace(0.5, 1.5, np.broadcast_shapes(*(np.shape(a) for a in arrays))[-1])
    xs = [symbp.tensor(np.asarray(a, np.float64), requires_grad=True) for a in arrays]
    ts = [torch.tensor(np.asarray(a, np.float64), requires_grad=True) for a in arrays]
    (fn(*xs) * symbp.tensor(w)).sum().backward()
    (tfn(*ts) * torch.tensor(w)).sum().backward()
    for x, t in zip(xs, ts):
        np.testing.assert_array_equal(x.grad.numpy(), t.grad.numpy())


A = [1.0, 2.0, -1.0, 3.0, 0.0]
B = [1.0, 1.0, -1.0, 4.0, 0.0]  # ties at 0, 2 and 4


def test_gradients_at_ties_are_pytorchs():
    for name in ("maximum", "minimum", "fmax", "fmin"):
        _grads(getattr(symbp, name), getattr(torch, name), A, B)
    _grads(symbp.max, torch.max, A, B)
    _grads(lambda a, b: symbp.where(a >= b, a, b), lambda a, b: torch.where(a >= b, a, b), A, B)
    _grads(lambda a, b: a.clamp(min=b), lambda a, b: a.clamp(min=b), A, B)
    _grads(lambda a, b: a.clamp(max=b), lambda a, b: a.clamp(max=b), A, B)


def test_gradients_at_clamp_bounds_are_pytorchs():
    x = [-2.0, -1.0, 0.0, 1.0, 2.0, NAN]
    _grads(lambda a: a.clamp(-1, 1), lambda a: a.clamp(-1, 1), x)  # at a bound: passes
    _grads(lambda a: a.clamp(1, -1), lambda a: a.clamp(1, -1), x)  # min > max
    _grads(lambda a: a.clamp(0, 0), lambda a: a.clamp(0, 0), x)
    _grads(lambda a: a.clamp(min=0), lambda a: a.clamp(min=0), x)
    lo = [-1.0, -1.0, 1.0, 1.0, 3.0, 0.0]
    hi = [1.0, -1.0, 1.0, 0.0, 2.0, 1.0]
    _grads(lambda a, b, c: a.clamp(b, c), lambda a, b, c: a.clamp(b, c), x[:5], lo[:5], hi[:5])


def test_gradients_through_nan_are_pytorchs():
    a = [NAN, 1.0, NAN, 2.0]
    b = [1.0, NAN, NAN, 2.0]
    for name in ("fmax", "fmin"):
        _grads(getattr(symbp, name), getattr(torch, name), a, b)


def test_masked_fill_value_gradient():
    x = np.array([[1.0, -2.0, 3.0], [-1.0, 0.5, -0.5]])
    v = symbp.tensor(0.25, requires_grad=True)
    tv = torch.tensor(0.25, dtype=torch.float64, requires_grad=True)
    _grads(lambda a: a.masked_fill(a < 0, v), lambda a: a.masked_fill(a < 0, tv), x)
    assert v.grad.item() == tv.grad.item()


def test_gradcheck_through_where_clamp_and_masks():
    """gradcheck reads a bool mask as a regime, not a kink (np.sign of a bool raised), and
    finds the kinks in the comparisons and the clamp."""

    def loss(x):
        m = x > 0
        return (symbp.where(m, x * x, -x).clamp(max=1.5) * m.to(x.dtype) + x.clamp(-1, 1)).sum()

    x = symbp.tensor(np.random.default_rng(0).normal(size=(4, 3)), requires_grad=True)
    report = symbp.gradcheck(None, loss, x)
    assert report.ok
    x0 = symbp.tensor(np.array([0.0, 1.0, 2.0, -1.0, -0.5]), requires_grad=True)
    with pytest.warns(symbp.GradcheckWarning, match="kink") as caught:
        report = symbp.gradcheck(None, loss, x0)
    assert report.ok
    assert not any("kink of where" in str(w.message) for w in caught)


@pytest.mark.parametrize("form", ["where", "mask", "clamp", "maximum"])
def test_formulas_of_where_clamp_and_masks_evaluate_to_the_gradients(form):
    """symbp.formulas prints where/clamp/mask models (a Piecewise was broadcast through its
    (value, condition) pairs: a TypeError) and its equations evaluate to the gradient."""
    fc = nn.Linear(3, 2)
    x = symbp.tensor(np.random.default_rng(0).normal(size=(4, 3)), dtype=symbp.float32)
    gate = (x.sum(1, keepdim=True) > 0).float()
    fn = {
        "where": lambda h: symbp.where(h > 0, h, 0.1 * h),
        "mask": lambda h: h * gate,
        "clamp": lambda h: h.clamp(-0.5, 0.5),
        "maximum": lambda h: symbp.maximum(h, 0.5 * h),
    }[form]
    loss = (fn(fc(x)) * gate).sum()
    f = symbp.formulas(loss, params=fc)
    assert "∂E/∂W" in f.text()
    values = f.evaluate()
    loss.backward()
    np.testing.assert_allclose(values[f.grad("W").lhs], fc.weight.grad.numpy(), rtol=1e-5)
    np.testing.assert_allclose(values[f.grad("b").lhs], fc.bias.grad.numpy(), rtol=1e-5)


# ---------------------------------------------------------------- compiled


def _shared_mask(x, w):
    """A comparison read by two kernels: stored as a bool buffer (in the integer arena)."""
    m = x > 0.1
    return symbp.where(m, x * w, w) + m.to(x.dtype) * x.sum(0)


# name -> (f(X, W), shape of X, shape of W, range of X values); X and W are parameters
CASES = {
    "mask_mul": (lambda x, w: (x > w).to(x.dtype) * x * w, (3, 4), (4,), None),
    "mask_to": (lambda x, w: (x <= 0.1).to(x.dtype) * x + x * w, (3, 4), (4,), None),
    "where": (lambda x, w: symbp.where(x > 0, x * w, 0.1 * x), (3, 4), (4,), None),
    "where_eq": (lambda x, w: symbp.where(x.sign() == w.sign(), x, w), (3, 4), (3, 4), None),
    "shared_mask": (_shared_mask, (3, 4), (4,), None),
    "clamp": (lambda x, w: (x * w).clamp(-0.5, 0.5), (3, 4), (4,), None),
    "clamp_tensor": (lambda x, w: x.clamp(w - 1, w), (3, 4), (4,), None),
    "clamp_min": (lambda x, w: (x * w).clamp(min=0.2), (3, 4), (4,), None),
    "maximum": (lambda x, w: symbp.maximum(x, w) * symbp.minimum(x, w * 2), (3, 4), (4,), None),
    "fmax": (lambda x, w: symbp.fmax(x, w) + symbp.fmin(x * x, w), (3, 4), (4,), None),
    "sign": (lambda x, w: x.sign() * w + x, (3, 4), (4,), None),
    "logical": (
        lambda x, w: ((x > 0) & (w > 0) | ~(x < -1) ^ (x > 1)).to(x.dtype) * x * w,
        (3, 4), (4,), None,
    ),
    "isfinite": (lambda x, w: x.masked_fill(~(x * w).isfinite() | (x > 1), 0.5) * w,
                 (3, 4), (4,), None),
    "any_all": (lambda x, w: (x > w).any(1, keepdim=True).to(x.dtype) * x
                + (x > -1).all(0).to(x.dtype) * w, (3, 4), (4,), None),
    "masked_fill": (lambda x, w: (x * w).masked_fill(x < 0, -0.25), (3, 4), (4,), None),
    # a bool mask counted: an int64 sum kernel (integer accumulator) in the integer arena
    "count": (lambda x, w: (x > w).sum(1, keepdim=True).to(x.dtype) * x * w, (3, 4), (4,), None),
    "where_int": (lambda x, w: symbp.where(x > 0, 2, -1) * (x * w), (3, 4), (4,), None),
}  # fmt: skip

CHUNK = 8  # cases per compiled program


def _make_xw(rng, xs, ws, lo_hi):
    lo, hi = lo_hi or (-1.5, 1.5)
    # ties with a comparison's bound are where eager and compiled could part: keep them out
    x = rng.uniform(lo, hi, xs)
    return np.where(np.abs(x) < 0.02, 0.3, x), rng.uniform(-1.5, 1.5, ws)


@pytest.fixture(scope="module")
def results(tmp_cache):
    return kernel_results(CASES, CHUNK, _make_xw)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_matches_eager(name, dtype, results):
    assert_kernel_matches(results, name, dtype)


def gated(lib):
    """A small model using comparisons, in ``lib`` (symbp or torch): a where (a leaky gate), a
    mask from a comparison multiplying a float, a clamp."""

    class Gated(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = lib.nn.Linear(3, 6)
            self.fc2 = lib.nn.Linear(6, 1)

        def forward(self, x):
            h = self.fc1(x)
            h = lib.where(h > 0, h, 0.1 * h)
            h = h * (x.sum(1, keepdim=True) > 0).to(h.dtype) + h.clamp(-1.0, 1.0)
            return self.fc2(h)

    return Gated().double()


@pytest.mark.slow
def test_compiled_model_with_where_and_masks_trains_as_pytorch(tmp_cache):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(16, 3))
    y = rng.normal(size=(16, 1))
    symbp.manual_seed(0)
    net = gated(symbp)
    tnet = gated(torch)
    with torch.no_grad():
        for (_, p), (_, tp) in zip(net.named_parameters(), tnet.named_parameters()):
            tp.copy_(torch.tensor(p.data.numpy()))
    eager = gated(symbp)
    eager.load_state_dict(net.state_dict())
    opt = symbp.optim.SGD(net.parameters(), lr=0.1)
    eopt = symbp.optim.SGD(eager.parameters(), lr=0.1)
    topt = torch.optim.SGD(tnet.parameters(), lr=0.1)
    model = symbp.compile(net, nn.MSELoss(), opt)
    for _ in range(5):
        got = model.step(x, y)
        eopt.zero_grad()
        eloss = nn.MSELoss()(eager(symbp.tensor(x)), symbp.tensor(y))
        eloss.backward()
        eopt.step()
        topt.zero_grad()
        tloss = torch.nn.MSELoss()(tnet(torch.tensor(x)), torch.tensor(y))
        tloss.backward()
        topt.step()
        np.testing.assert_allclose(got, tloss.item(), rtol=1e-10)
        np.testing.assert_allclose(eloss.item(), tloss.item(), rtol=1e-10)
    for (_, p), (_, e), (_, tp) in zip(
        net.named_parameters(), eager.named_parameters(), tnet.named_parameters()
    ):
        np.testing.assert_allclose(p.data.numpy(), tp.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(e.data.numpy(), tp.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_printer_writes_sympys_boolean_forms():
    """Fusing a mask's indicator into a relation can leave SymPy's ITE; Xor too (Numba had
    no name for them: a NameError at compile time)."""
    from symbp.compiler.lower import numba_code

    a, b, c = sympy.symbols("a b c", real=True)
    names = {a: "x[i]", b: "y[i]", c: "z[i]"}
    ite = numba_code(sympy.Piecewise((a, sympy.ITE(a > 0, b > 0, c > 0)), (c, True)), names)
    assert ite == "(x[i] if ((y[i] > 0) if (x[i] > 0) else (z[i] > 0)) else z[i])"
    xor = numba_code(sympy.Piecewise((1, sympy.Xor(a > 0, b > 0)), (0, True)), names, "int")
    assert xor == "(1 if ((int((x[i] > 0)) + int((y[i] > 0))) % 2 == 1) else 0)"
    for va, vb, vc in itertools.product([-1.0, 1.0], repeat=3):
        env = {"x": [va], "y": [vb], "z": [vc], "i": 0}
        want_ite = va if ((vb > 0) if va > 0 else (vc > 0)) else vc
        assert eval(ite, env) == want_ite
        assert eval(xor, env) == int((va > 0) != (vb > 0))
