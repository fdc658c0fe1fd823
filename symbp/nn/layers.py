"""Layers: compositions of tensor ops, each checking its input in the model's own terms."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from symbp import tensor as T
from symbp.ir import ShapeError, shape_str
from symbp.nn import functional, init
from symbp.nn.module import Module
from symbp.tensor import Parameter, Tensor, get_default_dtype


class Linear(Module):
    """y = x Wᵀ + b with W of shape [out, in]; PyTorch's default initialisation."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype: Any = None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        dtype = np.dtype(dtype or get_default_dtype())
        self.weight = Parameter(np.zeros((out_features, in_features), dtype))
        self.bias = Parameter(np.zeros(out_features, dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # kaiming_uniform_(a=sqrt(5)) is U(-1/sqrt(in), 1/sqrt(in)); the bias uses the same bound
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ShapeError(
                f"{self.describe()} expects {self.in_features} input features (weight "
                f"{shape_str(self.weight.shape)}), got an input of shape {shape_str(x.shape)}"
            )
        return functional.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class Sequential(Module):
    """Modules applied in order; indexable and iterable like PyTorch's."""

    def __init__(self, *modules: Module | Mapping[str, Module]):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], Mapping):  # Sequential(OrderedDict(...))
            for name, m in modules[0].items():
                self.add_module(name, m)
            return
        for i, mod in enumerate(modules):
            self.add_module(str(i), mod)  # type: ignore[arg-type]  # add_module checks it

    def forward(self, x: Any) -> Any:
        for m in self._modules.values():
            x = m(x)
        return x

    def __getitem__(self, i: int | slice) -> Module:
        mods = list(self._modules.items())
        if isinstance(i, slice):
            return Sequential(OrderedDict(mods[i]))  # PyTorch keeps the names of a slice
        if not -len(mods) <= i < len(mods):
            raise IndexError(f"index {i} is out of range for a Sequential of {len(mods)}")
        return mods[i][1]

    def __setitem__(self, i: int, m: Module) -> None:
        self.add_module(list(self._modules)[i], m)

    def __delitem__(self, i: int | slice) -> None:
        names = list(self._modules)
        for name in names[i] if isinstance(i, slice) else [names[i]]:
            delattr(self, name)
        self._renumber(list(self._modules.values()))  # as PyTorch: the rest become 0, 1, ...

    def _renumber(self, mods: list[Module]) -> None:
        for name in list(self._modules):
            delattr(self, name)
        for k, mod in enumerate(mods):
            self.add_module(str(k), mod)

    def insert(self, index: int, m: Module) -> Sequential:
        mods = list(self._modules.values())
        mods.insert(index, m)
        self._renumber(mods)
        return self

    def extend(self, modules: Any) -> Sequential:
        for m in modules:
            self.append(m)
        return self

    def pop(self, index: int = -1) -> Module:
        m = self[index]
        del self[index]
        return m

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, m: Module) -> Sequential:
        self.add_module(str(len(self)), m)
        return self


class Identity(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x


class _Activation(Module):
    fn: str = ""

    def forward(self, x: Tensor) -> Tensor:
        return T.unary(self.fn, x)


class ReLU(_Activation):
    fn = "relu"


class Sigmoid(_Activation):
    fn = "sigmoid"


class Tanh(_Activation):
    fn = "tanh"


class GELU(_Activation):
    fn = "gelu"


class SiLU(_Activation):
    fn = "silu"


class Softplus(_Activation):
    fn = "softplus"


class Softmax(Module):
    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return T.softmax(x, self.dim)


class LogSoftmax(Softmax):
    def forward(self, x: Tensor) -> Tensor:
        return T.log_softmax(x, self.dim)


class Flatten(Module):
    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def extra_repr(self) -> str:  # as PyTorch prints it
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def forward(self, x: Tensor) -> Tensor:
        return T.flatten(x, self.start_dim, self.end_dim)
