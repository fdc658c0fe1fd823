"""``torch.nn.utils``: gradient clipping and flat parameter vectors, as PyTorch's."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from symbp.grad_mode import no_grad
from symbp.tensor import Tensor, tensor


def _list(parameters: Any) -> list[Tensor]:
    return [parameters] if isinstance(parameters, Tensor) else list(parameters)


def clip_grad_norm_(
    parameters: Any,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> Tensor:
    """Scale every gradient by max_norm / (total norm + 1e-6) when the total norm (of all the
    gradients together) exceeds ``max_norm``; returns the total norm, as PyTorch."""
    grads = [p._grad for p in _list(parameters) if p._grad is not None]
    if not grads:
        return tensor(0.0)
    if math.isinf(norm_type):
        total = max(float(np.abs(g).max()) for g in grads)
    else:
        total = float(sum(float((np.abs(g) ** norm_type).sum()) for g in grads)) ** (1 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is "
            f"non-finite, so it cannot be clipped. To disable this error and scale the "
            f"gradients by the non-finite norm anyway, set `error_if_nonfinite=False`"
        )
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        for g in grads:
            g *= g.dtype.type(coef)  # in place: .grad views and optimizers see it
    return tensor(np.asarray(total, grads[0].dtype))


def clip_grad_value_(parameters: Any, clip_value: float, foreach: bool | None = None) -> None:
    """Clamp every gradient entry to [-clip_value, clip_value], in place."""
    for p in _list(parameters):
        if p._grad is not None:
            np.clip(p._grad, -clip_value, clip_value, out=p._grad)


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """The parameters' values, flattened and joined in order (a copy: no graph)."""
    return tensor(np.concatenate([p.numpy().reshape(-1) for p in parameters]))


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Write consecutive slices of ``vec`` into the parameters, in place."""
    values, i = vec.numpy().reshape(-1), 0
    with no_grad():
        for p in parameters:
            n = int(np.prod(p.shape))
            p.copy_(values[i : i + n].reshape(tuple(p.shape)))
            i += n
    if i != values.size:
        raise RuntimeError(f"vector_to_parameters: {values.size} values for {i} parameter entries")


__all__ = ["clip_grad_norm_", "clip_grad_value_", "parameters_to_vector", "vector_to_parameters"]
