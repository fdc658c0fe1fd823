"""The eager autograd engine: vector-Jacobian products of tensors that ran, in the IR.

``backward`` and ``grad`` both come down to ``vjp``: cotangents ``grad_outputs`` of some
``outputs`` pulled back to some ``inputs`` (leaves or not) by ``symbp.compiler.autodiff``. Two ways:

- ``create_graph=False`` (the usual ``loss.backward()``): the backward program is derived for
  the graph's *structure* (leaves renamed in order, ``api.canonical``), simplified once and
  cached, then evaluated with NumPy; the gradients are constants.
- ``create_graph=True``, or a traced graph (no values, inside ``symbp.compile``): the
  gradients are tensors whose nodes are the backward graph itself, built in the same IR as the
  forward. They are differentiable like any other tensor: a second ``grad`` or ``backward``
  through them derives the second derivative symbolically, and a traced one compiles.

Why a second backward through the same graph is allowed (PyTorch's ``retain_graph``): PyTorch
frees the saved values after a backward; symbp's graph is a static IR whose tensors keep their
values, so a second backward computes exactly what PyTorch computes with
``retain_graph=True``. Nothing can be stale: an in-place update of any tensor of the graph
since the forward is refused by the version check, as PyTorch refuses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from symbp.api import graph_tensors  # the autograd graph's tensors
from symbp.compiler import ops
from symbp.compiler.autodiff import vjp
from symbp.compiler.ir import Node, shape_str, toposort
from symbp.compiler.reference import evaluate
from symbp.compiler.simplify import simplify
from symbp.tensor import Tensor, _leaf, tensor


def check_versions(tensors: Sequence[Tensor]) -> None:
    """Refuse a backward that would read values updated in place since the forward ran (the
    graph is re-evaluated from its tensors' values), as PyTorch does."""
    for t in tensors:
        for p, v in zip(t._parents, t._versions):
            if p._version != v:
                kind = {"f": "Float", "i": "Long", "b": "Bool"}.get(p.dtype.kind, str(p.dtype))
                kind = "Double" if p.dtype == np.float64 else kind
                raise RuntimeError(  # PyTorch's words
                    f"one of the variables needed for gradient computation has been modified by "
                    f"an inplace operation: [torch.{kind}Tensor {list(p.shape)}] is at version "
                    f"{p._version}; expected version {v} instead."
                )


def is_graph_leaf(t: Tensor) -> bool:
    """A leaf of the autograd graph: made by the user, requiring grad (``.grad`` fills)."""
    return t.requires_grad and t.node.op == "input" and not t._parents


def seeds(
    outputs: Sequence[Tensor], grad_outputs: Sequence[Any], what: str
) -> tuple[list[Node], list[Tensor]]:
    """The cotangent node of each output (PyTorch's checks and words), and the tensors that
    carry given ones."""
    nodes, given = [], []
    for i, (out, g) in enumerate(zip(outputs, grad_outputs)):
        if not isinstance(out, Tensor):
            raise TypeError(f"{what}: outputs must be Tensors, got {type(out).__name__} at {i}")
        if not out.requires_grad:
            raise RuntimeError(  # PyTorch's words, then what they mean
                f"element {i} of tensors does not require grad and does not have a grad_fn: "
                f"{what}: the loss does not depend on any tensor that requires grad (create "
                f"the parameters with requires_grad=True, and compute outside no_grad())"
            )
        if g is None:
            if any(d != 1 for d in out.shape):
                raise RuntimeError(  # PyTorch's words, and what to do about it
                    f"grad can be implicitly created only for scalar outputs: {what} needs a "
                    f"scalar loss, got shape {shape_str(out.shape)} (reduce it with .sum() or "
                    f".mean(), or pass {'gradient' if what == 'backward' else 'grad_outputs'}=)"
                )
            if out.dtype.kind != "f":
                raise RuntimeError("grad can be implicitly created only for real scalar outputs")
            nodes.append(ops.const(1, out.shape, out.dtype))
            continue
        if not isinstance(g, Tensor):
            g = tensor(np.asarray(g, dtype=out.dtype))
        if tuple(g.shape) != tuple(out.shape):
            raise RuntimeError(  # PyTorch's words
                f"Mismatch in shape: grad_output[{i}] has a shape of torch.Size("
                f"{list(g.shape)}) and output[{i}] has a shape of torch.Size({list(out.shape)})."
            )
        node = g.node if g.dtype == out.dtype else ops.cast(g.node, out.dtype)
        nodes.append(node)
        given.append(g)
    return nodes, given


def vjp_values(
    outputs: Sequence[Tensor], cts: Sequence[Node], inputs: Sequence[Tensor], tensors: list[Tensor]
) -> list[np.ndarray | None]:
    """The gradients of ``inputs`` as arrays (None: not reached in the IR), from the
    simplified program of this graph's structure, derived once and cached
    (``api._BACKWARD_CACHE``, the ``api.BACKWARD_CACHE_SIZE`` most recently used: keys are
    canonical, leaves renamed in order, so an eager training loop derives once and the cache
    holds no user data)."""
    from symbp import api

    out_nodes = [o.node for o in outputs]
    in_nodes = [t.node for t in inputs]
    canon, memo = api.canonical([*out_nodes, *cts, *in_nodes])
    n = len(out_nodes)
    c_outs, c_cts, c_ins = canon[:n], canon[n : 2 * n], canon[2 * n :]
    reached = set(toposort(c_outs))
    c_wrt = tuple(w if w in reached else _UNREACHED for w in c_ins)
    key = (tuple(c_outs), tuple(c_cts), c_wrt)
    program = api._BACKWARD_CACHE.get(key)
    if program is None:
        program = api._BACKWARD_CACHE[key] = _derive(c_outs, c_cts, c_wrt)
    env = {memo[t.node]: t.value for t in tensors if t.node in memo and t.value is not None}
    want = [g for g in program if g is not None]
    vals = iter(evaluate(want, env) if want else [])
    return [None if g is None else next(vals) for g in program]


def _derive(outs: list[Node], cts: list[Node], wrt: tuple[Node, ...]) -> tuple[Node | None, ...]:
    """The simplified gradient nodes of ``wrt`` (None: not reached)."""
    from symbp import api

    one = len(outs) == 1 and cts[0] is ops.const(1, outs[0].shape, outs[0].dtype)
    if one and all(w.op == "input" for w in wrt):  # loss.backward(): the compiler's own derive
        derived = api.derive(outs[0], list(wrt))
        return tuple(None if w in derived.unreached else g for w, g in zip(wrt, derived.grads))
    if all(w.op == "input" for w in wrt):
        fwd = simplify(outs)  # stable forms before differentiating, as api.derive
    else:  # a non-leaf input must stay a node of the graph being differentiated
        fwd = outs
    gs = vjp(fwd, cts, list(wrt))
    done = iter(simplify([g for g in gs if g is not None]))
    return tuple(None if g is None else next(done) for g in gs)


_UNREACHED = Node("input", (), "<unreached>", (), np.dtype(np.float64))  # in no graph


def requires_grad_of(node: Node, leaves: set[Node]) -> bool:
    """Whether a gradient can flow from ``node`` to one of ``leaves`` (the nodes of tensors
    that require grad): PyTorch's requires_grad of a computed result."""
    seen: set[int] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if n in leaves:
            return True
        if ops.OPS[n.op].differentiable:
            stack.extend(grad_sources(n))
    return False


def grad_sources(n: Node) -> Sequence[Node]:
    """The sources a gradient of ``n`` reaches (a custom Function's: its inputs only)."""
    spec = getattr(n.arg, "function_inputs", None)
    return n.src if spec is None else n.src[1 : 1 + spec]


def gradients(
    outputs: Sequence[Tensor],
    grad_outputs: Sequence[Any],
    inputs: Sequence[Tensor],
    create_graph: bool,
    what: str,
) -> list[Tensor | None]:
    """d(sum of outputs · grad_outputs)/d input for each input; None where no path of the
    autograd graph joins them (PyTorch's 'unused'), zeros where one does but the IR folded it
    away (``x * 0``)."""
    cts, given = seeds(outputs, grad_outputs, what)
    tensors = graph_tensors([*outputs, *given])
    check_versions(tensors)
    autograd_graph = {id(t) for t in graph_tensors(outputs, grad_only=True)}
    used = [id(t) in autograd_graph for t in inputs]
    symbolic = any(t.value is None for t in tensors)
    if not create_graph and not symbolic:
        arrays = vjp_values(outputs, cts, inputs, tensors)
        result: list[Tensor | None] = []
        for t, u, g in zip(inputs, used, arrays):
            if not u:
                result.append(None)
                continue
            arr = np.zeros(t.value.shape, t.dtype) if g is None else g  # type: ignore[union-attr]
            result.append(_leaf(np.asarray(arr, dtype=t.dtype).reshape(t.shape)))
        return result
    # the backward graph itself, unsimplified, in the forward's IR: its nodes are the tensors'
    out_nodes = [o.node for o in outputs]
    reached = set(toposort(out_nodes))
    wrt = [t.node if t.node in reached else _UNREACHED for t in inputs]
    nodes = vjp(out_nodes, cts, wrt)
    leaves = {t.node for t in tensors if t.requires_grad}
    result = []
    for t, u, gn in zip(inputs, used, nodes):
        if not u:
            result.append(None)
            continue
        if gn is None:
            gn = ops.const(0, t.shape, t.dtype)
        if gn.dtype != t.dtype:
            gn = ops.cast(gn, t.dtype)
        result.append(_wrap(gn, tensors, create_graph and requires_grad_of(gn, leaves)))
    return result


def _wrap(node: Node, tensors: list[Tensor], requires_grad: bool) -> Tensor:
    """A tensor for a backward node computed from ``tensors``: its value when they have
    theirs; without ``requires_grad`` a constant (a detached node when traced). Its parents
    are the tensors whose nodes it reads: a leaf the gradient does not depend on (the last
    bias, in d output / d input) is not in its graph, and its ``.grad`` stays None, as
    PyTorch's."""
    reads = set(toposort([node]))
    tensors = [t for t in tensors if t.node in reads]
    if any(t.value is None for t in tensors):
        if not requires_grad:
            node = ops.detach(node)
        return Tensor(node, None, requires_grad, tuple(tensors))
    env = {t.node: t.value for t in tensors if t.value is not None}
    (value,) = evaluate([node], env)
    value = np.asarray(value, dtype=node.dtype)
    if not requires_grad:
        return _leaf(value)
    return Tensor(node, value, True, tuple(tensors))


def accumulate(t: Tensor, g: Tensor) -> None:
    """Add ``g`` into ``t.grad`` as PyTorch does: in place into a held constant gradient, as a
    new tensor (with its graph) when either is differentiable."""
    if t.value is not None and tuple(g.shape) != tuple(t.value.shape):
        raise RuntimeError(
            f"backward: the gradient of a {shape_str(t.value.shape)} tensor came out "
            f"{shape_str(g.shape)}"
        )
    old = t.grad if t._grad is not None else None  # (no non-leaf warning from here)
    if old is None:
        if g.requires_grad:
            t._grad, t._grad_view = g.value, g
        else:
            t._grad = np.array(g.numpy(), copy=True)
            t._grad_view = None
        return
    if g.requires_grad or old.requires_grad:
        new = old + g
        t._grad, t._grad_view = new.value, new
    elif t._grad is not None and t._grad.flags.writeable and t._grad.shape == g.shape:
        t._grad += g.numpy()  # in place, as PyTorch accumulates: a held x.grad sees the sum
    else:
        t._grad = t._grad + g.numpy()  # type: ignore[operator]
        t._grad_view = None


def run_backward(
    outputs: Sequence[Tensor],
    grad_outputs: Sequence[Any],
    inputs: Sequence[Tensor] | None,
    create_graph: bool,
    what: str,
) -> None:
    """``backward``: accumulate gradients into ``.grad`` of the graph's leaves (and of the
    non-leaves that ``retain_grad()``), or of ``inputs`` when given."""
    for o in outputs:
        if isinstance(o, Tensor) and o.requires_grad and o.value is None:
            raise RuntimeError(
                f"{what}: this tensor was traced symbolically (inside symbp.compile): it has no "
                f"values to fill .grad with; use symbp.autograd.grad(..., create_graph=True) for "
                f"a gradient inside a traced model"
            )
    if inputs is None:
        tensors = graph_tensors([o for o in outputs if isinstance(o, Tensor)], grad_only=True)
        order = {n: i for i, n in enumerate(toposort([o.node for o in outputs]))}
        wrt = [t for t in tensors if is_graph_leaf(t) or (t.requires_grad and t._retains_grad)]
        wrt.sort(key=lambda t: order.get(t.node, len(order)))  # the order the data flows
    else:
        wrt = list(inputs)
        if not wrt:
            raise RuntimeError("backward: 'inputs' argument to backward() cannot be empty.")
        for t in wrt:
            if not isinstance(t, Tensor):
                raise TypeError(f"{what}: inputs must be Tensors, got {type(t).__name__}")
    grads = gradients(outputs, grad_outputs, wrt, create_graph, what)
    for t, g in zip(wrt, grads):
        if g is not None:
            accumulate(t, g)
