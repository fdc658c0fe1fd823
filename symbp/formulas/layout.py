"""The printers' layout: tokens, precedences and brackets, fractions, powers and calls.

``Layout`` is the base of the printer classes (``IndexNotation`` adds index notation,
``TextPrinter`` the print method of each node type, ``LatexPrinter`` LaTeX's tokens); text
and LaTeX share this logic and differ in the tokens and hooks they override.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

import sympy
from sympy.printing.printer import Printer

from symbp.formulas.vocabulary import (
    _SUM_ALL,
    _SUM_BATCH,
    Broadcast,
    Dot,
    LogSoftmax,
    MaxOver,
    Permute,
    Reshape,
    Softmax,
    SumOver,
    Window,
)

_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")

# Ranks order the factors of printed products: later layers first, then weights, then data.
_RANK_DATA, _RANK_PARAM, _RANK_LAYER, _RANK_DELTA = 0, 1, 10, 10_000


# Precedences, SymPy's scale: a sub-expression binding weaker than its context gets brackets.
_ADD, _PRODUCT, _MUL, _POW, _ATOM = 40, 45, 50, 60, 1000


def _negative(e: sympy.Expr) -> bool:
    """Whether a term prints with a leading minus (−t, −2·x), not whether its value is < 0."""
    c = e.as_coeff_Mul()[0]
    return bool(c.is_Number and c.is_negative)


def _is_one_minus(e: sympy.Expr) -> bool:
    """1 − o, 1 − h²: the second factor of an activation's derivative."""
    return e.is_Add and any(a.is_Number for a in e.args)


def _prec(e: sympy.Expr) -> int:
    """How tightly ``e`` binds when printed (brackets go around weaker sub-expressions)."""
    if isinstance(e, (Broadcast, Reshape)):
        return _prec(e.args[0])
    if e.is_Add or _negative(e):
        return _ADD
    if isinstance(e, (Dot, SumOver, Window)):  # Window: its Σ_{i,p,q} in index notation
        return _PRODUCT
    if e.is_Mul or (e.is_Rational and not e.is_Integer):
        return _MUL
    if e.is_Pow:
        return _MUL if (e.exp.is_Number and e.exp.is_negative) else _POW
    return _ATOM


_STRUCTURAL = (Dot, Permute, SumOver, MaxOver, Softmax, LogSoftmax, Window)


def _structural(e: sympy.Expr) -> bool:
    return e.has(*_STRUCTURAL)


class Layout(Printer):
    """The layout shared by the printers: tokens, brackets by precedence, fractions, powers,
    calls, indicators and cases; ``rank`` orders a product's factors (see ``TextPrinter``).

    ``LatexPrinter`` overrides the tokens and these hooks; everything else is shared."""

    _default_settings: dict[str, Any] = {"hadamard": True, "rank": None, "shapes": {}}

    # tokens; LatexPrinter overrides them
    times_hadamard, times_scalar, matmul, minus, neg = " ⊙ ", "·", "·", " − ", "−"
    transpose_mark, ones = "ᵀ", "𝟙"
    frac_delimits = False  # whether a fraction's numerator needs no brackets (LaTeX \frac)
    _which = 0  # index into FUNCTIONS entries: 0 text, 1 LaTeX

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        super().__init__(settings)
        self.rank: Callable[[sympy.Expr], int] = self._settings["rank"] or (lambda e: 0)

    def paren(self, s: str) -> str:
        return f"({s})"

    def group(self, e: sympy.Expr, level: int) -> str:
        s = self._print(e)
        return self.paren(s) if self.prec(e) < level else s

    def prec(self, e: sympy.Expr) -> int:
        return _prec(e)

    def frac(self, num: str, den: str, den_expr: sympy.Expr) -> str:
        # den comes printed with its own brackets if it needs them; a product gets one pair
        single = len(sympy.Mul.make_args(den_expr)) == 1 and not _negative(den_expr)
        return f"{num}/{den}" if single else f"{num}/{self.paren(den)}"

    def power(self, base: str, exp: sympy.Expr) -> str:
        if exp.is_Integer and exp > 0:
            return base + str(exp).translate(_SUPERSCRIPT)
        return f"{base}^{self.group(exp, _ATOM)}"

    def sqrt(self, arg: sympy.Expr) -> str:
        return "√" + self.group(arg, _ATOM)

    def call(self, name: str, args: str) -> str:
        return f"{name}({args})"

    def sum_sign(self, kind: int, axes: tuple[int, ...]) -> str:
        if kind == _SUM_ALL:
            return "Σ"
        if kind == _SUM_BATCH:
            return "Σ_batch"
        return "Σ_dim" + ",".join(map(str, axes))

    def symbol(self, name: str) -> str:
        return name

    def indicator(self, cond: str) -> str:
        return f"[{cond}]"

    def cases(self, rows: list[tuple[str, str | None]]) -> str:
        shown = [f"{v} if {c}" if c is not None else f"{v} otherwise" for v, c in rows]
        return "{" + "; ".join(shown) + "}"


def columns(s: str) -> int:
    """Columns a printed name takes: x̂ is one (a letter and a combining accent)."""
    return sum(1 for c in s if not unicodedata.combining(c))
