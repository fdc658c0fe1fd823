"""The reductions family's tensor ops: the reductions that are ops of their own (prod,
cumsum, cumprod, argmax, sort ...), each printed as a function of its tensors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from symbp.formulas.rules import Printing
from symbp.formulas.scalar_level import _ScalarLevel
from symbp.formulas.text import FUNCTIONS
from symbp.formulas.vocabulary import TENSOR_NUMPY, TENSOR_SHAPES, Static, TensorOp, _Stub
from symbp.ops import OPS

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
