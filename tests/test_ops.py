"""Every op of the op table against two oracles: a NumPy forward written here and float64
central differences (PyTorch's autograd too, when it is installed). One parametrized test
covers the table; guards fail when an op is added without a row here or in any stage table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import scipy.special
from conftest import numeric_grads
from test_conv import ref_avg_pool2d, ref_conv2d, ref_max_pool2d

import symbp
from symbp import api, check
from symbp import functional as F
from symbp.compiler import ops
from symbp.compiler.ir import toposort
from symbp.compiler.lower import LoweringError, emit, schedule
from symbp.formulas import PRINTING, Printing, _express
from symbp.nn import functional as F_nn
from symbp.tensor import _result, nary

try:
    import torch
except ImportError:  # the NumPy and finite-difference oracles still run
    torch = None

SHAPE = (3, 4)


def _uniform(*bounds):
    """Sampler: one array per argument, uniform in (lo, hi)."""
    return lambda rng, shape: [rng.uniform(lo, hi, shape) for lo, hi in bounds]


def _away(*bounds, gap=0.1):
    """Sampler for functions with a kink at 0: |x| in (gap, hi), random sign."""
    return lambda rng, shape: [
        rng.choice([-1.0, 1.0], shape) * rng.uniform(gap, hi, shape) for hi in bounds
    ]


def _apart(rng, shape):
    """Two arrays that differ by at least 0.1 everywhere (maximum/minimum away from ties)."""
    x = rng.uniform(-2, 2, shape)
    return [x, x + rng.choice([-1.0, 1.0], shape) * rng.uniform(0.1, 1, shape)]


def _off_integers(shift):
    """Sampler keeping x at least 0.1 from every integer + shift (a rounding's jumps)."""
    return lambda rng, shape: [rng.integers(-3, 3, shape) + shift + rng.uniform(0.1, 0.9, shape)]


def _off_multiples(rng, shape):
    """(x, y) with x/y at least 0.1 from an integer (fmod's and remainder's jumps)."""
    y = rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 2, shape)
    q = rng.integers(-3, 3, shape) + rng.uniform(0.1, 0.9, shape)
    return [q * y, y]


def _off(lo, hi, kinks, gap=0.1):
    """Sampler: uniform in (lo, hi), moved at least ``gap`` off each kink point."""

    def sample(rng, shape):
        x = rng.uniform(lo, hi, shape)
        for k in kinks:
            near = np.abs(x - k) < gap
            x[near] = k + np.where(x[near] >= k, gap, -gap) * 2
        return [x]

    return sample


SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


@dataclass
class Elementwise:
    """A row for an entry of ops.ELEMENTWISE."""

    name: str
    fn: Callable  # applies the op to Tensors
    ref: Callable  # NumPy forward
    sample: Callable
    torch_fn: Callable | None = None
    kinks: list = field(default_factory=list)  # (point, PyTorch's gradient there)

    ops = ("ew", "input", "const")  # const: the backward seed of every gradient

    def check(self, rng):
        args = self.sample(rng, SHAPE)
        ts = [symbp.tensor(a, requires_grad=True) for a in args]
        out = self.fn(*ts)
        assert out.dtype == np.float64
        assert "ew" in {n.op for n in toposort([out.node])}
        np.testing.assert_allclose(out.numpy(), self.ref(*args), rtol=1e-12, atol=1e-14)

        w = rng.normal(size=SHAPE)
        (out * symbp.tensor(w)).sum().backward()
        fd = numeric_grads(lambda *a: np.sum(self.ref(*a) * w), args)
        for t, g in zip(ts, fd):
            assert t.grad.dtype == np.float64
            np.testing.assert_allclose(t.grad, g, rtol=1e-6, atol=1e-8)
        if torch is not None and self.torch_fn is not None:
            tt = [torch.tensor(a, requires_grad=True) for a in args]
            (self.torch_fn(*tt) * torch.tensor(w)).sum().backward()
            for t, ref in zip(ts, tt):
                np.testing.assert_allclose(t.grad, ref.grad.numpy(), rtol=1e-10, atol=1e-14)

        # float32 in, float32 out (the default dtype of the tutorials)
        out32 = self.fn(*(symbp.tensor(a, dtype=np.float32) for a in args))
        assert out32.dtype == np.float32
        np.testing.assert_allclose(out32.numpy(), self.ref(*args), rtol=1e-5, atol=1e-6)

        for point, expected in self.kinks:
            ts = [symbp.tensor([p], requires_grad=True) for p in point]
            self.fn(*ts).sum().backward()
            got = [float(t.grad.numpy()[0]) for t in ts]
            assert got == list(expected), f"{self.name}'{point} = {got}, PyTorch: {expected}"
            if torch is not None and self.torch_fn is not None:
                tt = [torch.tensor([p], dtype=torch.float64, requires_grad=True) for p in point]
                self.torch_fn(*tt).sum().backward()
                assert got == [float(t.grad.numpy()[0]) for t in tt]


def _torch(path):
    """PyTorch's function at ``path`` (``"nn.functional.gelu"``), None without PyTorch."""
    if torch is None:
        return None
    fn = torch
    for part in path.split("."):
        fn = getattr(fn, part)
    return fn


def _nary(name):
    return lambda *xs: nary(name, *xs)


SIGNED, POSITIVE = (-2, 2), (0.5, 2)
ELEMENTWISE_ROWS = [
    Elementwise("add", lambda x, y: x + y, np.add, _uniform(SIGNED, SIGNED), _torch("add")),
    Elementwise("sub", lambda x, y: x - y, np.subtract, _uniform(SIGNED, SIGNED), _torch("sub")),
    Elementwise("mul", lambda x, y: x * y, np.multiply, _uniform(SIGNED, SIGNED), _torch("mul")),
    Elementwise("div", lambda x, y: x / y, np.divide, _uniform(SIGNED, POSITIVE), _torch("div")),
    Elementwise("pow", lambda x, y: x**y, np.power, _uniform(POSITIVE, SIGNED), _torch("pow")),
    Elementwise("neg", lambda x: -x, np.negative, _uniform(SIGNED), _torch("neg")),
    Elementwise("exp", symbp.exp, np.exp, _uniform((-3, 3)), _torch("exp")),
    Elementwise("log", symbp.log, np.log, _uniform((0.1, 3)), _torch("log")),
    Elementwise("sqrt", symbp.sqrt, np.sqrt, _uniform((0.1, 3)), _torch("sqrt")),
    Elementwise("abs", symbp.abs, np.abs, _away(2), _torch("abs"), [((0.0,), (0.0,))]),
    Elementwise("sigmoid", symbp.sigmoid, _sigmoid, _uniform((-5, 5)), _torch("sigmoid")),
    Elementwise("tanh", symbp.tanh, np.tanh, _uniform((-3, 3)), _torch("tanh")),
    Elementwise(
        "relu", symbp.relu, lambda x: np.maximum(x, 0), _away(2), _torch("relu"), [((0.0,), (0.0,))]
    ),
    Elementwise(
        "softplus",
        symbp.softplus,
        lambda x: np.log1p(np.exp(x)),
        _uniform((-5, 5)),
        _torch("nn.functional.softplus"),
    ),
    Elementwise(
        "gelu",
        symbp.gelu,
        lambda x: x / 2 * (1 + scipy.special.erf(x / np.sqrt(2))),
        _uniform((-3, 3)),
        _torch("nn.functional.gelu"),
    ),
    Elementwise(
        "silu",
        symbp.silu,
        lambda x: x * _sigmoid(x),
        _uniform((-5, 5)),
        _torch("nn.functional.silu"),
    ),
    # ties split the gradient evenly, as PyTorch's maximum and minimum do
    Elementwise(
        "maximum",
        _nary("maximum"),
        np.maximum,
        _apart,
        _torch("maximum"),
        [((1.0, 1.0), (0.5, 0.5)), ((-2.0, 3.0), (0.0, 1.0))],
    ),
    Elementwise(
        "minimum",
        _nary("minimum"),
        np.minimum,
        _apart,
        _torch("minimum"),
        [((1.0, 1.0), (0.5, 0.5)), ((-2.0, 3.0), (1.0, 0.0))],
    ),
    # log clamped at -100, as BCELoss clamps it (above the clamp it is PyTorch's log)
    Elementwise(
        "clog",
        _nary("clog"),
        lambda x: np.maximum(np.log(x), -100),
        _uniform((0.05, 1)),
        _torch("log"),
    ),
    # BCELoss's term: PyTorch's loss and gradients inside (0, 1) (the clamps and saturated
    # points: tests/test_silent.py)
    Elementwise(
        "bce",
        _nary("bce"),
        lambda p, t: -(t * np.log(p) + (1 - t) * np.log(1 - p)),
        _uniform((0.05, 0.95), (0, 1)),
        None
        if torch is None
        else (lambda p, t: torch.nn.functional.binary_cross_entropy(p, t, reduction="none")),
    ),
    # -- issue 12 . math (rows of this family go below this line)
    # (samplers keep away from kinks and jumps; the kinks listed are PyTorch's values there)
    *[
        Elementwise(name, getattr(symbp, name), ref, sample, _torch(name))
        for name, ref, sample in [
            ("sin", np.sin, _uniform((-3, 3))),
            ("cos", np.cos, _uniform((-3, 3))),
            ("tan", np.tan, _uniform((-1.2, 1.2))),
            ("asin", np.arcsin, _uniform((-0.9, 0.9))),
            ("acos", np.arccos, _uniform((-0.9, 0.9))),
            ("atan", np.arctan, _uniform((-3, 3))),
            ("sinh", np.sinh, _uniform((-3, 3))),
            ("cosh", np.cosh, _uniform((-3, 3))),
            ("asinh", np.arcsinh, _uniform((-3, 3))),
            ("acosh", np.arccosh, _uniform((1.2, 4))),
            ("atanh", np.arctanh, _uniform((-0.9, 0.9))),
            ("exp2", lambda x: 2.0**x, _uniform((-3, 3))),
            ("expm1", lambda x: np.exp(x) - 1, _uniform((-3, 3))),
            ("log2", lambda x: np.log(x) / np.log(2), _uniform((0.1, 3))),
            ("log10", lambda x: np.log(x) / np.log(10), _uniform((0.1, 3))),
            ("log1p", lambda x: np.log(1 + x), _uniform((-0.5, 3))),
            ("rsqrt", lambda x: 1 / np.sqrt(x), _uniform((0.2, 3))),
            ("reciprocal", lambda x: 1 / x, _away(2, gap=0.3)),
            ("square", lambda x: x * x, _uniform(SIGNED)),
            ("erf", scipy.special.erf, _uniform(SIGNED)),
            ("erfc", lambda x: 1 - scipy.special.erf(x), _uniform(SIGNED)),
            ("erfinv", scipy.special.erfinv, _uniform((-0.9, 0.9))),
            ("atan2", np.arctan2, _away(2, 2)),
            ("hypot", lambda x, y: np.sqrt(x * x + y * y), _away(2, 2)),
            ("logaddexp", lambda x, y: np.log(np.exp(x) + np.exp(y)), _uniform(SIGNED, SIGNED)),
            ("lerp", lambda a, b, w: a + w * (b - a), _uniform(SIGNED, SIGNED, (0, 1))),
        ]
    ],
    # rounding: PyTorch's gradient is 0, also on the jumps
    *[
        Elementwise(name, getattr(symbp, name), ref, _off_integers(shift), _torch(name), kinks)
        for name, ref, shift, kinks in [
            ("floor", np.floor, 0.0, [((2.0,), (0.0,)), ((-1.0,), (0.0,))]),
            ("ceil", np.ceil, 0.0, [((2.0,), (0.0,))]),
            ("trunc", np.trunc, 0.0, [((-3.0,), (0.0,))]),
            ("round", lambda x: np.floor(x + 0.5), 0.5, [((2.5,), (0.0,)), ((0.5,), (0.0,))]),
            ("frac", lambda x: x - np.trunc(x), 0.0, [((2.0,), (1.0,))]),
        ]
    ],
    Elementwise(
        "fmod",
        symbp.fmod,
        lambda x, y: x - y * np.trunc(x / y),
        _off_multiples,
        _torch("fmod"),
        [((6.0, 2.0), (1.0, -3.0)), ((-5.5, 2.0), (1.0, 2.0))],
    ),
    Elementwise(
        "remainder",
        symbp.remainder,
        lambda x, y: x - y * np.floor(x / y),
        _off_multiples,
        _torch("remainder"),
        [((6.0, 2.0), (1.0, -3.0)), ((-5.5, 2.0), (1.0, 3.0))],
    ),
    # d/dx at x = 0 is 0 where y <= 0 (PyTorch's mask; log(y) elsewhere: test_ops_math.py)
    Elementwise(
        "xlogy",
        symbp.xlogy,
        lambda x, y: x * np.log(y),
        _uniform(SIGNED, (0.1, 3)),
        _torch("xlogy"),
        [((0.0, -1.0), (0.0, 0.0)), ((0.0, 1.0), (0.0, 0.0))],
    ),
    Elementwise(
        "logsigmoid",
        F_nn.logsigmoid,
        lambda x: -np.log1p(np.exp(-x)),
        _uniform((-5, 5)),
        _torch("nn.functional.logsigmoid"),
    ),
    Elementwise(
        "softplus_threshold",
        lambda x: F_nn.softplus(x, 2.0, 3.0),
        lambda x: np.where(2 * x > 3, x, np.log1p(np.exp(2 * x)) / 2),
        _off(-3, 3, [1.5]),
        None if torch is None else (lambda x: torch.nn.functional.softplus(x, 2.0, 3.0)),
        [((4.0,), (1.0,))],
    ),
    Elementwise(
        "relu6",
        F_nn.relu6,
        lambda x: np.clip(x, 0, 6),
        _off(-2, 8, [0, 6]),
        _torch("nn.functional.relu6"),
        [((0.0,), (0.0,)), ((6.0,), (0.0,))],
    ),
    Elementwise(
        "leaky_relu",
        lambda x: F_nn.leaky_relu(x, 0.25),
        lambda x: np.where(x > 0, x, 0.25 * x),
        _away(2),
        None if torch is None else (lambda x: torch.nn.functional.leaky_relu(x, 0.25)),
        [((0.0,), (0.25,))],
    ),
    Elementwise(
        "elu",
        lambda x: F_nn.elu(x, 0.5),
        lambda x: np.where(x > 0, x, 0.5 * (np.exp(x) - 1)),
        _away(2),
        None if torch is None else (lambda x: torch.nn.functional.elu(x, 0.5)),
        [((0.0,), (0.5,))],
    ),
    Elementwise(
        "selu",
        F_nn.selu,
        lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * (np.exp(x) - 1)),
        _away(2),
        _torch("nn.functional.selu"),  # selu'(0) = scale alpha: test_ops_math.py, in float64
    ),
    Elementwise(
        "celu",
        lambda x: F_nn.celu(x, 2.0),
        lambda x: np.where(x > 0, x, 2.0 * (np.exp(x / 2.0) - 1)),
        _away(2),
        None if torch is None else (lambda x: torch.nn.functional.celu(x, 2.0)),
        [((0.0,), (1.0,))],
    ),
    Elementwise(
        "gelu_tanh",
        lambda x: F_nn.gelu(x, approximate="tanh"),
        lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
        _uniform((-3, 3)),
        None if torch is None else (lambda x: torch.nn.functional.gelu(x, approximate="tanh")),
    ),
    Elementwise(
        "mish",
        F_nn.mish,
        lambda x: x * np.tanh(np.log1p(np.exp(x))),
        _uniform((-5, 5)),
        _torch("nn.functional.mish"),
    ),
    Elementwise(
        "hardtanh",
        lambda x: F_nn.hardtanh(x, -0.5, 2.0),
        lambda x: np.clip(x, -0.5, 2.0),
        _off(-2, 3, [-0.5, 2.0]),
        None if torch is None else (lambda x: torch.nn.functional.hardtanh(x, -0.5, 2.0)),
        [((-0.5,), (0.0,)), ((2.0,), (0.0,))],
    ),
    Elementwise(
        "hardsigmoid",
        F_nn.hardsigmoid,
        lambda x: np.clip(x / 6 + 0.5, 0, 1),
        _off(-5, 5, [-3, 3]),
        # PyTorch's backward multiplies by the float32 1/6 even in float64 (2^-25 relative
        # off the derivative 1/6): compared with it in test_ops_math.py at that tolerance
        None,
        [((-3.0,), (0.0,)), ((3.0,), (0.0,))],
    ),
    Elementwise(
        "hardswish",
        F_nn.hardswish,
        lambda x: x * np.clip(x + 3, 0, 6) / 6,
        _off(-5, 5, [-3, 3]),
        _torch("nn.functional.hardswish"),
        [((-3.0,), (0.0,)), ((3.0,), (1.0,))],
    ),
    Elementwise(
        "softsign",
        F_nn.softsign,
        lambda x: x / (1 + np.abs(x)),
        _away(3),
        _torch("nn.functional.softsign"),
        [((0.0,), (1.0,))],
    ),
    Elementwise(
        "tanhshrink",
        F_nn.tanhshrink,
        lambda x: x - np.tanh(x),
        _uniform((-3, 3)),
        _torch("nn.functional.tanhshrink"),
    ),
    Elementwise(
        "threshold",
        lambda x: F_nn.threshold(x, 0.5, -1.0),
        lambda x: np.where(x > 0.5, x, -1.0),
        _off(-2, 2, [0.5]),
        None if torch is None else (lambda x: torch.nn.functional.threshold(x, 0.5, -1.0)),
        [((0.5,), (0.0,))],
    ),
    # finite entries pass with gradient 1; NaN and the infinities are replaced, gradient 0
    Elementwise(
        "nan_to_num",
        symbp.nan_to_num,
        lambda x: x,
        _uniform(SIGNED),
        _torch("nan_to_num"),
        [((float("nan"),), (0.0,)), ((float("inf"),), (0.0,)), ((-float("inf"),), (0.0,))],
    ),
    #
    # -- issue 12 . logic (rows of this family go below this line)
    # A comparison's bool mask times x * y: the mask is a constant of the gradient (and at a
    # tie the kinks say which side PyTorch's mask takes)
    *(
        Elementwise(
            name,
            (lambda op: lambda x, y: x * op(x, y) * y)(getattr(symbp, name)),
            (lambda op: lambda x, y: x * op(x, y) * y)(getattr(np, np_name)),
            _apart,
            None
            if torch is None
            else (lambda op: lambda x, y: x * op(x, y) * y)(getattr(torch, name)),
            [((1.0, 1.0), (float(name in ("eq", "le", "ge")),) * 2)],
        )
        for name, np_name in [
            ("eq", "equal"),
            ("ne", "not_equal"),
            ("lt", "less"),
            ("le", "less_equal"),
            ("gt", "greater"),
            ("ge", "greater_equal"),
        ]
    ),
    *(
        Elementwise(
            name,
            (lambda op: lambda x, y: x * op(x > 0, y > 0) * y)(getattr(symbp, name)),
            (lambda op: lambda x, y: x * op(x > 0, y > 0) * y)(getattr(np, name)),
            _away(2, 2),
            None
            if torch is None
            else (lambda op: lambda x, y: x * op(x > 0, y > 0) * y)(getattr(torch, name)),
        )
        for name in ("logical_and", "logical_or", "logical_xor")
    ),
    Elementwise(
        "logical_not",
        lambda x: x * symbp.logical_not(x > 0),
        lambda x: x * np.logical_not(x > 0),
        _away(2),
        None if torch is None else (lambda x: x * torch.logical_not(x > 0)),
    ),
    # the IEEE tests on finite inputs (NaN and inf values: tests/test_ops_logic.py)
    *(
        Elementwise(
            name,
            (lambda op: lambda x: x * symbp.logical_not(op(x)))(getattr(symbp, name)),
            (lambda op: lambda x: x * np.logical_not(op(x)))(getattr(np, name)),
            _uniform(SIGNED),
            None
            if torch is None
            else (lambda op: lambda x: x * torch.logical_not(op(x)))(getattr(torch, name)),
        )
        for name in ("isnan", "isinf", "isposinf", "isneginf")
    ),
    Elementwise(
        "isfinite",
        lambda x: x * symbp.isfinite(x),
        lambda x: x * np.isfinite(x),
        _uniform(SIGNED),
        None if torch is None else (lambda x: x * torch.isfinite(x)),
    ),
    # where routes the gradient to the branch taken; the condition's mask gets none (c's
    # gradient is the factor c's)
    Elementwise(
        "where",
        lambda c, x, y: symbp.where(c > 0, x, y) * c,
        lambda c, x, y: np.where(c > 0, x, y) * c,
        _away(2, 2, 2),
        None if torch is None else (lambda c, x, y: torch.where(c > 0, x, y) * c),
        [((0.0, 1.0, 2.0), (2.0, 0.0, 0.0)), ((1.0, 1.0, 2.0), (1.0, 1.0, 0.0))],
    ),
    # clamp with tensor bounds: at a bound x's gradient passes; min > max gives max; at
    # x < min == max no one gets a gradient (PyTorch's clamp backward)
    Elementwise(
        "clamp",
        lambda x, lo, hi: symbp.clamp(x, lo, hi),
        lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi),
        _uniform((-3, 3), (-2, -0.5), (0.5, 2)),
        None if torch is None else (lambda x, lo, hi: torch.clamp(x, lo, hi)),
        [
            ((1.0, 1.0, 2.0), (1.0, 0.0, 0.0)),
            ((2.0, 1.0, 2.0), (1.0, 0.0, 0.0)),
            ((0.0, 1.0, 2.0), (0.0, 1.0, 0.0)),
            ((3.0, 1.0, 2.0), (0.0, 0.0, 1.0)),
            ((0.0, 2.0, 1.0), (0.0, 0.0, 1.0)),
            ((0.0, 1.0, 1.0), (0.0, 0.0, 0.0)),
            ((1.0, 1.0, 1.0), (1.0, 0.0, 0.0)),
        ],
    ),
    # fmax/fmin: a tie's gradient goes to the first argument; the number wins over a NaN
    Elementwise(
        "fmax",
        _nary("fmax"),
        np.fmax,
        _apart,
        _torch("fmax"),
        [
            ((1.0, 1.0), (1.0, 0.0)),
            ((float("nan"), 1.0), (0.0, 1.0)),
            ((1.0, float("nan")), (1.0, 0.0)),
        ],
    ),
    Elementwise(
        "fmin",
        _nary("fmin"),
        np.fmin,
        _apart,
        _torch("fmin"),
        [
            ((1.0, 1.0), (1.0, 0.0)),
            ((float("nan"), 1.0), (0.0, 1.0)),
            ((1.0, float("nan")), (1.0, 0.0)),
        ],
    ),
    Elementwise("sign", symbp.sign, np.sign, _away(2), _torch("sign"), [((0.0,), (0.0,))]),
    #
]


@dataclass
class Structural:
    """A row for a structural op of ops.OPS, used through a Tensor-level function."""

    name: str
    op: str  # the op of ops.OPS this row covers
    fn: Callable
    ref: Callable
    args: Callable  # rng -> list of arrays
    grad_ref: Callable | None = None  # (args, w) -> gradients, where differences do not apply
    torch_fn: Callable | None = None
    backward_only: bool = False  # the op appears in the derived program, not the forward
    differentiable: tuple[bool, ...] | None = None

    @property
    def ops(self):
        return (self.op,)

    def check(self, rng):
        args = self.args(rng)
        grad_of = self.differentiable or tuple(a.dtype.kind == "f" for a in args)
        ts = [symbp.tensor(a, requires_grad=d) for a, d in zip(args, grad_of)]
        out = self.fn(*ts)
        want = self.ref(*args)
        assert out.shape == want.shape and out.dtype == want.dtype
        np.testing.assert_allclose(out.numpy(), want, rtol=1e-12, atol=1e-14)

        w = rng.normal(size=want.shape)
        loss = (out * symbp.tensor(w, dtype=out.dtype)).sum()
        wrt = [t for t, d in zip(ts, grad_of) if d]
        derived = symbp.derive(loss.node, [t.node for t in wrt])
        program = toposort(derived.grads if self.backward_only else [out.node])
        assert self.op in {n.op for n in program}, f"{self.name} builds no {self.op} node"

        loss.backward()
        diff_args = [a for a, d in zip(args, grad_of) if d]
        if self.grad_ref is not None:
            expected = self.grad_ref(args, w)
        else:
            expected = numeric_grads(
                lambda *a: np.sum(self.ref(*self._merge(args, grad_of, a)) * w), diff_args
            )
        for t, g in zip(wrt, expected):
            assert t.grad.shape == t.shape and t.grad.dtype == t.dtype
            np.testing.assert_allclose(t.grad, g, rtol=1e-6, atol=1e-8)
        if torch is not None and self.torch_fn is not None:
            tt = [torch.tensor(a, requires_grad=d) for a, d in zip(args, grad_of)]
            tout = self.torch_fn(*tt)
            np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-12)
            (tout * torch.tensor(w, dtype=tout.dtype)).sum().backward()
            for t, ref in zip(ts, tt):
                if ref.requires_grad:
                    np.testing.assert_allclose(t.grad, ref.grad.numpy(), rtol=1e-10, atol=1e-14)

    @classmethod
    def alike(cls, name, op, fn, args, **kw):
        """A row whose function is spelled the same on symbp, NumPy and torch tensors."""
        return cls(name, op, fn, fn, args, torch_fn=fn, **kw)

    @staticmethod
    def _merge(args, grad_of, diff):
        it = iter(diff)
        return [next(it) if d else a for a, d in zip(args, grad_of)]


def _normal(*shapes):
    return lambda rng: [rng.normal(size=s) for s in shapes]


def _ties(rng):
    # two maxima in row 0 (positions 1 and 3), three in row 1, a single one in row 2
    return [np.array([[0.0, 2.0, 1.0, 2.0], [5.0, 5.0, -1.0, 5.0], [0.0, 1.0, 3.0, 2.0]])]


def _max_all_ties_grad(args, w):
    (x,) = args
    hit = x == x.max()
    return [w * hit / hit.sum()]  # spread evenly over the tied maxima


def _max_dim_ties_grad(args, w):
    (x,) = args
    g = np.zeros_like(x)
    first = np.argmax(x, axis=1)  # NumPy's argmax is the first maximum, as PyTorch's max(dim)
    g[np.arange(len(x)), first] = w
    return [g]


def _mask(x, prob):
    """A ``bernoulli`` mask like x, drawn from seed 0."""
    seed = symbp.tensor(np.int64(0))
    return _result(ops.bernoulli(seed.node, prob, x.shape, x.dtype), [seed], False)


# -- issue 12 . reductions: references for the rows of that family


def _prod_zeros(rng):
    x = rng.normal(size=(3, 4))
    x[0, 1] = 0.0  # one zero in row 0, two in row 1, none in row 2
    x[1, [0, 2]] = 0.0
    return [x]


def _prod_zeros_grad(args, w):
    (x,) = args
    g = np.zeros_like(x)
    for r in range(x.shape[0]):
        for c in range(x.shape[1]):
            g[r, c] = w[r, 0] * np.prod(np.delete(x[r], c))  # the product of the others
    return [g]


def _cumprod_zeros_grad(args, w):
    (x,) = args
    g = np.zeros_like(x)
    for r, c in np.ndindex(*x.shape):  # Σ_{k≥c} w_k Π_{j≤k, j≠c} x_j
        g[r, c] = sum(w[r, k] * np.prod(np.delete(x[r, : k + 1], c)) for k in range(c, x.shape[1]))
    return [g]


def _sort_ties_grad(args, w):
    (x,) = args
    order = np.argsort(-x, axis=1, kind="stable")  # ties keep their order
    g = np.zeros_like(x)
    np.put_along_axis(g, order, w, axis=1)
    return [g]


def _cummax_ties_grad(args, w):
    (x,) = args
    g = np.zeros_like(x)
    for r in range(x.shape[0]):
        best = 0
        for k in range(x.shape[1]):
            if x[r, k] >= x[r, best]:  # the last of tied maxima, as PyTorch's cummax
                best = k
            g[r, best] += w[r, k]
    return [g]


def _first_min_grad(x, w):
    g = np.zeros_like(x)
    g[np.argmin(x, axis=0), np.arange(x.shape[1])] = w
    return g


def _scan_rnn(h0, xs, w, b):
    """tanh(h W + x + b) over the steps of xs, with symbp's scan (a Python loop on torch)."""
    step = lambda h, x, w, b: (h @ w + x + b).tanh()  # noqa: E731
    if isinstance(h0, symbp.Tensor):
        return symbp.scan(step, h0, xs, [w, b])
    hs, h = [], h0
    for x in xs:
        h = step(h, x, w, b)
        hs.append(h)
    return torch.stack(hs)


def _scan_rnn_ref(h0, xs, w, b):
    hs, h = [], h0
    for x in xs:
        h = np.tanh(h @ w + x + b)
        hs.append(h)
    return np.stack(hs)


def _scan_args(rng):
    return [rng.normal(size=(3, 5)), rng.normal(size=(4, 3, 5)),
            rng.normal(size=(5, 5)) / 2, rng.normal(size=5)]  # fmt: skip


LABELS = np.array([0, 3, 1, 4])
_IDX = np.array([2, 0, 2, -1])  # a repeated and a negative index

STRUCTURAL_ROWS = [
    Structural.alike("input", "input", lambda x: x, _normal(SHAPE)),
    # x*0 folds to a constant node: no gradient flows, and PyTorch's is zero too
    Structural.alike("const", "const", lambda x: x * 0, _normal(SHAPE)),
    Structural(
        "cast-f32-f64",
        "cast",
        lambda x: x.double(),
        lambda x: x.astype(np.float64),
        lambda rng: [rng.normal(size=SHAPE).astype(np.float32)],
        grad_ref=lambda args, w: [w.astype(np.float32)],
        torch_fn=lambda x: x.double(),
    ),
    Structural(
        "cast-f64-f32",
        "cast",
        lambda x: x.float(),
        lambda x: x.astype(np.float32),
        _normal(SHAPE),
        grad_ref=lambda args, w: [w.astype(np.float32).astype(np.float64)],
        torch_fn=lambda x: x.float(),
    ),
    Structural(
        "expand",
        "expand",
        lambda x: x + symbp.tensor(np.zeros((4, 2, 3))),
        lambda x: np.broadcast_to(x, (4, 2, 3)),
        _normal((4, 1, 3)),
        torch_fn=lambda x: x + torch.zeros(4, 2, 3, dtype=torch.float64),
    ),
    Structural(
        "expand-lead",
        "expand",
        lambda x: x * symbp.tensor(np.ones((5, 3))),
        lambda x: np.broadcast_to(x, (5, 3)),
        _normal((3,)),
        torch_fn=lambda x: x * torch.ones(5, 3, dtype=torch.float64),
    ),
    Structural.alike("reshape", "reshape", lambda x: x.reshape(2, 6), _normal(SHAPE)),
    Structural.alike("reshape-infer", "reshape", lambda x: x.reshape(-1, 3), _normal((2, 3, 2))),
    Structural(
        "transpose",
        "transpose",
        lambda x: x.permute(2, 0, 1),
        lambda x: np.transpose(x, (2, 0, 1)),
        _normal((2, 3, 4)),
        torch_fn=lambda x: x.permute(2, 0, 1),
    ),
    Structural(
        "sum-all",
        "sum",
        lambda x: x.sum(),
        lambda x: np.sum(x),
        _normal(SHAPE),
        torch_fn=lambda x: x.sum(),
    ),
    Structural.alike("sum-dim", "sum", lambda x: x.sum(1), _normal((2, 3, 4))),
    Structural(
        "sum-dims-keepdim",
        "sum",
        lambda x: x.sum((0, 2), keepdim=True),
        lambda x: x.sum((0, 2), keepdims=True),
        _normal((2, 3, 4)),
        torch_fn=lambda x: x.sum((0, 2), keepdim=True),
    ),
    Structural(
        "max-all",
        "max",
        lambda x: x.max(),
        lambda x: np.max(x),
        _normal(SHAPE),
        torch_fn=lambda x: x.max(),
    ),
    Structural(
        "max-all-ties",
        "max",
        lambda x: x.max(),
        lambda x: np.max(x),
        _ties,
        grad_ref=_max_all_ties_grad,
        torch_fn=lambda x: x.max(),
    ),
    Structural(
        "max-dim",
        "take_along",  # max(dim) is x at its argmax: the gradient goes to that entry
        lambda x: x.max(1).values,
        lambda x: x.max(1),
        _normal(SHAPE),
        torch_fn=lambda x: x.max(1).values,
    ),
    Structural(
        "max-dim-keepdim",
        "argidx",
        lambda x: x.max(0, keepdim=True).values,
        lambda x: x.max(0, keepdims=True),
        _normal(SHAPE),
        torch_fn=lambda x: x.max(0, keepdim=True).values,
    ),
    Structural(
        "max-dim-ties",
        "put_along",
        lambda x: x.max(1).values,
        lambda x: x.max(1),
        _ties,
        grad_ref=_max_dim_ties_grad,
        torch_fn=lambda x: x.max(1).values,
        backward_only=True,
    ),
    # on a 1-D tensor too, max(dim) routes to the first maximum and max() spreads over ties
    Structural(
        "max-dim-1d-ties",
        "put_along",
        lambda x: x.max(0).values,
        lambda x: x.max(0),
        lambda rng: [np.array([0.0, 2.0, 1.0, 2.0])],
        grad_ref=lambda args, w: [np.array([0.0, w, 0.0, 0.0])],
        torch_fn=lambda x: x.max(0).values,
        backward_only=True,
    ),
    Structural(
        "max-1d-ties",
        "max",
        lambda x: x.max(),
        lambda x: x.max(),
        lambda rng: [np.array([0.0, 2.0, 1.0, 2.0])],
        grad_ref=lambda args, w: [np.array([0.0, w / 2, 0.0, w / 2])],
        torch_fn=lambda x: x.max(),
    ),
    Structural.alike("matmul", "matmul", lambda x, y: x @ y, _normal((3, 4), (4, 2))),
    Structural.alike("matmul-vec", "matmul", lambda x, y: x @ y, _normal((3, 4), (4,))),
    Structural.alike("vec-matmul", "matmul", lambda x, y: x @ y, _normal((4,), (4, 2))),
    # x * stop(x): the gradient is stop(x) = x, not the 2x that differences would see
    Structural(
        "detach",
        "detach",
        lambda x: x * x.detach(),
        lambda x: x * x,
        _normal(SHAPE),
        grad_ref=lambda args, w: [args[0] * w],
        torch_fn=lambda x: x * x.detach(),
    ),
    # a sum across ranks, in one process: the identity (tests/test_distributed.py: N ranks)
    Structural(
        "psum",
        "psum",
        lambda x: F._psum(x) * x,
        lambda x: x * x,
        _normal(SHAPE),
        torch_fn=lambda x: x * x,
    ),
    Structural(
        "onehot",
        "onehot",
        lambda x, y: x * symbp.onehot(y, 5, np.float64),
        lambda x, y: x * np.eye(5)[y],
        lambda rng: [rng.normal(size=(4, 5)), LABELS],
        torch_fn=lambda x, y: x * torch.nn.functional.one_hot(y, 5),
    ),
    # convolution and pooling: the references are test_conv's direct loops
    Structural(
        "conv2d",
        "conv2d",
        lambda x, w: F.conv2d(x, w, None, 2, 1),
        lambda x, w: ref_conv2d(x, w, None, 2, 1),
        _normal((2, 2, 5, 5), (3, 2, 3, 3)),
        torch_fn=lambda x, w: torch.nn.functional.conv2d(x, w, None, 2, 1),
    ),
    Structural(
        "conv2d-input-grad",
        "conv2d_input_grad",
        lambda x, w: F.conv2d(x, w, None, 2, 1),
        lambda x, w: ref_conv2d(x, w, None, 2, 1),
        _normal((2, 2, 5, 5), (3, 2, 3, 3)),
        backward_only=True,
    ),
    Structural(
        "conv2d-weight-grad",
        "conv2d_weight_grad",
        lambda x, w: F.conv2d(x, w, None, 1, 0, 2),
        lambda x, w: ref_conv2d(x, w, None, 1, 0, 2),
        _normal((1, 2, 6, 5), (2, 2, 2, 2)),
        backward_only=True,
    ),
    Structural(
        "maxpool2d",
        "maxpool2d",
        lambda x: F.max_pool2d(x, 3, 2, 1),
        lambda x: ref_max_pool2d(x, 3, 2, 1)[0],
        _normal((2, 2, 5, 6)),
        torch_fn=lambda x: torch.nn.functional.max_pool2d(x, 3, 2, 1),
    ),
    Structural(
        "maxpool2d-grad",
        "maxpool2d_grad",
        lambda x: F.max_pool2d(x, 2),
        lambda x: ref_max_pool2d(x, 2)[0],
        _normal((1, 2, 4, 5)),
        backward_only=True,
    ),
    Structural(
        "avgpool2d",
        "avgpool2d",
        lambda x: F.avg_pool2d(x, 3, 2, 1),
        lambda x: ref_avg_pool2d(x, 3, 2, 1),
        _normal((2, 2, 5, 6)),
        torch_fn=lambda x: torch.nn.functional.avg_pool2d(x, 3, 2, 1),
    ),
    Structural(
        "avgpool2d-grad",
        "avgpool2d_grad",
        lambda x: F.avg_pool2d(x, 2, 1),
        lambda x: ref_avg_pool2d(x, 2, 1),
        _normal((1, 2, 4, 5)),
        backward_only=True,
    ),
    # a mask drawn with probability 1 keeps every entry, so the reference is x itself
    Structural(
        "bernoulli",
        "bernoulli",
        lambda x: x * _mask(x, 1.0),
        lambda x: x,
        _normal(SHAPE),
        torch_fn=lambda x: x * torch.bernoulli(torch.ones_like(x)),
    ),
    # -- issue 12 . math (rows of this family go below this line)
    #
    # -- issue 12 . logic (rows of this family go below this line)
    #
    # -- issue 12 . indexing (rows of this family go below this line)
    # the same key on symbp, NumPy and torch; repeated indices accumulate their gradients
    Structural.alike("slice", "slice", lambda x: x[1:, ::2], _normal(SHAPE)),
    Structural.alike(
        "slice-grad", "slice_grad", lambda x: x[:, 1:3], _normal(SHAPE), backward_only=True
    ),
    Structural.alike(
        "take", "take", lambda x, i: x[i, 1:], lambda rng: [rng.normal(size=SHAPE), _IDX]
    ),
    Structural.alike(
        "put-add-repeated",
        "put_add",
        lambda x, i: x[:, i],
        lambda rng: [rng.normal(size=SHAPE), _IDX],
        backward_only=True,
    ),
    Structural(
        "gather",
        "iota",
        lambda x, i: x.gather(1, i),
        lambda x, i: np.take_along_axis(x, i, 1),
        lambda rng: [rng.normal(size=SHAPE), np.array([[0, 0], [3, 1], [2, 2]])],
        torch_fn=lambda x, i: x.gather(1, i),
    ),
    # -- issue 12 . shaping (rows of this family go below this line)
    # joining and shaping: views and joins, every one linear
    Structural(
        "cat",
        "cat",
        lambda x, y: symbp.cat([x, y, x], 1),
        lambda x, y: np.concatenate([x, y, x], 1),
        _normal((3, 2), (3, 4)),
        torch_fn=lambda x, y: torch.cat([x, y, x], 1),
    ),
    Structural(
        "stack",
        "cat",
        lambda x, y: symbp.stack([x, y], -1),
        lambda x, y: np.stack([x, y], -1),
        _normal(SHAPE, SHAPE),
        torch_fn=lambda x, y: torch.stack([x, y], -1),
    ),
    Structural(
        "flip",
        "flip",
        lambda x: x.flip((0, -1)),
        lambda x: np.flip(x, (0, 2)),
        _normal((2, 3, 4)),
        torch_fn=lambda x: x.flip((0, -1)),
    ),
    Structural(
        "roll",
        "roll",
        lambda x: x.roll((1, -3), (0, 1)),
        lambda x: np.roll(x, (1, -3), (0, 1)),
        _normal(SHAPE),
        torch_fn=lambda x: x.roll((1, -3), (0, 1)),
    ),
    Structural(
        "split-piece",
        "slice",
        lambda x: x.split([1, 2, 1], 1)[1],
        lambda x: x[:, 1:3],
        _normal(SHAPE),
        torch_fn=lambda x: x.split([1, 2, 1], 1)[1],
    ),
    Structural(
        "pad-constant",
        "pad",
        lambda x: symbp.nn.functional.pad(x, (1, 2, 0, 1), value=0.5),
        lambda x: np.pad(x, ((0, 1), (1, 2)), constant_values=0.5),
        _normal(SHAPE),
        torch_fn=lambda x: torch.nn.functional.pad(x, (1, 2, 0, 1), value=0.5),
    ),
    Structural(
        "pad-reflect",
        "pad_grad",
        lambda x: symbp.nn.functional.pad(x, (3, 2), "reflect"),
        lambda x: np.pad(x, ((0, 0), (3, 2)), "reflect"),
        _normal(SHAPE),
        torch_fn=lambda x: torch.nn.functional.pad(x, (3, 2), "reflect"),
        backward_only=True,
    ),
    Structural(
        "pad-replicate",
        "pad",
        lambda x: symbp.nn.functional.pad(x, (2, 1, 1, 3), "replicate"),
        lambda x: np.pad(x, ((0, 0), (1, 3), (2, 1)), "edge"),
        _normal((2, 3, 4)),
        torch_fn=lambda x: torch.nn.functional.pad(x, (2, 1, 1, 3), "replicate"),
    ),
    Structural(
        "pad-circular",
        "pad",
        lambda x: symbp.nn.functional.pad(x, (4, 1), "circular"),
        lambda x: np.pad(x, ((0, 0), (4, 1)), "wrap"),
        _normal(SHAPE),
        torch_fn=lambda x: torch.nn.functional.pad(x, (4, 1), "circular"),
    ),
    # -- issue 12 . reductions (rows of this family go below this line)
    Structural.alike("prod-dim", "prod", lambda x: x.prod(1), _normal(SHAPE)),
    Structural(
        "prod-zeros",
        "prod",
        lambda x: x.prod(1, keepdim=True),
        lambda x: x.prod(1, keepdims=True),
        _prod_zeros,
        grad_ref=_prod_zeros_grad,
        torch_fn=lambda x: x.prod(1, keepdim=True),
    ),
    Structural(
        "prod-all-zero",
        "prod",
        lambda x: x.prod(),
        lambda x: np.prod(x),
        lambda rng: [np.array([[2.0, 0.0, 3.0], [0.5, -1.0, 4.0]])],
        grad_ref=lambda args, w: [np.array([[0.0, -12.0 * w, 0.0], [0.0, 0.0, 0.0]])],
        torch_fn=lambda x: x.prod(),
    ),
    Structural(
        "cumsum",
        "cumsum",
        lambda x: x.cumsum(1),
        lambda x: np.cumsum(x, 1),
        _normal(SHAPE),
        torch_fn=lambda x: x.cumsum(1),
    ),
    Structural(
        "cumprod",
        "cumprod",
        lambda x: x.cumprod(0),
        lambda x: np.cumprod(x, 0),
        _normal(SHAPE),
        torch_fn=lambda x: x.cumprod(0),
    ),
    Structural(
        "cumprod-zeros",
        "cumprod_grad",
        lambda x: x.cumprod(1),
        lambda x: np.cumprod(x, 1),
        lambda rng: [np.array([[2.0, 0.0, 3.0, 0.5], [0.0, 1.5, 0.0, 2.0]])],
        grad_ref=_cumprod_zeros_grad,
        torch_fn=lambda x: x.cumprod(1),
        backward_only=True,
    ),
    Structural(
        "sort-descending-ties",
        "argsort",
        lambda x: x.sort(1, descending=True).values,
        lambda x: -np.sort(-x, 1),
        _ties,
        grad_ref=_sort_ties_grad,
        torch_fn=lambda x: x.sort(1, descending=True).values,
    ),
    Structural(
        "topk",
        "argsort",
        lambda x: x.topk(2, 1).values,
        lambda x: -np.sort(-x, 1)[:, :2],
        _normal(SHAPE),
        torch_fn=lambda x: x.topk(2, 1).values,
    ),
    Structural(
        "cummax-ties",
        "cumarg",
        lambda x: x.cummax(1).values,
        lambda x: np.maximum.accumulate(x, 1),
        _ties,
        grad_ref=_cummax_ties_grad,
        torch_fn=lambda x: x.cummax(1).values,
    ),
    Structural(
        "min-dim-ties",
        "argidx",
        lambda x: x.min(0).values,
        lambda x: x.min(0),
        lambda rng: [-_ties(rng)[0].T],  # ties for the minimum down the columns
        grad_ref=lambda args, w: [_first_min_grad(args[0], w)],
        torch_fn=lambda x: x.min(0).values,
    ),
    Structural(
        "amax-dim-ties",
        "max",
        lambda x: x.amax(1),
        lambda x: x.max(1),
        _ties,
        grad_ref=lambda args, w: [
            (args[0] == args[0].max(1, keepdims=True))
            * (w / (args[0] == args[0].max(1, keepdims=True)).sum(1))[:, None]
        ],
        torch_fn=lambda x: x.amax(1),
    ),
    Structural(
        "median-dim",
        "argsort",
        lambda x: x.median(1).values,
        lambda x: np.sort(x, 1)[:, (x.shape[1] - 1) // 2],
        _normal(SHAPE),
        torch_fn=lambda x: x.median(1).values,
    ),
    Structural(
        "logsumexp-dims",
        "max",
        lambda x: x.logsumexp((0, 2)),
        lambda x: scipy.special.logsumexp(x, (0, 2)),
        _normal((2, 3, 4)),
        torch_fn=lambda x: x.logsumexp((0, 2)),
    ),
    Structural(
        "var-dims",
        "sum",
        lambda x: x.var((0, 2)),
        lambda x: x.var((0, 2), ddof=1),
        _normal((2, 3, 4)),
        torch_fn=lambda x: x.var((0, 2)),
    ),
    Structural(
        "norm-p3",
        "sum",
        lambda x: x.norm(3, 1),
        lambda x: (np.abs(x) ** 3).sum(1) ** (1 / 3),
        _normal(SHAPE),
        torch_fn=lambda x: x.norm(3, 1),
    ),
    Structural(
        "norm-at-zero",
        "sum",
        lambda x: x.norm(),
        lambda x: np.sqrt((x * x).sum()),
        lambda rng: [np.zeros((2, 3))],
        grad_ref=lambda args, w: [np.zeros((2, 3))],  # PyTorch's subgradient: 0, not nan
        torch_fn=lambda x: x.norm(),
    ),
    #
    # -- issue 12 . linalg (rows of this family go below this line)
    #
    Structural.alike("bmm", "bmm", lambda x, y: x @ y, _normal((2, 3, 4), (2, 4, 5))),
    # [B, h, T, d] @ [B, h, d, T], and batch axes that broadcast (their gradients summed)
    Structural(
        "bmm-4d",
        "bmm",
        lambda x, y: x @ y.transpose(-2, -1),
        lambda x, y: x @ np.swapaxes(y, -2, -1),
        _normal((2, 2, 3, 4), (2, 2, 5, 4)),
        torch_fn=lambda x, y: x @ y.transpose(-2, -1),
    ),
    Structural.alike("bmm-broadcast", "bmm", lambda x, y: x @ y, _normal((2, 1, 3, 4), (3, 4, 2))),
    Structural.alike("vec-bmm", "bmm", lambda x, y: x @ y, _normal((4,), (2, 4, 3))),
    Structural.alike("bmm-vec", "matmul", lambda x, y: x @ y, _normal((2, 3, 4), (4,))),
    Structural(
        "tril",
        "tril",
        lambda x: symbp.tril(x, -1),
        lambda x: np.tril(x, -1),
        _normal((2, 3, 4)),
        torch_fn=lambda x: torch.tril(x, -1),
    ),
    Structural(
        "triu",
        "tril",
        lambda x: x.triu(1),
        lambda x: np.triu(x, 1),
        _normal((3, 4)),
        torch_fn=lambda x: x.triu(1),
    ),
    Structural(
        "diagonal",
        "diagonal",
        lambda x: x.diagonal(1, 0, 2),
        lambda x: np.diagonal(x, 1, 0, 2),
        _normal((3, 2, 4)),
        torch_fn=lambda x: x.diagonal(1, 0, 2),
    ),
    Structural(
        "diag_embed",
        "diag_embed",
        lambda x: symbp.diag_embed(x, -1),
        lambda x: np.stack([np.diag(r, -1) for r in x]),
        _normal((2, 3)),
        torch_fn=lambda x: torch.diag_embed(x, -1),
    ),
    # -- issue 13 . autograd (rows of this family go below this line)
    # a custom autograd.Function: the forward's value, the gradient its traced backward gives
    Structural(
        "function",
        "function",
        lambda x: type(
            "Cube",
            (symbp.autograd.Function,),
            {
                "forward": staticmethod(lambda ctx, x: (ctx.save_for_backward(x), x**3)[1]),
                "backward": staticmethod(lambda ctx, g: 3 * ctx.saved_tensors[0] ** 2 * g),
            },
        ).apply(x),
        lambda x: x**3,
        _normal(SHAPE),
        torch_fn=lambda x: x**3,
    ),
    # -- issue 17 . loops: an Elman step h' = tanh(h W + x + b) scanned over 4 steps; the
    # gradient of every source through the reverse loop (scan_vjp) against differences
    Structural("scan", "scan", _scan_rnn, _scan_rnn_ref, _scan_args, torch_fn=_scan_rnn),
    Structural(
        "scan_vjp",
        "scan_vjp",
        _scan_rnn,
        _scan_rnn_ref,
        _scan_args,
        torch_fn=_scan_rnn,
        backward_only=True,
    ),
]

ROWS = ELEMENTWISE_ROWS + STRUCTURAL_ROWS


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_op(row, rng):
    row.check(rng)


def test_every_op_has_a_row():
    """Adding an op (or an elementwise formula) without a row in ROWS fails here."""
    covered = {op for r in ROWS for op in r.ops}
    missing = sorted(set(ops.OPS) - covered)
    assert not missing, f"ops.OPS entries without a row in tests/test_ops.py ROWS: {missing}"
    builtin = set(ops.ELEMENTWISE) - api._CUSTOM
    missing = sorted(builtin - {r.name for r in ELEMENTWISE_ROWS})
    assert not missing, f"ops.ELEMENTWISE entries without a row in ELEMENTWISE_ROWS: {missing}"


# ---------------------------------------------------------------- every stage has a row per op

# Each backend stage dispatches on a table keyed by op, in its own module: adding an op is its
# ops.OPS entry, one row in each of these (ops.NotApplicable where the stage has no rule for
# it, on purpose), and one row in ROWS above.
STAGES = {
    "symbp.compiler.lower.schedule.PLACEMENT": (schedule.PLACEMENT, schedule.Placement),
    "symbp.compiler.lower.emit.LOWERING": (emit.LOWERING, emit.Lowering),
    "symbp.formulas.PRINTING": (PRINTING, Printing),
    "symbp.check.KINKS": (check.KINKS, None),  # rows: regime readers (functions)
}


def _gaps(table):
    """(ops without a row, rows of no op)."""
    return sorted(set(ops.OPS) - set(table)), sorted(set(table) - set(ops.OPS))


@pytest.mark.parametrize("stage", STAGES)
def test_every_op_has_a_row_in_every_stage(stage):
    table, row_type = STAGES[stage]
    missing, stale = _gaps(table)
    assert not missing, (
        f"ops.OPS entries without a row in {stage}: {missing} (add one, or "
        f"ops.NotApplicable(why) where the stage has no rule for the op)"
    )
    assert not stale, f"{stage} has rows for ops not in ops.OPS: {stale}"
    for op, row in table.items():
        fields = list(vars(row).values()) if row_type is not None else [row]
        if row_type is not None and not isinstance(row, ops.NotApplicable):
            assert isinstance(row, row_type), f"{stage}[{op!r}] is a {type(row).__name__}"
        for rule in fields:  # a deliberate absence says why
            if isinstance(rule, ops.NotApplicable):
                assert rule.why.strip(), f"{stage}[{op!r}]: NotApplicable without a reason"
            elif row_type is None:
                assert callable(rule), f"{stage}[{op!r}] is neither a rule nor NotApplicable"


class _Flip(ops.Op):
    """An op registered in ops.OPS with no stage rows: what the guard above exists to catch."""

    name = "flip_for_test"

    def infer(self, src, arg):
        return src[0].shape, src[0].dtype

    def numpy(self, node, vals, dims):
        return np.flip(vals[0], node.arg)

    def adjoint(self, node, ct):
        return (ops.make(self.name, (ct,), node.arg),)


def test_an_op_without_stage_rows_is_named_by_the_guard_and_every_stage(monkeypatch):
    monkeypatch.setitem(ops.OPS, _Flip.name, _Flip())
    for table, _ in STAGES.values():
        assert _gaps(table)[0] == [_Flip.name]  # test_every_op_has_a_row_in_every_stage fails

    def flipped(t):
        return _result(ops.make(_Flip.name, (t.node,), 1), [t])

    x = np.arange(6.0).reshape(2, 3)
    xt = symbp.tensor(x, requires_grad=True)
    loss = (flipped(xt) * symbp.tensor(x)).sum()  # eager: the Op entry alone suffices
    np.testing.assert_allclose(loss.numpy(), np.sum(np.flip(x, 1) * x))
    loss.backward()
    np.testing.assert_allclose(xt.grad, np.flip(x, 1))

    # Each stage names the op it has no rule for, rather than guessing (smooth? a view?).
    with pytest.raises(NotImplementedError, match=f"no kink rule for op '{_Flip.name}'"):
        symbp.check_grads(lambda t: (flipped(t) * flipped(t)).sum(), x)
    w = symbp.nn.Parameter(x.copy())
    with pytest.raises(NotImplementedError, match=f"no printing rule for op '{_Flip.name}'"):
        symbp.formulas((flipped(w) * symbp.tensor(x)).sum(), params={"w": w})
    node = flipped(symbp.tensor(x)).node
    buf = schedule.Buffer("out", node.shape, node.dtype, "work", node)
    xbuf = schedule.Buffer("x", node.shape, node.dtype, "arg", node.src[0])
    with pytest.raises(LoweringError, match=f"no scheduling rule for op '{_Flip.name}'"):
        schedule.schedule([(buf, node)], {node.src[0]: xbuf})


def test_not_applicable_rows_are_errors_not_guesses():
    """A stage reaching an op it marked NotApplicable says so, with the reason."""
    x = symbp.tensor(np.ones((2, 2))).node
    buf = schedule.Buffer("x", x.shape, x.dtype, "arg", x)
    em = emit.Emitter(schedule.Schedule({x: buf}, [], set(), {}), {})
    with pytest.raises(LoweringError, match="computes no 'input' node: a buffer given"):
        em.kernel(schedule.Kernel(x, buf, "forward"))
    with pytest.raises(ValueError, match="'input' node is named, not expressed: a leaf"):
        _express(x, [], None)


# ---------------------------------------------------------------- composite functions


def check(fn, ref, args, rng, torch_fn=None, rtol=1e-6):
    """fn on Tensors vs ref on arrays (forward), and d sum(fn * w) vs central differences."""
    ts = [symbp.tensor(a, requires_grad=True) for a in args]
    out = fn(*ts)
    want = ref(*args)
    assert out.shape == want.shape
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-12, atol=1e-12)
    w = rng.normal(size=want.shape)
    (out * symbp.tensor(w)).sum().backward()
    fd = numeric_grads(lambda *a: np.sum(ref(*a) * w), args)
    for t, g in zip(ts, fd):
        np.testing.assert_allclose(t.grad, g, rtol=rtol, atol=1e-8)
    if torch is not None and torch_fn is not None:
        tt = [torch.tensor(a, requires_grad=True) for a in args]
        (torch_fn(*tt) * torch.tensor(w)).sum().backward()
        for t, r in zip(ts, tt):
            np.testing.assert_allclose(t.grad, r.grad.numpy(), rtol=1e-10, atol=1e-13)


def np_logsumexp(x, dim, keepdims=False):
    m = x.max(dim, keepdims=True)
    out = m + np.log(np.exp(x - m).sum(dim, keepdims=True))
    return out if keepdims else out.squeeze(dim)


def np_softmax(x, dim):
    e = np.exp(x - x.max(dim, keepdims=True))
    return e / e.sum(dim, keepdims=True)


@pytest.mark.parametrize("dim", [-1, 0])
def test_softmax(dim, rng):
    check(
        lambda x: symbp.softmax(x, dim),
        lambda x: np_softmax(x, dim),
        [rng.normal(size=SHAPE)],
        rng,
        lambda x: torch.softmax(x, dim),
    )


@pytest.mark.parametrize("dim", [-1, 0])
def test_log_softmax(dim, rng):
    check(
        lambda x: symbp.log_softmax(x, dim),
        lambda x: x - np_logsumexp(x, dim, True),
        [rng.normal(size=SHAPE)],
        rng,
        lambda x: torch.log_softmax(x, dim),
    )


@pytest.mark.parametrize("dim,keepdim", [(-1, False), (0, True), (1, True)])
def test_logsumexp(dim, keepdim, rng):
    check(
        lambda x: symbp.logsumexp(x, dim, keepdim),
        lambda x: np_logsumexp(x, dim, keepdim),
        [rng.normal(size=SHAPE)],
        rng,
        lambda x: torch.logsumexp(x, dim, keepdim),
    )


def test_softmax_family_is_stable_for_large_inputs():
    x = symbp.tensor(
        [[1000.0, 1000.0, 0.0], [-1000.0, 0.0, 1000.0]], dtype=np.float64, requires_grad=True
    )
    lse = symbp.logsumexp(x, 1)
    np.testing.assert_allclose(lse.numpy(), [1000 + np.log(2), 1000.0], rtol=1e-15)
    lse.sum().backward()
    # d logsumexp / dx = softmax(x): exp(-1000) underflows to exactly 0
    np.testing.assert_array_equal(x.grad, [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])

    x.grad = None
    logp = symbp.log_softmax(x, 1)
    np.testing.assert_allclose(
        logp.numpy(), [[-np.log(2), -np.log(2), -1000 - np.log(2)], [-2000, -1000, 0]], rtol=1e-15
    )
    logp[range(2), [2, 0]].sum().backward()  # picks -1000-log2 and -2000
    # d logp[i, k] / dx[i, :] = onehot(k) - softmax(x[i])
    np.testing.assert_allclose(x.grad, [[-0.5, -0.5, 1.0], [1.0, 0.0, -1.0]], atol=1e-300)
    s = symbp.softmax(x, 1).numpy()
    np.testing.assert_array_equal(s, [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize(
    "dim,keepdim",
    [(None, False), (1, False), (0, True), ((0, 2), False), ((0, 2), True), (-1, True)],
)
def test_mean(dim, keepdim, rng):
    np_dim = dim if dim is None or isinstance(dim, int) else tuple(dim)
    check(
        lambda x: x.mean(dim, keepdim) if dim is not None else x.mean(),
        lambda x: np.mean(x, axis=np_dim, keepdims=keepdim),
        [rng.normal(size=(2, 3, 4))],
        rng,
        (lambda x: x.mean(dim, keepdim)) if dim is not None else (lambda x: x.mean()),
    )


def test_bias_add_adjoint_sums_over_the_batch(rng):
    x, b = rng.normal(size=(5, 3)), rng.normal(size=3)
    check(lambda x, b: x + b, lambda x, b: x + b, [x, b], rng, lambda x, b: x + b)
    # the bias gradient is the cotangent summed over the broadcast (batch) axis
    xt, bt = symbp.tensor(x), symbp.tensor(b, requires_grad=True)
    w = rng.normal(size=(5, 3))
    ((xt + bt) * symbp.tensor(w)).sum().backward()
    np.testing.assert_allclose(bt.grad, w.sum(0), rtol=1e-14)


def test_broadcast_both_ways(rng):
    # [4,1] * [3] -> [4,3]: both operands are expanded, both adjoints sum
    check(
        lambda a, b: a * b,
        lambda a, b: a * b,
        [rng.normal(size=(4, 1)), rng.normal(size=3)],
        rng,
        lambda a, b: a * b,
    )


def test_shared_subexpression_accumulates(rng):
    # x feeds three paths: grads along each add up
    check(
        lambda x: x * symbp.exp(x) + x.sum() * x,
        lambda x: x * np.exp(x) + x.sum() * x,
        [rng.normal(size=(2, 3))],
        rng,
        lambda x: x * torch.exp(x) + x.sum() * x,
    )


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x.reshape(6, 4),
        lambda x: x.flatten(),
        lambda x: x.flatten(1),
        lambda x: x.transpose(0, 2),
        lambda x: x.reshape(6, 4).T,
        lambda x: x.reshape(6, 4).t(),
        lambda x: x.unsqueeze(1).squeeze(1),
        lambda x: x.view(2, -1),
    ],
    ids=["reshape", "flatten", "flatten1", "transpose02", "T", "t", "unsqueeze", "view"],
)
def test_shape_functions(fn, rng):
    # the reference runs the same calls on NumPy arrays through _NumpyView
    check(fn, lambda a: fn(_NumpyView(a)).a, [rng.normal(size=(2, 3, 4))], rng, fn)


class _NumpyView:
    """Just enough of the Tensor shape API over a NumPy array, written with NumPy calls."""

    def __init__(self, a):
        self.a = a

    def reshape(self, *s):
        return _NumpyView(self.a.reshape(*s))

    view = reshape

    def flatten(self, start=0):
        return _NumpyView(self.a.reshape(*self.a.shape[:start], -1))

    def transpose(self, i, j):
        return _NumpyView(np.swapaxes(self.a, i, j))

    @property
    def T(self):
        return _NumpyView(self.a.T)

    def t(self):
        return self.T

    def unsqueeze(self, d):
        return _NumpyView(np.expand_dims(self.a, d))

    def squeeze(self, d):
        return _NumpyView(np.squeeze(self.a, d))


def test_pick_by_labels(rng):
    x = rng.normal(size=(4, 5))
    check(
        lambda x: x[range(4), LABELS],
        lambda x: x[np.arange(4), LABELS],
        [x],
        rng,
        lambda x: x[range(4), torch.tensor(LABELS)],
    )


def test_integer_tensors_with_python_floats_compute_in_float():
    n = symbp.tensor([1, 2, 3])
    assert n.dtype == np.int64
    for got, want in [
        (n * 0.5, [0.5, 1.0, 1.5]),
        (n + 1.0, [2.0, 3.0, 4.0]),
        (n / 2, [0.5, 1, 1.5]),
    ]:
        assert got.dtype == np.float32  # the default float, as PyTorch
        np.testing.assert_array_equal(got.numpy(), want)
    assert (n * 2).dtype == np.int64 and (n * 2).tolist() == [2, 4, 6]
    # PyTorch's mean refuses integers and bools (no truncated int, no silent float): an
    # accuracy is (pred == y).float().mean(); the sum of integers is int64
    with pytest.raises(TypeError, match=r"mean.*int64.*float"):
        n.mean()
    assert n.float().mean().dtype == np.float32 and n.float().mean().item() == 2.0
    assert symbp.tensor([True, False, True, True]).float().mean().item() == 0.75  # an accuracy
    assert n.sum().dtype == np.int64 and symbp.tensor([True, True]).sum().item() == 2
    if torch is not None:
        tn = torch.tensor([1, 2, 3])
        assert (tn * 0.5).tolist() == (n * 0.5).tolist() and (tn + 1.0).dtype == torch.float32


def test_bce_at_saturated_probabilities_is_finite():
    # p exactly 0 or 1 (a saturated float32 sigmoid): the loss clamps log at -100, and the
    # gradient keeps p(1 - p) away from 0 as PyTorch does (its eps is 1e-12), never 0 * inf
    p = symbp.tensor([0.0, 1.0, 0.0, 1.0], dtype=np.float64, requires_grad=True)
    t = symbp.tensor([1.0, 0.0, 0.0, 1.0], dtype=np.float64)
    loss = symbp.nn.BCELoss(reduction="sum")(p, t)
    assert loss.item() == 200.0
    loss.backward()
    assert np.all(np.isfinite(p.grad))
    np.testing.assert_allclose(p.grad.numpy()[:2], [-1e12, 1e12], rtol=1e-12)  # -t/eps, (1 - t)/eps
    if torch is not None:
        tp = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
        tt = torch.tensor([1.0, 0.0], dtype=torch.float64)
        torch.nn.BCELoss(reduction="sum")(tp, tt).backward()
        # PyTorch's eps is the float32 1e-12, 4e-21 below the double: rtol 1e-8
        np.testing.assert_allclose(p.grad.numpy()[:2], tp.grad.numpy(), rtol=1e-8)


def test_linear_on_three_dimensional_input(rng):
    # [B, T, F] @ [F, K]: the leading axes fold into one matmul and unfold after
    check(
        lambda x, w: x @ w,
        lambda x, w: x @ w,
        [rng.normal(size=(2, 3, 4)), rng.normal(size=(4, 5))],
        rng,
        lambda x, w: x @ w,
    )
