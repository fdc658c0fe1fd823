"""``symbp.utils.data``: PyTorch's ``torch.utils.data``, for symbp tensors.

The same names, arguments, defaults, errors and batches as PyTorch, so a training loop ports
by changing its imports. Differences: loading runs in this process whatever ``num_workers``
says (see ``dataloader``), and random orders come from NumPy generators (``generator=`` a
``numpy.random.Generator``, by default symbp's, seeded by ``symbp.manual_seed``):
reproducible, but not PyTorch's orders.

>>> import symbp
>>> from symbp.utils.data import DataLoader, TensorDataset, random_split
>>> _ = symbp.manual_seed(0)
>>> X = symbp.tensor([[float(i), float(i)] for i in range(10)])
>>> y = symbp.tensor([i % 2 for i in range(10)])
>>> train, val = random_split(TensorDataset(X, y), [0.8, 0.2])
>>> loader = DataLoader(train, batch_size=3, shuffle=True)
>>> len(loader), [tuple(xb.shape) for xb, yb in loader]
(3, [(3, 2), (3, 2), (2, 2)])

``symbp.compile(...).fit(loader, epochs=...)`` trains on such a loader (see
``CompiledModel.fit``).
"""

from symbp.utils.data.dataloader import (
    DataLoader,
    default_collate,
    default_convert,
    get_worker_info,
)
from symbp.utils.data.dataset import (
    ChainDataset,
    ConcatDataset,
    Dataset,
    IterableDataset,
    StackDataset,
    Subset,
    TensorDataset,
    random_split,
)
from symbp.utils.data.sampler import (
    BatchSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

__all__ = [
    "BatchSampler",
    "ChainDataset",
    "ConcatDataset",
    "DataLoader",
    "Dataset",
    "IterableDataset",
    "RandomSampler",
    "Sampler",
    "SequentialSampler",
    "StackDataset",
    "Subset",
    "SubsetRandomSampler",
    "TensorDataset",
    "WeightedRandomSampler",
    "default_collate",
    "default_convert",
    "get_worker_info",
    "random_split",
]
