"""Samplers, as ``torch.utils.data``: the order in which a ``DataLoader`` reads a dataset.

Random samplers draw from a ``generator``: a ``numpy.random.Generator``, or any object whose
``numpy_generator`` (attribute or method) is one; ``None`` means symbp's own generator, the
one ``symbp.manual_seed`` seeds. So a seeded program shuffles the same way every run (but not
in PyTorch's order: symbp does not reproduce PyTorch's random bit stream).

>>> import numpy as np
>>> from symbp.utils.data import BatchSampler, RandomSampler, SequentialSampler
>>> list(BatchSampler(SequentialSampler(range(5)), batch_size=2, drop_last=False))
[[0, 1], [2, 3], [4]]
>>> sorted(RandomSampler(range(5), generator=np.random.default_rng(0)))
[0, 1, 2, 3, 4]
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence, Sized
from typing import Any, Generic, TypeVar

import numpy as np

from symbp.nn import init


def numpy_generator(generator: Any, what: str) -> np.random.Generator:
    """The NumPy generator behind ``generator`` (``None``: symbp's, seeded by manual_seed)."""
    if generator is None:
        return init.generator()
    if isinstance(generator, np.random.Generator):
        return generator
    inner = getattr(generator, "numpy_generator", None)
    inner = inner() if callable(inner) else inner
    if isinstance(inner, np.random.Generator):
        return inner
    raise TypeError(
        f"{what}: generator must be a numpy.random.Generator (np.random.default_rng(seed)), a "
        f"symbp.Generator, an object with a numpy_generator, or None for symbp's "
        f"(symbp.manual_seed); got "
        f"{type(generator).__name__}"
    )


def _fresh(generator: Any, what: str) -> np.random.Generator:
    """A generator for one pass: ``generator`` itself, or (None) a new one seeded from
    symbp's, as PyTorch's RandomSampler seeds a new one from its default generator."""
    if generator is not None:
        return numpy_generator(generator, what)
    return np.random.default_rng(int(init.generator().integers(2**63)))


T_co = TypeVar("T_co", covariant=True)


class Sampler(Generic[T_co]):  # generic as PyTorch's: class MySampler(Sampler[int])
    """Base class: subclasses define ``__iter__`` (indices, or lists of them) and ``__len__``."""

    def __iter__(self) -> Iterator[T_co]:
        raise NotImplementedError


class SequentialSampler(Sampler[int]):
    """``0, 1, ..., len(data_source) - 1``."""

    def __init__(self, data_source: Sized) -> None:
        self.data_source = data_source

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler[int]):
    """A random permutation of the indices each pass; with ``replacement``, ``num_samples``
    independent draws. ``num_samples`` (default ``len(data_source)``) beyond the length
    without replacement repeats whole permutations."""

    def __init__(
        self,
        data_source: Sized,
        replacement: bool = False,
        num_samples: int | None = None,
        generator: Any = None,
    ) -> None:
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator
        if not isinstance(replacement, bool):
            raise TypeError(
                f"replacement should be a boolean value, but got replacement={replacement}"
            )
        n = self.num_samples
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            raise ValueError(
                f"num_samples should be a positive integer value, but got num_samples={n}"
            )
        if generator is not None:
            numpy_generator(generator, "RandomSampler")  # a bad one fails here, not mid-epoch

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self) -> Iterator[int]:
        n, k = len(self.data_source), self.num_samples
        rng = _fresh(self.generator, "RandomSampler")
        if self.replacement:
            yield from rng.integers(n, size=k).tolist()
            return
        for _ in range(k // n):
            yield from rng.permutation(n).tolist()
        yield from rng.permutation(n)[: k % n].tolist()

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler[int]):
    """The given ``indices`` in a random order, a new one each pass."""

    def __init__(self, indices: Sequence[int], generator: Any = None) -> None:
        self.indices = indices
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        rng = numpy_generator(self.generator, "SubsetRandomSampler")
        for i in rng.permutation(len(self.indices)).tolist():
            yield self.indices[i]

    def __len__(self) -> int:
        return len(self.indices)


class WeightedRandomSampler(Sampler[int]):
    """``num_samples`` indices drawn with probabilities proportional to ``weights``."""

    def __init__(
        self,
        weights: Sequence[float],
        num_samples: int,
        replacement: bool = True,
        generator: Any = None,
    ) -> None:
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples <= 0:
            raise ValueError(
                f"num_samples should be a positive integer value, but got num_samples={num_samples}"
            )
        if not isinstance(replacement, bool):
            raise ValueError(
                f"replacement should be a boolean value, but got replacement={replacement}"
            )
        from symbp.tensor import Tensor

        w = np.asarray(weights.numpy() if isinstance(weights, Tensor) else weights, np.float64)
        if w.ndim != 1:
            raise ValueError(
                f"weights should be a 1d sequence but given weights have shape {tuple(w.shape)}"
            )
        self.weights = w
        self.num_samples = num_samples
        self.replacement = replacement
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        w = self.weights
        # PyTorch's torch.multinomial errors, checked before NumPy gives its own
        if not np.isfinite(w).all():
            raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
        if (w < 0).any():
            raise RuntimeError(
                "invalid multinomial distribution (encountering probability entry < 0)"
            )
        if w.sum() <= 0:
            raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
        k, n = self.num_samples, len(w)
        if not self.replacement and k > n:
            raise RuntimeError(
                "cannot sample n_sample > prob_dist.size(-1) samples without replacement"
            )
        rng = numpy_generator(self.generator, "WeightedRandomSampler")
        nonzero = np.flatnonzero(w)
        if self.replacement or k <= len(nonzero):
            yield from rng.choice(n, size=k, replace=self.replacement, p=w / w.sum()).tolist()
            return
        # more draws than non-zero weights: PyTorch gives every weighted index, then zero-weight
        # ones (NumPy refuses)
        yield from rng.choice(n, size=len(nonzero), replace=False, p=w / w.sum()).tolist()
        yield from rng.permutation(np.flatnonzero(w == 0))[: k - len(nonzero)].tolist()

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler(Sampler[list[int]]):
    """Lists of ``batch_size`` indices from ``sampler``; the last one shorter unless
    ``drop_last``."""

    def __init__(self, sampler: Sampler | Iterable[int], batch_size: int, drop_last: bool) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(
                f"batch_size should be a positive integer value, but got batch_size={batch_size}"
            )
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a boolean value, but got drop_last={drop_last}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[list[int]]:
        it = iter(self.sampler)
        while batch := list(itertools.islice(it, self.batch_size)):
            if len(batch) < self.batch_size and self.drop_last:
                return
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
