"""The op table: each op in one place, with its shape rule, NumPy reference and adjoint.

There are few primitive ops. Every elementwise op is one ``ew`` node carrying its SymPy
formula (``Formula``); the named elementwise ops users call (``add``, ``sigmoid``, custom
ones from ``symbp.elementwise``) are entries of ``ELEMENTWISE``, not ops of their own. Their
derivatives come from ``sympy.diff`` in ``autodiff``. The structural ops (``expand``,
``reshape``, ``transpose``, ``sum``, ``max``, ``matmul`` ...) each state their adjoint rule
right beside their forward rule, micrograd-style.

The builder functions at the bottom (``add``, ``matmul``, ``sum_`` ...) are how the rest of
symbp makes nodes: they check shapes, fold the trivial cases (a reshape to the same shape is
no node at all) and return interned ``Node``s.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy

from symbp import scalar
from symbp.ir import (
    DTYPE_NAMES,
    Dim,
    Node,
    Shape,
    float32,
    float64,
    int64,
    numel,
    shape_error,
    shape_str,
)

# ---------------------------------------------------------------- formulas of elementwise nodes

_X: list[sympy.Symbol] = []


def xsym(i: int) -> sympy.Symbol:
    """The i-th positional input symbol of an elementwise formula: x0, x1, ..."""
    while len(_X) <= i:
        _X.append(sympy.Symbol(f"x{len(_X)}", real=True))
    return _X[i]


_T: list[sympy.Symbol] = []


def _tsym(i: int) -> sympy.Symbol:
    while len(_T) <= i:
        _T.append(sympy.Symbol(f"_t{len(_T)}", real=True))
    return _T[i]


@dataclass(frozen=True)
class Formula:
    """The scalar SymPy expression an ``ew`` node applies elementwise to its sources.

    ``expr`` mentions ``x0 .. x{n-1}`` for the node's n sources (and maybe the batch symbol B,
    as in the 1/B of a mean). ``label`` names it for printing; it is not part of its identity.
    """

    expr: sympy.Expr
    label: str = field(default="", compare=False)

    def __str__(self) -> str:
        # The op's name where the formula is exactly that op, else the formula itself.
        fn = ELEMENTWISE.get(self.label)
        if fn is not None:
            n = len(self.expr.free_symbols - {s for s in self.expr.free_symbols if s.name == "B"})
            try:
                if fn(*(xsym(i) for i in range(n))) == self.expr:
                    return self.label
            except TypeError:
                pass
        return str(self.expr)


def to_expr(value: Any) -> sympy.Expr:
    """A Python or NumPy number as SymPy: simple binary fractions stay exact (x/2, not 0.5*x)."""
    if isinstance(value, sympy.Basic):
        return value  # type: ignore[return-value]
    if isinstance(value, (bool, np.bool_)):
        return sympy.Integer(int(value))
    if isinstance(value, (int, np.integer)):
        return sympy.Integer(int(value))
    v = float(value)
    if not np.isfinite(v):
        return {np.inf: sympy.oo, -np.inf: -sympy.oo}.get(v, sympy.nan)  # type: ignore[call-overload]
    for k in range(0, 11):
        if (v * 2**k).is_integer() and abs(v * 2**k) < 2**31:
            return sympy.Rational(int(v * 2**k), 2**k)
    return sympy.Float(repr(v))  # repr round-trips the double exactly


# ---------------------------------------------------------------- the table


class Op:
    """One primitive: shape rule, NumPy reference, adjoint. Subclasses fill in what applies."""

    name = ""
    differentiable = True

    def infer(self, src: tuple[Node, ...], arg: Any) -> tuple[Shape, np.dtype]:
        raise NotImplementedError

    def numpy(self, node: Node, vals: list[np.ndarray], dims: dict) -> np.ndarray:
        raise NotImplementedError

    def adjoint(self, node: Node, ct: Node) -> Sequence[Node | None]:
        """Cotangents of the sources, given ``ct``, the cotangent of ``node``'s output."""
        raise NotImplementedError(f"no adjoint rule for {self.name}")

    def show_arg(self, node: Node, names: list[str]) -> str:
        if node.arg is None:
            return ""
        if isinstance(node.arg, tuple) and all(isinstance(a, (int, sympy.Expr)) for a in node.arg):
            return "[" + ",".join(str(a) for a in node.arg) + "]"  # a shape or a permutation
        return f"[{node.arg}]"


OPS: dict[str, Op] = {}


def register(cls: type[Op]) -> type[Op]:
    OPS[cls.name] = cls()
    return cls


@register
class Input(Op):
    """A leaf: data or a parameter, bound by name when the program runs."""

    name = "input"


@register
class Const(Op):
    """A tensor filled with one value (a SymPy number, maybe in B, as in 1/B)."""

    name = "const"
    differentiable = False

    def numpy(self, node, vals, dims):
        value = float(sympy.sympify(node.arg).xreplace(dims))
        from symbp.ir import concrete

        return np.full(concrete(node.shape, dims), value, dtype=node.dtype)

    def show_arg(self, node, names):
        return f"[{node.arg}]"


@register
class Elementwise(Op):
    """Apply a scalar SymPy formula to same-shaped sources, element by element.

    Its derivative is not a rule here: ``autodiff`` fuses chains of these into one formula and
    differentiates that with ``sympy.diff``.
    """

    name = "ew"

    def numpy(self, node, vals, dims):
        if any(v.dtype == object for v in vals):  # symbolic evaluation (formulas.scalar_level)
            return _ew_object(node.arg.expr, vals, dims, node.shape)
        fn = _lambdified(node.arg.expr, len(node.src), tuple(sorted(dims.items(), key=str)))
        with np.errstate(all="ignore"):  # inf/nan propagate like PyTorch; gradcheck reports them
            out = fn(*vals)
        return np.broadcast_to(np.asarray(out, dtype=node.dtype), vals[0].shape).copy()

    def show_arg(self, node, names):
        return "[" + str(node.arg) + "]"


@functools.lru_cache(maxsize=4096)
def _lambdified(expr: sympy.Expr, n: int, dims: tuple) -> Callable:
    expr = expr.xreplace(dict(dims)) if dims else expr
    return sympy.lambdify([xsym(i) for i in range(n)], expr, modules=[scalar.NUMPY, "numpy"])


def _ew_object(expr, vals, dims, shape):
    shape_ = np.broadcast_shapes(*(v.shape for v in vals))
    out = np.empty(shape_, dtype=object)
    vals = [np.broadcast_to(v, shape_) for v in vals]
    expr = expr.xreplace(dims)
    for idx in np.ndindex(shape_):
        out[idx] = expr.xreplace({xsym(i): sympy.sympify(v[idx]) for i, v in enumerate(vals)})
    return out


@register
class Cast(Op):
    name = "cast"

    def infer(self, src, arg):
        return src[0].shape, arg

    def show_arg(self, node, names):
        return f"[{DTYPE_NAMES.get(node.dtype, node.dtype)}]"

    def numpy(self, node, vals, dims):
        return vals[0].astype(node.dtype)

    def adjoint(self, node, ct):
        x = node.src[0]
        return (cast(ct, x.dtype) if x.dtype.kind == "f" else None,)


@register
class Expand(Op):
    """Broadcast size-1 axes to ``arg`` (same rank). Adjoint: sum over the broadcast axes."""

    name = "expand"

    def infer(self, src, arg):
        (x,) = src
        if len(arg) != x.ndim or any(a != b and a != 1 for a, b in zip(x.shape, arg)):
            raise shape_error(f"expand: cannot broadcast {shape_str(x.shape)} to {shape_str(arg)}")
        return tuple(arg), x.dtype

    def numpy(self, node, vals, dims):
        from symbp.ir import concrete

        return np.broadcast_to(vals[0], concrete(node.shape, dims))

    def adjoint(self, node, ct):
        x = node.src[0]
        axes = tuple(i for i, (a, b) in enumerate(zip(x.shape, node.shape)) if a != b)
        return (sum_(ct, axes, keepdim=True),)


@register
class Reshape(Op):
    name = "reshape"

    def infer(self, src, arg):
        (x,) = src
        if sympy.simplify(numel(arg) - numel(x.shape)) != 0:
            raise shape_error(f"reshape: cannot reshape {shape_str(x.shape)} to {shape_str(arg)}")
        return tuple(arg), x.dtype

    def numpy(self, node, vals, dims):
        from symbp.ir import concrete

        return vals[0].reshape(concrete(node.shape, dims))

    def adjoint(self, node, ct):
        return (reshape(ct, node.src[0].shape),)


@register
class Transpose(Op):
    """Permute axes: out.shape[i] = x.shape[arg[i]]."""

    name = "transpose"

    def infer(self, src, arg):
        (x,) = src
        if sorted(arg) != list(range(x.ndim)):
            raise shape_error(f"transpose: {arg} is not a permutation of {x.ndim} axes")
        return tuple(x.shape[a] for a in arg), x.dtype

    def numpy(self, node, vals, dims):
        return np.transpose(vals[0], node.arg)

    def adjoint(self, node, ct):
        return (transpose(ct, tuple(np.argsort(node.arg).tolist())),)


def _show_reduce(node: Node, names: list[str]) -> str:
    axes, keepdim = node.arg
    return "[axes=" + ",".join(map(str, axes)) + (" keepdim]" if keepdim else "]")


def _reduced(x: Node, axes: tuple[int, ...], keepdim: bool) -> Shape:
    if any(not 0 <= a < x.ndim for a in axes):
        raise shape_error(f"reduce: axes {axes} out of range for shape {shape_str(x.shape)}")
    if keepdim:
        return tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    return tuple(d for i, d in enumerate(x.shape) if i not in axes)


def _unreduce(ct: Node, x: Node, axes: tuple[int, ...]) -> Node:
    """Bring a reduction's cotangent back to the shape of its input."""
    return expand(reshape(ct, _reduced(x, axes, True)), x.shape)


@register
class Sum(Op):
    """Sum over ``axes``; arg = (axes, keepdim). Adjoint: broadcast the cotangent back."""

    name = "sum"

    show_arg = staticmethod(_show_reduce)

    def infer(self, src, arg):
        return _reduced(src[0], *arg), src[0].dtype

    def numpy(self, node, vals, dims):
        axes, keepdim = node.arg
        return np.sum(vals[0], axis=axes, keepdims=keepdim)

    def adjoint(self, node, ct):
        return (_unreduce(ct, node.src[0], node.arg[0]),)


@register
class Max(Op):
    """Max over ``axes``; arg = (axes, keepdim).

    Ties as PyTorch: ``x.max()`` over everything spreads the gradient evenly over the tied
    maxima; ``x.max(dim)`` sends it to the first maximum along ``dim``.
    """

    name = "max"

    show_arg = staticmethod(_show_reduce)

    def infer(self, src, arg):
        return _reduced(src[0], *arg), src[0].dtype

    def numpy(self, node, vals, dims):
        axes, keepdim = node.arg
        return np.max(vals[0], axis=axes, keepdims=keepdim)

    def adjoint(self, node, ct):
        x = node.src[0]
        axes = node.arg[0]
        if len(axes) == 1 and x.ndim > 1:
            mask = make("argmax", (x,), axes[0])
        else:
            top = _unreduce(node, x, axes)
            hit = ew(sympy.Piecewise((1, sympy.Eq(xsym(0), xsym(1))), (0, True)), [x, top])
            mask = ew(xsym(0) / xsym(1), [hit, _unreduce(sum_(hit, axes, True), x, axes)])
        return (ew(xsym(0) * xsym(1), [_unreduce(ct, x, axes), mask], label="mul"),)


@register
class Argmax(Op):
    """One-hot of the first maximum along axis ``arg`` (the routing mask of ``max(dim)``)."""

    name = "argmax"
    differentiable = False

    def infer(self, src, arg):
        return src[0].shape, src[0].dtype

    def numpy(self, node, vals, dims):
        x = vals[0]
        idx = np.expand_dims(np.argmax(x, axis=node.arg), node.arg)
        out = np.zeros_like(x)
        np.put_along_axis(out, idx, 1, axis=node.arg)
        return out


@register
class Detach(Op):
    """The identity with no gradient (stop_gradient)."""

    name = "detach"
    differentiable = False  # no gradient flows through: what only it reads needs no backward

    def infer(self, src, arg):
        return src[0].shape, src[0].dtype

    def numpy(self, node, vals, dims):
        return vals[0]

    def adjoint(self, node, ct):
        return (None,)


@register
class Matmul(Op):
    """[m, k] @ [k, n] -> [m, n]. Adjoint: ct @ y.T and x.T @ ct."""

    name = "matmul"

    def infer(self, src, arg):
        x, y = src
        if x.ndim != 2 or y.ndim != 2:
            raise shape_error(
                f"matmul: expects 2-D operands, got {shape_str(x.shape)} @ {shape_str(y.shape)}"
            )
        if x.shape[1] != y.shape[0]:
            raise shape_error(
                f"matmul: inner dimensions differ: {shape_str(x.shape)} @ {shape_str(y.shape)} "
                f"({x.shape[1]} != {y.shape[0]})"
            )
        if x.dtype != y.dtype:
            raise shape_error(f"matmul: dtypes differ: {x.dtype} @ {y.dtype}")
        return (x.shape[0], y.shape[1]), x.dtype

    def numpy(self, node, vals, dims):
        x, y = vals
        if x.dtype == object or y.dtype == object:
            return np.dot(x, y)
        return x @ y

    def adjoint(self, node, ct):
        x, y = node.src
        return (matmul(ct, transpose(y, (1, 0))), matmul(transpose(x, (1, 0)), ct))


@register
class Onehot(Op):
    """Integer labels [..] -> one-hot [.., C]; arg = (C, dtype). Labels index the last axis."""

    name = "onehot"
    differentiable = False

    def infer(self, src, arg):
        (y,) = src
        if y.dtype.kind not in "iu":
            raise shape_error(f"onehot: labels must be integers, got {y.dtype}")
        return (*y.shape, arg[0]), arg[1]

    def show_arg(self, node, names):
        return f"[{node.arg[0]}]"

    def numpy(self, node, vals, dims):
        (y,) = vals
        classes = node.arg[0]
        if y.size and (y.min() < 0 or y.max() >= classes):
            bad = y[(y < 0) | (y >= classes)].ravel()[0]
            raise IndexError(f"label {bad} out of range for {classes} classes{_where_hint()}")
        return (y[..., None] == np.arange(classes)).astype(node.dtype)


def _where_hint() -> str:
    from symbp.ir import where

    return where()


# ---------------------------------------------------------------- elementwise vocabulary

# name -> SymPy scalar formula. One row per elementwise op; symbp.elementwise() adds rows.
ELEMENTWISE: dict[str, Callable[..., sympy.Expr]] = {
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "div": lambda x, y: x / y,
    "pow": lambda x, y: x**y,
    "neg": lambda x: -x,
    "exp": sympy.exp,
    "log": sympy.log,
    "sqrt": sympy.sqrt,
    "abs": sympy.Abs,
    "sigmoid": scalar.sigmoid,
    "tanh": sympy.tanh,
    "relu": scalar.relu,
    "softplus": scalar.softplus,
    "gelu": lambda x: x / 2 * (1 + sympy.erf(x / sympy.sqrt(2))),
    "silu": lambda x: x * scalar.sigmoid(x),
    "maximum": sympy.Max,
    "minimum": sympy.Min,
    "clog": scalar.clog,
}


def arity(name: str) -> int:
    fn: Any = ELEMENTWISE[name]
    if isinstance(fn, type) and issubclass(fn, sympy.Function):
        nargs = getattr(fn, "nargs", None)
        return min(nargs) if isinstance(nargs, sympy.FiniteSet) else 1  # type: ignore[arg-type]
    if fn in (sympy.Max, sympy.Min):
        return 2
    return fn.__code__.co_argcount  # type: ignore[union-attr]


# ---------------------------------------------------------------- builders


def make(op: str, src: tuple[Node, ...], arg: Any = None) -> Node:
    shape, dtype = OPS[op].infer(src, arg)
    return Node(op, src, arg, shape, dtype)


def const(value: Any, shape: Shape = (), dtype: np.dtype = float32) -> Node:
    return Node("const", (), to_expr(value), shape, dtype)


def ew(
    expr: sympy.Expr,
    src: Sequence[Node],
    label: str = "",
    shape: Shape | None = None,
    dtype: np.dtype | None = None,
) -> Node:
    """An elementwise node computing ``expr`` (in x0, x1 ... for ``src``), simplified as built.

    Constant sources are folded into the formula, unused or repeated sources dropped, and an
    identity formula returns its source: so the graph never holds x*1, x+0 or const-only math.
    """
    src = list(src)
    if shape is None:
        shape = src[0].shape
    if dtype is None:
        floats = {s.dtype for s in src if s.op != "const" and s.dtype.kind == "f"}
        if len(floats) > 1:
            names = " and ".join(sorted(str(d) for d in floats))
            raise shape_error(
                f"{label or 'elementwise op'}: mixes {names} tensors; convert one with "
                f".float() or .double()"
            )
        dtype = floats.pop() if floats else (src[0].dtype if src else float32)
    for s in src:
        if s.shape != shape:
            raise shape_error(
                f"{label or 'elementwise op'}: operand shapes differ: "
                + ", ".join(shape_str(s.shape) for s in src)
            )
    # Fold constants into the formula and give repeated sources one symbol. Symbols pass
    # through a temporary pool so that renumbering x1->x0 and x0->x1 cannot collide.
    sub: dict[sympy.Symbol, sympy.Expr] = {}
    kept: list[Node] = []
    for i, s in enumerate(src):
        if s.op == "const":
            sub[xsym(i)] = s.arg
        else:
            if s not in kept:
                kept.append(s)
            sub[xsym(i)] = _tsym(kept.index(s))
    expr = sympy.sympify(expr).xreplace(sub)
    free = expr.free_symbols
    used = [j for j in range(len(kept)) if _tsym(j) in free]
    expr = expr.xreplace({_tsym(j): xsym(k) for k, j in enumerate(used)})
    kept = [kept[j] for j in used]
    if not kept:
        return const(expr, shape, dtype)
    if expr == xsym(0) and kept[0].dtype == dtype:
        return kept[0]
    return Node("ew", tuple(kept), Formula(expr, label), shape, dtype)


def apply(name: str, *args: Node | Any, shape: Shape | None = None) -> Node:
    """Apply the named elementwise op of ``ELEMENTWISE`` to same-shaped nodes or numbers."""
    nodes = [a for a in args if isinstance(a, Node)]
    syms = iter(xsym(i) for i in itertools.count())
    inputs = [next(syms) if isinstance(a, Node) else to_expr(a) for a in args]
    return ew(ELEMENTWISE[name](*inputs), nodes, label=name, shape=shape)


def cast(x: Node, dtype: np.dtype) -> Node:
    return x if x.dtype == dtype else make("cast", (x,), np.dtype(dtype))


def expand(x: Node, shape: Shape) -> Node:
    shape = tuple(shape)
    if x.shape == shape:
        return x
    if x.op == "const":
        return const(x.arg, shape, x.dtype)
    return make("expand", (x,), shape)


def reshape(x: Node, shape: Shape) -> Node:
    shape = tuple(shape)
    if x.shape == shape:
        return x
    if x.op == "const":
        return const(x.arg, shape, x.dtype)
    if x.op == "reshape":  # reshape of a reshape is one reshape
        return reshape(x.src[0], shape)
    return make("reshape", (x,), shape)


def transpose(x: Node, perm: tuple[int, ...]) -> Node:
    perm = tuple(perm)
    if perm == tuple(range(x.ndim)):
        return x
    if x.op == "const":
        return const(x.arg, tuple(x.shape[p] for p in perm), x.dtype)
    if x.op == "transpose":  # compose permutations
        return transpose(x.src[0], tuple(x.arg[p] for p in perm))
    return make("transpose", (x,), perm)


def sum_(x: Node, axes: Sequence[int], keepdim: bool = False) -> Node:
    axes = tuple(sorted(a % x.ndim for a in axes)) if x.ndim else ()
    if not axes:
        return x
    if x.op == "const":  # a sum of a constant is the constant times the count
        count = numel(tuple(x.shape[a] for a in axes))
        return const(x.arg * count, _reduced(x, axes, keepdim), x.dtype)
    return make("sum", (x,), (axes, keepdim))


def max_(x: Node, axes: Sequence[int], keepdim: bool = False) -> Node:
    axes = tuple(sorted(a % x.ndim for a in axes)) if x.ndim else ()
    return make("max", (x,), (axes, keepdim)) if axes else x


def matmul(x: Node, y: Node) -> Node:
    return make("matmul", (x, y))


def onehot(y: Node, classes: int, dtype: np.dtype) -> Node:
    return make("onehot", (y,), (int(classes), np.dtype(dtype)))


def detach(x: Node) -> Node:
    return x if x.op in ("const", "detach") else make("detach", (x,))


def broadcast_shapes(*shapes: Shape, what: str = "broadcast") -> Shape:
    """NumPy broadcasting of (possibly symbolic) shapes, with an error naming both shapes."""
    ndim = max(len(s) for s in shapes)
    out: list[Dim] = []
    for i in range(ndim):
        dims = {s[i - ndim + len(s)] for s in shapes if i - ndim + len(s) >= 0}
        dims.discard(1)
        if len(dims) > 1:
            raise shape_error(
                f"{what}: shapes "
                + " and ".join(shape_str(s) for s in shapes)
                + " do not broadcast"
            )
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def broadcast_to(x: Node, shape: Shape) -> Node:
    """Reshape (prepend 1s) then expand, NumPy-style."""
    if x.shape == tuple(shape):
        return x
    lead = len(shape) - x.ndim
    return expand(reshape(x, (1,) * lead + tuple(x.shape)), shape)


FLOATS = (float32, float64)
__all__ = ["ELEMENTWISE", "OPS", "Formula", "Op", "int64"]
