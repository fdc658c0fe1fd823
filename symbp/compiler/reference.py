"""The NumPy reference executor: the oracle every backend is tested against.

It walks a program in topological order and asks each op's ``numpy`` rule for its value. It
also runs on object arrays of SymPy expressions, which is how ``formulas`` gets the scalar
closed form of a gradient out of the very same backward program.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import sympy

from symbp.compiler.ir import Node, bind_dims, shape_str, toposort
from symbp.compiler.ops import OPS


def evaluate(
    outputs: Sequence[Node],
    env: Mapping[Node, np.ndarray],
    dims: dict[sympy.Symbol, int] | None = None,
) -> list[np.ndarray]:
    """Values of ``outputs`` given values for their leaves (and any precomputed nodes).

    ``env`` maps nodes to arrays; every ``input`` node reached must be in it. Symbolic dims
    (the batch B) are solved from the shapes of the input values unless given.
    """
    values: dict[Node, np.ndarray] = dict(env)
    order = toposort(outputs, known=values)
    if dims is None:
        dims = bind_dims((n, np.shape(values[n])) for n in order if n.op == "input" and n in values)
    for node in order:
        if node in values:
            continue
        if node.op == "input":
            raise KeyError(f"no value bound for input '{node.arg}' ({shape_str(node.shape)})")
        values[node] = OPS[node.op].numpy(node, [values[s] for s in node.src], dims)
    return [values[n] for n in outputs]


def evaluate_all(
    outputs: Sequence[Node], env: Mapping[Node, np.ndarray], dims: dict | None = None
) -> dict[Node, np.ndarray]:
    """Like ``evaluate`` but return the value of every node reached (for reports and checks)."""
    order = toposort(outputs, known=env)
    vals = evaluate(order, env, dims)
    return dict(zip(order, vals))
