"""PyTorch's device API on a CPU-only system: ``symbp.device``, ``set_default_device``.

symbp compiles models to Numba code for the CPU, so ``'cpu'`` is its one device. A device object
for ``'cuda'`` can be built (as in PyTorch, where ``torch.device('cuda')`` needs no GPU), but
putting a tensor or module there raises a ``DeviceError`` that says so and shows the portable
idiom ``device = 'cuda' if torch.cuda.is_available() else 'cpu'`` (``symbp.cuda.is_available()``
is False, so such programs pick the CPU and run unchanged).

>>> import symbp
>>> symbp.device("cpu:0"), str(symbp.device("cpu")), symbp.zeros(2).to("cpu").device.type
(device(type='cpu', index=0), 'cpu', 'cpu')
"""

from __future__ import annotations

from typing import Any

from symbp import dtypes


class DeviceError(RuntimeError):
    """A tensor or module sent to a device other than the CPU."""


class device:  # noqa: N801 (PyTorch's name)
    """``device('cpu')``, ``device('cpu:0')``, ``device('cpu', 0)`` or a copy of a device."""

    __slots__ = ("index", "type")

    def __init__(self, type: Any, index: int | None = None):  # noqa: A002 (PyTorch's name)
        spec: Any = type
        if isinstance(spec, device):
            index = spec.index if index is None else index
            spec = spec.type
        elif isinstance(spec, int) and not isinstance(spec, bool):
            index = spec
            spec = "cuda"  # torch.device(0) is the first GPU
        if not isinstance(spec, str):
            raise TypeError(f"symbp.device: expected a string like 'cpu', got {spec!r}")
        name, sep, number = spec.partition(":")
        if sep:
            if index is not None or not number.isdigit():
                raise RuntimeError(f"symbp.device: invalid device string {spec!r}")
            index = int(number)
        if name not in ("cpu", "cuda", "mps", "meta", "xpu"):
            raise RuntimeError(f"symbp.device: unknown device type {name!r}; symbp runs on 'cpu'")
        self.type: str = name
        self.index: int | None = index

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        index = "" if self.index is None else f", index={self.index}"
        return f"device(type={self.type!r}{index})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            other = device(other)
        if not isinstance(other, device):
            return NotImplemented
        return (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))


CPU = device("cpu")
_default_device = [CPU]


def check(where: Any, what: str) -> device:
    """The CPU device that ``where`` names (None: the default), or a DeviceError naming
    ``what`` (the call that asked for it)."""
    if where is None:
        return _default_device[0]
    dev = device(where)
    if dev.type != "cpu" or dev.index not in (None, 0):
        raise DeviceError(
            f"{what}: device={str(dev)!r} is not available: symbp runs on the CPU only (it "
            f"compiles to Numba CPU code). Write device = 'cuda' if torch.cuda.is_available() "
            f"else 'cpu' (symbp.cuda.is_available() is False), or use 'cpu'"
        )
    return CPU


def set_default_device(where: Any) -> None:
    """As ``torch.set_default_device``: only the CPU (or None, the CPU) is accepted."""
    _default_device[0] = check(where, "symbp.set_default_device")


def get_default_device() -> device:
    return _default_device[0]


def is_device(value: Any) -> bool:
    """Whether ``value`` names a device (``'cpu'``, ``'cuda:0'``, a device) rather than a dtype."""
    if isinstance(value, device):
        return True
    if isinstance(value, str):
        return value.partition(":")[0] in ("cpu", "cuda", "mps", "meta", "xpu")
    return isinstance(value, int) and not isinstance(value, bool)


def parse_to(args: tuple, kwargs: dict, what: str) -> tuple[device | None, Any]:
    """The ``(device, dtype)`` of a ``.to(...)`` call in any of PyTorch's forms: ``to(dtype)``,
    ``to(device, dtype)``, ``to(tensor)``, keywords ``device=``, ``dtype=``, ``non_blocking=``
    and ``copy=``. The dtype is a NumPy dtype, or None when the call names none."""
    kwargs = dict(kwargs)
    kwargs.pop("non_blocking", None)
    if kwargs.pop("copy", False):
        raise NotImplementedError(f"{what}(copy=True): use .clone() (or .detach()) to copy")
    if kwargs.pop("memory_format", None) is not None:
        raise NotImplementedError(f"{what}: memory_format is not supported (symbp is row-major)")
    where, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    if kwargs:
        raise TypeError(f"{what}() got unexpected keyword arguments {sorted(kwargs)}")
    rest = list(args)
    # to(other_tensor); np.float64 (a type) has class attributes dtype and shape, so not a type
    if rest and not isinstance(rest[0], type) and hasattr(rest[0], "shape"):
        other = rest.pop(0)
        where, dtype = getattr(other, "device", CPU), other.dtype
    if rest and is_device(rest[0]):
        where = rest.pop(0)
    if rest and not isinstance(rest[0], bool):
        dtype = rest.pop(0)
    if rest and isinstance(rest[0], bool):
        rest.pop(0)  # non_blocking, meaningless on the CPU
    if rest:
        raise TypeError(f"{what}(): cannot read arguments {rest!r} as a device or a dtype")
    checked = check(where, what) if where is not None else None
    return checked, None if dtype is None else dtypes.to_numpy(dtype, what)
