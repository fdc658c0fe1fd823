"""PyTorch's containers: modules and parameters held in a list or a dict, registered under
their positions or keys (``layers.0.weight``, ``heads.query.weight``) so that parameters,
state dicts and the compiler see them as PyTorch does."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from symbp.nn.module import Module
from symbp.tensor import Parameter, Tensor


def _position(what: str, i: int, n: int) -> int:
    if not isinstance(i, int) or isinstance(i, bool):
        raise TypeError(f"{what} indices must be integers or slices, not {type(i).__name__}")
    if not -n <= i < n:
        raise IndexError(f"index {i} is out of range for a {what} of length {n}")
    return i % n


class ModuleList(Module):
    """Modules in a list, registered as ``"0"``, ``"1"`` ...; it has no ``forward``: the model
    that holds it says how its modules are applied."""

    def __init__(self, modules: Iterable[Module] | None = None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _check(self, m: Any) -> Module:
        if not isinstance(m, Module):
            raise TypeError(f"ModuleList holds modules; got a {type(m).__name__}")
        return m

    def _renumber(self, mods: list[Module]) -> None:
        for name in list(self._modules):
            delattr(self, name)
        for i, m in enumerate(mods):
            self.add_module(str(i), m)

    def __getitem__(self, i: int | slice) -> Any:
        mods = list(self._modules.values())
        if isinstance(i, slice):
            return type(self)(mods[i])
        return mods[_position(type(self).__name__, i, len(mods))]

    def __setitem__(self, i: int, m: Module) -> None:
        self.add_module(str(_position(type(self).__name__, i, len(self))), self._check(m))

    def __delitem__(self, i: int | slice) -> None:
        mods = list(self._modules.values())
        if isinstance(i, slice):
            del mods[i]
        else:
            del mods[_position(type(self).__name__, i, len(mods))]
        self._renumber(mods)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))

    def __iadd__(self, modules: Iterable[Module]) -> ModuleList:
        return self.extend(modules)

    def __add__(self, other: Iterable[Module]) -> ModuleList:
        return type(self)([*self, *other])

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self)), self._check(module))
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        if not isinstance(modules, ModuleList) and isinstance(modules, Module):
            raise TypeError("ModuleList.extend should be called with an iterable of modules")
        for m in list(modules):
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        mods = list(self._modules.values())
        mods.insert(index, self._check(module))
        self._renumber(mods)

    def pop(self, index: int = -1) -> Module:
        m = self[index]
        del self[index]
        return m

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "ModuleList has no forward(): iterate over it in the forward of the model holding it"
        )


class ModuleDict(Module):
    """Modules by name, in insertion order; ``model.blocks["enc"]``."""

    def __init__(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]] | None = None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleDict holds modules; got a {type(module).__name__} for {key!r}")
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        del self._modules[key]
        object.__delattr__(self, key)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._modules))

    def __contains__(self, key: object) -> bool:
        return key in self._modules

    def keys(self) -> Iterable[str]:
        return self._modules.keys()

    def values(self) -> Iterable[Module]:
        return self._modules.values()

    def items(self) -> Iterable[tuple[str, Module]]:
        return self._modules.items()

    def clear(self) -> None:
        for k in list(self._modules):
            del self[k]

    def pop(self, key: str) -> Module:
        m = self[key]
        del self[key]
        return m

    def update(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]]) -> None:
        items = modules.items() if isinstance(modules, Mapping) else modules
        for key, m in items:
            self[key] = m

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "ModuleDict has no forward(): pick its modules in the forward of the model holding it"
        )


def _parameter(what: str, value: Any) -> Parameter | None:
    """A parameter to hold: a Parameter as it is, a tensor or array made one (as PyTorch's
    ParameterList does), None kept as an empty slot."""
    if value is None or isinstance(value, Parameter):
        return value
    if isinstance(value, Tensor):
        return Parameter(value.numpy().copy(), requires_grad=value.requires_grad)
    raise TypeError(f"{what} holds parameters (or tensors); got a {type(value).__name__}")


class ParameterList(Module):
    """Parameters in a list, registered as ``"0"``, ``"1"`` ..."""

    def __init__(self, values: Iterable[Any] | None = None):
        super().__init__()
        if values is not None:
            self.extend(values)

    def _set(self, i: int, value: Any) -> None:
        p = _parameter(type(self).__name__, value)
        self.register_parameter(str(i), p)
        if p is None:  # an empty slot keeps its position
            self._parameters[str(i)] = None  # type: ignore[assignment]

    def __getitem__(self, i: int | slice) -> Any:
        vals = list(self._parameters.values())
        if isinstance(i, slice):
            return type(self)(vals[i])
        return vals[_position(type(self).__name__, i, len(vals))]

    def __setitem__(self, i: int, value: Any) -> None:
        self._set(_position(type(self).__name__, i, len(self)), value)

    def __len__(self) -> int:
        return len(self._parameters)

    def __iter__(self) -> Iterator[Parameter]:
        return iter(list(self._parameters.values()))

    def __iadd__(self, values: Iterable[Any]) -> ParameterList:
        return self.extend(values)

    def append(self, value: Any) -> ParameterList:
        self._set(len(self), value)
        return self

    def extend(self, values: Iterable[Any]) -> ParameterList:
        if isinstance(values, Tensor):
            raise TypeError("ParameterList.extend should be called with an iterable of tensors")
        for v in list(values):
            self.append(v)
        return self

    def extra_repr(self) -> str:
        return "\n".join(
            f"  ({i}): Parameter containing: [{p.dtype} of size {'x'.join(map(str, p.shape))}]"
            for i, p in enumerate(self)
            if p is not None
        )

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("ParameterList has no forward()")


# PyTorch's ParameterDict names the legacy tensor type where ParameterList names the dtype
_TYPE_NAMES = {"float32": "FloatTensor", "float64": "DoubleTensor", "int64": "LongTensor"}


class ParameterDict(Module):
    """Parameters by name, in insertion order."""

    def __init__(self, parameters: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None):
        super().__init__()
        if parameters is not None:
            self.update(parameters)

    def __getitem__(self, key: str) -> Parameter:
        return self._parameters[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.register_parameter(key, _parameter(type(self).__name__, value))

    def __delitem__(self, key: str) -> None:
        del self._parameters[key]
        object.__delattr__(self, key)

    def __len__(self) -> int:
        return len(self._parameters)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._parameters))

    def __contains__(self, key: object) -> bool:
        return key in self._parameters

    def keys(self) -> Iterable[str]:
        return self._parameters.keys()

    def values(self) -> Iterable[Parameter]:
        return self._parameters.values()

    def items(self) -> Iterable[tuple[str, Parameter]]:
        return self._parameters.items()

    def get(self, key: str, default: Any = None) -> Any:
        return self._parameters.get(key, default)

    def pop(self, key: str) -> Parameter:
        p = self[key]
        del self[key]
        return p

    def update(self, parameters: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        items = parameters.items() if isinstance(parameters, Mapping) else parameters
        for key, v in items:
            self[key] = v

    def extra_repr(self) -> str:
        names = {k: _TYPE_NAMES.get(p.numpy().dtype.name, str(p.dtype)) for k, p in self.items()}
        return "\n".join(
            f"  ({k}): Parameter containing: [symbp.{names[k]} of size "
            f"{'x'.join(map(str, p.shape))}]"
            for k, p in self.items()
        )

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("ParameterDict has no forward()")


__all__ = ["ModuleDict", "ModuleList", "ParameterDict", "ParameterList"]
