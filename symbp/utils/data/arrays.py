"""A ``DataLoader`` or tensor dataset as the arrays ``CompiledModel.fit`` trains on.

``fit`` runs whole epochs in compiled code over arrays, so it reads a loader's data once and
takes over its batching: the loader's ``batch_size``, whether it shuffles (its sampler) and
``drop_last`` map to fit's arguments; what fit cannot do the same way is an error, never a
silent change (a custom ``collate_fn``, a weighted sampler, a dataset whose ``__getitem__``
computes each sample).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from symbp.utils.data.dataloader import DataLoader, default_collate
from symbp.utils.data.dataset import Dataset, IterableDataset, gather
from symbp.utils.data.sampler import (
    RandomSampler,
    SequentialSampler,
    SubsetRandomSampler,
    numpy_generator,
)

_HOW = (
    "fit trains on tensor data: a TensorDataset (or a Subset or ConcatDataset of them), or a "
    "DataLoader over one; for other data collate it once yourself: "
    "X, y = next(iter(DataLoader(ds, batch_size=len(ds))))"
)


def is_data(obj: Any) -> bool:
    """Whether ``obj`` is a DataLoader or a Dataset (rather than arrays or tensors)."""
    return isinstance(obj, DataLoader | Dataset)


def _columns(ds: Any, idx: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(ds, IterableDataset):
        raise TypeError(f"{what}: cannot train on an IterableDataset (a stream); {_HOW}")
    cols = gather(ds, idx)
    if cols is None:
        raise TypeError(
            f"{what}: cannot read the arrays of a {type(ds).__name__}: its samples come from its "
            f"__getitem__ (it may compute a new one each time); {_HOW}"
        )
    if len(cols) != 2:
        raise ValueError(
            f"{what}: expects samples (x, y), got a {type(ds).__name__} of {len(cols)} "
            f"tensor{'s' if len(cols) != 1 else ''}"
        )
    return cols[0], cols[1]


def _loader_order(loader: DataLoader, what: str) -> tuple[np.ndarray, bool]:
    """The rows a loader reads in an epoch and whether it shuffles them."""
    n = len(loader.dataset)
    s = loader.sampler
    if loader.collate_fn is not default_collate:
        raise ValueError(
            f"{what}: the DataLoader has its own collate_fn, which fit cannot apply inside its "
            f"compiled epochs; build the arrays with it and pass them"
        )
    if loader.batch_size is None:
        raise ValueError(
            f"{what}: the DataLoader has no batch_size (batch_size=None or a batch_sampler); "
            f"fit needs one batch size"
        )
    if type(s) is SequentialSampler:
        return np.arange(n), False
    if type(s) is RandomSampler and not s.replacement and s.num_samples == n:
        return np.arange(n), True
    if type(s) is SubsetRandomSampler:
        return np.asarray(s.indices, np.int64), True
    raise ValueError(
        f"{what}: cannot train with the DataLoader's {type(s).__name__}; fit reads the data in "
        f"order or shuffles it once per epoch (shuffle=True, a SubsetRandomSampler)"
    )


def fit_arrays(
    X: Any, y: Any, batch_size: int | None, shuffle: bool | None, seed: int | None,
    derive_seed: bool = True, what: str = "fit",
) -> tuple[Any, Any, int, bool, int | None]:  # fmt: skip
    """``fit``'s (X, y, batch_size, shuffle, seed) for arrays, a Dataset or a DataLoader.

    ``batch_size``/``shuffle`` of ``None`` mean fit's defaults (32, True), or the loader's;
    a value that differs from the loader's is an error. A loader that shuffles makes fit
    shuffle (fit draws its own order from ``seed``); without a ``seed`` one is drawn from the
    loader's generator (symbp's by default), so ``symbp.manual_seed`` makes the run
    reproducible. ``drop_last`` drops the last partial batch: in order, by training on fewer
    rows; shuffled, fit cannot (it would drop different samples each epoch): an error.
    """
    if isinstance(X, DataLoader):
        if y is not None:
            raise TypeError(f"{what}: leave y out with a DataLoader: its dataset holds the targets")
        order, shuffles = _loader_order(X, what)
        bs = X.batch_size
        assert bs is not None
        for name, given, own in (("batch_size", batch_size, bs), ("shuffle", shuffle, shuffles)):
            if given is not None and given != own:
                raise ValueError(
                    f"{what}: {name}={given} conflicts with the DataLoader's {name} ({own}); "
                    f"leave it out or make them agree"
                )
        if X.drop_last and len(order) % bs:
            if shuffles:
                raise ValueError(
                    f"{what}: the DataLoader shuffles and drops the last partial batch "
                    f"({len(order)} samples, batches of {bs}): a different {len(order) % bs} "
                    f"samples each epoch, which fit cannot do; use drop_last=False"
                )
            order = order[: len(order) - len(order) % bs]
        if shuffles and seed is None and derive_seed:
            gen = getattr(X.sampler, "generator", None)
            seed = int(numpy_generator(gen, what).integers(2**62))
        xs, ys = _columns(X.dataset, order, what)
        return xs, ys, bs, shuffles, seed
    if isinstance(X, Dataset):
        if y is not None:
            raise TypeError(f"{what}: leave y out with a Dataset: it holds the targets")
        xs, ys = _columns(X, np.arange(len(X)), what)  # type: ignore[arg-type]
        return xs, ys, 32 if batch_size is None else batch_size, shuffle is not False, seed
    if y is None:
        raise TypeError(f"{what}: missing the targets y (or pass a DataLoader or Dataset as X)")
    return X, y, 32 if batch_size is None else batch_size, shuffle is not False, seed


def eval_arrays(X: Any, y: Any, what: str) -> tuple[Any, Any]:
    """(X, y) for ``evaluate`` and ``fit``'s ``validation_data``: every row the loader reads."""
    if is_data(X):
        X, y, *_ = fit_arrays(X, y, None, None, None, derive_seed=False, what=what)
    elif y is None:
        raise TypeError(f"{what}: missing the targets y (or pass a DataLoader or Dataset as X)")
    return X, y
