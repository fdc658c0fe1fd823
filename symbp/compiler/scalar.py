"""Scalar functions SymPy lacks, each with its derivative, NumPy form and printed form.

Elementwise ops are their SymPy formula (see ``ops.ELEMENTWISE``). Where SymPy has no
function of its own, or differentiates it in a form we do not want, it is defined here:

- ``sigmoid`` differentiates to ``sigmoid(x)*(1 - sigmoid(x))`` (not ``exp(-x)/(1+exp(-x))**2``),
  so reverse mode can reuse the forward output: s' = s(1 - s).
- ``relu`` differentiates to ``Heaviside(x, 0)``: PyTorch's ReLU gradient is 0 at 0, whereas
  SymPy's ``Max(x, 0)`` would give ``Heaviside(x)``, which is 1/2 there.
- ``softplus`` = log(1 + exp(x)) evaluated stably (``logaddexp``), derivative ``sigmoid``.
- ``clog`` is log clamped below at -100, as PyTorch's BCELoss does; derivative 1/x.
- ``bce(p, t)`` is BCELoss's elementwise term, with PyTorch's derivative in p (0 at a
  saturated correct prediction) and NaN for a probability outside [0, 1].

``NUMPY`` maps every function name that may appear in a formula to its NumPy implementation;
the reference executor lambdifies formulas with it.
"""

from __future__ import annotations

import builtins
import functools
import math
from typing import Any

import numpy as np
import sympy
from sympy.codegen import cfunctions
from sympy.printing.latex import LatexPrinter


class sigmoid(sympy.Function):  # noqa: N801 -- SymPy functions print by class name
    """The logistic function 1 / (1 + exp(-x))."""

    is_real = True

    @classmethod
    def eval(cls, x):
        if x.is_zero:
            return sympy.Rational(1, 2)
        return None

    def fdiff(self, argindex: int = 1):
        return self * (1 - self)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sympy.exp(-x))

    def _latex(self, printer: LatexPrinter) -> str:
        return rf"\sigma\left({printer._print(self.args[0])}\right)"

    def _sympystr(self, printer) -> str:
        return f"σ({printer._print(self.args[0])})"


class relu(sympy.Function):  # noqa: N801
    """max(x, 0) with PyTorch's subgradient 0 at x = 0."""

    is_real = True

    @classmethod
    def eval(cls, x):
        if x.is_number:
            return sympy.Max(x, 0)
        return None

    def fdiff(self, argindex: int = 1):
        return sympy.Heaviside(self.args[0], 0)

    def _eval_rewrite_as_Max(self, x, **kwargs):
        return sympy.Max(x, 0)

    def _latex(self, printer: LatexPrinter) -> str:
        return rf"\operatorname{{relu}}\left({printer._print(self.args[0])}\right)"


class softplus(sympy.Function):  # noqa: N801
    """log(1 + exp(x)), computed without overflow."""

    is_real = True

    def fdiff(self, argindex: int = 1):
        return sigmoid(self.args[0])

    def _eval_rewrite_as_log(self, x, **kwargs):
        return sympy.log(1 + sympy.exp(x))

    def _latex(self, printer: LatexPrinter) -> str:
        return rf"\operatorname{{softplus}}\left({printer._print(self.args[0])}\right)"


class clog(sympy.Function):  # noqa: N801
    """log(x) clamped below at -100 (PyTorch's BCELoss keeps log(0) finite this way)."""

    def fdiff(self, argindex: int = 1):
        # 1/x with x kept >= 1e-12, PyTorch's BCE epsilon: at a saturated p = 0 the BCE
        # gradient is -t/1e-12 (PyTorch's -1e12) and t = 0 gives 0, not 0 * (1/0) = nan
        return 1 / sympy.Max(self.args[0], sympy.Float(1e-12))

    def _latex(self, printer: LatexPrinter) -> str:
        return rf"\log\left({printer._print(self.args[0])}\right)"

    def _sympystr(self, printer) -> str:
        return f"log({printer._print(self.args[0])})"


class bce(sympy.Function):  # noqa: N801
    """Binary cross-entropy -(t clog(p) + (1 - t) clog(1 - p)) of a probability p, target t.

    One function, not two clamped logs, for its derivative in p: PyTorch's (p - t) /
    max(p (1 - p), 1e-12), which is 0 at a saturated correct prediction (p = t = 0, p = t = 1)
    where the sum of the clamped logs' derivatives leaves -t/1e-12 + (1 - t)/1 = +-1. In t it
    is clog(1 - p) - clog(p) (PyTorch's unclamped logs give +-inf at p = 0 or 1). A p outside
    [0, 1] is NaN (PyTorch raises: BCELoss raises too when it has values; compiled code stops
    on the non-finite loss)."""

    nargs = 2

    def fdiff(self, argindex: int = 1):
        p, t = self.args
        if argindex == 1:
            return (p - t) / sympy.Max(p * (1 - p), sympy.Float(1e-12))
        return clog(1 - p) - clog(p)

    def _latex(self, printer: LatexPrinter) -> str:
        p, t = (printer._print(a) for a in self.args)
        return rf"\operatorname{{bce}}\left({p}, {t}\right)"


# ---------------------------------------------------------------- the math family (issue 12)
# Rounding has PyTorch's zero derivative (SymPy leaves d floor(x)/dx unevaluated), and the
# ops built on it (frac, fmod, remainder) differentiate through it. A function whose value
# jumps says where with ``kinks``: expressions whose sign changes at each jump, which
# ``check.kink_coordinates`` reads (sin(pi x) changes sign at every integer x).


class _Rounding(sympy.Function):
    """A rounding of x to an integer: derivative 0 (PyTorch's), jumps where ``kinks`` say."""

    is_real = True
    _python: Any = None  # the rounding of a number, for eval

    @classmethod
    def eval(cls, x):
        if x.is_Number and x.is_finite:
            return sympy.Integer(cls._python(float(x)))
        return None

    def fdiff(self, argindex: int = 1):
        return sympy.S.Zero

    def kinks(self) -> list[sympy.Expr]:
        return [sympy.sin(sympy.pi * self.args[0])]


class floor(_Rounding):  # noqa: N801
    """The largest integer <= x."""

    _python = staticmethod(math.floor)


class ceil(_Rounding):  # noqa: N801
    """The smallest integer >= x."""

    _python = staticmethod(math.ceil)


class trunc(_Rounding):  # noqa: N801
    """x rounded toward zero."""

    _python = staticmethod(math.trunc)


class round(_Rounding):  # noqa: N801, A001 -- PyTorch's name
    """x rounded to the nearest integer, halves to even (PyTorch's and NumPy's rule)."""

    _python = staticmethod(builtins.round)  # Python's round is half-to-even too

    def kinks(self) -> list[sympy.Expr]:
        return [sympy.cos(sympy.pi * self.args[0])]  # jumps at the halves


class fmod(sympy.Function):  # noqa: N801
    """x - y trunc(x / y), the remainder with the sign of x (C's fmod, torch.fmod); PyTorch's
    derivatives 1 and -trunc(x / y)."""

    nargs = 2
    is_real = True

    def fdiff(self, argindex: int = 1):
        x, y = self.args
        return sympy.S.One if argindex == 1 else -trunc(x / y)

    def kinks(self) -> list[sympy.Expr]:
        return [sympy.sin(sympy.pi * self.args[0] / self.args[1])]


class remainder(sympy.Function):  # noqa: N801
    """x - y floor(x / y), the remainder with the sign of y (Python's %, torch.remainder);
    PyTorch's derivatives 1 and -floor(x / y)."""

    nargs = 2
    is_real = True

    def fdiff(self, argindex: int = 1):
        x, y = self.args
        return sympy.S.One if argindex == 1 else -floor(x / y)

    def kinks(self) -> list[sympy.Expr]:
        return [sympy.sin(sympy.pi * self.args[0] / self.args[1])]


class atan2(sympy.atan2):  # noqa: N801
    """atan2(y, x) with PyTorch's gradient where x² + y² is 0 (the origin, or where the squares
    underflow): 0 by both, where the textbook x / (x² + y²) and -y / (x² + y²) are 0/0."""

    def fdiff(self, argindex: int = 1):
        y, x = self.args
        r = x**2 + y**2
        return sympy.Piecewise((0, sympy.Eq(r, 0)), (x / r if argindex == 1 else -y / r, True))


class xlogy(sympy.Function):  # noqa: N801
    """x log(y), 0 where x = 0 (for any y but NaN), as torch.xlogy. PyTorch's derivative in x
    is log(y) but 0 where x = 0 and y <= 0 (where log(y) is -inf or NaN); in y it is x / y."""

    nargs = 2

    def fdiff(self, argindex: int = 1):
        x, y = self.args
        if argindex == 1:
            return sympy.Piecewise((0, sympy.And(sympy.Eq(x, 0), y <= 0)), (sympy.log(y), True))
        return x / y

    def _latex(self, printer: LatexPrinter) -> str:
        x, y = (printer._print(a) for a in self.args)
        return rf"{x}\log\left({y}\right)"


class logaddexp(sympy.Function):  # noqa: N801
    """log(exp(x) + exp(y)) without overflow; derivatives sigmoid(x - y) and sigmoid(y - x)."""

    nargs = 2
    is_real = True

    def fdiff(self, argindex: int = 1):
        x, y = self.args
        return sigmoid(x - y) if argindex == 1 else sigmoid(y - x)

    def _eval_rewrite_as_log(self, x, y, **kwargs):
        return sympy.log(sympy.exp(x) + sympy.exp(y))


class pow(sympy.Function):  # noqa: N801, A001 -- PyTorch's name
    """x ** y of two tensors, with PyTorch's gradient where x ** y's formula is 0 * inf: 0 by
    x where y = 0, 0 by y where x = 0 and y >= 0. A number on either side is SymPy's Pow
    (x**2 stays x**2); it prints as a power everywhere."""

    nargs = 2

    @classmethod
    def eval(cls, x, y):
        if x.is_number or y.is_number:
            return x**y
        return None

    def fdiff(self, argindex: int = 1):
        x, y = self.args
        if argindex == 1:
            return sympy.Piecewise((0, sympy.Eq(y, 0)), (y * pow(x, y - 1), True))
        return sympy.Piecewise(
            (0, sympy.And(sympy.Eq(x, 0), y >= 0)), (pow(x, y) * sympy.log(x), True)
        )

    def _power(self) -> sympy.Expr:
        return sympy.Pow(*self.args, evaluate=False)

    def _numbacode(self, printer) -> str:  # lower.printer
        return printer._print(self._power())

    def _symbp_text(self, printer) -> str:  # formulas
        return printer._print(self._power())

    def _symbp_latex(self, printer) -> str:
        return printer._print(self._power())

    def _sympystr(self, printer) -> str:
        return printer._print(self._power())


class Pieces(sympy.Function):
    """A function defined piecewise (an activation with bounds), kept whole in formulas.

    ``pieces(x, *params)`` is its Piecewise form, each boundary point in the branch whose
    derivative is PyTorch's there. Kept opaque, one activation feeding another stays
    ``hardtanh(leaky_relu(z, 0.2), -1, 1)``: substituted, SymPy would fold the inner
    Piecewise into the outer one's conditions (ITE). The derivative is the Piecewise's,
    the NumPy form its lambdified Piecewise, and the compiled code prints the Piecewise
    (``lower.printer``); the parameters are numbers, never differentiated.
    """

    is_real = True

    @staticmethod
    def pieces(x, *params):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    derivative: Any = None  # (x, *params) -> its derivative, if not the Piecewise's

    @classmethod
    def eval(cls, x, *params):
        if x.is_Number:
            return cls.pieces(x, *params)
        return None

    def expanded(self) -> sympy.Expr:
        return self.pieces(*self.args)

    def fdiff(self, argindex: int = 1):
        if argindex != 1:
            raise sympy.ArgumentIndexError(self, argindex)
        x = sympy.Dummy("x", real=True)
        if self.derivative is not None:  # a form that reads better than the Piecewise's
            return self.derivative(*self.args)
        return sympy.diff(self.pieces(x, *self.args[1:]), x).xreplace({x: self.args[0]})

    @classmethod
    def numpy(cls):  # type: ignore[no-untyped-def]
        """Its NumPy form, the Piecewise lambdified on first use (not at import)."""

        @functools.lru_cache(maxsize=1)
        def lambdified():  # type: ignore[no-untyped-def]
            n = len(cls._params)  # type: ignore[attr-defined]
            syms = [sympy.Symbol(n, real=True) for n in ["x", *(f"p{i}" for i in range(n))]]
            return sympy.lambdify(syms, cls.pieces(*syms), modules=[NUMPY, "numpy"])

        return lambda *args: lambdified()(*args)


def _hardtanh(x, min_val, max_val):  # type: ignore[no-untyped-def]
    # the bounds take the flat branch, where PyTorch's gradient is 0; NaN falls through to x
    return sympy.Piecewise((min_val, x <= min_val), (max_val, x >= max_val), (x, True))


# SELU's constants, as PyTorch's (Klambauer et al. 2017)
SELU_ALPHA = sympy.Float("1.6732632423543772848170429916717")
SELU_SCALE = sympy.Float("1.0507009873554804934193349852946")


def _pieces(
    name: str, params: tuple[str, ...], pieces: Any, doc: str, derivative: Any = None
) -> type[Pieces]:
    cls = type(name, (Pieces,), {"nargs": 1 + len(params), "_params": params, "__doc__": doc})
    cls.pieces = staticmethod(pieces)  # type: ignore[attr-defined]
    cls.derivative = None if derivative is None else staticmethod(derivative)  # type: ignore[attr-defined]
    return cls


def _inside(x, lo, hi):  # type: ignore[no-untyped-def]
    """1 strictly inside (lo, hi), else 0 (a clamp's derivative: [lo < x]·[x < hi])."""
    return sympy.Heaviside(x - lo, 0) * sympy.Heaviside(hi - x, 0)


# fmt: off
leaky_relu = _pieces(
    "leaky_relu", ("negative_slope",),
    lambda x, a: sympy.Piecewise((x, x > 0), (a * x, True)),
    "x for x > 0, else slope x; the derivative at 0 is the slope (PyTorch's).")
elu = _pieces(
    "elu", ("alpha",),
    lambda x, a: sympy.Piecewise((x, x > 0), (a * cfunctions.expm1(x), True)),
    "x for x > 0, else alpha (exp(x) - 1); elu'(0) = alpha.")
selu = _pieces(
    "selu", (),
    lambda x: SELU_SCALE * sympy.Piecewise((x, x > 0), (SELU_ALPHA * cfunctions.expm1(x), True)),
    "scale elu(x, alpha) with SELU's constants; selu'(0) = scale alpha.")
celu = _pieces(
    "celu", ("alpha",),
    lambda x, a: sympy.Piecewise((x, x > 0), (a * cfunctions.expm1(x / a), True)),
    "x for x > 0, else alpha (exp(x / alpha) - 1); celu'(0) = 1.")
hardtanh = _pieces(
    "hardtanh", ("min_val", "max_val"), _hardtanh,
    "x clamped to [min_val, max_val]; 0 derivative at the bounds.", _inside)
relu6 = _pieces(
    "relu6", (), lambda x: _hardtanh(x, 0, 6), "hardtanh(x, 0, 6), as PyTorch's ReLU6.",
    lambda x: _inside(x, 0, 6))
hardsigmoid = _pieces(
    "hardsigmoid", (),
    lambda x: sympy.Piecewise((0, x <= -3), (1, x >= 3), (x / 6 + sympy.Rational(1, 2), True)),
    "x/6 + 1/2 clamped to [0, 1]; 0 derivative at -3 and 3.",
    lambda x: _inside(x, -3, 3) / 6)
hardswish = _pieces(
    "hardswish", (),
    lambda x: sympy.Piecewise((0, x <= -3), (x, x >= 3), (x * (x + 3) / 6, True)),
    "x relu6(x + 3)/6; derivative 0 at -3, 1 at 3 (PyTorch's).")
threshold = _pieces(
    "threshold", ("threshold", "value"),
    lambda x, t, v: sympy.Piecewise((v, x <= t), (x, True)),
    "x where x > threshold, else value; derivative 0 at the threshold.")
softplus_threshold = _pieces(
    "softplus_threshold", ("beta", "threshold"),
    lambda x, b, t: sympy.Piecewise((x, b * x > t), (softplus(b * x) / b, True)),
    "PyTorch's F.softplus: softplus(beta x)/beta, and x itself where beta x > threshold.")
nan_to_num = _pieces(
    "nan_to_num", ("nan", "posinf", "neginf", "big"),
    lambda x, nan, posinf, neginf, big: sympy.Piecewise(
        (x, sympy.And(x <= big, x >= -big)), (posinf, x > 0), (neginf, x < 0), (nan, True)),
    "NaN -> nan, +inf -> posinf, -inf -> neginf; big is the dtype's largest finite value, "
    "x is finite where |x| <= big, the only branch with a gradient (PyTorch's: 0 elsewhere).")
# fmt: on
PIECES = (
    leaky_relu,
    elu,
    selu,
    celu,
    hardtanh,
    relu6,
    hardsigmoid,
    hardswish,
    threshold,
    softplus_threshold,
    nan_to_num,
)  # fmt: skip


# ---------------------------------------------------------------- gates


def gated(expr: sympy.Expr) -> sympy.Expr:
    """``expr`` with every product holding a ``Heaviside(z, h0)`` factor written as a select:
    the rest of the product where z > 0, h0 times it at 0, and 0 where z < 0, instead of a
    multiplication by 1 or 0. ReLU's backward is ``ct * Heaviside(z, 0)``; as a product, an
    infinite cotangent where the unit is off gave 0 * inf = nan where PyTorch (a select,
    ``threshold_backward``) gives 0. A NaN z passes the rest, as PyTorch's does (NaN <= 0 is
    false). The reference executor and the Numba printer both evaluate formulas through this,
    so eager and compiled agree; the formulas themselves (``symbp.formulas``) keep the product.
    """

    def is_gated(e: sympy.Basic) -> bool:
        return e.is_Mul and any(isinstance(a, sympy.Heaviside) for a in e.args)

    def select(m: sympy.Expr) -> sympy.Expr:
        h = next(a for a in m.args if isinstance(a, sympy.Heaviside))
        z, h0 = h.args[0], (h.args[1] if len(h.args) > 1 else sympy.S.Half)
        rest = gated(sympy.Mul(*(a for a in m.args if a is not h)))
        if h0 == 0:
            return sympy.Piecewise((0, z <= 0), (rest, True))
        return sympy.Piecewise((0, z < 0), (h0 * rest, sympy.Eq(z, 0)), (rest, True))

    if not expr.has(sympy.Heaviside):
        return expr
    return expr.replace(is_gated, select)


# ---------------------------------------------------------------- NumPy forms


def _np_sigmoid(x):
    # exp of a negative argument only: no overflow warnings, full precision in both tails.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


# The constants are zeros_like(x), not 0 * x: 0 * inf is nan, which made relu(inf),
# softplus(-inf) and log(inf) nan where PyTorch gives inf, 0 and inf (and relu(-1) was -0.0).


def _np_relu(x):
    return np.maximum(x, np.zeros_like(x))


def _np_softplus(x):
    return np.logaddexp(np.zeros_like(x), x)


def _np_clog(x):
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(x), np.full_like(x, -100))


def _np_bce(p, t):
    p = np.asarray(p)
    inside = (p >= 0) & (p <= 1)  # False for NaN too
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(inside, p, 0.5)
        out = -(t * _np_clog(q) + (1 - t) * _np_clog(1 - q))
    return np.where(inside, out, np.nan)


def _scipy_special(name: str):
    """scipy.special's ``name``, imported on first use: importing it took 0.4 s of every
    ``import symbp`` (the CLI, each subprocess of the tests), for functions few models use."""

    def fn(*args):
        import scipy.special

        return getattr(scipy.special, name)(*args)

    fn.__name__ = name
    return fn


_np_erf = _scipy_special("erf")


def _np_heaviside(x, h0=0.5):
    return np.heaviside(x, h0 + np.zeros_like(x))


def _np_pow(x, y):
    """x ** y; for integers PyTorch's negative powers (1, ±1 for -1, else 0), where NumPy's
    raise."""
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype.kind not in "iu" or y.dtype.kind not in "iu" or not (y < 0).any():
        return np.power(x, y)
    out = np.power(x, np.maximum(y, 0))
    odd = np.abs(y) % 2 == 1
    small = np.where(x == 1, 1, np.where(x == -1, np.where(odd, -1, 1), 0))
    return np.where(y < 0, small, out).astype(out.dtype)


def _np_xlogy(x, y):
    # 0 where x = 0 unless y is NaN (scipy's xlogy(0, nan) is 0, PyTorch's nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((x == 0) & ~np.isnan(y), np.zeros_like(x * y), x * np.log(y))


NUMPY: dict[str, object] = {
    "sigmoid": _np_sigmoid,
    "relu": _np_relu,
    "softplus": _np_softplus,
    "clog": _np_clog,
    "bce": _np_bce,
    "Heaviside": _np_heaviside,
    "erf": _np_erf,
    "erfc": _scipy_special("erfc"),
    "erfinv": _scipy_special("erfinv"),
    "floor": np.floor,
    "ceil": np.ceil,
    "trunc": np.trunc,
    "round": np.rint,  # halves to even, as PyTorch
    "fmod": np.fmod,
    "remainder": np.remainder,
    "xlogy": _np_xlogy,
    "logaddexp": np.logaddexp,
    "pow": _np_pow,
}
NUMPY.update({cls.__name__: cls.numpy() for cls in PIECES})

# Functions whose derivative jumps: gradient checks must not difference across their kinks.
NONSMOOTH = (
    relu, sympy.Abs, sympy.Heaviside, sympy.sign, sympy.Max, sympy.Min, sympy.Piecewise,
    _Rounding, fmod, remainder,
)  # fmt: skip
