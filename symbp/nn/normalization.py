"""``nn.LayerNorm``, ``nn.RMSNorm`` and ``nn.GroupNorm``: PyTorch's arguments and parameter
names (``weight`` ones, ``bias`` zeros); the maths is ``functional``'s composition of means
and variances over dims.

>>> import symbp
>>> symbp.nn.LayerNorm(4)(symbp.ones(2, 4)).shape
symbp.Size([2, 4])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from symbp.compiler.ir import ShapeError, shape_str
from symbp.nn import functional
from symbp.nn.module import Module
from symbp.tensor import Parameter, Tensor, get_default_dtype


def _shape(normalized_shape: Any) -> tuple[int, ...]:
    if isinstance(normalized_shape, int):
        return (normalized_shape,)
    return tuple(int(n) for n in normalized_shape)


def _param(shape: tuple[int, ...], fill: float, dtype: Any) -> Parameter:
    return Parameter(np.full(shape, fill, np.dtype(dtype or get_default_dtype())))


class LayerNorm(Module):
    """(x − mean) / √(var + eps) · weight + bias over the last ``len(normalized_shape)`` dims."""

    def __init__(
        self,
        normalized_shape: Any,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__()
        self.normalized_shape, self.eps = _shape(normalized_shape), eps
        self.elementwise_affine = elementwise_affine
        affine = elementwise_affine
        self.weight = _param(self.normalized_shape, 1.0, dtype) if affine else None
        self.bias = _param(self.normalized_shape, 0.0, dtype) if affine and bias else None

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002 (PyTorch's name)
        return functional.layer_norm(input, self.normalized_shape, self.weight, self.bias,
                                     self.eps, _what=self.describe())  # fmt: skip

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")  # fmt: skip


class RMSNorm(Module):
    """x / √(mean(x²) + eps) · weight over the last dims; ``eps=None``: the dtype's epsilon."""

    def __init__(
        self,
        normalized_shape: Any,
        eps: float | None = None,
        elementwise_affine: bool = True,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__()
        self.normalized_shape, self.eps = _shape(normalized_shape), eps
        self.elementwise_affine = elementwise_affine
        self.weight = _param(self.normalized_shape, 1.0, dtype) if elementwise_affine else None

    def forward(self, x: Tensor) -> Tensor:
        return functional.rms_norm(x, self.normalized_shape, self.weight, self.eps,
                                   _what=self.describe())  # fmt: skip

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")  # fmt: skip


class GroupNorm(Module):
    """Normalise [N, C, *] over groups of C / num_groups channels; per-channel affine."""

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__()
        if num_channels % num_groups:
            raise ValueError("num_channels must be divisible by num_groups")  # PyTorch's words
        self.num_groups, self.num_channels, self.eps, self.affine = (
            num_groups, num_channels, eps, affine,
        )  # fmt: skip
        self.weight = _param((num_channels,), 1.0, dtype) if affine else None
        self.bias = _param((num_channels,), 0.0, dtype) if affine else None

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        if input.ndim < 2 or input.shape[1] != self.num_channels:
            raise ShapeError(f"{self.describe()} expects [N, {self.num_channels}, *], got "
                             f"{shape_str(input.shape)}")  # fmt: skip
        return functional.group_norm(input, self.num_groups, self.weight, self.bias, self.eps,
                                     _what=self.describe())  # fmt: skip

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


__all__ = ["GroupNorm", "LayerNorm", "RMSNorm"]
