"""The ``PRINTING`` table: one row per op of ``ops.OPS``, how ``formulas`` shows its nodes.

A row (``rules.Printing``) gives the op's SymPy expression, its scalar-level rule and its
part in naming error signals; ``tests/test_ops.py`` fails when an op lacks one.
"""

from __future__ import annotations

import sympy

from symbp.compiler.ir import Node
from symbp.compiler.ops import NotApplicable, to_expr, xsym
from symbp.formulas.indexing import (
    Gathered,
    Iota,
    Key,
    Placed,
    Scattered,
    Sliced,
    _key_of,
    _shape_key,
)
from symbp.formulas.linalg import Diagonal, _diag_embed_expr, _tril_expr
from symbp.formulas.naming import _Namer
from symbp.formulas.reductions import _along_row
from symbp.formulas.rules import PRINTING, Printing
from symbp.formulas.scalar_level import _ScalarLevel
from symbp.formulas.shaping import Cat, Flip, Pad, PadGrad, Roll, _pad_modes
from symbp.formulas.vocabulary import (
    WINDOWS,
    Broadcast,
    Dot,
    Fill,
    MaxOver,
    OneHot,
    Permute,
    Reshape,
    Static,
    SumOver,
    _tuple,
)

_INDEXED = NotApplicable("printed entry by entry already, in index notation")


def _window_row(delta: bool = False, reads_delta: bool = False, to_delta: bool = False):
    return Printing(_window_expr, _INDEXED, delta, reads_delta, to_delta)


def _window_expr(n: Node, a: list[sympy.Expr], c: _Namer) -> sympy.Expr:
    return WINDOWS[n.op](*a, Static((n.arg, n.shape)))


def _max_expr(n: Node, a: list[sympy.Expr], c: _Namer) -> sympy.Expr:
    whole = sympy.sympify(len(n.arg[0]) == n.src[0].ndim)
    return MaxOver(a[0], _tuple(n.arg[0]), sympy.sympify(n.arg[1]), whole)


def _reshape_expr(n: Node, a: list[sympy.Expr], c: _Namer) -> sympy.Expr:
    # A Linear on [B, T, I] is traced as rows: reshape(reshape(x, [B·T, I])·Wᵀ, [B, T, G]).
    # That is x·Wᵀ, a product over the last axis, as a textbook writes it.
    m = n.src[0]
    if m.op == "matmul" and m.src[0].op == "reshape" and isinstance(a[0], Dot):
        rows, w = m.src[0].src[0], m.src[1]
        if w.ndim == 2 and rows.shape[:-1] == n.shape[:-1] and len(m.src[0].shape) == 2:
            return Dot(a[0].args[0].args[0], a[0].args[1])
    return Reshape(a[0], _tuple(n.shape))


# One row per op of ops.OPS (tests/test_ops.py checks that none is missing), into the
# table ``rules`` declares.
# a loop's steps print as a block of their own (formulas.steps); the scalar level runs the
# loop on the symbols
_A_LOOP = NotApplicable("a loop: formulas.steps prints its body, step by step")

PRINTING |= {
    "input": Printing(NotApplicable("a leaf, named by _Namer"), _ScalarLevel._evaluated),
    "const": Printing(
        lambda n, a, c: n.arg if not n.shape else Fill(n.arg, _tuple(n.shape)),
        _ScalarLevel._filled,
    ),
    "ew": Printing(
        lambda n, a, c: n.arg.expr.xreplace({xsym(i): e for i, e in enumerate(a)}),
        _ScalarLevel._elementwise,
        delta=True,
    ),
    # values, not storage: a cast is invisible in a formula
    "cast": Printing(lambda n, a, c: a[0], _ScalarLevel._evaluated, to_delta=True),
    "expand": Printing(
        lambda n, a, c: Broadcast(a[0], _tuple(n.shape)), _ScalarLevel._evaluated, to_delta=True
    ),
    "reshape": Printing(_reshape_expr, _ScalarLevel._evaluated, to_delta=True),
    "transpose": Printing(
        lambda n, a, c: Permute(a[0], _tuple(n.arg)),
        _ScalarLevel._evaluated,
        reads_delta=True,
        to_delta=True,
    ),
    # the value is the same; only the gradient differs
    "detach": Printing(lambda n, a, c: a[0], _ScalarLevel._evaluated),
    # formulas describe the model in one process, where a sum across ranks is its own value
    "psum": Printing(lambda n, a, c: a[0], _ScalarLevel._evaluated, to_delta=True),
    "onehot": Printing(lambda n, a, c: OneHot(a[0], n.arg[0]), _ScalarLevel._evaluated),
    "sum": Printing(
        lambda n, a, c: SumOver(a[0], _tuple(n.arg[0]), sympy.sympify(n.arg[1]), c.sum_kind(n)),
        _ScalarLevel._evaluated,
        to_delta=True,
    ),
    "max": Printing(_max_expr, _ScalarLevel._maximum),  # softmax's shift: m = max(...)
    "matmul": Printing(
        lambda n, a, c: Dot(a[0], a[1]), _ScalarLevel._evaluated, reads_delta=True, to_delta=True
    ),
    "bernoulli": Printing(
        NotApplicable("a dropout mask, named m by _Namer"), _ScalarLevel._evaluated, mask=True
    ),
    "conv2d": _window_row(),
    "conv2d_input_grad": _window_row(reads_delta=True),
    "conv2d_weight_grad": _window_row(reads_delta=True, to_delta=True),
    "maxpool2d": _window_row(),
    "maxpool2d_grad": _window_row(delta=True),
    "avgpool2d": _window_row(),
    "avgpool2d_grad": _window_row(delta=True),
    # -- issue 12 . math (rows of this family go below this line)
    #
    # -- issue 12 . logic (rows of this family go below this line)
    #
    # -- issue 12 . indexing (rows of this family go below this line)
    "slice": Printing(
        lambda n, a, c: Sliced(a[0], _key_of(n.arg)), _ScalarLevel._evaluated, to_delta=True
    ),
    "slice_grad": Printing(
        lambda n, a, c: Placed(a[0], Key((_key_of(n.arg[0]).value, _shape_key(n.shape)))),
        _ScalarLevel._evaluated,
        to_delta=True,
    ),
    "take": Printing(
        lambda n, a, c: Gathered(a[0], sympy.Tuple(*a[1:]), Key(n.arg.axis)),
        _ScalarLevel._evaluated,
        to_delta=True,
    ),
    "put_add": Printing(
        lambda n, a, c: Scattered(
            a[0], sympy.Tuple(*a[1:]), Key((n.arg.axis, _shape_key(n.shape)))
        ),
        _ScalarLevel._evaluated,
        to_delta=True,
    ),
    "iota": Printing(lambda n, a, c: Iota(Key(n.arg[1])), _ScalarLevel._exactly),
    # -- issue 12 . shaping (rows of this family go below this line)
    "cat": Printing(
        lambda n, a, c: Cat(*a, sympy.Integer(n.arg)), _ScalarLevel._evaluated, to_delta=True
    ),
    "flip": Printing(
        lambda n, a, c: Flip(a[0], _tuple(n.arg)), _ScalarLevel._evaluated, to_delta=True
    ),
    "roll": Printing(
        lambda n, a, c: Roll(a[0], sympy.Tuple(*(_tuple(p) for p in n.arg))),
        _ScalarLevel._evaluated,
        to_delta=True,
    ),
    "pad": Printing(
        lambda n, a, c: Pad(
            a[0],
            sympy.Tuple(*(_tuple(w) for w in n.arg[0])),
            sympy.Integer(_pad_modes().index(n.arg[1])),
            to_expr(n.arg[2]),
        ),
        _ScalarLevel._evaluated,
        to_delta=True,
    ),
    "pad_grad": Printing(
        lambda n, a, c: PadGrad(
            a[0],
            sympy.Tuple(*(_tuple(w) for w in n.arg[0])),
            sympy.Integer(_pad_modes().index(n.arg[1])),
        ),
        _ScalarLevel._evaluated,
        delta=True,
    ),
    # -- issue 12 . reductions (rows of this family go below this line)
    "argidx": _along_row("argidx", _ScalarLevel._exactly),  # indices: numbers, not symbols
    "argsort": _along_row("argsort", _ScalarLevel._exactly),
    "cumarg": _along_row("cumarg", _ScalarLevel._exactly),
    "take_along": _along_row("take_along", to_delta=True),
    "put_along": _along_row("put_along", delta=True),
    "prod": _along_row("prod"),
    "cumsum": _along_row("cumsum", delta=True, to_delta=True),
    "cumprod": _along_row("cumprod"),
    "cumprod_grad": _along_row("cumprod_grad", delta=True),
    #
    # -- issue 12 . linalg (rows of this family go below this line)
    #
    "bmm": Printing(
        lambda n, a, c: Dot(a[0], a[1]), _ScalarLevel._evaluated, reads_delta=True, to_delta=True
    ),
    "tril": Printing(_tril_expr, _ScalarLevel._evaluated, to_delta=True),
    "diagonal": Printing(
        lambda n, a, c: Diagonal(a[0], *(sympy.Integer(v) for v in n.arg)),
        _ScalarLevel._evaluated,
        to_delta=True,
    ),
    "diag_embed": Printing(_diag_embed_expr, _ScalarLevel._evaluated, to_delta=True),
    # -- issue 17 . loops
    "scan": Printing(_A_LOOP, _ScalarLevel._evaluated, loop=True),
    "scan_vjp": Printing(_A_LOOP, _ScalarLevel._evaluated, loop=True),
}
