"""Symbolic reverse mode: the backward graph, built by the chain rule in the forward IR.

Walk the forward graph from the loss back to the parameters. Two kinds of rule apply:

- *Elementwise regions.* A chain (a DAG) of ``ew`` nodes whose intermediate results nobody
  else reads is fused into one SymPy expression ``E(y0, y1, ...)`` of the region's inputs,
  and each input's cotangent is ``ct * sympy.diff(E, yk)``: one ``ew`` node per input.
  Where the derivative contains ``E`` itself it reads the forward output instead
  (sigmoid' = out * (1 - out), exp' = out), which is how the textbook's δ falls out.
- *Structural ops* (matmul, sum, expand, reshape, max ...) apply their adjoint rule from the
  op table.

Cotangents reaching a node along several paths are summed. Work is per node, never per
tensor element: a 784-512-512-10 MLP derives as fast as a 2-2-2 one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sympy

from symbp.compiler.ir import Node, consumers, toposort
from symbp.compiler.ops import OPS, const, ew, xsym

_Y: list[sympy.Symbol] = []


def _ysym(i: int) -> sympy.Symbol:
    while len(_Y) <= i:
        _Y.append(sympy.Symbol(f"y{len(_Y)}", real=True))
    return _Y[i]


CT = sympy.Symbol("ct", real=True)  # the incoming cotangent in a derivative formula
OUT = sympy.Symbol("out", real=True)  # the region's forward output, reused by its derivative


class Region:
    """A fused elementwise region: its root, its inputs, and its formula in those inputs."""

    def __init__(self, root: Node, members: set[Node]):
        self.root = root
        self.inputs: list[Node] = []
        memo: dict[Node, sympy.Expr] = {}

        def build(n: Node) -> sympy.Expr:
            if n in memo:
                return memo[n]
            if n in members:
                e = n.arg.expr.xreplace({xsym(i): build(s) for i, s in enumerate(n.src)})
            else:
                e = _ysym(len(self.inputs))
                self.inputs.append(n)
            memo[n] = e
            return e

        self.expr = build(root)
        self.memo = memo  # each member node's expression, used to name intermediates

    def cotangents(self, ct: Node, needed: set[Node]) -> list[tuple[Node, Node]]:
        """(input, cotangent) for every input that needs one: ct * dE/dy, forward output reused."""
        out = []
        for k, x in enumerate(self.inputs):
            if x not in needed:
                continue
            d = sympy.diff(self.expr, _ysym(k))
            if d == 0:
                continue
            d = d.xreplace({self.expr: OUT})
            syms = [CT, OUT, *(_ysym(i) for i in range(len(self.inputs)))]
            expr = (CT * d).xreplace({s: xsym(i) for i, s in enumerate(syms)})
            out.append((x, ew(expr, [ct, self.root, *self.inputs], shape=x.shape)))
        return out


def regions(
    order: list[Node], needed: set[Node], keep: set[Node], roots: Callable[[Node], bool] | None
) -> dict[Node, Node]:
    """Map each needed ``ew`` node to the root of its fused region.

    A node joins its readers' region when every reader is an ``ew`` node of one same region;
    otherwise (read by a structural op, by two regions, kept as an output, or one of
    ``roots``) it is a root.
    """
    users = consumers(order)
    root: dict[Node, Node] = {}
    for n in reversed(order):
        if n.op != "ew" or n not in needed:
            continue
        us = users[n]
        readers = {root.get(u) for u in us}
        own = n in keep or (roots is not None and roots(n))
        if not own and us and all(u.op == "ew" for u in us) and len(readers) == 1:
            root[n] = readers.pop()  # type: ignore[assignment]
        else:
            root[n] = n
    return root


def vjp(
    outputs: Sequence[Node],
    cts: Sequence[Node],
    wrt: Sequence[Node],
    roots: Callable[[Node], bool] | None = None,
) -> list[Node | None]:
    """Cotangents of ``wrt`` given cotangents ``cts`` of ``outputs``; None where not reached.
    ``roots``: elementwise nodes to differentiate as regions of their own, so that the
    derivatives read their values (a loop body's activations: ``symbp.compiler.loops``)."""
    order = toposort(outputs)
    wrt_set = set(wrt)
    needed: set[Node] = set()
    for n in order:  # nodes through which a wrt leaf influences the outputs
        # (an integer or bool result carries no gradient: a comparison's mask is a constant
        # of the backward pass, as in PyTorch)
        differentiable = OPS[n.op].differentiable and n.dtype.kind == "f"
        if n in wrt_set or (differentiable and any(s in needed for s in n.src)):
            needed.add(n)
    # a wrt node that is not a leaf (autograd.grad by an intermediate, retain_grad) must stay
    # the root of its region, or the region's formula would differentiate straight through it
    root = regions(order, needed, set(outputs) | wrt_set, roots)
    members: dict[Node, set[Node]] = {}
    for m, r in root.items():
        members.setdefault(r, set()).add(m)
    acc: dict[Node, list[Node]] = {}
    for out, ct in zip(outputs, cts):
        acc.setdefault(out, []).append(ct)

    for n in reversed(order):
        if n not in needed or n not in acc or (n in wrt_set and n.op == "input"):
            continue
        if n.op == "ew" and root[n] is not n:
            continue  # inside a region: its root differentiates the whole region at once
        ct = add_all(acc[n])
        if n.op == "ew":
            pairs = Region(n, members[n]).cotangents(ct, needed)
        elif n.op == "input":
            continue
        else:
            pairs = [(s, c) for s, c in zip(n.src, OPS[n.op].adjoint(n, ct)) if c is not None]
        for s, c in pairs:
            if s in needed:
                acc.setdefault(s, []).append(c)
    return [add_all(acc[w]) if w in acc else None for w in wrt]


def add_all(terms: list[Node]) -> Node:
    """Sum cotangent contributions (one fused ``ew`` node, not a chain of adds)."""
    if len(terms) == 1:
        return terms[0]
    return ew(sympy.Add(*(xsym(i) for i in range(len(terms)))), terms, label="add")


def grad(loss: Node, wrt: Sequence[Node]) -> list[Node | None]:
    """The gradient of a scalar ``loss`` with respect to each of ``wrt`` (None: not reached)."""
    return vjp([loss], [const(1, loss.shape, loss.dtype)], wrt)
