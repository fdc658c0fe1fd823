"""``nn.MultiheadAttention``: PyTorch's parameters (``in_proj_weight`` [3E, E] stacking the
query, key and value projections, ``in_proj_bias`` [3E], ``out_proj`` a Linear; or
``q_proj_weight``/``k_proj_weight``/``v_proj_weight`` when ``kdim``/``vdim`` differ), so a
``state_dict`` moves between the two, and its ``forward``'s arguments and results.

>>> import symbp
>>> mha = symbp.nn.MultiheadAttention(8, 2, batch_first=True)
>>> out, w = mha(*[symbp.ones(3, 5, 8)] * 3)
>>> out.shape, w.shape
(symbp.Size([3, 5, 8]), symbp.Size([3, 5, 5]))
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from symbp import functional as SF
from symbp import tensor as T
from symbp.compiler.ir import ShapeError, shape_str
from symbp.nn import functional, init
from symbp.nn.layers import Linear
from symbp.nn.module import Module
from symbp.tensor import Parameter, Tensor, get_default_dtype


class MultiheadAttention(Module):
    """softmax(Q Kᵀ/√d + mask) V per head, the heads joined and projected by ``out_proj``.

    Masks follow PyTorch: a bool ``attn_mask`` ([L, S] or [N·num_heads, L, S]) or
    ``key_padding_mask`` ([N, S]) marks with True the entries left out; a float one is added
    to the scores. ``is_causal`` is a hint that needs ``attn_mask`` (PyTorch's rule). A mask
    of the wrong shape is an error naming the layer and the shapes it expects.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__()
        functional._refuse("MultiheadAttention", add_bias_kv=(add_bias_kv, False),
                           add_zero_attn=(add_zero_attn, False))  # fmt: skip
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim {embed_dim} must be divisible by "
                             f"num_heads {num_heads}")  # fmt: skip
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, float(dropout)
        self.kdim, self.vdim = kdim or embed_dim, vdim or embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.head_dim, self.batch_first = embed_dim // num_heads, batch_first
        dt = np.dtype(dtype or get_default_dtype())
        self.in_proj_weight: Parameter | None
        self.q_proj_weight: Parameter | None
        self.k_proj_weight: Parameter | None
        self.v_proj_weight: Parameter | None
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(np.zeros((3 * embed_dim, embed_dim), dt))
            self.q_proj_weight = self.k_proj_weight = self.v_proj_weight = None
        else:
            self.in_proj_weight = None
            self.q_proj_weight = Parameter(np.zeros((embed_dim, embed_dim), dt))
            self.k_proj_weight = Parameter(np.zeros((embed_dim, self.kdim), dt))
            self.v_proj_weight = Parameter(np.zeros((embed_dim, self.vdim), dt))
        self.in_proj_bias = Parameter(np.zeros(3 * embed_dim, dt)) if bias else None
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dt)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # PyTorch's: xavier_uniform_ on the projections, zero biases (out_proj's weight keeps
        # Linear's initialisation)
        for w in (self.in_proj_weight, self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
            if w is not None:
                init.xavier_uniform_(w)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
        if self.out_proj.bias is not None:
            init.zeros_(self.out_proj.bias)

    def _projections(self) -> tuple[list[Tensor], list[Tensor | None]]:
        e = self.embed_dim
        if self.in_proj_weight is not None:
            w = self.in_proj_weight
            ws = [w[0:e], w[e : 2 * e], w[2 * e : 3 * e]]
        else:
            ws = [self.q_proj_weight, self.k_proj_weight, self.v_proj_weight]  # type: ignore[list-item]
        b = self.in_proj_bias
        bs = [None] * 3 if b is None else [b[0:e], b[e : 2 * e], b[2 * e : 3 * e]]
        return ws, bs

    def _check_inputs(self, q: Tensor, k: Tensor, v: Tensor) -> None:
        dims = (self.embed_dim, self.kdim, self.vdim)
        for name, x, d in zip(("query", "key", "value"), (q, k, v), dims):
            if x.ndim != 3 or x.shape[-1] != d:
                order = "[N, L, E]" if self.batch_first else "[L, N, E]"
                raise ShapeError(
                    f"{self.describe()}: {name} must be {order} (or unbatched [L, E]) with "
                    f"E = {d}, got {shape_str(x.shape)}"
                )
        b = 0 if self.batch_first else 1  # the batch axis; the other of the first two is L
        if k.shape[:2] != v.shape[:2] or q.shape[b] != k.shape[b]:
            raise ShapeError(f"{self.describe()}: query {shape_str(q.shape)}, key "
                             f"{shape_str(k.shape)} and value {shape_str(v.shape)} disagree on "
                             "the batch or the key length")  # fmt: skip

    def _mask(
        self, name: str, mask: Any, shapes: list[tuple], n: Any, ls: tuple, like: Tensor
    ) -> Tensor:
        """``mask`` as additive scores broadcasting to [N, H, L, S]."""
        m = functional._x(mask)
        if tuple(m.shape) not in shapes:
            raise ShapeError(
                f"{self.describe()}: {name} of shape {shape_str(m.shape)} should be "
                + " or ".join(shape_str(s) for s in shapes)
                + f" (batch {n}, {self.num_heads} heads, {ls[0]} queries, {ls[1]} keys)"
            )
        add = functional._additive_mask(self.describe(), m, like, keep_true=False)
        if name == "key_padding_mask":
            return T.reshape(add, n, 1, 1, ls[1])
        if add.ndim == 3:
            return T.reshape(add, n, self.num_heads, *ls)
        return add

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Any = None,
        need_weights: bool = True,
        attn_mask: Any = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        q, k, v = (functional._x(t) for t in (query, key, value))
        unbatched = q.ndim == 2
        if unbatched:
            q, k, v = (T.unsqueeze(t, 0 if self.batch_first else 1) for t in (q, k, v))
            if key_padding_mask is not None:
                key_padding_mask = T.unsqueeze(functional._x(key_padding_mask), 0)
        self._check_inputs(q, k, v)
        if not self.batch_first:  # work in [N, L, E]
            q, k, v = (T.swapaxes(t, 0, 1) for t in (q, k, v))
        if is_causal and attn_mask is None:
            raise RuntimeError(f"{self.describe()}: is_causal=True needs attn_mask (PyTorch's "
                               "rule: it is a hint that attn_mask is the causal mask)")  # fmt: skip
        n, lq, s = q.shape[0], q.shape[1], k.shape[1]
        h, d = self.num_heads, self.head_dim
        ws, bs = self._projections()
        heads = [
            T.swapaxes(T.reshape(functional.linear(x, w, b), n, x.shape[1], h, d), 1, 2)
            for x, w, b in zip((q, k, v), ws, bs)
        ]  # [N, H, L or S, d]
        scores = (heads[0] * (1.0 / math.sqrt(d))) @ T.swapaxes(heads[1], -2, -1)
        if attn_mask is not None:
            shapes = [(lq, s), (n * h if isinstance(n, int) else n, lq, s)]
            scores = scores + self._mask("attn_mask", attn_mask, shapes, n, (lq, s), scores)
        if key_padding_mask is not None:
            scores = scores + self._mask(
                "key_padding_mask", key_padding_mask, [(n, s)], n, (lq, s), scores
            )
        weights = T.softmax(scores, -1)  # [N, H, L, S]
        if self.dropout > 0 and self.training:
            weights = SF.dropout(weights, self.dropout, True, seed_name=f"{self._path}.seed")
        out = T.reshape(T.swapaxes(weights @ heads[2], 1, 2), n, lq, self.embed_dim)
        out = self.out_proj(out)
        if not self.batch_first:
            out = T.swapaxes(out, 0, 1)
        if unbatched:
            out = T.squeeze(out, 0 if self.batch_first else 1)
        if not need_weights:
            return out, None
        w_out = weights.mean(dim=1) if average_attn_weights else weights
        return out, (T.squeeze(w_out, 0) if unbatched else w_out)

    def extra_repr(self) -> str:
        return ""


__all__ = ["MultiheadAttention"]
