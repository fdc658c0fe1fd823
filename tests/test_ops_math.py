"""The math family of the tensor language (issue 12): every elementwise math op compiled in
float64 and float32 against the reference executor, PyTorch's values at kinks and boundaries
in float64, numerical stability at large arguments, the in-place forms, the nn layers and
functional forms against torch.nn, and the formulas of a model using them."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_kernel_matches, kernel_results

import symbp
from symbp import nn
from symbp.nn import functional as F

torch = pytest.importorskip("torch")
tF = torch.nn.functional

# name -> (f(X, W), shape of X, shape of W, range of X values); W is uniform in (-1.5, 1.5)
CASES = {
    "sin": (lambda x, w: symbp.sin(x) * w, (3, 4), (4,), None),
    "cos": (lambda x, w: x.cos() * w, (3, 4), (4,), None),
    "tan": (lambda x, w: symbp.tan(x) * w, (3, 4), (4,), (-1.2, 1.2)),
    "asin": (lambda x, w: symbp.asin(x) * w, (3, 4), (4,), (-0.9, 0.9)),
    "acos": (lambda x, w: symbp.acos(x) * w, (3, 4), (4,), (-0.9, 0.9)),
    "atan": (lambda x, w: symbp.atan(x) * w, (3, 4), (4,), None),
    "atan2": (lambda x, w: symbp.atan2(x, w), (3, 4), (3, 4), None),
    "sinh": (lambda x, w: symbp.sinh(x) * w, (3, 4), (4,), None),
    "cosh": (lambda x, w: symbp.cosh(x) * w, (3, 4), (4,), None),
    "asinh": (lambda x, w: symbp.asinh(x * 3) * w, (3, 4), (4,), None),
    "acosh": (lambda x, w: symbp.acosh(x) * w, (3, 4), (4,), (1.2, 4.0)),
    "atanh": (lambda x, w: symbp.atanh(x) * w, (3, 4), (4,), (-0.9, 0.9)),
    "exp2": (lambda x, w: symbp.exp2(x) * w, (3, 4), (4,), None),
    "expm1": (lambda x, w: symbp.expm1(x * 1e-6) * w, (3, 4), (4,), None),
    "log2": (lambda x, w: symbp.log2(x) * w, (3, 4), (4,), (0.2, 3.0)),
    "log10": (lambda x, w: symbp.log10(x) * w, (3, 4), (4,), (0.2, 3.0)),
    "log1p": (lambda x, w: symbp.log1p(x * 1e-6) * w, (3, 4), (4,), None),
    "rsqrt": (lambda x, w: symbp.rsqrt(x) * w, (3, 4), (4,), (0.2, 3.0)),
    "reciprocal": (lambda x, w: x.reciprocal() * w, (3, 4), (4,), (0.3, 2.0)),
    "square": (lambda x, w: symbp.square(x) * w, (3, 4), (4,), None),
    "erf": (lambda x, w: symbp.erf(x) * w, (3, 4), (4,), None),
    "erfc": (lambda x, w: symbp.erfc(x * 3) * w, (3, 4), (4,), None),
    "erfinv": (lambda x, w: symbp.erfinv(x) * w, (3, 4), (4,), (-0.999, 0.999)),
    "floor": (lambda x, w: symbp.floor(x * 3) * w, (3, 4), (4,), None),
    "ceil": (lambda x, w: symbp.ceil(x * 3) * w, (3, 4), (4,), None),
    "round": (lambda x, w: symbp.round(x * 3) * w, (3, 4), (4,), None),
    "trunc": (lambda x, w: symbp.trunc(x * 3) * w, (3, 4), (4,), None),
    "frac": (lambda x, w: symbp.frac(x * 3) * w, (3, 4), (4,), None),
    "fmod": (lambda x, w: symbp.fmod(x * 3, w), (3, 4), (3, 4), None),
    "remainder": (lambda x, w: symbp.remainder(x * 3, w), (3, 4), (3, 4), None),
    "lerp": (lambda x, w: symbp.lerp(x, w, 0.3) + symbp.lerp(w, x, x.sigmoid()),
             (3, 4), (4,), None),
    "hypot": (lambda x, w: symbp.hypot(x, w), (3, 4), (3, 4), None),
    "xlogy": (lambda x, w: symbp.xlogy(x, w * w + 0.1), (3, 4), (3, 4), None),
    "logaddexp": (lambda x, w: symbp.logaddexp(x * 300, w * 300), (3, 4), (3, 4), None),
    "pow_tensor": (lambda x, w: symbp.pow(x * x + 0.5, w) + symbp.pow(2.0, x), (3, 4), (4,), None),
    "logsigmoid": (lambda x, w: F.logsigmoid(x * 300) * w, (3, 4), (4,), None),
    "softplus_thr": (lambda x, w: F.softplus(x * 4, 2.0, 5.0) * w, (3, 4), (4,), None),
    "relu6": (lambda x, w: F.relu6(x * 5) * w, (3, 4), (4,), None),
    "leaky_relu": (lambda x, w: F.leaky_relu(x, 0.2) * w, (3, 4), (4,), None),
    "elu": (lambda x, w: F.elu(x, 0.5) * w, (3, 4), (4,), None),
    "selu": (lambda x, w: F.selu(x) * w, (3, 4), (4,), None),
    "celu": (lambda x, w: F.celu(x, 2.0) * w, (3, 4), (4,), None),
    "gelu_tanh": (lambda x, w: F.gelu(x, approximate="tanh") * w, (3, 4), (4,), None),
    "mish": (lambda x, w: F.mish(x * 20) * w, (3, 4), (4,), None),
    "hardtanh": (lambda x, w: F.hardtanh(x * 2, -0.5, 1.0) * w, (3, 4), (4,), None),
    "hardsigmoid": (lambda x, w: F.hardsigmoid(x * 4) * w, (3, 4), (4,), None),
    "hardswish": (lambda x, w: F.hardswish(x * 4) * w, (3, 4), (4,), None),
    "softsign": (lambda x, w: F.softsign(x) * w, (3, 4), (4,), None),
    "tanhshrink": (lambda x, w: F.tanhshrink(x) * w, (3, 4), (4,), None),
    "threshold": (lambda x, w: F.threshold(x, 0.1, -2.0) * w, (3, 4), (4,), None),
    # log of negative entries is NaN, which nan_to_num replaces (gradient 0 there)
    "nan_to_num": (lambda x, w: symbp.nan_to_num(symbp.log(x), 0.5) * w, (3, 4), (4,), None),
    # one piecewise activation feeding another, fused into one formula
    "nested": (lambda x, w: F.hardtanh(F.leaky_relu(x * w, 0.1) * 3), (3, 4), (4,), None),
}  # fmt: skip

CHUNK = 14  # cases per compiled program: few Numba compiles, each function still small


def _make_xw(rng, xs, ws, lo_hi):
    lo, hi = lo_hi or (-1.5, 1.5)
    return rng.uniform(lo, hi, xs), rng.uniform(-1.5, 1.5, ws)


@pytest.fixture(scope="module")
def results(tmp_cache):
    return kernel_results(CASES, CHUNK, _make_xw)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_matches_reference(name, dtype, results):
    assert_kernel_matches(results, name, dtype)


# ---------------------------------------------------------------- PyTorch's values, float64


def _grads(fn, *points, lib="symbp"):
    """Gradients of sum(fn(*points)) by each point, in float64, with symbp or torch."""
    if lib == "torch":
        ts = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in points]
        fn(*ts).sum().backward()
        return [t.grad.numpy() for t in ts]
    ts = [symbp.tensor(np.asarray(p, np.float64), requires_grad=True) for p in points]
    fn(*ts).sum().backward()
    return [t.grad.numpy() for t in ts]


@pytest.mark.parametrize(
    "fn, tfn, points",
    [
        (F.selu, tF.selu, ([0.0, -0.0, 1.0, -1.0],)),
        (lambda x: F.elu(x, 0.3), lambda x: tF.elu(x, 0.3), ([0.0, 2.0, -2.0],)),
        (lambda x: F.leaky_relu(x, 0.1), lambda x: tF.leaky_relu(x, 0.1), ([0.0, 1.0, -1.0],)),
        # (an alpha with an exact reciprocal: PyTorch's 1/alpha is a float32 scalar)
        (lambda x: F.celu(x, 0.5), lambda x: tF.celu(x, 0.5), ([0.0, 1.0, -1.0],)),
        (lambda x: F.hardtanh(x, -0.3, 0.7), lambda x: tF.hardtanh(x, -0.3, 0.7), ([-0.3, 0.7],)),
        (F.relu6, tF.relu6, ([0.0, 6.0, 3.0, -1.0, 7.0],)),
        (F.hardswish, tF.hardswish, ([-3.0, 3.0, 0.0, 1.0],)),
        (lambda x: F.threshold(x, 0.3, 5.0), lambda x: tF.threshold(x, 0.3, 5.0), ([0.3, 1.0],)),
        (lambda x: F.softplus(x, 2.0, 3.0), lambda x: tF.softplus(x, 2.0, 3.0), ([1.5, 2.0],)),
        # d/dx at x = 0 is log(y) for y > 0, and 0 for y <= 0 (PyTorch's mask)
        (symbp.xlogy, torch.xlogy, ([0.0, 0.0, 0.0, 2.0], [2.0, 0.5, -1.0, 3.0])),
        (symbp.fmod, torch.fmod, ([6.0, -6.0, 5.5, -5.5], [2.0, 2.0, -2.0, 2.0])),
        (symbp.remainder, torch.remainder, ([6.0, -6.0, 5.5, -5.5], [2.0, 2.0, -2.0, 2.0])),
        (symbp.floor, torch.floor, ([2.0, -1.0, 0.5],)),
        (symbp.round, torch.round, ([2.5, 0.5, -1.5],)),
        (symbp.frac, torch.frac, ([2.0, -1.5],)),
        (symbp.nan_to_num, torch.nan_to_num, ([np.nan, np.inf, -np.inf, 1.0],)),
        (F.softsign, tF.softsign, ([0.0, 1.0],)),
        # a tensor exponent: 0 by x where y = 0, 0 by y where x = 0 <= y (not 0 * inf)
        (symbp.pow, torch.pow, ([0.0, 0.0, 2.0, 0.5, -1.0], [2.0, 0.0, 1.5, -1.0, 2.0])),
    ],
)
def test_kinks_and_bounds_take_pytorchs_gradient(fn, tfn, points):
    got = _grads(fn, *points)
    want = _grads(tfn, *points, lib="torch")
    for g, w in zip(got, want):  # the pinned values exactly; off the kinks, to an ulp
        np.testing.assert_allclose(g, w, rtol=2e-16, atol=0)


def test_hardsigmoid_gradient_is_one_sixth():
    # PyTorch's backward multiplies by the float32 constant 1/6 even in float64; symbp's
    # derivative is 1/6 itself, equal to PyTorch's up to that constant's 2^-25
    x = [-3.0, 3.0, 0.0, 1.0, -4.0]
    (got,) = _grads(F.hardsigmoid, x)
    np.testing.assert_array_equal(got, [0.0, 0.0, 1 / 6, 1 / 6, 0.0])
    (want,) = _grads(tF.hardsigmoid, x, lib="torch")
    np.testing.assert_allclose(got, want, rtol=2**-24)


# ---------------------------------------------------------------- numerical stability


@pytest.mark.parametrize(
    "fn, tfn, x",
    [
        (symbp.log1p, torch.log1p, [1e-18, -1e-12, 1e-300, 0.0]),
        (symbp.expm1, torch.expm1, [1e-18, -1e-12, 1e-300, 0.0]),
        (F.logsigmoid, tF.logsigmoid, [-1000.0, 1000.0, -30.0, 40.0]),
        (F.softplus, tF.softplus, [-1000.0, 1000.0, 19.0, 21.0, -40.0]),
        (lambda x: F.softplus(x, 3.0, 10.0), lambda x: tF.softplus(x, 3.0, 10.0), [-400.0, 400.0]),
        (F.mish, tF.mish, [-1000.0, 1000.0, -40.0, 30.0]),
        (lambda x: symbp.logaddexp(x, x * 0.5), lambda x: torch.logaddexp(x, x * 0.5),
         [1000.0, -1000.0, 0.0, 40.0]),
        (symbp.erfinv, torch.erfinv, [1 - 1e-12, -(1 - 1e-12), 1e-10, 0.5]),
        (F.selu, tF.selu, [-1000.0, 1e-10]),
    ],
)  # fmt: skip
def test_stable_at_large_and_tiny_arguments(fn, tfn, x):
    x = np.array(x)
    t = symbp.tensor(x, requires_grad=True)
    out = fn(t)
    tt = torch.tensor(x, requires_grad=True)
    tout = tfn(tt)
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-12, atol=0)
    finite = np.isfinite(x)
    out.sum().backward()
    tout.sum().backward()
    np.testing.assert_allclose(t.grad.numpy()[finite], tt.grad.numpy()[finite], rtol=1e-10)


def test_logaddexp_of_infinities_is_pytorchs():
    a = np.array([-np.inf, np.inf, np.inf, -np.inf, np.nan])
    b = np.array([-np.inf, np.inf, 1.0, 3.0, 0.0])
    got = symbp.logaddexp(symbp.tensor(a), symbp.tensor(b)).numpy()
    np.testing.assert_array_equal(got, torch.logaddexp(torch.tensor(a), torch.tensor(b)).numpy())


# ---------------------------------------------------------------- values as PyTorch's


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", [{}, {"nan": 2.0, "posinf": 10.0}, {"neginf": -7.0}])
def test_nan_to_num_values(dtype, kw):
    x = np.array([np.nan, np.inf, -np.inf, 1.5, -2.0], dtype)
    got = symbp.nan_to_num(symbp.tensor(x), **kw)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got.numpy(), torch.nan_to_num(torch.tensor(x), **kw).numpy())


def test_rounding_halves_to_even_and_decimals():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 2.567, -3.14159])
    for d in (0, 1, 2):
        got = symbp.round(symbp.tensor(x), decimals=d).numpy()
        np.testing.assert_array_equal(got, torch.round(torch.tensor(x), decimals=d).numpy())


def test_integer_tensors_as_pytorch():
    n = symbp.tensor([-3, 1, 4])
    tn = torch.tensor([-3, 1, 4])
    for name in ("floor", "ceil", "round", "trunc"):
        got = getattr(symbp, name)(n)
        assert got.dtype == np.int64 and got.tolist() == getattr(torch, name)(tn).tolist()
    assert symbp.fmod(n, 2).tolist() == torch.fmod(tn, 2).tolist()
    assert symbp.remainder(n, 2).tolist() == torch.remainder(tn, 2).tolist()
    s = symbp.sin(n)
    assert s.dtype == np.float32
    np.testing.assert_allclose(s.numpy(), torch.sin(tn).numpy(), rtol=1e-6)
    np.testing.assert_allclose(symbp.atan2(n, 2).numpy(), torch.atan2(tn, torch.tensor(2)).numpy())


def test_methods_and_scalar_operands(rng):
    x = rng.uniform(0.2, 2, (3, 4))
    y = rng.uniform(-2, 2, (4,))
    a, b = symbp.tensor(x), symbp.tensor(y)
    ta, tb = torch.tensor(x), torch.tensor(y)
    pairs = [
        (a.fmod(1.5), ta.fmod(1.5)),
        (a.remainder(-0.7), ta.remainder(-0.7)),
        (a.atan2(b), ta.atan2(tb)),
        (a.hypot(b), ta.hypot(tb)),
        (a.xlogy(b + 3), ta.xlogy(tb + 3)),
        (a.logaddexp(b), ta.logaddexp(tb)),
        (a.lerp(b, 0.25), ta.lerp(tb, 0.25)),
        (a.lerp(b, a * 0.1), ta.lerp(tb, ta * 0.1)),
        (a.pow(b), ta.pow(tb)),
        (a.pow(2.5), ta.pow(2.5)),
        (symbp.pow(2.0, b), torch.pow(2.0, tb)),
        (a.nan_to_num(), ta.nan_to_num()),
        (a.rsqrt().log10().exp2(), ta.rsqrt().log10().exp2()),
        (a.arctan2(b), ta.arctan2(tb)),
        (a.fix(), ta.fix()),
    ]
    for got, want in pairs:
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-13)


def test_in_place_forms(rng):
    x = rng.uniform(-0.9, 0.9, (3, 4))
    names = [
        "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "atanh", "exp2",
        "expm1", "log1p", "square", "erf", "erfc", "erfinv", "floor", "ceil", "round", "trunc",
        "frac", "sigmoid", "tanh", "relu", "nan_to_num",
    ]  # fmt: skip
    for name in names:
        t = symbp.tensor(x.copy())
        alias = t.data  # shares the memory: it sees the update
        assert getattr(t, name + "_")() is t
        want = getattr(torch.tensor(x), name + "_")().numpy()
        np.testing.assert_allclose(t.numpy(), want, rtol=1e-13, err_msg=name)
        np.testing.assert_allclose(alias.numpy(), want, rtol=1e-13)
    y = rng.uniform(0.5, 2, (4,))
    for name, arg in [("fmod", 0.3), ("remainder", symbp.tensor(y)), ("atan2", 0.5),
                      ("hypot", symbp.tensor(y)), ("xlogy", 2.0)]:  # fmt: skip
        t = symbp.tensor(x.copy())
        getattr(t, name + "_")(arg)
        targ = torch.tensor(
            arg.numpy() if isinstance(arg, symbp.Tensor) else arg, dtype=torch.float64
        )
        want = getattr(torch.tensor(x), name + "_")(targ).numpy()
        np.testing.assert_allclose(t.numpy(), want, rtol=1e-13, err_msg=name)
    t = symbp.tensor(x.copy())
    t.lerp_(symbp.tensor(y), 0.5)
    np.testing.assert_allclose(t.numpy(), torch.tensor(x).lerp_(torch.tensor(y), 0.5).numpy())
    n = symbp.tensor([1, 2])
    assert n.floor_().tolist() == [1, 2]
    with pytest.raises(RuntimeError, match="can't be cast to the desired output type Long"):
        n.sin_()
    p = symbp.tensor(x.copy(), requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        p.sin_()


# ---------------------------------------------------------------- layers and F, as torch.nn


LAYERS = [
    (lambda: nn.LeakyReLU(), lambda: torch.nn.LeakyReLU()),
    (lambda: nn.LeakyReLU(0.2), lambda: torch.nn.LeakyReLU(0.2)),
    (lambda: nn.ELU(), lambda: torch.nn.ELU()),
    (lambda: nn.ELU(alpha=0.5), lambda: torch.nn.ELU(alpha=0.5)),
    (lambda: nn.SELU(), lambda: torch.nn.SELU()),
    (lambda: nn.CELU(1.5), lambda: torch.nn.CELU(1.5)),
    (lambda: nn.GELU(), lambda: torch.nn.GELU()),
    (lambda: nn.GELU(approximate="tanh"), lambda: torch.nn.GELU(approximate="tanh")),
    (lambda: nn.Mish(), lambda: torch.nn.Mish()),
    (lambda: nn.Hardtanh(), lambda: torch.nn.Hardtanh()),
    (lambda: nn.Hardtanh(-2.0, 0.5), lambda: torch.nn.Hardtanh(-2.0, 0.5)),
    (lambda: nn.ReLU6(), lambda: torch.nn.ReLU6()),
    (lambda: nn.Hardswish(), lambda: torch.nn.Hardswish()),
    (lambda: nn.Softsign(), lambda: torch.nn.Softsign()),
    (lambda: nn.Tanhshrink(), lambda: torch.nn.Tanhshrink()),
    (lambda: nn.Threshold(0.1, 20.0), lambda: torch.nn.Threshold(0.1, 20.0)),
    (lambda: nn.LogSigmoid(), lambda: torch.nn.LogSigmoid()),
    (lambda: nn.Softplus(), lambda: torch.nn.Softplus()),
    (lambda: nn.Softplus(beta=2, threshold=3), lambda: torch.nn.Softplus(beta=2, threshold=3)),
    (lambda: nn.SiLU(), lambda: torch.nn.SiLU()),
]


@pytest.mark.parametrize("make, tmake", LAYERS, ids=[repr(t()) for _, t in LAYERS])
def test_layer_as_torch(make, tmake, rng):
    layer, tlayer = make(), tmake()
    assert repr(layer) == repr(tlayer)
    x = rng.normal(0, 3, (4, 5))
    w = rng.normal(size=(4, 5))
    t = symbp.tensor(x, requires_grad=True)
    out = layer(t)
    (out * symbp.tensor(w)).sum().backward()
    tt = torch.tensor(x, requires_grad=True)
    tout = tlayer(tt)
    (tout * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(t.grad.numpy(), tt.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_hardsigmoid_layer_as_torch(rng):
    assert repr(nn.Hardsigmoid()) == repr(torch.nn.Hardsigmoid())
    x = rng.normal(0, 3, (4, 5))
    np.testing.assert_allclose(
        nn.Hardsigmoid()(symbp.tensor(x)).numpy(), torch.nn.Hardsigmoid()(torch.tensor(x)).numpy()
    )


def test_functional_defaults_are_pytorchs(rng):
    x = rng.normal(0, 3, (6,))
    for name in ["leaky_relu", "elu", "selu", "celu", "gelu", "mish", "hardtanh", "relu6",
                 "hardsigmoid", "hardswish", "softsign", "tanhshrink", "logsigmoid", "softplus",
                 "silu"]:  # fmt: skip
        got = getattr(F, name)(symbp.tensor(x)).numpy()
        want = getattr(tF, name)(torch.tensor(x)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=name)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda x: F.gelu(x, approximate="fast"), ValueError, "approximate"),
        (lambda x: nn.GELU("fast"), ValueError, "approximate"),
        (lambda x: F.hardtanh(x, 1.0, -1.0), ValueError, "min_val"),
        (lambda x: nn.Hardtanh(1.0, -1.0), ValueError, "min_val"),
        (lambda x: symbp.sin(1.0), TypeError, "Tensor"),
    ],
)
def test_bad_arguments_raise(call, error, words):
    with pytest.raises(error, match=words):
        call(symbp.tensor([1.0, -1.0]))


def test_on_formulas_as_symbp_sigmoid():
    import sympy

    x = sympy.Symbol("x", real=True)
    assert symbp.sin(x) == sympy.sin(x)
    assert symbp.hypot(x, 3) == symbp.compiler.ops.ELEMENTWISE["hypot"](x, 3)


# ---------------------------------------------------------------- gradcheck and formulas


def test_gradcheck_knows_the_jumps(rng):
    # entries whose differences straddle a jump of floor or fmod are skipped, not failed
    x = np.array([0.9999999, 2.0000001, 1.5, -0.5])
    report = symbp.check_grads(lambda t: (symbp.floor(t) * t + symbp.fmod(t, 1.0)).sum(), x)
    assert report.ok


def test_formulas_of_linear_leaky_relu_read_like_a_textbook(rng):
    model = nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2), nn.Linear(4, 2), nn.Mish())
    x = symbp.tensor(rng.normal(size=(5, 3)).astype(np.float32))
    t = symbp.tensor(rng.normal(size=(5, 2)).astype(np.float32))
    text = str(symbp.formulas(((model(x) - t) ** 2).sum() / 2, params=model))
    lines = {}
    for line in text.splitlines():
        if " = " in line:
            name, definition = line.split(" = ", 1)
            lines[name.strip()] = definition
    assert lines["h"] == "leaky_relu(z1, 0.2)"  # the layer, with its slope, named
    assert lines["o"] == "mish(z2)" or "tanh(softplus(z2))" in lines["o"]
    assert lines["∂E/∂W2"] == "δ2ᵀ·h"
    assert lines["δ1"].startswith("{1 if ") and "0.2 otherwise}" in lines["δ1"]
    assert "ITE" not in text and "Piecewise" not in text
