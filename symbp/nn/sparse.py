"""Embedding tables: ``nn.Embedding`` and ``nn.EmbeddingBag``, PyTorch's names and layouts.

>>> import numpy as np, symbp
>>> emb = symbp.nn.Embedding(10, 3, padding_idx=0)
>>> emb(symbp.tensor(np.array([[0, 4]]))).shape
symbp.Size([1, 2, 3])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from symbp.nn import functional, init
from symbp.nn.module import Module
from symbp.tensor import Parameter, Tensor, get_default_dtype


def _table(num: int, dim: int, weight: Any, dtype: Any, what: str) -> Parameter:
    if weight is None:
        return Parameter(np.zeros((num, dim), np.dtype(dtype or get_default_dtype())))
    arr = np.array(weight.numpy() if isinstance(weight, Tensor) else weight)
    if arr.shape != (num, dim):
        raise ValueError(f"{what}: _weight of shape {list(arr.shape)} must be [{num}, {dim}]")
    return Parameter(arr)


def _reset(weight: Parameter, padding_idx: int | None) -> None:
    """PyTorch's initialisation: N(0, 1), the padding row zero."""
    init.normal_(weight)
    if padding_idx is not None:
        w = np.array(weight.numpy())
        w[padding_idx] = 0.0
        weight.data = w


class Embedding(Module):
    """A lookup table: ids of any shape to rows of ``weight`` [num_embeddings, dim], N(0, 1)
    initialised (the ``padding_idx`` row zero, and never updated: it gets no gradient).

    Ids out of range are an error naming the layer, the position and the id: at trace time
    when the ids are known, inside the compiled step (before any update) when they are not.
    ``max_norm``, ``scale_grad_by_freq`` and ``sparse=True`` are refused (not ignored).
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        _weight: Any = None,
        _freeze: bool = False,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__()
        functional._refuse(
            "Embedding",
            max_norm=(max_norm, None),
            scale_grad_by_freq=(scale_grad_by_freq, False),
            sparse=(sparse, False),
        )
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = functional._padding_row(num_embeddings, padding_idx, "Embedding")
        self.max_norm, self.norm_type = max_norm, norm_type
        self.scale_grad_by_freq, self.sparse = scale_grad_by_freq, sparse
        self.weight = _table(num_embeddings, embedding_dim, _weight, dtype, "Embedding")
        if _freeze:
            self.weight.requires_grad_(False)
        if _weight is None:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset(self.weight, self.padding_idx)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002 (PyTorch's name)
        return functional.embedding(input, self.weight, self.padding_idx, _what=self.describe())

    @classmethod
    def from_pretrained(
        cls, embeddings: Any, freeze: bool = True, padding_idx: int | None = None, **kw: Any
    ) -> Embedding:
        arr = np.array(embeddings.numpy() if isinstance(embeddings, Tensor) else embeddings)
        if arr.ndim != 2:
            raise ValueError("Embedding.from_pretrained: embeddings must be 2-D")
        return cls(arr.shape[0], arr.shape[1], padding_idx, _weight=arr, _freeze=freeze, **kw)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")


class EmbeddingBag(Module):
    """Sums or means of bags of embedding rows (``mode`` 'sum' or 'mean'; 'max' is refused):
    2-D ids are one bag a row, 1-D ids are cut at ``offsets`` (known values). Same table and
    initialisation as ``Embedding``."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        mode: str = "mean",
        sparse: bool = False,
        _weight: Any = None,
        include_last_offset: bool = False,
        padding_idx: int | None = None,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__()
        functional._refuse(
            "EmbeddingBag",
            max_norm=(max_norm, None),
            scale_grad_by_freq=(scale_grad_by_freq, False),
            sparse=(sparse, False),
        )
        if mode not in ("sum", "mean"):
            raise NotImplementedError(
                f"EmbeddingBag: mode={mode!r} is not supported ('sum', 'mean')"
            )
        self.num_embeddings, self.embedding_dim, self.mode = num_embeddings, embedding_dim, mode
        self.include_last_offset = include_last_offset
        self.padding_idx = functional._padding_row(num_embeddings, padding_idx, "EmbeddingBag")
        self.weight = _table(num_embeddings, embedding_dim, _weight, dtype, "EmbeddingBag")
        if _weight is None:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset(self.weight, self.padding_idx)

    def forward(
        self,
        input: Tensor,  # noqa: A002
        offsets: Any = None,
        per_sample_weights: Tensor | None = None,
    ) -> Tensor:
        return functional.embedding_bag(
            input,
            self.weight,
            offsets,
            mode=self.mode,
            per_sample_weights=per_sample_weights,
            include_last_offset=self.include_last_offset,
            padding_idx=self.padding_idx,
            _what=self.describe(),
        )

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, mode={self.mode!r}"


__all__ = ["Embedding", "EmbeddingBag"]
