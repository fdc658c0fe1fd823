"""``symbp.autograd``: PyTorch's autograd API over symbp's symbolic backward graph.

``grad`` and ``backward`` with PyTorch's signatures and rules; ``create_graph=True`` gives
gradients that are tensors of the backward graph itself (IR nodes), so they differentiate
again (second derivatives, gradient penalties, Hessian-vector products, a physics-informed
loss on du/dx) and compile inside ``symbp.compile``. ``Function`` is a custom op whose forward
and backward are traced tensor code; ``gradcheck`` compares a function's Jacobian with central
differences, as ``torch.autograd.gradcheck``.

>>> import symbp
>>> x = symbp.tensor(3.0, requires_grad=True)
>>> (dy,) = symbp.autograd.grad(x ** 3, x, create_graph=True)
>>> dy
tensor(27., grad_fn=<MulBackward0>)
>>> symbp.autograd.grad(dy, x)
(tensor(18.),)

One deliberate difference: a second ``backward`` through the same graph needs no
``retain_graph=True`` (see ``symbp.autograd.engine``: nothing is freed, and an in-place
change since the forward is refused as PyTorch refuses it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from symbp.autograd import engine
from symbp.autograd.function import Function, FunctionCtx
from symbp.autograd.graph import AccumulateGrad, BackwardNode
from symbp.grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)
from symbp.tensor import Tensor, _leaf


def Variable(data: Any, requires_grad: bool = False, volatile: bool = False) -> Tensor:
    """PyTorch's old wrapper, which PyTorch 0.4 merged into Tensor: a tensor given stays
    itself (``requires_grad`` set when asked), anything else becomes ``symbp.tensor(data)``."""
    if isinstance(data, Tensor):
        return data.requires_grad_() if requires_grad else data
    from symbp.tensor import tensor

    return tensor(data, requires_grad=requires_grad)


def _tensors(x: Any, what: str) -> list[Any]:
    if isinstance(x, Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return list(x)
    raise TypeError(f"{what}: expected a Tensor or a sequence of Tensors, got {type(x).__name__}")


def _grads_for(outputs: list[Any], grad_outputs: Any, what: str) -> list[Any]:
    if grad_outputs is None:
        return [None] * len(outputs)
    gs = [grad_outputs] if isinstance(grad_outputs, Tensor) else list(grad_outputs)
    if len(gs) != len(outputs):
        raise RuntimeError(
            f"{what}: got {len(gs)} grad_outputs for {len(outputs)} outputs: give one per "
            f"output (None for a scalar output)"
        )
    return gs


def grad(
    outputs: Any,
    inputs: Any,
    grad_outputs: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    only_inputs: bool = True,
    allow_unused: bool | None = None,
    is_grads_batched: bool = False,
    materialize_grads: bool = False,
) -> tuple[Tensor | None, ...]:
    """The gradients of ``outputs`` (weighted by ``grad_outputs``) w.r.t. ``inputs``, as
    ``torch.autograd.grad``; ``.grad`` is left alone.

    ``create_graph=True``: the gradients are differentiable tensors (their graph is the
    symbolic backward graph); inside a model traced by ``symbp.compile`` they compile.
    ``retain_graph`` is accepted and changes nothing (the graph is never freed).
    """
    if is_grads_batched:
        raise NotImplementedError(
            "autograd.grad(is_grads_batched=True): symbp has no vmap; call grad once per "
            "grad_outputs row"
        )
    if allow_unused is None:
        allow_unused = materialize_grads
    elif materialize_grads and not allow_unused:
        raise ValueError(  # PyTorch's words
            "Expected allow_unused to be True or not passed when materialize_grads=True, but "
            "got: allow_unused=False."
        )
    outs = _tensors(outputs, "autograd.grad: outputs")
    ins = _tensors(inputs, "autograd.grad: inputs")
    if not ins:
        raise RuntimeError("grad requires non-empty inputs.")
    for t in ins:
        if not isinstance(t, Tensor):
            raise TypeError(f"autograd.grad: inputs must be Tensors, got {type(t).__name__}")
        if not t.requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    gos = _grads_for(outs, grad_outputs, "autograd.grad")
    result = engine.gradients(outs, gos, ins, create_graph, "autograd.grad")
    for i, g in enumerate(result):
        if g is None and not allow_unused:
            raise RuntimeError(  # PyTorch's words
                f"The differentiated Tensor at index {i} appears to not have been used in the "
                f"graph. Set allow_unused=True if this is the desired behavior."
            )
    if materialize_grads:
        result = [
            _leaf(np.zeros(t.value.shape, t.dtype)) if g is None and t.value is not None else g
            for t, g in zip(ins, result)
        ]
    return tuple(result)


def backward(
    tensors: Any,
    grad_tensors: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    grad_variables: Any = None,
    inputs: Any = None,
) -> None:
    """Accumulate the gradients of ``tensors`` into ``.grad`` of the leaves (or of
    ``inputs``), as ``torch.autograd.backward``."""
    outs = _tensors(tensors, "autograd.backward: tensors")
    if grad_variables is not None:
        grad_tensors = grad_variables
    gs = _grads_for(outs, grad_tensors, "autograd.backward")
    ins = None if inputs is None else _tensors(inputs, "autograd.backward: inputs")
    engine.run_backward(outs, gs, ins, create_graph, "autograd.backward")


# ---------------------------------------------------------------- gradcheck


class GradcheckError(RuntimeError):
    """A Jacobian that does not match its central differences (``gradcheck``'s error)."""


def _jacobians(
    func: Callable[..., Any], inputs: tuple, wrt: list[int], eps: float
) -> tuple[list[Tensor], list[list[np.ndarray]], list[list[np.ndarray]]]:
    """Numerical and analytical Jacobians [output][input] as (out numel, in numel) arrays."""

    def run(args: Sequence[Any]) -> list[Tensor]:
        out = func(*args)
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        return [o for o in outs if isinstance(o, Tensor)]

    outs = run(inputs)
    numerical = [[np.zeros((o.numel(), inputs[i].numel())) for i in wrt] for o in outs]
    for c, i in enumerate(wrt):
        x = inputs[i]
        flat = x.numpy().reshape(-1)
        for k in range(flat.size):
            orig = flat[k]
            vals = []
            for step in (eps, -eps):
                flat[k] = orig + step
                # with grad on: func may itself differentiate (gradgradcheck's does)
                vals.append([np.array(o.numpy(), np.float64) for o in run(inputs)])
            flat[k] = orig
            for j in range(len(outs)):
                col = (vals[0][j] - vals[1][j]).reshape(-1) / (2 * eps)
                numerical[j][c][:, k] = col
    analytical = [[np.zeros((o.numel(), inputs[i].numel())) for i in wrt] for o in outs]
    ins = [inputs[i] for i in wrt]
    for j, o in enumerate(outs):
        if not o.requires_grad or o.dtype.kind != "f":
            continue
        for e in range(o.numel()):
            seed = np.zeros(o.numel(), o.dtype)
            seed[e] = 1
            gs = engine.gradients([o], [_leaf(seed.reshape(o.shape))], ins, False, "gradcheck")
            for c, g in enumerate(gs):
                if g is not None:
                    analytical[j][c][e, :] = g.numpy().reshape(-1)
    return outs, numerical, analytical


def gradcheck(
    func: Callable[..., Any],
    inputs: Any,
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
    nondet_tol: float = 0.0,
    check_undefined_grad: bool = True,
    check_grad_dtypes: bool = False,
    check_batched_grad: bool = False,
    check_batched_forward_grad: bool = False,
    check_forward_ad: bool = False,
    check_backward_ad: bool = True,
    fast_mode: bool = False,
    masked: bool | None = None,
) -> bool:
    """``torch.autograd.gradcheck``: the Jacobian of ``func(*inputs)`` with respect to every
    input tensor that requires grad, symbolic (symbp's backward, row by row) against central
    differences of step ``eps``, element by element; ``|analytical - numerical| <= atol +
    rtol * |numerical|``. True if all match; else a ``GradcheckError`` (or False with
    ``raise_exception=False``). Use float64 inputs, as PyTorch asks. (``symbp.gradcheck`` is
    the model-level check with kink detection and a report.)

    >>> import symbp
    >>> x = symbp.tensor([0.5, -1.0], dtype=symbp.float64, requires_grad=True)
    >>> symbp.autograd.gradcheck(lambda t: t.tanh() * t, (x,))
    True
    """
    if check_forward_ad or check_batched_grad or check_batched_forward_grad:
        raise NotImplementedError(
            "gradcheck: symbp has reverse mode only (check_forward_ad, check_batched_grad "
            "and check_batched_forward_grad need forward mode or vmap)"
        )
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    wrt = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
    if not wrt:
        raise ValueError(  # PyTorch's words
            "gradcheck expects at least one input tensor to require gradient, but none of the "
            "them have requires_grad=True."
        )
    for i in wrt:
        if args[i].dtype != np.float64:
            import warnings

            warnings.warn(
                f"Input #{i} requires gradient and is not a double precision floating point. "
                f"This check will likely fail if all the inputs are not of double precision "
                f"floating point. ",
                UserWarning,
                stacklevel=2,
            )
    outs, numerical, analytical = _jacobians(func, args, wrt, eps)
    for j in range(len(outs)):
        for c, i in enumerate(wrt):
            a, n = analytical[j][c], numerical[j][c]
            if not np.allclose(a, n, rtol=rtol, atol=atol):
                if not raise_exception:
                    return False
                raise GradcheckError(  # PyTorch's words, with symbp's arrays
                    f"Jacobian mismatch for output {j} with respect to input {i},\n"
                    f"numerical:{n}\nanalytical:{a}\n"
                )
    return True


def gradgradcheck(
    func: Callable[..., Any],
    inputs: Any,
    grad_outputs: Any = None,
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    gen_non_contig_grad_outputs: bool = False,
    raise_exception: bool = True,
    **unused: Any,
) -> bool:
    """``torch.autograd.gradgradcheck``: ``gradcheck`` of the gradient itself, that is of
    ``grad(func(*inputs), inputs, grad_outputs, create_graph=True)`` as a function of the
    inputs and of ``grad_outputs`` (random float64 tensors when not given, seeded)."""
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    outs = func(*args)
    outs = list(outs) if isinstance(outs, (tuple, list)) else [outs]
    if grad_outputs is None:
        rng = np.random.default_rng(0)
        grad_outputs = [_leaf(rng.normal(size=tuple(o.shape))).requires_grad_() for o in outs]
    gos = list(grad_outputs) if isinstance(grad_outputs, (tuple, list)) else [grad_outputs]
    n = len(args)

    def first_grads(*all_args: Any) -> tuple:
        ins, cts = all_args[:n], all_args[n:]
        results = func(*ins)
        results = list(results) if isinstance(results, (tuple, list)) else [results]
        wrt = [a for a in ins if isinstance(a, Tensor) and a.requires_grad]
        gs = grad(results, wrt, list(cts), create_graph=True, allow_unused=True)
        return tuple(g for g in gs if g is not None)

    return gradcheck(
        first_grads,
        (*args, *gos),
        eps=eps,
        atol=atol,
        rtol=rtol,
        raise_exception=raise_exception,
    )


__all__ = [
    "AccumulateGrad",
    "BackwardNode",
    "Function",
    "FunctionCtx",
    "GradcheckError",
    "Variable",
    "backward",
    "enable_grad",
    "grad",
    "gradcheck",
    "gradgradcheck",
    "inference_mode",
    "is_grad_enabled",
    "no_grad",
    "set_grad_enabled",
]
