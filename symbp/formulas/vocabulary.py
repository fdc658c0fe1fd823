"""The tensor-level vocabulary: the structural ops of printed formulas as SymPy functions.

A formula is SymPy algebra on named tensors; what is no elementwise algebra is a
``TensorOp`` here (``Dot`` a matrix product, ``Permute`` a transpose, ``SumOver`` a Σ, the
``Window`` ops a convolution or pooling ...). Each has a NumPy form (``TENSOR_NUMPY``, how
printed equations are evaluated) and a shape rule (``TENSOR_SHAPES``, which index notation
needs). The tensor language's families add their own ops to both tables from their modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
import sympy

from symbp.compiler import scalar
from symbp.compiler.ops import OPS, Conv2dArg, Pool2dArg


class TensorOp(sympy.Function):
    """A structural op on whole tensors. Argument 0 is the tensor; later ones are static
    (axes, shapes) unless ``tensors`` says more arguments are tensors."""

    is_real = True
    tensors = 1


class Dot(TensorOp):
    """Matrix product ``a·b``."""

    nargs = 2
    tensors = 2


class Permute(TensorOp):
    """Axis permutation (a transpose ``aᵀ`` for two axes); args (a, perm)."""

    nargs = 2


class SumOver(TensorOp):
    """Sum; args (a, axes, keepdim, kind), kind 0: over ``axes``, 1: over the batch, 2: all."""

    nargs = 4


class MaxOver(TensorOp):
    """Max; args (a, axes, keepdim, whole): whole says ``axes`` are all of a's axes."""

    nargs = 4


class Broadcast(TensorOp):
    """Broadcast to a shape; printed as its argument (broadcasting is implicit in math)."""

    nargs = 2


class Reshape(TensorOp):
    """Reshape; printed as its argument (a bias gradient of shape [1, n] is the [n] one)."""

    nargs = 2


class OneHot(TensorOp):
    """Integer labels to one-hot rows; args (y, classes)."""

    nargs = 2


class Fill(TensorOp):
    """A tensor filled with one value; args (value, shape)."""

    nargs = 2
    tensors = 0


class Softmax(TensorOp):
    """softmax along ``axes``, recognised in exp(u − max u) / Σ exp(u − max u)."""

    nargs = 2


class LogSoftmax(TensorOp):
    """log-softmax along ``axes``, recognised in u − max u − log Σ exp(u − max u)."""

    nargs = 2


class Literal(sympy.Atom):
    """A static argument that is no SymPy number: compared by value, handed to NumPy as a
    Python literal (``evaluate`` lambdifies it), printed as ``str(value)``."""

    is_commutative = True
    value: Any

    def __new__(cls, value: Any) -> Literal:
        obj = super().__new__(cls)
        obj.value = value
        return obj

    def _hashable_content(self) -> tuple:
        return (self.value,)

    def _numpycode(self, printer: Any) -> str:
        return repr(self.value)

    def _lambdacode(self, printer: Any) -> str:
        return self._numpycode(printer)

    _pythoncode = _lambdacode

    def _sympystr(self, printer: Any) -> str:
        return str(self.value)


class Static(Literal):
    """A convolution's static argument: its ``Conv2dArg`` and output shape."""

    def _numpycode(self, printer: Any) -> str:
        arg, shape = self.value
        return repr((arg, tuple(int(d) for d in shape[2:])))  # the batch B stays out

    def _sympystr(self, printer: Any) -> str:
        return str(self.value[0])


class Window(TensorOp):
    """A convolution or pooling op, or one of their gradients: the IR op ``op`` on the
    leading tensor arguments; the last argument is ``Static((op's arg, output shape))``.
    Printed in index notation (``TextPrinter._index_<Class>``) with ``letters`` for the
    output's indices."""

    op = ""
    letters: tuple[str, ...] = ("b", "c", "y", "x")

    @property
    def arg(self) -> Any:
        return self.args[-1].value[0]

    @property
    def out_shape(self) -> tuple:
        return tuple(self.args[-1].value[1])


class Conv(Window):
    """conv2d(x, w): z[b,o,y,x] = Σ_{i,p,q} w[o,i,p,q]·x[b,i,y+p,x+q] (stride 1, no padding)."""

    op, nargs, tensors, letters = "conv2d", 3, 2, ("b", "o", "y", "x")


class ConvInputGrad(Window):
    """conv2d_input_grad(δ, w), transposed: x̄[b,i,u,v] = Σ δ[b,o,u−p,v−q]·w[o,i,p,q]."""

    op, nargs, tensors, letters = "conv2d_input_grad", 3, 2, ("b", "i", "u", "v")


class ConvWeightGrad(Window):
    """conv2d_weight_grad(x, δ): w̄[o,i,p,q] = Σ_{b,y,x} δ[b,o,y,x]·x[b,i,y+p,x+q]."""

    op, nargs, tensors, letters = "conv2d_weight_grad", 3, 2, ("o", "i", "p", "q")


class MaxPool(Window):
    """maxpool2d(x): the maximum of each window."""

    op, nargs, tensors = "maxpool2d", 2, 1


class MaxPoolGrad(Window):
    """maxpool2d_grad(x, δ): δ routed to each window's arg-max."""

    op, nargs, tensors, letters = "maxpool2d_grad", 3, 2, ("b", "c", "u", "v")


class AvgPool(Window):
    """avgpool2d(x): the mean of each window."""

    op, nargs, tensors = "avgpool2d", 2, 1


class AvgPoolGrad(Window):
    """avgpool2d_grad(δ): each window's δ spread evenly over it."""

    op, nargs, tensors, letters = "avgpool2d_grad", 2, 1, ("b", "c", "u", "v")


# The IR's window ops and their tensor-level functions.
WINDOWS: dict[str, type[Window]] = {
    cls.op: cls
    for cls in (Conv, ConvInputGrad, ConvWeightGrad, MaxPool, MaxPoolGrad, AvgPool, AvgPoolGrad)
}


def _axes(a: Any) -> tuple[int, ...]:
    return tuple(int(i) for i in a)


def _np_softmax(a, axes):
    e = np.exp(a - np.max(a, axis=_axes(axes), keepdims=True))
    return e / np.sum(e, axis=_axes(axes), keepdims=True)


def _np_log_softmax(a, axes):
    s = a - np.max(a, axis=_axes(axes), keepdims=True)
    return s - np.log(np.sum(np.exp(s), axis=_axes(axes), keepdims=True))


class _Stub(NamedTuple):
    """What an op's NumPy rule reads of its node (the output's spatial size, not the batch)."""

    arg: Any
    shape: tuple
    dtype: np.dtype


def _window_numpy(op: str) -> Callable[..., np.ndarray]:
    """A window op's NumPy form: the op table's own reference rule."""

    def run(*args: Any) -> np.ndarray:
        *vals, (arg, hw) = args
        vals = [np.asarray(v) for v in vals]
        node: Any = _Stub(arg, (0, 0, *hw), np.result_type(*vals))
        return OPS[op].numpy(node, vals, {})

    return run


# NumPy forms of the tensor ops, for lambdify: this is how printed equations are evaluated.
TENSOR_NUMPY: dict[str, Callable[..., Any]] = {
    **{cls.__name__: _window_numpy(op) for op, cls in WINDOWS.items()},
    "Conv2dArg": Conv2dArg,  # Static arguments print as these constructors
    "Pool2dArg": Pool2dArg,
    "Dot": np.matmul,
    "Permute": lambda a, perm: np.transpose(a, _axes(perm)),
    "SumOver": lambda a, axes, keepdim, kind: np.sum(a, axis=_axes(axes), keepdims=bool(keepdim)),
    "MaxOver": lambda a, axes, keepdim, whole: np.max(a, axis=_axes(axes), keepdims=bool(keepdim)),
    "Broadcast": lambda a, shape: np.broadcast_to(a, _axes(shape)),
    "Reshape": lambda a, shape: np.reshape(a, _axes(shape)),
    "OneHot": lambda y, c: (np.asarray(y)[..., None] == np.arange(c)).astype(np.float64),
    "Fill": lambda value, shape: np.full(_axes(shape), value, dtype=np.float64),
    "Softmax": _np_softmax,
    "LogSoftmax": _np_log_softmax,
}
_LAMBDIFY_MODULES = [TENSOR_NUMPY, scalar.NUMPY, "numpy"]


def _reduced(e: Any, shape_of: Callable) -> tuple:
    a, axes, keepdim = e.args[:3]
    shape = shape_of(a)
    if keepdim == sympy.true:
        return tuple(1 if k in _axes(axes) else d for k, d in enumerate(shape))
    return tuple(d for k, d in enumerate(shape) if k not in _axes(axes))


# The shape of each tensor op's result, from its arguments' (``shape_of``): index notation
# needs it to line up a broadcast or a reshape with the indices of its argument.
TENSOR_SHAPES: dict[str, Callable[[Any, Callable], tuple]] = {
    "Dot": lambda e, s: (*s(e.args[0])[:-1], *s(e.args[1])[-1:]),
    "Permute": lambda e, s: tuple(s(e.args[0])[k] for k in _axes(e.args[1])),
    "SumOver": _reduced,
    "MaxOver": _reduced,
    "Broadcast": lambda e, s: tuple(e.args[1]),
    "Reshape": lambda e, s: tuple(e.args[1]),
    "Fill": lambda e, s: tuple(e.args[1]),
    "OneHot": lambda e, s: (*s(e.args[0]), e.args[1]),
    "Softmax": lambda e, s: s(e.args[0]),
    "LogSoftmax": lambda e, s: s(e.args[0]),
    **{cls.__name__: lambda e, s: e.out_shape for cls in WINDOWS.values()},
}


def shape_of(expr: sympy.Basic, shapes: Mapping[sympy.Symbol, tuple]) -> tuple:
    """The shape of a tensor-level expression, given its symbols' (unknown ones: scalars)."""

    def walk(e: sympy.Basic) -> tuple:
        if isinstance(e, TensorOp):
            return tuple(TENSOR_SHAPES[type(e).__name__](e, walk))
        if e.is_Symbol:
            return tuple(shapes.get(e, ()))
        out: tuple = ()
        for arg in e.args:  # elementwise: NumPy's broadcasting of the arguments' shapes
            s = walk(arg)
            n = max(len(out), len(s))
            out, s = (1,) * (n - len(out)) + out, (1,) * (n - len(s)) + s
            out = tuple(d2 if d1 == 1 else d1 for d1, d2 in zip(out, s))
        return out

    return walk(expr)


_SUM_AXES, _SUM_BATCH, _SUM_ALL = 0, 1, 2


def _tuple(values: Iterable[Any]) -> sympy.Tuple:
    return sympy.Tuple(*(sympy.sympify(v) for v in values))


class Equation(NamedTuple):
    """One printed equation: ``lhs = expr`` (SymPy), e.g. δ2 = (o − t)*o*(1 − o)."""

    lhs: sympy.Symbol
    expr: sympy.Expr
