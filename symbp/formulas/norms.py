"""Normalisations in the formulas (LayerNorm and kin): the statistics are named, ``μ2 =
mean(z1)``, ``σ2 = √(mean((z1 − μ2)²) + 1e−05)``, ``x̂2 = (z1 − μ2)/σ2``, and the error
signal through the normalisation is brought to its closed form

    δ1 = (g − mean(g) − x̂2 ⊙ mean(g ⊙ x̂2))/σ2,    g = γ ⊙ δy.

Nothing is differentiated again: the derived program's δs are rewritten by identities only.
The centred input is σ ⊙ x̂; a sum along the normalised axes is linear, takes out what is
constant along them (σ, a sum kept in its dims), and is zero for x̂ (the centred input sums
to zero); a δ read only by the next one is substituted into it; a sum divided by its count
prints as a mean. ``find`` recognises the normalisation in the traced forward graph: a node
minus its mean, divided by the root of its centred mean square plus ε.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy

from symbp.compiler.ir import Node, consumers
from symbp.compiler.ops import xsym
from symbp.formulas.text import FUNCTIONS, TextPrinter
from symbp.formulas.tidy import _bottom_up, tidy
from symbp.formulas.vocabulary import (
    _SUM_BATCH,
    TENSOR_NUMPY,
    TENSOR_SHAPES,
    Broadcast,
    Equation,
    Reshape,
    SumOver,
    TensorOp,
    _axes,
    _reduced,
    shape_of,
)


class Mean(TensorOp):
    """The mean along ``axes``; args (a, axes, keepdim): a sum divided by its count."""

    nargs = 3


TENSOR_NUMPY["Mean"] = lambda a, axes, keepdim: np.mean(a, axis=_axes(axes), keepdims=bool(keepdim))
TENSOR_SHAPES["Mean"] = _reduced
FUNCTIONS["Mean"] = ("mean", r"\operatorname{mean}")


def _print_mean(self: TextPrinter, e: Mean) -> str:
    return self._print_Function(e)


TextPrinter._print_Mean = _print_mean  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Norm:
    """One normalisation of ``x`` along ``axes`` (``count`` entries each): its nodes."""

    x: Node
    axes: tuple[int, ...]
    count: int
    mean: Node  # μ
    centred: Node  # x − μ
    std: Node  # σ = √(mean((x − μ)²) + ε)
    xhat: Node  # (x − μ)/σ
    out: Node  # x̂ ⊙ γ + β (or x̂ itself): the normalisation's output


def _is(n: Node, expr: sympy.Expr) -> bool:
    return n.op == "ew" and n.arg.expr == expr


def _mean_of(n: Node) -> tuple[Node, tuple[int, ...], int] | None:
    """(x, axes, count) where ``n`` is the mean of x along axes, kept in its dims."""
    if n.op != "ew" or len(n.src) != 1 or n.src[0].op != "sum":
        return None
    s = n.src[0]
    axes, keep = s.arg
    x = s.src[0]
    sizes = [x.shape[a] for a in axes]
    if not keep or not all(isinstance(d, int) for d in sizes):
        return None
    count = int(np.prod(sizes))
    return (x, tuple(axes), count) if _is(n, xsym(0) / count) else None


def _broadcasts(n: Node, of: Node) -> bool:
    return n is of or (n.op == "expand" and n.src[0] is of)


def find(order: Sequence[Node]) -> list[Norm]:
    """The normalisations of a traced forward graph (``functional.layer_norm``'s ops)."""
    users = consumers(order)
    out = []
    for m in order:
        found = _mean_of(m)
        if found is None:
            continue
        x, axes, count = found
        for c in users.get(x, []):
            if not (_is(c, xsym(0) - xsym(1)) and c.src[0] is x and _broadcasts(c.src[1], m)):
                continue
            norm = _rest(c, x, axes, count, m, users)
            if norm is not None:
                out.append(norm)
    return out


def _rest(c: Node, x: Node, axes: tuple, count: int, m: Node, users: Mapping) -> Norm | None:
    """The variance, σ and x̂ of the centred ``c``, if they are there."""
    for sq in users.get(c, []):
        if not (_is(sq, xsym(0) ** 2) or (_is(sq, xsym(0) * xsym(1)) and sq.src == (c, c))):
            continue
        for s in users.get(sq, []):
            for var in users.get(s, []):
                if _mean_of(var) != (sq, axes, count):
                    continue
                for plus in users.get(var, []):
                    eps = plus.arg.expr - xsym(0) if plus.op == "ew" else None
                    if eps is None or not (eps.is_Number and eps > 0):
                        continue
                    for std in users.get(plus, []):
                        if not _is(std, sympy.sqrt(xsym(0))):
                            continue
                        for xhat in users.get(c, []):
                            div = _is(xhat, xsym(0) / xsym(1))
                            if div and xhat.src[0] is c and _broadcasts(xhat.src[1], std):
                                return Norm(x, axes, count, m, c, std, xhat,
                                            _affine_of(xhat, users))  # fmt: skip
    return None


def _affine_of(xhat: Node, users: Mapping) -> Node:
    """x̂ ⊙ γ + β: the node after x̂'s scale and shift by parameters, where they are."""
    n = xhat
    for op in (xsym(0) * xsym(1), xsym(0) + xsym(1)):
        nxt = [u for u in users.get(n, []) if _is(u, op) and u.src[0] is n]
        if len(users.get(n, [])) != 1 or len(nxt) != 1:
            break
        n = nxt[0]
    return n


# -- the closed form


@dataclass
class Along:
    """What is known along some ``axes`` of ``ndim``-dim tensors: rewrites (``subs``: the
    centred input is σ ⊙ x̂, a softmax's exp is Z ⊙ P), tensors that sum to zero (x̂) or to
    one (P) along them, and whether a sum divided by its ``count`` prints as a mean.
    ``names`` mark the equations it touches; ``vanish`` must be gone after the rewrite
    (else the equation keeps its computed form)."""

    axes: tuple[int, ...]
    ndim: int
    count: int
    subs: dict[sympy.Expr, sympy.Expr]
    names: set[sympy.Symbol]
    zero: set[sympy.Symbol] = field(default_factory=set)
    one: set[sympy.Symbol] = field(default_factory=set)
    mean: bool = False
    vanish: set[sympy.Symbol] = field(default_factory=set)


def norm_along(norm: Norm, symbols: tuple, centred: sympy.Expr) -> Along:
    """A normalisation's: its centred input is σ ⊙ x̂, and x̂ sums to zero."""
    _, sigma, xhat = symbols
    shape = sympy.Tuple(*norm.x.shape)
    subs = {centred: Broadcast(sigma, shape) * xhat}
    return Along(norm.axes, len(norm.x.shape), norm.count, subs, set(symbols), {xhat},
                 mean=True)  # fmt: skip


@dataclass
class Closed:
    """The rewrites of one Formulas' closed forms (normalisations, softmaxes: ``alongs``);
    ``shapes`` the named tensors' shapes, ``nameback`` the forward's definitions."""

    alongs: list[Along]
    shapes: dict[sympy.Symbol, tuple]
    nameback: Any = None

    def involves(self, expr: sympy.Expr) -> bool:
        names = set().union(*(a.names for a in self.alongs))
        return bool(expr.free_symbols & names) or any(
            expr.has(k) for a in self.alongs for k in a.subs
        )

    def defines(self, sym: sympy.Symbol) -> bool:
        return any(sym in a.names for a in self.alongs)

    def rewrite(self, expr: sympy.Expr) -> sympy.Expr:
        """The rewrites of ``subs``, then the sums along the known axes reduced."""
        original = expr
        for along in self.alongs:
            expr = expr.xreplace(along.subs)
        expr = tidy(expr)
        if self.nameback is not None:
            expr = self.nameback(expr)
        for _ in range(4):  # each pass may take a sum apart that the next simplifies
            new = sympy.factor_terms(tidy(_bottom_up(expr, self._sum)))  # 1/Z·Z cancels
            if new == expr:
                break
            expr = new
        if expr.free_symbols & set().union(*(a.vanish for a in self.alongs)):
            return original
        return self.nameback(expr) if self.nameback is not None else expr

    def _along(self, e: SumOver) -> list[Along]:
        axes = _axes(e.args[1])
        return [a for a in self.alongs if a.axes == axes and e.args[2] == sympy.true]

    def _sum(self, e: sympy.Expr) -> sympy.Expr:
        if not isinstance(e, SumOver) or not (alongs := self._along(e)):
            return e
        axes, ndim = alongs[0].axes, alongs[0].ndim
        zero = set().union(*(a.zero for a in alongs))
        one = set().union(*(a.one for a in alongs))
        if e.args[0] == 0:
            return sympy.Integer(0)
        out = []
        for term in _terms(e.args[0], self.involves):
            const: list[sympy.Expr] = []
            rest: list[sympy.Expr] = []
            for f in sympy.Mul.make_args(term):
                (const if self._constant(f, axes, ndim) else rest).append(f)
            if len(rest) == 1 and rest[0] in zero:  # the centred input sums to zero
                continue
            if len(rest) == 1 and rest[0] in one:  # a softmax sums to one
                rest = []
                kept: sympy.Expr = sympy.Integer(1)
            elif rest:
                kept = e.func(sympy.Mul(*rest), *e.args[1:])
            else:
                kept = sympy.Integer(alongs[0].count)
            out.append(sympy.Mul(*(_unbroadcast(f) for f in const)) * kept)
        return sympy.Add(*out)

    def _constant(self, f: sympy.Expr, axes: tuple[int, ...], ndim: int) -> bool:
        """Whether ``f`` is the same all along ``axes`` (of an ``ndim``-dim tensor)."""
        if f.is_number:
            return True
        if f.is_Pow and f.exp.is_number:
            return self._constant(f.base, axes, ndim)
        if isinstance(f, Broadcast):
            f = f.args[0]
        if isinstance(f, (SumOver, Mean)) and f.args[2] == sympy.true:
            shape = shape_of(f, self.shapes)
        elif f.is_Symbol and f in self.shapes:
            shape = tuple(self.shapes[f])
        else:
            return False
        shape = (1,) * (ndim - len(shape)) + tuple(shape)
        return all(shape[a] == 1 for a in axes)

    def means(self, expr: sympy.Expr) -> sympy.Expr:
        """A sum along normalised axes divided by their count is their mean."""

        def one(e: sympy.Expr) -> sympy.Expr:
            if not e.is_Mul:
                return e
            coeff, rest = e.as_coeff_Mul()
            for f in sympy.Mul.make_args(rest):
                s = f.args[0] if isinstance(f, Broadcast) else f
                alongs = [a for a in self._along(s) if a.mean] if isinstance(s, SumOver) else []
                if alongs and (scaled := coeff * alongs[0].count).is_Integer:
                    mean = Mean(s.args[0], s.args[1], s.args[2])
                    shown = f.func(mean, *f.args[1:]) if isinstance(f, Broadcast) else mean
                    return scaled * (rest / f) * shown
            return e

        return _bottom_up(expr, one)


def _terms(x: sympy.Expr, involves: Any) -> list[sympy.Expr]:
    """The terms of ``x``; a product over a sum that ``involves`` the normalisation is
    distributed one level, (g − x̂·m)·c -> g·c, −x̂·m·c (a factor 1 − h² is left alone)."""
    if x.is_Add:
        return list(x.args)
    if x.is_Mul:
        for f in x.args:
            if f.is_Add and involves(f):
                rest = x / f
                return [rest * t for t in f.args]
    return [x]


def _unbroadcast(f: sympy.Expr) -> Any:
    """A factor taken out of a sum kept in its dims: its own shape, not the summand's."""
    if isinstance(f, Broadcast):
        return f.args[0]
    if f.is_Pow and isinstance(f.base, Broadcast):
        return f.base.args[0] ** f.exp
    return f


# -- in the formulas


def statistics(norms: Sequence[Norm], users: Mapping, groups: Mapping) -> dict[Node, tuple]:
    """The nodes a normalisation's statistics are named by: node -> (name, legend), the
    number that of its weight γ (μ2, σ2, x̂2 beside W2), or of its place among them."""
    out: dict[Node, tuple] = {}
    for k, norm in enumerate(norms):
        suffix = str(k + 1) if len(norms) > 1 else ""
        for u in users.get(norm.xhat, []):  # x̂ ⊙ γ: the weight's layer number
            for s in u.src:
                leaf = s
                while leaf.op in ("expand", "reshape"):
                    leaf = leaf.src[0]
                if leaf in groups:
                    suffix = groups[leaf]
        dims = ",".join(map(str, norm.axes))
        out[norm.mean] = (f"μ{suffix}", f"mean along dim {dims}")
        out[norm.std] = (f"σ{suffix}", f"standard deviation along dim {dims} (with ε)")
        out[norm.xhat] = (f"x̂{suffix}", "the normalised input")
    return out


def closed_forms(
    closed: Closed,
    eqs: list[Any],
    grads: list[Any],
    forward: bool = False,
    namers: Sequence[Any] = (),
) -> tuple[list[Any], list[Any]]:
    """The δs and gradients through normalisations and softmaxes in closed form: rewritten,
    each δ read by the next one alone substituted into it, what the closed form reads named
    (``namers``: δy, δP), the sums printed as means (only that, ``forward``)."""
    if not closed.alongs:
        return eqs, grads
    if forward:
        return [
            Equation(e.lhs, closed.means(e.expr))
            if isinstance(e, Equation) and (closed.involves(e.expr) or closed.defines(e.lhs))
            else e
            for e in eqs
        ], grads

    def touched(e: Any) -> bool:
        return isinstance(e, Equation) and closed.involves(e.expr)

    eqs = [Equation(e.lhs, closed.rewrite(e.expr)) if touched(e) else e for e in eqs]
    grads = [Equation(g.lhs, closed.rewrite(g.expr)) if touched(g) else g for g in grads]
    readers: dict[sympy.Symbol, list] = {}
    for e in [*eqs, *grads]:
        for s in e.expr.free_symbols if isinstance(e, Equation) else e.symbols():
            readers.setdefault(s, []).append(e)
    gone = set()
    for k, e in enumerate(eqs):
        if not touched(e) or len(readers.get(e.lhs, [])) != 1:
            continue
        (reader,) = readers[e.lhs]
        i = next((i for i, r in enumerate(eqs) if r is reader), None)
        if i is None or i < k:
            continue
        eqs[i] = Equation(reader.lhs, closed.rewrite(reader.expr.xreplace({e.lhs: e.expr})))
        readers.setdefault(reader.lhs, [])
        gone.add(k)
    eqs = [e for k, e in enumerate(eqs) if k not in gone]

    for namer in namers:
        eqs, grads = namer(closed, eqs, grads, touched)

    def shown(e: Any) -> Any:
        return Equation(e.lhs, closed.means(e.expr)) if touched(e) else e

    return [shown(e) for e in eqs], [shown(g) for g in grads]


def name_output_delta(name: Any) -> Any:
    """A namer (``closed_forms``) of δy, a normalisation's output's error signal, where the
    closed form reads it: what the gradient of the shift β sums over the batch (γ's: δy ⊙ x̂);
    ``name(k, taken)`` is the symbol of the k-th normalisation's."""
    return lambda closed, eqs, grads, touched: _name_output_delta(closed, eqs, grads, touched, name)


def _name_output_delta(
    closed: Closed, eqs: list, grads: list, touched: Any, name: Any
) -> tuple[list, list]:
    for k, along in enumerate(a for a in closed.alongs if a.mean):
        mine, xhat = along.names, next(iter(along.zero))
        for g in grads:
            e = g.expr.args[0] if isinstance(g.expr, Reshape) else g.expr
            if not (isinstance(e, SumOver) and int(e.args[3]) == _SUM_BATCH):
                continue
            dy = e.args[0]
            if dy.is_Atom or xhat in dy.free_symbols:
                continue
            readers = [i for i, r in enumerate(eqs) if touched(r) and r.expr.free_symbols & mine
                       and r.expr.subs(dy, 0) != r.expr]  # fmt: skip
            if not readers:
                continue
            sym = name(k, [r.lhs.name for r in eqs if isinstance(r, Equation)])
            eqs = [Equation(r.lhs, r.expr.subs(dy, sym)) if touched(r) else r for r in eqs]
            grads = [Equation(r.lhs, r.expr.subs(dy, sym)) for r in grads]
            eqs.insert(readers[0], Equation(sym, dy))
            break
    return eqs, grads


def output_delta(namer: Any, norms: Sequence[Norm], stats: Mapping[Node, tuple]) -> Any:
    """A namer of δy, the k-th normalisation's output's error signal: δ2 beside its W2."""
    from symbp.formulas.layout import _RANK_DELTA
    from symbp.formulas.naming import _symbol, _Tensor

    def name(k: int, taken: list[str]) -> sympy.Symbol:
        norm = norms[k]
        out = namer.tensors.get(norm.out)
        base = "δ" + stats[norm.mean][0][1:]
        while base in taken:
            base += "′"
        sym = _symbol(base)
        about = f"∂E/∂{out.symbol.name}, error signal" if out else "error signal"
        key = Node("input", (), f"formulas.norm:{base}", norm.out.shape, norm.out.dtype)
        namer.tensors[key] = _Tensor(sym, key, about, _RANK_DELTA + 500)
        return sym

    return name
