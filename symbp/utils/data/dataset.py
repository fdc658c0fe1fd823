"""Datasets, as ``torch.utils.data``: map-style (``__getitem__``/``__len__``) and iterable.

>>> import numpy as np, symbp
>>> from symbp.utils.data import TensorDataset, random_split
>>> ds = TensorDataset(symbp.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]), symbp.tensor([0, 1, 0]))
>>> x, y = ds[1]
>>> x, y
(tensor([2., 3.]), tensor(1))
>>> train, val = random_split(ds, [2, 1], generator=np.random.default_rng(0))
>>> len(train), len(val)
(2, 1)
"""

from __future__ import annotations

import bisect
import itertools
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

from symbp.tensor import Tensor, tensor
from symbp.utils.data.sampler import numpy_generator

T_co = TypeVar("T_co", covariant=True)


class Dataset(Generic[T_co]):  # generic as PyTorch's: class MyData(Dataset[tuple[Tensor, int]])
    """A map-style dataset: ``dataset[i]`` is sample ``i``; subclasses define ``__getitem__``
    (and ``__len__``, which samplers and ``DataLoader`` need). ``a + b`` concatenates."""

    def __getitem__(self, index: Any) -> T_co:
        raise NotImplementedError("Subclasses of Dataset should implement __getitem__.")

    def __add__(self, other: Dataset) -> ConcatDataset:
        return ConcatDataset([self, other])


class IterableDataset(Dataset[T_co]):
    """A dataset that is a stream: subclasses define ``__iter__``. ``a + b`` chains them."""

    def __iter__(self) -> Iterator[Any]:
        raise NotImplementedError("Subclasses of IterableDataset should implement __iter__.")

    def __add__(self, other: Dataset) -> ChainDataset:  # type: ignore[override]
        return ChainDataset([self, other])


def _first_dim(t: Any) -> int:
    shape = getattr(t, "shape", None)
    if not shape:
        raise TypeError(
            f"TensorDataset: expects tensors with a first (sample) dimension, got "
            f"{type(t).__name__}{'' if shape is None else ' of shape ()'}"
        )
    return int(shape[0])


def rows(t: Any, index: Any) -> Any:
    """``t[index]``: symbp tensors with values are indexed through their array (symbp's own
    indexing covers only loss picks), arrays and anything else by their own ``[]``."""
    if isinstance(t, Tensor) and t.has_value and not t.requires_grad:
        return tensor(t.numpy()[index])
    return t[index]


class TensorDataset(Dataset):
    """Samples are rows of tensors of the same length: ``ds[i] == (t[i] for t in tensors)``.

    As in PyTorch, tensors whose first dimensions differ are an ``AssertionError``. (NumPy
    arrays are accepted too; a row of a symbp tensor is a new tensor, not a view.)
    """

    def __init__(self, *tensors: Any) -> None:
        if not tensors:
            raise TypeError("TensorDataset: expects at least one tensor")
        n = _first_dim(tensors[0])
        if any(_first_dim(t) != n for t in tensors):
            raise AssertionError("Size mismatch between tensors")
        self.tensors = tensors

    def __getitem__(self, index: Any) -> tuple[Any, ...]:
        return tuple(rows(t, index) for t in self.tensors)

    def __len__(self) -> int:
        return _first_dim(self.tensors[0])


class StackDataset(Dataset):
    """Zips datasets of one length: ``StackDataset(a, b)[i] == (a[i], b[i])``,
    ``StackDataset(x=a, y=b)[i] == {"x": a[i], "y": b[i]}``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args and kwargs:
            raise ValueError(
                "Supported either ``tuple``- (via ``args``) or``dict``- (via ``kwargs``) like "
                "input/output, but both types are given."
            )
        if not args and not kwargs:
            raise ValueError("At least one dataset should be passed")
        self.datasets: tuple | dict = args or kwargs
        parts = list(args or kwargs.values())
        self._length = len(parts[0])
        if any(len(d) != self._length for d in parts):
            raise ValueError("Size mismatch between datasets")

    def __getitem__(self, index: Any) -> Any:
        if isinstance(self.datasets, dict):
            return {k: d[index] for k, d in self.datasets.items()}
        return tuple(d[index] for d in self.datasets)

    def __len__(self) -> int:
        return self._length


class ConcatDataset(Dataset):
    """The samples of several map-style datasets, one after another."""

    def __init__(self, datasets: Iterable[Dataset]) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise AssertionError("datasets should not be an empty iterable")
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise AssertionError("ConcatDataset does not support IterableDataset")
        self.cumulative_sizes = list(itertools.accumulate(len(d) for d in self.datasets))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx: int) -> Any:
        if idx < 0:
            if -idx > len(self):
                raise ValueError("absolute value of index should not exceed dataset length")
            idx += len(self)
        part = bisect.bisect_right(self.cumulative_sizes, idx)
        start = self.cumulative_sizes[part - 1] if part else 0
        return self.datasets[part][idx - start]


class ChainDataset(IterableDataset):
    """Iterable datasets, one after another."""

    def __init__(self, datasets: Iterable[Dataset]) -> None:
        self.datasets = datasets

    def _parts(self) -> Iterator[IterableDataset]:
        for d in self.datasets:
            if not isinstance(d, IterableDataset):
                raise AssertionError("ChainDataset only supports IterableDataset")
            yield d

    def __iter__(self) -> Iterator[Any]:
        for d in self._parts():
            yield from d

    def __len__(self) -> int:
        return sum(len(d) for d in self._parts())  # type: ignore[arg-type,misc]


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = indices
        kind = type(self)
        if kind.__getitem__ is not Subset.__getitem__ and kind.__getitems__ is Subset.__getitems__:
            # DataLoader reads batches through __getitems__: the override would be bypassed
            raise NotImplementedError(
                f"{kind.__name__} overrides __getitem__ but not __getitems__. When subclassing "
                f"Subset and overriding __getitem__, you must also override __getitems__ to "
                f"ensure DataLoader works correctly with your custom logic. A simple "
                f"implementation:\n\ndef __getitems__(self, indices):\n    return "
                f"[self.__getitem__(idx) for idx in indices]"
            )

    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def __getitems__(self, indices: list[int]) -> list[Any]:
        getitems = getattr(self.dataset, "__getitems__", None)
        if callable(getitems):
            return getitems([self.indices[i] for i in indices])
        return [self.dataset[self.indices[i]] for i in indices]

    def __len__(self) -> int:
        return len(self.indices)


def random_split(
    dataset: Dataset, lengths: Sequence[int | float], generator: Any = None
) -> list[Subset]:
    """Split ``dataset`` into non-overlapping random ``Subset``s of the given ``lengths``.

    ``lengths`` are sample counts summing to ``len(dataset)``, or fractions summing to 1 (each
    split gets ``floor(len * fraction)``, and the remainder goes one by one to the splits in
    order, as PyTorch does). ``generator``: a ``numpy.random.Generator`` (or an object with a
    ``numpy_generator``), by default symbp's, seeded by ``symbp.manual_seed``. The split is
    reproducible under a seed, but it is not PyTorch's bit for bit.

    >>> import numpy as np
    >>> a, b, c = random_split(range(10), [0.3, 0.3, 0.4], generator=np.random.default_rng(1))
    >>> len(a), len(b), len(c), sorted([*a, *b, *c]) == list(range(10))
    (3, 3, 4, True)
    """
    n = len(dataset)  # type: ignore[arg-type]
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        for i, frac in enumerate(lengths):
            if frac < 0 or frac > 1:
                raise ValueError(f"Fraction at index {i} is not between 0 and 1")
        counts = [math.floor(n * frac) for frac in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        for i, count in enumerate(counts):
            if count == 0:
                warnings.warn(
                    f"Length of split at index {i} is 0. This might result in an empty dataset.",
                    stacklevel=2,
                )
        lengths = counts
    if sum(lengths) != n:
        raise ValueError("Sum of input lengths does not equal the length of the input dataset!")
    order = numpy_generator(generator, "random_split").permutation(n).tolist()
    ends = itertools.accumulate(int(k) for k in lengths)
    return [Subset(dataset, order[end - int(k) : end]) for end, k in zip(ends, lengths)]


# ---------------------------------------------------------------- rows as arrays


def _columns(ds: TensorDataset) -> list[np.ndarray] | None:
    cols = []
    for t in ds.tensors:
        if isinstance(t, Tensor):
            if t.requires_grad or not t.has_value:
                return None  # rows of these need the tensor's own indexing
            t = t.numpy()
        if not isinstance(t, np.ndarray):
            return None
        cols.append(t)
    return cols


Gather = Callable[[np.ndarray], list[np.ndarray]]


def gatherer(ds: Any) -> Gather | None:
    """A function from row indices to the rows of every field of ``ds``, as arrays, when
    ``ds`` is tensor data: a ``TensorDataset`` of arrays or tensors, or ``Subset``s and
    ``ConcatDataset``s of them, none with its own ``__getitem__``. ``None`` otherwise (a
    dataset whose samples only its ``__getitem__`` knows). ``DataLoader`` batches such data
    by one gather per field (the same batches ``default_collate`` makes of the samples);
    ``fit`` reads it whole. Index arrays are built once, here, not per batch."""
    kind = type(ds)
    if isinstance(ds, TensorDataset) and kind.__getitem__ is TensorDataset.__getitem__:
        cols = _columns(ds)
        return None if cols is None else (lambda idx: [c[idx] for c in cols])
    if (
        isinstance(ds, Subset)
        and kind.__getitem__ is Subset.__getitem__
        and kind.__getitems__ is Subset.__getitems__
    ):
        inner = gatherer(ds.dataset)
        base = np.asarray(ds.indices, np.int64)
        return None if inner is None else (lambda idx: inner(base[idx]))
    if isinstance(ds, ConcatDataset) and kind.__getitem__ is ConcatDataset.__getitem__:
        return _concat_gatherer(ds)
    return None


def _concat_gatherer(ds: ConcatDataset) -> Gather | None:
    parts = [gatherer(d) for d in ds.datasets]
    if any(p is None for p in parts):
        return None
    none = np.empty(0, np.int64)
    kinds = [[(c.dtype, c.shape[1:]) for c in p(none)] for p in parts if p is not None]
    if any(k != kinds[0] for k in kinds):
        return None  # fields that differ between parts: leave them to default_collate
    ends = np.asarray(ds.cumulative_sizes)
    starts = np.concatenate([[0], ends[:-1]])

    def rows_of(idx: np.ndarray) -> list[np.ndarray]:
        bad = idx[(idx >= ends[-1]) | (idx < -ends[-1])]
        if len(bad):
            raise IndexError(
                f"index {bad[0]} is out of range for a ConcatDataset of {ends[-1]} samples"
            )
        idx = np.where(idx < 0, idx + ends[-1], idx)
        part = np.searchsorted(ends, idx, side="right")
        out = [np.empty((len(idx), *shape), dtype) for dtype, shape in kinds[0]]
        for k, p in enumerate(parts):
            picked = part == k
            if picked.any() and p is not None:
                for o, c in zip(out, p(idx[picked] - starts[k])):
                    o[picked] = c
        return out

    return rows_of


def gather(ds: Any, idx: np.ndarray) -> list[np.ndarray] | None:
    """The rows ``idx`` of every field of ``ds`` (see ``gatherer``), or None."""
    g = gatherer(ds)
    return None if g is None else g(idx)
