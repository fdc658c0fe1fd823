"""``nn.Module``: PyTorch's module protocol (registration, parameters, state dicts, modes)."""

from __future__ import annotations

import functools
import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from symbp import dtypes
from symbp.compiler.ir import scope, shape_str
from symbp.devices import check as check_device
from symbp.devices import parse_to
from symbp.tensor import Parameter, Tensor, _leaf

_calls = itertools.count()  # orders the labels of calls (tensor.graph_labels)


class IncompatibleKeys(NamedTuple):
    """The names that did not match, as ``torch.nn.Module.load_state_dict`` returns them."""

    missing_keys: list[str]
    unexpected_keys: list[str]

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return f"IncompatibleKeys(missing_keys={self[0]}, unexpected_keys={self[1]})"


def _quoted(names: list[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _convert(name: str, value: Any, current: np.ndarray) -> tuple[np.ndarray, str]:
    """``value`` as an array of ``current``'s dtype, or the reason it cannot be loaded."""
    try:
        arr = np.asarray(value.numpy() if isinstance(value, Tensor) else value)
    except (TypeError, ValueError, RuntimeError) as e:  # a torch tensor on a GPU, ...
        return current, f"cannot read {name} as an array: {type(e).__name__}: {e}"
    if arr.shape != current.shape:
        hint = " (transposed?)" if arr.ndim == 2 and arr.shape == current.shape[::-1] else ""
        return current, (
            f"size mismatch for {name}: copying a param with shape {shape_str(arr.shape)} from "
            f"checkpoint, the shape in current model is {shape_str(current.shape)}{hint}."
        )
    if arr.dtype.kind not in "biuf":
        return current, f"dtype mismatch for {name}: cannot load {arr.dtype} into {current.dtype}"
    with np.errstate(all="ignore"):
        out = arr.astype(current.dtype)  # a copy: the model never shares the caller's array
    if current.dtype.kind in "biu" and not np.array_equal(out, arr):
        return current, (
            f"dtype mismatch for {name}: the model holds {current.dtype}, and the {arr.dtype} "
            f"value has entries it cannot hold exactly"
        )
    if arr.dtype.kind == "f" and np.isfinite(arr).all() and not np.isfinite(out).all():
        return current, (
            f"dtype mismatch for {name}: a {arr.dtype} value overflows the model's {current.dtype}"
        )
    return out, ""


def _copy_into(buffer: Tensor, arr: np.ndarray) -> None:
    buffer.numpy()[...] = arr


class Module:
    """Base class of layers and models: assign sub-modules and Parameters as attributes."""

    _parameters: OrderedDict[str, Parameter]
    _modules: OrderedDict[str, Module]
    _buffers: OrderedDict[str, Tensor | None]
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
        if name in self._buffers and not isinstance(value, (Parameter, Module)):
            if value is not None and not isinstance(value, (Tensor, np.ndarray)):
                raise TypeError(  # PyTorch's words
                    f"cannot assign '{type(value).__name__}' as buffer '{name}' (torch.Tensor "
                    f"or None expected)"
                )
            self.register_buffer(name, value)  # m.running_mean = t: still the buffer, as PyTorch
            return
        target = (
            self._parameters if isinstance(value, Parameter)
            else self._modules if isinstance(value, Module) else None
        )  # fmt: skip
        for table in (self._parameters, self._modules, self._buffers):
            if table is not target:
                table.pop(name, None)
        if target is not None:  # a name assigned again keeps its place, as in PyTorch
            target[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        for table in (self._parameters, self._modules, self._buffers):
            table.pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name: str, value: Any, persistent: bool = True) -> None:
        """A non-trainable tensor, saved in the state dict (running statistics and the like)
        unless ``persistent=False`` (a cached mask, say). A Tensor is kept itself, as PyTorch
        keeps it; a NumPy array becomes a Tensor sharing its memory; None is an empty slot."""
        if isinstance(value, np.ndarray):
            value = _leaf(value)
        elif value is not None and not isinstance(value, Tensor):
            raise TypeError(  # PyTorch's words
                f"cannot assign '{type(value).__name__}' object to buffer '{name}' "
                f"(torch Tensor or None required)"
            )
        self._buffers[name] = value
        if not persistent:
            self.__dict__.setdefault("_non_persistent", set()).add(name)
        object.__setattr__(self, name, value)

    def _state(self, name: str) -> np.ndarray:
        """The array of buffer ``name`` (a Tensor, as PyTorch's), for updates in place: every
        reference to the buffer (a state dict's, a compiled program's view) sees them."""
        buf = self._buffers[name]
        if buf is None:
            raise RuntimeError(f"{self.describe()}: its buffer '{name}' was set to None")
        return buf.numpy()

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"cannot assign '{type(param).__name__}' object to parameter '{name}' "
                f"(symbp.nn.Parameter or None required)"
            )
        setattr(self, name, param)

    def add_module(self, name: str, module: Module | None) -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        if not isinstance(name, str) or "." in name or not name:
            raise KeyError(f"module name must be a non-empty string without '.', got {name!r}")
        setattr(self, name, module)
        if module is None:
            self._modules[name] = None  # type: ignore[assignment]  # an empty slot, as PyTorch's

    register_module = add_module

    def get_submodule(self, target: str) -> Module:
        """The module at dotted path ``target`` (``"encoder.layers.0"``); "" is this one."""
        m: Module = self
        for part in target.split(".") if target else []:
            if part not in m._modules or m._modules[part] is None:
                raise AttributeError(f"{type(m).__name__} has no attribute `{part}`")
            m = m._modules[part]
        return m

    def get_parameter(self, target: str) -> Parameter:
        path, _, name = target.rpartition(".")
        m = self.get_submodule(path)
        if name not in m._parameters:
            raise AttributeError(f"{type(m).__name__} has no parameter `{name}`")
        return m._parameters[name]

    # ------------------------------------------------------------ traversal

    def named_modules(
        self, memo: set[int] | None = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        """Every module once (a module held twice appears under its first name), this one
        first, as PyTorch orders them."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(
                    memo, f"{prefix}.{name}" if prefix else name, remove_duplicate
                )

    def modules(self) -> Iterator[Module]:
        return (m for _, m in self.named_modules())

    def children(self) -> Iterator[Module]:
        return (m for _, m in self.named_children())

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen: set[int] = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        seen: set[int] = set()
        mods = self.named_modules(prefix=prefix) if recurse else iter([(prefix, self)])
        for path, m in mods:
            for name, p in m._parameters.items():
                if p is not None and (not remove_duplicate or id(p) not in seen):
                    seen.add(id(p))
                    yield (f"{path}.{name}" if path else name), p

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Tensor]]:
        mods = self.named_modules(prefix=prefix) if recurse else iter([(prefix, self)])
        for path, m in mods:
            for name, b in m._buffers.items():
                if b is not None:
                    yield (f"{path}.{name}" if path else name), b

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        return (b for _, b in self.named_buffers(recurse=recurse))

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """``fn`` on every sub-module, children before parents (PyTorch's order: an
        initialisation pass ``net.apply(init_weights)``), then on this one."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    # ------------------------------------------------------------ state

    def state_dict(
        self, *, destination: Any = None, prefix: str = "", keep_vars: bool = False
    ) -> OrderedDict[str, Tensor]:
        """Every parameter and buffer by dotted name, in PyTorch's order, as PyTorch gives
        them: detached Tensors sharing the model's memory (an in-place update of the model
        shows in them: ``copy.deepcopy(model.state_dict())`` keeps a snapshot), or with
        ``keep_vars`` the Parameters and buffers themselves."""
        out: Any = OrderedDict() if destination is None else destination
        for name, tensor, _ in self._state_entries(keep_vars=True):
            out[prefix + name] = tensor if keep_vars else _leaf(tensor.numpy())
        return out

    def _state_entries(
        self, keep_vars: bool = False
    ) -> Iterator[tuple[str, Any, Callable[[np.ndarray], None]]]:
        """(name, array, assign) of each parameter and buffer, ordered as PyTorch's state_dict:
        module by module, a module's parameters before its buffers (a shared parameter once);
        with ``keep_vars`` the Parameter or buffer Tensor in place of its array."""
        seen: set[int] = set()
        for path, m in self.named_modules():
            prefix = f"{path}." if path else ""
            for name, p in m._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    param: Any = p if keep_vars else p._data
                    yield prefix + name, param, functools.partial(setattr, p, "data")
            for name, b in m._buffers.items():
                if b is not None and name not in m.__dict__.get("_non_persistent", ()):
                    # loaded in place, as PyTorch's copy_: the buffer stays the same Tensor
                    # (a compiled model's view of it, a user's reference, see the new values)
                    buffer: Any = b if keep_vars else b.numpy()
                    yield prefix + name, buffer, functools.partial(_copy_into, b)

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Load parameters and buffers by dotted name, as PyTorch does: with ``strict`` the names
        must match exactly; shapes must always match. Returns (missing_keys, unexpected_keys).

        Everything is checked before anything changes (PyTorch copies the keys before a bad
        one, then raises): a failed load leaves the model as it was. Every problem is reported
        in one RuntimeError, in PyTorch's words.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state)}.")
        targets = {name: (v, assign) for name, v, assign in self._state_entries()}
        missing = [n for n in targets if n not in state]
        unexpected = [n for n in state if n not in targets]
        errors = []
        if strict and missing:
            errors.append(f"Missing key(s) in state_dict: {_quoted(missing)}. ")
        if strict and unexpected:
            errors.append(f"Unexpected key(s) in state_dict: {_quoted(unexpected)}. ")
        converted: dict[str, np.ndarray] = {}
        for name, (current, _) in targets.items():
            if name in state:
                arr, problem = _convert(name, state[name], current)
                if problem:
                    errors.append(problem)
                else:
                    converted[name] = arr
        if errors:
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                + "\n\t".join(errors)
            )
        for name, arr in converted.items():
            targets[name][1](arr)
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------ modes and dtypes

    def train(self, mode: bool = True) -> Module:
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def to(self, *args: Any, **kwargs: Any) -> Module:
        """As ``Module.to``: ``to(dtype)``, ``to('cpu')``, ``to(device, dtype)``, ``to(tensor)``;
        float parameters and buffers take the dtype, in place (PyTorch casts floats only)."""
        _, dtype = parse_to(args, kwargs, f"{type(self).__name__}.to")
        if dtype is None:
            return self
        if dtype.kind != "f":
            raise TypeError(
                f"{type(self).__name__}.to only accepts floating point dtypes, got "
                f"{dtypes.of(dtype)!r}"
            )
        for p in self.parameters():
            p.set_dtype(dtype)
        for b in self.buffers():  # float buffers (running statistics) follow, as in PyTorch:
            if b.dtype.kind == "f":  # the same Tensors, holding the new dtype
                b.data = b.numpy().astype(dtype)
        return self

    def double(self) -> Module:
        return self.to(np.float64)

    def float(self) -> Module:
        return self.to(np.float32)

    def half(self) -> Module:
        return self.to(dtypes.float16)  # raises: symbp does not store float16

    def cpu(self) -> Module:
        return self

    def cuda(self, device: Any = None) -> Module:
        check_device("cuda" if device is None else device, f"{type(self).__name__}.cuda")
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients (PyTorch 2's default), or zero them in place."""
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p._grad is not None:
                p._grad[...] = 0

    # ------------------------------------------------------------ calling

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self._path:  # the outermost call names every layer and parameter once
            self._name_tree()
        with scope(self.describe()):
            out = self.forward(*args, **kwargs)
        if isinstance(out, Tensor) and out._label is None:  # the innermost layer returning it
            out._label = (next(_calls), out.node, self._path)
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
        """As PyTorch prints a module: one line when it has no children and a one-line
        ``extra_repr``; otherwise its extra lines and children, indented, one per line."""
        extra = self.extra_repr().split("\n") if self.extra_repr() else []
        children = [
            f"({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items()
        ]
        if len(extra) == 1 and not children:
            return f"{type(self).__name__}({extra[0]})"
        lines = extra + children
        body = "\n  " + "\n  ".join(lines) + "\n" if lines else ""
        return f"{type(self).__name__}({body})"
