"""A Numba-safe printer: one SymPy scalar expression -> one line of nopython-mode Python.

Every construct prints as plain scalar code Numba compiles without help: ``Piecewise``,
``Heaviside``, ``Max``, ``sign`` become conditional expressions (never ``numpy.select``), the
special functions are ``math`` calls, and symbp's own ``sigmoid``, ``softplus`` and ``clog`` call
the stable scalar forms of ``symbp.compiler.lower.support``.

Number literals carry the kernel's dtype: in a float32 kernel ``0.5`` prints as ``f32(0.5)``,
because Numba, like NumPy, would otherwise promote ``float32 * 0.5`` to float64.
"""

from __future__ import annotations

import sympy
from sympy.printing.precedence import precedence
from sympy.printing.str import StrPrinter

from symbp.compiler import scalar


class LoweringError(NotImplementedError):
    """A formula uses a function the Numba backend has no scalar form for."""


# SymPy function -> the nopython-mode scalar function that computes it.
MATH = {
    "exp": "exp",  # support.py's: float32 in arithmetic that vectorizes
    "log": "math.log",
    "sqrt": "math.sqrt",
    "tanh": "tanh",  # support.py's, from exp: libm's tanhf is slow
    "sinh": "math.sinh",
    "cosh": "math.cosh",
    "sin": "math.sin",
    "cos": "math.cos",
    "tan": "math.tan",
    "atan": "math.atan",
    "asinh": "math.asinh",
    "erf": "erf",  # support.py's, as exp
    "erfc": "math.erfc",
    "sigmoid": "sigmoid",  # symbp.compiler.lower.support: the stable scalar forms
    "softplus": "softplus",
    "clog": "clog",
    "bce": "bce",
    # the math family (issue 12): NumPy's scalar ufuncs where math's would return an int
    # (math.floor) or does not exist; the stable forms of support.py
    "asin": "math.asin",
    "acos": "math.acos",
    "atan2": "math.atan2",
    "acosh": "math.acosh",
    "atanh": "math.atanh",
    "exp2": "np.exp2",
    "expm1": "math.expm1",
    "log2": "math.log2",
    "log10": "math.log10",
    "log1p": "math.log1p",
    "hypot": "math.hypot",
    "floor": "np.floor",
    "ceil": "np.ceil",
    "trunc": "np.trunc",
    "round": "np.rint",  # halves to even, as PyTorch
    "fmod": "np.fmod",
    "remainder": "np.remainder",
    "erfinv": "erfinv",
    "xlogy": "xlogy",
    "logaddexp": "logaddexp",
}

# support.py's scalar forms, one per precision: the name gets the kernel's _f32 or _f64
TYPED = {"exp", "erf", "sigmoid", "softplus", "clog", "bce", "erfinv", "xlogy", "logaddexp", "tanh"}


class NumbaPrinter(StrPrinter):
    """Print a scalar SymPy expression as Numba nopython code.

    ``names`` maps symbols to the code that reads them (``mm0[i, j]``, ``lr``); ``dtype`` is
    ``"f32"`` or ``"f64"``, the precision of the kernel the expression runs in, or ``"int"``
    (an integer or bool kernel: whole numbers print as integers).
    """

    printmethod = "_numbacode"

    def __init__(
        self,
        names: dict[sympy.Symbol, str] | None = None,
        dtype: str = "f64",
        used: set[str] | None = None,
    ):
        super().__init__({"order": "none"})
        self.names = names or {}
        self.dtype = dtype
        # the support helpers printed (``sigmoid_f32``): what the module imports
        self.used = used if used is not None else set()
        self._exact_ints = 0  # > 0 while printing comparisons: integers stay integers

    # ------------------------------------------------------------ atoms

    def lit(self, value: float) -> str:
        if self.dtype == "int" and float(value).is_integer():  # an integer or bool kernel
            return str(int(value))
        text = repr(float(value))
        if text in ("inf", "-inf", "nan"):
            text = f"np.{text}" if text[0] != "-" else "-np.inf"
        return f"f32({text})" if self.dtype == "f32" else text

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        return self.names.get(expr, expr.name)

    _print_Dummy = _print_Symbol  # noqa: N815 -- SymPy printers dispatch on class names

    def _print_Integer(self, expr: sympy.Integer) -> str:
        return str(int(expr)) if self._exact_ints else self.lit(int(expr))

    def _print_Rational(self, expr: sympy.Rational) -> str:
        return self.lit(float(expr))

    def _print_Float(self, expr: sympy.Float) -> str:
        return self.lit(float(expr))

    def _print_NumberSymbol(self, expr: sympy.Expr) -> str:
        return self.lit(float(expr))

    _print_Pi = _print_NumberSymbol  # noqa: N815
    _print_Exp1 = _print_NumberSymbol  # noqa: N815
    _print_EulerGamma = _print_NumberSymbol  # noqa: N815
    _print_GoldenRatio = _print_NumberSymbol  # noqa: N815

    def _print_Infinity(self, expr: sympy.Expr) -> str:
        return self.lit(float("inf"))

    def _print_NegativeInfinity(self, expr: sympy.Expr) -> str:
        return self.lit(float("-inf"))

    def _print_NaN(self, expr: sympy.Expr) -> str:
        return self.lit(float("nan"))

    def _print_BooleanTrue(self, expr: sympy.Expr) -> str:
        return "True"

    def _print_BooleanFalse(self, expr: sympy.Expr) -> str:
        return "False"

    # ------------------------------------------------------------ arithmetic

    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:
        base, exp = expr.args
        b = self.parenthesize(base, precedence(expr), strict=False)
        one = self.lit(1)
        if exp == sympy.S.Half:
            return f"math.sqrt({self._print(base)})"
        if exp == -sympy.S.Half:
            return f"{one}/math.sqrt({self._print(base)})"
        if exp.is_Integer:
            n = int(exp)
            if n == 2:  # the commonest power: a product, no call
                return f"({b}*{b})" if base.is_Atom else f"({self._print(base)})**2"
            if n < 0:
                return f"{one}/{b}**{-n}" if n != -1 else f"{one}/{b}"
            return f"{b}**{n}"
        if self.dtype == "f64":  # C's pow, as Python's float ** int (and PyTorch's beta**step);
            # Numba compiles b**t with an integer t as a squaring loop: ~0.4 s per power
            return f"math.pow({self._print(base)}, {self._print(exp)})"
        return f"{b}**{self.parenthesize(exp, precedence(expr), strict=True)}"

    def _print_Mul(self, expr: sympy.Expr) -> str:
        if any(isinstance(a, sympy.Heaviside) for a in expr.args):  # ct * H(z): a select, as
            return self._print(scalar.gated(expr))  # the reference executor evaluates it
        return super()._print_Mul(expr)

    def _print_Abs(self, expr: sympy.Expr) -> str:
        return f"abs({self._print(expr.args[0])})"

    def _print_sign(self, expr: sympy.Expr) -> str:
        x = self._print(expr.args[0])
        return f"({self.lit(1)} if {x} > 0 else ({self.lit(-1)} if {x} < 0 else {self.lit(0)}))"

    def _minmax(self, args: tuple, keep_first: str) -> str:
        # Conditional expressions, NaN propagating from any argument as NumPy's and PyTorch's
        # maximum/minimum (SymPy orders Max's arguments, so a NaN may come in any of them)
        code = self._print(args[0])
        for a in args[1:]:
            other = self._print(a)
            code = f"({other} if {code} {keep_first} {other} or {other} != {other} else {code})"
        return code

    def _print_Max(self, expr: sympy.Expr) -> str:
        return self._minmax(expr.args, "<")

    def _print_Min(self, expr: sympy.Expr) -> str:
        return self._minmax(expr.args, ">")

    def _print_relu(self, expr: sympy.Expr) -> str:
        x = self._print(expr.args[0])
        return f"({self.lit(0)} if {x} < 0 else {x})"  # NaN stays NaN

    def _print_Heaviside(self, expr: sympy.Expr) -> str:
        x = self._print(expr.args[0])
        h0 = expr.args[1] if len(expr.args) > 1 else sympy.S.Half
        one, zero = self.lit(1), self.lit(0)
        if h0 == 0:
            return f"({one} if {x} > 0 else {zero})"
        if h0 == 1:
            return f"({one} if {x} >= 0 else {zero})"
        return f"({one} if {x} > 0 else ({self._print(h0)} if {x} == 0 else {zero}))"

    def _print_Piecewise(self, expr: sympy.Piecewise) -> str:
        pieces = list(expr.args)
        last_expr, last_cond = pieces[-1]
        code = self._print(last_expr) if last_cond == sympy.true else self.lit(float("nan"))
        if last_cond != sympy.true:
            pieces.append(pieces[-1])
        for e, c in reversed(pieces[:-1]):
            code = f"({self._print(e)} if {self._print(c)} else {code})"
        return code

    # ------------------------------------------------------------ conditions

    def _print_Relational(self, expr: sympy.Expr) -> str:
        op = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}[expr.rel_op]
        self._exact_ints += 1
        try:
            return f"({self._print(expr.lhs)} {op} {self._print(expr.rhs)})"
        finally:
            self._exact_ints -= 1

    def _print_And(self, expr: sympy.Expr) -> str:
        return "(" + " and ".join(self._print(a) for a in expr.args) + ")"

    def _print_Or(self, expr: sympy.Expr) -> str:
        return "(" + " or ".join(self._print(a) for a in expr.args) + ")"

    def _print_Not(self, expr: sympy.Expr) -> str:
        return f"(not {self._print(expr.args[0])})"

    def _print_ITE(self, expr: sympy.Expr) -> str:
        # SymPy's if-then-else condition, as fusing a mask's indicator into a relation makes
        c, a, b = (self._print(e) for e in expr.args)
        return f"({a} if {c} else {b})"

    def _print_Xor(self, expr: sympy.Expr) -> str:
        odd = " + ".join(f"int({self._print(a)})" for a in expr.args)
        return f"(({odd}) % 2 == 1)"

    # ------------------------------------------------------------ functions

    def _print_Function(self, expr: sympy.Expr) -> str:
        if isinstance(expr, scalar.Pieces):  # leaky_relu, hardtanh ...: their Piecewise
            return self._print(expr.expanded())
        name = type(expr).__name__
        fn = MATH.get(name)
        if fn is None:
            raise LoweringError(
                f"the Numba backend has no scalar form for {name}() (in {expr}); give a custom "
                f"elementwise op a formula of known functions"
            )
        if fn in TYPED:
            fn = f"{fn}_{self.dtype}"
        if "." not in fn:  # np.rint, math.exp: their modules are always imported
            self.used.add(fn)
        return f"{fn}({', '.join(self._print(a) for a in expr.args)})"

    def _print_sigmoid(self, expr: sympy.Expr) -> str:
        return self._print_Function(expr)

    def _print_clog(self, expr: sympy.Expr) -> str:
        return self._print_Function(expr)

    def _print_bce(self, expr: sympy.Expr) -> str:
        return self._print_Function(expr)

    def _print_softplus(self, expr: sympy.Expr) -> str:
        return self._print_Function(expr)


def numba_code(
    expr: sympy.Expr, names: dict[sympy.Symbol, str] | None = None, dtype: str = "f64"
) -> str:
    """The Numba nopython code of a scalar expression (see ``NumbaPrinter``).

    >>> x = sympy.Symbol("x", real=True)
    >>> numba_code(sympy.Piecewise((x, x > 0), (x / 2, True)), {x: "a[i]"}, "f32")
    '(a[i] if (a[i] > 0) else a[i]/f32(2.0))'
    """
    return NumbaPrinter(names, dtype).doprint(expr)


__all__ = ["MATH", "LoweringError", "NumbaPrinter", "numba_code"]
