"""``symbp.Size``: a tensor's shape, the tuple PyTorch's ``torch.Size`` is.

It is a tuple (``x.shape == (2, 3)``, unpacking, indexing, ``np.zeros(x.shape)``) that prints
as PyTorch prints its own, under symbp's name: ``symbp.Size([2, 3])``, as symbp's dtypes print
``symbp.float32`` where PyTorch's print ``torch.float32`` (the library that made the value is
the one named; a program comparing printed text across the two reads ``symbp.`` as
``torch.``). A dimension of a traced shape may be symbolic (``symbp.Size([B, 10])``).
"""

from __future__ import annotations

from typing import Any, SupportsIndex, overload


class Size(tuple):
    """A shape: a tuple of dimensions, ``symbp.Size([2, 3])``."""

    __slots__ = ()

    def __new__(cls, sizes: Any = ()) -> Size:
        return super().__new__(cls, sizes)

    def __repr__(self) -> str:
        return f"symbp.Size([{', '.join(str(d) for d in self)}])"

    __str__ = __repr__

    @overload
    def __getitem__(self, i: SupportsIndex) -> Any: ...
    @overload
    def __getitem__(self, i: slice) -> Size: ...
    def __getitem__(self, i: Any) -> Any:
        got = super().__getitem__(i)
        return Size(got) if isinstance(i, slice) else got  # x.shape[1:] is a Size, as PyTorch

    def __add__(self, other: Any) -> Size:  # type: ignore[override]
        return Size(tuple(self) + tuple(other))

    def __radd__(self, other: Any) -> Size:
        return Size(tuple(other) + tuple(self))

    def numel(self) -> Any:
        """The number of elements of a tensor of this shape (1 for ``Size([])``)."""
        n: Any = 1
        for d in self:
            n = n * d
        return n

    def __reduce__(self) -> tuple[Any, ...]:
        return (Size, (tuple(self),))
