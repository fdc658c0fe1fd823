"""Issue 12, the loose ends: one dim check for every op (its error as PyTorch words it), and the
gaps found against PyTorch (atan2's gradient at the origin, NaN in maximum/minimum and in
sort/topk, bool + bool, ``%`` and ``//``, ``Tensor ** Tensor``), eager and compiled."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import assert_kernel_matches, kernel_results

import symbp
from symbp.compiler.ir import ShapeError

torch = pytest.importorskip("torch")


# ---------------------------------------------------------------- one dim check

# (name, symbp call, torch call) on a [2, 3] tensor, each given a dim out of range
DIM_TAKERS = [
    ("sum", lambda m, x, d: m.sum(x, d)),
    ("max", lambda m, x, d: m.max(x, d)),
    ("cumsum", lambda m, x, d: m.cumsum(x, d)),
    ("cat", lambda m, x, d: m.cat([x, x], d)),
    ("unsqueeze", lambda m, x, d: m.unsqueeze(x, d)),
    ("gather", lambda m, x, d: m.gather(x, d, m.zeros(2, 3, dtype=m.int64))),
    ("narrow", lambda m, x, d: m.narrow(x, d, 0, 1)),
    ("diagonal", lambda m, x, d: m.diagonal(x, 0, 0, d)),
    ("flip", lambda m, x, d: m.flip(x, (d,))),
    ("topk", lambda m, x, d: m.topk(x, 1, d)),
]


@pytest.mark.parametrize("name,call", DIM_TAKERS, ids=[n for n, _ in DIM_TAKERS])
@pytest.mark.parametrize("dim", [2, -3, 5])
def test_every_dim_taker_raises_pytorchs_error(name, call, dim):
    """Shaping, indexing, reductions and linalg share one check: an IndexError (as PyTorch)
    that is also symbp's ShapeError, with PyTorch's words, the op's name and the shape."""
    if name == "unsqueeze":
        dim += 1 if dim > 0 else -1  # unsqueeze counts in a rank one more
    with pytest.raises(IndexError) as want:
        call(torch, torch.zeros(2, 3), dim)
    with pytest.raises(IndexError) as got:
        call(symbp, symbp.zeros(2, 3), dim)
    assert isinstance(got.value, ShapeError)
    text = str(got.value)
    torch_words = re.search(r"ension out of range \(expected .*?\)", str(want.value))
    assert torch_words is not None, str(want.value)
    assert torch_words.group(0) in text, (text, str(want.value))
    assert text.startswith(f"{name}: dimension out of range"), text
    assert "shape [2,3]" in text, text


def test_a_dim_must_be_an_int():
    with pytest.raises(TypeError, match="sum: dim must be an int, got bool"):
        symbp.zeros(2, 3).sum(True)


# ---------------------------------------------------------------- the gaps, against PyTorch

NAN, INF = float("nan"), float("inf")


def _pair(values, dtype=np.float64, grad=False):
    a = np.asarray(values, dtype=dtype)
    return symbp.tensor(a, requires_grad=grad), torch.tensor(a, requires_grad=grad)


def _same(got, want):
    assert str(got.dtype).split(".")[-1] == str(want.dtype).split(".")[-1], (got.dtype, want)
    np.testing.assert_array_equal(got.numpy(), want.detach().numpy())


def test_atan2_gradient_is_pytorchs_where_the_squares_vanish():
    """0 by both at the origin and where x² + y² underflows (PyTorch's), the textbook x/r²
    and -y/r² elsewhere; y and x on both sides of 0."""
    y = [0.0, -0.0, 0.0, 1e-200, 0.0, 1e-170, 1.0, -2.0, 0.5]
    x = [0.0, -0.0, -0.0, 0.0, 1e-200, 1e-170, 0.0, 3.0, -1.5]
    (a, ta), (b, tb) = _pair(y, grad=True), _pair(x, grad=True)
    _same(symbp.atan2(a, b), torch.atan2(ta, tb))
    symbp.atan2(a, b).sum().backward()
    torch.atan2(ta, tb).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=1e-15, atol=0)
    np.testing.assert_allclose(b.grad.numpy(), tb.grad.numpy(), rtol=1e-15, atol=0)
    assert np.isfinite(a.grad.numpy()).all() and np.isfinite(b.grad.numpy()).all()


def test_bool_arithmetic_stays_bool_as_pytorch():
    p, q = [True, False, True, False], [True, True, False, False]
    (a, ta), (b, tb) = _pair(p, bool), _pair(q, bool)
    for op in (
        lambda u, v: u + v,
        lambda u, v: u * v,
        lambda u, v: u + True,
        lambda u, v: False + u,
        lambda u, v: u * True,
        lambda u, v: (u + v).sum(),  # an or counted, not a sum of sums
        lambda u, v: u + 1,  # an int number: int64
        lambda u, v: u * 0.5,
    ):
        _same(op(a, b), op(ta, tb))
    for op in (lambda u, v: u - v, lambda u, v: -u):
        with pytest.raises(RuntimeError) as want:
            op(ta, tb)
        with pytest.raises(RuntimeError, match=re.escape(str(want.value).split(".")[0])):
            op(a, b)


ROWS = np.array([[3.0, NAN, 1.0, NAN, 2.0, -INF], [INF, 0.0, NAN, -0.0, 1.0, INF]])


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("dim", [1, 0, -1])
def test_sort_and_argsort_put_nan_largest_as_pytorch(descending, dim):
    a, t = _pair(ROWS)
    got, want = (
        symbp.sort(a, dim, descending),
        torch.sort(t, stable=True, dim=dim, descending=descending),
    )
    _same(got.values, want.values)
    _same(got.indices, want.indices)
    _same(
        symbp.argsort(a, dim, descending),
        torch.argsort(t, stable=True, dim=dim, descending=descending),
    )


@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("k", [1, 2, 4])
def test_topk_picks_nan_first_as_pytorch(largest, k):
    # no ties among the numbers: PyTorch's topk leaves their order unspecified
    a, t = _pair([[3.0, NAN, 1.0, NAN, 2.0, -INF], [INF, 0.0, NAN, -0.5, 1.0, 5.0]], grad=True)
    got, want = symbp.topk(a, k, 1, largest), torch.topk(t, k, 1, largest)
    _same(got.values, want.values)
    _same(got.indices, want.indices)
    w = np.arange(1.0, 2 * k + 1).reshape(2, k)
    (got.values * symbp.tensor(w)).sum().backward()
    (want.values * torch.tensor(w)).sum().backward()
    _same(a.grad, t.grad)


INTS = [-7, 7, 5, -5, 0, 12]
FLOATS = [-7.5, 7.5, 1.0, 0.0, -0.0, 3.25, INF, NAN]


@pytest.mark.parametrize(
    "op",
    [
        lambda u, v: u % 3,
        lambda u, v: u % -3,
        lambda u, v: 17 % v,
        lambda u, v: u % v,
        lambda u, v: u // 2,
        lambda u, v: u // -4,
        lambda u, v: 7 // v,
        lambda u, v: u // v,
        lambda u, v: u.floor_divide(v),
        lambda u, v: symbp.floor_divide(u, v) if isinstance(u, symbp.Tensor) else u // v,
    ],
)
@pytest.mark.parametrize("kind", ["int", "float", "mixed"])
def test_remainder_and_floor_divide_operators_as_pytorch(op, kind):
    """Python's sign convention (the divisor's), integers staying integers, PyTorch's exact
    floor division of floats (1 // 0.1 is 9), ±inf and NaN for a float over 0."""
    if kind == "int":
        (a, ta), (b, tb) = _pair(INTS, np.int64), _pair([2, -3, 3, 4, 5, -7], np.int64)
    elif kind == "float":
        (a, ta), (b, tb) = _pair(FLOATS), _pair([2.0, -0.1, 0.1, 0.0, 3.0, -2.5, 1.5, 2.0])
    else:
        (a, ta), (b, tb) = _pair(INTS, np.int64), _pair([2.5, -0.1, 0.3, 4.0, 0.7, -3.0])
    want = op(ta, tb)
    got = op(a, b)
    assert str(got.dtype).split(".")[-1] == str(want.dtype).split(".")[-1]
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-15, atol=0)


def test_integer_division_by_zero_is_pytorchs_error():
    a = symbp.tensor([4, 5])
    for op in (lambda u: u // 0, lambda u: u % 0, lambda u: u // (u - u)):
        with pytest.raises(RuntimeError, match="ZeroDivisionError"):
            op(torch.tensor([4, 5]))
        with pytest.raises(RuntimeError, match=r"ZeroDivisionError: .*integer division by zero"):
            op(a)


def test_float_division_by_a_zero_number_is_ieee():
    a, t = _pair([-2.0, 0.0, 3.0])
    _same(a / 0, t / 0)
    _same(a / 0.0, t / 0.0)


def test_tensor_power_tensor_both_directions_with_gradients():
    (x, tx), (y, ty) = (
        _pair([0.5, 2.0, 3.0, 0.0], grad=True),
        _pair([2.0, -1.5, 0.5, 2.0], grad=True),
    )
    for op in (lambda u, v: u**v, lambda u, v: v**u, lambda u, v: 2**u, lambda u, v: u**3):
        got, want = op(x, y), op(tx, ty)
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-15)
        got.sum().backward()
        want.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-13)
    np.testing.assert_allclose(y.grad.numpy(), ty.grad.numpy(), rtol=1e-13)
    (i, ti), (j, tj) = _pair([2, 3, -2, 0], np.int64), _pair([3, 2, 3, 5], np.int64)
    _same(i**j, ti**tj)
    _same(j**i, tj**ti)
    _same(2**j, 2**tj)


# ---------------------------------------------------------------- the same, compiled

_NANS = np.array([NAN, 0.25, -INF, NAN])  # a row with NaN as second argument
_ZEROS = np.array([[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])


def _nans(x):
    return symbp.tensor(_NANS.astype(x.dtype))


def _bool_sum(x, w):
    """bool + bool (an or) stored as a bool buffer (read by two kernels) and counted."""
    m = (x > 0) + (w > 0)
    return symbp.where(m, x * w, w) + (m.sum(1, keepdim=True) + m).to(x.dtype) * x


# name -> (f(X, W), shape of X, shape of W, range of X values), as tests/conftest.py's
CASES = {
    "maximum_nan": (lambda x, w: symbp.maximum(x.detach(), _nans(x)) * w + x, (3, 4), (4,), None),
    "minimum_nan": (
        lambda x, w: symbp.minimum(_nans(x) * 2, x.detach()) * w + x, (3, 4), (4,), None
    ),
    "bool_add": (_bool_sum, (3, 4), (4,), None),
    "sort_nan": (
        lambda x, w: symbp.sort(x.detach() + _nans(x), 1, True).values * w + x, (3, 4), (4,), None
    ),
    "topk_nan": (
        lambda x, w: symbp.topk(x.detach() * _nans(x), 2, 1).values.sum(1, keepdim=True) * w + x,
        (3, 4), (4,), None,
    ),
    "atan2_origin": (
        lambda x, w: symbp.atan2(x * symbp.tensor(_ZEROS.astype(x.dtype)),
                                 w * symbp.tensor(_ZEROS.astype(x.dtype))),
        (3, 4), (3, 4), None,
    ),
    "floor_mod": (lambda x, w: (x // 0.3 + x % 0.7 + 1.5 % x) * w, (3, 4), (4,), None),
    "strided_flip": (lambda x, w: x[:, ::2].flip(1) * w[:, ::2] + x[:, 1::2].roll(1, 1),
                     (3, 4), (3, 4), None),
    "pow_tensor": (lambda x, w: x.abs() ** w + 2 ** x, (3, 4), (4,), None),
}  # fmt: skip


def _make_xw(rng, xs, ws, lo_hi):
    x = rng.uniform(-1.5, 1.5, xs)
    return np.where(np.abs(x) < 0.05, 0.3, x), rng.uniform(-1.5, 1.5, ws)


@pytest.fixture(scope="module")
def results(tmp_cache):
    return kernel_results(CASES, 9, _make_xw)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_matches_eager(name, dtype, results):
    assert_kernel_matches(results, name, dtype)


def test_the_logic_wrappers_come_from_one_table_and_introspect_as_pytorchs():
    """Each PyTorch-named wrapper (symbp.eq ... symbp.fmin, and Tensor's methods of the same
    names) is a row of symbp.tensor.LOGIC_FUNCTIONS: its own name, PyTorch's argument names, a
    docstring, and the same values as a method and as the torch function."""
    import inspect

    from symbp.tensor import LOGIC_FUNCTIONS

    x = np.array([[1.0, NAN, -INF], [0.0, 2.0, INF]])
    y = np.array([[1.0, 0.5, -INF], [NAN, 3.0, 1.0]])
    (a, ta), (b, tb) = _pair(x), _pair(y)
    assert len(LOGIC_FUNCTIONS) == 19
    for name, fn in LOGIC_FUNCTIONS.items():
        assert getattr(symbp, name) is fn and fn.__name__ == name and fn.__doc__
        params = list(inspect.signature(fn).parameters)
        assert params == ["input", "other"][: len(params)] and params
        args, targs = ((a, b), (ta, tb)) if len(params) == 2 else ((a,), (ta,))
        want = getattr(torch, name)(*targs)
        _same(fn(*args), want)
        _same(getattr(a, name)(*args[1:]), want)
        assert getattr(symbp.Tensor, name).__doc__
