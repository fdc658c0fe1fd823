"""``nn.Module``: PyTorch's module protocol (registration, parameters, state dicts, modes)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np

from symbp.ir import LABELS, ShapeError, scope, shape_str
from symbp.tensor import Parameter, Tensor


class Module:
    """Base class of layers and models: assign sub-modules and Parameters as attributes."""

    _parameters: OrderedDict[str, Parameter]
    _modules: OrderedDict[str, Module]
    _buffers: OrderedDict[str, np.ndarray]
    training: bool
    _path: str

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_path", "")

    # ------------------------------------------------------------ registration

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__}: call super().__init__() before assigning attributes"
            )
        for table in (self._parameters, self._modules, self._buffers):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        for table in (self._parameters, self._modules, self._buffers):
            table.pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """A non-trainable array saved in the state dict (running statistics and the like)."""
        self._buffers[name] = np.asarray(value)
        object.__setattr__(self, name, self._buffers[name])

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        setattr(self, name, param)

    def add_module(self, name: str, module: Module) -> None:
        setattr(self, name, module)

    # ------------------------------------------------------------ traversal

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        return (m for _, m in self.named_modules())

    def children(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def named_children(self) -> Iterator[tuple[str, Module]]:
        return iter(self._modules.items())

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        seen: set[int] = set()
        for path, m in self.named_modules(prefix):
            for name, p in m._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{path}.{name}" if path else name), p

    def parameters(self) -> Iterator[Parameter]:
        return (p for _, p in self.named_parameters())

    def named_buffers(self) -> Iterator[tuple[str, np.ndarray]]:
        for path, m in self.named_modules():
            for name, b in m._buffers.items():
                yield (f"{path}.{name}" if path else name), b

    # ------------------------------------------------------------ state

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Copies of every parameter and buffer by dotted name."""
        state: OrderedDict[str, np.ndarray] = OrderedDict()
        for name, p in self.named_parameters():
            state[name] = p.data.copy()
        for name, b in self.named_buffers():
            state[name] = np.array(b, copy=True)
        return state

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Load arrays by dotted name; shapes must match, as must the names when ``strict``."""
        params = dict(self.named_parameters())
        buffers = {n: (m, n.rsplit(".", 1)[-1]) for n, m in self._buffer_owners()}
        missing = [n for n in [*params, *buffers] if n not in state]
        unexpected = [n for n in state if n not in params and n not in buffers]
        if strict and (missing or unexpected):
            raise KeyError(
                f"load_state_dict for {type(self).__name__}: missing keys {missing}, "
                f"unexpected keys {unexpected}"
            )
        for name, value in state.items():
            arr = np.asarray(value.numpy() if isinstance(value, Tensor) else value)
            if name in params:
                p = params[name]
                if arr.shape != p.data.shape:
                    raise ShapeError(
                        f"load_state_dict: '{name}' has shape {shape_str(p.data.shape)} in the "
                        f"model, {shape_str(arr.shape)} in the state dict"
                    )
                p.data = arr.astype(p.data.dtype)
            elif name in buffers:
                owner, attr = buffers[name]
                owner.register_buffer(attr, arr.astype(owner._buffers[attr].dtype))

    def _buffer_owners(self) -> Iterator[tuple[str, Module]]:
        for path, m in self.named_modules():
            for name in m._buffers:
                yield (f"{path}.{name}" if path else name), m

    # ------------------------------------------------------------ modes and dtypes

    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def to(self, dtype: Any) -> Module:
        for p in self.parameters():
            p.set_dtype(dtype)
        for m in self.modules():  # float buffers (running statistics) follow, as in PyTorch
            for name, b in list(m._buffers.items()):
                if b.dtype.kind == "f":
                    m.register_buffer(name, b.astype(dtype))
        return self

    def double(self) -> Module:
        return self.to(np.float64)

    def float(self) -> Module:
        return self.to(np.float32)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    # ------------------------------------------------------------ calling

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self._path:  # the outermost call names every layer and parameter once
            self._name_tree()
        with scope(self.describe()):
            out = self.forward(*args, **kwargs)
        if isinstance(out, Tensor) and out.node not in LABELS:
            LABELS[out.node] = self._path
        return out

    def _name_tree(self) -> None:
        for path, m in self.named_modules():
            object.__setattr__(m, "_path", path or type(self).__name__.lower())
        for name, p in self.named_parameters():
            if p.name.startswith("param"):  # named once, by the first model that owns it
                p.rename(name)

    def describe(self) -> str:
        """How errors name this layer: ``Linear 'linear1'``."""
        return f"{type(self).__name__} '{self._path}'" if self._path else type(self).__name__

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, m in self._modules.items():
            child = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child}")
        return lines[0] + ")" if len(lines) == 1 else "\n".join(lines) + "\n)"
