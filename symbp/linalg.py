"""``symbp.linalg``: PyTorch's ``torch.linalg`` norms, over symbp's ops.

Vector norms (``symbp.vector_norm``: ord 2, 1, inf, -inf, 0, any other p) and matrix norms
('fro', 1, -1, inf, -inf); the nuclear and spectral norms need an SVD, which symbp does not
have: they raise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from symbp.compiler.ir import shape_error, shape_str
from symbp.tensor import (
    Tensor,
    reshape,
    vector_norm,  # one vector norm: torch.linalg's is torch's
)
from symbp.tensor import _linalg_operands as _tensors
from symbp.tensor import max as _max
from symbp.tensor import sum as _sum


def _dims(x: Tensor, dim: Any) -> tuple[int, ...]:
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    for d in dims:
        if not -x.ndim <= d < x.ndim:
            raise shape_error(f"linalg: dim {d} out of range for {shape_str(x.shape)}")
    return tuple(d % x.ndim for d in dims)


def _amax(x: Tensor, axes: tuple[int, ...], keepdim: bool) -> Tensor:
    return _max(x, axes, keepdim) if len(axes) > 1 else _max(x, axes[0], keepdim).values


def matrix_norm(x: Any, ord: Any = "fro", dim: Any = (-2, -1), keepdim: bool = False) -> Tensor:  # noqa: A002
    """A norm of the matrices over axes ``dim``, as ``torch.linalg.matrix_norm``."""
    (x,) = _tensors("matrix_norm", x)
    if x.ndim < 2:
        raise shape_error(f"matrix_norm: expects at least 2 dimensions, got {shape_str(x.shape)}")
    r, c = _dims(x, dim)
    if ord == "fro":
        return _sum(x * x, (r, c), keepdim).sqrt()
    if ord in ("nuc", 2, -2):
        raise NotImplementedError(
            f"matrix_norm: ord={ord!r} needs singular values, which symbp does not compute"
        )
    if ord in (1, -1):  # the largest (smallest) column sum of |x|
        inner, outer = r, c
    elif ord in (np.inf, -np.inf):  # the largest (smallest) row sum
        inner, outer = c, r
    else:
        raise ValueError(f"matrix_norm: unknown ord {ord!r}")
    sums = _sum(x.abs(), inner, keepdim=True)
    sign = 1 if ord in (1, np.inf) else -1
    out = _max(sums * sign, outer, keepdim=True).values * sign
    if not keepdim:
        out = reshape(out, *[d for a, d in enumerate(x.shape) if a not in (r, c)])
    return out


def norm(x: Any, ord: Any = None, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A002
    """``torch.linalg.norm``: a vector norm over one dim (or the flattened tensor), a matrix
    norm over two."""
    (x,) = _tensors("norm", x)
    if dim is None and ord is None:
        return vector_norm(x, 2, None, keepdim)
    if dim is None:
        dim = (0,) if x.ndim == 1 else (0, 1) if x.ndim == 2 else None
        if dim is None:
            raise shape_error(f"norm: with ord={ord!r}, the input must be 1-D or 2-D")
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    if len(dims) == 1:
        return vector_norm(x, 2 if ord is None else ord, dims, keepdim)
    return matrix_norm(x, "fro" if ord is None else ord, dims, keepdim)


__all__ = ["matrix_norm", "norm", "vector_norm"]
