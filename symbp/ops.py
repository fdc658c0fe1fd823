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
from typing import Any, NamedTuple

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


@dataclass(frozen=True)
class NotApplicable:
    """A stage's row for an op that stage has no rule for, on purpose; ``why`` says why.

    Each backend stage (scheduling, emitting, formula printing, kink finding) keeps a table
    keyed by op name, one row per op of ``OPS``, and dispatches on it rather than on
    ``if node.op == ...``. This marker makes an absence deliberate (an input is never computed,
    a smooth op has no kink), so the guard in tests/test_ops.py can tell it from a forgotten
    row. The tables live in the stages' own modules: this one imports none of them.
    """

    why: str


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
    expr = scalar.gated(expr)  # ct * Heaviside(z) as a select, as compiled code (and PyTorch)
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


def _reduced(x: Node, axes: tuple[int, ...], keepdim: bool) -> Shape:
    if any(not 0 <= a < x.ndim for a in axes):
        raise shape_error(f"reduce: axes {axes} out of range for shape {shape_str(x.shape)}")
    if keepdim:
        return tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    return tuple(d for i, d in enumerate(x.shape) if i not in axes)


def _unreduce(ct: Node, x: Node, axes: tuple[int, ...]) -> Node:
    """Bring a reduction's cotangent back to the shape of its input."""
    return expand(reshape(ct, _reduced(x, axes, True)), x.shape)


class _Reduce(Op):
    """A reduction over ``axes``; arg = (axes, keepdim). ``reduce`` is its NumPy function."""

    reduce: Callable[..., np.ndarray]

    def infer(self, src, arg):
        return _reduced(src[0], *arg), src[0].dtype

    def numpy(self, node, vals, dims):
        axes, keepdim = node.arg
        return type(self).reduce(vals[0], axis=axes, keepdims=keepdim)

    def show_arg(self, node, names):
        axes, keepdim = node.arg
        return "[axes=" + ",".join(map(str, axes)) + (" keepdim]" if keepdim else "]")


@register
class Sum(_Reduce):
    """Sum over ``axes``. Adjoint: broadcast the cotangent back."""

    name = "sum"
    reduce = np.sum

    def adjoint(self, node, ct):
        return (_unreduce(ct, node.src[0], node.arg[0]),)


@register
class Max(_Reduce):
    """Max over ``axes``.

    Ties as PyTorch: ``x.max()`` over everything spreads the gradient evenly over the tied
    maxima; ``x.max(dim)`` sends it to the first maximum along ``dim``.
    """

    name = "max"
    reduce = np.max

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
    "bce": scalar.bce,
    # -- issue 12 . math (rows of this family go below this line)
    #
    # -- issue 12 . logic (rows of this family go below this line)
    #
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


# ---------------------------------------------------------------- convolution and pooling
#
# Images are NCHW, weights [out, in/groups, kh, kw], PyTorch's semantics throughout. Spatial
# sizes are ints; only the batch may be the symbol B. A kernel tap (p, q) meets, across all
# output positions, one strided slice of the padded input (``_tap``): convolutions contract
# channels over a view of all windows (``_windows``), and gradients scatter back tap by tap.
#
# The three convolution ops are one trilinear form with one argument left out,
#     T(x, w, ct) = Σ ct[n,o,y,x] · w[o,c,p,q] · xpad[n, c, y·sh + p·dh, x·sw + q·dw],
# conv2d leaving out ct, conv2d_input_grad x and conv2d_weight_grad w. So each one's adjoint is
# made of the other two, and a gradient of a gradient needs no new op.


def _pair_str(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]},{pair[1]}"


class Conv2dArg(NamedTuple):
    """How a convolution slides, each a (height, width) pair; padding ((top, bottom), (left,
    right)), asymmetric only for ``padding='same'`` with an even effective kernel."""

    stride: tuple[int, int]
    padding: tuple[tuple[int, int], tuple[int, int]]
    dilation: tuple[int, int]
    groups: int = 1

    def __str__(self) -> str:
        (t, b), (left, r) = self.padding
        pad = _pair_str((t, left)) if (t, left) == (b, r) else f"{t}:{b},{left}:{r}"
        groups = f" groups={self.groups}" if self.groups != 1 else ""
        return (
            f"stride={_pair_str(self.stride)} pad={pad} dilation={_pair_str(self.dilation)}"
            + groups
        )


class Pool2dArg(NamedTuple):
    """A pooling window, each a (height, width) pair; padding is symmetric. The last two
    fields concern average pooling only (PyTorch's count_include_pad and divisor_override)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int] = (1, 1)
    count_include_pad: bool = True
    divisor: int | None = None

    @property
    def pads(self) -> tuple[tuple[int, int], tuple[int, int]]:
        return (self.padding[0], self.padding[0]), (self.padding[1], self.padding[1])

    def __str__(self) -> str:
        out = f"kernel={_pair_str(self.kernel)} stride={_pair_str(self.stride)}"
        out += f" pad={_pair_str(self.padding)}"
        if self.dilation != (1, 1):
            out += f" dilation={_pair_str(self.dilation)}"
        if not self.count_include_pad:
            out += " count_include_pad=False"
        return out + (f" divisor={self.divisor}" if self.divisor is not None else "")


def _check_image(what: str, x: Node) -> tuple[int, int]:
    """An NCHW float tensor with int spatial sizes: its (H, W)."""
    if x.ndim != 4:
        raise shape_error(f"{what}: expects a 4-D input [N, C, H, W], got {shape_str(x.shape)}")
    h, w = x.shape[2:]
    if not (isinstance(h, int) and isinstance(w, int)):
        raise shape_error(f"{what}: spatial sizes must be numbers, got {shape_str(x.shape)}")
    if x.dtype.kind != "f":
        raise shape_error(f"{what}: expects a float input, got {x.dtype}")
    return h, w


def _window_out(what: str, shape: Shape, kernel, stride, padding, dilation) -> tuple[int, int]:
    """Output (height, width) of a window sliding over an NCHW shape; an error if it does
    not fit."""
    out = []
    for size, k, s, (lo, hi), d in zip(shape[2:], kernel, stride, padding, dilation):
        out.append((size + lo + hi - d * (k - 1) - 1) // s + 1)
    if min(out) < 1:
        (t, b), (left, r) = padding
        pad = _pair_str((t, left)) if (t, left) == (b, r) else f"{t}:{b},{left}:{r}"
        dil = f", dilation {_pair_str(dilation)}" if dilation != (1, 1) else ""
        raise shape_error(
            f"{what}: a {kernel[0]}×{kernel[1]} window (padding {pad}{dil}, stride "
            f"{_pair_str(stride)}) does not fit an input of shape {shape_str(shape)}: "
            f"the output would be {out[0]}×{out[1]}"
        )
    return out[0], out[1]


def _pad(x: np.ndarray, padding, value: float = 0) -> np.ndarray:
    (t, b), (left, r) = padding
    if not (t or b or left or r):
        return x
    return np.pad(x, ((0, 0), (0, 0), (t, b), (left, r)), constant_values=value)


def _tap(xp: np.ndarray, p: int, q: int, stride, dilation, out_hw) -> np.ndarray:
    """What kernel tap (p, q) meets at every output position: a strided view [N, C, Ho, Wo]."""
    (sh, sw), (dh, dw), (ho, wo) = stride, dilation, out_hw
    rows = slice(p * dh, p * dh + sh * (ho - 1) + 1, sh)
    cols = slice(q * dw, q * dw + sw * (wo - 1) + 1, sw)
    return xp[..., rows, cols]


def _windows(xp: np.ndarray, kernel, stride, dilation, out_hw) -> np.ndarray:
    """Every window of the padded input, as a view [N, C, Ho, Wo, kh, kw]."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    win = np.lib.stride_tricks.sliding_window_view(xp, span, axis=(2, 3))
    return win[:, :, : sh * (ho - 1) + 1 : sh, : sw * (wo - 1) + 1 : sw, ::dh, ::dw]


def _split(x: np.ndarray, axis: int, groups: int) -> list[np.ndarray]:
    return np.split(x, groups, axis=axis) if groups > 1 else [x]


@register
class Conv2d(Op):
    """x [N, C, H, W] ⋆ w [O, C/groups, kh, kw] -> [N, O, Ho, Wo]; arg: ``Conv2dArg``.

    Adjoint: the input's cotangent is a transposed convolution (``conv2d_input_grad``), the
    weight's a contraction over batch and positions (``conv2d_weight_grad``).
    """

    name = "conv2d"

    def infer(self, src, arg):
        x, w = src
        _check_image("conv2d", x)
        if w.ndim != 4:
            raise shape_error(f"conv2d: weight must be [out, in, kh, kw], got {shape_str(w.shape)}")
        if x.dtype != w.dtype:
            raise shape_error(
                f"conv2d: input is {x.dtype} but weight is {w.dtype}; convert one with "
                f".float() or .double()"
            )
        o, cg, kh, kw = w.shape
        if o % arg.groups or x.shape[1] != cg * arg.groups:
            groups = f" in {arg.groups} groups" if arg.groups != 1 else ""
            raise shape_error(
                f"conv2d: weight {shape_str(w.shape)}{groups} expects {cg * arg.groups} input "
                f"channels, got input of shape {shape_str(x.shape)}"
            )
        hw = _window_out("conv2d", x.shape, (kh, kw), arg.stride, arg.padding, arg.dilation)
        return (x.shape[0], o, *hw), x.dtype

    def numpy(self, node, vals, dims):
        x, w = vals
        a = node.arg
        win = _windows(_pad(x, a.padding), w.shape[2:], a.stride, a.dilation, node.shape[2:])
        parts = [  # per group: sum over channels and taps, [N, Ho, Wo, O/g]
            np.tensordot(xg, wg, axes=([1, 4, 5], [1, 2, 3]))
            for xg, wg in zip(_split(win, 1, a.groups), _split(w, 0, a.groups))
        ]
        out = np.concatenate(parts, axis=3) if len(parts) > 1 else parts[0]
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2), dtype=node.dtype)

    def adjoint(self, node, ct):
        x, w = node.src
        return (
            conv2d_input_grad(ct, w, node.arg, x.shape[2:]),
            conv2d_weight_grad(x, ct, node.arg, w.shape[2:]),
        )

    def show_arg(self, node, names):
        return f"[{node.arg}]"


@register
class Conv2dInputGrad(Op):
    """The transposed convolution: ct [N, O, Ho, Wo], w [O, C/g, kh, kw] -> [N, C, H, W].

    arg = (Conv2dArg, (H, W)): the input size is part of the op, since with a stride several
    sizes give the same output size. x̄[n,c,i,j] = Σ ct[n,o,y,x] w[o,c,p,q] over the (y, x, p,
    q) with i = y·sh + p·dh - top and j = x·sw + q·dw - left.
    """

    name = "conv2d_input_grad"

    def infer(self, src, arg):
        ct, w = src
        a, (h, wd) = arg
        if ct.ndim != 4 or w.ndim != 4 or ct.shape[1] != w.shape[0]:
            raise shape_error(
                f"conv2d_input_grad: cotangent {shape_str(ct.shape)} does not match weight "
                f"{shape_str(w.shape)}"
            )
        shape = (ct.shape[0], w.shape[1] * a.groups, h, wd)
        hw = _window_out("conv2d", shape, w.shape[2:], a.stride, a.padding, a.dilation)
        if hw != tuple(ct.shape[2:]):
            raise shape_error(
                f"conv2d_input_grad: cotangent {shape_str(ct.shape)} is not the output size of a "
                f"{shape_str(shape)} input"
            )
        return shape, ct.dtype

    def numpy(self, node, vals, dims):
        ct, w = vals
        a, (h, wd) = node.arg
        (t, b), (left, r) = a.padding
        cols = [  # per group: [C/g, kh, kw, N, Ho, Wo], what each tap sends back
            np.tensordot(wg, cg, axes=([0], [1]))
            for cg, wg in zip(_split(ct, 1, a.groups), _split(w, 0, a.groups))
        ]
        col = np.concatenate(cols, axis=0) if len(cols) > 1 else cols[0]
        xp = np.zeros((ct.shape[0], col.shape[0], h + t + b, wd + left + r), dtype=node.dtype)
        for p, q in np.ndindex(*w.shape[2:]):  # one tap's positions never overlap: plain +=
            tap = _tap(xp, p, q, a.stride, a.dilation, ct.shape[2:])
            tap += col[:, p, q].transpose(1, 0, 2, 3)
        return np.ascontiguousarray(xp[:, :, t : t + h, left : left + wd])

    def adjoint(self, node, ct):  # node = x̄(dy, w); ct has the input's shape
        dy, w = node.src
        a, _ = node.arg
        return (conv2d(ct, w, a), conv2d_weight_grad(ct, dy, a, w.shape[2:]))

    def show_arg(self, node, names):
        a, hw = node.arg
        return f"[{a} input={_pair_str(hw)}]"


@register
class Conv2dWeightGrad(Op):
    """The weight's cotangent: x [N, C, H, W], ct [N, O, Ho, Wo] -> [O, C/g, kh, kw].

    arg = (Conv2dArg, (kh, kw)). w̄[o,c,p,q] = Σ_{n,y,x} ct[n,o,y,x] · xpad[n, c, y·sh + p·dh,
    x·sw + q·dw]: a contraction over batch and output positions, one window per tap.
    """

    name = "conv2d_weight_grad"

    def infer(self, src, arg):
        x, ct = src
        a, (kh, kw) = arg
        _check_image("conv2d_weight_grad", x)
        if ct.ndim != 4 or ct.shape[1] % a.groups or x.shape[1] % a.groups:
            raise shape_error(
                f"conv2d_weight_grad: cotangent {shape_str(ct.shape)} does not match input "
                f"{shape_str(x.shape)} in {a.groups} groups"
            )
        hw = _window_out("conv2d", x.shape, (kh, kw), a.stride, a.padding, a.dilation)
        if hw != tuple(ct.shape[2:]):
            raise shape_error(
                f"conv2d_weight_grad: cotangent {shape_str(ct.shape)} is not the output size of "
                f"input {shape_str(x.shape)}"
            )
        return (ct.shape[1], x.shape[1] // a.groups, kh, kw), x.dtype

    def numpy(self, node, vals, dims):
        x, ct = vals
        a, kernel = node.arg
        win = _windows(_pad(x, a.padding), kernel, a.stride, a.dilation, ct.shape[2:])
        parts = [
            np.tensordot(cg, xg, axes=([0, 2, 3], [0, 2, 3]))
            for xg, cg in zip(_split(win, 1, a.groups), _split(ct, 1, a.groups))
        ]
        out = np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
        return np.ascontiguousarray(out, dtype=node.dtype)

    def adjoint(self, node, ct):  # node = w̄(x, dy); ct has the weight's shape
        x, dy = node.src
        a, _ = node.arg
        return (conv2d_input_grad(dy, ct, a, x.shape[2:]), conv2d(x, ct, a))

    def show_arg(self, node, names):
        a, kernel = node.arg
        return f"[{a} kernel={_pair_str(kernel)}]"


def _pool_out(what: str, shape: Shape, arg: Pool2dArg) -> tuple[int, int]:
    if any(p > k // 2 for p, k in zip(arg.padding, arg.kernel)):
        raise shape_error(
            f"{what}: padding {_pair_str(arg.padding)} must be at most half the kernel size "
            f"{_pair_str(arg.kernel)}"
        )
    return _window_out(what, shape, arg.kernel, arg.stride, arg.pads, arg.dilation)


def maxpool_argmax(x: np.ndarray, arg: Pool2dArg, out_hw) -> np.ndarray:
    """Which tap (row-major index p·kw + q) of each window holds its maximum, as PyTorch picks
    it: padding never, the first maximum on ties, a NaN over any number."""
    h, w = x.shape[2:]
    xp = _pad(x, arg.pads, -np.inf)
    valid = _pad(np.ones((1, 1, h, w), dtype=bool), arg.pads, False)
    best = np.full((*x.shape[:2], *out_hw), -np.inf, dtype=x.dtype)
    idx = np.full(best.shape, -1, dtype=np.int64)
    for t, (p, q) in enumerate(np.ndindex(*arg.kernel)):
        v = _tap(xp, p, q, arg.stride, arg.dilation, out_hw)
        ok = _tap(valid, p, q, arg.stride, arg.dilation, out_hw)
        take = ok & ((idx < 0) | (v > best) | np.isnan(v))
        best = np.where(take, v, best)
        idx = np.where(take, t, idx)
    return idx


@register
class MaxPool2d(Op):
    """The maximum of each window, padding with -inf; arg: ``Pool2dArg``.

    Adjoint: ``maxpool2d_grad`` routes the cotangent to each window's arg-max, ties to the
    first maximum in row-major window order, as PyTorch.
    """

    name = "maxpool2d"

    def infer(self, src, arg):
        (x,) = src
        _check_image("max_pool2d", x)
        return (*x.shape[:2], *_pool_out("max_pool2d", x.shape, arg)), x.dtype

    def numpy(self, node, vals, dims):
        a = node.arg
        xp = _pad(vals[0], a.pads, -np.inf)
        win = _windows(xp, a.kernel, a.stride, a.dilation, node.shape[2:])
        return np.ascontiguousarray(win.max(axis=(4, 5)))  # NaN propagates, as in PyTorch

    def adjoint(self, node, ct):
        return (maxpool2d_grad(node.src[0], ct, node.arg),)

    def show_arg(self, node, names):
        return f"[{node.arg}]"


@register
class MaxPool2dGrad(Op):
    """x [N, C, H, W], ct [N, C, Ho, Wo] -> x̄: ct sent to each window's arg-max (summed
    where windows overlap); arg: ``Pool2dArg``. Piecewise constant in x, linear in ct."""

    name = "maxpool2d_grad"

    def infer(self, src, arg):
        x, ct = src
        _check_image("maxpool2d_grad", x)
        if ct.shape != (*x.shape[:2], *_pool_out("maxpool2d_grad", x.shape, arg)):
            raise shape_error(
                f"maxpool2d_grad: cotangent {shape_str(ct.shape)} does not match input "
                f"{shape_str(x.shape)}"
            )
        return x.shape, x.dtype

    def numpy(self, node, vals, dims):
        x, ct = vals
        a = node.arg
        idx = maxpool_argmax(x, a, ct.shape[2:])
        (t, b), (left, r) = a.pads
        gp = np.zeros((*x.shape[:2], x.shape[2] + t + b, x.shape[3] + left + r), dtype=ct.dtype)
        for k, (p, q) in enumerate(np.ndindex(*a.kernel)):
            _tap(gp, p, q, a.stride, a.dilation, ct.shape[2:])[...] += np.where(idx == k, ct, 0)
        return np.ascontiguousarray(gp[:, :, t : t + x.shape[2], left : left + x.shape[3]])

    def adjoint(self, node, ct):
        raise NotImplementedError(
            "maxpool2d_grad: no double backward through max pooling: the cotangent of its "
            "routing would gather ct at each window's arg-max, an op symbp does not have"
        )

    def show_arg(self, node, names):
        return f"[{node.arg}]"


def _avg_divisor(arg: Pool2dArg, hw, out_hw) -> np.ndarray | int:
    """What each window's sum is divided by: the override, the window size, or the count of
    entries inside the input (count_include_pad=False)."""
    if arg.divisor is not None:
        return arg.divisor
    if arg.count_include_pad:  # without ceil_mode a window never leaves the padded input
        return arg.kernel[0] * arg.kernel[1]
    inside = _pad(np.ones((1, 1, *hw)), arg.pads)
    return _windows(inside, arg.kernel, arg.stride, arg.dilation, out_hw).sum(axis=(4, 5))


@register
class AvgPool2d(Op):
    """The mean of each window (zero padding); arg: ``Pool2dArg``. Adjoint: ``avgpool2d_grad``."""

    name = "avgpool2d"

    def infer(self, src, arg):
        (x,) = src
        _check_image("avg_pool2d", x)
        return (*x.shape[:2], *_pool_out("avg_pool2d", x.shape, arg)), x.dtype

    def numpy(self, node, vals, dims):
        a = node.arg
        (x,) = vals
        win = _windows(_pad(x, a.pads), a.kernel, a.stride, a.dilation, node.shape[2:])
        div = _avg_divisor(a, x.shape[2:], node.shape[2:])
        return np.ascontiguousarray(win.sum(axis=(4, 5)) / div, dtype=node.dtype)

    def adjoint(self, node, ct):
        return (avgpool2d_grad(ct, node.arg, node.src[0].shape[2:]),)

    def show_arg(self, node, names):
        return f"[{node.arg}]"


@register
class AvgPool2dGrad(Op):
    """ct [N, C, Ho, Wo] -> x̄ [N, C, H, W]: each window's share ct / divisor spread over it;
    arg = (Pool2dArg, (H, W)). Linear, so its adjoint is ``avgpool2d`` again."""

    name = "avgpool2d_grad"

    def infer(self, src, arg):
        (ct,) = src
        a, (h, w) = arg
        shape = (*ct.shape[:2], h, w)
        if ct.ndim != 4 or _pool_out("avgpool2d_grad", shape, a) != tuple(ct.shape[2:]):
            raise shape_error(
                f"avgpool2d_grad: cotangent {shape_str(ct.shape)} does not match an input of "
                f"shape {shape_str(shape)}"
            )
        return shape, ct.dtype

    def numpy(self, node, vals, dims):
        (ct,) = vals
        a, (h, w) = node.arg
        share = ct / _avg_divisor(a, (h, w), ct.shape[2:])
        (t, b), (left, r) = a.pads
        gp = np.zeros((*ct.shape[:2], h + t + b, w + left + r), dtype=node.dtype)
        for p, q in np.ndindex(*a.kernel):
            _tap(gp, p, q, a.stride, a.dilation, ct.shape[2:])[...] += share
        return np.ascontiguousarray(gp[:, :, t : t + h, left : left + w])

    def adjoint(self, node, ct):
        return (avgpool2d(ct, node.arg[0]),)

    def show_arg(self, node, names):
        a, hw = node.arg
        return f"[{a} input={_pair_str(hw)}]"


# The bernoulli op's bits: splitmix64 (Steele, Lea and Flood 2014), counter-based. Entry i
# (C order) of a mask drawn from ``seed`` is 1 iff mix(mix(seed) + (i + 1)·GOLDEN) < prob·2⁶⁴,
# all in uint64 arithmetic, so the NumPy reference here and the Numba kernels
# (``symbp.lower.support.bernoulli_bits``) give the very same mask, bit for bit.
GOLDEN = 0x9E3779B97F4A7C15


def mix64(z: Any) -> Any:
    """splitmix64's finalizer on uint64 values (arrays or scalars), wrapping mod 2⁶⁴."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def bernoulli_threshold(prob: float) -> int | None:
    """The uint64 a hash must be below for a 1: floor(prob·2⁶⁴); None for prob 1 (always)."""
    return None if prob >= 1.0 else int(prob * 2.0**64)


def bernoulli_mask(seed: int, prob: float, shape: tuple[int, ...]) -> np.ndarray:
    """The bernoulli op's 0/1 pattern (bool) for ``seed``, vectorised over the flat index."""
    thr = bernoulli_threshold(prob)
    if thr is None:
        return np.ones(shape, bool)
    key = mix64(np.array([int(seed) & (2**64 - 1)], np.uint64))  # the seed's 64 bits
    with np.errstate(over="ignore"):
        counter = (np.arange(1, int(np.prod(shape)) + 1, dtype=np.uint64)) * np.uint64(GOLDEN)
        return (mix64(key + counter) < np.uint64(thr)).reshape(shape)


@register
class Bernoulli(Op):
    """Random 0/1 entries, 1 with probability ``prob``; src (seed,), arg (prob, shape, dtype).

    The dropout mask. Its randomness is an input: an int64 scalar seed, drawn from symbp's
    generator per call (eager) or derived per step (compiled, ``support.dropout_seed``), so a
    program is a pure function of its inputs and the backward pass sees the very mask the
    forward drew. Entry i is a counter-based hash of (seed, i) (``bernoulli_mask``), so every
    backend draws the same mask from the same seed. Not differentiable.
    """

    name = "bernoulli"
    differentiable = False

    def infer(self, src, arg):
        (seed,) = src
        if seed.ndim != 0 or seed.dtype.kind not in "iu":
            raise shape_error(f"bernoulli: the seed must be an integer scalar, got {seed.dtype}")
        prob, shape, dtype = arg
        if not 0.0 <= prob <= 1.0:
            raise shape_error(f"bernoulli: the probability must be in [0, 1], got {prob}")
        return tuple(shape), dtype

    def numpy(self, node, vals, dims):
        from symbp.ir import concrete

        mask = bernoulli_mask(int(vals[0]), node.arg[0], concrete(node.shape, dims))
        return mask.astype(node.dtype)

    def adjoint(self, node, ct):
        return (None,)

    def show_arg(self, node, names):
        return f"[p={node.arg[0]}]"


def conv2d(x: Node, w: Node, arg: Conv2dArg) -> Node:
    return make("conv2d", (x, w), arg)


def conv2d_input_grad(ct: Node, w: Node, arg: Conv2dArg, size: Sequence[Dim]) -> Node:
    return make("conv2d_input_grad", (ct, w), (arg, (int(size[0]), int(size[1]))))


def conv2d_weight_grad(x: Node, ct: Node, arg: Conv2dArg, kernel: Sequence[Dim]) -> Node:
    return make("conv2d_weight_grad", (x, ct), (arg, (int(kernel[0]), int(kernel[1]))))


def maxpool2d(x: Node, arg: Pool2dArg) -> Node:
    return make("maxpool2d", (x,), arg)


def maxpool2d_grad(x: Node, ct: Node, arg: Pool2dArg) -> Node:
    return make("maxpool2d_grad", (x, ct), arg)


def avgpool2d(x: Node, arg: Pool2dArg) -> Node:
    return make("avgpool2d", (x,), arg)


def avgpool2d_grad(ct: Node, arg: Pool2dArg, size: Sequence[Dim]) -> Node:
    return make("avgpool2d_grad", (ct,), (arg, (int(size[0]), int(size[1]))))


def bernoulli(seed: Node, prob: float, shape: Shape, dtype: np.dtype) -> Node:
    return make("bernoulli", (seed,), (float(prob), tuple(shape), np.dtype(dtype)))


# ---------------------------------------------------------------- end of convolution and pooling


# ---------------------------------------------------------------- the tensor language (issue 12)
# -- issue 12 . math (rows of this family go below this line)
#
# -- issue 12 . logic (rows of this family go below this line)
#
# -- issue 12 . indexing (rows of this family go below this line)
#
# -- issue 12 . shaping (rows of this family go below this line)
#
# -- issue 12 . reductions (rows of this family go below this line)
#
# -- issue 12 . linalg (rows of this family go below this line)
#


FLOATS = (float32, float64)
__all__ = ["ELEMENTWISE", "OPS", "Formula", "NotApplicable", "Op", "int64"]
