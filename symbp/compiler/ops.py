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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import sympy
from sympy.codegen import cfunctions

from symbp.compiler import scalar
from symbp.compiler.ir import (
    DTYPE_NAMES,
    Dim,
    Node,
    Shape,
    float32,
    int64,
    numel,
    shape_error,
    shape_str,
    shown_names,
    toposort,
    type_str,
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
        from symbp.compiler.ir import concrete

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
        from symbp.compiler.ir import concrete

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
        from symbp.compiler.ir import concrete

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

    Ties as PyTorch's ``x.max()`` and ``amax``: the gradient is spread evenly over the tied
    maxima. ``x.max(dim)``, which sends it to the first maximum, is not this op: it is
    ``take_along`` at ``argidx`` (see ``symbp.tensor.max``).
    """

    name = "max"
    reduce = np.max

    def adjoint(self, node, ct):
        x = node.src[0]
        axes = node.arg[0]
        top = _unreduce(node, x, axes)
        hit = ew(sympy.Piecewise((1, sympy.Eq(xsym(0), xsym(1))), (0, True)), [x, top])
        mask = ew(xsym(0) / xsym(1), [hit, _unreduce(sum_(hit, axes, True), x, axes)])
        return (ew(xsym(0) * xsym(1), [_unreduce(ct, x, axes), mask], label="mul"),)


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
    from symbp.compiler.ir import where

    return where()


# ---------------------------------------------------------------- elementwise vocabulary

# name -> SymPy scalar formula. One row per elementwise op; symbp.elementwise() adds rows.
ELEMENTWISE: dict[str, Callable[..., sympy.Expr]] = {
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "div": lambda x, y: x / y,
    "pow": scalar.pow,  # x**y; two tensors: PyTorch's gradient at x = 0 (scalar.pow)
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
    # Parameters (slopes, alphas, bounds) are trailing arguments with PyTorch's defaults: a
    # number passed to ``apply`` folds into the formula as a constant. The piecewise ones put
    # each boundary point in the branch whose derivative is PyTorch's there (hardtanh'(±1) = 0,
    # leaky_relu'(0) = slope, elu'(0) = alpha, threshold'(t) = 0): see scalar.Pieces.
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tan": sympy.tan,
    "asin": sympy.asin,
    "acos": sympy.acos,
    "atan": sympy.atan,
    "atan2": scalar.atan2,  # PyTorch's gradient 0 where x² + y² is 0
    "sinh": sympy.sinh,
    "cosh": sympy.cosh,
    "asinh": sympy.asinh,
    "acosh": sympy.acosh,
    "atanh": sympy.atanh,
    "exp2": cfunctions.exp2,
    "expm1": cfunctions.expm1,
    "log2": cfunctions.log2,
    "log10": cfunctions.log10,
    "log1p": cfunctions.log1p,
    "rsqrt": lambda x: 1 / sympy.sqrt(x),
    "reciprocal": lambda x: 1 / x,
    "square": lambda x: x**2,
    "erf": sympy.erf,
    "erfc": sympy.erfc,
    "erfinv": sympy.erfinv,
    "floor": scalar.floor,
    "ceil": scalar.ceil,
    "round": scalar.round,
    "trunc": scalar.trunc,
    "frac": lambda x: x - scalar.trunc(x),
    "fmod": scalar.fmod,
    "remainder": scalar.remainder,
    "lerp": lambda x, y, w: x + w * (y - x),
    "hypot": cfunctions.hypot,
    "xlogy": scalar.xlogy,
    "logaddexp": scalar.logaddexp,
    "logsigmoid": lambda x: -scalar.softplus(-x),
    # the piecewise activations: opaque functions of scalar.py (scalar.Pieces)
    "softplus_threshold": lambda x, beta=1, threshold=20: scalar.softplus_threshold(
        x, beta, threshold
    ),
    "relu6": scalar.relu6,
    "leaky_relu": lambda x, negative_slope=0.01: scalar.leaky_relu(x, negative_slope),
    "elu": lambda x, alpha=1: scalar.elu(x, alpha),
    "selu": scalar.selu,
    "celu": lambda x, alpha=1: scalar.celu(x, alpha),
    "gelu_tanh": lambda x: (
        x / 2 * (1 + sympy.tanh(sympy.sqrt(2 / sympy.pi) * (x + sympy.Float("0.044715") * x**3)))
    ),
    "mish": lambda x: x * sympy.tanh(scalar.softplus(x)),
    "hardtanh": lambda x, min_val=-1, max_val=1: scalar.hardtanh(x, min_val, max_val),
    "hardsigmoid": scalar.hardsigmoid,
    "hardswish": scalar.hardswish,
    "softsign": lambda x: x / (1 + sympy.Abs(x)),
    "tanhshrink": lambda x: x - sympy.tanh(x),
    "threshold": lambda x, threshold, value: scalar.threshold(x, threshold, value),
    "nan_to_num": lambda x, nan=0, posinf=None, neginf=None, big=None: scalar.nan_to_num(
        x, nan, *_infinities(posinf, neginf, big)
    ),
    #
    # -- issue 12 . logic (rows of this family go below this line)
    # Comparisons, logical ops and tests are 0/1 indicators on nodes of dtype bool (see
    # ``indicator``); ``where``/``clamp``/``fmax``/``fmin``/``sign`` are float formulas whose
    # Piecewise branches route the gradient as PyTorch's backward formulas do.
    "eq": lambda x, y: indicator(sympy.Eq(x, y)),
    "ne": lambda x, y: indicator(sympy.Ne(x, y)),
    "lt": lambda x, y: indicator(sympy.Lt(x, y)),
    "le": lambda x, y: indicator(sympy.Le(x, y)),
    "gt": lambda x, y: indicator(sympy.Gt(x, y)),
    "ge": lambda x, y: indicator(sympy.Ge(x, y)),
    "logical_not": lambda x: indicator(sympy.Eq(x, 0)),
    "logical_and": lambda x, y: indicator(sympy.Ne(x, 0) & sympy.Ne(y, 0)),
    "logical_or": lambda x, y: indicator(sympy.Ne(x, 0) | sympy.Ne(y, 0)),
    "logical_xor": lambda x, y: indicator(
        (sympy.Ne(x, 0) & sympy.Eq(y, 0)) | (sympy.Eq(x, 0) & sympy.Ne(y, 0))
    ),
    "isnan": lambda x: isnan(x),
    "isinf": lambda x: isinf(x),
    "isposinf": lambda x: isposinf(x),
    "isneginf": lambda x: isneginf(x),
    "isfinite": lambda x: isfinite(x),
    "where": lambda c, x, y: sympy.Piecewise((x, sympy.Ne(c, 0)), (y, True)),
    "clamp": lambda x, lo, hi: clamp_formula(x, lo, hi),
    # fmax/fmin: the number wins over a NaN; PyTorch sends a tie's gradient to the first
    "fmax": lambda x, y: sympy.Piecewise((x, (x >= y) | sympy.Eq(isnan(y), 1)), (y, True)),
    "fmin": lambda x, y: sympy.Piecewise((x, (x <= y) | sympy.Eq(isnan(y), 1)), (y, True)),
    # sign(NaN) is 0 in PyTorch, and its gradient is 0 everywhere (no DiracDelta)
    "sign": lambda x: sympy.Piecewise((1, x > 0), (-1, x < 0), (0, True)),
    #
}


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
# (``symbp.compiler.lower.support.bernoulli_bits``) give the very same mask, bit for bit.
# These are splitmix64's constants for all of symbp: the Numba side (``support.mix64``, which
# the masks, the dropout seeds and the epoch shuffle use) imports them from here.
GOLDEN = 0x9E3779B97F4A7C15  # the counter's step, 2⁶⁴/φ
MIX_SHIFTS = (30, 27, 31)  # the finalizer: z ^= z >> s, then z *= m, twice; z ^= z >> s
MIX_MULTIPLIERS = (0xBF58476D1CE4E5B9, 0x94D049BB133111EB)


def mix64(z: Any) -> Any:
    """splitmix64's finalizer on uint64 values (arrays or scalars), wrapping mod 2⁶⁴."""
    (s1, s2, s3), (m1, m2) = map(np.uint64, MIX_SHIFTS), map(np.uint64, MIX_MULTIPLIERS)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> s1)) * m1
        z = (z ^ (z >> s2)) * m2
        return z ^ (z >> s3)


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
        from symbp.compiler.ir import concrete

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


# ---------------------------------------------------------------- across ranks (issue 18)


@register
class AllReduce(Op):
    """The sum of a tensor over the ranks of a data-parallel job: the same value on every rank
    (MPI's allreduce). In a single process it is the identity. ``SyncBatchNorm`` sums its
    batch statistics with it, so each rank normalises by the statistics of the whole batch.

    Its adjoint is again a sum over ranks, of the cotangents: each rank's output is read on
    every rank. ``arg`` says which it is, "sum" or "adjoint": a compiled data-parallel
    program (``symbp.compiler.lower.program._distributed``) weights each rank's loss by its share of
    the global batch, so an adjoint sum adds the cotangents weighted by those shares.
    Eagerly under ``symbp.distributed`` both are plain sums, as PyTorch's SyncBatchNorm."""

    name = "psum"

    def infer(self, src, arg):
        if arg not in ("sum", "adjoint"):
            raise shape_error(f"psum: arg must be 'sum' or 'adjoint', got {arg!r}")
        return src[0].shape, src[0].dtype

    def numpy(self, node, vals, dims):
        (x,) = vals
        if x.dtype == object:  # formulas describe one process: its own value
            return x
        from symbp import distributed

        if distributed.world_size() == 1:
            return x
        return distributed.all_reduce(np.array(x, dtype=node.dtype, order="C"))

    def adjoint(self, node, ct):
        return (make("psum", (ct,), "adjoint"),)


def psum(x: Node, adjoint: bool = False) -> Node:
    return make("psum", (x,), "adjoint" if adjoint else "sum")


# ---------------------------------------------------------------- the tensor language (issue 12)
# -- issue 12 . math (rows of this family go below this line)
def _infinities(posinf, neginf, big):
    """nan_to_num's posinf, neginf and big (the dtype's largest finite value, float64's when
    not given): the infinities default to +-big, as PyTorch."""
    big = to_expr(np.finfo(np.float64).max) if big is None else big
    return (big if posinf is None else posinf), (-big if neginf is None else neginf), big


#
# -- issue 12 . logic (rows of this family go below this line)
#
# A comparison's formula is the indicator Piecewise((1, x0 < x1), (0, True)) and its node's
# dtype is bool: SymPy relations are not numbers, so a bare x0 < x1 could not be multiplied
# into a float formula (a mask times x, fused into one kernel), nor differentiated (to 0).
# The node's dtype says the 0/1 is a bool; every backend turns the number into its dtype.
#
# SymPy's symbols here are real, hence finite and never NaN: to SymPy, Eq(x0, oo) is False
# and x0 != x0 is False. The IEEE tests are functions of their own, 0/1-valued, with their
# NumPy names (lambdify finds numpy.isnan ...) and their Numba code (``_numbacode``).


def indicator(cond: Any) -> sympy.Expr:
    """1 where ``cond`` holds, else 0: the formula of a comparison (a bool node)."""
    return sympy.Piecewise((1, cond), (0, True))


class _IEEETest(sympy.Function):
    """An IEEE-754 class test: 1 or 0, derivative 0 (it is piecewise constant)."""

    nargs = 1
    numba = ""  # the Numba condition, with {x} for the argument

    def fdiff(self, argindex=1):
        return sympy.S.Zero

    @classmethod
    def eval(cls, x):
        if x.is_number:  # SymPy's oo, -oo, nan and finite numbers, for symbolic evaluation
            v = complex(x)
            return sympy.Integer(int(bool(getattr(np, cls.__name__)(v.real))))
        return None

    def _numbacode(self, printer):
        return "(" + self.numba.format(x=printer._print(self.args[0])) + ")"


class isnan(_IEEETest):  # noqa: N801 (NumPy's and PyTorch's names)
    numba = "math.isnan({x})"


class isinf(_IEEETest):  # noqa: N801
    numba = "math.isinf({x})"


class isposinf(_IEEETest):  # noqa: N801
    numba = "{x} == np.inf"


class isneginf(_IEEETest):  # noqa: N801
    numba = "{x} == -np.inf"


class isfinite(_IEEETest):  # noqa: N801
    numba = "math.isfinite({x})"


class stop_gradient(sympy.Function):  # noqa: N801
    """The value of its argument with derivative 0: a branch whose value PyTorch's gradient
    does not reach (clamp at min == max, a NaN input)."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sympy.S.Zero

    def _numpycode(self, printer):
        return printer._print(self.args[0])

    def _numbacode(self, printer):
        return printer._print(self.args[0])


def clamp_formula(x: sympy.Expr, lo: sympy.Expr, hi: sympy.Expr) -> sympy.Expr:
    """min(max(x, lo), hi), in the regimes of PyTorch's clamp backward: x's gradient passes
    where lo <= x <= hi (the bounds included), lo's where x < lo < hi, hi's where x > hi or
    hi < lo; at x < lo = hi and at a NaN (of x or of a bound, which the result is) nothing
    gets one. A missing bound is -oo or oo, whose branches SymPy drops."""
    return sympy.Piecewise(
        (stop_gradient(x), sympy.Eq(isnan(x), 1)),
        (stop_gradient(lo), sympy.Eq(isnan(lo), 1)),
        (stop_gradient(hi), sympy.Eq(isnan(hi), 1)),
        (hi, (x > hi) | (hi < lo)),
        (x, x >= lo),
        (lo, lo < hi),
        (stop_gradient(lo), True),
    )


def apply_as(name: str, *args: Node | Any, shape: Shape, dtype: np.dtype) -> Node:
    """``apply`` with the result's dtype given: a comparison's bool, where's promoted type."""
    nodes = [a for a in args if isinstance(a, Node)]
    syms = iter(xsym(i) for i in itertools.count())
    inputs = [next(syms) if isinstance(a, Node) else to_expr(a) for a in args]
    return ew(ELEMENTWISE[name](*inputs), nodes, label=name, shape=shape, dtype=np.dtype(dtype))


#
# -- issue 12 . indexing (rows of this family go below this line)
#
# PyTorch's indexing is five primitives. Basic indexing (integers, slices, None, ...) is a
# strided ``slice`` view plus reshapes; its adjoint ``slice_grad`` places a cotangent into
# zeros (a padded placement). Advanced indexing (integer arrays) is ``take``, a gather along
# k adjacent axes by k same-shaped index arrays; its adjoint ``put_add`` scatters into zeros,
# adding where indices repeat. ``iota`` (the position along an axis) turns gather/scatter
# along an axis (torch.gather, scatter_add) into a take/put_add over every axis.


class SliceArg(NamedTuple):
    """One axis of a ``slice``: entries start, start + step, ... (``size`` of them)."""

    start: Dim
    size: Dim
    step: int


def _slice_check(x_shape: Shape, arg: tuple[SliceArg, ...], what: str) -> None:
    if len(arg) != len(x_shape):
        raise shape_error(f"{what}: {len(arg)} axes sliced of a {shape_str(x_shape)} tensor")
    for d, (a, n) in enumerate(zip(arg, x_shape)):
        if a.step < 1:
            raise shape_error(f"{what}: step {a.step} along dim {d}: steps must be positive")
        last = sympy.sympify(a.start + a.step * (a.size - 1) - n)
        if sympy.sympify(a.start).is_negative or (a.size != 0 and last.is_nonnegative):
            raise shape_error(f"{what}: {a} out of range of dim {d} of size {n}")


def _slices(arg: tuple[SliceArg, ...], dims: dict) -> tuple[slice, ...]:
    """The NumPy key of a slice, its dims bound (B)."""
    out = []
    for a in arg:
        start, size = (int(sympy.sympify(v).xreplace(dims)) for v in (a.start, a.size))
        out.append(slice(start, start + a.step * (size - 1) + 1 if size else start, a.step))
    return tuple(out)


def _show_slices(arg: tuple[SliceArg, ...]) -> str:
    """``2:5``, ``::2`` ... per axis, as Python writes the key."""
    parts = []
    for a in arg:
        stop = a.start + a.step * (a.size - 1) + 1 if a.size != 0 else a.start
        text = ("" if a.start == 0 else str(a.start)) + ":" + str(stop)
        parts.append(text + (f":{a.step}" if a.step != 1 else ""))
    return "[" + ", ".join(parts) + "]"


@register
class Slice(Op):
    """A strided box of ``x``: arg = one ``SliceArg`` per axis. Adjoint: ``slice_grad``."""

    name = "slice"

    def infer(self, src, arg):
        (x,) = src
        _slice_check(x.shape, arg, "slice")
        return tuple(a.size for a in arg), x.dtype

    def numpy(self, node, vals, dims):
        return vals[0][_slices(node.arg, dims)]

    def adjoint(self, node, ct):
        return (slice_grad(ct, node.arg, node.src[0].shape),)

    def show_arg(self, node, names):
        return _show_slices(node.arg)


@register
class SliceGrad(Op):
    """ct placed into zeros of ``shape`` at the box of a slice; arg = (slices, shape).
    Linear: its adjoint is the slice again.

    Not a constant ``pad``, although the two agree on a unit-step box: a strided box's zeros
    fall *between* its entries, which a pad (a border, of any value) says only through a chain
    of reshapes and pads (its formula then reads flatten(pad(...)), its compiled read divides
    a flat index), while a placement prints as the slice it inverts, place(ct at [1:3, ::2])."""

    name = "slice_grad"

    def infer(self, src, arg):
        (ct,) = src
        box, shape = arg
        _slice_check(shape, box, "slice_grad")
        if tuple(a.size for a in box) != ct.shape:
            raise shape_error(f"slice_grad: cotangent {shape_str(ct.shape)} is not the box")
        return tuple(shape), ct.dtype

    def numpy(self, node, vals, dims):
        from symbp.compiler.ir import concrete

        out = np.zeros(concrete(node.shape, dims), dtype=vals[0].dtype)
        out[_slices(node.arg[0], dims)] = vals[0]
        return out

    def adjoint(self, node, ct):
        return (slice_(ct, node.arg[0]),)

    def show_arg(self, node, names):
        return _show_slices(node.arg[0]) + f" into {shape_str(node.shape)}"


class IndexArg(NamedTuple):
    """How a ``take`` or ``put_add`` indexes: ``k`` index arrays for the axes ``axis`` ..
    ``axis + k - 1``; ``what`` names the user's op in errors; ``wrap``: negative indices
    count from the end (x[idx], torch.take), else they are out of range (gather,
    index_select). ``shape``: put_add's output shape (None for take)."""

    axis: int
    what: str
    wrap: bool = True
    shape: Shape | None = None


def _indexed_shape(x: Shape, idx: tuple[Node, ...], a: IndexArg) -> Shape:
    k = len(idx)
    if not idx or any(i.dtype.kind not in "iu" for i in idx):
        raise shape_error(f"{a.what}: indices must be integer tensors")
    if len({i.shape for i in idx}) != 1:
        raise shape_error(
            f"{a.what}: index arrays of shapes "
            + ", ".join(shape_str(i.shape) for i in idx)
            + " (broadcast them first)"
        )
    if not 0 <= a.axis <= len(x) - k:
        raise shape_error(f"{a.what}: axes {a.axis}..{a.axis + k - 1} of {shape_str(x)}")
    return (*x[: a.axis], *idx[0].shape, *x[a.axis + k :])


def check_indices(what: str, values: np.ndarray, dim: int, size: Any, wrap: bool) -> np.ndarray:
    """``values`` as indices into a dim of ``size``, negative ones counted from the end
    (``wrap``); an IndexError naming the op, the dim, the index and the size otherwise."""
    values = np.asarray(values)
    lo = -size if wrap else 0
    bad = (values < lo) | (values >= size)
    if bad.any():
        raise IndexError(  # PyTorch's words, with the op
            f"{what}: index {values[bad].ravel()[0]} is out of bounds for dimension {dim} with "
            f"size {size}{_where_hint()}"
        )
    return np.where(values < 0, values + size, values) if wrap else values


def _fancy_key(node_axis: int, idx: list[np.ndarray], sizes, a: IndexArg) -> tuple:
    fixed = [check_indices(a.what, v, node_axis + m, s, a.wrap) for m, (v, s) in
             enumerate(zip(idx, sizes))]  # fmt: skip
    return (slice(None),) * node_axis + tuple(fixed)


@register
class Take(Op):
    """Gather: out[a.., j.., b..] = x[a.., i0[j..], .., ik[j..], b..] with the k index arrays
    (same shape) of src[1:] on axes ``arg.axis`` ... Adjoint: ``put_add`` (scatter-add), so
    repeated indices accumulate their cotangents."""

    name = "take"

    def infer(self, src, arg):
        x, *idx = src
        return _indexed_shape(x.shape, tuple(idx), arg), x.dtype

    def numpy(self, node, vals, dims):
        x, *idx = vals
        a = node.arg
        sizes = x.shape[a.axis : a.axis + len(idx)]
        key = _fancy_key(a.axis, idx, sizes, a)
        # NumPy moves the gathered axes first when the key starts with slices: not here,
        # the key's arrays are adjacent, so they stay at axis (NumPy's rule as PyTorch's)
        return x[key]

    def adjoint(self, node, ct):
        x, *idx = node.src
        a = node.arg
        return (put_add(ct, tuple(idx), a._replace(shape=x.shape)), *([None] * len(idx)))

    def show_arg(self, node, names):
        return f"[axis={node.arg.axis}]"


@register
class PutAdd(Op):
    """Scatter-add into zeros of ``arg.shape``: out[a.., i0[j..], .., b..] += ct[a.., j.., b..]
    (repeated indices add). The adjoint of ``take``; linear, its adjoint is ``take``."""

    name = "put_add"

    def infer(self, src, arg):
        ct, *idx = src
        if arg.shape is None:
            raise shape_error(f"{arg.what}: put_add needs its output shape")
        want = _indexed_shape(arg.shape, tuple(idx), arg)
        if tuple(ct.shape) != tuple(want):
            raise shape_error(
                f"{arg.what}: values of shape {shape_str(ct.shape)}, the indexed places are "
                f"{shape_str(want)}"
            )
        return tuple(arg.shape), ct.dtype

    def numpy(self, node, vals, dims):
        from symbp.compiler.ir import concrete

        ct, *idx = vals
        a = node.arg
        out = np.zeros(concrete(node.shape, dims), dtype=ct.dtype)
        key = _fancy_key(a.axis, idx, out.shape[a.axis : a.axis + len(idx)], a)
        np.add.at(out, key, ct)
        return out

    def adjoint(self, node, ct):
        _, *idx = node.src
        return (take(ct, tuple(idx), node.arg._replace(shape=None)), *([None] * len(idx)))

    def show_arg(self, node, names):
        return f"[axis={node.arg.axis} into {shape_str(node.shape)}]"


@register
class Iota(Op):
    """The position along axis ``arg[1]`` of a tensor of shape ``arg[0]`` (int64): the
    indices of the axes a torch.gather does not gather along."""

    name = "iota"
    differentiable = False

    def infer(self, src, arg):
        return tuple(arg[0]), int64

    def numpy(self, node, vals, dims):
        from symbp.compiler.ir import concrete

        shape = concrete(node.shape, dims)
        axis = node.arg[1]
        view = [1] * len(shape)
        view[axis] = shape[axis]
        return np.broadcast_to(np.arange(shape[axis]).reshape(view), shape).copy()

    def show_arg(self, node, names):
        return f"[axis={node.arg[1]}]"


def slice_(x: Node, box: Sequence[SliceArg]) -> Node:
    box = tuple(box)
    if all(a.start == 0 and a.size == n and a.step == 1 for a, n in zip(box, x.shape)):
        return x
    if x.op == "slice" and len(box) == x.ndim:  # a slice of a slice is one slice
        OPS["slice"].infer((x,), box)  # the outer box is checked against the inner's shape
        inner = x.arg
        box = tuple(
            SliceArg(i.start + i.step * a.start, a.size, i.step * a.step)
            for a, i in zip(box, inner)
        )
        return slice_(x.src[0], box)
    return make("slice", (x,), box)


def slice_grad(ct: Node, box: Sequence[SliceArg], shape: Shape) -> Node:
    box = tuple(box)
    if tuple(a.size for a in box) == tuple(shape):
        return ct
    if ct.op == "const" and ct.arg == 0:
        return const(0, shape, ct.dtype)
    return make("slice_grad", (ct,), (box, tuple(shape)))


def take(x: Node, idx: Sequence[Node], arg: IndexArg) -> Node:
    return make("take", (x, *idx), arg)


def put_add(ct: Node, idx: Sequence[Node], arg: IndexArg) -> Node:
    if ct.op == "const" and ct.arg == 0:
        return const(0, arg.shape, ct.dtype)  # type: ignore[arg-type]
    return make("put_add", (ct, *idx), arg)


def iota(shape: Shape, axis: int) -> Node:
    return make("iota", (), (tuple(shape), int(axis)))


#
# -- issue 12 . shaping (rows of this family go below this line)
# Joining and shaping. Most of PyTorch's shaping functions are the ops above (view, squeeze,
# movedim, expand, repeat, tile are reshapes, transposes and expands: symbp.tensor builds
# them so). The ops here are what those cannot say: ``cat`` joins tensors along an axis,
# ``flip`` and ``roll`` move entries, ``pad`` adds a border (F.pad's four modes), and
# ``pad_grad`` sends a reflected, replicated or circular border's cotangent back onto the
# entries it copies. Every one is linear in its sources; all but cat and pad_grad are views
# in compiled code. Shapes keep the batch symbol B where the op leaves the batch alone; an
# op that would make a batch of another size (a cat, pad or crop along B) is an error. A box
# of entries (a split's piece, a narrow, the adjoint of cat and of a constant pad) is the
# indexing family's ``slice`` with unit steps: ``crop`` below builds it.


def static_size(what: str, x: Node, axis: int) -> int:
    """The size of ``x`` along ``axis``, which an op is about to change: an int, else an error
    (the batch B of a traced program is known only when it runs)."""
    size = x.shape[axis]
    if not isinstance(size, int):
        raise shape_error(
            f"{what}: dim {axis} of {shape_str(x.shape)} is the batch dimension {size}, whose "
            f"size is known only when the program runs; {what} along it would change the "
            f"batch. Apply it along another dim, or to tensors of a fixed size"
        )
    return size


@register
class Cat(Op):
    """Join the sources along axis ``arg``; all other sizes and the dtype must agree.

    Adjoint: each source's cotangent is its block of ``ct`` (a unit-step ``slice``)."""

    name = "cat"

    def infer(self, src, arg):
        if not src:
            raise shape_error("cat: expects a non-empty list of tensors")
        first = src[0]
        if not 0 <= arg < first.ndim:
            raise shape_error(f"cat: dim {arg} out of range for {shape_str(first.shape)}")
        for k, x in enumerate(src):
            if x.dtype != first.dtype:
                raise shape_error(
                    f"cat: tensor {k} is {x.dtype} but tensor 0 is {first.dtype}; convert one "
                    f"with .float(), .double() or .to(dtype)"
                )
            same = x.ndim == first.ndim and all(
                a == b for i, (a, b) in enumerate(zip(x.shape, first.shape)) if i != arg
            )
            if not same:
                raise shape_error(
                    f"cat: sizes must match except in dim {arg}: tensor {k} is "
                    f"{shape_str(x.shape)}, tensor 0 is {shape_str(first.shape)}"
                )
        total = sum(static_size("cat", x, arg) for x in src)
        return (*first.shape[:arg], total, *first.shape[arg + 1 :]), first.dtype

    def numpy(self, node, vals, dims):
        return np.concatenate(vals, axis=node.arg)

    def adjoint(self, node, ct):
        out, start = [], 0
        for x in node.src:
            size = x.shape[node.arg]
            out.append(crop_axis(ct, node.arg, start, start + size))
            start += size
        return tuple(out)

    def show_arg(self, node, names):
        return f"[dim={node.arg}]"


@register
class Flip(Op):
    """Reverse the order of entries along the axes ``arg``. Adjoint: the same flip."""

    name = "flip"

    def infer(self, src, arg):
        (x,) = src
        if any(not 0 <= a < x.ndim for a in arg):
            raise shape_error(f"flip: dims {arg} out of range for {shape_str(x.shape)}")
        return x.shape, x.dtype

    def numpy(self, node, vals, dims):
        return np.flip(vals[0], node.arg)

    def adjoint(self, node, ct):
        return (flip(ct, node.arg),)


@register
class Roll(Op):
    """Shift entries cyclically: arg = ((axis, shift), ...), 0 < shift < size;
    out[.., i, ..] = x[.., (i − shift) mod size, ..]. Adjoint: the roll back."""

    name = "roll"

    def infer(self, src, arg):
        (x,) = src
        for axis, shift in arg:
            if not 0 <= axis < x.ndim:
                raise shape_error(f"roll: dim {axis} out of range for {shape_str(x.shape)}")
            if not 0 < shift < static_size("roll", x, axis):
                raise shape_error(f"roll: shift {shift} along dim {axis} is not normalised")
        return x.shape, x.dtype

    def numpy(self, node, vals, dims):
        axes, shifts = zip(*node.arg)
        return np.roll(vals[0], shifts, axes)

    def adjoint(self, node, ct):
        x = node.src[0]
        return (roll(ct, [(a, x.shape[a] - s) for a, s in node.arg]),)

    def show_arg(self, node, names):
        return "[" + ", ".join(f"dim {a} by {s}" for a, s in node.arg) + "]"


PAD_MODES = ("constant", "reflect", "replicate", "circular")
# F.pad's modes as NumPy's np.pad names them (reflect leaves out the edge in both).
_NP_PAD: dict[str, Literal["constant", "reflect", "edge", "wrap"]] = {
    "constant": "constant",
    "reflect": "reflect",
    "replicate": "edge",
    "circular": "wrap",
}


def pad_source_index(mode: str, j: Any, size: int) -> Any:
    """Which source entry padded position ``j`` (counted from the source's first entry, so
    negative in the leading border) copies, for one axis of ``size`` entries; NumPy arrays
    and Python ints alike. ``constant`` gives the clamped index (its border is the value)."""
    if mode == "reflect":
        return (size - 1) - abs((size - 1) - abs(j))
    if mode == "circular":
        return j % size
    return np.minimum(np.maximum(j, 0), size - 1)


def _check_pad(what: str, x: Node, widths: Any, mode: str) -> None:
    if mode not in PAD_MODES:
        raise shape_error(f"{what}: mode {mode!r} is none of {', '.join(PAD_MODES)}")
    if len(widths) != x.ndim:
        raise shape_error(f"{what}: {len(widths)} (before, after) pairs for {shape_str(x.shape)}")
    for axis, ((lo, hi), size) in enumerate(zip(widths, x.shape)):
        if lo < 0 or hi < 0:
            raise shape_error(f"{what}: negative padding {lo}, {hi} along dim {axis}")
        if not (lo or hi):
            continue
        size = static_size(what, x, axis)
        # PyTorch's limits: a reflection needs an entry beyond the edge, a wrap one period
        limit = {"reflect": size - 1, "circular": size}.get(mode)
        if limit is not None and max(lo, hi) > limit:
            raise shape_error(
                f"{what}: {mode} padding of {max(lo, hi)} along dim {axis} must be at most "
                f"{limit} for {shape_str(x.shape)}"
            )
        if mode == "replicate" and size == 0:
            raise shape_error(f"{what}: replicate padding of an empty dim {axis}")


def _padded(shape: Shape, widths: Any) -> Shape:
    return tuple(d + lo + hi if (lo or hi) else d for d, (lo, hi) in zip(shape, widths))


@register
class Pad(Op):
    """A border around x: arg = (((before, after) per axis), mode, value), F.pad's modes
    ``constant`` (the border is ``value``), ``reflect``, ``replicate`` and ``circular`` (it
    copies entries: ``pad_source_index``). Adjoint: constant, a crop of the cotangent; the
    others, ``pad_grad`` (the border's cotangent accumulates onto the entries it copies)."""

    name = "pad"

    def infer(self, src, arg):
        (x,) = src
        widths, mode, _ = arg
        _check_pad("pad", x, widths, mode)
        return _padded(x.shape, widths), x.dtype

    def numpy(self, node, vals, dims):
        widths, mode, value = node.arg
        x = vals[0]
        if mode == "constant":
            return np.pad(x, widths, constant_values=value)
        return np.pad(x, widths, mode=_NP_PAD[mode])

    def adjoint(self, node, ct):
        x = node.src[0]
        widths, mode, _ = node.arg
        if mode == "constant":
            return (
                crop(
                    ct,
                    tuple(
                        (lo, lo + d) if (lo or hi) else (0, d)
                        for (lo, hi), d in zip(widths, x.shape)
                    ),
                ),
            )
        return (pad_grad(ct, widths, mode),)

    def show_arg(self, node, names):
        widths, mode, value = node.arg
        shown = ",".join(f"{lo}:{hi}" for lo, hi in widths)
        return f"[{shown} {mode}" + (f" {value}]" if mode == "constant" and value else "]")


@register
class PadGrad(Op):
    """The adjoint of a reflect, replicate or circular ``pad``: ct (the padded shape) to the
    source's shape, each border entry's cotangent added onto the entry it copies;
    arg = (widths, mode), as the pad's. Linear; its adjoint is the pad itself."""

    name = "pad_grad"

    def infer(self, src, arg):
        (ct,) = src
        widths, mode = arg
        if mode not in PAD_MODES[1:]:
            raise shape_error(f"pad_grad: mode {mode!r} is none of {', '.join(PAD_MODES[1:])}")
        if len(widths) != ct.ndim:
            raise shape_error(f"pad_grad: {len(widths)} pairs for {shape_str(ct.shape)}")
        shape = tuple(d - lo - hi if (lo or hi) else d for d, (lo, hi) in zip(ct.shape, widths))
        return shape, ct.dtype

    def numpy(self, node, vals, dims):
        widths, mode = node.arg
        g = vals[0]
        for axis, (lo, hi) in enumerate(widths):
            if not (lo or hi):
                continue
            size = g.shape[axis] - lo - hi
            src = pad_source_index(mode, np.arange(g.shape[axis]) - lo, size)
            out = np.zeros((size, *np.delete(g.shape, axis)), dtype=g.dtype)
            np.add.at(out, src, np.moveaxis(g, axis, 0))
            g = np.moveaxis(out, 0, axis)
        return np.ascontiguousarray(g)

    def adjoint(self, node, ct):
        widths, mode = node.arg
        return (pad(ct, widths, mode, 0),)

    def show_arg(self, node, names):
        widths, mode = node.arg
        return "[" + ",".join(f"{lo}:{hi}" for lo, hi in widths) + f" {mode}]"


def cat(xs: Sequence[Node], axis: int) -> Node:
    xs = tuple(xs)
    if len(xs) == 1:  # checked all the same; one tensor joined is itself
        OPS["cat"].infer(xs, axis)
        return xs[0]
    return make("cat", xs, axis)


def flip(x: Node, axes: Sequence[int]) -> Node:
    axes = tuple(sorted({a for a in axes if x.shape[a] != 1}))
    return make("flip", (x,), axes) if axes else x


def roll(x: Node, shifts: Sequence[tuple[int, int]]) -> Node:
    """Roll by (axis, shift) pairs; shifts are taken modulo the size, repeated axes add up."""
    total: dict[int, int] = {}
    for axis, shift in shifts:
        size = x.shape[axis]
        if not isinstance(size, int):  # a roll by a multiple of B is only known at run time
            static_size("roll", x, axis)
        total[axis] = (total.get(axis, 0) + shift) % size if size else 0
    arg = tuple(sorted((a, s) for a, s in total.items() if s))
    return make("roll", (x,), arg) if arg else x


def crop(x: Node, ranges: Sequence[tuple[int, Any]]) -> Node:
    """The box ``x[start:stop]`` along each axis (ranges: (start, stop) per axis): a slice with
    unit steps (a split's piece, a narrow, the adjoint of ``cat`` and of a constant ``pad``).
    A box along the batch B other than all of it is an error: it would make another batch."""
    if len(ranges) != x.ndim:
        raise shape_error(f"crop: {len(ranges)} ranges for {shape_str(x.shape)}")
    box = []
    for axis, ((start, stop), size) in enumerate(zip(ranges, x.shape)):
        if (start, stop) == (0, size):
            box.append(SliceArg(0, size, 1))
            continue
        size = static_size("crop", x, axis)
        start, stop = int(start), int(stop)
        if not 0 <= start <= stop <= size:
            raise shape_error(
                f"crop: range {start}:{stop} out of bounds for dim {axis} of {shape_str(x.shape)}"
            )
        box.append(SliceArg(start, stop - start, 1))
    return slice_(x, box)


def crop_axis(x: Node, axis: int, start: int, stop: int) -> Node:
    """``x`` narrowed to start:stop along ``axis``."""
    return crop(x, [(start, stop) if a == axis else (0, d) for a, d in enumerate(x.shape)])


def pad(x: Node, widths: Sequence[tuple[int, int]], mode: str = "constant", value: Any = 0) -> Node:
    widths = tuple((int(lo), int(hi)) for lo, hi in widths)
    if not any(lo or hi for lo, hi in widths):
        return x
    value = float(value) if mode == "constant" else 0.0
    return make("pad", (x,), (widths, mode, value))


def pad_grad(ct: Node, widths: Sequence[tuple[int, int]], mode: str) -> Node:
    return make("pad_grad", (ct,), (tuple((int(a), int(b)) for a, b in widths), mode))


# -- issue 12 . reductions (rows of this family go below this line)
#
# Reductions that are compositions (mean, min, var, std, norm, logsumexp, count_nonzero) live
# in ``symbp.tensor``; the ops here are the ones composition cannot give. Indices are int64
# nodes of their own (``argidx``, ``argsort``, ``cumarg``), never differentiated; the values
# that go with them are ``take_along`` of the input, whose adjoint ``put_along`` routes the
# cotangent back to exactly the picked entries (repeated picks accumulate, as cummax's do).


def _check_axis(what: str, x: Node, axis: int) -> None:
    if not 0 <= axis < x.ndim:
        raise shape_error(f"{what}: dim {axis} out of range for shape {shape_str(x.shape)}")


def _moved(x: np.ndarray, axis: int) -> np.ndarray:
    """``x`` with ``axis`` last: the scans below run along the last axis."""
    return np.moveaxis(x, axis, -1)


def _along_shape(x: Node, axis: int, size: Dim) -> Shape:
    return tuple(size if a == axis else d for a, d in enumerate(x.shape))


@register
class ArgIndex(Op):
    """int64 index of the first maximum (``largest``) or minimum along ``axis``; arg = (axis,
    keepdim, largest). A NaN counts as the extreme, as in PyTorch's argmax."""

    name = "argidx"
    differentiable = False

    def infer(self, src, arg):
        (x,) = src
        axis, keepdim, _ = arg
        _check_axis("argmax", x, axis)
        if x.shape[axis] == 0:
            raise shape_error(f"argmax: cannot take the index over an empty dim {axis}")
        return _reduced(x, (axis,), keepdim), int64

    def numpy(self, node, vals, dims):
        axis, keepdim, largest = node.arg
        x = vals[0]
        if x.dtype != object and x.dtype.kind == "f" and np.isnan(x).any():
            idx = np.argmax(np.isnan(x), axis=axis)  # the first NaN where there is one
            rest = (np.argmax if largest else np.argmin)(np.where(np.isnan(x), 0, x), axis=axis)
            idx = np.where(np.isnan(x).any(axis=axis), idx, rest)
        else:
            idx = (np.argmax if largest else np.argmin)(x, axis=axis)
        idx = np.asarray(idx, dtype=np.int64)
        return np.expand_dims(idx, axis) if keepdim else idx

    def show_arg(self, node, names):
        axis, keepdim, largest = node.arg
        return f"[{'max' if largest else 'min'} axis={axis}{' keepdim' if keepdim else ''}]"


@register
class ArgSort(Op):
    """int64 positions [start, stop) of a stable sort along ``axis``: ``sort`` takes them all,
    ``topk`` the first k, ``median`` the middle one; arg = (axis, descending, start, stop).
    Ties keep their order, so the first of equal entries comes first either way."""

    name = "argsort"
    differentiable = False

    def infer(self, src, arg):
        (x,) = src
        axis, _, start, stop = arg
        _check_axis("sort", x, axis)
        n = x.shape[axis]
        if not 0 <= start <= stop or (isinstance(n, int) and stop > n):
            raise shape_error(
                f"sort: positions {start}..{stop} out of range for dim {axis} of size {n}"
            )
        return _along_shape(x, axis, stop - start), int64

    def numpy(self, node, vals, dims):
        axis, descending, start, stop = node.arg
        x = vals[0]
        if x.dtype == object:
            x = x.astype(np.float64)
        key = -x if descending and x.dtype.kind != "b" else (~x if descending else x)
        order = np.argsort(key, axis=axis, kind="stable")  # NaN last
        if descending and x.dtype.kind == "f":  # NaN is the largest, as PyTorch: first
            nan_last = ~np.isnan(np.take_along_axis(x, order, axis))
            order = np.take_along_axis(order, np.argsort(nan_last, axis, kind="stable"), axis)
        return np.take(order, np.arange(start, stop), axis=axis).astype(np.int64)

    def show_arg(self, node, names):
        axis, descending, start, stop = node.arg
        return f"[axis={axis}{' descending' if descending else ''} {start}:{stop}]"


@register
class CumArg(Op):
    """int64 index of the running maximum (``largest``) or minimum along ``axis``, the last
    of tied entries, as PyTorch's cummax/cummin; arg = (axis, largest)."""

    name = "cumarg"
    differentiable = False

    def infer(self, src, arg):
        _check_axis("cummax", src[0], arg[0])
        return src[0].shape, int64

    def numpy(self, node, vals, dims):
        axis, largest = node.arg
        x = _moved(vals[0], axis)
        out = np.zeros(x.shape, np.int64)
        if x.shape[-1] == 0:
            return np.moveaxis(out, -1, axis)
        best, hit = x[..., 0].copy(), np.zeros(x.shape[:-1], np.int64)
        for k in range(x.shape[-1]):
            v = x[..., k]
            better = (v >= best) if largest else (v <= best)
            with np.errstate(invalid="ignore"):
                take = (better | (v != v)) & (best == best)  # a NaN stays the extreme
            take = take | (k == 0)
            best, hit = np.where(take, v, best), np.where(take, k, hit)
            out[..., k] = hit
        return np.moveaxis(out, -1, axis)

    def show_arg(self, node, names):
        return f"[{'max' if node.arg[1] else 'min'} axis={node.arg[0]}]"


@register
class TakeAlong(Op):
    """x [.., n, ..] at int64 indices [.., m, ..] along ``axis`` (NumPy's take_along_axis).
    Linear in x; adjoint: ``put_along`` of the cotangent at the same indices.

    Not a ``take`` with ``iota`` arrays on the other axes (as torch.gather is), although it
    means the same: its indices are the compiler's own (an argmax, an argsort, a cummax
    position), in range by construction, so compiled code reads it as a view fused into its
    consumers with no check, and its adjoint ``put_along`` scatters one row per sample and so
    runs over the batch in parallel. ``take`` and ``put_add`` index with the user's data: a
    kernel that checks every index before the update, and a scatter whose targets may meet
    across samples. Their formulas differ as their readers expect (take_along(x, idx) for a
    sort, x[i, y] for a gather)."""

    name = "take_along"

    def infer(self, src, arg):
        x, idx = src
        _check_axis("take_along", x, arg)
        same = idx.ndim == x.ndim and all(
            a == arg or d == e for a, (d, e) in enumerate(zip(x.shape, idx.shape))
        )
        if not same or idx.dtype.kind not in "iu":
            raise shape_error(
                f"take_along: indices {shape_str(idx.shape)} ({idx.dtype}) do not index "
                f"{shape_str(x.shape)} along dim {arg}"
            )
        return idx.shape, x.dtype

    def numpy(self, node, vals, dims):
        return np.take_along_axis(vals[0], vals[1], axis=node.arg)

    def adjoint(self, node, ct):
        x, idx = node.src
        return (put_along(ct, idx, node.arg, x.shape[node.arg]), None)

    def show_arg(self, node, names):
        return f"[axis={node.arg}]"


@register
class PutAlong(Op):
    """A zero tensor with ``ct`` added at int64 indices along ``axis`` (repeated indices
    accumulate); arg = (axis, size of that axis). The adjoint of ``take_along``, and linear:
    its own adjoint is ``take_along``."""

    name = "put_along"

    def infer(self, src, arg):
        ct, idx = src
        axis, size = arg
        _check_axis("put_along", ct, axis)
        if idx.shape != ct.shape or idx.dtype.kind not in "iu":
            raise shape_error(
                f"put_along: indices {shape_str(idx.shape)} do not match {shape_str(ct.shape)}"
            )
        return _along_shape(ct, axis, size), ct.dtype

    def numpy(self, node, vals, dims):
        from symbp.compiler.ir import concrete

        ct, idx = vals
        axis, size = node.arg
        shape = list(ct.shape)
        shape[axis] = concrete((size,), dims)[0]
        out = np.zeros(shape, dtype=ct.dtype)
        where = list(np.indices(idx.shape, sparse=True))
        where[axis] = idx
        np.add.at(out, tuple(where), ct)  # repeated indices accumulate
        return out

    def adjoint(self, node, ct):
        return (take_along(ct, node.src[1], node.arg[0]), None)

    def show_arg(self, node, names):
        return f"[axis={node.arg[0]} size={node.arg[1]}]"


@register
class Prod(_Reduce):
    """Product over ``axes``. Adjoint: ct times the product of the *other* entries of each
    group, built from products and counts so that zeros are exact, as PyTorch: no zero in
    the group, out / x; one zero, the product of the rest at the zero and 0 elsewhere; two
    or more, 0 everywhere."""

    name = "prod"
    reduce = np.prod

    def adjoint(self, node, ct):
        x = node.src[0]
        axes = node.arg[0]
        # 1 - sign(x)² is 1 at a zero and 0 elsewhere, exactly, and no Piecewise to nest in
        # the conditions below (where it would print as if-then-else chains)
        zero = 1 - sympy.sign(xsym(0)) ** 2
        zeros = ew(zero, [x])
        nonzero = ew(xsym(0) + zero, [x])  # zeros as 1
        count = _unreduce(sum_(zeros, axes, True), x, axes)
        rest = _unreduce(prod(nonzero, axes, True), x, axes)
        out = _unreduce(node, x, axes)
        x0, p, c, r = (xsym(i) for i in range(4))
        # in order: no zero in the group; this entry its only zero (c = 1 and sign(x)² = 0,
        # read as one test since c = 0 was the first case); two or more zeros
        one_zero_here = sympy.Eq(c + sympy.sign(x0) ** 2, 1)
        others = sympy.Piecewise((p / x0, sympy.Eq(c, 0)), (r, one_zero_here), (0, True))
        dx = ew(others, [x, out, count, rest])
        return (ew(xsym(0) * xsym(1), [_unreduce(ct, x, axes), dx], label="mul"),)


@register
class CumSum(Op):
    """Running sum along ``axis``; arg = (axis, reverse): reverse sums from the end, which is
    the adjoint: x̄_i = Σ_{k≥i} ct_k."""

    name = "cumsum"

    def infer(self, src, arg):
        _check_axis("cumsum", src[0], arg[0])
        return src[0].shape, src[0].dtype

    def numpy(self, node, vals, dims):
        axis, reverse = node.arg
        x = vals[0]
        if reverse:
            return np.flip(np.cumsum(np.flip(x, axis), axis=axis), axis).astype(x.dtype)
        return np.cumsum(x, axis=axis).astype(x.dtype)

    def adjoint(self, node, ct):
        axis, reverse = node.arg
        return (cumsum(ct, axis, not reverse),)

    def show_arg(self, node, names):
        return f"[axis={node.arg[0]}{' reverse' if node.arg[1] else ''}]"


@register
class CumProd(Op):
    """Running product along ``axis`` (arg). Adjoint: ``cumprod_grad``, exact with zeros."""

    name = "cumprod"

    def infer(self, src, arg):
        _check_axis("cumprod", src[0], arg)
        return src[0].shape, src[0].dtype

    def numpy(self, node, vals, dims):
        return np.cumprod(vals[0], axis=node.arg).astype(vals[0].dtype)

    def adjoint(self, node, ct):
        return (make("cumprod_grad", (node.src[0], ct), node.arg),)

    def show_arg(self, node, names):
        return f"[axis={node.arg}]"


def cumprod_grad_numpy(x: np.ndarray, ct: np.ndarray, axis: int) -> np.ndarray:
    """x̄_i = Σ_{k≥i} ct_k · Π_{j≤k, j≠i} x_j, by running products: no division, so zeros in
    x give PyTorch's gradient (not the 0/0 of reverse-cumsum(ct·out)/x)."""
    xm, cm = _moved(x, axis), _moved(ct, axis)
    n = xm.shape[-1]
    out = np.zeros(np.broadcast_shapes(xm.shape, cm.shape), dtype=np.result_type(xm, cm))
    before = np.ones_like(out[..., 0]) if n else None  # Π_{j<i} x_j
    for i in range(n):
        run, acc = before, np.zeros_like(out[..., 0])
        for k in range(i, n):
            if k > i:
                run = run * xm[..., k]
            acc = acc + cm[..., k] * run
        out[..., i] = acc
        before = before * xm[..., i]
    return np.moveaxis(out, -1, axis)


@register
class CumProdGrad(Op):
    """The cotangent of ``cumprod``: src (x, ct), arg = axis (``cumprod_grad_numpy``)."""

    name = "cumprod_grad"

    def infer(self, src, arg):
        x, ct = src
        if x.shape != ct.shape:
            raise shape_error(
                f"cumprod_grad: cotangent {shape_str(ct.shape)} does not match {shape_str(x.shape)}"
            )
        return x.shape, x.dtype

    def numpy(self, node, vals, dims):
        return cumprod_grad_numpy(vals[0], vals[1], node.arg)

    def adjoint(self, node, ct):
        raise NotImplementedError(
            "cumprod_grad: no double backward through cumprod (its second derivative would "
            "need another running-product op)"
        )

    def show_arg(self, node, names):
        return f"[axis={node.arg}]"


def argidx(x: Node, axis: int, keepdim: bool = False, largest: bool = True) -> Node:
    return make("argidx", (x,), (int(axis), bool(keepdim), bool(largest)))


def argsort(x: Node, axis: int, descending: bool = False, start: int = 0, stop=None) -> Node:
    stop = x.shape[axis] if stop is None else stop
    return make("argsort", (x,), (int(axis), bool(descending), int(start), stop))


def cumarg(x: Node, axis: int, largest: bool = True) -> Node:
    return make("cumarg", (x,), (int(axis), bool(largest)))


def take_along(x: Node, idx: Node, axis: int) -> Node:
    return make("take_along", (x, idx), int(axis))


def put_along(ct: Node, idx: Node, axis: int, size: Dim) -> Node:
    return make("put_along", (ct, idx), (int(axis), size))


def prod(x: Node, axes: Sequence[int], keepdim: bool = False) -> Node:
    axes = tuple(sorted(a % x.ndim for a in axes)) if x.ndim else ()
    return make("prod", (x,), (axes, keepdim)) if axes else x


def cumsum(x: Node, axis: int, reverse: bool = False) -> Node:
    return make("cumsum", (x,), (int(axis), bool(reverse)))


def cumprod(x: Node, axis: int) -> Node:
    return make("cumprod", (x,), int(axis))


#
# -- issue 12 . linalg (rows of this family go below this line)
#
# The 2-D ``matmul`` above stays the one product BLAS and the tiled kernels serve. A batched
# product is its own op, ``bmm``, over operands whose batch axes already agree (the Tensor
# API broadcasts them with ``expand``, so the adjoint of that expand sums the cotangent over
# the broadcast axes). Everything else of linear algebra (mv, dot, outer, einsum, tensordot,
# addmm ...) is built from these, transposes, reshapes, products and sums; the three views
# below (``tril``, ``diagonal``, ``diag_embed``) move entries without arithmetic.


def _swap_last(x: Node) -> Node:
    """x with its last two axes exchanged (a batch of transposes)."""
    perm = list(range(x.ndim))
    perm[-2], perm[-1] = perm[-1], perm[-2]
    return transpose(x, tuple(perm))


@register
class Bmm(Op):
    """[*b, m, k] @ [*b, k, n] -> [*b, m, n] over equal batch axes *b (at least one).

    out[b, i, j] = Σ_k x[b, i, k] y[b, k, j]. Adjoint: ct @ yᵀ and xᵀ @ ct, batch by batch.
    """

    name = "bmm"

    def infer(self, src, arg):
        x, y = src
        shapes = f"{shape_str(x.shape)} @ {shape_str(y.shape)}"
        if x.ndim < 3 or x.ndim != y.ndim:
            raise shape_error(f"bmm: expects operands of one rank, at least 3, got {shapes}")
        if x.shape[:-2] != y.shape[:-2]:
            raise shape_error(f"bmm: batch dimensions differ: {shapes}")
        if x.shape[-1] != y.shape[-2]:
            raise shape_error(
                f"bmm: inner dimensions differ: {shapes} ({x.shape[-1]} != {y.shape[-2]})"
            )
        if x.dtype != y.dtype:
            raise shape_error(f"bmm: dtypes differ: {x.dtype} @ {y.dtype}")
        return (*x.shape[:-1], y.shape[-1]), x.dtype

    def numpy(self, node, vals, dims):
        return np.matmul(vals[0], vals[1])  # object arrays too (the scalar level)

    def adjoint(self, node, ct):
        x, y = node.src
        return (bmm(ct, _swap_last(y)), bmm(_swap_last(x), ct))


def bmm(x: Node, y: Node) -> Node:
    return make("bmm", (x, y))


@register
class Tril(Op):
    """The lower (``arg = (k, False)``: entries with j − i ≤ k) or upper (``(k, True)``:
    j − i ≥ k) triangle of the last two axes, zeros elsewhere. Linear: its adjoint is itself."""

    name = "tril"

    def infer(self, src, arg):
        (x,) = src
        if x.ndim < 2:
            what = "triu" if arg[1] else "tril"
            raise shape_error(f"{what}: expects at least 2 dimensions, got {shape_str(x.shape)}")
        return x.shape, x.dtype

    def numpy(self, node, vals, dims):
        k, upper = node.arg
        return (np.triu if upper else np.tril)(vals[0], k)

    def adjoint(self, node, ct):
        return (tril(ct, *node.arg),)

    def show_arg(self, node, names):
        k, upper = node.arg
        return f"[{'upper' if upper else 'lower'} k={k}]"


def tril(x: Node, k: int = 0, upper: bool = False) -> Node:
    return make("tril", (x,), (int(k), bool(upper)))


def _diagonal_len(n1: Dim, n2: Dim, offset: int) -> int:
    if not (isinstance(n1, int) and isinstance(n2, int)):
        raise shape_error(f"diagonal: the two axes need static sizes, got {n1} and {n2}")
    return max(0, min(n1 + min(offset, 0), n2 - max(offset, 0)))


@register
class Diagonal(Op):
    """The diagonal of axes (d1, d2), offset ``k`` above it, as a new last axis; arg =
    (k, d1, d2) with d1 != d2. out[..., t] = x[..., t + max(−k, 0), ..., t + max(k, 0)]."""

    name = "diagonal"

    def infer(self, src, arg):
        (x,) = src
        k, d1, d2 = arg
        if x.ndim < 2 or not (0 <= d1 < x.ndim and 0 <= d2 < x.ndim) or d1 == d2:
            raise shape_error(f"diagonal: axes {d1}, {d2} are not two axes of {shape_str(x.shape)}")
        rest = tuple(d for a, d in enumerate(x.shape) if a not in (d1, d2))
        return (*rest, _diagonal_len(x.shape[d1], x.shape[d2], k)), x.dtype

    def numpy(self, node, vals, dims):
        k, d1, d2 = node.arg
        return np.diagonal(vals[0], k, d1, d2).copy()

    def adjoint(self, node, ct):
        k, d1, d2 = node.arg
        x = node.src[0]
        return (diag_embed(ct, k, d1, d2, (x.shape[d1], x.shape[d2])),)

    def show_arg(self, node, names):
        return "[offset={} axes={},{}]".format(*node.arg)


@register
class DiagEmbed(Op):
    """The last axis of x placed on the diagonal of two new axes (d1, d2) of sizes (n1, n2),
    offset ``k`` above it, zeros elsewhere; arg = (k, d1, d2, (n1, n2)), d1 < d2 axes of the
    result. The adjoint of ``diagonal`` (and it of this)."""

    name = "diag_embed"

    def infer(self, src, arg):
        (x,) = src
        k, d1, d2, (n1, n2) = arg
        ndim = x.ndim + 1
        if x.ndim < 1 or not 0 <= d1 < d2 < ndim:
            raise shape_error(f"diag_embed: axes {d1}, {d2} do not fit {shape_str(x.shape)}")
        if _diagonal_len(n1, n2, k) != x.shape[-1]:
            raise shape_error(
                f"diag_embed: {shape_str(x.shape)} has {x.shape[-1]} entries per diagonal, a "
                f"{n1}×{n2} matrix has {_diagonal_len(n1, n2, k)} at offset {k}"
            )
        rest = iter(x.shape[:-1])
        shape = [n1 if a == d1 else n2 if a == d2 else next(rest) for a in range(ndim)]
        return tuple(shape), x.dtype

    def numpy(self, node, vals, dims):
        k, d1, d2, _ = node.arg
        from symbp.compiler.ir import concrete

        out = np.zeros(concrete(node.shape, dims), dtype=vals[0].dtype)
        if out.dtype == object:
            out[...] = 0
        view = np.moveaxis(out, (d1, d2), (-2, -1))  # a view: writes land in out
        t = np.arange(vals[0].shape[-1])
        view[..., t + max(-k, 0), t + max(k, 0)] = vals[0]
        return out

    def adjoint(self, node, ct):
        k, d1, d2, _ = node.arg
        return (diagonal(ct, k, d1, d2),)

    def show_arg(self, node, names):
        k, d1, d2, (n1, n2) = node.arg
        return f"[offset={k} axes={d1},{d2} size={n1}x{n2}]"


def diagonal(x: Node, k: int, d1: int, d2: int) -> Node:
    return make("diagonal", (x,), (int(k), int(d1), int(d2)))


def diag_embed(x: Node, k: int, d1: int, d2: int, size: tuple[Dim, Dim]) -> Node:
    """Embed; (d1, d2) in either order: the first of them is the rows' axis of ``size``."""
    (n1, n2) = size
    if d1 > d2:
        d1, d2, n1, n2, k = d2, d1, n2, n1, -k
    return make("diag_embed", (x,), (int(k), int(d1), int(d2), (n1, n2)))


def batched_matmul(x: Node, y: Node) -> Node:
    """x @ y for operands of rank at least 2, PyTorch's broadcasting of the batch axes.

    A 2-D right operand folds x's batch into its rows: one 2-D product, BLAS's fast path
    (as PyTorch does). Otherwise the batch axes broadcast (``expand``: its adjoint sums the
    cotangent over them) and one ``bmm`` multiplies them.
    """
    shapes = f"{shape_str(x.shape)} @ {shape_str(y.shape)}"
    if x.shape[-1] != y.shape[-2]:
        raise shape_error(
            f"matmul: inner dimensions differ: {shapes} ({x.shape[-1]} != {y.shape[-2]})"
        )
    if x.ndim == 2 and y.ndim == 2:
        return matmul(x, y)
    if y.ndim == 2:
        rows = reshape(x, (numel(x.shape[:-1]), x.shape[-1]))
        return reshape(matmul(rows, y), (*x.shape[:-1], y.shape[-1]))
    batch = broadcast_shapes(x.shape[:-2], y.shape[:-2], what=f"matmul {shapes}")
    xb = broadcast_to(x, (*batch, *x.shape[-2:]))
    yb = broadcast_to(y, (*batch, *y.shape[-2:]))
    if len(batch) == 0:
        return matmul(xb, yb)
    return bmm(xb, yb)


# ---------------------------------------------------------------- printing programs
# Here, beside the table, not in ir: a node's arg is shown by its op (show_arg).


def _names() -> Iterator[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    yield from letters
    n = 1
    while True:
        yield from (f"{c}{n}" for c in letters)
        n += 1


def print_program(
    outputs: dict[str, Node] | list[Node],
    labels: dict[Node, str] | None = None,
) -> str:
    """A jaxpr-like listing: one line ``name:type = op[arg] src...`` per node."""
    outs = outputs if isinstance(outputs, dict) else {f"out{i}": n for i, n in enumerate(outputs)}
    order = toposort(outs.values())
    leaves = [n for n in order if n.op == "input"]
    name: dict[Node, str] = dict(zip(leaves, shown_names([n.arg for n in leaves])))
    gen = (g for g in _names() if g not in name.values())
    ins, lines = [], []
    for node in order:
        if node.op == "input":
            ins.append(f"{name[node]}:{type_str(node)}")
            continue
        name[node] = next(gen)
        arg = OPS[node.op].show_arg(node, [name[s] for s in node.src])
        srcs = " ".join(name[s] for s in node.src)
        label = f"    # {labels[node]}" if labels and node in labels else ""
        lines.append(f"  {name[node]}:{type_str(node)} = {node.op}{arg} {srcs}".rstrip() + label)
    result = ", ".join(f"{k}={name[v]}" for k, v in outs.items())
    return "{ lambda " + " ".join(ins) + " ; let\n" + "\n".join(lines) + f"\n  in ({result}) }}"


__all__ = ["ELEMENTWISE", "OPS", "Formula", "NotApplicable", "Op", "int64", "print_program"]
