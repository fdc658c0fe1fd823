"""Layers: compositions of tensor ops, each checking its input in the model's own terms."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from symbp import tensor as T
from symbp.compiler.ir import ShapeError, shape_str
from symbp.devices import check as check_device
from symbp.nn import functional, init
from symbp.nn.module import Module
from symbp.tensor import Parameter, Tensor, get_default_dtype


class Linear(Module):
    """y = x Wᵀ + b with W of shape [out, in]; PyTorch's default initialisation."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__()
        if device is not None:
            check_device(device, "Linear")
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


class _InPlace(Module):
    """An activation taking PyTorch's ``inplace`` flag: with True, it updates its input tensor
    and returns it, as PyTorch's (see ``functional._in_place``); the repr says so, as
    PyTorch's does."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = bool(inplace)

    def _with_flag(self, text: str) -> str:
        return ", ".join(t for t in (text, "inplace=True" if self.inplace else "") if t)

    def extra_repr(self) -> str:
        return self._with_flag("")


class ReLU(_InPlace):
    def forward(self, x: Tensor) -> Tensor:
        return functional.relu(x, self.inplace)


class Sigmoid(_Activation):
    fn = "sigmoid"


class Tanh(_Activation):
    fn = "tanh"


class GELU(Module):
    """x Φ(x); ``approximate='tanh'`` is PyTorch's tanh approximation."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        functional.gelu(T.tensor([0.0]), approximate)  # checks the argument now, as PyTorch
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return functional.gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(_InPlace):
    def forward(self, x: Tensor) -> Tensor:
        return functional.silu(x, self.inplace)


class Softplus(Module):
    """log(1 + exp(beta x)) / beta, and x where beta x > threshold (PyTorch's)."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, x: Tensor) -> Tensor:
        return functional.softplus(x, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


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


# ---------------------------------------------------------------- the math family (issue 12)
# PyTorch's activation layers with their constructor arguments and reprs; each forward is
# its symbp.nn.functional function.


class LeakyReLU(_InPlace):
    def __init__(self, negative_slope: float = 1e-2, inplace: bool = False):
        super().__init__(inplace)
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tensor:
        return functional.leaky_relu(x, self.negative_slope, self.inplace)

    def extra_repr(self) -> str:
        return self._with_flag(f"negative_slope={self.negative_slope}")


class ELU(_InPlace):
    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__(inplace)
        self.alpha = alpha

    def forward(self, x: Tensor) -> Tensor:
        return functional.elu(x, self.alpha, self.inplace)

    def extra_repr(self) -> str:
        return self._with_flag(f"alpha={self.alpha}")


class CELU(ELU):
    def forward(self, x: Tensor) -> Tensor:
        return functional.celu(x, self.alpha, self.inplace)


class SELU(_InPlace):
    def forward(self, x: Tensor) -> Tensor:
        return functional.selu(x, self.inplace)


class Mish(_InPlace):
    def forward(self, x: Tensor) -> Tensor:
        return functional.mish(x, self.inplace)


class Hardtanh(_InPlace):
    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
        super().__init__(inplace)
        if min_val > max_val:
            raise ValueError(f"Hardtanh: min_val ({min_val}) is greater than max_val ({max_val})")
        self.min_val, self.max_val = min_val, max_val

    def forward(self, x: Tensor) -> Tensor:
        return functional.hardtanh(x, self.min_val, self.max_val, self.inplace)

    def extra_repr(self) -> str:
        return self._with_flag(f"min_val={self.min_val}, max_val={self.max_val}")


class ReLU6(_InPlace):
    def forward(self, x: Tensor) -> Tensor:
        return functional.relu6(x, self.inplace)


class Hardsigmoid(_InPlace):
    def forward(self, x: Tensor) -> Tensor:
        return functional.hardsigmoid(x, self.inplace)

    def extra_repr(self) -> str:  # PyTorch's repr leaves the flag out here
        return ""


class Hardswish(Hardsigmoid):
    def forward(self, x: Tensor) -> Tensor:
        return functional.hardswish(x, self.inplace)


class Threshold(_InPlace):
    def __init__(self, threshold: float, value: float, inplace: bool = False):
        super().__init__(inplace)
        self.threshold, self.value = threshold, value

    def forward(self, x: Tensor) -> Tensor:
        return functional.threshold(x, self.threshold, self.value, self.inplace)

    def extra_repr(self) -> str:
        return self._with_flag(f"threshold={self.threshold}, value={self.value}")


class Softsign(_Activation):
    fn = "softsign"


class Tanhshrink(_Activation):
    fn = "tanhshrink"


class LogSigmoid(_Activation):
    fn = "logsigmoid"
