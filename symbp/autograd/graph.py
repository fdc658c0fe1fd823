"""``grad_fn`` and ``next_functions``: PyTorch's view of the autograd graph, read off the IR.

symbp's graph is its IR, and a tensor's node says which op made it; PyTorch names the backward
of each op (``AddBackward0``, ``MmBackward0`` ...). A tensor computed from tensors that require
grad has a ``grad_fn`` named as PyTorch names it for the op that made it, whose
``next_functions`` are its inputs' ``grad_fn`` (``AccumulateGrad`` for a leaf, ``None`` for an
input that needs no gradient). Composite functions (softmax is exp / sum) show their last op.

Examples:
    >>> import symbp
    >>> x = symbp.tensor([1.0, 2.0], requires_grad=True)
    >>> y = (x * 2).sum()
    >>> y.grad_fn  # doctest: +ELLIPSIS
    <SumBackward0 object at ...>
    >>> y.grad_fn.next_functions  # doctest: +ELLIPSIS
    ((<MulBackward0 object at ...>, 0),)
    >>> y.grad_fn.next_functions[0][0].next_functions  # doctest: +ELLIPSIS
    ((<AccumulateGrad object at ...>, 0), (None, 0))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sympy

from symbp.compiler.ir import Node
from symbp.compiler.ops import xsym


class BackwardNode:
    """A tensor's ``grad_fn``: the backward of the op that made it (one class per name, so
    ``type(t.grad_fn).__name__`` is PyTorch's name, as PyTorch's repr of a tensor prints)."""

    def __init__(self, tensor: Any, parents: tuple[Any, ...], constants: int):
        self._tensor = tensor
        self._parents = parents
        self._constants = constants  # numbers folded into the op (x + 1): PyTorch's (None, 0)

    def name(self) -> str:
        return type(self).__name__

    @property
    def next_functions(self) -> tuple[tuple[Any, int], ...]:
        out = tuple((edge(p), 0) for p in self._parents)
        return out + ((None, 0),) * self._constants

    @property
    def metadata(self) -> dict:
        return {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} object at {hex(id(self))}>"

    def __reduce__(self) -> tuple:
        # the named classes are made at run time: a pickled (or deep-copied) tensor drops its
        # cached grad_fn and builds it again when asked
        return (_dropped, ())


class AccumulateGrad(BackwardNode):
    """A leaf's end of the graph: where its gradient accumulates into ``.grad``."""

    def __init__(self, tensor: Any):
        super().__init__(tensor, (), 0)

    def name(self) -> str:
        return "torch::autograd::AccumulateGrad"  # PyTorch's name(); its class is AccumulateGrad

    @property
    def variable(self) -> Any:
        return self._tensor


def _dropped() -> None:
    return None


_CLASSES: dict[str, type[BackwardNode]] = {}


def _named(name: str) -> type[BackwardNode]:
    cls = _CLASSES.get(name)
    if cls is None:
        cls = _CLASSES[name] = type(name, (BackwardNode,), {"__module__": __name__})
    return cls


def edge(t: Any) -> BackwardNode | None:
    """What ``next_functions`` lists for an input tensor ``t``."""
    if not t.requires_grad:
        return None
    if t.is_leaf:
        acc = t.__dict__.get("_accumulate_grad")
        if acc is None:
            acc = t._accumulate_grad = AccumulateGrad(t)
        return acc
    return grad_fn(t)


# ---------------------------------------------------------------- PyTorch's names

_BINARY = {"add", "sub", "mul", "div"}  # with a number: (None, 0) in next_functions

# ew nodes, by the label of the elementwise op that made them
EW_NAMES: dict[str, str] = {
    "add": "AddBackward0",
    "sub": "SubBackward0",
    "mul": "MulBackward0",
    "div": "DivBackward0",
    "pow": "PowBackward0",
    "neg": "NegBackward0",
    "exp": "ExpBackward0",
    "log": "LogBackward0",
    "sqrt": "SqrtBackward0",
    "abs": "AbsBackward0",
    "sigmoid": "SigmoidBackward0",
    "tanh": "TanhBackward0",
    "relu": "ReluBackward0",
    "gelu": "GeluBackward0",
    "silu": "SiluBackward0",
    "softplus": "SoftplusBackward0",
}


def _all_axes(n: Node) -> bool:
    axes, keepdim = n.arg
    return len(axes) == n.src[0].ndim and not keepdim


# the other ops, by op: a name, or a function of the node giving one
OP_NAMES: dict[str, str | Callable[[Node], str]] = {
    "matmul": "MmBackward0",
    "sum": lambda n: "SumBackward0" if _all_axes(n) else "SumBackward1",
    "max": lambda n: "MaxBackward1" if _all_axes(n) else "MaxBackward0",
    "reshape": "ViewBackward0",
    "transpose": lambda n: "TBackward0" if n.ndim == 2 else "PermuteBackward0",
    "expand": "ExpandBackward0",
    "cast": "ToCopyBackward0",
    "conv2d": "ConvolutionBackward0",
    "maxpool2d": "MaxPool2DWithIndicesBackward0",
    "avgpool2d": "AvgPool2DBackward0",
    "function": lambda n: f"{n.arg.fn.__name__}Backward",
}


# an unlabelled (derived, fused) formula, by its outermost operation: a gradient of
# create_graph=True is mostly ct * f'(x), MulBackward0 in PyTorch too
_FORMULA_NAMES = {sympy.Mul: "MulBackward0", sympy.Add: "AddBackward0", sympy.Pow: "PowBackward0"}


def _mean_of(t: Any) -> Any:
    """The tensor summed when ``t`` is a mean (``sum(x) * (1/count)``, as symbp builds it)."""
    n = t.node
    if n.op != "ew" or n.arg.label != "mul" or len(t._parents) != 1:
        return None
    (s,) = t._parents
    if s.node.op != "sum" or len(n.src) != 1:
        return None
    axes = s.node.arg[0]
    count = sympy.Integer(1)
    for a in axes:
        count *= sympy.sympify(s._parents[0].shape[a]) if s._parents else 1
    return s if n.arg.expr == xsym(0) / count else None


def _squared_difference(t: Any) -> tuple[Any, ...] | None:
    """(a, b) when ``t`` is (a - b)**2 of two tensors, else None."""
    n = t.node
    if n.op != "ew" or n.arg.label != "pow" or n.arg.expr != xsym(0) ** 2 or len(t._parents) != 1:
        return None
    (d,) = t._parents
    if d.node.op != "ew" or d.node.arg.label != "sub" or len(d._parents) != 2:
        return None
    return tuple(d._parents)


def _name(t: Any) -> tuple[str, tuple[Any, ...], int]:
    """PyTorch's name for the backward of ``t``'s op, its input tensors, folded numbers."""
    n = t.node
    parents = tuple(t._parents)
    made = t.__dict__.get("_made_by")
    if made is not None and made[0] is n:  # one of symbp's composite functions (softmax ...)
        return made[1], made[2], 0
    if n.op == "function":
        spec = n.arg
        return f"{spec.fn.__name__}Backward", parents[1 : 1 + spec.function_inputs], 0
    if n.op == "ew":
        s = _mean_of(t)
        if s is not None:
            full = _all_axes(s.node)
            sq = _squared_difference(s._parents[0]) if full and s._parents else None
            if sq is not None:  # mean((a - b)²): F.mse_loss, MseLossBackward0 in PyTorch
                return "MseLossBackward0", sq, 0
            return ("MeanBackward0" if full else "MeanBackward1"), tuple(s._parents), 0
        label = n.arg.label
        mm = [p for p in parents if p.node.op == "matmul" and p._parents]
        if label == "add" and len(parents) == 2 and len(mm) == 1 and n.ndim == 2:
            # x @ W.T + b: PyTorch's Linear is one addmm, whose inputs are (b, x, W.T)
            (bias,) = [p for p in parents if p is not mm[0]]
            return "AddmmBackward0", (bias, *mm[0]._parents), 0
        folded = 1 if label in _BINARY and len(parents) == 1 else 0
        if label == "sub" and folded and sympy.diff(n.arg.expr, xsym(0)) == -1:
            return "RsubBackward1", parents, 0  # 1 - x
        if label == "pow" and len(parents) == 2:
            return "PowBackward1", parents, 0
        name = EW_NAMES.get(label) or _FORMULA_NAMES.get(n.arg.expr.func, "")
        name = name or f"{(label or 'Elementwise').capitalize()}Backward0"
        return name, parents, folded
    rule = OP_NAMES.get(n.op)
    name = rule(n) if callable(rule) else rule or f"{n.op.capitalize()}Backward0"
    return name, parents, 0


def grad_fn(t: Any) -> BackwardNode | None:
    """``t.grad_fn``: None for a leaf, else the same object each time (as PyTorch's)."""
    if t.is_leaf:
        return None
    cached = t.__dict__.get("_grad_fn_cache")
    if cached is not None and cached[0] is t.node and cached[1] is not None:
        return cached[1]
    name, parents, folded = _name(t)
    fn = _named(name)(t, parents, folded)
    t._grad_fn_cache = (t.node, fn)
    return fn


__all__ = ["AccumulateGrad", "BackwardNode", "grad_fn"]
