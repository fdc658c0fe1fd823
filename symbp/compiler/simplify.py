"""Purposeful simplification: passes from a program (its output nodes) to a program.

What happens where:

- *CSE* is free: nodes are interned, so equal subgraphs are one node, across forward and
  backward alike.
- *Constant folding, x*1, x+0, dead code* happen as nodes are built (``ops.ew`` folds
  constants into formulas; a program is only what its outputs reach).
- ``fuse_elementwise`` inlines every single-use elementwise node into its reader, so a chain
  of elementwise ops is one formula: one loop later, one textbook expression now.
- ``RULES`` are graph rewrites, one ``(op, fn)`` per line; ``STABLE`` are formula rewrites into
  numerically stable forms. Neither is a blanket ``sympy.simplify``: that turns sigmoid' into
  1/(4*cosh(x/2)**2), slower and no clearer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sympy

from symbp.compiler import scalar
from symbp.compiler.ir import Node, consumers, toposort
from symbp.compiler.ops import _tsym, cat, const, ew, make, matmul, sum_, transpose, xsym

# ---------------------------------------------------------------- formula rewrites


def _log_of(pred: Callable[[sympy.Expr], bool]) -> Callable[[sympy.Expr], bool]:
    return lambda e: isinstance(e, sympy.log) and pred(e.args[0])


def _one_minus(e: sympy.Expr) -> sympy.Expr | None:
    """w when e is 1 - w, else None."""
    if e.is_Add and sympy.S.One in e.args:
        return -(e - 1)
    return None


# (matches, replacement): each rewrites log of something into a form that cannot overflow.
STABLE: list[tuple[Callable[[sympy.Expr], bool], Callable[[sympy.Expr], sympy.Expr]]] = [
    # log(sigmoid(u)) = -softplus(-u)
    (
        _log_of(lambda a: isinstance(a, scalar.sigmoid)),
        lambda e: -scalar.softplus(-e.args[0].args[0]),
    ),
    # log(1 - sigmoid(u)) = -softplus(u)
    (
        _log_of(lambda a: isinstance(_one_minus(a), scalar.sigmoid)),
        lambda e: -scalar.softplus(_one_minus(e.args[0]).args[0]),  # type: ignore[union-attr]
    ),
    # log(1 + exp(u)) = softplus(u)
    (
        _log_of(lambda a: a.is_Add and sympy.S.One in a.args and isinstance(a - 1, sympy.exp)),
        lambda e: scalar.softplus((e.args[0] - 1).args[0]),
    ),
    # log(exp(u)) = u
    (_log_of(lambda a: isinstance(a, sympy.exp)), lambda e: e.args[0].args[0]),
]


def stable_forms(expr: sympy.Expr) -> sympy.Expr:
    for matches, fn in STABLE:
        expr = expr.replace(matches, fn)
    return expr


# ---------------------------------------------------------------- graph rewrites


def _stable_ew(n: Node) -> Node | None:
    expr = stable_forms(n.arg.expr)
    return None if expr == n.arg.expr else ew(expr, n.src, n.arg.label, n.shape, n.dtype)


def _reshape_of_keepdim_sum(n: Node) -> Node | None:
    # reshape(sum(x, keepdim=True)) to the no-keepdim shape is sum(x, keepdim=False)
    (x,) = n.src
    if x.op == "sum" and x.arg[1]:
        plain = sum_(x.src[0], x.arg[0], keepdim=False)
        return plain if plain.shape == n.shape else None
    return None


def _transpose_of_matmul(n: Node) -> Node | None:
    # (a @ b).T = b.T @ a.T: transposes then fold into the BLAS call's flags
    (x,) = n.src
    if x.op == "matmul" and n.arg == (1, 0):
        a, b = x.src
        return matmul(transpose(b, (1, 0)), transpose(a, (1, 0)))
    return None


def _sum_of_onehot(n: Node) -> Node | None:
    # Summed over its class axis, f(onehot) is f(1) + (C - 1) f(0): one hot entry per row.
    (x,) = n.src
    axes = n.arg[0]
    hot = x if x.op == "onehot" else x.src[0] if x.op == "ew" and len(x.src) == 1 else None
    if hot is None or hot.op != "onehot" or axes != (x.ndim - 1,):
        return None
    f = (lambda v: v) if x is hot else (lambda v: x.arg.expr.xreplace({xsym(0): v}))
    value = f(sympy.S.One) + (hot.shape[-1] - 1) * f(sympy.S.Zero)
    return const(value, n.shape, n.dtype)


def _sum_of_placements(n: Node) -> Node | None:
    # x0 + x1 + ... of cotangents placed (slice_grad) into boxes that tile one axis of one
    # shape, as the adjoints of an LSTM's gate slices are: their concatenation along it, with
    # no zero fill and no sum (each entry written once instead of once per term)
    k = len(n.src)
    if k < 2 or any(s.op != "slice_grad" for s in n.src):
        return None
    if n.arg.expr != sympy.Add(*(xsym(i) for i in range(k))):
        return None
    shape = n.shape
    axis = None
    for s in n.src:
        box, into = s.arg
        if tuple(into) != tuple(shape) or s.dtype != n.dtype:
            return None
        for d, a in enumerate(box):
            if a.start == 0 and a.size == shape[d] and a.step == 1:
                continue
            if axis not in (None, d) or a.step != 1 or not isinstance(a.start, int):
                return None
            axis = d
    if axis is None:
        return None
    pieces = sorted(n.src, key=lambda s: s.arg[0][axis].start)
    end = 0
    for s in pieces:  # contiguous, from 0 to the end of the axis
        if s.arg[0][axis].start != end:
            return None
        end = s.arg[0][axis].start + s.arg[0][axis].size
    if end != shape[axis]:
        return None
    return cat([s.src[0] for s in pieces], axis)


RULES: list[tuple[str, Callable[[Node], Node | None]]] = [
    ("ew", _stable_ew),
    ("sum", _sum_of_onehot),
    ("reshape", _reshape_of_keepdim_sum),
    ("transpose", _transpose_of_matmul),
]


# Rewrites of the lowering alone: the formulas print the adjoint as derived (each gate's δ
# placed into its slice), the generated code writes the concatenation.
LOWERING: list[tuple[str, Callable[[Node], Node | None]]] = [
    ("ew", _sum_of_placements),
]


def lowered(outputs: Sequence[Node]) -> list[Node]:
    """``outputs`` with the lowering's rewrites (``LOWERING``) applied."""
    return rewrite(outputs, LOWERING)


def rebuild(n: Node, src: tuple[Node, ...]) -> Node:
    """``n`` over the sources ``src`` (itself when they are its own)."""
    if src == n.src:
        return n
    if n.op == "ew":  # through the builder, so constants that appeared fold in
        return ew(n.arg.expr, src, n.arg.label, n.shape, n.dtype)
    return Node(n.op, src, n.arg, n.shape, n.dtype)


def rewrite(outputs: Sequence[Node], rules=RULES) -> list[Node]:
    """Apply ``rules`` bottom-up, each node until none fires (rules build through the
    folding builders, so what they build needs no second pass)."""
    memo: dict[Node, Node] = {}
    for n in toposort(outputs):
        new = rebuild(n, tuple(memo[s] for s in n.src))
        for _ in range(100):
            for op, fn in rules:
                if new.op == op and (r := fn(new)) is not None:
                    new = r
                    break
            else:
                break
        memo[n] = new
    return [memo[o] for o in outputs]


def substitute(outputs: Sequence[Node], mapping: dict[Node, Node]) -> list[Node]:
    """``outputs`` rebuilt with each node of ``mapping`` replaced by its value."""
    memo: dict[Node, Node] = dict(mapping)
    for n in toposort(outputs, known=mapping):
        if n not in memo:
            memo[n] = rebuild(n, tuple(memo[s] for s in n.src))
    return [memo[o] for o in outputs]


def fuse_elementwise(
    outputs: Sequence[Node], keep: Callable[[Node], bool] | None = None
) -> list[Node]:
    """Inline each elementwise node read only by one elementwise node into that reader
    (but the nodes ``keep`` says to keep as they are)."""
    order = toposort(outputs)
    users = consumers(order)
    kept = set(outputs)
    memo: dict[Node, Node] = {}
    for n in order:
        src = [memo[s] for s in n.src]
        if n.op != "ew":
            memo[n] = rebuild(n, tuple(src))
            continue
        sub: dict[sympy.Symbol, sympy.Expr] = {}
        flat: list[Node] = []
        for i, (old, new) in enumerate(zip(n.src, src)):
            inline = (
                new.op == "ew"
                and old not in kept
                and all(u is n for u in users[old])
                and not (keep is not None and keep(old))
            )
            if inline:
                base = len(flat)
                sub[xsym(i)] = new.arg.expr.xreplace(
                    {xsym(j): _tsym(base + j) for j in range(len(new.src))}
                )
                flat.extend(new.src)
            else:
                sub[xsym(i)] = _tsym(len(flat))
                flat.append(new)
        expr = n.arg.expr.xreplace(sub).xreplace({_tsym(k): xsym(k) for k in range(len(flat))})
        label = n.arg.label if len(flat) == len(src) else ""
        memo[n] = ew(expr, flat, label, n.shape, n.dtype)
    return [memo[o] for o in outputs]


def simplify(outputs: Sequence[Node], keep: Callable[[Node], bool] | None = None) -> list[Node]:
    """The simplification pipeline, in order (``keep``: nodes not to fuse into a reader)."""
    outputs = rewrite(outputs)
    outputs = fuse_elementwise(outputs, keep)
    return rewrite(outputs)  # fused formulas may now show a stable form (log of sigmoid)


__all__ = [
    "LOWERING", "RULES", "STABLE", "fuse_elementwise", "lowered", "make", "rebuild", "rewrite",
    "simplify", "substitute",
]  # fmt: skip
