"""Loops in the IR: ``scan`` runs a small body graph over the steps of a sequence, and
``scan_vjp``, its adjoint, runs the body's derivative back over them (backpropagation
through time).

A recurrent layer traced for ``symbp.compile`` is one ``scan`` node, not T copies of its
step: the body is derived once, emitted once, compiled once, so the program's size and its
compile time do not grow with the sequence length (docs/guides/recurrent.md measures both).

- ``scan(h0, xs, *consts)``: ``h0`` the carry ``[..]``, ``xs`` the per-step inputs ``[T, ..]``,
  ``consts`` what every step reads (a recurrent weight). Its one output ``[T, ..]`` is the
  carry after every step; a layer's outputs and final state are slices of it, so the IR
  keeps one output per node.
- ``scan_vjp(h0, xs, out, ct, *consts)``: given ``ct``, the cotangent of the scan's output,
  the cotangents of ``h0``, ``xs`` and each const, packed in one flat output that the
  adjoint reads back by slices (and a spare carry-sized block the compiled loop works in).
  Its body is the forward body's vector-Jacobian product from ``autodiff.vjp``: as built by
  differentiation, it recomputes the step's intermediates (the gates) from the saved carries.
- ``save_for_backward``: the compiled training program's pass that makes each forward loop
  store, at every step, what its adjoint reads of the step (the gates' activations), which
  the adjoint then reads instead of computing them again.

These ops live above ``autodiff`` (their adjoint differentiates the body), as
``symbp.autograd.function`` does; every stage keeps their rows in its own table.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import sympy

from symbp.compiler import autodiff, simplify
from symbp.compiler.ir import (
    Node,
    concrete,
    float64,
    numel,
    shape_error,
    shape_str,
    toposort,
    type_str,
)
from symbp.compiler.ops import (
    Op,
    SliceArg,
    const,
    make,
    print_program,
    register,
    reshape,
    slice_,
    xsym,
)


class Loop(NamedTuple):
    """A loop body: a graph over its own ``input`` leaves, the ``arg`` of a loop node.

    ``steps``: the leaves bound afresh at each step (a scan's carry and step input);
    ``consts``: the leaves every step reads, bound to the node's trailing sources;
    ``outputs``: what one step computes; ``names``: the outputs' names, for the listing and
    the generated code; ``sums``: below. Hashable like any ``arg`` (its nodes are interned),
    so two layers of one shape share one body.
    """

    steps: tuple[Node, ...]
    consts: tuple[Node, ...]
    outputs: tuple[Node, ...]
    names: tuple[str, ...]
    # an adjoint's, per const, how its cotangent sums over the steps: None, an accumulator
    # the body adds to (its output is the new sum); "rows" (its output is a [B, ...] value,
    # summed over the rows and the steps) or "product" (two outputs A, Y, the sum of Aᵀ Y
    # over the steps): stored at each step, and summed in one sweep after the loop
    sums: tuple[str | None, ...] = ()

    def __str__(self) -> str:
        return print_program(dict(zip(self.names, self.outputs)))


def _leaf(name: str, like: Node | tuple, dtype: np.dtype = float64) -> Node:
    """A leaf of the body named ``name``, shaped as ``like`` (a node, or a shape and dtype)."""
    if isinstance(like, Node):
        return Node("input", (), name, like.shape, like.dtype)
    return Node("input", (), name, like, dtype)


def _check_closed(what: str, outputs: Sequence[Node], leaves: Sequence[Node]) -> None:
    """Every leaf the body reads must be one of its own: a free one would be read from no
    buffer (and a constant captured by value would escape the cache key)."""
    own = set(leaves)
    for n in toposort(outputs):
        if n.op == "input" and n not in own:
            raise shape_error(
                f"{what}: the step reads '{n.arg}' {shape_str(n.shape)}, which is neither the "
                f"carry, the step's input nor one of its consts: pass it in consts"
            )


def _bound(what: str, leaf: Node, src: Node) -> None:
    if leaf.shape != src.shape or leaf.dtype != src.dtype:
        raise shape_error(f"{what}: {leaf.arg} is {type_str(leaf)}, bound to {type_str(src)}")


def _steps(what: str, xs: Node) -> int:
    if xs.ndim == 0 or not isinstance(xs.shape[0], int) or xs.shape[0] < 1:
        raise shape_error(
            f"{what}: the step inputs must lead with a fixed number of steps >= 1, got "
            f"{shape_str(xs.shape)}"
        )
    return xs.shape[0]


@register
class Scan(Op):
    """``out[t] = body(out[t-1], xs[t], *consts)``, ``out[-1] = h0``: the carry after each step."""

    name = "scan"

    def infer(self, src, arg):
        h0, xs, consts = src[0], src[1], src[2:]
        steps = _steps("scan", xs)
        carry, x = arg.steps
        _bound("scan", carry, h0)
        _bound("scan", _leaf("scan.x", xs.shape[1:], xs.dtype), x)
        if len(consts) != len(arg.consts):
            raise shape_error(f"scan: {len(consts)} consts for a body of {len(arg.consts)}")
        for leaf, c in zip(arg.consts, consts):
            _bound("scan", leaf, c)
        y, *saved = arg.outputs
        if y.shape != h0.shape or y.dtype != h0.dtype:
            raise shape_error(f"scan: the step returns {type_str(y)}, the carry is {type_str(h0)}")
        if not saved:
            return (steps, *h0.shape), h0.dtype
        return (steps, _packed(arg.outputs)), h0.dtype

    def numpy(self, node, vals, dims):
        from symbp.compiler.reference import evaluate  # the oracle, run step by step

        loop = node.arg
        h, xs, consts = vals[0], vals[1], vals[2:]
        env = dict(zip(loop.consts, consts))
        out = []
        for t in range(len(xs)):
            env.update(zip(loop.steps, (h, xs[t])))
            h, *saved = evaluate(loop.outputs, env, dims)
            out.append(_pack([h, *saved]) if saved else h)
        return np.stack(out)

    def adjoint(self, node, ct):
        if len(node.arg.outputs) > 1:
            raise NotImplementedError(
                "scan: a loop storing values for its adjoint (save_for_backward) is built "
                "after differentiation, not differentiated"
            )
        h0, xs, consts = node.src[0], node.src[1], node.src[2:]
        flat = make("scan_vjp", (h0, xs, node, ct, *consts), _vjp_body(node.arg))
        pieces, start = [], 0
        for s in (h0, xs, *consts):
            size = numel(s.shape)
            pieces.append(reshape(slice_(flat, [SliceArg(start, size, 1)]), s.shape))
            start = start + size
        return pieces

    def show_arg(self, node, names):
        body = str(node.arg).replace("\n", "\n      ")
        return f"[{node.shape[0]} steps: {body}]"


@functools.lru_cache(maxsize=64)  # layers of one shape share a body, derived once
def _vjp_body(loop: Loop) -> Loop:
    """The body of a scan's adjoint, from the forward body: leaves (carry, x, ct_t, g,
    acc_k ...), outputs (the carry's cotangent, x's, each const's accumulated)."""
    carry, x = loop.steps
    (y,) = loop.outputs
    g, ct = _leaf("scan.g", carry), _leaf("scan.ct", carry)
    accs = [_leaf(f"scan.acc{k}", c) for k, c in enumerate(loop.consts)]
    g_in = autodiff.add_all([g, ct])  # the step's output is read by the next step and by ct
    grads = autodiff.vjp([y], [g_in], [carry, x, *loop.consts], roots=is_activation)

    def zero(like: Node) -> Node:
        return const(0, like.shape, like.dtype)

    d_carry, d_x, *d_consts = (d if d is not None else zero(w) for d, w in
                               zip(grads, [carry, x, *loop.consts]))  # fmt: skip
    new = [a if d.op == "const" and d.arg == 0 else autodiff.add_all([a, d])
           for a, d in zip(accs, d_consts)]  # fmt: skip
    forward = set(toposort(loop.outputs))  # kept as they are, for save_for_backward to find
    outputs = simplify.simplify([d_carry, d_x, *new], keep=forward.__contains__)
    names = ("d_carry", "d_x", *(f"acc{k}" for k in range(len(accs))))
    return Loop((carry, x, ct, g, *accs), loop.consts, tuple(outputs), names)


@register
class ScanVjp(Op):
    """The cotangents of a scan's ``h0``, ``xs`` and consts, packed flat, from the cotangent
    ``ct`` of its output: the body's VJP run for t = T-1 .. 0 (then a spare carry block)."""

    name = "scan_vjp"

    def infer(self, src, arg):
        h0, xs, out, ct, consts = src[0], src[1], src[2], src[3], src[4:]
        steps = (xs.shape[0], *h0.shape)
        saved = arg.steps[4 + len(consts) :]
        # several stored values: flat blocks; the carry alone: the loop's output as it is
        if out.shape != ((xs.shape[0], _packed(saved)) if len(saved) > 1 else steps):
            raise shape_error(f"scan_vjp: the loop's output {type_str(out)} is not its steps'")
        if ct.shape != steps:
            raise shape_error(f"scan_vjp: a cotangent {type_str(ct)} of {shape_str(steps)}")
        size = numel(h0.shape) * 2 + numel(xs.shape)
        for c in consts:
            if c.dtype != h0.dtype:
                raise shape_error(f"scan_vjp: a {c.dtype} const in a {h0.dtype} loop")
            size = size + numel(c.shape)
        for v in stacked(arg):  # after the spare block: the values stored at every step
            size = size + xs.shape[0] * numel(v.shape)
        return (size,), h0.dtype

    def numpy(self, node, vals, dims):
        from symbp.compiler.reference import evaluate

        loop = node.arg
        h0, xs, out, ct, consts = vals[0], vals[1], vals[2], vals[3], vals[4:]
        g = np.zeros_like(h0)
        gx = np.zeros_like(xs)
        accs = [np.zeros_like(c) for c in consts]
        env = dict(zip(loop.consts, consts))
        saved = loop.steps[4 + len(consts) :]
        if len(saved) > 1:  # the forward loop's outputs at each step, packed
            shapes = [concrete(n.shape, dims) for n in saved]
            steps = [_unpack(o, shapes) for o in out]
            out = [s[0] for s in steps]
        elif saved:  # the carry alone: the loop's output as it is
            steps = [[o] for o in out]
        sums = loop.sums or (None,) * len(consts)
        kept: dict[int, list[np.ndarray]] = {}  # each step's values stored for the sums
        for t in reversed(range(len(xs))):
            now = steps[t] if saved else []
            prev = h0 if t == 0 else out[t - 1]
            env.update(zip(loop.steps, (prev, xs[t], ct[t], g, *accs, *now)))
            g, gx[t], *rest = evaluate(loop.outputs, env, dims)
            kept[t] = []
            for k, how in enumerate(sums):
                if how is None:
                    accs[k] = rest.pop(0)
                    continue
                vals = [rest.pop(0) for _ in range(1 if how == "rows" else 2)]
                accs[k] = accs[k] + (vals[0].sum(axis=0) if how == "rows" else vals[0].T @ vals[1])
                kept[t].extend(vals)
        stacks = [np.stack([kept[t][i] for t in range(len(xs))]) for i in range(len(kept[0]))]
        parts = [g, gx, *accs, g, *stacks]
        return np.concatenate([np.asarray(p).reshape(-1) for p in parts])

    def adjoint(self, node, ct):
        raise NotImplementedError(
            "scan_vjp: no second derivatives through a recurrent loop (double backward of scan)"
        )

    def show_arg(self, node, names):
        body = str(node.arg).replace("\n", "\n      ")
        return f"[{node.src[1].shape[0]} steps back: {body}]"


def scan_node(step: Callable[..., Node], h0: Node, xs: Node, consts: Sequence[Node] = ()) -> Node:
    """The scan of ``step(carry, x, *consts) -> carry'`` (a function of nodes) from ``h0``
    over the first axis of ``xs``."""
    _steps("scan", xs)
    carry, x = _leaf("scan.carry", h0), _leaf("scan.x", xs.shape[1:], xs.dtype)
    leaves = [_leaf(f"scan.const{k}", c) for k, c in enumerate(consts)]
    y = step(carry, x, *leaves)
    _check_closed("scan", [y], [carry, x, *leaves])
    (y,) = simplify.simplify([y], keep=is_activation)
    loop = Loop((carry, x), tuple(leaves), (y,), ("carry",))
    return make("scan", (h0, xs, *consts), loop)


def is_activation(n: Node) -> bool:
    """An elementwise function of one tensor that is not a polynomial in it (sigmoid, tanh,
    exp, relu ...). In a loop body it stays a node of its own, in the forward and in the
    adjoint's derivation, so that the adjoint's formulas read its value (sigmoid' =
    s (1 - s)) where the forward loop stored it (``save_for_backward``) rather than
    computing the function again at every step."""
    if n.op != "ew":
        return False
    live = [k for k, s in enumerate(n.src) if s.op != "const"]
    return len(live) == 1 and not n.arg.expr.is_polynomial(xsym(live[0]))


def _packed(nodes: Sequence[Node]) -> object:
    """The length of one step of a loop storing ``nodes``, flattened one after another."""
    return sum((numel(n.shape) for n in nodes), start=0)


def _pack(values: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(v).reshape(-1) for v in values])


def _unpack(flat: np.ndarray, shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    out, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape, dtype=np.int64))
        out.append(flat[start : start + size].reshape(shape))
        start += size
    return out


def stacked(loop: Loop) -> list[Node]:
    """An adjoint body's outputs stored at every step for the sums after the loop
    (``Loop.sums``), in order."""
    at, out = 2, list[Node]()
    for how in loop.sums:
        n = 1 if how in (None, "rows") else 2
        if how is not None:
            out.extend(loop.outputs[at : at + n])
        at += n
    return out


def _summed(new: Node, acc: Node) -> tuple[str, tuple[Node, ...]] | None:
    """How the accumulator ``acc`` becomes ``new`` at each step, when it is a sum over the
    steps that one sweep after the loop can take: ``acc + sum(A, rows)`` ("rows", A) or
    ``acc + Aᵀ Y`` ("product", A, Y), A and Y [B, ...]; else None."""
    if new.op != "ew" or len(new.src) != 2 or acc not in new.src:
        return None
    k = new.src.index(acc)
    if sympy.expand(new.arg.expr - xsym(0) - xsym(1)) != 0:
        return None
    term = new.src[1 - k]
    if term.op == "sum" and term.arg == ((0,), False) and term.src[0].ndim >= 1:
        return "rows", (term.src[0],)
    if term.op == "matmul" and term.src[0].op == "transpose":
        a, y = term.src[0].src[0], term.src[1]
        if isinstance(a.shape[0], sympy.Symbol) and y.shape[0] == a.shape[0]:
            return "product", (a, y)
    return None


_VIEWS = ("slice", "reshape", "transpose", "expand", "detach")  # no work of their own


def _viewed(n: Node) -> Node:
    while n.op in _VIEWS:
        n = n.src[0]
    return n


@functools.lru_cache(maxsize=64)
def _with_saved(fwd: Loop, back: Loop) -> tuple[Loop, Loop]:
    """The forward body storing what its adjoint ``back`` reads of the step, and the adjoint
    reading it from leaves bound to the stored values.

    Stored: every node of the forward step that a node of the adjoint's own reads (through
    views), varies with the step and is not one of the step's leaves (the carry before the
    step is in the previous step's output). The new carry leads each step's block; the
    adjoint's step leaves gain one leaf per forward output, in the same order."""
    (y,) = fwd.outputs
    order = toposort(fwd.outputs)
    forward, varies = set(order), set(fwd.steps)
    for n in order:
        if any(s in varies for s in n.src):
            varies.add(n)
    own = [u for u in toposort(back.outputs) if u not in forward]  # the adjoint's own nodes
    wanted = {_viewed(s) for u in own for s in u.src if s in forward}
    saved = [
        n for n in order
        if n in wanted and n in varies and n.op != "input" and n is not y and n.dtype == y.dtype
    ]  # fmt: skip
    stored = [y, *saved]
    leaves = [_leaf(f"scan.saved{k}", n) for k, n in enumerate(stored)]
    d_carry, d_x, *news = simplify.lowered(
        simplify.substitute(back.outputs, dict(zip(stored, leaves)))
    )  # and the gates' δs concatenated, not summed from their placements
    new_fwd = Loop(fwd.steps, fwd.consts, tuple(stored),
                   ("carry", *(f"saved{k}" for k in range(1, len(stored)))))  # fmt: skip
    # the consts' cotangents that are products over the rows (∂E/∂W_hh = Σ_t δ_tᵀ h_{t-1})
    # are stored per step and summed by one product after the loop, the rows of all steps
    # at once: the loop keeps no accumulator, and its rows stay apart (rows_apart)
    outputs, names, sums = [d_carry, d_x], ["d_carry", "d_x"], []
    for k, (new, acc) in enumerate(zip(news, back.steps[4 : 4 + len(back.consts)])):
        how = _summed(new, acc)
        sums.append(None if how is None else how[0])
        parts = (new,) if how is None else how[1]
        outputs.extend(parts)
        names.extend([f"acc{k}"] if how is None else (f"sum{k}_{i}" for i in range(len(parts))))
    new_back = Loop((*back.steps, *leaves), back.consts, tuple(outputs), tuple(names), tuple(sums))
    return new_fwd, new_back


def save_for_backward(nodes: Sequence[Node]) -> list[Node]:
    """``nodes`` with each loop whose adjoint they compute storing, at every step, what the
    adjoint reads of that step (an LSTM's gate activations and ``tanh(c)``), the adjoint
    reading it back: no transcendental function and no product with the recurrent weight is
    computed again backwards. A lowering pass over the derived training program: the loop's
    output becomes its steps' blocks ``[T, carry | stored ...]`` (flat per step), the carries
    a view of it. A loop whose adjoint reads nothing of a step but the carry after it (an
    Elman RNN's, tanh' = 1 − h²) stores nothing more: its output stays ``[T, ..]``, which
    the adjoint reads as the one value stored."""
    order = toposort(nodes)
    pairs = {
        n.src[2]: n for n in order
        if n.op == "scan_vjp" and n.src[2].op == "scan" and len(n.src[2].arg.outputs) == 1
    }  # fmt: skip
    if not pairs:
        return list(nodes)
    memo: dict[Node, Node] = {}
    packed: dict[Node, Node] = {}
    for n in order:
        src = tuple(memo[s] for s in n.src)
        if n in pairs:
            fwd, _ = _with_saved(n.arg, pairs[n].arg)
            packed[n] = make("scan", src, fwd)
            if len(fwd.outputs) == 1:  # it stores the carry alone: its output is unchanged
                memo[n] = packed[n]
                continue
            steps, size = n.shape[0], numel(n.shape[1:])
            carries = slice_(packed[n], [SliceArg(0, steps, 1), SliceArg(0, size, 1)])
            memo[n] = reshape(carries, n.shape)
        elif n.op == "scan_vjp" and n.src[2] in packed:
            _, back = _with_saved(n.src[2].arg, n.arg)
            memo[n] = make("scan_vjp", (src[0], src[1], packed[n.src[2]], *src[3:]), back)
        else:
            memo[n] = simplify.rebuild(n, src)
    return [memo[n] for n in nodes]


def _by_rows(n: Node, varies: set[Node], free: Callable, rows: Callable, full: SliceArg) -> bool:
    """Does the op of ``n`` (rows, from sources that are rows or read whole) compute each row
    from the same row of its sources?"""
    if n.op in ("input", "ew", "cast", "detach"):
        return True
    if n.op == "matmul":
        return n.src[0] in varies and free(n.src[1].shape)
    if n.op == "slice":
        return n.arg[0] == full
    if n.op == "slice_grad":
        return n.arg[0][0] == full
    if n.op == "cat":
        return n.arg >= 1
    if n.op in ("sum", "max"):
        return 0 not in n.arg[0]
    if n.op in ("reshape", "expand"):
        return rows(n.src[0])
    return False


def rows_apart(loop: Loop) -> bool:
    """Does each row of a step's results depend only on the same row of the step's leaves
    (the consts read whole)? Then the loop can run as independent loops over blocks of rows,
    one per thread, exchanging nothing at any step: each sample of an LSTM's batch is a
    recurrence of its own. Conservative: only the ops a recurrent step is made of count as
    row by row, and every result must be rows (an accumulated const gradient is not)."""
    first = loop.steps[0]
    b = first.shape[0] if first.ndim else None
    if not isinstance(b, sympy.Symbol):
        return False

    def free(shape: Sequence[object]) -> bool:  # no b in these sizes
        return all(b not in sympy.sympify(d).free_symbols for d in shape)

    def rows(n: Node) -> bool:
        return n.ndim >= 1 and n.shape[0] == b and free(n.shape[1:])

    order = toposort(loop.outputs)
    varies = set(loop.steps)
    for n in order:
        if any(s in varies for s in n.src):
            varies.add(n)
    for n in order:
        if n not in varies:  # read whole, or a constant broadcast over the rows
            if n.op == "input" or free(n.shape):
                continue
            if n.op == "const" or (n.op == "expand" and free(n.src[0].shape)):
                continue
            return False
        if not rows(n) or not all(rows(s) or s not in varies for s in n.src):
            return False
        if not _by_rows(n, varies, free, rows, SliceArg(0, b, 1)):
            return False
    return all(rows(o) for o in loop.outputs)


__all__ = [
    "Loop", "Scan", "ScanVjp", "is_activation", "rows_apart", "save_for_backward",
    "scan_node", "stacked",
]  # fmt: skip
