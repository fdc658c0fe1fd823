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
  Its body is the forward body's vector-Jacobian product from ``autodiff.vjp``: the step's
  intermediates (gates) are recomputed from the saved carries rather than stored per step.

These ops live above ``autodiff`` (their adjoint differentiates the body), as
``symbp.autograd.function`` does; every stage keeps their rows in its own table.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from symbp import autodiff, simplify
from symbp.grad_mode import enable_grad
from symbp.ir import Node, float64, numel, shape_error, shape_str, toposort, type_str
from symbp.ops import Op, SliceArg, const, make, print_program, register, reshape, slice_
from symbp.tensor import Tensor, _lift, _result


class Loop(NamedTuple):
    """A loop body: a graph over its own ``input`` leaves, the ``arg`` of a loop node.

    ``steps``: the leaves bound afresh at each step (a scan's carry and step input);
    ``consts``: the leaves every step reads, bound to the node's trailing sources;
    ``outputs``: what one step computes; ``names``: the outputs' names, for the listing and
    the generated code. Hashable like any ``arg`` (its nodes are interned), so two layers of
    one shape share one body.
    """

    steps: tuple[Node, ...]
    consts: tuple[Node, ...]
    outputs: tuple[Node, ...]
    names: tuple[str, ...]

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
        (y,) = arg.outputs
        if y.shape != h0.shape or y.dtype != h0.dtype:
            raise shape_error(f"scan: the step returns {type_str(y)}, the carry is {type_str(h0)}")
        return (steps, *h0.shape), h0.dtype

    def numpy(self, node, vals, dims):
        from symbp.reference import evaluate  # the oracle, run step by step

        loop = node.arg
        h, xs, consts = vals[0], vals[1], vals[2:]
        env = dict(zip(loop.consts, consts))
        out = []
        for t in range(len(xs)):
            env.update(zip(loop.steps, (h, xs[t])))
            (h,) = evaluate(loop.outputs, env, dims)
            out.append(h)
        return np.stack(out)

    def adjoint(self, node, ct):
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
    grads = autodiff.vjp([y], [g_in], [carry, x, *loop.consts])

    def zero(like: Node) -> Node:
        return const(0, like.shape, like.dtype)

    d_carry, d_x, *d_consts = (d if d is not None else zero(w) for d, w in
                               zip(grads, [carry, x, *loop.consts]))  # fmt: skip
    new = [a if d.op == "const" and d.arg == 0 else autodiff.add_all([a, d])
           for a, d in zip(accs, d_consts)]  # fmt: skip
    outputs = simplify.simplify([d_carry, d_x, *new])
    names = ("d_carry", "d_x", *(f"acc{k}" for k in range(len(accs))))
    return Loop((carry, x, ct, g, *accs), loop.consts, tuple(outputs), names)


@register
class ScanVjp(Op):
    """The cotangents of a scan's ``h0``, ``xs`` and consts, packed flat, from the cotangent
    ``ct`` of its output: the body's VJP run for t = T-1 .. 0 (then a spare carry block)."""

    name = "scan_vjp"

    def infer(self, src, arg):
        h0, xs, out, ct, consts = src[0], src[1], src[2], src[3], src[4:]
        if ct.shape != out.shape:
            raise shape_error(f"scan_vjp: a cotangent {type_str(ct)} of {type_str(out)}")
        size = numel(h0.shape) * 2 + numel(xs.shape)
        for c in consts:
            if c.dtype != h0.dtype:
                raise shape_error(f"scan_vjp: a {c.dtype} const in a {h0.dtype} loop")
            size = size + numel(c.shape)
        return (size,), h0.dtype

    def numpy(self, node, vals, dims):
        from symbp.reference import evaluate

        loop = node.arg
        h0, xs, out, ct, consts = vals[0], vals[1], vals[2], vals[3], vals[4:]
        g = np.zeros_like(h0)
        gx = np.zeros_like(xs)
        accs = [np.zeros_like(c) for c in consts]
        env = dict(zip(loop.consts, consts))
        for t in reversed(range(len(xs))):
            env.update(zip(loop.steps, (h0 if t == 0 else out[t - 1], xs[t], ct[t], g, *accs)))
            g, gx[t], *accs = evaluate(loop.outputs, env, dims)
        parts = [g, gx, *accs, g]
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
    (y,) = simplify.simplify([y])
    loop = Loop((carry, x), tuple(leaves), (y,), ("carry",))
    return make("scan", (h0, xs, *consts), loop)


def scan(step: Callable[..., object], h0: object, xs: object, consts: Sequence[object] = ()):
    """``scan`` on tensors: ``step(carry, x, *consts)`` (a function of tensors, traced once
    on leaves of the carry's, a step's and each const's shape) run from ``h0`` over the
    first axis of ``xs``; the ``[T, ...]`` tensor of the carry after each step. Eagerly it
    runs the loop in NumPy; traced, it is one node (``symbp.compile`` emits one loop)."""
    h0, xs = _lift(h0), _lift(xs)
    consts = [_lift(c) for c in consts]

    def traced(*nodes: Node) -> Node:
        with enable_grad():  # the body is derived later, whatever the caller's grad mode
            out = step(*(Tensor(n) for n in nodes))
        return out.node  # type: ignore[attr-defined]

    node = scan_node(traced, h0.node, xs.node, [c.node for c in consts])  # type: ignore[union-attr,attr-defined]
    return _result(node, [h0, xs, *consts])  # type: ignore[list-item]


__all__ = ["Loop", "Scan", "ScanVjp", "scan", "scan_node"]
