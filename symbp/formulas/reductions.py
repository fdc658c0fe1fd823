"""The reductions family's tensor ops: the reductions that are ops of their own (prod,
cumsum, cumprod, argmax, sort ...), each printed as a function of its tensors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import sympy

from symbp.compiler.ops import OPS
from symbp.formulas.index import INDEX_FORMS, INDEX_SUMS, INDEX_TRIGGERS, _always, _letters
from symbp.formulas.layout import _MUL
from symbp.formulas.rules import Printing
from symbp.formulas.scalar_level import _ScalarLevel
from symbp.formulas.text import FUNCTIONS, TextPrinter
from symbp.formulas.vocabulary import TENSOR_NUMPY, TENSOR_SHAPES, Static, TensorOp, _Stub

# -- issue 12 . reductions (rows of this family go below this line)
#
# The reductions that are ops of their own print as functions of their tensors, named as
# PyTorch names them (cumsum(x), sort indices ...), one TensorOp class per op whose NumPy form
# is the op table's own rule and whose last argument is the op's static arg and output shape.


class _AlongArg(Static):
    """An along-axis op's (arg, output shape): handed to NumPy as the arg alone."""

    def _numpycode(self, printer: Any) -> str:
        return repr(self.value[0])

    _lambdacode = _pythoncode = _numpycode

    def _sympystr(self, printer: Any) -> str:
        return str(self.value[0])


def _along_numpy(op: str) -> Callable[..., np.ndarray]:
    def run(*args: Any) -> np.ndarray:
        *vals, arg = args
        vals = [np.asarray(v) for v in vals]
        node: Any = _Stub(arg, (), np.result_type(*vals))
        return OPS[op].numpy(node, vals, {})

    return run


def _along_class(op: str, cls: str, tensors: int, text: str, latex: str) -> type[TensorOp]:
    new = type(cls, (TensorOp,), {"nargs": tensors + 1, "tensors": tensors, "__doc__": text})
    TENSOR_NUMPY[cls] = _along_numpy(op)
    TENSOR_SHAPES[cls] = lambda e, s: tuple(e.args[-1].value[1])
    FUNCTIONS[cls] = (text, latex)
    return new


_ALONG = {
    op: _along_class(op, cls, tensors, text, latex)
    for op, cls, tensors, text, latex in [
        ("argidx", "ArgIndex", 1, "argmax", r"\operatorname{argmax}"),
        ("argsort", "ArgSort", 1, "argsort", r"\operatorname{argsort}"),
        ("cumarg", "CumArg", 1, "cumargmax", r"\operatorname{cumargmax}"),
        ("take_along", "TakeAlong", 2, "take_along", r"\operatorname{take\_along}"),
        ("put_along", "PutAlong", 2, "put_along", r"\operatorname{put\_along}"),
        ("prod", "ProdOver", 1, "Π", r"\prod"),
        ("cumsum", "CumSum", 1, "cumsum", r"\operatorname{cumsum}"),
        ("cumprod", "CumProd", 1, "cumprod", r"\operatorname{cumprod}"),
        ("cumprod_grad", "CumProdGrad", 2, "cumprod_grad", r"\operatorname{cumprod\_grad}"),
    ]
}


def _along_row(op: str, scalar: Any = None, **flags: bool) -> Printing:
    cls = _ALONG[op]
    return Printing(
        lambda n, a, c: cls(*a, _AlongArg((n.arg, n.shape))),
        scalar or _ScalarLevel._evaluated,
        **flags,
    )


# In index notation a running sum reads Σ_{j′≤j} a[i,j′] (its adjoint, reversed, Σ_{j′≥j}) and
# a running product Π_{j′≤j} a[i,j′]: what a textbook writes, so an equation holding one
# prints entry by entry (``index.INDEX_TRIGGERS``).
def _running_index(self: TextPrinter, e: Any, idx: tuple, op: str, reverse: bool) -> str:
    a, axis = e.args[0], e.args[-1].value[0]
    axis = axis[0] if isinstance(axis, tuple) else axis  # cumsum's arg is (axis, reverse)
    at = idx[axis]
    base = at.name if isinstance(at, sympy.Symbol) else _letters(len(idx))[axis]
    (j,) = self.index_vars(base)  # j′ beside j
    src = [j if k == axis else i for k, i in enumerate(idx)]
    return self.running(op, j, reverse, at) + self.at(a, src, _MUL)


def _index_cumsum(self: TextPrinter, e: Any, idx: tuple) -> str:
    return _running_index(self, e, idx, "sum", bool(e.args[-1].value[0][1]))


def _index_cumprod(self: TextPrinter, e: Any, idx: tuple) -> str:
    return _running_index(self, e, idx, "prod", False)


def _index_cumprod_grad(self: TextPrinter, e: Any, idx: tuple) -> str:
    """cumprod's adjoint, x̄[i,j] = Σ_{j′≥j} ct[i,j′]·Π_{j″≤j′,j″≠j} x[i,j″]."""
    x, ct, axis = e.args[0], e.args[1], e.args[-1].value[0]
    at = idx[axis]
    base = at.name if isinstance(at, sympy.Symbol) else _letters(len(idx))[axis]
    k, m = self.index_vars(base, base)  # j′, j″
    row = [self.at(ct, [k if a == axis else i for a, i in enumerate(idx)], _MUL)]
    row.append(self.running("prod", m, False, k, but=at))
    row.append(self.at(x, [m if a == axis else i for a, i in enumerate(idx)], _MUL))
    return self.running("sum", k, True, at) + row[0] + self.times_scalar + row[1] + row[2]


for _op, _rule in (
    ("cumsum", _index_cumsum),
    ("cumprod", _index_cumprod),
    ("cumprod_grad", _index_cumprod_grad),
):
    _cls = _ALONG[_op]
    setattr(TextPrinter, f"_index_{_cls.__name__}", _rule)
    INDEX_TRIGGERS[_cls] = INDEX_FORMS[_cls] = _always
    INDEX_SUMS[_cls] = _always
