"""Padding layers, PyTorch's: ``nn.ZeroPad2d``, ``ConstantPad1d/2d``, ``ReflectionPad1d/2d``,
``ReplicationPad1d/2d``, each ``F.pad`` with its mode and its padding's PyTorch forms (an int
for every side, or the tuple (left, right[, top, bottom]))."""

from __future__ import annotations

from typing import Any

from symbp import tensor as T
from symbp.nn.module import Module
from symbp.tensor import Tensor


class _Pad(Module):
    """``F.pad(x, padding, mode, value)`` over the last ``sides`` // 2 dims."""

    mode = "constant"
    sides = 4

    def __init__(self, padding: Any, value: float = 0.0) -> None:
        super().__init__()
        if isinstance(padding, int):
            padding = (padding,) * self.sides
        padding = tuple(int(p) for p in padding)
        if len(padding) != self.sides:
            raise ValueError(
                f"{type(self).__name__}: padding must be an int or {self.sides} ints (left, "
                f"right{', top, bottom' if self.sides == 4 else ''}), got {padding}"
            )
        self.padding = padding
        self.value = float(value)

    def forward(self, x: Tensor) -> Tensor:
        value = self.value if self.mode == "constant" else None
        return T.pad(x, self.padding, self.mode, value)

    def extra_repr(self) -> str:
        value = f", value={self.value}" if self.mode == "constant" and self.value else ""
        return f"{self.padding}{value}"


class ConstantPad1d(_Pad):
    sides = 2

    def __init__(self, padding: Any, value: float) -> None:
        super().__init__(padding, value)


class ConstantPad2d(_Pad):
    def __init__(self, padding: Any, value: float) -> None:
        super().__init__(padding, value)


class ZeroPad1d(_Pad):
    sides = 2


class ZeroPad2d(_Pad):
    pass


class ReflectionPad1d(_Pad):
    mode, sides = "reflect", 2


class ReflectionPad2d(_Pad):
    mode = "reflect"


class ReplicationPad1d(_Pad):
    mode, sides = "replicate", 2


class ReplicationPad2d(_Pad):
    mode = "replicate"


class CircularPad1d(_Pad):
    mode, sides = "circular", 2


class CircularPad2d(_Pad):
    mode = "circular"


__all__ = [
    "CircularPad1d",
    "CircularPad2d",
    "ConstantPad1d",
    "ConstantPad2d",
    "ReflectionPad1d",
    "ReflectionPad2d",
    "ReplicationPad1d",
    "ReplicationPad2d",
    "ZeroPad1d",
    "ZeroPad2d",
]
