"""Export a model's inference graph to ONNX, for deployment (onnxruntime, TensorRT, ...).

>>> model = symbp.compile(net)                          # doctest: +SKIP
>>> model.export_onnx("digits.onnx", X[:1])             # doctest: +SKIP
PosixPath('digits.onnx')

The graph is the one ``predict`` compiles: the model traced in eval mode (no dropout, batch
norm on its running statistics), written node by node from symbp's IR with the ``onnx``
package's helper API (``pip install onnx``; no PyTorch). The batch dimension stays the symbol
``B`` of the trace, so the ONNX input and output have a dynamic first dimension ``batch``;
the parameters and buffers are initializers named as the model names them.

Structural ops have one ONNX operator each (``matmul`` -> MatMul or Gemm, ``conv2d`` -> Conv,
``sum`` -> ReduceSum ...: the table ``ONNX`` below), or an exact composition where ONNX has no
operator: ``argsort`` TopK, ``cumprod`` and ``cumarg`` (cummax, cummin) a loop-free scan,
``diagonal`` and ``diag_embed`` a Gather, circular ``pad`` Slice and Concat. An elementwise
node is its SymPy formula, written out as ONNX arithmetic by walking the expression
(``_Formula``): Add, Mul and Pow become Add/Sub/Mul/Div/Sqrt/Pow, functions their ONNX
operators (Exp, Tanh, Erf ...), Piecewise a chain of Where, relations Less/Equal/..., so
custom ops from ``symbp.elementwise`` export as what their formula says. An op or function
ONNX cannot express is an ``OnnxExportError`` naming it and the layer it is in.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sympy
from sympy.codegen import cfunctions

from symbp.compiler import ops, scalar
from symbp.compiler.ir import B, Labels, Names, Node, consumers, leaf_name, toposort
from symbp.export import ExportError
from symbp.version import __version__

__all__ = ["OPSET", "OnnxExportError", "export_onnx", "onnx_model"]

OPSET = 17  # Reduce{Max,Prod} take axes as attributes up to 17; LayerNorm-era runtimes load it
IR_VERSION = 8  # the IR of opset 17: runtimes older than the onnx package still load the file
BATCH = "batch"  # the name of the dynamic first dimension of the input and the output


class OnnxExportError(ExportError):
    """A model (an op, a formula) that ONNX cannot express, or ONNX not installed."""


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as e:
        raise OnnxExportError(
            "ONNX export needs the onnx package: pip install onnx (or symbp[onnx])"
        ) from e
    return onnx


# ---------------------------------------------------------------- the graph being written


class _Graph:
    """The ONNX nodes and initializers written so far, with fresh names and shared constants."""

    def __init__(self, onnx: Any, x_name: str, labels: Labels | None = None):
        self.onnx, self.helper = onnx, onnx.helper
        self.labels = labels or {}  # the trace's layer of each node (api.Traced.labels)
        self.x_name = x_name
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.names = Names([x_name])
        self.memo: dict[Any, str] = {}  # shared constants and the batch size
        self.where = ""  # the op being written, for errors (" (op 'ew' in layer 'fc1')")

    def fresh(self, hint: str) -> str:
        base = "".join(c if c.isalnum() or c in "._" else "_" for c in hint) or "t"
        return self.names.fresh(base)

    def op(self, op_type: str, inputs: Sequence[str], hint: str = "", **attrs: Any) -> str:
        out = self.fresh(hint or op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def initializer(self, value: np.ndarray, hint: str) -> str:
        name = self.fresh(hint)
        # np.asarray, not np.ascontiguousarray, which makes a 0-d array 1-d (Range needs 0-d)
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(value, order="C"), name))
        return name

    def constant(self, value: Any, dtype: np.dtype, shape: tuple[int, ...] = ()) -> str:
        with np.errstate(over="ignore"):  # a float64 bound in float32 is inf, as computed
            arr = np.asarray(value, dtype=dtype).reshape(shape)
        key = ("const", arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self.memo:
            self.memo[key] = self.initializer(arr, "c")
        return self.memo[key]

    def ints(self, values: Sequence[int]) -> str:
        return self.constant(list(values), np.dtype(np.int64), (len(values),))

    def cast(self, name: str, dtype: np.dtype) -> str:
        to = self.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        return self.op("Cast", [name], "cast", to=to)

    # symbolic dims: the batch size read from the input at run time

    def batch(self) -> str:
        """The batch size, int64 [1] (the first dimension of the input)."""
        if "B" not in self.memo:
            shape = self.op("Shape", [self.x_name], "x_shape", start=0, end=1)
            self.memo["B"] = shape
        return self.memo["B"]

    def dim(self, expr: Any) -> str:
        """One dimension as an int64 [1] tensor: a number, or a polynomial in B."""
        expr = sympy.sympify(expr)
        if expr.is_Integer:
            return self.ints([int(expr)])
        if expr == B:
            return self.batch()
        if isinstance(expr, (sympy.Add, sympy.Mul)):
            parts = [self.dim(a) for a in expr.args]
            kind = "Add" if isinstance(expr, sympy.Add) else "Mul"
            out = parts[0]
            for p in parts[1:]:
                out = self.op(kind, [out, p], "dim")
            return out
        if isinstance(expr, sympy.Pow) and expr.exp.is_Integer and expr.exp > 0:
            base = self.dim(expr.base)
            out = base
            for _ in range(int(expr.exp) - 1):
                out = self.op("Mul", [out, base], "dim")
            return out
        raise OnnxExportError(f"ONNX export{self.where}: a dimension {expr} it cannot compute")

    def shape(self, dims: Sequence[Any], infer_one: bool = False) -> str:
        """A shape as an int64 1-D tensor. With ``infer_one`` (Reshape), a single symbolic
        dimension is written -1, so that the runtime infers it and no arithmetic is needed."""
        dims = [int(d) if sympy.sympify(d).is_Integer else d for d in dims]
        symbolic = [i for i, d in enumerate(dims) if not isinstance(d, int)]
        if not symbolic:
            return self.ints([int(d) for d in dims])
        if infer_one and len(symbolic) == 1:
            return self.ints([-1 if i == symbolic[0] else int(d) for i, d in enumerate(dims)])
        return self.op("Concat", [self.dim(d) for d in dims], "shape", axis=0)

    def scalar_dim(self, expr: Any) -> str:
        """A dimension as an int64 scalar (Range's limit)."""
        expr = sympy.sympify(expr)
        if expr.is_Integer:
            return self.constant(int(expr), np.dtype(np.int64))
        return self.op("Squeeze", [self.dim(expr), self.ints([0])], "n")


# ---------------------------------------------------------------- elementwise formulas


def _opaque_formula(fn: sympy.Function) -> sympy.Expr | None:
    """The formula behind a custom op registered with its own derivative or NumPy form (an
    opaque SymPy function of ``symbp.elementwise``), at the function's arguments."""
    from symbp import api

    # typed `type`: an `is` test of a Callable against type(fn), a type[Any], mypy takes as
    # never true, and would skip the rest of the function as unreachable
    cls: type = type(fn)
    name = cls.__name__
    if name not in api._CUSTOM or ops.ELEMENTWISE.get(name) is not cls:
        return None
    formula = api._RULES[name][0]
    xs = sympy.symbols(f"x0:{len(fn.args)}", real=True)
    return formula.xreplace(dict(zip(xs, fn.args)))  # type: ignore[no-any-return]


# SymPy (and symbp.compiler.scalar) functions that are one ONNX operator of the same argument
_UNARY: dict[Any, str] = {
    sympy.exp: "Exp",
    sympy.log: "Log",
    sympy.tanh: "Tanh",
    sympy.sin: "Sin",
    sympy.cos: "Cos",
    sympy.tan: "Tan",
    sympy.asin: "Asin",
    sympy.acos: "Acos",
    sympy.atan: "Atan",
    sympy.sinh: "Sinh",
    sympy.cosh: "Cosh",
    sympy.asinh: "Asinh",
    sympy.acosh: "Acosh",
    sympy.atanh: "Atanh",
    sympy.erf: "Erf",
    sympy.Abs: "Abs",
    sympy.floor: "Floor",
    sympy.ceiling: "Ceil",
    sympy.sign: "Sign",
    scalar.sigmoid: "Sigmoid",
    scalar.relu: "Relu",
    scalar.softplus: "Softplus",
    scalar.floor: "Floor",
    scalar.ceil: "Ceil",
    scalar.round: "Round",  # halves to even, as PyTorch and ONNX
}

_RELATIONS = {
    sympy.Eq: "Equal",
    sympy.Lt: "Less",
    sympy.Le: "LessOrEqual",
    sympy.Gt: "Greater",
    sympy.Ge: "GreaterOrEqual",
}


class _Formula:
    """Writes one SymPy expression in x0, x1 ... (and B) as ONNX nodes, in one dtype.

    ``num`` gives a tensor of the compute dtype, ``cond`` a bool tensor (a Piecewise's
    condition); common subexpressions are written once.
    """

    def __init__(self, g: _Graph, args: Sequence[str], dtype: np.dtype):
        self.g, self.dtype = g, np.dtype(dtype)
        self.memo: dict[sympy.Basic, str] = {ops.xsym(i): a for i, a in enumerate(args)}
        self.conds: dict[sympy.Basic, str] = {}

    def k(self, value: Any) -> str:
        return self.g.constant(value, self.dtype)

    def op(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        return self.g.op(op_type, inputs, op_type.lower(), **attrs)

    def unsupported(self, what: Any) -> OnnxExportError:
        return OnnxExportError(
            f"ONNX export{self.g.where}: the formula uses {what}, which ONNX has no operator "
            f"for and symbp cannot write as ONNX arithmetic"
        )

    # numbers

    def num(self, e: sympy.Basic) -> str:
        if e not in self.memo:
            self.memo[e] = self._num(e)
        return self.memo[e]

    def _num(self, e: Any) -> str:
        if e == B:  # the batch size as a number (the 1/B of a mean)
            return self.g.cast(self.g.op("Squeeze", [self.g.batch(), self.g.ints([0])]), self.dtype)
        if e.is_Number or isinstance(e, sympy.NumberSymbol):
            return self.k(float(e) if self.dtype.kind == "f" else int(e))
        if isinstance(e, sympy.Add):
            return self._add(e)
        if isinstance(e, sympy.Mul):
            return self._mul(e)
        if isinstance(e, sympy.Pow):
            return self._pow(e.base, e.exp)
        if isinstance(e, sympy.Piecewise):
            return self._piecewise(e)
        if isinstance(e, (sympy.Max, sympy.Min)):
            kind = "Max" if isinstance(e, sympy.Max) else "Min"
            return self.g.op(kind, [self.num(a) for a in e.args], kind.lower())
        if isinstance(e, (ops._IEEETest, sympy.logic.boolalg.Boolean)):  # 0/1 as a number
            return self.g.cast(self.cond(e), self.dtype)
        if isinstance(e, scalar.Pieces):  # leaky_relu, hardtanh ...: their Piecewise
            return self.num(e.expanded())
        if isinstance(e, sympy.Function):
            return self._function(e)
        raise self.unsupported(f"{type(e).__name__} ({e})")

    def _add(self, e: sympy.Add) -> str:
        # x - y is Add(x, Mul(-1, y)) to SymPy: subtract the terms with a minus sign
        terms = sorted(e.args, key=lambda t: t.is_Number)  # the constant last: x + 1
        plus = [t for t in terms if not t.could_extract_minus_sign()]
        minus = [-t for t in terms if t.could_extract_minus_sign()]
        if not plus:
            return self.op("Neg", self.num(sympy.Add(*minus)))
        out = self.num(plus[0])
        for t in plus[1:]:
            out = self.op("Add", out, self.num(t))
        for t in minus:
            out = self.op("Sub", out, self.num(t))
        return out

    def _mul(self, e: sympy.Mul) -> str:
        coeff, factors = e.as_coeff_mul()
        top, bottom = [], []
        for f in factors:  # x / y is Mul(x, Pow(y, -1)): divide by the negative powers
            if isinstance(f, sympy.Pow) and f.exp.is_Number and f.exp < 0:
                bottom.append(sympy.Pow(f.base, -f.exp))
            else:
                top.append(f)
        negative = coeff < 0
        coeff = abs(coeff)
        if coeff.is_Rational and coeff.p == 1 and coeff.q != 1:  # x/3, exactly as NumPy's
            bottom.append(sympy.Integer(coeff.q))
        elif coeff != 1:
            top.insert(0, coeff)
        out = self.num(top[0]) if top else self.k(1)
        for f in top[1:]:
            out = self.op("Mul", out, self.num(f))
        for f in bottom:
            out = self.op("Div", out, self.num(f))
        return self.op("Neg", out) if negative else out

    def _pow(self, base: Any, ex: Any) -> str:
        if ex == sympy.Rational(1, 2):
            return self.op("Sqrt", self.num(base))
        if ex == -sympy.Rational(1, 2):
            return self.op("Div", self.k(1), self.op("Sqrt", self.num(base)))
        if ex.is_Integer and ex < 0:
            return self.op("Div", self.k(1), self._pow(base, -ex))
        if ex.is_Integer and 0 < ex <= 4:  # x*x: exact, and defined for negative x
            b = self.num(base)
            out = b
            for _ in range(int(ex) - 1):
                out = self.op("Mul", out, b)
            return out
        return self.op("Pow", self.num(base), self.num(ex))

    def _piecewise(self, e: sympy.Piecewise) -> str:
        (value, cond), *rest = e.args
        if cond == sympy.true:
            return self.num(value)
        other = self.num(sympy.Piecewise(*rest)) if rest else self.k(np.nan)
        return self.op("Where", self.cond(cond), self.num(value), other)

    def _function(self, e: sympy.Function) -> str:
        f, args = type(e), e.args
        if f in _UNARY:
            return self.op(_UNARY[f], self.num(args[0]))
        expanded = self._expanded(e)
        if expanded is not None:
            return self.num(expanded)
        x = [self.num(a) for a in args]
        if f is scalar.trunc:  # sign(x) floor(|x|): toward zero
            return self.op("Mul", self.op("Sign", x[0]), self.op("Floor", self.op("Abs", x[0])))
        if f is scalar.fmod:
            return self.op("Mod", *x, fmod=1)
        if f is scalar.pow:
            return self.op("Pow", *x)
        if f is scalar.clog:  # log clamped at -100, as PyTorch's BCELoss
            return self.op("Max", self.op("Log", x[0]), self.k(-100))
        if f is scalar.logaddexp:  # max + log(1 + exp(-|x - y|)): no overflow
            top = self.op("Max", *x)
            gap = self.op("Neg", self.op("Abs", self.op("Sub", *x)))
            return self.op(
                "Add", top, self.op("Log", self.op("Add", self.k(1), self.op("Exp", gap)))
            )
        if f is scalar.xlogy:  # 0 where x = 0 unless y is NaN
            zero = self.op(
                "And", self.op("Equal", x[0], self.k(0)), self.op("Not", self.op("IsNaN", x[1]))
            )
            return self.op("Where", zero, self.k(0), self.op("Mul", x[0], self.op("Log", x[1])))
        if f is sympy.Heaviside:
            h0 = self.num(args[1]) if len(args) > 1 else self.k(0.5)
            below = self.op("Where", self.op("Less", x[0], self.k(0)), self.k(0), h0)
            return self.op("Where", self.op("Greater", x[0], self.k(0)), self.k(1), below)
        if isinstance(f, type) and issubclass(f, sympy.atan2):  # symbp.compiler.scalar.atan2 too
            return self._atan2(x[0], x[1])
        raise self.unsupported(f"the function {f.__name__}")

    def _expanded(self, e: sympy.Function) -> sympy.Expr | None:
        """Functions written as others: exp2 as 2**x, log1p as log(1 + x) ... (each a few
        ulps from the dedicated routine where ONNX has none), and custom opaque ops."""
        f, a = type(e), e.args
        forms: dict[Any, Callable[..., sympy.Expr]] = {
            cfunctions.exp2: lambda x: sympy.Pow(2, x, evaluate=False),
            cfunctions.expm1: lambda x: sympy.exp(x) - 1,
            cfunctions.log1p: lambda x: sympy.log(1 + x),
            cfunctions.log2: lambda x: sympy.log(x) / sympy.log(2),
            cfunctions.log10: lambda x: sympy.log(x) / sympy.log(10),
            cfunctions.hypot: lambda x, y: sympy.sqrt(x**2 + y**2),
            sympy.erfc: lambda x: 1 - sympy.erf(x),
            scalar.remainder: lambda x, y: x - y * scalar.floor(x / y),
            scalar.bce: lambda p, t: -(t * scalar.clog(p) + (1 - t) * scalar.clog(1 - p)),
            ops.stop_gradient: lambda x: x,
        }
        if f in forms:
            return forms[f](*a)
        return _opaque_formula(e)

    def _atan2(self, y: str, x: str) -> str:
        """atan2 from atan(y/x) and the quadrant (ONNX has no Atan2)."""
        base = self.op("Atan", self.op("Div", y, x))
        up = self.op("Where", self.op("Less", y, self.k(0)), self.k(-np.pi), self.k(np.pi))
        left = self.op("Add", base, up)
        axis = self.op(
            "Where", self.op("Less", y, self.k(0)), self.k(-np.pi / 2), self.k(np.pi / 2)
        )
        axis = self.op("Where", self.op("Equal", y, self.k(0)), self.k(0), axis)
        out = self.op("Where", self.op("Less", x, self.k(0)), left, base)
        return self.op("Where", self.op("Equal", x, self.k(0)), axis, out)

    # conditions

    def cond(self, e: Any) -> str:
        if e not in self.conds:
            self.conds[e] = self._cond(e)
        return self.conds[e]

    def _cond(self, e: Any) -> str:
        logic = sympy.logic.boolalg
        if e in (sympy.true, sympy.false):
            return self.g.constant(bool(e), np.dtype(bool))
        if type(e) in _RELATIONS:
            return self.op(_RELATIONS[type(e)], self.num(e.lhs), self.num(e.rhs))
        if isinstance(e, sympy.Ne):
            return self.op("Not", self.op("Equal", self.num(e.lhs), self.num(e.rhs)))
        if isinstance(e, (logic.And, logic.Or, logic.Xor)):
            kind = type(e).__name__
            parts = [self.cond(a) for a in e.args]
            out = parts[0]
            for p in parts[1:]:
                out = self.op(kind, out, p)
            return out
        if isinstance(e, logic.Not):
            return self.op("Not", self.cond(e.args[0]))
        if isinstance(e, ops._IEEETest):
            x = self.num(e.args[0])
            if isinstance(e, ops.isnan):
                return self.op("IsNaN", x)
            if isinstance(e, ops.isinf):
                return self.op("IsInf", x)
            if isinstance(e, ops.isposinf):
                return self.op("IsInf", x, detect_negative=0)
            if isinstance(e, ops.isneginf):
                return self.op("IsInf", x, detect_positive=0)
            return self.op("Not", self.op("Or", self.op("IsNaN", x), self.op("IsInf", x)))
        return self.op("Not", self.op("Equal", self.num(e), self.k(0)))  # a number: nonzero


def _compute_dtype(node: Node) -> np.dtype:
    """The dtype a formula is computed in: its float sources' (a comparison of floats gives
    bools), else the node's float dtype, else int64 for integer sources."""
    for d in (*(s.dtype for s in node.src), node.dtype):
        if d.kind == "f":
            return d
    if any(s.dtype.kind in "iu" for s in node.src) or node.dtype.kind in "iu":
        return np.dtype(np.int64)
    return np.dtype(np.float32)  # bools only (logical_and): 0/1 in floats


def _broadcast(shapes: Sequence[tuple]) -> tuple | None:
    """NumPy's (and ONNX's) broadcast of shapes, None where they do not broadcast."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(ndim):
        dims = {s[i - ndim + len(s)] for s in shapes if i - ndim + len(s) >= 0} - {1}
        if len(dims) > 1:
            return None
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def _gemm_with_bias(g: _Graph, node: Node, names: dict[Node, str]) -> str | None:
    """``x @ W.T + b`` (a Linear) as one Gemm, W as stored and b its C operand, when ``node``
    adds a bias row to a matrix product; None otherwise."""
    if len(node.src) != 2 or node.arg.expr != ops.xsym(0) + ops.xsym(1):
        return None
    for mm, bias in (node.src, node.src[::-1]):
        if mm.op != "matmul" or bias.dtype != mm.dtype:
            continue
        b = bias.src[0] if bias.op == "expand" else bias
        if b.op == "reshape" and b.src[0].shape == b.shape[-1:]:  # [N] -> [1, N]: read [N]
            b = b.src[0]
        if tuple(b.shape) not in ((mm.shape[1],), (1, mm.shape[1])):
            continue
        x, y = mm.src
        trans = y.op == "transpose" and y.arg == (1, 0)
        w = y.src[0] if trans else y
        return g.op("Gemm", [names[x], names[w], names[b]], "gemm", transB=int(trans))
    return None


def _ew(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    gemm = _gemm_with_bias(g, node, names)
    if gemm is not None:
        return gemm
    src = list(node.src)
    # ONNX's arithmetic broadcasts as NumPy's: read a bias before its expand where the
    # operands still broadcast to the node's shape (x @ W.T + b, not an Expand of b)
    unexpanded = [s.src[0] if s.op == "expand" else s for s in src]
    if _broadcast([s.shape for s in unexpanded]) == tuple(node.shape):
        src = unexpanded
    dtype = _compute_dtype(node)
    args = [names[s] if s.dtype == dtype else g.cast(names[s], dtype) for s in src]
    f = _Formula(g, args, dtype)
    expr = node.arg.expr
    if node.dtype == np.dtype(bool) and _is_indicator(expr):
        return f.cond(expr.args[0][1])  # a comparison: its condition is the bool
    out = f.num(expr)
    return out if dtype == node.dtype else g.cast(out, node.dtype)


def _is_indicator(expr: Any) -> bool:
    return (
        isinstance(expr, sympy.Piecewise)
        and len(expr.args) == 2
        and expr.args[0][0] == 1
        and expr.args[1] == (0, True)
    )


# ---------------------------------------------------------------- the structural ops


def _const(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    value = sympy.sympify(node.arg)
    if value.free_symbols:  # in B (a 1/B): a formula of no arguments
        dtype = node.dtype if node.dtype.kind == "f" else np.dtype(np.float64)
        k = _Formula(g, [], dtype).num(value)
        k = k if dtype == node.dtype else g.cast(k, node.dtype)
    else:
        k = g.constant(float(value) if node.dtype.kind == "f" else int(value), node.dtype)
    if not node.shape:
        return g.op("Identity", [k], "const")
    return g.op("Expand", [k, g.shape(node.shape)], "const")


def _reduce(kind: str, axes_input: bool) -> Callable[..., str]:
    def rule(g: _Graph, node: Node, names: dict[Node, str]) -> str:
        axes, keepdim = node.arg
        x = names[node.src[0]]
        if axes_input:  # ReduceSum takes its axes as an input from opset 13
            return g.op(kind, [x, g.ints(axes)], kind.lower(), keepdims=int(keepdim))
        return g.op(kind, [x], kind.lower(), axes=list(axes), keepdims=int(keepdim))

    return rule


def _matmul(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    x, y = node.src
    if y.op == "transpose" and y.arg == (1, 0):  # x @ W.T: Gemm reads W as stored
        return g.op("Gemm", [names[x], names[y.src[0]]], "gemm", transB=1)
    return g.op("MatMul", [names[x], names[y]], "matmul")


def _conv2d(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    x, w = node.src
    a = node.arg
    (t, b), (left, r) = a.padding
    return g.op(
        "Conv",
        [names[x], names[w]],
        "conv",
        kernel_shape=[int(d) for d in w.shape[2:]],
        strides=list(a.stride),
        pads=[t, left, b, r],
        dilations=list(a.dilation),
        group=a.groups,
    )


def _pool_attrs(a: ops.Pool2dArg) -> dict[str, Any]:
    (ph, pw) = a.padding
    return {"kernel_shape": list(a.kernel), "strides": list(a.stride), "pads": [ph, pw, ph, pw]}


def _maxpool(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    a = node.arg
    x = names[node.src[0]]
    return g.op("MaxPool", [x], "maxpool", dilations=list(a.dilation), **_pool_attrs(a))


def _avgpool(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    a = node.arg
    if a.dilation != (1, 1):
        raise OnnxExportError(
            f"ONNX export{g.where}: average pooling with dilation {a.dilation} needs opset 19"
        )
    include = a.count_include_pad or a.divisor is not None
    out = g.op(
        "AveragePool",
        [names[node.src[0]]],
        "avgpool",
        count_include_pad=int(include),
        **_pool_attrs(a),
    )
    if a.divisor is None:
        return out
    scale = a.kernel[0] * a.kernel[1] / a.divisor  # a divisor_override: the sum over it
    return g.op("Mul", [out, g.constant(scale, node.dtype)], "avgpool")


def _slice(g: _Graph, x: str, box: Sequence[tuple[int, Any, Any, int]]) -> str:
    """ONNX Slice of (axis, start, stop, step) entries; starts and stops may be in B."""
    if not box:
        return g.op("Identity", [x], "slice")
    axes, starts, stops, steps = zip(*box)
    return g.op(
        "Slice",
        [x, g.shape(starts), g.shape(stops), g.ints(axes), g.ints(steps)],
        "slice",
    )


def _slice_rule(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    x = node.src[0]
    box = []
    for axis, (a, n) in enumerate(zip(node.arg, x.shape)):
        if a.start == 0 and a.size == n and a.step == 1:
            continue
        stop = a.start + a.step * (a.size - 1) + 1 if a.size != 0 else a.start
        box.append((axis, a.start, sympy.expand(stop), a.step))
    return _slice(g, names[x], box)


def _flip(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    end = -(2**63)  # past the first entry, going backwards
    return _slice(g, names[node.src[0]], [(a, -1, end, -1) for a in node.arg])


def _roll(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    out = names[node.src[0]]
    for axis, shift in node.arg:
        n = int(node.shape[axis])
        tail = _slice(g, out, [(axis, n - shift, n, 1)])
        head = _slice(g, out, [(axis, 0, n - shift, 1)])
        out = g.op("Concat", [tail, head], "roll", axis=axis)
    return out


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}


def _pad(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    widths, mode, value = node.arg
    if mode == "circular":  # Pad's "wrap" is opset 19: the wrapped ends sliced off, concatenated
        return _circular_pad(g, node, names)
    pads = g.ints([w[0] for w in widths] + [w[1] for w in widths])
    inputs = [names[node.src[0]], pads]
    if mode == "constant":
        inputs.append(g.constant(float(sympy.sympify(value)), node.dtype))
    return g.op("Pad", inputs, "pad", mode=_PAD_MODES[mode])


def _circular_pad(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    """Axis by axis, as np.pad's wrap (so the corners wrap too): the last ``before`` entries,
    the tensor, its first ``after`` entries (at most one period: ``ops._check_pad``)."""
    x = node.src[0]
    out = names[x]
    for axis, (lo, hi) in enumerate(node.arg[0]):
        n = x.shape[axis]
        parts = [_slice(g, out, [(axis, n - lo, n, 1)])] if lo else []
        parts += [out] + ([_slice(g, out, [(axis, 0, hi, 1)])] if hi else [])
        if len(parts) > 1:
            out = g.op("Concat", parts, "pad", axis=axis)
    return out


def _take(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    x, *idx = node.src
    a = node.arg
    if len(idx) == 1:
        return g.op("Gather", [names[x], names[idx[0]]], "gather", axis=a.axis)
    # k index arrays into k adjacent axes (torch.gather is one along every axis): one Gather
    # into those axes flattened, at the row-major linear index Σ i_m · stride_m
    sizes = x.shape[a.axis : a.axis + len(idx)]
    flat = _linear_index(g, idx, sizes, a.wrap, names)
    shape = (*x.shape[: a.axis], sympy.Mul(*sizes), *x.shape[a.axis + len(idx) :])
    xs = g.op("Reshape", [names[x], g.shape(shape, infer_one=True)], "flat")
    return g.op("Gather", [xs, flat], "gather", axis=a.axis)


def _linear_index(g: _Graph, idx: Sequence[Node], sizes: Sequence[Any], wrap: bool, names) -> str:
    """The row-major linear index Σ i_m · stride_m of k index arrays into axes of ``sizes``
    (int64), negative indices counted from the end where ``wrap``."""
    i64 = np.dtype(np.int64)
    flat = None
    for m, (i, size) in enumerate(zip(idx, sizes)):
        k = names[i] if i.dtype == i64 else g.cast(names[i], i64)
        if wrap:
            n = g.scalar_dim(size)
            k = g.op("Where", [g.op("Less", [k, g.constant(0, i64)]), g.op("Add", [k, n]), k])
        stride = sympy.Mul(*sizes[m + 1 :])
        if stride != 1:
            k = g.op("Mul", [k, g.scalar_dim(stride)], "index")
        flat = k if flat is None else g.op("Add", [flat, k], "index")
    assert flat is not None
    return flat


def _put_add(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    """Scatter-add into zeros (scatter_add, index_add): one ScatterElements with reduction
    add, into the indexed axes flattened, at the linear index of the k index arrays."""
    ct, *idx = node.src
    a = node.arg
    k = len(idx)
    sizes = node.shape[a.axis : a.axis + k]
    lead, rest = node.shape[: a.axis], node.shape[a.axis + k :]
    places = sympy.Mul(*idx[0].shape)
    flat = _linear_index(g, idx, sizes, a.wrap, names)
    view = [1] * len(lead) + [places] + [1] * len(rest)
    updates_shape = (*lead, places, *rest)
    flat = g.op("Reshape", [flat, g.shape(view, infer_one=True)], "index")
    flat = g.op("Expand", [flat, g.shape(updates_shape)], "index")
    updates = g.op("Reshape", [names[ct], g.shape(updates_shape, infer_one=True)], "updates")
    zeros = _zeros(g, (*lead, sympy.Mul(*sizes), *rest), node.dtype)
    out = g.op("ScatterElements", [zeros, flat, updates], "put_add", axis=a.axis, reduction="add")
    return g.op("Reshape", [out, g.shape(node.shape, infer_one=True)], "put_add")


def _put_along(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    ct, idx = node.src
    axis, _ = node.arg
    zeros = _zeros(g, node.shape, node.dtype)
    inputs = [zeros, names[idx], names[ct]]
    return g.op("ScatterElements", inputs, "put_along", axis=axis, reduction="add")


def _zeros(g: _Graph, shape: Sequence[Any], dtype: np.dtype) -> str:
    value = g.onnx.numpy_helper.from_array(np.zeros(1, dtype))
    return g.op("ConstantOfShape", [g.shape(shape)], "zeros", value=value)


def _iota(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    shape, axis = node.arg
    i64 = np.dtype(np.int64)
    line = g.op(
        "Range",
        [g.constant(0, i64), g.scalar_dim(shape[axis]), g.constant(1, i64)],
        "iota",
    )
    view = [-1 if i == axis else 1 for i in range(len(shape))]
    line = g.op("Reshape", [line, g.ints(view)], "iota")
    return g.op("Expand", [line, g.shape(shape)], "iota")


def _onehot(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    classes, dtype = node.arg
    depth = g.constant(classes, np.dtype(np.int64))
    values = g.constant([0, 1], dtype, (2,))
    return g.op("OneHot", [names[node.src[0]], depth, values], "onehot", axis=-1)


def _simple(op_type: str, **attrs_of: Callable[[Any], Any]) -> Callable[..., str]:
    """A rule writing one ONNX operator of the node's sources, attributes from its arg."""

    def rule(g: _Graph, node: Node, names: dict[Node, str]) -> str:
        attrs = {k: f(node.arg) for k, f in attrs_of.items()}
        return g.op(op_type, [names[s] for s in node.src], op_type.lower(), **attrs)

    return rule


def _cumsum(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    axis, reverse = node.arg
    axis_t = g.constant(axis, np.dtype(np.int64))
    return g.op("CumSum", [names[node.src[0]], axis_t], "cumsum", reverse=int(reverse))


def _tril(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    k, upper = node.arg
    k_t = g.constant(k, np.dtype(np.int64))
    return g.op("Trilu", [names[node.src[0]], k_t], "tril", upper=int(upper))


def _argidx(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    axis, keepdim, largest = node.arg
    kind = "ArgMax" if largest else "ArgMin"
    x = names[node.src[0]]
    return g.op(kind, [x], kind.lower(), axis=axis, keepdims=int(keepdim), select_last_index=0)


# ---------------------------------------------------------------- sorting and running ops


def _comparable(g: _Graph, x: str, dtype: np.dtype) -> str:
    """``x`` in a dtype that TopK and the comparisons take: bools as 0/1 int32."""
    return g.cast(x, np.dtype(np.int32)) if dtype == np.dtype(bool) else x


def _topk(g: _Graph, x: str, k: str, axis: int, largest: bool) -> str:
    """The int64 positions of TopK (sorted): ties in their order, as ONNX specifies."""
    values, indices = g.fresh("topk_values"), g.fresh("topk")
    g.nodes.append(
        g.helper.make_node(
            "TopK", [x, k], [values, indices], axis=axis, largest=int(largest), sorted=1
        )
    )
    return indices


def _argsort(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    """TopK of the first ``stop`` positions (``largest`` when descending), then those from
    ``start``. ONNX orders ties by position, lower first, as symbp's stable sort does; it
    leaves NaN unordered, which symbp sorts as the largest value (last ascending, first
    descending, in their order): floats are sorted with NaN as +inf, then a second, stable
    TopK of the NaN flags moves the NaNs past the infinities."""
    axis, descending, start, stop = node.arg
    (x,) = node.src
    xs = _comparable(g, names[x], x.dtype)
    if x.dtype.kind == "f":
        nan = g.op("IsNaN", [xs], "isnan")
        key = g.op("Where", [nan, g.constant(np.inf, x.dtype), xs], "key")
        order = _topk(g, key, g.dim(x.shape[axis]), axis, descending)
        flags = g.op("GatherElements", [g.cast(nan, np.dtype(np.int32)), order], axis=axis)
        regroup = _topk(g, flags, g.dim(stop), axis, descending)
        idx = g.op("GatherElements", [order, regroup], "argsort", axis=axis)
    else:
        idx = _topk(g, xs, g.dim(stop), axis, descending)
    return _slice(g, idx, [(axis, start, stop, 1)]) if start else idx


def _scan(g: _Graph, xs: list[str], axis: int, n: Any, combine: Callable[..., list[str]]):
    """The inclusive scan of tensors ``xs`` along ``axis`` (of static length ``n``) under an
    associative ``combine(earlier, later)``, without a loop (Hillis and Steele): at steps
    s = 1, 2, 4, ... < n every entry from s on is combined with the one s before it."""
    if not isinstance(n, int):
        raise OnnxExportError(
            f"ONNX export{g.where}: a running product, maximum or minimum along an axis of "
            f"size {n}: the export needs a static length (not the batch)"
        )
    s = 1
    while s < n:
        head = [_slice(g, x, [(axis, 0, s, 1)]) for x in xs]
        earlier = [_slice(g, x, [(axis, 0, n - s, 1)]) for x in xs]
        later = [_slice(g, x, [(axis, s, n, 1)]) for x in xs]
        merged = combine(earlier, later)
        xs = [g.op("Concat", [h, m], "scan", axis=axis) for h, m in zip(head, merged)]
        s *= 2
    return xs


def _cumprod(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    """Products of whole windows (ONNX has CumSum only; exp∘cumsum∘log would lose zeros and
    signs): the same factors as a running product, multiplied in a tree's order."""
    (x,) = node.src
    mul = "And" if x.dtype == np.dtype(bool) else "Mul"

    def combine(earlier: list[str], later: list[str]) -> list[str]:
        return [g.op(mul, [earlier[0], later[0]], "cumprod")]

    return _scan(g, [names[x]], node.arg, x.shape[node.arg], combine)[0]


def _cumarg(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    """A scan of (value, position) pairs keeping the later of two unless the earlier is more
    extreme: the last of tied entries, and a NaN, once seen, stays (the first NaN's
    position), as ``ops.CumArg`` (PyTorch's cummax/cummin). The pairs' order is a total one,
    so the choice is associative."""
    axis, largest = node.arg
    (x,) = node.src
    xs = _comparable(g, names[x], x.dtype)
    i64 = np.dtype(np.int64)
    n = x.shape[axis]
    line = g.op("Range", [g.constant(0, i64), g.scalar_dim(n), g.constant(1, i64)], "position")
    view = [-1 if a == axis else 1 for a in range(x.ndim)]
    line = g.op("Reshape", [line, g.ints(view)], "position")
    positions = g.op("Expand", [line, g.op("Shape", [xs], "shape")], "position")
    floats = x.dtype.kind == "f"

    def combine(earlier: list[str], later: list[str]) -> list[str]:
        (a, ia), (b, ib) = earlier, later
        take = g.op("GreaterOrEqual" if largest else "LessOrEqual", [b, a], "later")
        if floats:  # b is NaN, or b at least as extreme; never past a NaN
            take = g.op("Or", [g.op("IsNaN", [b]), take], "later")
            take = g.op("And", [g.op("Not", [g.op("IsNaN", [a])]), take], "later")
        return [g.op("Where", [take, b, a], "run"), g.op("Where", [take, ib, ia], "cumarg")]

    return _scan(g, [xs, positions], axis, n, combine)[1]


# ---------------------------------------------------------------- diagonals


def _diagonal(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    """The two axes moved last and flattened, then one Gather at the diagonal's positions
    (t + max(−k, 0))·n2 + t + max(k, 0): copies, exact for any value (no product with an
    identity matrix, which would turn an inf into NaN)."""
    k, d1, d2 = node.arg
    (x,) = node.src
    n2 = int(x.shape[d2])
    rest = [a for a in range(x.ndim) if a not in (d1, d2)]
    moved = g.op("Transpose", [names[x]], "diagonal", perm=[*rest, d1, d2])
    shape = [*(x.shape[a] for a in rest), x.shape[d1] * n2]
    flat = g.op("Reshape", [moved, g.shape(shape, infer_one=True)], "diagonal")
    t = np.arange(node.shape[-1])
    at = g.constant((t + max(-k, 0)) * n2 + t + max(k, 0), np.dtype(np.int64), t.shape)
    return g.op("Gather", [flat, at], "diagonal", axis=len(rest))


def _diag_embed(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    """The last axis with a zero after it, gathered at an n1×n2 table of positions (t on the
    diagonal, the zero's elsewhere), then the two new axes moved to (d1, d2)."""
    k, d1, d2, (n1, n2) = node.arg
    (x,) = node.src
    size = int(x.shape[-1])
    pads = g.ints([0] * x.ndim + [0] * (x.ndim - 1) + [1])
    padded = g.op("Pad", [names[x], pads], "diag_embed", mode="constant")  # zeros
    table = np.full((n1, n2), size, np.int64)
    t = np.arange(size)
    table[t + max(-k, 0), t + max(k, 0)] = t
    at = g.constant(table, np.dtype(np.int64), table.shape)
    out = g.op("Gather", [padded, at], "diag_embed", axis=x.ndim - 1)
    rest = iter(range(x.ndim - 1))
    ndim = x.ndim + 1
    perm = [ndim - 2 if a == d1 else ndim - 1 if a == d2 else next(rest) for a in range(ndim)]
    if perm == list(range(ndim)):
        return out
    return g.op("Transpose", [out], "diag_embed", perm=perm)


def _loop(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    """A scan written out step by step (its length is fixed): the body's nodes once per step,
    its leaves named by the step's carry, input and the consts; the carries stacked."""
    loop = node.arg
    carry = names[node.src[0]]
    consts = dict(zip(loop.consts, (names[s] for s in node.src[2:])))
    steps = []
    for t in range(node.shape[0]):
        x_t = g.op("Gather", [names[node.src[1]], g.constant(t, np.dtype(np.int64))], "x_t",
                   axis=0)  # fmt: skip
        local = {loop.steps[0]: carry, loop.steps[1]: x_t, **consts}
        _write(g, loop.outputs[0], local)
        carry = local[loop.outputs[0]]
        steps.append(g.op("Unsqueeze", [carry, g.ints([0])], "carry"))
    return g.op("Concat", steps, "scan", axis=0)


def _not_inference(what: str) -> ops.NotApplicable:
    return ops.NotApplicable(f"{what}: a gradient op, not part of an inference graph")


def _cast_rule(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    return g.cast(names[node.src[0]], node.dtype)


def _reshape(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    return g.op("Reshape", [names[node.src[0]], g.shape(node.shape, infer_one=True)], "reshape")


def _expand(g: _Graph, node: Node, names: dict[Node, str]) -> str:
    return g.op("Expand", [names[node.src[0]], g.shape(node.shape)], "expand")


# One row per op of ops.OPS: how it is written in ONNX, or why it is not (a guard test in
# tests/test_onnx.py fails when an op has no row). "input" and "detach" are names, no node.
ONNX: dict[str, Callable[..., str] | ops.NotApplicable] = {
    "input": ops.NotApplicable("a graph input or an initializer, named not computed"),
    "detach": ops.NotApplicable("the identity in inference: its source's name"),
    "psum": ops.NotApplicable("a sum across ranks: in one process, its source's name"),
    "function": ops.NotApplicable("a custom autograd.Function's output: its forward's, src[0]"),
    "const": _const,
    "ew": _ew,
    "cast": _cast_rule,
    "expand": _expand,
    "reshape": _reshape,
    "transpose": _simple("Transpose", perm=list),
    "sum": _reduce("ReduceSum", axes_input=True),
    "max": _reduce("ReduceMax", axes_input=False),
    "prod": _reduce("ReduceProd", axes_input=False),
    "matmul": _matmul,
    "bmm": _simple("MatMul"),
    "onehot": _onehot,
    "conv2d": _conv2d,
    "maxpool2d": _maxpool,
    "avgpool2d": _avgpool,
    "slice": _slice_rule,
    "cat": _simple("Concat", axis=int),
    "flip": _flip,
    "roll": _roll,
    "pad": _pad,
    "take": _take,
    "take_along": _simple("GatherElements", axis=int),
    "iota": _iota,
    "argidx": _argidx,
    "cumsum": _cumsum,
    "tril": _tril,
    "bernoulli": ops.NotApplicable(
        "dropout in training mode; inference has no dropout: pass training=False to F.dropout "
        "or use nn.Dropout, which eval() switches off"
    ),
    "argsort": _argsort,
    "cumarg": _cumarg,
    "cumprod": _cumprod,
    "diagonal": _diagonal,
    "diag_embed": _diag_embed,
    "scan": _loop,
    "scan_vjp": _not_inference("scan_vjp"),
    "conv2d_input_grad": _not_inference("conv2d_input_grad"),
    "conv2d_weight_grad": _not_inference("conv2d_weight_grad"),
    "maxpool2d_grad": _not_inference("maxpool2d_grad"),
    "avgpool2d_grad": _not_inference("avgpool2d_grad"),
    "slice_grad": _not_inference("slice_grad"),
    "put_add": _put_add,
    "put_along": _put_along,
    "pad_grad": _not_inference("pad_grad"),
    "cumprod_grad": _not_inference("cumprod_grad"),
}


# ---------------------------------------------------------------- the model


def _layer(node: Node, users: dict[Node, list[Node]], labels: Labels) -> str:
    """The layer a node is computed in: its own label, else its nearest labelled consumer's."""
    seen, todo = set(), [node]
    while todo:
        n = todo.pop(0)
        if n in labels:
            return f" in layer '{labels[n]}'"
        if n not in seen:
            seen.add(n)
            todo.extend(users.get(n, []))
    return ""


# Ops whose value is their first source's: in inference, its name (a custom Function's other
# sources feed only its backward, and are not written)
_ALIASES = ("detach", "psum", "function")


def _needed(out: Node) -> list[Node]:
    """The nodes ``out``'s value needs, each after its sources."""
    need: set[Node] = set()
    todo = [out]
    while todo:
        n = todo.pop()
        if n not in need:
            need.add(n)
            todo.extend(n.src[:1] if n.op in _ALIASES else n.src)
    return [n for n in toposort([out]) if n in need]


def _leaf_name(arg: Any) -> str:
    return leaf_name(arg)  # a parameter's label: the model's name


def _write(g: _Graph, out: Node, names: dict[Node, str]) -> None:
    """The ONNX nodes computing ``out`` from the values ``names`` has (leaves and inputs),
    each node's name added to ``names``."""
    order = _needed(out)
    users = consumers(order)
    for node in order:
        if node in names:
            continue
        rule = ONNX.get(node.op)
        g.where = f" (op '{node.op}'{_layer(node, users, g.labels)})"
        if node.op in _ALIASES:
            names[node] = names[node.src[0]]
            continue
        if node.op == "input" or rule is None or isinstance(rule, ops.NotApplicable):
            why = (
                f"'{node.arg}' is none of its inputs, parameters or buffers"
                if node.op == "input"
                else rule.why
                if isinstance(rule, ops.NotApplicable)
                else "no ONNX rule for it (symbp.onnx_export.ONNX)"
            )
            raise OnnxExportError(
                f"ONNX export: op '{node.op}'{_layer(node, users, g.labels)}: {why}"
            )
        names[node] = rule(g, node, names)


def onnx_model(compiled: Any, x: Any = None, *, check: bool = True) -> Any:
    """The inference graph of ``compiled`` (a ``CompiledModel``) as an ``onnx.ModelProto``.

    ``x`` is a sample input (its first row gives the feature shape and dtype); without it, the
    shape the model was compiled for (``predict``, ``fit``, ``step`` or ``build`` first).
    With ``check``, ``onnx.checker.check_model`` (with shape inference) runs on the result.
    """
    onnx = _onnx()
    from symbp.nn.conv import program_inputs

    sample = _sample(compiled, x)
    traced = compiled._trace_inference(sample)
    if len(traced.outputs) != 1:
        raise OnnxExportError(
            f"ONNX export: the model returns {len(traced.outputs)} tensors; the inference graph "
            f"has one output, as predict (return one tensor, or cat them)"
        )
    (out,) = traced.outputs
    buffers, seeds = program_inputs(compiled.net, traced)
    if seeds:  # a dropout outside any Module that eval() could switch off
        raise OnnxExportError(
            f"ONNX export: the model applies dropout ('{seeds[0].arg}') in training mode; "
            f"inference has no dropout: pass training=False to F.dropout"
        )
    (xnode,) = traced.inputs.values()
    g = _Graph(onnx, "input", traced.labels)
    names: dict[Node, str] = {xnode: "input"}
    leaves: dict[Node, np.ndarray] = {p.node: p._data for p in traced.params.values()}
    for u in buffers:  # a buffer is a Tensor (PyTorch's), its array behind it
        b = u.module._buffers[u.buffer]
        leaves[u.read] = np.asarray(getattr(b, "_data", b))
    leaves.update(traced.constants)
    for leaf, value in leaves.items():
        names[leaf] = g.initializer(np.asarray(value, dtype=leaf.dtype), _leaf_name(leaf.arg))
    _write(g, out, names)
    g.nodes.append(g.helper.make_node("Identity", [names[out]], ["output"]))
    graph = g.helper.make_graph(
        _live(g.nodes, "output"),
        f"{type(compiled.net).__name__}",
        [_value_info(g, "input", xnode)],
        [_value_info(g, "output", out)],
        initializer=g.inits,
    )
    _drop_unused(graph)
    model = g.helper.make_model(
        graph,
        opset_imports=[g.helper.make_opsetid("", OPSET)],
        producer_name="symbp",
        ir_version=IR_VERSION,
    )
    model.producer_version = __version__
    if check:
        onnx.checker.check_model(model, full_check=True)
    return model


def _sample(compiled: Any, x: Any) -> np.ndarray:
    """One row shaped as the model's input: from ``x``, else from what was compiled."""
    if x is not None:
        arr = x.numpy() if hasattr(x, "numpy") and not isinstance(x, np.ndarray) else x
        arr = np.asarray(arr)
        if arr.ndim == 0:
            raise OnnxExportError("export_onnx: x must have a batch dimension, got a scalar")
        return arr[:1]
    spec = None
    if compiled._predict is not None:
        spec = compiled._predict.spec["x"]
    elif compiled._train is not None:
        spec = compiled._train.spec["data"]["x"]
    if spec is None:
        raise OnnxExportError(
            "export_onnx: pass a sample input x (or call predict, fit or build first): the "
            "graph is traced for its feature shape and dtype"
        )
    return np.zeros([1, *spec["shape"][1:]], np.dtype(spec["dtype"]))


def _value_info(g: _Graph, name: str, node: Node) -> Any:
    dims = [d if isinstance(d, int) else (BATCH if d == B else str(d)) for d in node.shape]
    dtype = g.helper.np_dtype_to_tensor_dtype(node.dtype)
    return g.helper.make_tensor_value_info(name, dtype, dims)


def _live(nodes: list[Any], output: str) -> list[Any]:
    """The nodes the output needs, in order (a Transpose that Gemm reads past is dropped)."""
    need, keep = {output}, []
    for n in reversed(nodes):
        if any(o in need for o in n.output):
            keep.append(n)
            need.update(n.input)
    return keep[::-1]


def _drop_unused(graph: Any) -> None:
    used = {i for n in graph.node for i in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def export_onnx(
    compiled: Any, path: str | os.PathLike[str], x: Any = None, *, check: bool = True
) -> Path:
    """Write ``onnx_model(compiled, x)`` to ``path`` (``name.onnx``); returns the path."""
    path = Path(path)
    if path.suffix != ".onnx":
        raise OnnxExportError(f"the ONNX file's name must end in .onnx, not {path.name!r}")
    model = onnx_model(compiled, x, check=check)
    from symbp.checkpoint import atomic_write

    with atomic_write(path) as f:
        f.write(model.SerializeToString())
    return path
