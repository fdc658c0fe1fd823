"""Every op through the Numba backend agrees with the NumPy reference executor.

Each case is a small program ``out = f(X, W)`` of parameters X and W, compiled with the loss
``sum(out * R)`` (R a third parameter). Then ``grad R`` is the forward value of ``out`` element
by element, and ``grad X``, ``grad W`` its backward pass: one compiled call checks both against
the eager reference (``Tensor.backward`` runs ``symbp.compiler.reference`` on the derived program).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import sympy
from conftest import assert_kernel_matches, kernel_results

import symbp
from symbp import nn
from symbp.compiler import ops
from symbp.compiler.lower import numba_code
from symbp.tensor import _result

pytestmark = pytest.mark.usefixtures("tmp_cache")  # compile into this session's cache


def _sm(t):
    return t.softmax(-1)


def _dropped(x, w):
    """x·w through a dropout mask drawn from a fixed seed: the generated kernel's bits must
    be the NumPy reference's."""
    seed = symbp.tensor(np.int64(-77))
    mask = _result(ops.bernoulli(seed.node, 0.6, x.shape, x.dtype), [seed], False)
    return x * mask * w / 0.6


# name -> (f(X, W), shape of X, shape of W, range of X values)
CASES = {
    "add": (lambda x, w: x + w, (3, 4), (4,), None),
    "sub": (lambda x, w: x - w, (3, 4), (3, 4), None),
    "mul": (lambda x, w: x * w, (3, 4), (1, 4), None),
    "div": (lambda x, w: x / (w * w + 1), (3, 4), (4,), None),
    "pow": (lambda x, w: (x * x + 1) ** (w * 0.5), (3, 4), (3, 4), None),
    "int_pow": (lambda x, w: x**3 - x**-2 * w, (3, 4), (3, 4), (0.5, 2.0)),
    "neg": (lambda x, w: -x * w, (3, 4), (4,), None),
    "exp": (lambda x, w: symbp.exp(x) * w, (3, 4), (4,), None),
    "log": (lambda x, w: symbp.log(x) * w, (3, 4), (4,), (0.2, 3.0)),
    "sqrt": (lambda x, w: symbp.sqrt(x) + w, (3, 4), (4,), (0.2, 3.0)),
    "abs": (lambda x, w: symbp.abs(x) * w, (3, 4), (4,), None),
    "sigmoid": (lambda x, w: symbp.sigmoid(x * 30) + w, (3, 4), (4,), None),
    "tanh": (lambda x, w: symbp.tanh(x) * w, (3, 4), (4,), None),
    "relu": (lambda x, w: symbp.relu(x) * w, (3, 4), (4,), None),
    "softplus": (lambda x, w: symbp.softplus(x * 40) + w, (3, 4), (4,), None),
    "gelu": (lambda x, w: symbp.gelu(x) * w, (3, 4), (4,), None),
    "silu": (lambda x, w: symbp.silu(x) * w, (3, 4), (4,), None),
    "maximum": (lambda x, w: nn.losses.T.nary("maximum", x, w), (3, 4), (3, 4), None),
    "minimum": (lambda x, w: nn.losses.T.nary("minimum", x, w), (3, 4), (3, 4), None),
    "clog": (lambda x, w: nn.losses.T.unary("clog", x) * w, (3, 4), (4,), (0.1, 1.0)),
    "matmul": (lambda x, w: x @ w, (3, 4), (4, 5), None),
    "matmul_T": (lambda x, w: x.T @ w, (4, 3), (4, 5), None),
    "sum_all": (lambda x, w: (x * w).sum() * w, (3, 4), (4,), None),
    "sum_rows": (lambda x, w: (x * w).sum(1, keepdim=True) * x, (3, 4), (4,), None),
    "sum_cols": (lambda x, w: (x * w).sum(0) * w, (3, 4), (4,), None),
    # runs of >= 64 stored entries summed over trailing axes: support.run_sum_* (vectorised)
    "sum_runs": (lambda x, w: (x * w).sum((0, 2, 3), keepdim=True) * (x * w),
                 (3, 2, 8, 9), (9,), None),
    "mean": (lambda x, w: (x * w).mean(1), (3, 4), (4,), None),
    "max_dim": (lambda x, w: (x * w).max(1).values, (3, 4), (4,), None),
    "max_all": (lambda x, w: (x * w).max() + x, (3, 4), (4,), None),
    "softmax": (lambda x, w: _sm(x * w), (3, 4), (4,), None),
    "log_softmax": (lambda x, w: (x * w).log_softmax(1), (3, 4), (4,), None),
    "reshape": (lambda x, w: (x * w).reshape(2, 6) @ x.reshape(6, 2), (3, 4), (4,), None),
    "transpose": (lambda x, w: (x * w).T * 2, (3, 4), (4,), None),
    "expand": (lambda x, w: x + w.reshape(3, 1), (3, 4), (3,), None),
    "detach": (lambda x, w: x * w.detach() + w, (3, 4), (4,), None),
    "onehot_ce": (
        lambda x, w: nn.CrossEntropyLoss(reduction="none")(x * w, symbp.tensor([1, 0, 3])),
        (3, 4), (4,), None,
    ),
    "bce": (lambda x, w: nn.BCELoss(reduction="none")(symbp.sigmoid(x * w), x * 0 + 0.25),
            (3, 4), (4,), None),
    "bernoulli": (_dropped, (5, 7), (7,), None),
}  # fmt: skip


CHUNK = 6  # cases per compiled program: fewer Numba compiles, still small functions


def _make_xw(rng, xs, ws, lo_hi):
    lo, hi = lo_hi or (-1.5, 1.5)
    return rng.uniform(lo, hi, xs), rng.uniform(-1.5, 1.5, ws)


@pytest.fixture(scope="module")
def results(tmp_cache):
    """(eager reference grads, compiled grads, losses) for both dtypes, computed once."""
    return kernel_results(CASES, CHUNK, _make_xw)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.slow
def test_kernel_matches_reference(name, dtype, results):
    assert_kernel_matches(results, name, dtype)


def test_printer_numba_safe_forms():
    x, y = sympy.symbols("x y", real=True)
    names = {x: "a[i]", y: "b[i]"}
    assert numba_code(sympy.Heaviside(x, 0), names, "f32") == "(f32(1.0) if a[i] > 0 else f32(0.0))"
    pw = numba_code(sympy.Piecewise((x, x > y), (y, True)), names)
    assert pw == "(a[i] if (a[i] > b[i]) else b[i])" and "select" not in pw
    # a NaN from either side propagates, as torch.maximum's (a NaN in a[i] fails the tests)
    assert numba_code(sympy.Max(x, y), names) == "(b[i] if a[i] < b[i] or b[i] != b[i] else a[i])"
    assert numba_code(x**2 + 1 / sympy.sqrt(y), names) == "(a[i]*a[i]) + 1.0/math.sqrt(b[i])"
    assert numba_code(y / x**2, names) == "b[i]/(a[i]*a[i])"
    sig = numba_code(symbp.compiler.scalar.sigmoid(x), names, "f64")
    assert sig == "sigmoid_f64(a[i])"
    with pytest.raises(NotImplementedError, match="no scalar form"):
        numba_code(sympy.besselj(0, x), names)


def _entrywise(fn: Any) -> Any:
    """``fn`` (a scalar form of support.py) applied to each entry of an array, compiled."""
    from numba import njit

    @njit
    def run(x: np.ndarray, out: np.ndarray) -> None:
        for i in range(x.size):
            out[i] = fn(x[i])

    def apply(x: np.ndarray) -> np.ndarray:
        out = np.empty_like(x)
        run(x, out)
        return out

    return apply


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_is_within_one_ulp(dtype: type) -> None:
    """support.exp_f32/_f64 (what generated code calls for exp; float32's from arithmetic
    alone, so that its loops vectorize) against e^x in extended precision: ordinary arguments,
    the largest finite results, the subnormal range and past both ends, and the special
    values (±0 give 1, -inf 0, +inf inf, NaN NaN)."""
    from symbp.compiler.lower import support

    fn = support.exp_f32 if dtype is np.float32 else support.exp_f64

    run = _entrywise(fn)
    top = float(np.log(np.finfo(dtype).max))
    bottom = float(np.log(np.finfo(dtype).smallest_subnormal))
    mag = np.concatenate(
        [np.logspace(-40, 2, 4001), np.linspace(0, 3, 30001), np.linspace(top - 8, top + 1, 9001)]
    ).astype(dtype)
    x = np.concatenate([mag, -mag, np.linspace(bottom - 1, bottom + 16, 9001).astype(dtype)])
    out = run(x)
    ref = np.exp(x.astype(np.longdouble))
    with np.errstate(over="ignore"):
        rounded = ref.astype(dtype)
    finite = np.isfinite(rounded)
    assert np.array_equal(out[~finite], rounded[~finite])  # overflow to inf where e^x does
    ulp = np.spacing(rounded[finite]).astype(np.longdouble)
    assert np.max(np.abs(out[finite] - ref[finite]) / ulp) <= 1
    special = np.array([0.0, -0.0, -np.inf, np.inf, np.nan], dtype)
    got = run(special)
    assert list(got[:4]) == [1, 1, 0, np.inf] and np.isnan(got[4])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_erf_is_within_two_ulps(dtype: type) -> None:
    """support.erf_f32/_f64 (what generated code calls for erf, GELU's) against SciPy's erf in
    float64 (float32's from arithmetic alone), over tiny, ordinary and saturated arguments of
    both signs, and the special values: ±0 keep their sign, ±inf give ±1, NaN stays NaN."""
    from scipy.special import erf

    from symbp.compiler.lower import support

    fn = support.erf_f32 if dtype is np.float32 else support.erf_f64

    run = _entrywise(fn)
    mag = np.concatenate([np.logspace(-40, 1, 4001), np.linspace(0, 6, 60001)]).astype(dtype)
    x = np.concatenate([mag, -mag])
    out = run(x)
    if dtype is np.float32:
        ref = erf(x.astype(np.float64))
        ulp = np.spacing(np.abs(ref).astype(dtype)).astype(np.float64)
        assert np.max(np.abs(out - ref) / ulp) <= 2
    else:  # libm's, against SciPy's: both within an ulp of erf
        assert np.max(np.abs(out - erf(x)) / np.spacing(np.abs(erf(x)))) <= 2
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], dtype)
    got = run(special)
    assert list(np.signbit(got[:2])) == [False, True] and list(got[2:4]) == [1, -1]
    assert np.isnan(got[4])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_from_exp_is_within_three_ulps(dtype: type) -> None:
    """support.tanh_f32/_f64 (what generated code calls for tanh) against NumPy's tanh in
    extended precision, over 0, tiny, ordinary and saturated arguments of both signs, and
    the special values: ±0 keep their sign, ±inf give ±1, NaN stays NaN."""
    from symbp.compiler.lower import support

    fn = support.tanh_f32 if dtype is np.float32 else support.tanh_f64

    run = _entrywise(fn)
    mag = np.concatenate([np.logspace(-40, 2, 4001), np.linspace(0, 3, 30001)]).astype(dtype)
    x = np.concatenate([mag, -mag])
    out = run(x)
    ref = np.tanh(x.astype(np.longdouble))
    ulp = np.spacing(np.abs(ref).astype(dtype)).astype(np.longdouble)
    assert np.max(np.abs(out - ref) / ulp) <= 3
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], dtype)
    got = run(special)
    assert list(np.signbit(got[:2])) == [False, True] and list(got[2:4]) == [1, -1]
    assert np.isnan(got[4])
