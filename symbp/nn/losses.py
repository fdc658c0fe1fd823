"""Losses with PyTorch's definitions and ``reduction='mean'|'sum'|'none'``, in stable forms."""

from __future__ import annotations

import numpy as np

from symbp import tensor as T
from symbp.ir import ShapeError, shape_str
from symbp.nn.module import Module
from symbp.tensor import Tensor, tensor


class _Loss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(
                f"{type(self).__name__}: reduction must be 'mean', 'sum' or 'none', "
                f"got {reduction!r}"
            )
        self.reduction = reduction

    def reduce(self, x: Tensor) -> Tensor:
        if self.reduction == "mean":
            return x.mean()
        return x.sum() if self.reduction == "sum" else x

    def same_shape(self, x: Tensor, t: Tensor) -> None:
        if x.shape != t.shape:
            raise ShapeError(
                f"{type(self).__name__}: input {shape_str(x.shape)} and target "
                f"{shape_str(t.shape)} must have the same shape"
            )

    @staticmethod
    def as_tensor(t, like: Tensor) -> Tensor:
        return t if isinstance(t, Tensor) else tensor(t, dtype=like.dtype)


class MSELoss(_Loss):
    def forward(self, x: Tensor, t) -> Tensor:
        t = self.as_tensor(t, x)
        self.same_shape(x, t)
        return self.reduce((x - t) ** 2)


class L1Loss(_Loss):
    def forward(self, x: Tensor, t) -> Tensor:
        t = self.as_tensor(t, x)
        self.same_shape(x, t)
        return self.reduce((x - t).abs())


class BCELoss(_Loss):
    """-(t log p + (1 - t) log(1 - p)), logs clamped at -100 and the gradient PyTorch's (0 at
    a saturated correct prediction): ``symbp.scalar.bce``. Probabilities outside [0, 1] are an
    error: at once for values, in compiled code as the non-finite loss they give."""

    domain = "input probabilities must be in [0, 1]"  # named when a compiled loss is NaN

    def forward(self, p: Tensor, t) -> Tensor:
        t = self.as_tensor(t, p)
        self.same_shape(p, t)
        if p.has_value:
            v = p.numpy()
            outside = ~((v >= 0) & (v <= 1))  # NaN too, as PyTorch
            if outside.any():
                at = tuple(int(i) for i in np.argwhere(outside)[0])
                raise ValueError(
                    f"BCELoss: {self.domain}, got {v[at]} at {list(at)} ({int(outside.sum())} "
                    f"of {v.size} outside): apply a sigmoid first, or use BCEWithLogitsLoss"
                )
        return self.reduce(T.nary("bce", p, t))


class BCEWithLogitsLoss(_Loss):
    """BCE of sigmoid(x), as softplus(x) - t x: no overflow for any logit."""

    def forward(self, x: Tensor, t) -> Tensor:
        t = self.as_tensor(t, x)
        self.same_shape(x, t)
        return self.reduce(T.unary("softplus", x) - t * x)


def _labels(x: Tensor, y, who: str) -> Tensor:
    y = y if isinstance(y, Tensor) else tensor(y)
    if x.ndim != 2:
        raise ShapeError(f"{who}: expects input of shape [N, C], got {shape_str(x.shape)}")
    if y.dtype.kind not in "iu":
        raise ShapeError(f"{who}: class labels must be integers, got {y.dtype}")
    if y.shape != x.shape[:1]:
        raise ShapeError(
            f"{who}: expects one label per row: input {shape_str(x.shape)}, "
            f"labels {shape_str(y.shape)}"
        )
    return y


class NLLLoss(_Loss):
    """-logp[n, y_n], from log-probabilities and integer labels."""

    def forward(self, logp: Tensor, y) -> Tensor:
        y = _labels(logp, y, "NLLLoss")
        return self.reduce(-T.pick(logp, y))


class CrossEntropyLoss(_Loss):
    """Cross-entropy of logits: integer labels [N], or class probabilities [N, C]."""

    def forward(self, x: Tensor, y) -> Tensor:
        if x.ndim != 2:  # before log_softmax, whose own error would not say [N, C]
            raise ShapeError(
                f"CrossEntropyLoss: expects input of shape [N, C], got {shape_str(x.shape)}"
            )
        logp = T.log_softmax(x, 1)
        if isinstance(y, Tensor) and y.dtype.kind == "f":
            if y.shape != x.shape:  # float targets are probabilities; indices must be integers
                raise ShapeError(
                    f"CrossEntropyLoss: float targets are class probabilities of the input's "
                    f"shape {shape_str(x.shape)}, got {shape_str(y.shape)}; class labels must "
                    f"be integers (.long())"
                )
            return self.reduce(-(logp * y).sum(1))
        y = _labels(x, y, "CrossEntropyLoss")
        return self.reduce(-T.pick(logp, y))
