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

import numpy as np
import sympy
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


def _np_erf(x):
    # scipy.special on first use: importing it took 0.4 s of every `import symbp` (the CLI,
    # each subprocess of the tests), for one function few models use
    import scipy.special

    return scipy.special.erf(x)


def _np_heaviside(x, h0=0.5):
    return np.heaviside(x, h0 + np.zeros_like(x))


NUMPY: dict[str, object] = {
    "sigmoid": _np_sigmoid,
    "relu": _np_relu,
    "softplus": _np_softplus,
    "clog": _np_clog,
    "bce": _np_bce,
    "Heaviside": _np_heaviside,
    "erf": _np_erf,
}

# Functions whose derivative jumps: gradient checks must not difference across their kinks.
NONSMOOTH = (relu, sympy.Abs, sympy.Heaviside, sympy.sign, sympy.Max, sympy.Min, sympy.Piecewise)
