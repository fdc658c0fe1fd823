"""Softmaxes in the formulas (attention's): the scores and the weights are named, ``S =
q·kᵀ``, ``P = softmax(S/√d)``, and the error signal through the softmax is brought to its
closed form

    δS = P ⊙ (δP − Σ_dim2 (δP ⊙ P))/√d,    δP = ∂E/∂P.

As for the normalisations (``norms``), only identities rewrite the derived program's δ: a
softmax's exp is its row sum times P (``Along.subs``; the row sum must then cancel), a sum
along the softmax's axis takes out what is constant along it and is one for P. ``find``
recognises ``tensor.softmax``'s ops in the traced forward graph: exp(s − max s) divided by
its sum along an axis.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy

from symbp.compiler.ir import Labels, Node, consumers
from symbp.compiler.ops import xsym
from symbp.formulas.layout import _RANK_DELTA
from symbp.formulas.naming import _symbol, _Tensor
from symbp.formulas.norms import Along, Closed, Norm, norm_along
from symbp.formulas.vocabulary import Broadcast, Equation, SumOver, _axes


@dataclass(frozen=True)
class Softmax:
    """One softmax along ``axes``: its nodes, and the scores' scale (q·kᵀ/√d: 1/√d)."""

    axes: tuple[int, ...]
    count: int
    exp: Node  # exp(s − max s)
    total: Node  # its sum along the axes, kept in its dims
    out: Node  # P
    scores: Node  # S: the product the softmax's input scales (or the input)
    scale: sympy.Expr


def find(order: Sequence[Node]) -> list[Softmax]:
    """The softmaxes of a traced forward graph whose output is read by a product (attention
    weights): a cross-entropy's log-softmax has a closed form of its own."""
    users = consumers(order)
    out = []
    for p in order:
        if not (p.op == "ew" and p.arg.expr == xsym(0) / xsym(1) and p.src[1].op == "expand"):
            continue
        e, total = p.src[0], p.src[1].src[0]
        if not (total.op == "sum" and total.src[0] is e and total.arg[1]):
            continue
        if not (e.op == "ew" and isinstance(e.arg.expr, sympy.exp) and len(e.src) == 1):
            continue
        if not any(u.op in ("matmul", "bmm") for u in users.get(p, [])):
            continue
        axes = tuple(total.arg[0])
        sizes = [e.shape[a] for a in axes]
        if not all(isinstance(d, int) for d in sizes):
            continue
        scores, scale = _scores(e)
        out.append(Softmax(axes, int(np.prod(sizes)), e, total, p, scores, scale))
    return out


def _scores(e: Node) -> tuple[Node, sympy.Expr]:
    """The product the softmax's input scales, and the scale: S and 1/√d of S/√d."""
    s = e.src[0]
    if s.op == "ew" and s.arg.expr == xsym(0) - xsym(1) and len(s.src) == 2:
        s = s.src[0]  # the max shift
    expr = s.arg.expr if s.op == "ew" else None
    if expr is not None and len(s.src) == 1 and (expr / xsym(0)).is_number:
        return s.src[0], expr / xsym(0)
    return s, sympy.Integer(1)


def names(found: Sequence[Softmax], labels: Labels) -> dict[Node, tuple[str, str]]:
    """The names of the scores and weights: S, P (S1, P1 … for several); a layer's output
    (in ``labels``) keeps its layer's name."""
    out: dict[Node, tuple[str, str]] = {}
    for k, sm in enumerate(found):
        suffix = str(k + 1) if len(found) > 1 else ""
        dims = ",".join(map(str, sm.axes))
        if sm.out not in labels:
            out[sm.out] = (f"P{suffix}", f"attention weights: softmax along dim {dims}")
        if sm.scores.op in ("matmul", "bmm") and sm.scores not in labels:
            out[sm.scores] = (f"S{suffix}", "attention scores")
    return out


def along(
    sm: Softmax, env: Mapping[Node, sympy.Expr], shapes: dict[sympy.Symbol, tuple]
) -> Along | None:
    """The softmax's rewrites: exp(s − max s) = Z ⊙ P with Z its row sum, which must cancel."""
    p = env.get(sm.out)
    if p is None or not p.is_Symbol or sm.exp not in env or sm.total not in env:
        return None
    z = sympy.Dummy("Z", real=True)
    shapes[z] = sm.total.shape
    subs = {env[sm.total]: z, env[sm.exp]: Broadcast(z, sympy.Tuple(*sm.exp.shape)) * p}
    return Along(sm.axes, len(sm.exp.shape), sm.count, subs, {p}, one={p}, vanish={z})


def name_deltas(found: Sequence[Softmax], env: Mapping, namer: Any) -> Callable:
    """A namer (``norms.closed_forms``) of δP, the error signal at the weights, where the
    closed form reads it, and of δS, a δ that is the scores' own: scale·P ⊙ (δP − Σ δP ⊙ P)."""

    def run(closed: Closed, eqs: list, grads: list, touched: Any) -> tuple[list, list]:
        for k, sm in enumerate(found):
            p = env.get(sm.out)
            suffix = str(k + 1) if len(found) > 1 else ""
            for i, e in enumerate(eqs):
                if not (touched(e) and p is not None and p in e.expr.free_symbols):
                    continue
                dp = _reads(e.expr, p, sm.axes)
                if dp is None:
                    continue
                d_p = _new(namer, f"δP{suffix}", sm.out, "∂E/∂P, the weights' error signal")
                eqs = [Equation(r.lhs, r.expr.subs(dp, d_p)) if touched(r) else r for r in eqs]
                grads = [Equation(r.lhs, r.expr.subs(dp, d_p)) for r in grads]
                eqs.insert(i, Equation(d_p, dp))
                own = sm.scale * p * (d_p - _row_sum(eqs[i + 1].expr, d_p * p, sm.axes))
                if sympy.expand(eqs[i + 1].expr - own) == 0 and sm.scores in env:
                    old = eqs[i + 1].lhs
                    about = f"∂E/∂{env[sm.scores]}, the scores' error signal"
                    d_s = _new(namer, f"δS{suffix}", sm.scores, about)
                    eqs = [Equation(r.lhs.xreplace({old: d_s}), r.expr.xreplace({old: d_s}))
                           for r in eqs]  # fmt: skip
                    grads = [Equation(r.lhs, r.expr.xreplace({old: d_s})) for r in grads]
                break
        return eqs, grads

    return run


def _reads(expr: sympy.Expr, p: sympy.Symbol, axes: tuple) -> sympy.Expr | None:
    """δP where ``expr`` holds Σ_axes (δP ⊙ P): the sum's other factors, if not a name."""
    for s in expr.atoms(SumOver):
        if _axes(s.args[1]) == axes and s.args[0].is_Mul and p in s.args[0].args:
            rest = s.args[0] / p
            return None if rest.is_Symbol else rest
    return None


def _row_sum(expr: sympy.Expr, summand: sympy.Expr, axes: tuple) -> sympy.Expr:
    """Σ_axes ``summand`` as ``expr`` holds it (broadcast back, or not); 0 if it holds none."""
    for s in expr.atoms(SumOver):
        if _axes(s.args[1]) == axes and s.args[0] == summand:
            wide = [b for b in expr.atoms(Broadcast) if b.args[0] == s]
            return wide[0] if wide else s
    return sympy.Integer(0)


def _new(namer: Any, base: str, like: Node, about: str) -> sympy.Symbol:
    """A δ of the closed forms, in the legend."""
    name = namer._take(base)
    sym = _symbol(name)
    key = Node("input", (), f"formulas.softmax:{name}", like.shape, like.dtype)
    namer.tensors[key] = _Tensor(sym, key, about, _RANK_DELTA + 400)
    return sym


def closed(
    namer: Any,
    norms: Sequence[Norm],
    found: Sequence[Softmax],
    known: Mapping[Node, sympy.Expr],
    env: Mapping[Node, sympy.Expr],
    nameback: Any,
) -> Closed:
    """The rewrites of the normalisations' and softmaxes' closed forms, with the formulas
    ``env`` gives their nodes (else the forward's, ``known``)."""
    known = {**known, **{n: env[n] for n in known if n in env}}
    shapes = {t.symbol: t.node.shape for t in namer.tensors.values() if t.node}
    alongs = []
    for m in norms:
        trio = tuple(namer.symbol_of(n) for n in (m.mean, m.std, m.xhat))
        alongs.append(norm_along(m, trio, known[m.centred]))
    for sm in found:
        if sm.out in namer.tensors:
            known[sm.out] = namer.symbol_of(sm.out)
        if (a := along(sm, known, shapes)) is not None:
            alongs.append(a)
    return Closed(alongs, shapes, nameback)
