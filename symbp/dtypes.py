"""PyTorch's dtype objects: ``symbp.float32``, ``symbp.float`` (the same object), ``symbp.dtype``.

A symbp dtype names a NumPy dtype and prints as PyTorch prints its own (``symbp.float32`` for
``torch.float32``). It compares and hashes equal to that NumPy dtype, and NumPy accepts it
wherever it takes a dtype (``np.zeros(3, symbp.float64)``), so code written against NumPy
dtypes and code written against PyTorch's both work.

symbp computes in float32 and float64, with int64 (and int32) for indices, labels and integer
arithmetic, and bool for masks. ``symbp.float16``/``half`` exists so that PyTorch programs naming
it import, but symbp does not store it: asking for it raises a TypeError rather than silently
computing in another dtype.

>>> import symbp
>>> symbp.float is symbp.float32, symbp.zeros(2).dtype, symbp.tensor([1, 2]).dtype
(True, symbp.float32, symbp.int64)
"""

from __future__ import annotations

from typing import Any, Self, cast

import numpy as np


class dtype:  # noqa: N801 (PyTorch's name)
    """The type of ``symbp.float32`` and friends: a NumPy dtype under PyTorch's name."""

    __slots__ = ("is_floating_point", "is_signed", "itemsize", "kind", "name", "np")

    def __init__(self, name: str, np_dtype: Any):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.kind = self.np.kind
        self.itemsize = self.np.itemsize
        self.is_floating_point = self.kind == "f"
        self.is_signed = self.kind in "fi"

    @property
    def dtype(self) -> np.dtype:  # NumPy's protocol: np.dtype(obj) reads obj.dtype
        return self.np

    def __getattr__(self, attr: str) -> Any:  # the rest of NumPy's dtype (str, char, type ...)
        return getattr(object.__getattribute__(self, "np"), attr)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, dtype):
            return self.np == other.np
        try:
            return bool(self.np == np.dtype(cast(Any, other)))
        except TypeError:
            return NotImplemented

    def __hash__(self) -> int:
        return hash(self.np)

    def __repr__(self) -> str:
        return f"symbp.{self.name}"

    def __reduce__(self) -> tuple:
        return (of, (self.np,))

    def __copy__(self) -> Self:  # one object per dtype (else __getattr__ would find NumPy's)
        return self

    def __deepcopy__(self, memo: dict) -> Self:
        return self


float32 = dtype("float32", np.float32)
float64 = dtype("float64", np.float64)
float16 = dtype("float16", np.float16)
int64 = dtype("int64", np.int64)
int32 = dtype("int32", np.int32)
bool_ = dtype("bool", np.bool_)

# The dtypes a symbp tensor may hold; the others are named so programs import, and refused.
SUPPORTED = (float32, float64, int64, int32, bool_)
_BY_NUMPY = {d.np: d for d in (float32, float64, float16, int64, int32, bool_)}


def of(np_dtype: Any) -> dtype:
    """The symbp dtype of a NumPy dtype (one object per dtype, so ``is`` works as in torch)."""
    np_dtype = np.dtype(np_dtype)
    found = _BY_NUMPY.get(np_dtype)
    if found is None:
        found = _BY_NUMPY[np_dtype] = dtype(np_dtype.name, np_dtype)
    return found


def to_numpy(value: Any, what: str) -> np.dtype:
    """``value`` (a symbp, NumPy or Python dtype: ``symbp.float64``, ``np.float32``, ``float``,
    ``"int64"``) as the NumPy dtype symbp stores; a TypeError naming ``what`` for one symbp does
    not store (float16, ...), rather than a silent conversion."""
    try:
        np_dtype = np.dtype(value)
    except TypeError:
        raise TypeError(f"{what}: dtype={value!r} is not a dtype (try symbp.float32)") from None
    if np_dtype not in _SUPPORTED_NP:
        raise TypeError(
            f"{what}: dtype={of(np_dtype)!r} is not supported: symbp computes in float32 or "
            f"float64 (int64 for indices and labels, bool for masks) on the CPU; use "
            f"symbp.float32 (or .float()) instead"
        )
    return np_dtype


_SUPPORTED_NP = frozenset(d.np for d in SUPPORTED)
