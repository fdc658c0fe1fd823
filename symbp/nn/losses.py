"""Losses with PyTorch's definitions, constructor arguments and ``reduction='mean'|'sum'|'none'``,
in stable forms. Class weights, ignored labels and label smoothing are IR expressions (a
``where`` on the labels, a one-hot of them), not Python per sample: a compiled training step
traces the loss like any other layer."""

from __future__ import annotations

from typing import Any

import numpy as np

from symbp import tensor as T
from symbp.compiler.ir import ShapeError, shape_str
from symbp.nn.module import Module
from symbp.tensor import Tensor, tensor


class _Loss(Module):
    reductions: tuple[str, ...] = ("mean", "sum", "none")

    def __init__(self, size_average: Any = None, reduce: Any = None, reduction: str = "mean"):
        super().__init__()
        who = type(self).__name__
        if size_average is not None or reduce is not None:
            raise NotImplementedError(
                f"{who}: size_average and reduce are deprecated in PyTorch and not supported; "
                f"use reduction='mean'|'sum'|'none'"
            )
        if reduction not in self.reductions:
            raise ValueError(
                f"{who}: reduction must be "
                + ", ".join(repr(r) for r in self.reductions[:-1])
                + f" or {self.reductions[-1]!r}, got {reduction!r}"
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

    def keep(self, name: str, value: Any) -> None:
        """A weight argument: a buffer (in the state dict, as PyTorch's), or None."""
        if value is None:
            object.__setattr__(self, name, None)
        else:
            self.register_buffer(name, value)

    def kept(self, name: str, like: Tensor) -> Tensor | None:
        v = getattr(self, name)
        return None if v is None else tensor(np.asarray(v), dtype=like.dtype)

    def weighted(self, loss: Tensor, weight: Tensor | None) -> Tensor:
        """loss * weight, the weight broadcast to the loss's shape (PyTorch's elementwise
        ``weight=``; 'mean' stays the mean over the elements)."""
        if weight is None:
            return loss
        try:
            return loss * weight
        except ShapeError as e:
            raise ShapeError(
                f"{type(self).__name__}: weight {shape_str(weight.shape)} does not broadcast "
                f"to the input {shape_str(loss.shape)}"
            ) from e


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


class HuberLoss(_Loss):
    """0.5 d² for |d| < delta, else delta (|d| - delta/2), as m = min(|d|, delta):
    0.5 m² + delta (|d| - m), one formula whose derivative is d inside and ±delta outside."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction=reduction)
        if not delta > 0:
            raise ValueError(f"HuberLoss: delta must be positive, got {delta!r}")
        self.delta = float(delta)

    def pointwise(self, x: Tensor, t) -> Tensor:
        t = self.as_tensor(t, x)
        self.same_shape(x, t)
        a = (x - t).abs()
        m = T.binary("minimum", a, self.delta)
        return m * m * 0.5 + (a - m) * self.delta

    def forward(self, x: Tensor, t) -> Tensor:
        return self.reduce(self.pointwise(x, t))


class SmoothL1Loss(_Loss):
    """The Huber loss with delta = beta, divided by beta (PyTorch's definition); the L1 loss at
    beta = 0."""

    def __init__(
        self, size_average: Any = None, reduce: Any = None, reduction: str = "mean", beta=1.0
    ):
        super().__init__(size_average, reduce, reduction)
        if beta < 0:
            raise ValueError(f"SmoothL1Loss: beta must be non-negative, got {beta!r}")
        self.beta = float(beta)

    def forward(self, x: Tensor, t) -> Tensor:
        if self.beta == 0:
            t = self.as_tensor(t, x)
            self.same_shape(x, t)
            return self.reduce((x - t).abs())
        return self.reduce(HuberLoss("none", self.beta).pointwise(x, t) / self.beta)


class KLDivLoss(_Loss):
    """t (log t - x) for log-probabilities x (0 where t = 0, as torch.xlogy), or
    exp(t) (t - x) with ``log_target=True``. 'batchmean' is the sum over the batch size, the
    true KL divergence; 'mean' (PyTorch's default) the mean over all elements."""

    reductions = ("mean", "batchmean", "sum", "none")

    def __init__(
        self,
        size_average: Any = None,
        reduce: Any = None,
        reduction: str = "mean",
        log_target: bool = False,
    ):
        super().__init__(size_average, reduce, reduction)
        self.log_target = bool(log_target)

    def forward(self, x: Tensor, t) -> Tensor:
        t = self.as_tensor(t, x)
        self.same_shape(x, t)
        if self.log_target:
            loss = t.exp() * (t - x)
        else:
            loss = T.apply_math("xlogy", t, t) - t * x
        if self.reduction == "batchmean":
            return loss.sum() / x.shape[0] if x.ndim else loss.sum()
        return self.reduce(loss)


class BCELoss(_Loss):
    """-w (t log p + (1 - t) log(1 - p)), logs clamped at -100 and the gradient PyTorch's (0 at
    a saturated correct prediction): ``compiler.scalar.bce``. Probabilities outside [0, 1] are an
    error: at once for values, in compiled code as the non-finite loss they give."""

    domain = "input probabilities must be in [0, 1]"  # named when a compiled loss is NaN

    def __init__(
        self,
        weight: Any = None,
        size_average: Any = None,
        reduce: Any = None,
        reduction: str = "mean",
    ):
        super().__init__(size_average, reduce, reduction)
        self.keep("weight", weight)

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
        return self.reduce(self.weighted(T.nary("bce", p, t), self.kept("weight", p)))


class BCEWithLogitsLoss(_Loss):
    """BCE of sigmoid(x), as softplus(x) - t x: no overflow for any logit. With ``pos_weight``
    (broadcast along the last axis, the classes) the positive term is scaled:
    (1 - t) x + (1 + (pos_weight - 1) t) softplus(-x), PyTorch's form."""

    def __init__(
        self,
        weight: Any = None,
        size_average: Any = None,
        reduce: Any = None,
        reduction: str = "mean",
        pos_weight: Any = None,
    ):
        super().__init__(size_average, reduce, reduction)
        self.keep("weight", weight)
        self.keep("pos_weight", pos_weight)

    def forward(self, x: Tensor, t) -> Tensor:
        t = self.as_tensor(t, x)
        self.same_shape(x, t)
        pw = self.kept("pos_weight", x)
        if pw is None:
            loss = T.unary("softplus", x) - t * x
        else:
            loss = (1 - t) * x + ((pw - 1) * t + 1) * T.unary("softplus", -x)
            if loss.shape != x.shape:
                raise ShapeError(
                    f"BCEWithLogitsLoss: pos_weight {shape_str(pw.shape)} does not broadcast "
                    f"to the input {shape_str(x.shape)}"
                )
        return self.reduce(self.weighted(loss, self.kept("weight", x)))


class SoftMarginLoss(_Loss):
    """log(1 + exp(-y x)) for labels y = ±1, as softplus(-y x)."""

    def forward(self, x: Tensor, y) -> Tensor:
        y = self.as_tensor(y, x)
        self.same_shape(x, y)
        return self.reduce(T.unary("softplus", -(y * x)))


class MarginRankingLoss(_Loss):
    """max(0, -y (x1 - x2) + margin)."""

    def __init__(
        self,
        margin: float = 0.0,
        size_average: Any = None,
        reduce: Any = None,
        reduction: str = "mean",
    ):
        super().__init__(size_average, reduce, reduction)
        self.margin = float(margin)

    def forward(self, x1: Tensor, x2: Tensor, y) -> Tensor:
        y = self.as_tensor(y, x1)
        return self.reduce(T.unary("relu", -y * (x1 - x2) + self.margin))


class CosineEmbeddingLoss(_Loss):
    """1 - cos(x1, x2) where y = 1, max(0, cos(x1, x2) - margin) where y = -1, the cosine along
    the last axis with PyTorch's 1e-12 added to each squared norm (0 for a zero vector)."""

    def __init__(
        self,
        margin: float = 0.0,
        size_average: Any = None,
        reduce: Any = None,
        reduction: str = "mean",
    ):
        super().__init__(size_average, reduce, reduction)
        self.margin = float(margin)

    def forward(self, x1: Tensor, x2: Tensor, y) -> Tensor:
        y = y if isinstance(y, Tensor) else tensor(y)
        if x1.shape != x2.shape or x1.ndim not in (1, 2) or y.shape != x1.shape[:-1]:
            raise ShapeError(
                f"CosineEmbeddingLoss: expects inputs [N, D] or [D] of one shape and targets "
                f"[N] or [], got {shape_str(x1.shape)}, {shape_str(x2.shape)} and "
                f"{shape_str(y.shape)}"
            )
        d = x1.ndim - 1
        eps = 1e-12
        cos = (x1 * x2).sum(d) / (((x1 * x1).sum(d) + eps) * ((x2 * x2).sum(d) + eps)).sqrt()
        pos = T.where_(y == 1, 1 - cos, 0.0)
        neg = T.where_(y == -1, T.unary("relu", cos - self.margin), 0.0)
        return self.reduce(pos + neg)


def _as_rows(x: Tensor, who: str) -> tuple[Tensor, tuple]:
    """Input [N, C, d1...] (or [C]) as rows [M, C] of classes, and the shape [N, d1...] (or [])
    of one loss per row."""
    if x.ndim == 0:
        raise ShapeError(f"{who}: expects input of shape [N, C, d1...] or [C], got a scalar")
    if x.ndim == 1:
        return x.reshape(1, x.shape[0]), ()
    if x.ndim == 2:
        return x, (x.shape[0],)
    c = x.shape[1]
    return x.movedim(1, -1).reshape(-1, c), (x.shape[0], *x.shape[2:])


def _class_weight(weight: Tensor | None, c: Any, who: str) -> None:
    if weight is not None and weight.shape != (c,):
        raise ShapeError(
            f"{who}: weight must hold one value per class, [{c}], got {shape_str(weight.shape)}"
        )


def _label_terms(
    logp: Tensor, y, weight: Tensor | None, ignore_index: int, who: str
) -> tuple[Tensor, Tensor | None, Tensor | None, tuple]:
    """For log-probabilities [N, C, d1...] and labels [N, d1...]: per row (flattened), the
    picked log-probability, its weight w[y] (0 where y = ignore_index) and the 0/1 mask of
    kept labels (None and None: no weights, nothing ignored); and the shape of one loss per
    label."""
    y = y if isinstance(y, Tensor) else tensor(y)
    rows, out = _as_rows(logp, who)
    c = rows.shape[1]
    if y.dtype.kind not in "iu":
        raise ShapeError(f"{who}: class labels must be integers, got {y.dtype}")
    if tuple(y.shape) != out:
        raise ShapeError(
            f"{who}: expects one label per row: input {shape_str(logp.shape)}, "
            f"labels {shape_str(y.shape)} (should be {shape_str(out)})"
        )
    if y.has_value:  # PyTorch's error; in compiled code a label cannot be checked
        v = np.asarray(y.numpy())
        bad = (v != ignore_index) & ((v < 0) | (v >= c))
        if bad.any():
            raise IndexError(
                f"label {v[bad].ravel()[0]} out of range for {c} classes in {who} "
                f"(ignore_index={ignore_index})"
            )
    labels = y.reshape(-1)
    if not _may_ignore(y, ignore_index, c):
        # nothing to ignore: the textbook loss, whose gradient formulas read as such
        # (δ = (softmax(z) − onehot(y))/N); a traced label of -100 with ignore_index left at
        # PyTorch's default is then out of range, an error in compiled code, never a pick
        w = None if weight is None else (T.onehot(labels, c, rows.dtype) * weight).sum(1)
        return T.pick(rows, labels), w, None, out
    kept = labels != ignore_index
    # an ignored label may lie outside the classes: pick class 0 for it, weighted by 0
    safe = T.where_(kept, labels, 0)
    mask = T.cast(kept, rows.dtype)
    picked = T.pick(rows, safe)
    if weight is None:
        w = mask
    else:
        w = (T.onehot(safe, c, rows.dtype) * weight).sum(1) * mask
    return picked, w, mask, out


class _DefaultIndex(int):
    """PyTorch's default ``ignore_index``, -100, told apart from a -100 the user passed: a
    traced loss masks labels only where one may be ignored (``_may_ignore``)."""

    def __repr__(self) -> str:
        return int.__repr__(self)


IGNORE_DEFAULT = _DefaultIndex(-100)


def _index(ignore_index: int) -> int:
    """The index as given (the default stays told apart), an int."""
    return ignore_index if isinstance(ignore_index, _DefaultIndex) else int(ignore_index)


def _may_ignore(y: Tensor, ignore_index: int, c: int) -> bool:
    """Can a label equal ``ignore_index``? Known labels say. Traced ones can when the index
    is a class, or when the user chose it (``ignore_index=-100`` for padded sequences); with
    PyTorch's default left as it is, a traced label of -100 is out of range: an error."""
    if y.has_value:
        return bool((np.asarray(y.numpy()) == ignore_index).any())
    return 0 <= ignore_index < c or not isinstance(ignore_index, _DefaultIndex)


def _nll(picked: Tensor, w: Tensor | None, out: tuple, reduction: str) -> Tensor:
    """-w[y] logp[y]; 'mean' divides by the sum of the kept weights (nan if all are ignored,
    as PyTorch)."""
    loss = -picked if w is None else -(picked * w)
    if reduction == "none":
        return loss.reshape(*out) if out else loss.reshape(())
    if reduction == "sum":
        return loss.sum()
    return loss.mean() if w is None else loss.sum() / w.sum()


class NLLLoss(_Loss):
    """-w[y] logp[y], from log-probabilities [N, C, d1...] and integer labels [N, d1...]."""

    def __init__(
        self,
        weight: Any = None,
        size_average: Any = None,
        ignore_index: int = IGNORE_DEFAULT,
        reduce: Any = None,
        reduction: str = "mean",
    ):
        super().__init__(size_average, reduce, reduction)
        self.keep("weight", weight)
        self.ignore_index = (
            ignore_index if isinstance(ignore_index, _DefaultIndex) else int(ignore_index)
        )

    def forward(self, logp: Tensor, y) -> Tensor:
        weight = self.kept("weight", logp)
        _class_weight(weight, logp.shape[1 if logp.ndim > 1 else 0], "NLLLoss")
        picked, w, _, out = _label_terms(logp, y, weight, self.ignore_index, "NLLLoss")
        return _nll(picked, w, out, self.reduction)


class CrossEntropyLoss(_Loss):
    """Cross-entropy of logits [N, C, d1...]: integer labels [N, d1...], or class probabilities
    of the input's shape; with PyTorch's class ``weight``, ``ignore_index`` and
    ``label_smoothing`` (the target mixed with the uniform distribution, eps/C on each class)."""

    def __init__(
        self,
        weight: Any = None,
        size_average: Any = None,
        ignore_index: int = IGNORE_DEFAULT,
        reduce: Any = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ):
        super().__init__(size_average, reduce, reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(
                f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing!r}"
            )
        self.keep("weight", weight)
        self.ignore_index = (
            ignore_index if isinstance(ignore_index, _DefaultIndex) else int(ignore_index)
        )
        self.label_smoothing = float(label_smoothing)

    def forward(self, x: Tensor, y) -> Tensor:
        who = "CrossEntropyLoss"
        if x.ndim == 0:  # before log_softmax, whose own error would not say [N, C]
            raise ShapeError(f"{who}: expects input of shape [N, C, d1...] or [C], got a scalar")
        cdim = 1 if x.ndim > 1 else 0
        c = x.shape[cdim]
        weight = self.kept("weight", x)
        _class_weight(weight, c, who)
        eps = self.label_smoothing
        logp = T.log_softmax(x, cdim)
        if isinstance(y, Tensor) and y.dtype.kind == "f":
            if y.shape != x.shape:  # float targets are probabilities; indices must be integers
                raise ShapeError(
                    f"{who}: float targets are class probabilities of the input's "
                    f"shape {shape_str(x.shape)}, got {shape_str(y.shape)}; class labels must "
                    f"be integers (.long())"
                )
            t = y * (1 - eps) + eps / c if eps else y
            if weight is not None:  # along the class axis
                t = t * weight.reshape(c, *([1] * (x.ndim - cdim - 1)))
            loss = -(logp * t).sum(cdim)
            return self.reduce(loss)  # 'mean' over the samples, whatever the weights
        picked, w, mask, out = _label_terms(logp, y, weight, self.ignore_index, who)
        nll = _nll(picked, w, out, self.reduction)
        if not eps:
            return nll
        # PyTorch's smoothing term: -sum_c w_c logp_c per kept label, 'mean' over the same
        # sum of picked weights as the NLL term
        rows, _ = _as_rows(logp, who)
        smooth = -(rows if weight is None else rows * weight).sum(1)
        if mask is not None:
            smooth = smooth * mask
        if self.reduction == "none":
            smooth = smooth.reshape(*out) if out else smooth.reshape(())
        elif self.reduction == "mean":
            smooth = smooth.mean() if w is None else smooth.sum() / w.sum()
        else:
            smooth = smooth.sum()
        return nll * (1 - eps) + smooth * (eps / c)
