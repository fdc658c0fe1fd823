"""``symbp.autograd.Function``: a custom op from a traced forward and a traced backward.

PyTorch's API (``forward(ctx, ...)``, ``backward(ctx, ...)``, ``ctx.save_for_backward``,
``ctx.saved_tensors``, ``ctx.needs_input_grad``, ``ctx.mark_non_differentiable``,
``Function.apply``), on symbp's IR:

- ``apply`` runs ``forward`` on detached views of its tensor arguments (as PyTorch runs it
  without recording), so the forward's graph is the value: it re-evaluates from the inputs
  (finite differences in ``gradcheck`` see it) and traces for ``symbp.compile``.
- Each output is one ``function`` node: ``src[0]`` is the forward's result (the node's value,
  read through as a view), then the tensor inputs, then what the backward reads besides (saved
  intermediates, the other outputs' results). Its ``arg`` is a ``FunctionSpec``: hashable and
  deterministic (the class, the non-tensor arguments, where each saved tensor comes from), so
  nodes intern and the program cache keys stay stable.
- Its adjoint calls the user's ``backward`` on tensors wrapping the cotangent node and the
  saved nodes (no values: the backward is traced too), and the nodes it returns are the
  inputs' cotangents. So the backward graph holds the user's formula: ``symbp.formulas``
  prints it, ``gradcheck`` checks it, the compiler compiles it, and since it is made of IR ops
  it can be differentiated again (``create_graph``).

Gradient flows only through the user's backward, never through the forward's own nodes. A
saved input is the input itself and a saved output is the output itself (so a second
derivative goes through them, as in PyTorch); another saved intermediate is a constant of the
backward, as PyTorch's saved values computed without grad are.
"""

from __future__ import annotations

import hashlib
import marshal
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from symbp.compiler import ops
from symbp.compiler.ir import Node, shape_str, toposort
from symbp.grad_mode import enable_grad, is_grad_enabled
from symbp.tensor import Tensor

# ---------------------------------------------------------------- the IR op


class _ByIdentity:
    """A non-hashable constant argument (a list, an array) in a FunctionSpec, by identity."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __repr__(self) -> str:
        # printed in the program (so in its cache key): by content, deterministically
        v = self.value
        if isinstance(v, np.ndarray):
            data = v.dtype.str.encode() + repr(v.shape).encode() + v.tobytes()
        else:
            data = repr(v).encode()
        return f"<{type(v).__name__} {hashlib.sha256(data).hexdigest()[:10]}>"


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return _ByIdentity(value)
    return value


def _unwrap(value: Any) -> Any:
    return value.value if isinstance(value, _ByIdentity) else value


def code_digest(fn: type) -> str:
    """A digest of a Function's forward and backward code: two classes of the same name with
    other formulas must not share a cached program (the key prints the class by name)."""
    h = hashlib.sha256()
    for name in ("forward", "backward", "setup_context"):
        code = getattr(getattr(fn, name, None), "__code__", None)
        if code is not None:
            h.update(marshal.dumps(code))
    return h.hexdigest()[:10]


@dataclass(frozen=True)
class FunctionSpec:
    """What a ``function`` node's adjoint needs to rebuild the call's ``ctx``.

    A reference to a tensor is ``("input", i)`` (the i-th tensor input, ``src[1 + i]``),
    ``("output", j)`` (the j-th output: a ``function`` node itself) or ``("extra", k)``
    (``src[1 + function_inputs + k]``, a saved intermediate or an output's result).
    """

    fn: Any  # the Function subclass
    digest: str
    index: int  # which output this node is
    function_inputs: int  # how many tensor inputs (src[1 : 1 + function_inputs])
    args: tuple  # per positional argument of forward: ("tensor", i) or ("value", v)
    saved: tuple  # references of ctx.save_for_backward's tensors
    attrs: tuple  # (name, ("ref", reference) or ("value", v)) for other ctx attributes
    results: tuple  # the extra index of each output's forward result
    non_differentiable: tuple  # output indices marked so
    needs_input_grad: tuple
    materialize_grads: bool = True

    def __str__(self) -> str:
        # Everything the derived backward depends on besides the nodes: the compiled
        # program's cache key is made from the printed forward program, so two calls that
        # would derive different backwards must print differently (the code's digest, the
        # constants, where the saved tensors come from).
        name = self.fn.__name__  # the digest tells two classes of one name apart
        out = name if len(self.results) == 1 else f"{name}.{self.index}"
        parts = [f"{out}#{self.digest}"]
        parts.append("args=" + ",".join(_show(a) for a in self.args))
        if self.saved:
            parts.append("saved=" + ",".join("None" if r is None else _show(r) for r in self.saved))
        for attr, (kind, v) in self.attrs:
            parts.append(f"{attr}={_show(v) if kind == 'ref' else repr(v)}")
        parts.append("needs=" + "".join("TF"[not b] for b in self.needs_input_grad))
        if self.non_differentiable:
            parts.append(f"nondiff={self.non_differentiable}")
        if not self.materialize_grads:
            parts.append("unmaterialized")
        return " ".join(parts)


def _show(ref: tuple) -> str:
    kind, v = ref
    short = {"tensor": "t", "input": "t", "output": "out", "extra": "e"}
    return f"{short[kind]}{v}" if kind in short else repr(v)


class FunctionOp(ops.Op):
    """A custom ``autograd.Function``'s output: the value of ``src[0]``, the gradient of the
    user's backward."""

    name = "function"

    def infer(self, src, arg):
        return src[0].shape, src[0].dtype

    def numpy(self, node, vals, dims):
        return vals[0]

    def show_arg(self, node, names):
        return f"[{node.arg}]"

    def adjoint(self, node: Node, ct: Node) -> Sequence[Node | None]:
        return backward_nodes(node, ct)


ops.register(FunctionOp)


def _output_node(node: Node, j: int) -> Node:
    """The j-th output of the call ``node`` is one of (they share every source but src[0])."""
    spec: FunctionSpec = node.arg
    if j == spec.index:
        return node
    extras = node.src[1 + spec.function_inputs :]
    body = extras[spec.results[j]]
    return Node("function", (body, *node.src[1:]), replace(spec, index=j), body.shape, body.dtype)


def backward_nodes(node: Node, ct: Node) -> list[Node | None]:
    """The adjoint of a ``function`` node: the user's backward, traced on the cotangent."""
    spec: FunctionSpec = node.arg
    n_in = spec.function_inputs
    inputs = node.src[1 : 1 + n_in]
    extras = node.src[1 + n_in :]
    fn_name = spec.fn.__name__

    def ref(r: tuple) -> Tensor:
        kind, k = r
        if kind == "input":
            n = inputs[k]
        else:
            n = extras[k] if kind == "extra" else _output_node(node, k)
        return Tensor(n, None, kind != "extra")

    ctx = FunctionCtx()
    ctx._saved = tuple(None if r is None else ref(r) for r in spec.saved)
    ctx.needs_input_grad = spec.needs_input_grad
    for name, (kind, v) in spec.attrs:
        setattr(ctx, name, ref(v) if kind == "ref" else _unwrap(v))
    cts: list[Tensor | None] = []
    for j, k in enumerate(spec.results):
        if j == spec.index:
            cts.append(Tensor(ct, None, True))
        elif spec.materialize_grads:
            body = extras[k]
            cts.append(Tensor(ops.const(0, body.shape, body.dtype), None, False))
        else:
            cts.append(None)
    with enable_grad():
        grads = spec.fn.backward(ctx, *cts)
    grads = grads if isinstance(grads, tuple) else (grads,)
    if len(grads) != len(spec.args):
        raise RuntimeError(  # PyTorch's words
            f"function {fn_name}Backward returned an incorrect number of gradients (expected "
            f"{len(spec.args)}, got {len(grads)})"
        )
    allowed = set(toposort([*node.src, ct, *(_output_node(node, j) for j in range(len(cts)))]))
    out: list[Node | None] = [None] * len(node.src)
    for pos, ((kind, k), g) in enumerate(zip(spec.args, grads)):
        if kind != "tensor":
            if g is not None:
                raise RuntimeError(  # PyTorch's words
                    f"function {fn_name}Backward returned a gradient different than None at "
                    f"position {pos + 1}, but the corresponding forward input was not a Variable"
                )
            continue
        if g is None:
            continue
        x = inputs[k]
        if not isinstance(g, Tensor):
            raise TypeError(
                f"{fn_name}.backward must return Tensors or None, got {type(g).__name__} for "
                f"input {pos}"
            )
        gn = g.node
        if tuple(gn.shape) != tuple(x.shape):
            if tuple(ops.broadcast_shapes(gn.shape, x.shape)) != tuple(x.shape):
                raise RuntimeError(  # PyTorch's words
                    f"Function {fn_name}Backward returned an invalid gradient at index {pos} - "
                    f"got {list(gn.shape)} but expected shape compatible with {list(x.shape)}"
                )
            gn = ops.broadcast_to(gn, x.shape)
        if gn.dtype != x.dtype and x.dtype.kind == "f":
            gn = ops.cast(gn, x.dtype)
        stray = [n for n in toposort([gn], known=allowed) if n.op == "input" and n not in allowed]
        if stray:
            raise NotImplementedError(
                f"{fn_name}.backward reads a tensor ({shape_str(stray[0].shape)}) that is neither "
                f"an argument of forward nor saved: symbp traces the backward into the graph, "
                f"so a tensor it needs must come through ctx.save_for_backward (or be made from "
                f"the saved ones and grad_output)"
            )
        out[1 + k] = gn
    return out


# ---------------------------------------------------------------- the user API


class FunctionCtx:
    """The ``ctx`` of a custom Function: what forward leaves for backward."""

    needs_input_grad: tuple[bool, ...]

    def __init__(self) -> None:
        self._saved: tuple[Any, ...] = ()
        self._non_differentiable: tuple[Any, ...] = ()
        self._materialize = True
        self._dirty: tuple[Any, ...] = ()

    def save_for_backward(self, *tensors: Any) -> None:
        for t in tensors:
            if t is not None and not isinstance(t, Tensor):
                raise TypeError(
                    f"save_for_backward can only save variables, but argument {tensors.index(t)} "
                    f"is of type {type(t).__name__}"
                )  # PyTorch's words
        self._saved = tensors

    @property
    def saved_tensors(self) -> tuple[Any, ...]:
        return self._saved

    def mark_non_differentiable(self, *tensors: Tensor) -> None:
        self._non_differentiable = tensors

    def set_materialize_grads(self, value: bool) -> None:
        self._materialize = bool(value)

    def mark_dirty(self, *tensors: Tensor) -> None:
        raise NotImplementedError(
            "ctx.mark_dirty: symbp's custom Functions do not modify their inputs in place; "
            "return a new tensor from forward instead"
        )


_INTERNAL = frozenset({"_saved", "_non_differentiable", "_materialize", "_dirty"})


class Function:
    """A custom differentiable op, as ``torch.autograd.Function``.

    >>> import symbp
    >>> class Square(symbp.autograd.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_backward(x)
    ...         return x * x
    ...     @staticmethod
    ...     def backward(ctx, grad_output):
    ...         (x,) = ctx.saved_tensors
    ...         return 2 * x * grad_output
    >>> x = symbp.tensor([1.0, 3.0], requires_grad=True)
    >>> Square.apply(x).sum().backward()
    >>> x.grad
    tensor([2., 6.])
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(  # PyTorch's rule, in its words
            "Legacy autograd function with non-static forward method is deprecated. Please use "
            "new-style autograd function with static forward method. (Example: "
            "https://pytorch.org/docs/stable/autograd.html#torch.autograd.Function)"
        )

    @staticmethod
    def forward(ctx: Any, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "You must implement the forward function for custom autograd.Function."
        )

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Any) -> Any:
        raise NotImplementedError("setup_context is not implemented.")

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Any) -> Any:
        raise NotImplementedError(
            "You must implement either the backward or vjp method for your custom "
            "autograd.Function to use it with backward mode AD."
        )

    vjp = backward

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            raise TypeError(f"{cls.__name__}.apply takes positional arguments only (as PyTorch)")
        return _apply(cls, args)


def _apply(cls: Any, args: tuple) -> Any:
    tensor_args = [a for a in args if isinstance(a, Tensor)]
    grad_on = is_grad_enabled()
    needs = tuple(isinstance(a, Tensor) and a.requires_grad and grad_on for a in args)
    # forward sees detached views: it records nothing differentiable (as PyTorch's runs under
    # no_grad), yet its graph still computes from the inputs
    views = {id(a): _detached(a) for a in tensor_args}
    fargs = tuple(views[id(a)] if isinstance(a, Tensor) else a for a in args)
    ctx = FunctionCtx()
    ctx.needs_input_grad = needs
    with enable_grad():
        if cls.setup_context is not Function.setup_context:  # PyTorch 2's split form
            out = cls.forward(*fargs)
            cls.setup_context(ctx, fargs, out)
        else:
            out = cls.forward(ctx, *fargs)
    outs = out if isinstance(out, tuple) else (out,)
    for j, o in enumerate(outs):
        if not isinstance(o, Tensor):
            raise TypeError(
                f"{cls.__name__}.forward must return a Tensor or a tuple of Tensors; output {j} "
                f"is {type(o).__name__}"
            )
    if not any(needs):  # nothing to differentiate: the forward's results as they are
        return out

    index_of = {id(v): i for i, v in enumerate(views[id(a)] for a in tensor_args)}
    output_of = {id(o): j for j, o in enumerate(outs)}
    extras: list[Tensor] = []
    extra_of: dict[int, int] = {}

    def extra(t: Tensor) -> int:
        if id(t) not in extra_of:
            extra_of[id(t)] = len(extras)
            extras.append(t)
        return extra_of[id(t)]

    results = tuple(extra(o) for o in outs)

    def ref(t: Tensor) -> tuple:
        if id(t) in index_of:
            return ("input", index_of[id(t)])
        if id(t) in output_of:
            return ("output", output_of[id(t)])
        return ("extra", extra(t))

    saved = tuple(None if t is None else ref(t) for t in ctx._saved)
    attrs = []
    for name, v in sorted(vars(ctx).items()):
        if name in _INTERNAL or name == "needs_input_grad":
            continue
        attrs.append((name, ("ref", ref(v)) if isinstance(v, Tensor) else ("value", _hashable(v))))
    consts = []
    for a in args:
        if isinstance(a, Tensor):
            consts.append(("tensor", tensor_args.index(a)))
        else:
            consts.append(("value", _hashable(a)))
    # marked so, or not floating point (indices: PyTorch never differentiates those either)
    nondiff = tuple(
        j
        for j, o in enumerate(outs)
        if any(o is t for t in ctx._non_differentiable) or o.dtype.kind != "f"
    )
    spec = FunctionSpec(
        cls,
        code_digest(cls),
        0,
        len(tensor_args),
        tuple(consts),
        saved,
        tuple(attrs),
        results,
        nondiff,
        needs,
        ctx._materialize,
    )
    in_nodes = tuple(a.node for a in tensor_args)
    extra_nodes = tuple(t.node for t in extras)
    wrapped = []
    for j, o in enumerate(outs):
        if j in nondiff:
            wrapped.append(o)
            continue
        node = Node(
            "function", (o.node, *in_nodes, *extra_nodes), replace(spec, index=j), o.shape, o.dtype
        )
        wrapped.append(Tensor(node, o.value, True, (o, *tensor_args, *extras)))
    return tuple(wrapped) if isinstance(out, tuple) else wrapped[0]


def _detached(x: Tensor) -> Tensor:
    """``x`` as forward sees it: the same values and node graph, no gradient through it."""
    return Tensor(ops.detach(x.node), x.value, False, (x,))


__all__ = ["Function", "FunctionCtx", "FunctionSpec"]
