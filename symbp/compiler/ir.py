"""The IR: immutable, interned tensor nodes and the walks over them (a program prints as a
jaxpr-like listing with ``ops.print_program``: each op shows its own arg).

A node is ``Node(op, src, arg, shape, dtype)``. Nodes are *interned*: building the same
``(op, src, arg, shape, dtype)`` twice returns the same object, so structural equality is
identity, hashing is cheap, and common-subexpression elimination happens at construction
(the trick tinygrad's UOps use). A program is just its tuple of output nodes; everything
unreachable from them is dead by construction.

Shapes are tuples of ``int`` or SymPy expressions in the batch symbol ``B``: a traced graph
keeps the batch dimension symbolic, so one trace serves every batch size.
"""

from __future__ import annotations

import contextlib
import re
import weakref
from collections import Counter
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import sympy
from numpy.typing import DTypeLike

# The symbolic batch dimension. Shapes and constants (the 1/B of a mean) may mention it.
B = sympy.Symbol("B", positive=True, integer=True)
# An optimizer's update rule is a formula in one parameter entry, its gradient entry and the
# step count (symbp.optim writes them, the lowering substitutes the buffers' entries)
P, G, T = sympy.symbols("p g t", real=True)

Dim: TypeAlias = "int | sympy.Expr"
Shape: TypeAlias = "tuple[Dim, ...]"

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int64 = np.dtype(np.int64)
DTYPE_NAMES = {float32: "f32", float64: "f64", int64: "i64", np.dtype(np.bool_): "bool"}


class ShapeError(ValueError):
    """A shape or dtype mismatch found while building the graph (at trace time)."""


class Node:
    """One tensor operation. Immutable and interned: build equal nodes, get the same object."""

    __slots__ = ("__weakref__", "arg", "dtype", "op", "shape", "src")
    op: str
    src: tuple[Node, ...]
    arg: Any
    shape: Shape
    dtype: np.dtype

    _interned: weakref.WeakValueDictionary[tuple, Node] = weakref.WeakValueDictionary()

    def __new__(cls, op: str, src: tuple[Node, ...], arg: Any, shape: Shape, dtype: DTypeLike):
        shape = tuple(d if isinstance(d, sympy.Expr) else int(d) for d in shape)
        # Always a NumPy dtype: a symbp dtype (what Tensor.dtype returns) names one, and the
        # generated code and cache keys print node dtypes as NumPy's names ("float32").
        if not isinstance(dtype, np.dtype):
            dtype = np.dtype(dtype)
        # src nodes are kept alive by the node that names them, so their ids are stable keys.
        key = (op, tuple(id(s) for s in src), arg, shape, dtype)
        node = cls._interned.get(key)
        if node is None:
            node = object.__new__(cls)
            for name, value in zip(
                ("op", "src", "arg", "shape", "dtype"), (op, tuple(src), arg, shape, dtype)
            ):
                object.__setattr__(node, name, value)
            cls._interned[key] = node
        return node

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Node is immutable")

    def __reduce__(self):  # pickling rebuilds through the interning constructor
        return (Node, (self.op, self.src, self.arg, self.shape, self.dtype))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"<{self.op} {type_str(self)}>"


# ---------------------------------------------------------------- helpers on shapes and graphs


def numel(shape: Shape) -> Dim:
    n: Any = 1
    for d in shape:
        n = n * d
    return n


def shape_str(shape: Shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def type_str(node: Node) -> str:
    return DTYPE_NAMES.get(node.dtype, str(node.dtype)) + shape_str(node.shape)


def toposort(outputs: Iterable[Node], known: Container[Node] = ()) -> list[Node]:
    """All nodes reachable from ``outputs``, each after its sources (iterative DFS).

    The walk does not go below nodes in ``known`` (those are listed, their sources are not).
    """
    order: list[Node] = []
    seen: set[int] = set()
    for root in outputs:
        stack: list[tuple[Node, bool]] = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            if node not in known:
                stack.extend((s, False) for s in reversed(node.src) if id(s) not in seen)
    return order


def consumers(order: Iterable[Node]) -> dict[Node, list[Node]]:
    """Map each node to the nodes (in ``order``) that read it, one entry per use."""
    users: dict[Node, list[Node]] = {}
    for node in order:
        users.setdefault(node, [])
        for s in node.src:
            users.setdefault(s, []).append(node)
    return users


def leaves(outputs: Iterable[Node]) -> list[Node]:
    return [n for n in toposort(outputs) if n.op == "input"]


class Param:
    """A parameter's identity in the IR: the ``arg`` of its leaf.

    A ``Param`` equals only itself, so two parameters are two leaves whatever their names, and
    renaming one changes no node. ``name`` is a label for showing it (the model's ``0.weight``,
    given when a module names its parameter): printing, formulas and generated code read it;
    interning, cache keys (``api.canonical`` numbers leaves by position) and equality never do.
    A copy (pickle, ``copy.deepcopy``) is a new parameter with the same label."""

    __slots__ = ("__weakref__", "name")

    def __init__(self, name: str):
        self.name = name

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"Param({self.name!r})"

    def __reduce__(self) -> tuple[type[Param], tuple[str]]:
        return (Param, (self.name,))


def leaf_name(arg: object) -> str:
    """How a leaf is shown: a parameter's label (``0.weight``), a data input's name."""
    return str(arg)


def shown_names(args: Sequence[object]) -> list[str]:
    """The names of one program's leaves as it shows them: the model's names, the second,
    third ... of one name tagged ``#2``, ``#3`` (two models' ``0.weight`` in one program)."""
    seen: Counter[str] = Counter()
    given: dict[object, str] = {}  # a leaf listed twice is shown the same both times
    for a in args:
        if a not in given:
            seen[name := leaf_name(a)] += 1
            given[a] = name if seen[name] == 1 else f"{name}#{seen[name]}"
    return [given[a] for a in args]


def bind_dims(inputs: Iterable[tuple[Node, tuple[int, ...]]]) -> dict[sympy.Symbol, int]:
    """Solve the symbolic dims of input nodes from the concrete shapes of their values."""
    dims: dict[sympy.Symbol, int] = {}
    for node, shape in inputs:
        if len(shape) != node.ndim:
            raise ShapeError(
                f"input '{node.arg}' expects {node.ndim} dimensions {shape_str(node.shape)}, "
                f"got shape {list(shape)}"
            )
        for want, got in zip(node.shape, shape):
            if isinstance(want, sympy.Symbol):
                if dims.setdefault(want, got) != got:
                    raise ShapeError(
                        f"input '{node.arg}' has {want}={got}, but another input has "
                        f"{want}={dims[want]}"
                    )
            elif isinstance(want, sympy.Expr):
                continue
            elif want != got:
                raise ShapeError(
                    f"input '{node.arg}' expects shape {shape_str(node.shape)}, got {list(shape)}"
                )
    return dims


def concrete(shape: Shape, dims: dict[sympy.Symbol, int]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) else int(sympy.sympify(d).xreplace(dims)) for d in shape)


# ---------------------------------------------------------------- where in the model we are

# Which layer produced each node of one program (``linear1``, ``sigmoid``): formulas name
# intermediates by it, generated code names buffers by it, errors say where. A program's own
# (``tensor.graph_labels`` of its tensors, ``api.Traced.labels``): nodes are interned, and two
# models sharing a node must not share its label.
Labels: TypeAlias = "Mapping[Node, str]"
# What a layer calls the parts of its loops' steps, keyed by the scan node: {"carry": ("h",
# "c"), "gates": ("i", "f", "g", "o")}; formulas print by it. A program's own, as its labels
# are (``tensor.graph_steps``, ``api.Traced.steps``), never the process's.
StepNames: TypeAlias = "Mapping[Node, Mapping[str, tuple[str, ...]]]"

# A leaf's name that symbp made up, not the model: param3, t0, in2 ("#2": a second of a name
# in one program, as shown_names shows it)
AUTO_NAME = re.compile(r"(param|t|in)\d+(#\d+)?")


def module_parameter(full: str | None) -> tuple[str, str] | None:
    """(module path, attribute) of a module's parameter: ``fc1.weight`` -> ``("fc1",
    "weight")``; a root Linear's are bare (``weight``, ``bias``); None for other names."""
    if not full or AUTO_NAME.fullmatch(full):
        return None
    path, _, attr = full.rpartition(".")
    attr = attr.split("#")[0]  # a second model's parameter of the same name: name#2
    return (path, attr) if path or attr in ("weight", "bias") else None


def layer_numbers(names: Iterable[str | None]) -> dict[str, str]:
    """The number of each module (path) that holds parameters, as formulas and generated code
    name its tensors (``W1``, ``z1``, ``δ1``): 1, 2 ... in the order of ``names`` (parameter
    names, in the order the data flows through them); "" when there is one module."""
    modules: dict[str, int] = {}
    for full in names:
        if (pa := module_parameter(full)) is not None:
            modules.setdefault(pa[0], len(modules) + 1)
    return {m: "" if len(modules) == 1 else str(k) for m, k in modules.items()}


_scope: list[str] = []


@contextlib.contextmanager
def scope(name: str) -> Iterator[None]:
    """Name the layer being traced, so that shape errors can say where they happened."""
    _scope.append(name)
    try:
        yield
    finally:
        _scope.pop()


def where() -> str:
    return f" (in {_scope[-1]})" if _scope else ""


def shape_error(message: str) -> ShapeError:
    return ShapeError(message + where())


class Names:
    """Names handed out once each, for what a program writes (buffers of a generated module,
    values of an ONNX graph): ``fresh(base)`` is ``base`` if it is free, else the first free of
    ``base_1``, ``base_2`` ... Names in ``taken`` (reserved words, names given elsewhere) are
    never handed out; ``taken`` grows with each name handed out. With a ``mark``, every name
    handed out starts with it (a dry run tells what it handed out from what it did not)."""

    def __init__(self, taken: Iterable[str] = (), mark: str = ""):
        self.taken = set(taken)
        self.mark = mark

    def fresh(self, base: str) -> str:
        base = base if base.startswith(self.mark) else self.mark + base
        name, k = base, 1
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name
