"""What a row of the ``PRINTING`` table holds (``Printing``), and how a node finds its row.

The table itself is filled by ``symbp.formulas.table`` (one row per op of ``ops.OPS``); it
is declared here, below everything that reads it, so that the naming, the tensor level and
the scalar level can look rows up while the scalar level's methods are the rows' rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sympy

from symbp.compiler.ir import Node
from symbp.compiler.ops import NotApplicable

# An op's expression rule: (node, its sources' expressions, the namer: a ``naming._Namer``)
Express = Callable[[Node, list[sympy.Expr], Any], sympy.Expr]


@dataclass(frozen=True)
class Printing:
    """How ``formulas`` shows the nodes of one op: its row of ``PRINTING``.

    ``express(n, args, namer)``: the node as a SymPy expression of its sources' (``args``),
    elementwise algebra or a ``TensorOp``; NotApplicable for the nodes ``_Namer`` names as
    tensors of their own (leaves, dropout masks). ``scalar``: how the scalar level computes a
    node (a ``_ScalarLevel`` method); NotApplicable: the scalar level refuses models with one.
    ``delta``: a backward node of the op may be an error signal δ (elementwise, or a pooling's
    gradient); ``reads_delta``: the op reads one (a product, a convolution's gradient), which
    makes its source a δ; ``to_delta``: a weight's gradient reaches its δ through the op.
    ``mask``: a random 0/1 tensor (dropout's), named ``m`` beside the data and drawn from
    its seed when equations are evaluated. ``loop``: a loop or its adjoint, which
    ``formulas.steps`` prints as a block of equations over its steps.
    """

    express: Express | NotApplicable
    # (level, node, symbolic): the level is the scalar_level._ScalarLevel computing the node
    scalar: Callable[[Any, Node, set[Node]], None] | NotApplicable
    delta: bool = False
    reads_delta: bool = False
    to_delta: bool = False
    mask: bool = False
    loop: bool = False


# One row per op of ops.OPS, filled by ``symbp.formulas.table`` (tests/test_ops.py checks that
# none is missing); an op defined outside the package adds its row here (symbp/autograd/rows.py).
PRINTING: dict[str, Printing] = {}


def _express(node: Node, args: list[sympy.Expr], namer: Any) -> sympy.Expr:
    rule = printing(node).express
    if isinstance(rule, NotApplicable):
        raise ValueError(f"formulas: a '{node.op}' node is named, not expressed: {rule.why}")
    return rule(node, args, namer)


def printing(node: Node) -> Printing:
    """The printing rule of ``node``'s op; an op without a row is named in the error."""
    rule = PRINTING.get(node.op)
    if rule is None:
        raise NotImplementedError(f"formulas: no printing rule for op '{node.op}'")
    return rule
