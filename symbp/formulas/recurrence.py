"""Loops in the formulas, built: a ``scan`` prints its step with a time index t, its adjoint
``scan_vjp`` the δ recurrence of backpropagation through time, and the gradients of the
weights every step reads as sums over t (``∂E/∂W_hh = Σ_t δa_tᵀ·h_{t−1}``).

Everything is read off the loop's two bodies (``loops.Loop``): the forward body gives the
step's equations, the body of its vector-Jacobian product (derived once by ``autodiff``) the
δs, so an RNN, a GRU and an LSTM print from this one code. The names come from what the
layer says of its step (``ir.StepNames``, a program's own: the carry's parts h, c; the gates
i, f, g, o) and from the bodies' structure:

- the carry's parts: ``h_{t−1}, c_{t−1}`` where the step slices its carry, ``h_t, c_t``
  where it joins its new carry (a cat); with one part, ``h``;
- the step input ``u_t``, row t of ``u``, the loop's per-step inputs;
- a node cut into as many equal column blocks as the layer has gates (the pre-activation
  ``a_t``), its blocks ``a^i_t, a^f_t, …``; a gate is a function of one block,
  ``i_t = σ(a^i_t)`` (or of one block and gates named before it: ``n_t = tanh(u^n_t +
  r_t ⊙ a^n_t)``);
- the δs: of a carry part (``δh_t``: its slice of the cotangent coming in, ``δc_t``: what
  adds that slice), of a gate (``δi_t``, the cotangent placed at its block), of the blocked
  node (``δa_t = [δi_t, δf_t, δg_t, δo_t]``), of the step input (``δu_t``).

The carry's cotangent from step t+1 is the adjoint body's own ``d_carry`` one step later, so
it prints as that formula at t+1: ``δc_t = δh_t ⊙ o_t ⊙ (1 − tanh(c_t)²) + δc_{t+1} ⊙ f_{t+1}``.
Each block evaluates with NumPy, step by step (``StepBlock.run``), as the equations around it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import sympy

from symbp.compiler.ir import Node, consumers, toposort
from symbp.compiler.ops import xsym
from symbp.formulas.indexing import Key, Sliced
from symbp.formulas.layout import _RANK_DELTA, _RANK_LAYER
from symbp.formulas.naming import _Namer, _symbol, _Tensor
from symbp.formulas.shaping import Cat
from symbp.formulas.step_bodies import (
    _block_shape,
    _Body,
    _Forward,
    _last_box,
    _like,
    _name_deltas,
    _name_gates,
    _ordered,
    _tiles,
    _Tiling,
)
from symbp.formulas.steps import StepBlock, StepSum, _Names
from symbp.formulas.tidy import _NameBack
from symbp.formulas.vocabulary import Equation, Reshape, _tuple


class Loops:
    """The loops of one ``Formulas``: a forward ``StepBlock`` per scan, a backward one per
    scan_vjp, and the names they give the tensors around them (u, h, c, ε, δa …)."""

    def __init__(self, namer: _Namer) -> None:
        self.namer = namer
        self._forward: list[_Forward] = []
        self._by_node: dict[Node, _Forward] = {}

    def _layer(self, scan: Node) -> str:
        """The layer a loop is part of, for the legend: the module of a weight it reads."""
        for c in scan.src[2:]:
            t = self.namer.tensors.get(c)
            if t is not None and t.param and "." in t.param:
                return t.param.rpartition(".")[0]
        return "the loop"

    def _add(self, sym: sympy.Symbol, like: Node, about: str, rank: int) -> None:
        """A tensor of a loop in the legend, keyed by a node of its own (a body's nodes are
        shared between loops of equal bodies, and h_t, h_{t−1} are one node's values)."""
        key = Node("input", (), f"formulas.step:{sym.name}:{id(self)}", like.shape, like.dtype)
        self.namer.tensors[key] = _Tensor(sym, key, about, rank)

    # ------------------------------------------------------------ forward

    def forward(
        self, scan: Node, env: dict[Node, sympy.Expr], express: Callable[[Node], sympy.Expr]
    ) -> tuple[list[Equation], StepBlock]:
        """The step of ``scan`` as a forward block, and the outer equations before it
        (``u = …``, the steps' inputs); binds the scan node in ``env``."""
        loop = scan.arg
        carry, x = loop.steps
        (y,) = loop.outputs
        given = self.namer.steps.get(scan, {})
        names = _Names()
        what = self.namer.labels.get(scan) or self._layer(scan)
        take = self.namer._take
        # the carry's parts: the sources of the step's closing cat
        if y.op == "cat" and y.arg == y.ndim - 1 and len(y.src) > 1:
            starts = np.cumsum([0, *(int(s.shape[-1]) for s in y.src)])
            boxes = tuple((int(a), int(b)) for a, b in itertools.pairwise(starts))
            part_src: list[Node] = list(y.src)
        else:
            boxes, part_src = ((0, int(y.shape[-1])),), [y]
        want = tuple(given.get("carry", ()))
        if len(want) != len(boxes):
            want = ("h",) if len(boxes) == 1 else tuple(f"h{k + 1}" for k in range(len(boxes)))
        bases = tuple(take(b) for b in want)
        parts = _Tiling("parts", int(y.shape[-1]), boxes)
        body = _Body(self.namer)
        body.tilings.append(parts)
        prev = [names.at(b, -1) for b in bases]
        if len(boxes) == 1:
            body.env[carry] = prev[0]
        else:
            body.split[carry] = (parts, list(prev))
        for k, c in enumerate(loop.consts):
            body.env[c] = express(scan.src[2 + k])
        u_base = take(given.get("input", ("u",))[0])
        body.env[x] = names.at(u_base, 0)
        outer: list[Equation] = []
        xs = express(scan.src[1])
        u_seq = xs if xs.is_Symbol else _symbol(u_base)
        if not xs.is_Symbol:
            outer.append(Equation(u_seq, xs))
            self._add(u_seq, scan.src[1], f"the inputs of {what}'s steps", _RANK_LAYER)
        # chunked nodes: cut into equal column blocks, as many as the layer has gates
        letters = tuple(given.get("gates", ()))
        users = consumers(toposort(loop.outputs))
        chunked: list[Node] = []
        for n in toposort(loop.outputs):
            if n is carry or not n.ndim or not isinstance(n.shape[-1], int):
                continue
            cuts = {_last_box(u.arg, n.shape) for u in users[n] if u.op == "slice"} - {None}
            blocks = _tiles(cuts, n.shape[-1])  # type: ignore[arg-type]
            if blocks and (not letters or len(blocks) == len(letters)):
                if chunked and len(blocks) != len(body.chunks[chunked[0]][0].boxes):
                    continue
                letters = letters or tuple(str(k + 1) for k in range(len(blocks)))
                tiling = _Tiling("chunks", n.shape[-1], blocks)  # type: ignore[arg-type]
                body.tilings.append(tiling)
                chunked.append(n)
                body.chunks[n] = (tiling, [])
        letters = tuple(take(g) for g in letters)
        chunk_base: dict[Node, str] = {}
        fresh = iter("abdefg")
        for n in chunked:
            base = u_base if n is x else take(next(fresh))
            chunk_base[n] = base
            tiling = body.chunks[n][0]
            marks = [g.rstrip("′") for g in letters]  # a′^i_t, not a′^i′_t
            body.chunks[n] = (tiling, [names.at(f"{base}^{g}", 0) for g in marks])
            if n is not x:
                body.named[n] = names.at(base, 0)
        for k, n in enumerate(part_src):
            body.named[n] = names.at(bases[k], 0)
        body.run(loop.outputs)
        # gates: a function of one block (and of the gates named before it)
        gates = _name_gates(body, chunked, letters, names) if given.get("gates") else {}
        by_gate = _NameBack()
        for sym, d in gates.items():
            by_gate.add(d, sym)
            body.nameback.add(d, sym)
        body.defs = {n: by_gate(d) for n, d in body.defs.items()}
        defs = {body.named[n]: d for n, d in body.defs.items()}
        first = [body.named[n] for n in chunked if n in body.named]
        equations = _ordered({**defs, **gates}, first + list(gates))
        h0 = self._parts_of(scan.src[0], parts, express)
        init = [Equation(names.at(b, "0"), h0[k]) for k, b in enumerate(bases)]  # type: ignore[arg-type]
        seqs = [_symbol(b) for b in bases]
        block = StepBlock(
            "forward",
            int(scan.shape[0]),
            equations,
            init=init,
            carry_in=[(prev[k], names.at(b, 0), h0[k]) for k, b in enumerate(bases)],
            rows=[(names.at(u_base, 0), u_seq)],
            outputs=[(s, names.at(b, 0)) for s, b in zip(seqs, bases)],
        )
        for n, (tiling, syms) in body.chunks.items():
            whole = names.at(chunk_base[n], 0)
            block.splits += [(s, whole, lo, hi) for s, (lo, hi) in zip(syms, tiling.boxes)]
        info = _Forward(scan, block, names, body, bases, parts, seqs, chunked, chunk_base,
                        letters, gates, u_base, what)  # fmt: skip
        self._describe(info)
        block.shapes = {t.symbol: t.node.shape for t in self.namer.tensors.values() if t.node}
        self._forward.append(info)
        self._by_node[scan] = info
        env[scan] = seqs[0] if len(seqs) == 1 else Cat(*seqs, sympy.Integer(scan.ndim - 1))
        return outer, block

    def bind(
        self, n: Node, users: Sequence[Node], env: dict[Node, sympy.Expr], match: bool
    ) -> bool:
        """A scan met again (with ``match``: the simplified program's, matched to a printed
        one of its body): bind it as the one printed, and its slices at one part of the
        carry as that part's sequence. False if it is new."""
        info = self._by_node.get(n) or (self._match(n) if match else None)
        if info is None:
            return False
        seqs = info.seqs
        env[n] = seqs[0] if len(seqs) == 1 else Cat(*seqs, sympy.Integer(n.ndim - 1))
        for u in users:
            if u.op == "slice" and u not in env and len(seqs) > 1:
                k = info.parts.index(_last_box(u.arg, n.shape))
                if k is not None:
                    env[u] = seqs[k]
        return True

    def _match(self, scan: Node) -> _Forward | None:
        """The printed forward loop of a scan node of the simplified program: the first one
        of the same body that no other node stands for."""
        taken = {id(i) for s, i in self._by_node.items() if s is not i.scan}
        for info in self._forward:
            same = info.scan.arg == scan.arg and info.scan.shape == scan.shape
            if same and id(info) not in taken:
                self._by_node[scan] = info
                return info
        return None

    def _parts_of(self, n: Node, tiling: _Tiling, express: Callable) -> list[sympy.Expr]:
        """An outer tensor's formula by the parts of ``tiling`` (on its last axis)."""
        k_parts = len(tiling.boxes)
        if k_parts == 1:
            return [sympy.Integer(0) if _zero(n) else express(n)]
        if n.op == "cat" and n.arg == n.ndim - 1:
            widths = tuple(int(s.shape[-1]) for s in n.src)
            if widths == tuple(b - a for a, b in tiling.boxes):
                return [sympy.Integer(0) if _zero(s) else express(s) for s in n.src]
        if _zero(n):
            return [sympy.Integer(0)] * k_parts
        if n.op == "slice_grad":
            box, shape = n.arg
            k = tiling.index(_last_box(box, shape))
            if k is not None:
                inner = express(n.src[0])
                return [inner if i == k else sympy.Integer(0) for i in range(k_parts)]
        if (
            n.op == "ew"
            and n.src
            and n.arg.expr == sympy.Add(*(xsym(i) for i in range(len(n.src))))
        ):
            each = [self._parts_of(s, tiling, express) for s in n.src]
            return [sympy.Add(*(p[k] for p in each)) for k in range(k_parts)]
        whole = express(n)
        lead = tuple((0, None, 1) for _ in n.shape[:-1])
        return [Sliced(whole, Key((*lead, (lo, hi, 1)))) for lo, hi in tiling.boxes]

    def _describe(self, info: _Forward) -> None:
        """The loop's tensors in the legend; their ranks order a product's factors as a
        textbook does (o_t ⊙ tanh(c_t), i_t ⊙ g_t: gates first, in the layer's order)."""
        names, body, what = info.names, info.body, info.what
        carry, x = info.scan.arg.steps
        rank = _RANK_LAYER + 100 * (len(self._forward) + 1)
        self._add(names.at(info.u_base, 0), x, f"row t of {info.u_base}", rank)
        for k, b in enumerate(info.bases):
            like = _like(_block_shape(carry, info.parts.boxes[k]), carry)
            self._add(names.at(b, -1), like, f"{b} of {what} before step t", rank + 1)
            self._add(names.at(b, 0), like, f"{b} of {what} after step t", rank + 10 + k)
            seq = _like((info.block.steps, *like.shape), carry)
            self._add(info.seqs[k], seq, f"{b}_t of {what} at every step t, stacked", rank + 10)
        for n in info.chunked:
            tiling, syms = body.chunks[n]
            base = info.chunk_base[n]
            blocks = ", ".join(info.letters)
            if n is not x:
                self._add(names.at(base, 0), n, f"{what}'s step: columns {blocks}", rank + 3)
            like = _like(_block_shape(n, tiling.boxes[0]), n)
            for s, g in zip(syms, info.letters):
                self._add(s, like, f"the columns {g} of {base}_t", rank + 2)
        if info.chunked:
            tiling = body.chunks[info.chunked[0]][0]
            like = _like(_block_shape(info.chunked[0], tiling.boxes[0]), carry)
            for k, (sym, g) in enumerate(zip(info.gates, info.letters)):
                self._add(sym, like, f"gate {g} of {what} at step t", rank + 30 - k)

    # ------------------------------------------------------------ backward

    def backward(
        self,
        vjp: Node,
        env: dict[Node, sympy.Expr],
        express: Callable[[Node], sympy.Expr],
        users: Callable[[Node], Sequence[Node]],
    ) -> tuple[list[Equation], StepBlock]:
        """The adjoint of a scan as a backward block, and the outer equations before it
        (ε, ∂E/∂h from outside the loop); binds the pieces of ``vjp`` the outer program reads
        (δa = [δa_1 … δa_T], ∂E/∂W_hh = Σ_t …) in ``env``."""
        scan = vjp.src[2]
        info = self._by_node.get(scan) or self._match(scan)
        if info is None:
            raise ValueError("formulas: the adjoint of a loop whose forward was not printed")
        loop = vjp.arg
        carry, _, ct, g, *accs = loop.steps
        d_carry, d_x, *d_accs = loop.outputs
        names, parts, bases = info.names, info.parts, info.bases
        take = self.namer._take
        rank = _RANK_DELTA + 1000 * (len(self._forward) + 1)
        # the cotangent from outside the loop, ε, part by part
        outer: list[Equation] = []
        eps: list[sympy.Expr] = []
        rows = []
        for k, (p, b) in enumerate(zip(self._parts_of(vjp.src[3], parts, express), bases)):
            if p == 0:
                eps.append(sympy.Integer(0))
                continue
            base = take("ε" if len(bases) == 1 else f"ε^{b}")
            like = _like(_block_shape(carry, parts.boxes[k]), carry)
            seq = p if p.is_Symbol else _symbol(base)
            if not p.is_Symbol:
                outer.append(Equation(seq, p))
                about = f"∂E/∂{b} from outside the loop, at every step"
                self._add(seq, _like((info.block.steps, *like.shape), carry), about, rank)
            self._add(names.at(base, 0), like, f"row t of {seq.name}", rank)
            rows.append((names.at(base, 0), seq))
            eps.append(names.at(base, 0))
        # ... and from step t+1: the adjoint's own d_carry one step later (G until known)
        incoming = [sympy.Dummy(f"G{k}", real=True) for k in range(len(bases))]

        def body() -> _Body:
            out = info.body.copy()
            out.named = {}
            out.defs = {}
            for sym, d in info.gates.items():
                out.nameback.add(d, sym)
            for a in accs:
                out.env[a] = sympy.Integer(0)
            if len(bases) == 1:
                out.env[ct], out.env[g] = eps[0], incoming[0]
            else:
                out.split[ct], out.split[g] = (parts, list(eps)), (parts, list(incoming))
            return out

        forward_nodes = set(toposort(info.scan.arg.outputs))
        order = [n for n in toposort(loop.outputs) if n not in forward_nodes]
        first = body()
        first.run(loop.outputs)
        deltas = _name_deltas(self.namer._take, self._add, info, first, order, d_x, incoming, rank)
        second = body()
        second.named = {n: sym for n, (sym, _, _) in deltas.items()}
        second.run(loop.outputs)
        comes = (
            second.split[d_carry][1]
            if d_carry in second.split
            else [second.whole(d_carry)] if len(bases) == 1 else None
        )  # fmt: skip
        if comes is None or any(c.free_symbols & set(incoming) for c in comes):
            raise NotImplementedError(
                "formulas: a loop whose carry's cotangent is neither by part nor named"
            )
        later = {G: names.shift(c) for G, c in zip(incoming, comes)}
        defs = {
            sym: sympy.factor_terms(second.defs[n].xreplace(later))
            for n, (sym, _, _) in deltas.items()
            if n in second.defs
        }
        by_key = sorted(deltas.values(), key=lambda d: d[2])
        equations = _ordered(defs, [sym for sym, _, _ in by_key])
        # what the loop leaves: the step input's cotangent, the consts' Σ_t, ∂E/∂h_0
        dx_sym, dx_base, _ = deltas[d_x]
        dx_seq = _symbol(dx_base)
        self._add(dx_seq, vjp.src[1], f"{dx_sym.name} at every step t, stacked", rank)
        sums: dict[StepSum, sympy.Symbol] = {}
        pieces: list[sympy.Expr] = []
        for k, a in enumerate(d_accs):
            total = StepSum(sympy.factor_terms(second.whole(a).xreplace(later)))
            sums[total] = sympy.Dummy(f"Σ{k}", real=True)
            pieces.append(total)
        h0_sym = _symbol(take("δ" + "".join(bases) + "_0"))
        first_step = comes[0] if len(comes) == 1 else Cat(*comes, sympy.Integer(carry.ndim - 1))
        about = f"∂E/∂({', '.join(b + '_0' for b in bases)})"
        self._add(h0_sym, vjp.src[0], about, rank)
        pairs = []
        ranks = {t.symbol: t.rank for t in self.namer.tensors.values()}
        for sym in sorted(_free([e.expr for e in equations] + pieces), key=lambda s: s.name):
            key = names.of(sym)
            if key is not None and key[1] == 1:
                now = names.at(key[0], 0)
                pairs.append((sym, now))
                self.namer.extra_ranks[sym] = ranks.get(now, _RANK_DELTA)
        shapes = {t.symbol: t.node.shape for t in self.namer.tensors.values() if t.node}
        block = StepBlock(
            "backward",
            info.block.steps,
            equations,
            rows=rows,
            later=pairs,
            outputs=[(dx_seq, dx_sym)],
            sums=sums,
            final=[(h0_sym, first_step)],
            after=[Equation(h0_sym, names.fixed(first_step, 1))],
            forward=info.block,
            shapes=shapes,
        )
        self._bind_pieces(vjp, users, env, [h0_sym, dx_seq, *pieces])
        return outer, block

    def _bind_pieces(
        self,
        vjp: Node,
        users: Callable[[Node], Sequence[Node]],
        env: dict[Node, sympy.Expr],
        pieces: list[sympy.Expr],
    ) -> None:
        """The outer program reads the flat adjoint by slices, one per cotangent (h0's, xs's,
        each const's, as ``loops.Scan.adjoint`` packs them): bind those to the pieces."""
        h0, xs, _, _, *consts = vjp.src
        starts, at = [], sympy.Integer(0)
        for s in (h0, xs, *consts):
            starts.append(at)
            at = at + sympy.Mul(*s.shape)
        shapes = [s.shape for s in (h0, xs, *consts)]
        for u in users(vjp):
            if u.op != "slice" or u in env:
                continue
            start = sympy.sympify(u.arg[0].start)
            k = next((k for k, s in enumerate(starts) if sympy.expand(start - s) == 0), None)
            if k is None:
                continue
            env[u] = Reshape(pieces[k], _tuple(u.shape))
            for r in users(u):
                if r.op == "reshape" and tuple(r.shape) == tuple(shapes[k]):
                    env[r] = pieces[k]


def _zero(n: Node) -> bool:
    """A tensor of zeros: a zero constant, or a view or join of them (the default h_0)."""
    if n.op == "const":
        return n.arg == 0
    if n.op in ("slice", "reshape", "expand", "transpose", "cat"):
        return all(_zero(s) for s in n.src)
    return False


def _free(exprs: Sequence[sympy.Expr]) -> set[sympy.Symbol]:
    out: set[sympy.Symbol] = set()
    for e in exprs:
        out |= e.free_symbols  # type: ignore[arg-type]
    return out
