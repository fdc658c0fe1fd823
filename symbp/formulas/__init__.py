"""Gradient formulas: the derived backward program, printed the way a textbook writes it.

Everything here reads the program ``api.derive`` builds; nothing calls ``sympy.diff`` again,
so what is printed is what symbp computes. Two levels:

- **Tensor level.** Every node becomes a SymPy expression over named tensors: leaves are
  ``x, t, W1, b1 ...``, layer outputs are ``z1, h, o ...`` (named from the modules that made
  them: ``ir.Labels``), error signals are ``δ2, δ1 ...``. Elementwise algebra is plain
  SymPy algebra on those symbols (it acts entry by entry, so it commutes); the structural ops
  are the ``TensorOp`` functions of ``vocabulary``, printed as ``·`` (matrix product), ``ᵀ``, ``Σ``.
  Fused formulas are named back: ``σ(h·W2ᵀ + b2)`` inside a δ becomes ``o``, so the δ of a
  sigmoid output under half-SSE reads ``(o − t) ⊙ o ⊙ (1 − o)``. Each equation still
  evaluates with NumPy (``Formulas.evaluate``), which is how the tests check the printed form.
- **Index notation** (convolutional networks). Convolutions, poolings and their gradients are
  ``Window`` tensor ops; an equation holding one (or summing, broadcasting or reshaping
  images) prints entry by entry with the layer's stride, padding and dilation:
  ``∂E/∂W1[o,i,p,q] = Σ_{b,y,x} δ1[b,o,y,x]·x[b,i,2y+p−1,2x+q−1]``. A term whose index
  falls outside its tensor, or is no whole number (a transposed stride), is left out, which
  is zero padding; the legend says so.
  The tensor language's structural ops print this way too where a textbook writes them
  entry by entry: a batched product ``Σ_k x[b,i,k]·w[b,k,j]``, a cumsum ``Σ_{j′≤j}``, a roll
  ``x[i,(j−2) mod 5]``, a constant pad's cases.
- **Loops** (recurrent layers, traced with ``symbp.trace``: each is one ``scan``). The step
  prints once with a time index, forward and backward (``StepBlock``); a block evaluates
  step by step.
- **Scalar level** (small models). The same derived program runs through the reference
  executor on object arrays of SymPy symbols, one per entry (``w1 .. w8`` for the weights,
  row-major in model order, ``x1``, ``t1`` ...), with every layer-output entry named
  (``h1``, ``o1``), so ``∂E/∂w5 = (o1 − t1)·o1·(1 − o1)·h1``.

The printers follow SymPy's design: one ``_print_<Class>`` method per node type and tables of
known functions; text and LaTeX share the layout logic and differ in their tokens.

The package, each module building only on those above it (the import direction is one way):

- ``vocabulary``: the tensor-level ops (``TensorOp``: ``Dot``, ``SumOver``, the ``Window``
  ops ...), their NumPy forms and shapes; ``Equation``.
- ``rules``: what a row of the ``PRINTING`` table holds (``Printing``) and the lookup.
- ``tidy``: rewrites that make expressions read as the textbook's; naming definitions back.
- ``layout``, ``index``, ``text``, ``latex``: the printers, layer by layer: tokens and
  brackets, index notation, one print method per node type, LaTeX's tokens.
- ``naming``: the model's tensors' names (``W1``, ``x``, ``z1``, ``h``, ``o``).
- ``closed_forms``, ``scalar_level``: the scalar level's results and the executor behind them.
- ``tensor_level``: ``Formulas``, the equations.
- ``elementwise``, ``indexing``, ``shaping``, ``reductions``, ``linalg``: the tensor
  language's families (issue 12): their tensor ops, NumPy forms and notation.
- ``steps``, ``step_bodies``, ``recurrence`` (issue 17): a loop (``scan``) as a block of
  equations over its steps, ``c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t``, its adjoint as the δ
  recurrence, ``δc_t = δc_{t+1} ⊙ f_{t+1} + δh_t ⊙ o_t ⊙ (1 − tanh(c_t)²)``, a weight's
  gradient as ``Σ_t``; names from the layer (``ir.StepNames``) and the bodies' structure.
- ``norms``, ``softmaxes`` (issue 17): closed forms by identities on the derived δs,
  LayerNorm's ``δ1 = (g − mean(g) − x̂ ⊙ mean(g ⊙ x̂))/σ`` and attention's
  ``δS = P ⊙ (δP − Σ_dim2 (δP ⊙ P))/√d``.
- ``table``: ``PRINTING``, one row per op of ``ops.OPS``.

This module is the entry point, ``formulas(loss)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from symbp.api import Traced
from symbp.compiler.ir import Labels, Node, StepNames, shown_names, toposort
from symbp.formulas import table as table  # fills PRINTING: every op's row
from symbp.formulas.closed_forms import ScalarGradient, ScalarGradients
from symbp.formulas.latex import LatexPrinter as LatexPrinter
from symbp.formulas.latex import latex_name as latex_name
from symbp.formulas.latex import to_latex as to_latex
from symbp.formulas.rules import PRINTING as PRINTING
from symbp.formulas.rules import Printing as Printing
from symbp.formulas.rules import _express as _express
from symbp.formulas.rules import printing as printing
from symbp.formulas.scalar_level import SCALAR_LIMIT as SCALAR_LIMIT
from symbp.formulas.scalar_level import _ScalarLevel as _ScalarLevel
from symbp.formulas.shaping import Cat as Cat
from symbp.formulas.shaping import Crop as Crop
from symbp.formulas.shaping import Flip as Flip
from symbp.formulas.tensor_level import Formulas
from symbp.formulas.text import TextPrinter as TextPrinter
from symbp.formulas.text import to_text as to_text
from symbp.formulas.tidy import tidy as tidy
from symbp.formulas.vocabulary import Equation
from symbp.formulas.vocabulary import TensorOp as TensorOp
from symbp.formulas.vocabulary import shape_of as shape_of
from symbp.tensor import Parameter, Tensor, graph_labels, graph_steps

__all__ = [
    "Equation",
    "Formulas",
    "ScalarGradient",
    "ScalarGradients",
    "formulas",
]


def formulas(
    loss: Tensor | Traced,
    *,
    params: Any = None,
) -> Formulas:
    """Print the gradient of ``loss`` by every parameter, as the textbook writes it.

    ``loss`` is a scalar Tensor after an eager forward pass (or a ``symbp.trace`` result whose
    first output is the loss). ``params`` chooses the parameters: a Module, a dict of name to
    tensor, or a list of tensors or parameter names; by default every leaf that requires grad.

    >>> import symbp
    >>> from symbp import nn
    >>> lin = nn.Linear(2, 1)
    >>> x, t = symbp.tensor([[1.0, 2.0]]), symbp.tensor([[0.5]])
    >>> f = symbp.formulas(((symbp.sigmoid(lin(x)) - t) ** 2).sum() / 2)
    >>> print(str(f).splitlines()[5])
      δ     = (o − t) ⊙ o ⊙ (1 − o)
    >>> f.grad("W").expr  # SymPy: ∂E/∂W = δᵀ·x
    Dot(Permute(δ, (1, 0)), x)
    >>> print(f.scalar("w1").text().splitlines()[0])  # doctest: +ELLIPSIS
    ∂E/∂w1 = (o − t)·o·(1 − o)·x1 = ...
    """
    loss_node, values, candidates, given, labels, steps = _source(loss)
    wrt = _choose_params(params, candidates, values, loss_node)
    if not wrt:
        raise ValueError(
            "formulas: the loss does not depend on any tensor that requires grad (pass params=)"
        )
    return Formulas(loss_node, wrt, values, given, labels, steps)


def _source(
    loss: Tensor | Traced,
) -> tuple[
    Node, dict[Node, np.ndarray], list[tuple[str | None, Node]], dict[Node, str], Labels, StepNames
]:
    """The loss node, the leaves' values, the leaves that require grad, given input names,
    which layer made each node, and what the layers call their loops' steps."""
    if isinstance(loss, Traced):
        if not loss.outputs:
            raise ValueError("formulas: the traced function returned nothing")
        node = loss.outputs[0]
        values: dict[Node, np.ndarray] = {p.node: p._data for p in loss.params.values()}
        values.update(getattr(loss, "constants", {}))  # tensors built inside the function
        leaves = {n for n in toposort([node]) if n.op == "input"}
        cands: list[tuple[str | None, Node]] = [
            (name, p.node) for name, p in loss.params.items() if p.node in leaves
        ]
        order = {n: i for i, n in enumerate(toposort([node]))}
        cands.sort(key=lambda c: order[c[1]])
        given = {n: name for name, n in loss.inputs.items()}
        return node, values, cands, given, loss.labels, loss.steps
    if not isinstance(loss, Tensor):
        raise TypeError(f"formulas: expects a scalar Tensor or a trace, got {type(loss).__name__}")
    from symbp.api import graph_tensors

    tensors = graph_tensors([loss])
    leaf_tensors = {t.node: t for t in tensors if t.node.op == "input" and not t._parents}
    values = {n: t.value for n, t in leaf_tensors.items() if t.value is not None}
    cands = []  # in the order the data flows: the model's order
    params = [n for n in toposort([loss.node]) if isinstance(leaf_tensors.get(n), Parameter)]
    shown = dict(zip(params, shown_names([n.arg for n in params])))  # unique in this graph
    for n in toposort([loss.node]):
        t = leaf_tensors.get(n)
        if t is not None and t.requires_grad:
            cands.append((shown.get(n), n))
    return loss.node, values, cands, {}, graph_labels([loss]), graph_steps([loss])


def _choose_params(
    params: Any,
    cands: list[tuple[str | None, Node]],
    values: dict[Node, np.ndarray],
    loss: Node,
) -> list[tuple[str | None, Node]]:
    if params is None:
        return cands
    from symbp.nn.module import Module

    chosen: list[tuple[str | None, Node]] = []
    named = {n: name for name, n in cands if name}  # the graph's names: unique in it
    if isinstance(params, Module):
        items: Iterable[tuple[str | None, Any]] = [
            (named.get(p.node, p.name), p) for p in params.parameters()
        ]
    elif isinstance(params, Mapping):
        items = list(params.items())
    else:
        items = [(None, p) for p in params]
    by_name = {name: n for name, n in cands if name}
    for name, p in items:
        if isinstance(p, str):
            if p in by_name:
                chosen.append((p, by_name[p]))
                continue
            raise KeyError(f"formulas: no parameter named {p!r} in the loss's graph")
        if not isinstance(p, Tensor):
            raise TypeError(f"formulas: params must be tensors or names, got {type(p).__name__}")
        if name is None and isinstance(p, Parameter):
            name = named.get(p.node, p.name)
        node = p.node
        if p.value is not None:  # one the loss never reads: derive lists it as unreached
            values.setdefault(node, p.value)
        chosen.append((name, node))
    return chosen
