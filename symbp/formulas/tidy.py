"""Tidying rewrites: the tensor-level expressions made to read as a textbook writes them.

``TIDY`` rules, one (type, rewrite) per line, run bottom-up to a fixpoint: a broadcast moves
onto tensors, a number moves out of a Σ, exp(a)/Σ exp(a) becomes softmax(a). ``_NameBack``
replaces definitions by their names (σ(h·W2ᵀ + b2) inside a δ becomes o).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import sympy

from symbp.compiler.ir import B
from symbp.formulas.vocabulary import Broadcast, LogSoftmax, MaxOver, Softmax, SumOver, TensorOp


def _is_tensor(e: sympy.Expr) -> bool:
    return bool(e.free_symbols - {B}) or e.has(TensorOp)


def _broadcast_inward(e: Broadcast) -> sympy.Expr | None:
    # Broadcast(f(a, b)) = f(Broadcast(a), Broadcast(b)) for elementwise f: moves the (silent)
    # broadcast onto tensors, so a 1/(5·Σ exp) computed per row reads as the textbook's.
    a, shape = e.args
    # (a Piecewise's args are (value, condition) pairs, not operands: where, clamp, masks)
    if isinstance(a, (TensorOp, sympy.Piecewise)) or not (
        a.is_Add or a.is_Mul or a.is_Pow or a.is_Function
    ):
        return None
    return a.func(*(Broadcast(x, shape) if _is_tensor(x) else x for x in a.args))


def _unshift(a: sympy.Expr, axes: sympy.Tuple) -> sympy.Expr:
    """u for u − max(u) along ``axes`` (the shift that keeps exp from overflowing), else a."""
    for term in sympy.Add.make_args(a):
        m = -term
        if isinstance(m, Broadcast):
            m = m.args[0]
        if isinstance(m, MaxOver) and m.args[1] == axes and a - term == m.args[0]:
            return m.args[0]
    return a


def _sum_of_exp(d: sympy.Expr) -> tuple[sympy.Expr, sympy.Tuple] | None:
    """(a, axes) when d is Σ_axes exp(a) kept in its dims (maybe broadcast back)."""
    if isinstance(d, Broadcast):
        d = d.args[0]
    if isinstance(d, SumOver) and d.args[2] == sympy.true and isinstance(d.args[0], sympy.exp):
        return d.args[0].args[0], d.args[1]
    return None


def _softmax(e: sympy.Mul) -> sympy.Expr | None:
    # exp(a) / Σ exp(a) = softmax(a), and softmax ignores a shift constant along its axes.
    for f in e.args:
        if f.is_Pow and f.exp == -1 and (found := _sum_of_exp(f.base)) is not None:
            a, axes = found
            rest = list(e.args)
            if sympy.exp(a) in rest:
                rest.remove(f)
                rest.remove(sympy.exp(a))
                return sympy.Mul(*rest, Softmax(_unshift(a, axes), axes))
    return None


def _sum_of_scaled(e: SumOver) -> sympy.Expr | None:
    # Σ (c·a) = c·Σ a for a number c: the mean's 1/N and a loss's sign move out of the sum.
    coeff, rest = e.args[0].as_content_primitive()
    if rest.is_Mul:
        sign, rest = rest.as_coeff_Mul()
        coeff *= sign
    if coeff == 1:
        return None
    return coeff * e.func(rest, *e.args[1:])


def _log_softmax(e: sympy.Add) -> sympy.Expr | None:
    # a − log Σ exp(a) = log_softmax(a)
    terms = Counter(e.args)
    for t in e.args:
        inner = -t
        if isinstance(inner, sympy.log) and (found := _sum_of_exp(inner.args[0])) is not None:
            a, axes = found
            need = Counter(sympy.Add.make_args(a))
            rest = terms - Counter([t])
            if all(rest[k] >= v for k, v in need.items()):
                rest -= need
                return sympy.Add(*rest.elements(), LogSoftmax(_unshift(a, axes), axes))
    return None


# (type, rewrite): each returns the rewritten node or None. Applied bottom-up to a fixpoint.
TIDY: list[tuple[type, Callable[[Any], sympy.Expr | None]]] = [
    (Broadcast, _broadcast_inward),
    (SumOver, _sum_of_scaled),
    (sympy.Mul, _softmax),
    (sympy.Add, _log_softmax),
]


def _bottom_up(expr: sympy.Expr, fn: Callable[[sympy.Expr], sympy.Expr]) -> sympy.Expr:
    """Rebuild ``expr`` from its leaves up, applying ``fn`` to every rebuilt node."""
    memo: dict[sympy.Basic, sympy.Expr] = {}

    def walk(e: sympy.Basic) -> Any:
        if e in memo:
            return memo[e]
        if e.is_Atom or isinstance(e, (sympy.Tuple, sympy.logic.boolalg.BooleanAtom)):
            out = e
        else:
            args = tuple(walk(a) for a in e.args)
            out = fn(e.func(*args) if args != e.args else e)
        memo[e] = out
        return out

    return walk(expr)


def tidy(expr: sympy.Expr) -> sympy.Expr:
    """Apply the ``TIDY`` rewrites until none fires."""

    def step(e: sympy.Expr) -> sympy.Expr:
        for _ in range(20):  # each rule makes the expression smaller or moves a broadcast
            for cls, rule in TIDY:
                new: sympy.Expr | None = rule(e) if isinstance(e, cls) else None
                if new is not None:
                    e = tidy(new)  # the rewrite may enable rules below the top again
                    break
            else:
                return e
        return e

    return _bottom_up(expr, step)


class _NameBack:
    """Replace definitions by their names: σ(z2) -> o, w1·x1 + w2·x2 + b1 -> z1_1.

    Works bottom-up, so names nest (z2 then σ(z2) -> o); a definition that is a sum also
    matches inside a larger sum (z1 + x -> z1 + x when z1 = x·W1ᵀ + b1 is part of it).
    """

    def __init__(self, products: bool = True) -> None:
        self.exact: dict[sympy.Expr, sympy.Symbol] = {}
        self.named_products = products  # x̂ in c·γ/σ (not h_t in δh_t ⊙ o_t ⊙ tanh(c_t))
        self.sums: list[tuple[Counter, sympy.Symbol]] = []
        self.powers: dict[sympy.Expr, tuple[sympy.Expr, sympy.Symbol]] = {}
        self.products: list[tuple[Counter, sympy.Symbol]] = []

    def add(self, definition: sympy.Expr, name: sympy.Symbol) -> None:
        if definition.is_Atom:
            return
        self.exact.setdefault(definition, name)
        if definition.is_Add:
            self.sums.append((Counter(definition.args), name))
        if definition.is_Pow and definition.exp.is_Rational:  # σ = √v names 1/√v as 1/σ
            self.powers.setdefault(definition.base, (definition.exp, name))
        if self.named_products and definition.is_Mul and definition.as_coeff_Mul()[0] == 1:
            self.products.append((Counter(definition.args), name))

    def _one(self, e: sympy.Expr) -> sympy.Expr:
        if e in self.exact:
            return self.exact[e]
        if e.is_Pow and e.base in self.powers and e.exp.is_Rational:
            exp, name = self.powers[e.base]
            return name ** (e.exp / exp)
        if e.is_Mul:
            factors = Counter(e.args)
            for need, name in self.products:
                if len(need) < len(factors) and all(factors[k] >= v for k, v in need.items()):
                    return sympy.Mul(*(factors - need).elements(), name)
        if not e.is_Add:
            return e
        # A sum may hold a definition scaled: −x·W1ᵀ − b1 = −z1, (h·W2ᵀ + b2 − t)/4 ...
        c, prim = e.primitive()
        for scale, form in ((1, e), (c, prim), (-c, -prim)):
            if form in self.exact:
                return scale * self.exact[form]
            terms = Counter(sympy.Add.make_args(form))
            for need, name in self.sums:
                if len(need) < len(terms) and all(terms[k] >= v for k, v in need.items()):
                    return scale * sympy.Add(*(terms - need).elements(), name)
        return e

    def __call__(self, expr: sympy.Expr) -> sympy.Expr:
        if not self.exact:
            return expr
        return _bottom_up(expr, self._one)
