"""Tensor factories with PyTorch's names, signatures, defaults and dtype rules.

Every factory makes a leaf tensor on the CPU. Sizes are varargs or one sequence
(``zeros(2, 3)`` or ``zeros((2, 3))``); ``dtype=`` takes symbp's dtypes (see ``symbp.dtypes``),
``device=`` only the CPU (see ``symbp.device``), ``requires_grad=`` float dtypes only. Dtypes
follow PyTorch: float factories give ``get_default_dtype()``; ``arange`` and ``full`` infer int64
from integer arguments (``arange(5)``, ``full((2,), 3)``); ``randint``/``randperm`` give int64.
Random factories draw from ``generator=`` (a ``symbp.Generator``), by default symbp's own,
seeded by ``symbp.manual_seed`` (see ``symbp.random`` for what "reproducible" promises).
``empty`` and ``empty_like`` are zero-filled (PyTorch leaves them uninitialised).

>>> import symbp
>>> symbp.arange(5).dtype, symbp.arange(0.0, 1, 0.25).tolist(), symbp.full((2,), 3).tolist()
(symbp.int64, [0.0, 0.25, 0.5, 0.75], [3, 3])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from symbp import devices as _device
from symbp import dtypes
from symbp import random as _random
from symbp.compiler.ir import Node
from symbp.tensor import Tensor, _ids, get_default_dtype
from symbp.tensor import tensor as _tensor


def _size(size: tuple, kwargs_size: Any, what: str) -> tuple[int, ...]:
    """The dims of ``zeros(2, 3)``, ``zeros((2, 3))``, ``zeros(size=(2, 3))``, ``zeros(())``."""
    if kwargs_size is not None:
        if size:
            raise TypeError(f"{what}: size given both positionally and as size=")
        size = (kwargs_size,)
    if not size:
        raise TypeError(f"{what}() missing its size (zeros(()) is a 0-d tensor), as torch's")
    if len(size) == 1 and isinstance(size[0], (Sequence, np.ndarray)):
        size = tuple(size[0])
    try:
        dims = tuple(_int(d) for d in size)
    except TypeError:
        raise TypeError(
            f"{what}: size must be ints or one sequence of ints, got {size!r}"
        ) from None
    if any(d < 0 for d in dims):
        raise RuntimeError(f"{what}: negative dimension in size {list(dims)}")
    return dims


def _int(d: Any) -> int:
    if isinstance(d, (bool, float)) or not isinstance(d, (int, np.integer, Tensor)):
        raise TypeError
    return int(cast(Any, d))


def _dtype(dtype: Any, default: Any, what: str) -> np.dtype:
    return dtypes.to_numpy(default if dtype is None else dtype, what)


def _leaf(arr: np.ndarray, requires_grad: bool, device: Any, what: str) -> Tensor:
    """A leaf tensor holding ``arr`` itself (no copy), checked as PyTorch checks factories."""
    _device.check(device, what)
    dtypes.to_numpy(arr.dtype, what)
    if requires_grad and arr.dtype.kind != "f":
        raise RuntimeError(f"{what}: only floating point tensors can require gradients")
    node = Node("input", (), f"t{next(_ids)}", arr.shape, arr.dtype)
    return Tensor(node, arr, requires_grad)


def _float_default() -> np.dtype:
    return np.dtype(get_default_dtype())


# ------------------------------------------------------------------ from data


def tensor(
    data: Any,
    *,
    dtype: Any = None,
    device: Any = None,
    requires_grad: bool = False,
    pin_memory: bool = False,
) -> Tensor:
    """As ``torch.tensor``: a leaf holding a copy of ``data``; Python floats get the default
    dtype, ints int64, bools bool."""
    _device.check(device, "symbp.tensor")
    np_dtype = None if dtype is None else dtypes.to_numpy(dtype, "symbp.tensor")
    out = _tensor(data, requires_grad=requires_grad, dtype=np_dtype)
    dtypes.to_numpy(out.dtype, "symbp.tensor")
    return out


def as_tensor(data: Any, dtype: Any = None, device: Any = None) -> Tensor:
    """As ``torch.as_tensor``: ``data`` itself if it is a tensor of that dtype, a tensor sharing
    a NumPy array's memory when the dtype matches, otherwise a copy."""
    np_dtype = None if dtype is None else dtypes.to_numpy(dtype, "symbp.as_tensor")
    if isinstance(data, Tensor):
        _device.check(device, "symbp.as_tensor")
        return data if np_dtype is None or np_dtype == data.dtype else data.to(np_dtype)
    if isinstance(data, np.ndarray) and (np_dtype is None or np_dtype == data.dtype):
        return _leaf(data, False, device, "symbp.as_tensor")
    return tensor(data, dtype=np_dtype, device=device)


def from_numpy(ndarray: np.ndarray) -> Tensor:
    """As ``torch.from_numpy``: a tensor sharing ``ndarray``'s memory (writes show in both)."""
    if not isinstance(ndarray, np.ndarray):
        raise TypeError(f"symbp.from_numpy: expected np.ndarray, got {type(ndarray).__name__}")
    return _leaf(ndarray, False, None, "symbp.from_numpy")


def _typed(np_dtype: Any, name: str):
    def make(*data: Any) -> Tensor:
        # FloatTensor([1, 2]) holds data; FloatTensor(2, 3) is a (zero-filled) 2x3 tensor.
        if len(data) == 1 and not isinstance(data[0], (int, np.integer)):
            return tensor(data[0], dtype=np_dtype)
        return zeros(*data, dtype=np_dtype)

    make.__name__ = make.__qualname__ = name
    make.__doc__ = f"As ``torch.{name}``: ``{name}(data)`` or ``{name}(*size)`` (zero-filled)."
    return make


FloatTensor = _typed(np.float32, "FloatTensor")
DoubleTensor = _typed(np.float64, "DoubleTensor")
LongTensor = _typed(np.int64, "LongTensor")
BoolTensor = _typed(np.bool_, "BoolTensor")


# ------------------------------------------------------------------ constant fills


def _filled(what: str, fill: Any, size: tuple, kw: dict, default: Any) -> Tensor:
    dims = _size(size, kw.pop("size", None), what)
    dtype, device, requires_grad = _options(what, kw)
    arr = np.full(dims, fill, dtype=_dtype(dtype, default, what))
    return _leaf(arr, requires_grad, device, what)


def _options(what: str, kw: dict) -> tuple[Any, Any, bool]:
    dtype = kw.pop("dtype", None)
    device = kw.pop("device", None)
    requires_grad = bool(kw.pop("requires_grad", False))
    for ignored in ("layout", "pin_memory", "memory_format"):  # no meaning on symbp's CPU arrays
        kw.pop(ignored, None)
    if kw.pop("out", None) is not None:
        raise NotImplementedError(f"{what}: out= is not supported; assign the result instead")
    if kw:
        raise TypeError(f"{what}() got unexpected keyword arguments {sorted(kw)}")
    return dtype, device, requires_grad


def zeros(*size: Any, **kw: Any) -> Tensor:
    """As ``torch.zeros(*size, dtype=None, device=None, requires_grad=False)``."""
    return _filled("symbp.zeros", 0, size, kw, _float_default())


def ones(*size: Any, **kw: Any) -> Tensor:
    """As ``torch.ones(*size, dtype=None, device=None, requires_grad=False)``."""
    return _filled("symbp.ones", 1, size, kw, _float_default())


def empty(*size: Any, **kw: Any) -> Tensor:
    """As ``torch.empty``, zero-filled (PyTorch's values are arbitrary, so zeros are allowed)."""
    return _filled("symbp.empty", 0, size, kw, _float_default())


def _scalar_dtype(value: Any) -> np.dtype:
    """PyTorch's dtype for a Python scalar: bool, int64, or the default float."""
    if isinstance(value, Tensor):
        return np.dtype(value.dtype)
    if isinstance(value, (bool, np.bool_)):
        return np.dtype(np.bool_)
    if isinstance(value, (int, np.integer)):
        return np.dtype(np.int64)
    return _float_default()


def full(size: Any, fill_value: Any, **kw: Any) -> Tensor:
    """As ``torch.full(size, fill_value, dtype=None, ...)``; the dtype follows ``fill_value``
    (``full((2,), 3)`` is int64, ``full((2,), 3.0)`` the default float)."""
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    return _filled("symbp.full", fill_value, (size,), kw, _scalar_dtype(fill_value))


def eye(n: int, m: int | None = None, **kw: Any) -> Tensor:
    """As ``torch.eye(n, m=None, dtype=None, ...)``."""
    dtype, device, requires_grad = _options("symbp.eye", kw)
    arr = np.eye(
        int(n), None if m is None else int(m), dtype=_dtype(dtype, _float_default(), "eye")
    )
    return _leaf(arr, requires_grad, device, "symbp.eye")


def arange(start: Any, end: Any = None, step: Any = 1, **kw: Any) -> Tensor:
    """As ``torch.arange(start=0, end, step=1, dtype=None, ...)``: int64 when every argument is
    an integer, otherwise the default float dtype."""
    if end is None:
        start, end = 0, start
    args = [v.item() if isinstance(v, Tensor) else v for v in (start, end, step)]
    dtype, device, requires_grad = _options("symbp.arange", kw)
    if args[2] == 0:
        raise RuntimeError("symbp.arange: step must be nonzero")
    ints = all(isinstance(v, (int, np.integer)) for v in args)
    np_dtype = _dtype(dtype, np.int64 if ints else _float_default(), "symbp.arange")
    # PyTorch's length, ceil((end - start) / step), computed in float64 like its CPU kernel.
    n = max(0, math.ceil((float(args[1]) - float(args[0])) / float(args[2])))
    steps = np.arange(n, dtype=np.int64 if ints else np.float64)
    arr = np.multiply(steps, args[2]) + args[0]
    return _leaf(arr.astype(np_dtype), requires_grad, device, "symbp.arange")


def linspace(start: Any, end: Any, steps: int, **kw: Any) -> Tensor:
    """As ``torch.linspace(start, end, steps, dtype=None, ...)`` (``steps`` is required)."""
    dtype, device, requires_grad = _options("symbp.linspace", kw)
    np_dtype = _dtype(dtype, _float_default(), "symbp.linspace")
    arr = np.linspace(float(start), float(end), int(steps))
    return _leaf(_cast_values(arr, np_dtype), requires_grad, device, "symbp.linspace")


def logspace(start: Any, end: Any, steps: int, base: float = 10.0, **kw: Any) -> Tensor:
    """As ``torch.logspace(start, end, steps, base=10.0, dtype=None, ...)``."""
    dtype, device, requires_grad = _options("symbp.logspace", kw)
    np_dtype = _dtype(dtype, _float_default(), "symbp.logspace")
    arr = float(base) ** np.linspace(float(start), float(end), int(steps))
    return _leaf(_cast_values(arr, np_dtype), requires_grad, device, "symbp.logspace")


def _cast_values(arr: np.ndarray, np_dtype: np.dtype) -> np.ndarray:
    # An integer linspace truncates toward zero, as PyTorch's does.
    return np.trunc(arr).astype(np_dtype) if np_dtype.kind in "iub" else arr.astype(np_dtype)


# ------------------------------------------------------------------ *_like


def _like(what: str, input: Any, kw: dict) -> tuple[tuple, dict]:  # noqa: A002
    if not isinstance(input, Tensor):
        raise TypeError(f"{what}: input must be a Tensor, got {type(input).__name__}")
    if kw.get("dtype") is None:
        kw["dtype"] = input.dtype
    return tuple(int(d) for d in input.shape), kw


def _traced_fill(what: str, input: Any, fill: Any, kw: dict) -> Tensor | None:  # noqa: A002
    """``zeros_like``/``ones_like``/``full_like`` of a traced tensor (inside ``symbp.compile``,
    its batch size symbolic): a constant node of its shape, as in ``autograd.grad(u, x,
    grad_outputs=ones_like(u))``; None for a tensor with values (the ordinary path)."""
    if not isinstance(input, Tensor) or input.value is not None:
        return None
    dtype, device, requires_grad = _options(what, dict(kw))
    _device.check(device, what)
    np_dtype = dtypes.to_numpy(dtype, what) if dtype is not None else np.dtype(input.dtype)
    from symbp.compiler import ops

    return Tensor(ops.const(fill, input.shape, np_dtype), None, requires_grad)


def zeros_like(input: Tensor, **kw: Any) -> Tensor:  # noqa: A002
    traced = _traced_fill("symbp.zeros_like", input, 0, kw)
    if traced is not None:
        return traced
    size, kw = _like("symbp.zeros_like", input, kw)
    return zeros(size, **kw)


def ones_like(input: Tensor, **kw: Any) -> Tensor:  # noqa: A002
    traced = _traced_fill("symbp.ones_like", input, 1, kw)
    if traced is not None:
        return traced
    size, kw = _like("symbp.ones_like", input, kw)
    return ones(size, **kw)


def empty_like(input: Tensor, **kw: Any) -> Tensor:  # noqa: A002
    size, kw = _like("symbp.empty_like", input, kw)
    return empty(size, **kw)


def full_like(input: Tensor, fill_value: Any, **kw: Any) -> Tensor:  # noqa: A002
    size, kw = _like("symbp.full_like", input, kw)
    return full(size, fill_value, **kw)


def rand_like(input: Tensor, **kw: Any) -> Tensor:  # noqa: A002
    size, kw = _like("symbp.rand_like", input, kw)
    return rand(size, **kw)


def randn_like(input: Tensor, **kw: Any) -> Tensor:  # noqa: A002
    size, kw = _like("symbp.randn_like", input, kw)
    return randn(size, **kw)


def randint_like(input: Tensor, low: int = 0, high: int | None = None, **kw: Any) -> Tensor:  # noqa: A002
    size, kw = _like("symbp.randint_like", input, kw)
    return randint(low, high, size, **kw) if high is not None else randint(low, size, **kw)


# ------------------------------------------------------------------ random


def _rng(kw: dict, what: str) -> np.random.Generator:
    return _random.numpy_generator(kw.pop("generator", None), what)


def _random_float(what: str, draw: Any, size: tuple, kw: dict) -> Tensor:
    rng = _rng(kw, what)
    dims = _size(size, kw.pop("size", None), what)
    dtype, device, requires_grad = _options(what, kw)
    np_dtype = _dtype(dtype, _float_default(), what)
    if np_dtype.kind != "f":
        raise RuntimeError(f"{what}: dtype must be a float dtype, got {dtypes.of(np_dtype)!r}")
    return _leaf(draw(rng, dims).astype(np_dtype), requires_grad, device, what)


def rand(*size: Any, **kw: Any) -> Tensor:
    """As ``torch.rand(*size, generator=None, dtype=None, ...)``: uniform on [0, 1)."""
    return _random_float("symbp.rand", lambda g, s: g.random(s), size, kw)


def randn(*size: Any, **kw: Any) -> Tensor:
    """As ``torch.randn(*size, generator=None, dtype=None, ...)``: standard normal."""
    return _random_float("symbp.randn", lambda g, s: g.standard_normal(s), size, kw)


def randint(*args: Any, **kw: Any) -> Tensor:
    """As ``torch.randint(low=0, high, size, generator=None, dtype=int64, ...)``: integers
    uniform on [low, high)."""
    what = "symbp.randint"
    size = kw.pop("size", None)
    if "high" in kw:
        args = (kw.pop("low", 0), kw.pop("high"), *args)
    if size is not None:
        args = (*args, size)
    if len(args) == 2:
        low, high, size = 0, args[0], args[1]
    elif len(args) == 3:
        low, high, size = args
    else:
        raise TypeError(f"{what}: expected (high, size) or (low, high, size), got {args!r}")
    if int(high) <= int(low):
        raise RuntimeError(f"{what}: expected low < high, got low={low}, high={high}")
    rng = _rng(kw, what)
    dims = _size((size,), None, what)
    dtype, device, requires_grad = _options(what, kw)
    arr = rng.integers(int(low), int(high), dims).astype(_dtype(dtype, np.int64, what))
    return _leaf(arr, requires_grad, device, what)


def randperm(n: int, **kw: Any) -> Tensor:
    """As ``torch.randperm(n, generator=None, dtype=int64, ...)``: a random permutation."""
    rng = _rng(kw, "symbp.randperm")
    dtype, device, requires_grad = _options("symbp.randperm", kw)
    arr = rng.permutation(int(n)).astype(_dtype(dtype, np.int64, "symbp.randperm"))
    return _leaf(arr, requires_grad, device, "symbp.randperm")


def _values(x: Any) -> np.ndarray:
    return x.numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float64)


def normal(mean: Any = 0.0, std: Any = 1.0, size: Any = None, **kw: Any) -> Tensor:
    """As ``torch.normal``: ``normal(mean, std)`` with tensor mean and/or std (the output has
    their broadcast shape and dtype), or ``normal(mean, std, size)`` with floats."""
    what = "symbp.normal"
    rng = _rng(kw, what)
    tensors = [v for v in (mean, std) if isinstance(v, Tensor)]
    if size is None and not tensors:
        raise TypeError(f"{what}: with float mean and std, give size (normal(0.0, 1.0, (2, 3)))")
    if size is not None and tensors:
        raise TypeError(f"{what}: size= goes with float mean and std, not tensors")
    default = tensors[0].dtype if tensors else _float_default()
    dtype, device, requires_grad = _options(what, kw)
    np_dtype = _dtype(dtype, default, what)
    std_values = _values(std)
    if (std_values < 0).any():
        raise RuntimeError(f"{what}: std must be >= 0, got {std_values.min()}")
    dims = _size((size,), None, what) if size is not None else None
    if dims is None:
        dims = np.broadcast_shapes(np.shape(_values(mean)), std_values.shape)
    arr = rng.normal(_values(mean), std_values, dims).astype(np_dtype)
    return _leaf(arr, requires_grad, device, what)


def bernoulli(input: Tensor, p: float | None = None, **kw: Any) -> Tensor:  # noqa: A002
    """As ``torch.bernoulli(input, generator=None)``: 1 with probability ``input`` (or ``p``),
    elementwise, in ``input``'s dtype."""
    what = "symbp.bernoulli"
    rng = _rng(kw, what)
    _options(what, kw)
    probs = _values(input) if p is None else np.full(np.shape(_values(input)), float(p))
    if ((probs < 0) | (probs > 1)).any():
        raise RuntimeError(f"{what}: probabilities must be in [0, 1]")
    np_dtype = np.dtype(input.dtype) if isinstance(input, Tensor) else _float_default()
    arr = (rng.random(probs.shape) < probs).astype(np_dtype)
    return _leaf(arr, False, None, what)


def multinomial(
    input: Tensor,  # noqa: A002
    num_samples: int,
    replacement: bool = False,
    **kw: Any,
) -> Tensor:
    """As ``torch.multinomial(input, num_samples, replacement=False, generator=None)``: int64
    indices drawn from each row of non-negative weights (``input`` 1-D or 2-D)."""
    what = "symbp.multinomial"
    rng = _rng(kw, what)
    _options(what, kw)
    weights = _values(input).astype(np.float64)
    if weights.ndim not in (1, 2):
        raise RuntimeError(f"{what}: input must be 1-D or 2-D, got {weights.ndim}-D")
    rows = weights.reshape(-1, weights.shape[-1])
    if (rows < 0).any() or not np.isfinite(rows).all():
        raise RuntimeError(f"{what}: weights must be finite and non-negative")
    n = int(num_samples)
    out = np.empty((rows.shape[0], n), dtype=np.int64)
    for i, row in enumerate(rows):
        total = row.sum()
        if total <= 0:
            raise RuntimeError(f"{what}: row {i} of the weights sums to {total}, not > 0")
        if not replacement and n > np.count_nonzero(row):
            raise RuntimeError(
                f"{what}: cannot draw {n} samples without replacement from "
                f"{np.count_nonzero(row)} categories with non-zero weight"
            )
        out[i] = rng.choice(row.shape[0], n, replace=bool(replacement), p=row / total)
    return _leaf(out.reshape(*weights.shape[:-1], n), False, None, what)
