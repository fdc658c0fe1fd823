"""A loop body's nodes as SymPy expressions in a step's names (``_Body``), and the rules
that name what a textbook names in them: the gates (``_name_gates``) and the δs of the
adjoint body (``_name_deltas``), read off the bodies' structure alone.

- a node cut into as many equal column blocks as the layer has gates (an LSTM's
  pre-activation ``a_t``) has the blocks ``a^i_t, a^f_t, …``; a gate is a function of one
  block, ``i_t = σ(a^i_t)``, or of one block and the gates named before it (a GRU's
  ``n_t = tanh(u^n_t + r_t ⊙ a^n_t)``);
- the adjoint body's δs: of the step input (``δu_t``), or of the blocked node that adds it
  (an LSTM's ``δa_t``: its cotangent is the input's); of a gate (``δi_t``: the cotangent a
  blocked δ places at the gate's block, where that block is a term of the gate's argument,
  else ``δa^n_t``); of a carry part (``δh_t``: its slice of the cotangent coming in, or
  ``δc_t``, the node that adds that slice); the other error signals numbered.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sympy

from symbp.compiler.ir import Node, consumers, toposort
from symbp.formulas.naming import _Namer
from symbp.formulas.rules import _express, printing
from symbp.formulas.shaping import Cat
from symbp.formulas.steps import StepBlock, _Names
from symbp.formulas.tidy import _NameBack, tidy
from symbp.formulas.vocabulary import Equation, Fill, TensorOp, _tuple

# -- tilings: the column blocks of a node


Box = tuple[int, int]


def _last_box(box: Sequence[Any], shape: Sequence[Any]) -> Box | None:
    """(start, stop) of a box that cuts only the last axis (and is whole on the others)."""
    *lead, last = box
    for a, n in zip(lead, shape):
        if not (a.start == 0 and a.size == n and a.step == 1):
            return None
    if last.step != 1 or not isinstance(last.start, int) or not isinstance(last.size, int):
        return None
    return (last.start, last.start + last.size)


@dataclass(frozen=True)
class _Tiling:
    """Column blocks of a tensor: the carry's parts, or a gated node's gates."""

    kind: str  # "parts" or "chunks"
    width: int
    boxes: tuple[Box, ...]

    def index(self, box: Box | None) -> int | None:
        return self.boxes.index(box) if box in self.boxes else None


def _tiles(boxes: set[Box], width: int) -> tuple[Box, ...] | None:
    """The boxes in order if they tile [0, width) in equal blocks, else None."""
    ordered = sorted(boxes)
    if len(ordered) < 2 or ordered[0][0] != 0 or ordered[-1][1] != width:
        return None
    size = ordered[0][1] - ordered[0][0]
    for (a, b), (c, _) in itertools.pairwise(ordered):
        if b != c or b - a != size:
            return None
    return tuple(ordered) if ordered[-1][1] - ordered[-1][0] == size else None


# -- building


class _Body:
    """SymPy expressions of a loop body's nodes, in step-indexed names.

    ``split`` holds the nodes known block by block (the carry and its cotangents by part, a
    gated node's cotangent by gate): a slice at a block is that block's formula, and a sum
    of blocks placed into zeros keeps each block's own formula, never a sum of placed zeros.
    ``named`` nodes get a symbol; their formulas are ``defs``, the step's equations.
    """

    def __init__(self, namer: _Namer) -> None:
        self.namer = namer
        self.env: dict[Node, sympy.Expr] = {}
        self.split: dict[Node, tuple[_Tiling, list[sympy.Expr]]] = {}
        self.chunks: dict[Node, tuple[_Tiling, list[sympy.Symbol]]] = {}
        self.tilings: list[_Tiling] = []
        self.named: dict[Node, sympy.Symbol] = {}
        self.defs: dict[Node, sympy.Expr] = {}
        self.nameback = _NameBack(products=False)  # a loop's δs keep o_t ⊙ tanh(c_t)

    def copy(self) -> _Body:
        other = _Body(self.namer)
        other.env, other.split, other.chunks = dict(self.env), dict(self.split), self.chunks
        other.tilings, other.named, other.defs = self.tilings, dict(self.named), dict(self.defs)
        for n, d in self.defs.items():
            other.nameback.add(d, self.named[n])
        return other

    def whole(self, n: Node) -> sympy.Expr:
        """A node's formula as one tensor (a split one: its blocks side by side)."""
        if n not in self.env:
            tiling, parts = self.split[n]
            shown = [p if p != 0 else Fill(0, _tuple(_block_shape(n, b)))
                     for p, b in zip(parts, tiling.boxes)]  # fmt: skip
            self.env[n] = Cat(*shown, sympy.Integer(n.ndim - 1))
        return self.env[n]

    def _tiling_of(self, n: Node, box: Box | None) -> _Tiling | None:
        for t in self.tilings:
            if t.width == n.shape[-1] and t.index(box) is not None:
                return t
        return None

    def _blocks(self, n: Node) -> tuple[_Tiling, list[sympy.Expr]] | None:
        """The node's formula block by block, where its sources are known so."""
        if n.op == "slice_grad":
            box, shape = n.arg
            at = _last_box(box, shape)
            tiling = self._tiling_of(n, at)
            if tiling is not None:
                k = tiling.index(at)
                inner = self.whole(n.src[0])
                zero = sympy.Integer(0)
                return tiling, [inner if i == k else zero for i in range(len(tiling.boxes))]
        if n.op == "ew" and n.src and all(s in self.split for s in n.src):
            tilings = {self.split[s][0] for s in n.src}
            if len(tilings) == 1:
                (tiling,) = tilings
                parts = [
                    self.nameback(tidy(_express(n, [self.split[s][1][k] for s in n.src],
                                                self.namer)))
                    for k in range(len(tiling.boxes))
                ]  # fmt: skip
                return tiling, parts
        return None

    def visit(self, n: Node) -> None:
        if n.op == "slice":
            box = _last_box(n.arg, n.src[0].shape)
            src = n.src[0]
            for table in (self.split, self.chunks):
                if src in table and (k := table[src][0].index(box)) is not None:
                    self._set(n, table[src][1][k])
                    return
        blocks = self._blocks(n)
        if blocks is not None:
            self.split[n] = blocks
            if n in self.named:  # a named cotangent of blocks: δa_t = [δi_t, δf_t, …]
                self._set(n, self.whole(n))
            return
        e = _express(n, [self.whole(s) for s in n.src], self.namer)
        self._set(n, self.nameback(tidy(e)))

    def _set(self, n: Node, e: sympy.Expr) -> None:
        if n in self.named:
            self.defs[n] = e
            self.nameback.add(e, self.named[n])
            e = self.named[n]
        self.env[n] = e

    def run(self, outputs: Sequence[Node]) -> None:
        for n in toposort(outputs):
            if n not in self.env and n not in self.split:
                self.visit(n)


def _block_shape(n: Node, box: Box) -> tuple:
    return (*n.shape[:-1], box[1] - box[0])


def _like(shape: Sequence[Any], like: Node) -> Node:
    """A stand-in node of ``shape``: the legend's key for a tensor the program has no node of."""
    return Node("input", (), "formulas.like", tuple(shape), like.dtype)


@dataclass
class _Forward:
    """What a forward loop's printing found, for its adjoint's."""

    scan: Node
    block: StepBlock
    names: _Names
    body: _Body
    bases: tuple[str, ...]  # the carry's parts: h, c
    parts: _Tiling
    seqs: list[sympy.Symbol]  # h = [h_1 … h_T], c …
    chunked: list[Node]
    chunk_base: dict[Node, str]  # a, u
    letters: tuple[str, ...]  # the gates: i, f, g, o
    gates: dict[sympy.Symbol, sympy.Expr]  # i_t -> σ(a^i_t)
    u_base: str
    what: str  # the layer, for the legend


def _name_gates(
    body: _Body, chunked: list[Node], letters: tuple[str, ...], names: _Names
) -> dict[sympy.Symbol, sympy.Expr]:
    """Gate k: a function (σ, tanh …) of block k of the chunked nodes alone, found in the
    step's formulas innermost first; a gate named before may be part of a later one's
    argument (a GRU's n_t = tanh(u^n_t + r_t ⊙ a^n_t), once r_t is named)."""
    block_of = {s: k for n in chunked for k, s in enumerate(body.chunks[n][1])}
    found: dict[int, sympy.Expr] = {}
    while True:
        nb = _NameBack()
        for k, d in found.items():
            nb.add(d, names.at(letters[k], 0))
        new = False
        for d in body.defs.values():
            for f in sympy.postorder_traversal(nb(d)):
                if not isinstance(f, sympy.Function) or isinstance(f, TensorOp) or len(f.args) != 1:
                    continue
                blocks = {block_of[s] for s in f.free_symbols if s in block_of}
                if len(blocks) == 1 and (k := blocks.pop()) not in found:
                    found[k] = f
                    new = True
        if not new:
            break
    return {names.at(letters[k], 0): found[k] for k in sorted(found)}


def _ordered(
    defs: Mapping[sympy.Symbol, sympy.Expr], preferred: Sequence[sympy.Symbol]
) -> list[Equation]:
    """The equations in ``preferred`` order (then the rest), each after the names it reads."""
    pending = [s for s in preferred if s in defs] + [s for s in defs if s not in preferred]
    out: list[Equation] = []
    while pending:
        waiting = set(pending)
        s = next((s for s in pending if not (defs[s].free_symbols & (waiting - {s}))), pending[0])
        out.append(Equation(s, defs[s]))
        pending.remove(s)
    return out


def _adds(expr: sympy.Expr | None, sym: sympy.Basic) -> bool:
    """Whether ``sym`` is a term of ``expr`` (or is it): a + sym, not a·sym."""
    return expr is not None and sym in sympy.Add.make_args(expr)


def _name_deltas(
    take: Callable[[str], str],
    add: Callable[[sympy.Symbol, Node, str, int], None],
    info: _Forward,
    body: _Body,
    order: list[Node],
    d_x: Node,
    incoming: list[sympy.Dummy],
    rank: int,
) -> dict[Node, tuple[sympy.Symbol, str, int]]:
    """The adjoint body's error signals: node -> (δ symbol, its base, print order); the rules
    are the module docstring's."""

    names = info.names
    users = consumers(toposort(info.scan.arg.outputs + tuple(order)))
    out: dict[Node, tuple[sympy.Symbol, str, int]] = {}

    def give(n: Node, base: str, about: str, key: int) -> None:
        if n not in out:
            base = take(base)
            out[n] = (names.at(base, 0), base, key)
            add(names.at(base, 0), n, about, rank + key)

    def signal(n: Node) -> bool:  # read twice, or by a product: worth a name
        us = users.get(n, [])
        return len(us) > 1 or any(printing(u).reads_delta for u in us)

    x = info.scan.arg.steps[1]
    inner = [n for n in info.chunked if n is not x]
    # the step input's cotangent; a chunked node that adds the input has the same one
    u_t = names.at(info.u_base, 0)
    adds_x = [n for n in inner if _adds(info.body.defs.get(n), u_t)]
    of: dict[Node, Node] = {d_x: adds_x[0] if len(adds_x) == 1 else x}
    free = [n for n in inner if n is not of[d_x]]
    tiled = [n for n in order if n in body.split and body.split[n][0].kind == "chunks"
             and n.op == "ew" and signal(n) and n is not d_x]  # fmt: skip
    for n in tiled:
        if len(free) == 1:
            of[n] = free.pop()
    for n, node in of.items():
        base = info.u_base if node is x else info.chunk_base[node]
        give(n, f"δ{base}", f"∂E/∂{base}_t", 50)
    # a gate's δ: the cotangent a named blocked one places at the gate's block
    for n, node in of.items():
        if n not in body.split:
            continue
        for k, piece in enumerate(_pieces(n, body)):
            if piece is None:
                continue
            gl = info.letters[k]
            block = body.chunks[node][1][k] if node in body.chunks else None
            gate = info.gates.get(names.at(gl, 0))
            base = info.u_base if node is x else info.chunk_base[node]
            if gate is not None and _adds(gate.args[0], block):
                give(piece, f"δ{gl}", f"∂E/∂{block}", 10 + k)
            else:
                give(piece, f"δ{base}^{gl}", f"∂E/∂{base}^{gl}_t", 10 + k)
    # a carry part's δ: its slice of the cotangent coming in, or the node that adds that
    for n in order:
        e = body.env.get(n)
        if n in out or e is None or n.op not in ("slice", "ew") or not signal(n):
            continue
        for k, G in enumerate(incoming):
            if G in sympy.Add.make_args(e):
                give(n, f"δ{info.bases[k]}", f"∂E/∂{info.bases[k]}_t", k)
                break
    # the other error signals, numbered
    count = 0
    for n in order:
        if n in out or n in body.split or n.op != "ew" or not signal(n):
            continue
        count += 1
        give(n, f"δ{count}", "a backward intermediate of the step", 60 + count)
    return out


def _pieces(n: Node, body: _Body) -> list[Node | None]:
    """The nodes a blocked cotangent places at each block (None where it places nothing)."""
    tiling = body.split[n][0]
    out: list[Node | None] = [None] * len(tiling.boxes)
    stack, seen = [n], set()
    while stack:
        m = stack.pop()
        if m in seen or m not in body.split:
            continue
        seen.add(m)
        if m.op == "slice_grad":
            box, shape = m.arg
            k = tiling.index(_last_box(box, shape))
            if k is not None:
                out[k] = m.src[0]
        elif m.op == "ew":
            stack.extend(m.src)
    return out
