"""``DataLoader`` and its collate functions, as ``torch.utils.data``.

>>> import symbp
>>> from symbp.utils.data import DataLoader, TensorDataset
>>> ds = TensorDataset(symbp.tensor([[1.0], [2.0], [3.0]]), symbp.tensor([0, 1, 1]))
>>> for xb, yb in DataLoader(ds, batch_size=2):
...     print(xb.shape, yb.tolist())
symbp.Size([2, 1]) [0, 1]
symbp.Size([1, 1]) [1]

Loading runs in this process: ``num_workers`` (and ``timeout``, ``prefetch_factor``,
``persistent_workers``, ``multiprocessing_context``) are accepted and checked as PyTorch
checks them, and the batches are those of ``num_workers=0``: for a map-style dataset, the
batches PyTorch's workers would deliver, in the same order. ``worker_init_fn`` is not called
and ``get_worker_info()`` is ``None``, as in PyTorch's main process. ``pin_memory`` has no
effect on the CPU (PyTorch's warning says so too).
"""

from __future__ import annotations

import collections.abc
import copy
import functools
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from symbp.compiler.ir import float64
from symbp.tensor import Tensor, tensor
from symbp.utils.data.dataset import IterableDataset, gatherer, rows
from symbp.utils.data.sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler

_STRINGS = re.compile(r"[SaUO]")  # NumPy dtypes of strings and objects: no tensor holds them
_ERR = (
    "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}"
)


def get_worker_info() -> None:
    """``None``: symbp loads data in the calling process (see the module docstring)."""
    return None


def _stack(batch: list[Tensor]) -> Tensor:
    for i, t in enumerate(batch):
        if t.requires_grad or not t.has_value:
            raise NotImplementedError(
                f"default_collate: the tensor at entry {i} of the batch "
                f"{'requires grad' if t.requires_grad else 'is symbolic (no value)'}; symbp "
                f"collates values, not graphs: .detach() the dataset's tensors"
            )
        if t.shape != batch[0].shape:
            raise RuntimeError(
                f"stack expects each tensor to be equal size, but got {list(batch[0].shape)} "
                f"at entry 0 and {list(t.shape)} at entry {i}"
            )
    return tensor(np.stack([t.numpy() for t in batch]))


def _rebuild(elem: Any, items: Any, pairs: Iterable[tuple[Any, Any]]) -> Any:
    """A container like ``elem`` holding ``pairs`` (key, value): a copy of a mutable one, the
    type called on the values otherwise, a plain dict/list when the type refuses."""
    pairs = list(pairs)
    try:
        if isinstance(elem, collections.abc.MutableMapping | collections.abc.MutableSequence):
            clone = copy.copy(elem)
            for k, v in pairs:
                clone[k] = v
            return clone
        return type(elem)(dict(pairs) if isinstance(elem, collections.abc.Mapping) else items)
    except TypeError:
        return dict(pairs) if isinstance(elem, collections.abc.Mapping) else [v for _, v in pairs]


def default_collate(batch: list[Any]) -> Any:
    """Merge a list of samples into a batch, as PyTorch's ``default_collate``.

    Tensors and NumPy arrays stack into a symbp tensor with a new first dimension (arrays
    keep their float dtype; integers become int64, symbp's integer dtype); Python ints become
    an int64 tensor, bools a bool tensor, floats a float64 tensor, NumPy scalars a tensor of
    their dtype; strings stay a list. Dicts, namedtuples and lists collate field by field into
    the same type; a tuple (as a dataset's ``(x, y)``) becomes a list, as in PyTorch.

    >>> import numpy as np
    >>> xb, yb = default_collate([(np.array([1.0, 2.0]), 0), (np.array([3.0, 4.0]), 1)])
    >>> xb.shape, xb.dtype, yb.tolist(), yb.dtype
    (symbp.Size([2, 2]), symbp.float64, [0, 1], symbp.int64)
    >>> default_collate([{"x": 1.5}, {"x": 2.5}])
    {'x': tensor([1.5000, 2.5000], dtype=symbp.float64)}
    """
    elem = batch[0]
    if isinstance(elem, Tensor):
        return _stack(batch)
    if isinstance(elem, np.ndarray):
        if _STRINGS.search(elem.dtype.str):
            raise TypeError(_ERR.format(elem.dtype))
        return _stack([tensor(b) for b in batch])
    if isinstance(elem, np.bool_ | np.number | np.object_):
        return tensor(np.array(batch))
    if isinstance(elem, float):
        return tensor(batch, dtype=float64)
    if isinstance(elem, int):  # bool too: a bool tensor, unless the batch mixes in numbers
        return tensor(batch)
    if isinstance(elem, str | bytes):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        out = {k: default_collate([d[k] for d in batch]) for k in elem}
        return _rebuild(elem, None, out.items())
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # a namedtuple
        return type(elem)(*(default_collate(list(s)) for s in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        if any(len(s) != len(elem) for s in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        fields = [default_collate(list(s)) for s in zip(*batch)]
        if isinstance(elem, tuple):
            return fields  # PyTorch's behaviour: (x, y) samples give [X, Y]
        return _rebuild(elem, fields, enumerate(fields))
    raise TypeError(_ERR.format(type(elem)))


def default_convert(data: Any) -> Any:
    """NumPy arrays (and NumPy scalars) in ``data`` become tensors, recursing into dicts,
    namedtuples and sequences (a tuple becomes a list); the rest is left as it is. The
    collate function when ``batch_size=None``."""
    if isinstance(data, Tensor):
        return data
    if isinstance(data, np.ndarray | np.bool_ | np.number):
        if isinstance(data, np.ndarray) and _STRINGS.search(data.dtype.str):
            return data
        return tensor(data)
    if isinstance(data, collections.abc.Mapping):
        return _rebuild(data, None, ((k, default_convert(v)) for k, v in data.items()))
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, str | bytes):
        items = [default_convert(d) for d in data]
        return _rebuild(data, items, enumerate(items))
    return data


class _LoaderIter:
    """One pass over a loader: an iterator with ``len``, as PyTorch's."""

    def __init__(self, batches: Iterator[Any], loader: DataLoader) -> None:
        self._batches, self._loader = batches, loader

    def __iter__(self) -> _LoaderIter:
        return self

    def __next__(self) -> Any:
        return next(self._batches)

    def __len__(self) -> int:
        return len(self._loader)


_FIXED = ("batch_size", "batch_sampler", "sampler", "drop_last", "dataset", "persistent_workers")


class DataLoader:
    """Batches of a dataset, as ``torch.utils.data.DataLoader``: same arguments, defaults and
    checks. Each pass (``for batch in loader``) draws a new order when ``shuffle=True``;
    ``len(loader)`` is the number of batches.

    ``generator``: the random source of ``shuffle`` (see ``symbp.utils.data.sampler``); by
    default symbp's, so ``symbp.manual_seed(s)`` makes every epoch's order reproducible.
    ``batch_size=None`` turns batching off: each sample goes through ``default_convert``.
    A ``TensorDataset`` (or a ``Subset``/``ConcatDataset`` of them) with ``default_collate``
    is batched by one gather per tensor, giving the same batches as collating sample by
    sample. Loading runs in this process whatever ``num_workers`` says (see the module
    docstring). ``symbp.compile``'s ``fit`` takes a DataLoader in place of ``(X, y)``.

    >>> import numpy as np, symbp
    >>> from symbp.utils.data import TensorDataset
    >>> ds = TensorDataset(symbp.tensor(np.arange(10.0)))
    >>> loader = DataLoader(ds, 4, shuffle=True, drop_last=True, generator=np.random.default_rng(0))
    >>> len(loader), [xb.shape for (xb,) in loader]
    (2, [symbp.Size([4]), symbp.Size([4])])
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Sampler | Iterable | None = None,
        batch_sampler: Sampler | Iterable | None = None,
        num_workers: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable[[int], Any] | None = None,
        multiprocessing_context: Any = None,
        generator: Any = None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        in_order: bool = True,
    ) -> None:
        if num_workers < 0:
            raise ValueError(
                "num_workers option should be non-negative; use num_workers=0 to disable "
                "multiprocessing."
            )
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError(
                "prefetch_factor option could only be specified in multiprocessing.let "
                "num_workers > 0 to enable multiprocessing, otherwise set prefetch_factor to None."
            )
        if prefetch_factor is not None and prefetch_factor < 0:
            raise ValueError("prefetch_factor option should be non-negative")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        if multiprocessing_context is not None and num_workers == 0:
            raise ValueError(
                f"multiprocessing_context can only be used with multi-process loading "
                f"(num_workers > 0), but got num_workers={num_workers}"
            )
        iterable = isinstance(dataset, IterableDataset)
        if iterable:
            if shuffle not in (False, None):
                raise ValueError(
                    f"DataLoader with IterableDataset: expected unspecified shuffle option, "
                    f"but got shuffle={shuffle}"
                )
            for name, value in (("sampler", sampler), ("batch_sampler", batch_sampler)):
                if value is not None:
                    raise ValueError(
                        f"DataLoader with IterableDataset: expected unspecified {name} option, "
                        f"but got {name}={value}"
                    )
            if num_workers > 0:
                warnings.warn(
                    f"DataLoader: symbp iterates the IterableDataset once, in this process; "
                    f"PyTorch's num_workers={num_workers} would iterate a copy in each worker "
                    f"(get_worker_info() is None here)",
                    stacklevel=2,
                )
        shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError(
                    "batch_sampler option is mutually exclusive with batch_size, shuffle, "
                    "sampler, and drop_last"
                )
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError(
                "batch_size=None option disables auto-batching and is mutually exclusive with "
                "drop_last"
            )
        if sampler is None and not iterable:
            sampler = (
                RandomSampler(dataset, generator=generator)
                if shuffle
                else (SequentialSampler(dataset))
            )
        if batch_size is not None and batch_sampler is None and not iterable:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)  # type: ignore[arg-type]
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.num_workers = num_workers
        self.collate_fn = collate_fn or (
            default_collate
            if batch_size is not None or batch_sampler is not None
            else default_convert
        )
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.generator = generator
        self.prefetch_factor = 2 if num_workers > 0 and prefetch_factor is None else prefetch_factor
        self.persistent_workers = persistent_workers
        self.in_order = in_order
        self._initialized = True

    def __setattr__(self, attr: str, value: Any) -> None:
        if getattr(self, "_initialized", False) and attr in _FIXED:
            raise ValueError(
                f"{attr} attribute should not be set after {type(self).__name__} is initialized"
            )
        super().__setattr__(attr, value)

    @property
    def _iterable(self) -> bool:
        return isinstance(self.dataset, IterableDataset)

    def __len__(self) -> int:
        if self._iterable:
            n = len(self.dataset)
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return len(self.batch_sampler if self.batch_sampler is not None else self.sampler)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        if self.pin_memory:
            warnings.warn(
                "'pin_memory' argument is set as true but no accelerator is found, then device "
                "pinned memory won't be used.",
                stacklevel=2,
            )
        if self.timeout != 0 and self.num_workers == 0:
            raise AssertionError("_SingleProcessDataLoaderIter requires timeout == 0")
        return _LoaderIter(self._iter_stream() if self._iterable else self._iter_map(), self)

    def _iter_map(self) -> Iterator[Any]:
        ds, collate = self.dataset, self.collate_fn
        # DataLoader(tensor): its rows are the samples (symbp's indexing covers loss picks only)
        item = functools.partial(rows, ds) if isinstance(ds, Tensor) else ds.__getitem__
        if self.batch_sampler is None:  # batching off: one sample at a time
            for i in self.sampler:  # type: ignore[union-attr]
                yield collate(item(i))
            return
        fast = gatherer(ds) if collate is default_collate else None
        getitems = getattr(ds, "__getitems__", None)
        for idx in self.batch_sampler:
            if fast is not None and len(idx):  # what default_collate makes of the rows
                yield [tensor(c) for c in fast(np.asarray(idx, np.int64))]
            elif callable(getitems):
                yield collate(getitems(list(idx)))
            else:
                yield collate([item(i) for i in idx])

    def _iter_stream(self) -> Iterator[Any]:
        it, collate, size = iter(self.dataset), self.collate_fn, self.batch_size
        if size is None:
            for sample in it:
                yield collate(sample)
            return
        while batch := [s for _, s in zip(range(size), it)]:
            if len(batch) < size and self.drop_last:
                return
            yield collate(batch)
