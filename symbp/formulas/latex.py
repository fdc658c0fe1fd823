"""The LaTeX printer: ``TextPrinter``'s layout with LaTeX's tokens, and symbp's names in
LaTeX (``W1`` -> ``W_{1}``, ``δ2`` -> ``\\delta_{2}``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import sympy

from symbp.formulas.layout import _ATOM
from symbp.formulas.text import TextPrinter
from symbp.formulas.vocabulary import _SUM_ALL, _SUM_BATCH, Permute

_GREEK = {"δ": r"\delta", "σ": r"\sigma", "θ": r"\theta", "ε": r"\varepsilon", "∂": r"\partial",
          "μ": r"\mu"}  # fmt: skip


class LatexPrinter(TextPrinter):
    """The same layout as ``TextPrinter`` in LaTeX: ``\\delta_{2} \\odot``, ``W_{1}^{\\top}``."""

    printmethod = "_symbp_latex"
    times_hadamard, times_scalar, matmul, minus, neg = (
        r" \odot ",
        r" \cdot ",
        r" \cdot ",
        " - ",
        "-",
    )
    transpose_mark, ones = r"^{\top}", r"\mathbf{1}"
    le, ge, ne, mod = r"\leq", r"\geq", r"\neq", r" \bmod "
    frac_delimits = True
    _which = 1

    def paren(self, s: str) -> str:
        return rf"\left({s}\right)"

    def frac(self, num: str, den: str, den_expr: sympy.Expr) -> str:
        return rf"\frac{{{num}}}{{{den}}}"

    def power(self, base: str, exp: sympy.Expr) -> str:
        return f"{{{base}}}^{{{self._print(exp)}}}"

    def sqrt(self, arg: sympy.Expr) -> str:
        return rf"\sqrt{{{self._print(arg)}}}"

    def call(self, name: str, args: str) -> str:
        return rf"{name}\left({args}\right)"

    def sum_sign(self, kind: int, axes: tuple[int, ...]) -> str:
        if kind == _SUM_ALL:
            return r"\sum"
        if kind == _SUM_BATCH:
            return r"\sum_{\text{batch}}"
        return r"\sum_{\text{dim }" + ",".join(map(str, axes)) + "}"

    def symbol(self, name: str) -> str:
        return latex_name(name)

    def indicator(self, cond: str) -> str:
        return rf"\left[{cond}\right]"

    def cases(self, rows: list[tuple[str, str | None]]) -> str:
        otherwise = r"\text{otherwise}"
        shown = [f"{v} & {c if c is not None else otherwise}" for v, c in rows]
        return r"\begin{cases}" + r" \\ ".join(shown) + r"\end{cases}"

    def emptyPrinter(self, expr: Any) -> str:
        return sympy.latex(expr)

    def _print_Abs(self, e: sympy.Abs) -> str:
        return rf"\left|{self._print(e.args[0])}\right|"

    def _print_Permute(self, e: Permute) -> str:
        a, perm = e.args
        if len(perm) == 2:
            return "{" + self.group(a, _ATOM) + "}" + self.transpose_mark
        return super()._print_Permute(e)

    def index_name(self, s: sympy.Symbol) -> str:
        return s.name.replace("′", "'")

    def bigop(self, op: str, names: Sequence[sympy.Symbol]) -> str:
        sign = {"sum": r"\sum", "max": r"\max", "argmax": r"\operatorname{argmax}"}[op]
        space = r"\, " if op == "argmax" else " "  # an operatorname's limits sit beside it
        return sign + "_{" + ",".join(self.index_name(n) for n in names) + "}" + space

    def running(
        self, op: str, var: sympy.Symbol, reverse: bool, limit: sympy.Expr, but: Any = None
    ) -> str:
        sign = {"sum": r"\sum", "prod": r"\prod"}[op]
        name = self.index_name(var)
        out = f"{name} {self.ge if reverse else self.le} {self.index(limit)}"
        if but is not None:
            out += f", {name} {self.ne} {self.index(but)}"
        return f"{sign}_{{{out}}} "

    def mean(self, body: str, divisor: str) -> str:
        return rf"\frac{{1}}{{{divisor}}} {body}"

    def indexed_name(self, name: str, sub: str) -> str:
        if name.startswith("∂E/∂"):
            return rf"\frac{{\partial E}}{{\partial {latex_name(name[4:])}{sub}}}"
        return latex_name(name) + sub


def latex_name(name: str) -> str:
    """LaTeX for symbp's symbol names: W1 -> W_{1}, δ2 -> \\delta_{2}, h1_2 -> h_{1,2}; a
    loop's h_{t−1} -> h_{t-1}, a^i_t -> a^{i}_{t}, δc_{t+1} -> \\delta c_{t+1}; a recurrent
    weight W_hh1 -> W_{hh,1}."""
    if name.startswith("∂E/∂"):
        return rf"\frac{{\partial E}}{{\partial {latex_name(name[4:])}}}"
    if name.startswith("x\u0302"):  # a normalised input x̂2
        return r"\hat{x}" + latex_name("x" + name[2:])[1:]
    m = re.fullmatch(r"([^\W\d_]+)(\d*)(?:_(\d+))?(?:\[([\d,]+)\])?(′*)", name)
    if m is not None:
        base, digits, sub2, bracket, primes = m.groups()
        subs = ",".join(s for s in (digits, sub2, bracket) if s)
        return _base(base) + (f"_{{{subs}}}" if subs else "") + "'" * len(primes)
    m = re.fullmatch(r"([^\W\d_]+)(′*)(?:\^([^\W_]+′*))?(?:_(t|\{t[−+]\d+\}))?", name)
    if m is not None:
        base, primes, sup, sub = m.groups()
        out = _base(base) + "'" * len(primes)
        out += f"^{{{sup.replace('′', chr(39))}}}" if sup else ""
        if sub:
            out += "_{" + sub.strip("{}").replace("−", "-") + "}"
        return out
    m = re.fullmatch(r"([^\W\d_]+)_([a-z]+)(\d*)((?:_l\d+)?r?)(′*)", name)
    if m is not None:
        base, which, digits, more, primes = m.groups()
        subs = ",".join(s for s in (which, digits, more.strip("_")) if s)
        return f"{_base(base)}_{{{subs}}}" + "'" * len(primes)
    return rf"\mathrm{{{name}}}"


def _base(base: str) -> str:
    """A name's letters: σ -> \\sigma, δc -> \\delta c, hc -> \\mathrm{hc} (SymPy's)."""
    if base in _GREEK:
        return _GREEK[base]
    if base[0] in _GREEK and len(base) > 1:
        return f"{_GREEK[base[0]]} {_base(base[1:])}"
    return sympy.latex(sympy.Symbol(base)) if len(base) > 1 else base


def to_latex(expr: sympy.Expr, hadamard: bool = True, rank: Callable | None = None) -> str:
    """Print a formula as LaTeX (\\odot for elementwise products unless ``hadamard=False``)."""
    return LatexPrinter({"hadamard": hadamard, "rank": rank}).doprint(expr)
