"""The pipeline on one screen: trace -> grad -> simplify, and the entry points built on it.

``derive`` is the compiler's front half: given a traced loss and the leaves to differentiate,
it returns one simplified program computing the loss and every gradient. ``backward`` runs it
eagerly, keyed by the graph's structure so an eager training loop pays for SymPy once.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
import sympy

from symbp.compiler import loops, ops
from symbp.compiler.autodiff import grad as grad_nodes
from symbp.compiler.ir import B, Node, ShapeError, StepNames, shape_str, shown_names, toposort
from symbp.compiler.ops import print_program
from symbp.compiler.simplify import simplify, stable_forms
from symbp.grad_mode import enable_grad
from symbp.tensor import (
    Tensor,
    _lift,
    _result,
    get_default_dtype,
    graph_labels,
    graph_steps,
    graph_tensors,
    label_marks,
    nary,
    parameter_leaves,
    placeholder,
)

# ---------------------------------------------------------------- the derived program


@dataclass(frozen=True)
class Derived:
    """A loss and its gradients as one simplified program in the IR.

    ``outputs[0]`` is the loss, ``outputs[1:]`` the gradients of ``wrt`` in order (a zero
    constant where the loss does not reach a leaf, listed in ``unreached``).
    """

    loss: Node  # the forward loss as traced (unsimplified): formulas name its intermediates
    wrt: tuple[Node, ...]
    outputs: tuple[Node, ...]
    unreached: tuple[Node, ...]
    # further forward values simplified with the program (BatchNorm's new running statistics)
    also: tuple[Node, ...] = ()

    @property
    def grads(self) -> tuple[Node, ...]:
        return self.outputs[1:]

    def through(self, program_pass: Callable[[list[Node]], Sequence[Node]]) -> Derived:
        """The program after ``program_pass`` (nodes to nodes), run on the outputs and
        ``also`` together, so that they share its work."""
        nodes = program_pass([*self.outputs, *self.also])
        n = len(self.outputs)
        return dataclasses.replace(self, outputs=tuple(nodes[:n]), also=tuple(nodes[n:]))

    def __str__(self) -> str:
        names = {"loss": self.outputs[0]}
        shown = shown_names([w.arg for w in self.wrt])  # the model's names, as print_program's
        names.update({f"grad_{w}": g for w, g in zip(shown, self.grads)})
        return print_program(names)


def derive(loss: Node, wrt: Sequence[Node], also: Sequence[Node] = ()) -> Derived:
    """Differentiate a scalar loss node symbolically and simplify forward and backward together
    (with ``also``, nodes the program computes besides, so that they share its work)."""
    return simplified(differentiate(loss, wrt, also))


def differentiate(loss: Node, wrt: Sequence[Node], also: Sequence[Node] = ()) -> Derived:
    """``derive`` before its last pass: the loss in stable forms and its gradients as reverse
    mode gives them (the pipeline prints this backward program, then simplifies it)."""
    if numel_is_not_one(loss):
        raise ShapeError(
            f"the loss must be a scalar, got shape {shape_str(loss.shape)}: reduce it with "
            f".sum() or .mean() first"
        )
    if loss.dtype.kind != "f":
        raise ShapeError(f"the loss must be a float tensor, got {loss.dtype}")
    forward = simplify([loss])[0]  # stable forms before differentiating
    gs = grad_nodes(forward, list(wrt))
    unreached = tuple(w for w, g in zip(wrt, gs) if g is None)
    grads = [ops.const(0, w.shape, w.dtype) if g is None else g for w, g in zip(wrt, gs)]
    return Derived(loss, tuple(wrt), (forward, *grads), unreached, tuple(also))


def simplified(derived: Derived) -> Derived:
    """Forward, gradients and ``also`` simplified as one program, so that they share work."""
    return derived.through(simplify)


def numel_is_not_one(node: Node) -> bool:
    return any(d != 1 for d in node.shape)


# ---------------------------------------------------------------- eager backward


def canonical(outputs: Sequence[Node]) -> tuple[list[Node], dict[Node, Node]]:
    """Rename the leaves in order of appearance (in0, in1, ...): equal structure, equal graph."""
    memo: dict[Node, Node] = {}
    k = 0
    for n in toposort(outputs):
        if n.op == "input":
            memo[n] = Node("input", (), f"in{k}", n.shape, n.dtype)
            k += 1
        else:
            src = tuple(memo[s] for s in n.src)
            memo[n] = n if src == n.src else Node(n.op, src, n.arg, n.shape, n.dtype)
    return [memo[o] for o in outputs], memo


def canonical_labels(outputs: Sequence[Node], labels: Mapping[Node, str]) -> list[tuple]:
    """The layer labels of a program by the position of their nodes, as a cache key names them
    (the generated code names buffers by them; nodes themselves are no key)."""
    return [(k, labels[n]) for k, n in enumerate(toposort(outputs)) if n in labels]


K = TypeVar("K")
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """A mapping that keeps its ``size`` most recently used entries and forgets the oldest."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"an LRUCache holds at least one entry, got size {size}")
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K, default: V | None = None) -> V | None:
        if key not in self._items:
            return default
        self._items.move_to_end(key)  # used now: the last to be forgotten
        return self._items[key]

    def __setitem__(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()


# The derived and simplified backward program of each graph structure (symbp.autograd.engine).
# Bounded: an eager loop whose graphs keep changing structure (a new sequence length each
# step) must not keep every program it ever derived; a loop of one structure derives once.
BACKWARD_CACHE_SIZE = 256
_BACKWARD_CACHE: LRUCache[tuple, tuple[Node | None, ...]] = LRUCache(BACKWARD_CACHE_SIZE)


def backward(loss: Tensor) -> None:
    """Fill ``.grad`` of every leaf that requires grad, accumulating as PyTorch does (the
    engine is ``symbp.autograd.engine``; ``loss.backward()`` takes PyTorch's arguments)."""
    from symbp.autograd.engine import run_backward

    run_backward([loss], [None], None, False, "backward")


# ---------------------------------------------------------------- tracing for the compiler


@dataclass
class Traced:
    """A function traced without values: named inputs, its outputs, the parameters it reads."""

    inputs: dict[str, Node]
    outputs: list[Node]
    params: dict[str, Any]  # the model's name -> Parameter, for every parameter leaf reached
    # leaves that are neither inputs nor parameters but carry a value (a tensor built inside
    # fn, such as fixed labels): constants of the traced program
    constants: dict[Node, np.ndarray] = field(default_factory=dict)
    # which layer made each node (tensor.graph_labels): this trace's, whoever else shares nodes
    labels: dict[Node, str] = field(default_factory=dict)
    # what its layers call their loops' steps (tensor.graph_steps): formulas name them so
    steps: StepNames = field(default_factory=dict)

    def __str__(self) -> str:
        return print_program({f"out{i}": o for i, o in enumerate(self.outputs)})


def trace(
    fn: Callable[..., Any], *args: Any, names: Sequence[str] | None = None, batch: bool = True
) -> Traced:
    """Trace ``fn`` on value-less inputs shaped like ``args``.

    Each arg is an array, Tensor or shape tuple; with ``batch`` its first dimension becomes the
    symbol ``B``, so one trace serves every batch size. Parameters read by ``fn`` stay leaves
    named by their model names.
    """
    names = list(names or (["x", "y", "z", "w"][: len(args)] if len(args) <= 4 else []))
    names += [f"in{i}" for i in range(len(names), len(args))]
    inputs = []
    for name, a in zip(names, args):
        if isinstance(a, tuple) and all(isinstance(d, (int, sympy.Expr)) for d in a):
            shape, dtype = a, np.dtype(np.float32)
        else:
            arr = a.numpy() if isinstance(a, Tensor) else np.asarray(a)
            shape, dtype = arr.shape, arr.dtype
            if dtype.kind == "f" and not isinstance(a, (np.ndarray, Tensor)):
                dtype = get_default_dtype()
        if batch and len(shape):
            shape = (B, *shape[1:])
        inputs.append(placeholder(name, shape, dtype))
    out = fn(*inputs)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    nodes = [o.node for o in outs]
    # the parameters whose leaves these are, by identity (parameter_leaves): another live
    # model's parameters, or a data input of a parameter's name, never answer for them
    leaves = parameter_leaves(outs)
    params = dict(zip(shown_names([n.arg for n in leaves]), leaves.values()))
    reached = set(toposort(nodes))
    constants: dict[Node, np.ndarray] = {
        t.node: t.value  # type: ignore[misc]
        for o in outs
        for t in graph_tensors([o])
        if t.node.op == "input" and t.node in reached and t.node not in leaves and t.has_value
    }
    labels, steps = graph_labels(outs), graph_steps(outs)
    return Traced({t.node.arg: t.node for t in inputs}, nodes, params, constants, labels, steps)


# ---------------------------------------------------------------- symbolic teaching entry


def symbols(names: str, **assumptions: Any) -> Any:
    """SymPy symbols (real unless told otherwise), for ``symbp.grad`` on scalar formulas."""
    assumptions.setdefault("real", True)
    return sympy.symbols(names, **assumptions)


def grad(expr: Any, wrt: Any) -> sympy.Expr:
    """d expr / d wrt of a scalar SymPy formula, in symbp's conventions (sigmoid' = s(1-s))."""
    expr = sympy.sympify(expr)
    d = sympy.diff(expr, wrt)
    # Purposeful tidying only: factor out common terms, no blanket simplify.
    return stable_forms(sympy.factor_terms(d))


# ---------------------------------------------------------------- custom elementwise ops


def elementwise(
    name: str,
    formula: Callable[..., sympy.Expr],
    derivative: Callable[..., sympy.Expr | Sequence[sympy.Expr]] | None = None,
    numpy: Callable[..., np.ndarray] | None = None,
) -> Callable[..., Any]:
    """Register an elementwise op from its SymPy formula; return the function that applies it.

    ``formula(x, ...)`` gives the scalar expression; its derivative comes from ``sympy.diff``.
    ``derivative(x, ...)`` overrides it (one expression per argument), as a PyTorch
    ``autograd.Function`` would; ``numpy`` gives a NumPy forward when SymPy's is not wanted.

    >>> import sympy, symbp
    >>> swish = symbp.elementwise("swish", lambda x: x / (1 + sympy.exp(-x)))
    >>> float(swish(symbp.tensor([0.0])).item())
    0.0
    """
    if not name.isidentifier():
        raise ValueError(f"elementwise op name must be an identifier, got {name!r}")
    if name in ops.ELEMENTWISE and name not in _CUSTOM:
        raise ValueError(f"elementwise op {name!r} exists already")
    n_args = formula.__code__.co_argcount  # type: ignore[attr-defined]

    # A formula alone is inlined (its derivative is sympy.diff of it); a given derivative or
    # NumPy form needs an opaque SymPy function that carries them.
    builder: Callable[..., sympy.Expr] = formula
    if derivative is not None or numpy is not None:
        builder = _custom_function(name, formula, derivative, n_args, numpy)
    rule = _rule(formula, derivative, numpy, n_args)
    if name in _CUSTOM and _RULES.get(name) != rule:
        # ops are looked up by name when applied: the functions returned earlier for this name
        # compute the new formula from now on, which must not happen unannounced
        warnings.warn(
            f"elementwise op {name!r} registered again with another formula: every function "
            f"returned for {name!r} (and every graph traced from now on) uses the new one",
            stacklevel=2,
        )
    ops.ELEMENTWISE[name] = builder
    _CUSTOM.add(name)
    _RULES[name] = rule

    def apply(*args: Any) -> Tensor:
        if len(args) != n_args:
            raise TypeError(f"{name} takes {n_args} tensor argument(s), got {len(args)}")
        like = next((a for a in args if isinstance(a, Tensor)), None)
        if like is None:  # symbolic use: apply to SymPy expressions
            return builder(*args)  # type: ignore[return-value]
        return nary(name, *(_lift(a, like) for a in args))

    apply.__name__ = name
    apply.__doc__ = f"Elementwise {name}: {formula(*sympy.symbols(f'x0:{n_args}', real=True))}"
    return apply


_CUSTOM: set[str] = set()


_RULES: dict[str, tuple] = {}  # what each custom name was registered with, to compare


def _rule(formula: Any, derivative: Any, numpy_fn: Any, n_args: int) -> tuple:
    """A registration as comparable values: its formula and derivatives as expressions, its
    NumPy form by its code (a script run twice registers the same rule again)."""
    xs = sympy.symbols(f"x0:{n_args}", real=True)
    d = None if derivative is None else derivative(*xs)
    d = tuple(d) if isinstance(d, (list, tuple)) else d
    code = getattr(numpy_fn, "__code__", None)
    return (
        formula(*xs),
        d,
        None if numpy_fn is None else (code and code.co_code, numpy_fn if code is None else None),
    )


def _custom_function(name, formula, derivative, n_args, numpy_fn) -> type[sympy.Function]:
    """An opaque SymPy Function for a custom op with a given derivative or NumPy form."""
    from symbp.compiler import scalar

    syms = sympy.symbols(f"u0:{n_args}", real=True)

    def fdiff(self, argindex=1):
        if derivative is None:  # derived: d formula / d u_k, evaluated at the actual arguments
            d = sympy.diff(formula(*syms), syms[argindex - 1])
            return d.xreplace(dict(zip(syms, self.args)))
        ds = derivative(*self.args)
        ds = list(ds) if isinstance(ds, (list, tuple)) else [ds]
        if len(ds) != n_args:
            raise ValueError(f"derivative of {name} must give {n_args} expressions, got {len(ds)}")
        return sympy.sympify(ds[argindex - 1])

    cls = type(name, (sympy.Function,), {"nargs": n_args, "fdiff": fdiff})
    if numpy_fn is None:
        numpy_fn = sympy.lambdify(syms, formula(*syms), modules=[scalar.NUMPY, "numpy"])
    scalar.NUMPY[name] = numpy_fn
    return cls


__all__ = [
    "Derived",
    "Traced",
    "backward",
    "derive",
    "differentiate",
    "elementwise",
    "grad",
    "scan",
    "simplified",
    "symbols",
    "trace",
]


# ---------------------------------------------------------------- loops


def scan(step: Callable[..., object], h0: object, xs: object, consts: Sequence[object] = ()):
    """``scan`` on tensors: ``step(carry, x, *consts)`` (a function of tensors, traced once
    on leaves of the carry's, a step's and each const's shape) run from ``h0`` over the
    first axis of ``xs``; the ``[T, ...]`` tensor of the carry after each step. Eagerly it
    runs the loop in NumPy; traced, it is one node (``symbp.compile`` emits one loop)."""
    h0, xs = _lift(h0), _lift(xs)
    consts = [_lift(c) for c in consts]

    body: list[Tensor] = []

    def traced(*nodes: Node) -> Node:
        with enable_grad():  # the body is derived later, whatever the caller's grad mode
            out = step(*(Tensor(n) for n in nodes))
        body.append(out)  # type: ignore[arg-type]
        return out.node  # type: ignore[attr-defined]

    node = loops.scan_node(traced, h0.node, xs.node, [c.node for c in consts])  # type: ignore[union-attr,attr-defined]
    out = _result(node, [h0, xs, *consts])  # type: ignore[list-item]
    # the layers called in the step: labels of the body's nodes, which no parent reaches
    out._inner_labels = label_marks(body)
    return out
