"""The linear-algebra family's tensor ops: tril/triu, diagonal and diag_embed (a batched
product is ``Dot``, like the 2-D one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import sympy

from symbp.compiler.ir import Node
from symbp.formulas.index import INDEX_FORMS, _always
from symbp.formulas.text import FUNCTIONS, TextPrinter
from symbp.formulas.vocabulary import TENSOR_NUMPY, TENSOR_SHAPES, TensorOp

#
# -- issue 12 . linalg (rows of this family go below this line)
#
# A batched product prints as a product, a·b, like the 2-D one (``Dot``: np.matmul evaluates
# both); the triangle and diagonal views are functions of their argument.


class Tril(TensorOp):
    """The lower triangle of the last two axes from diagonal k; args (a, k)."""

    nargs = 2


class Triu(TensorOp):
    """The upper triangle of the last two axes from diagonal k; args (a, k)."""

    nargs = 2


class Diagonal(TensorOp):
    """The diagonal of two axes as the last one; args (a, offset, d1, d2)."""

    nargs = 4


class DiagEmbed(TensorOp):
    """The last axis on the diagonal of two new ones; args (a, offset, d1, d2, n1, n2)."""

    nargs = 6


def _np_diag_embed(a: Any, k: Any, d1: Any, d2: Any, n1: Any, n2: Any) -> np.ndarray:
    a = np.asarray(a)
    k, d1, d2 = int(k), int(d1), int(d2)
    shape = list(a.shape[:-1])
    for d, size in sorted([(d1, int(n1)), (d2, int(n2))]):
        shape.insert(d, size)
    out = np.zeros(shape, dtype=a.dtype)
    t = np.arange(a.shape[-1])
    np.moveaxis(out, (d1, d2), (-2, -1))[..., t + max(-k, 0), t + max(k, 0)] = a
    return out


def _diag_shape(e: Any, s: Callable) -> tuple:
    a, k, d1, d2 = s(e.args[0]), int(e.args[1]), int(e.args[2]), int(e.args[3])
    rest = tuple(d for i, d in enumerate(a) if i not in (d1, d2))
    return (*rest, max(0, min(a[d1] + min(k, 0), a[d2] - max(k, 0))))


def _embed_shape(e: Any, s: Callable) -> tuple:
    a = list(s(e.args[0])[:-1])
    for d, size in sorted([(int(e.args[2]), e.args[4]), (int(e.args[3]), e.args[5])]):
        a.insert(d, size)
    return tuple(a)


TENSOR_NUMPY.update(
    {
        "Tril": lambda a, k: np.tril(a, int(k)),
        "Triu": lambda a, k: np.triu(a, int(k)),
        "Diagonal": lambda a, k, d1, d2: np.diagonal(a, int(k), int(d1), int(d2)),
        "DiagEmbed": _np_diag_embed,
    }
)
TENSOR_SHAPES.update(
    {
        "Tril": lambda e, s: s(e.args[0]),
        "Triu": lambda e, s: s(e.args[0]),
        "Diagonal": _diag_shape,
        "DiagEmbed": _embed_shape,
    }
)
FUNCTIONS.update(
    {
        "Tril": ("tril", r"\operatorname{tril}"),
        "Triu": ("triu", r"\operatorname{triu}"),
        "Diagonal": ("diag", r"\operatorname{diag}"),
        "DiagEmbed": ("diag_embed", r"\operatorname{diag\_embed}"),
    }
)


def _tril_expr(n: Node, a: list, c: Any) -> sympy.Expr:
    k, upper = n.arg
    return (Triu if upper else Tril)(a[0], sympy.Integer(k))


def _diag_embed_expr(n: Node, a: list, c: Any) -> sympy.Expr:
    k, d1, d2, (n1, n2) = n.arg
    return DiagEmbed(a[0], *(sympy.Integer(v) for v in (k, d1, d2, n1, n2)))


# In index notation a triangle reads as cases, {a[i,j] if j ≤ i+k; 0 otherwise} (an attention
# mask); it is no reason to print an equation entry by entry, but has its form there.
def _index_triangle(self: TextPrinter, e: Any, idx: tuple) -> str:
    a, k = e.args
    i, j = idx[-2:]
    rel = self.ge if isinstance(e, Triu) else self.le
    inside = f"{self.index(j)} {rel} {self.index(i + k)}"
    return self.cases([(self.at(a, idx, 0), inside), ("0", None)])


TextPrinter._index_Tril = TextPrinter._index_Triu = _index_triangle  # type: ignore[attr-defined]
INDEX_FORMS.update({Tril: _always, Triu: _always})
