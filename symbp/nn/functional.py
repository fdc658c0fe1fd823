"""``torch.nn.functional`` for symbp: PyTorch's names, argument order and defaults.

>>> import symbp, symbp.nn.functional as F
>>> F.mse_loss(symbp.tensor([1.0, 2.0]), symbp.tensor([0.0, 0.0])).item()
2.5

Nothing here has maths of its own where symbp already has it: activations are the op table's
elementwise ops, softmax the tensor module's, convolution, pooling, dropout and batch norm
``symbp.functional``'s, and the losses the ``symbp.nn`` loss modules' ``forward`` (class
weights, ``ignore_index``, ``label_smoothing``, ``pos_weight`` included).

An argument symbp cannot honour (PyTorch's deprecated ``size_average``/``reduce``) raises an
error naming it; none is ignored.
"""

from __future__ import annotations

from typing import Any

from symbp import tensor as T
from symbp.compiler.ir import ShapeError, int64, shape_str
from symbp.functional import (
    adaptive_avg_pool2d,
    avg_pool2d,
    batch_norm,
    conv2d,
    max_pool2d,
)
from symbp.functional import dropout as _dropout
from symbp.nn.losses import (
    IGNORE_DEFAULT,
    BCELoss,
    BCEWithLogitsLoss,
    CosineEmbeddingLoss,
    CrossEntropyLoss,
    HuberLoss,
    KLDivLoss,
    L1Loss,
    MarginRankingLoss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
    SoftMarginLoss,
    _Loss,
)
from symbp.tensor import Tensor


def _x(input: Any) -> Tensor:  # noqa: A002 (PyTorch's name)
    return input if isinstance(input, Tensor) else T.tensor(input)


def _in_place(fn: str, input: Any, inplace: bool, out: Tensor) -> Tensor:  # noqa: A002
    """``out``, or with PyTorch's ``inplace=True`` the input tensor itself updated to hold it:
    written into its memory when no graph needs it, recorded in the graph when it is in one
    (``nn.ReLU(inplace=True)`` after a layer: the layer's output now stands for the ReLU's,
    eager and traced alike). A leaf that requires grad is refused, as PyTorch refuses it."""
    if not inplace or out is input:  # dropout in eval mode: the input itself, unchanged
        return out
    if not isinstance(input, Tensor):
        raise TypeError(f"{fn}_(): argument 'input' must be Tensor, not {type(input).__name__}")
    return input._inplace(f"{fn}_", out)


# --- activations --------------------------------------------------------------------------


def relu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    return _in_place("relu", input, inplace, T.unary("relu", input))


def sigmoid(input: Tensor) -> Tensor:  # noqa: A002
    return T.unary("sigmoid", input)


def tanh(input: Tensor) -> Tensor:  # noqa: A002
    return T.unary("tanh", input)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:  # noqa: A002
    """x Φ(x), with the erf (``approximate='none'``) or PyTorch's tanh approximation."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return T.unary("gelu" if approximate == "none" else "gelu_tanh", input)


def silu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    return _in_place("silu", input, inplace, T.unary("silu", input))


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:  # noqa: A002
    """log(1 + exp(beta x)) / beta (computed without overflow), and x itself where
    beta x > threshold, as PyTorch (value and gradient)."""
    return T.apply_math("softplus_threshold", input, params=(beta, threshold))


def _dim(fn: str, dim: int | None, dtype: Any) -> int:
    if dim is None:  # PyTorch guesses a dim with a deprecation warning; say which to pass
        raise ValueError(f"{fn}: pass dim explicitly (PyTorch's implicit dim is deprecated)")
    if dtype is not None:
        raise NotImplementedError(f"{fn}: dtype={dtype!r} is not supported; cast the input first")
    return dim


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None):  # noqa: A002
    return T.softmax(_x(input), _dim("softmax", dim, dtype))


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None):  # noqa: A002
    return T.log_softmax(_x(input), _dim("log_softmax", dim, dtype))


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:  # noqa: A002
    """input @ weightᵀ + bias, weight [out, in] (``nn.Linear`` computes its output here)."""
    x, w = _x(input), _x(weight)
    if w.ndim != 2 or x.ndim == 0 or x.shape[-1] != w.shape[1]:
        raise ShapeError(
            f"linear: input {shape_str(x.shape)} must end in weight {shape_str(w.shape)}'s "
            f"in_features ({w.shape[1] if w.ndim == 2 else '?'})"
        )
    y = x @ w.T
    return y if bias is None else y + bias


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot rows of integer labels, as PyTorch; ``num_classes=-1`` needs the labels'
    values (max + 1), so a traced call must pass it."""
    t = _x(tensor)
    if t.dtype.kind not in "iu":
        raise TypeError(f"one_hot: labels must be integers, got {t.dtype}")
    if num_classes == -1:
        if not t.has_value:
            raise ValueError("one_hot: num_classes=-1 needs label values; pass num_classes")
        num_classes = int(t.numpy().max()) + 1 if t.numpy().size else 0
    if (
        t.has_value
        and t.numpy().size
        and not (0 <= t.numpy().min() <= t.numpy().max() < num_classes)
    ):
        raise ValueError(f"one_hot: labels must be in [0, {num_classes}), got {t.numpy()}")
    return T.onehot(t, num_classes, int64)


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False):  # noqa: A002
    """``symbp.functional.dropout`` (inverted dropout); ``inplace=True`` as PyTorch's."""
    return _in_place("dropout", input, inplace, _dropout(input, p, training))


# --- losses -------------------------------------------------------------------------------


def _loss_args(fn: str, size_average: Any = None, reduce: Any = None) -> None:
    if size_average is not None or reduce is not None:
        raise NotImplementedError(
            f"{fn}: size_average and reduce are deprecated in PyTorch and not supported; "
            f"use reduction='mean'|'sum'|'none'"
        )


def _run(loss: _Loss, input: Any, *targets: Any) -> Tensor:  # noqa: A002
    # the module's forward, not __call__: a functional call names no layer
    return loss.forward(_x(input), *targets)


def _elementwise_weight(
    fn: str,
    loss: _Loss,
    input: Any,  # noqa: A002
    target: Any,
    weight: Any,
    weight_mean: bool,
) -> Tensor:
    """PyTorch's elementwise ``weight=`` of mse/l1/huber: one weight per input element, the
    loss times it; 'mean' is sum(w l) / sum(w) for mse and l1 but the plain mean of w l for
    huber (``weight_mean``), as torch.nn.functional computes them."""
    x = _x(input)
    reduction = loss.reduction
    loss.reduction = "none"
    pointwise = loss.forward(x, target)
    w = weight if isinstance(weight, Tensor) else T.tensor(weight, dtype=x.dtype)
    if w.shape != x.shape:
        raise ShapeError(
            f"{fn}: weight {shape_str(w.shape)} must have the input's size {shape_str(x.shape)}"
        )
    out = pointwise * w
    if reduction == "none":
        return out
    if reduction == "sum" or not weight_mean:
        return out.sum() if reduction == "sum" else out.mean()
    return out.sum() / w.sum()


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):  # noqa: A002
    _loss_args("mse_loss", size_average, reduce)
    if weight is not None:
        return _elementwise_weight(
            "mse_loss", MSELoss(reduction=reduction), input, target, weight, True
        )
    return _run(MSELoss(reduction=reduction), input, target)


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):  # noqa: A002
    _loss_args("l1_loss", size_average, reduce)
    if weight is not None:
        return _elementwise_weight(
            "l1_loss", L1Loss(reduction=reduction), input, target, weight, True
        )
    return _run(L1Loss(reduction=reduction), input, target)


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):  # noqa: A002
    loss = HuberLoss(reduction, delta)
    if weight is not None:
        return _elementwise_weight("huber_loss", loss, input, target, weight, False)
    return _run(loss, input, target)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):  # noqa: A002
    return _run(SmoothL1Loss(size_average, reduce, reduction, beta), input, target)


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):  # noqa: A002
    return _run(KLDivLoss(size_average, reduce, reduction, log_target), input, target)


def soft_margin_loss(input, target, size_average=None, reduce=None, reduction="mean"):  # noqa: A002
    return _run(SoftMarginLoss(size_average, reduce, reduction), input, target)


def margin_ranking_loss(
    input1, input2, target, margin=0.0, size_average=None, reduce=None, reduction="mean"
):
    return _run(MarginRankingLoss(margin, size_average, reduce, reduction), input1, input2, target)


def cosine_embedding_loss(
    input1, input2, target, margin=0.0, size_average=None, reduce=None, reduction="mean"
):
    loss = CosineEmbeddingLoss(margin, size_average, reduce, reduction)
    return _run(loss, input1, input2, target)


def nll_loss(
    input,  # noqa: A002
    target,
    weight=None,
    size_average=None,
    ignore_index=IGNORE_DEFAULT,
    reduce=None,
    reduction="mean",
):
    return _run(NLLLoss(weight, size_average, ignore_index, reduce, reduction), input, target)


def cross_entropy(
    input,  # noqa: A002
    target,
    weight=None,
    size_average=None,
    ignore_index=IGNORE_DEFAULT,
    reduce=None,
    reduction="mean",
    label_smoothing=0.0,
):
    loss = CrossEntropyLoss(weight, size_average, ignore_index, reduce, reduction, label_smoothing)
    return _run(loss, input, target)


def binary_cross_entropy(
    input,  # noqa: A002
    target,
    weight=None,
    size_average=None,
    reduce=None,
    reduction="mean",
):
    return _run(BCELoss(weight, size_average, reduce, reduction), input, target)


def binary_cross_entropy_with_logits(
    input,  # noqa: A002
    target,
    weight=None,
    size_average=None,
    reduce=None,
    reduction="mean",
    pos_weight=None,
):
    loss = BCEWithLogitsLoss(weight, size_average, reduce, reduction, pos_weight)
    return _run(loss, input, target)


__all__ = [
    "adaptive_avg_pool2d",
    "avg_pool2d",
    "batch_norm",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "conv2d",
    "cosine_embedding_loss",
    "cross_entropy",
    "dropout",
    "gelu",
    "huber_loss",
    "kl_div",
    "l1_loss",
    "linear",
    "log_softmax",
    "margin_ranking_loss",
    "max_pool2d",
    "mse_loss",
    "nll_loss",
    "one_hot",
    "relu",
    "sigmoid",
    "silu",
    "smooth_l1_loss",
    "soft_margin_loss",
    "softmax",
    "softplus",
    "tanh",
]

# -- issue 12 . math (rows of this family go below this line)
# PyTorch's activations with their parameters, each a formula of ops.ELEMENTWISE with the
# parameters folded in as constants (inplace=True as by relu above: see _in_place).


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:  # noqa: A002
    out = T.apply_math("leaky_relu", input, params=(negative_slope,))
    return _in_place("leaky_relu", input, inplace, out)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:  # noqa: A002
    return _in_place("elu", input, inplace, T.apply_math("elu", input, params=(alpha,)))


def selu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    return _in_place("selu", input, inplace, T.apply_math("selu", input))


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:  # noqa: A002
    if alpha == 0:
        raise ValueError("celu: alpha must not be 0 (the formula divides by it)")
    return _in_place("celu", input, inplace, T.apply_math("celu", input, params=(alpha,)))


def mish(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    return _in_place("mish", input, inplace, T.apply_math("mish", input))


def hardtanh(
    input: Tensor,  # noqa: A002
    min_val: float = -1.0,
    max_val: float = 1.0,
    inplace: bool = False,
) -> Tensor:
    if min_val > max_val:
        raise ValueError(
            f"hardtanh: min_val ({min_val}) cannot be greater than max_val ({max_val})"
        )
    out = T.apply_math("hardtanh", input, params=(min_val, max_val))
    return _in_place("hardtanh", input, inplace, out)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    return _in_place("relu6", input, inplace, T.apply_math("relu6", input))


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    return _in_place("hardsigmoid", input, inplace, T.apply_math("hardsigmoid", input))


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    return _in_place("hardswish", input, inplace, T.apply_math("hardswish", input))


def softsign(input: Tensor) -> Tensor:  # noqa: A002
    return T.apply_math("softsign", input)


def tanhshrink(input: Tensor) -> Tensor:  # noqa: A002
    return T.apply_math("tanhshrink", input)


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:  # noqa: A002
    """x where x > threshold, else value (PyTorch's gradient is 0 at x = threshold)."""
    out = T.apply_math("threshold", input, params=(threshold, value))
    return _in_place("threshold", input, inplace, out)


def logsigmoid(input: Tensor) -> Tensor:  # noqa: A002
    """log σ(x) = -softplus(-x), without overflow for any x."""
    return T.apply_math("logsigmoid", input)


__all__ += [
    "celu", "elu", "hardsigmoid", "hardswish", "hardtanh", "leaky_relu", "logsigmoid", "mish",
    "relu6", "selu", "softsign", "tanhshrink", "threshold",
]  # fmt: skip
#
# -- issue 12 . logic (rows of this family go below this line)
#
# -- issue 12 . indexing (rows of this family go below this line)
#
# -- issue 12 . shaping (rows of this family go below this line)
pad = T.pad  # F.pad(input, pad, mode="constant", value=None): PyTorch's pad order, last dim first
__all__ += ["pad"]
# -- issue 12 . reductions (rows of this family go below this line)
#
# -- issue 12 . linalg (rows of this family go below this line)
#
# -- issue 17 . sequence and attention: embedding, normalisation, attention
#
# Each is a composition of tensor ops (take, mean/var over dims, matmul with batch dims,
# where, softmax), so eager autograd, the compiler and gradcheck get them with no rule of
# their own; the layers in symbp.nn.sparse/normalization/attention/transformer call these.
import math  # noqa: E402 (this family's imports stay in its section)

import numpy as np  # noqa: E402

from symbp.compiler import ops  # noqa: E402


def _refuse(fn: str, **options: Any) -> None:
    """Options symbp does not implement: an error naming them, never silently ignored."""
    for name, (value, default) in options.items():
        if value != default:
            raise NotImplementedError(
                f"{fn}: {name}={value!r} is not supported by symbp (use the default, {default!r})"
            )


def _ids(fn: str, input: Any, num: int) -> Tensor:  # noqa: A002
    """Integer ids checked against a table of ``num`` rows when their values are known: the
    error names the position and the id (traced ids are checked by the compiled take)."""
    ids = _x(input)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{fn}: ids must be an integer tensor, got {ids.dtype}")
    if ids.has_value:
        v = ids.numpy()
        bad = np.argwhere((v < 0) | (v >= num))
        if len(bad):
            pos = tuple(int(i) for i in bad[0])
            raise IndexError(
                f"{fn}: id {int(v[pos])} at position {list(pos)} of the ids "
                f"{shape_str(ids.shape)} is out of range for {num} embeddings "
                f"(ids must be in [0, {num}))"
            )
    return ids


def _padding_row(num: int, padding_idx: int | None, fn: str) -> int | None:
    if padding_idx is None:
        return None
    if not -num <= padding_idx < num:
        raise ValueError(f"{fn}: padding_idx {padding_idx} must be within [-{num}, {num})")
    return padding_idx % num


def embedding(
    input: Tensor,  # noqa: A002
    weight: Tensor,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
    *,
    _what: str = "embedding",
) -> Tensor:
    """Rows ``weight[input]``: ids of any shape, out ``ids.shape + [dim]``. The gradient is
    the take's adjoint, a scatter-add (an id used twice gets both cotangents); the
    ``padding_idx`` row gets none (it reads the table through a stop-gradient)."""
    _refuse(_what, max_norm=(max_norm, None), scale_grad_by_freq=(scale_grad_by_freq, False),
            sparse=(sparse, False))  # fmt: skip
    w = _x(weight)
    if w.ndim != 2:
        raise ShapeError(f"{_what}: weight must be [num_embeddings, dim], got {shape_str(w.shape)}")
    num = w.shape[0]
    ids = _ids(_what, input, num)
    pad = _padding_row(num, padding_idx, _what)
    if pad is not None:
        row = np.zeros((num, 1), bool)
        row[pad] = True
        w = T.where_(T.tensor(row), w.detach(), w)
    node = ops.take(w.node, [ids.node], ops.IndexArg(0, _what, wrap=False))
    return T._result(node, [w, ids])


def _bag_matrix(fn: str, offsets: Any, n: int, include_last_offset: bool) -> np.ndarray:
    """[bags, n] 0/1: entry j of the flat ids belongs to bag b (offsets must be known)."""
    off = offsets.numpy() if isinstance(offsets, Tensor) else np.asarray(offsets)
    if isinstance(offsets, Tensor) and not offsets.has_value:
        raise ValueError(f"{fn}: offsets must be known values (a traced offsets tensor)")
    off = off.astype(np.int64).ravel()
    if off.size == 0 or off[0] != 0 or np.any(np.diff(off) < 0) or off[-1] > n:
        raise ValueError(
            f"{fn}: offsets must start at 0, not decrease and stay within the {n} ids, got "
            f"{off.tolist()}"
        )
    ends = off[1:] if include_last_offset else np.append(off[1:], n)
    starts = off[:-1] if include_last_offset else off
    bags = np.zeros((len(starts), n))
    for b, (s, e) in enumerate(zip(starts, ends)):
        bags[b, s:e] = 1.0
    return bags


def embedding_bag(
    input: Tensor,  # noqa: A002
    weight: Tensor,
    offsets: Any = None,
    max_norm: float | None = None,
    norm_type: float = 2,
    scale_grad_by_freq: bool = False,
    mode: str = "mean",
    sparse: bool = False,
    per_sample_weights: Tensor | None = None,
    include_last_offset: bool = False,
    padding_idx: int | None = None,
    *,
    _what: str = "embedding_bag",
) -> Tensor:
    """Sums or means of bags of embedding rows: 2-D ids are one bag a row; 1-D ids are cut
    into bags at ``offsets`` (known values). ``padding_idx`` entries are left out of their
    bag (and of a mean's count); an empty bag is zeros, as PyTorch."""
    _refuse(_what, max_norm=(max_norm, None), scale_grad_by_freq=(scale_grad_by_freq, False),
            sparse=(sparse, False))  # fmt: skip
    if mode not in ("sum", "mean"):
        raise NotImplementedError(f"{_what}: mode={mode!r} is not supported (use 'sum', 'mean')")
    if per_sample_weights is not None and mode != "sum":
        raise NotImplementedError(f"{_what}: per_sample_weights only with mode='sum' (PyTorch)")
    w, ids = _x(weight), _x(input)
    e = embedding(ids, w, padding_idx, _what=_what)  # [..., dim]
    keep = None
    pad = _padding_row(w.shape[0], padding_idx, _what)
    if pad is not None:
        keep = T.cast(ids != pad, e.dtype)
    if per_sample_weights is not None:
        psw = _x(per_sample_weights)
        if tuple(psw.shape) != tuple(ids.shape):
            raise ShapeError(f"{_what}: per_sample_weights {shape_str(psw.shape)} must have the "
                             f"ids' shape {shape_str(ids.shape)}")  # fmt: skip
        keep = psw if keep is None else keep * psw
    if keep is not None:
        e = e * T.unsqueeze(keep, -1)
    if ids.ndim == 2:
        if offsets is not None:
            raise ValueError(f"{_what}: offsets must be None for 2-D ids (one bag a row)")
        total = e.sum(dim=1)
        count = ids.shape[1] if keep is None or per_sample_weights is not None else None
        if mode == "sum":
            return total
        if count is not None:
            return total / count
        return total / T.clamp_min(T.unsqueeze(keep.sum(dim=1), -1), 1.0)  # type: ignore[union-attr]
    if ids.ndim != 1 or offsets is None:
        raise ValueError(f"{_what}: ids must be 2-D, or 1-D with offsets; got "
                         f"{shape_str(ids.shape)} and offsets={offsets!r}")  # fmt: skip
    bags = T.tensor(_bag_matrix(_what, offsets, ids.shape[0], include_last_offset).astype(e.dtype))
    total = bags @ e
    if mode == "sum":
        return total
    count = bags.sum(dim=1) if keep is None else bags @ keep
    return total / T.clamp_min(T.unsqueeze(count, -1), 1.0)


def _normalized_dims(fn: str, x: Tensor, normalized_shape: Any) -> tuple[int, ...]:
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    if k == 0 or x.ndim < k or tuple(x.shape[x.ndim - k :]) != shape:
        raise ShapeError(
            f"{fn}: normalized_shape {list(shape)} must be the input's last dims, got an input "
            f"of shape {shape_str(x.shape)}"
        )
    return tuple(range(x.ndim - k, x.ndim))


def layer_norm(
    input: Tensor,  # noqa: A002
    normalized_shape: Any,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
    *,
    _what: str = "layer_norm",
) -> Tensor:
    """(x − mean) / √(var + eps) · weight + bias over the last dims (the biased variance)."""
    x = _x(input)
    dims = _normalized_dims(_what, x, normalized_shape)
    mu = x.mean(dim=dims, keepdim=True)
    xc = x - mu
    var = (xc * xc).mean(dim=dims, keepdim=True)
    y = xc / (var + eps).sqrt()
    y = y if weight is None else y * weight
    return y if bias is None else y + bias


def rms_norm(
    input: Tensor,  # noqa: A002
    normalized_shape: Any,
    weight: Tensor | None = None,
    eps: float | None = None,
    *,
    _what: str = "rms_norm",
) -> Tensor:
    """x / √(mean(x²) + eps) · weight over the last dims; eps None is the dtype's machine
    epsilon (PyTorch's default)."""
    x = _x(input)
    dims = _normalized_dims(_what, x, normalized_shape)
    eps = float(np.finfo(x.dtype).eps) if eps is None else eps
    y = x / ((x * x).mean(dim=dims, keepdim=True) + eps).sqrt()
    return y if weight is None else y * weight


def group_norm(
    input: Tensor,  # noqa: A002
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
    *,
    _what: str = "group_norm",
) -> Tensor:
    """Layer norm over each group of C/num_groups channels of [N, C, *] (and its spatial
    dims), then a per-channel weight and bias."""
    x = _x(input)
    if x.ndim < 2 or not isinstance(x.shape[1], int) or x.shape[1] % num_groups:
        raise ShapeError(
            f"{_what}: expects [N, C, *] with C divisible by num_groups={num_groups}, got "
            f"{shape_str(x.shape)}"
        )
    n, c, rest = x.shape[0], x.shape[1], tuple(x.shape[2:])
    g = T.reshape(x, n, num_groups, -1)
    y = T.reshape(layer_norm(g, g.shape[2:], eps=eps, _what=_what), *x.shape)
    per_channel = (c,) + (1,) * len(rest)
    y = y if weight is None else y * T.reshape(weight, *per_channel)
    return y if bias is None else y + T.reshape(bias, *per_channel)


def _additive_mask(what: str, mask: Any, like: Tensor, keep_true: bool) -> Tensor:
    """A boolean mask as 0 / −inf scores (``keep_true``: True marks the entries that take part,
    SDPA's convention; else True marks those left out, MultiheadAttention's), a float mask
    as it is (added to the scores)."""
    m = _x(mask)
    if m.dtype == np.bool_:
        zero, ninf = (T.tensor(np.array(v, like.dtype)) for v in (0.0, -np.inf))
        return T.where_(m, zero, ninf) if keep_true else T.where_(m, ninf, zero)
    if m.dtype.kind != "f":
        raise TypeError(f"{what}: a mask must be bool or float, got {m.dtype}")
    return m


def _broadcastable(what: str, name: str, mask: Tensor, scores: tuple) -> None:
    ms, ss = tuple(mask.shape), scores
    ok = len(ms) <= len(ss) and all(
        a == 1 or a == b or not isinstance(a, int) or not isinstance(b, int)
        for a, b in zip(ms[::-1], ss[::-1])
    )
    if not ok:
        raise ShapeError(
            f"{what}: {name} of shape {shape_str(ms)} does not broadcast to the attention "
            f"scores {shape_str(ss)} ([..., L, S]: queries by keys)"
        )


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Any = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
    *,
    _what: str = "scaled_dot_product_attention",
) -> Tensor:
    """softmax(q kᵀ · scale + mask) v over [..., L, E], [..., S, E], [..., S, Ev]; scale
    1/√E by default; a bool ``attn_mask`` keeps its True entries, a float one is added;
    ``is_causal`` keeps key j ≤ query i (top-left aligned, as PyTorch)."""
    _refuse(_what, enable_gqa=(enable_gqa, False))
    q, k, v = _x(query), _x(key), _x(value)
    if (
        q.ndim < 2
        or k.ndim < 2
        or v.ndim < 2
        or q.shape[-1] != k.shape[-1]
        or (k.shape[-2] != v.shape[-2])
    ):
        raise ShapeError(
            f"{_what}: query [..., L, E], key [..., S, E] and value [..., S, Ev] disagree: "
            f"{shape_str(q.shape)}, {shape_str(k.shape)}, {shape_str(v.shape)}"
        )
    if is_causal and attn_mask is not None:
        raise ValueError(f"{_what}: pass either attn_mask or is_causal=True, not both (PyTorch)")
    e = q.shape[-1]
    scores = (q @ T.swapaxes(k, -2, -1)) * (1.0 / math.sqrt(e) if scale is None else scale)
    if is_causal:
        ls = (q.shape[-2], k.shape[-2])
        scores = scores + _additive_mask(_what, np.tril(np.ones(ls, bool)), scores, True)
    elif attn_mask is not None:
        add = _additive_mask(_what, attn_mask, scores, keep_true=True)
        _broadcastable(_what, "attn_mask", add, tuple(scores.shape))
        scores = scores + add
    weights = T.softmax(scores, -1)
    if dropout_p > 0:
        weights = dropout(weights, dropout_p, True)
    return weights @ v


__all__ += [
    "embedding", "embedding_bag", "group_norm", "layer_norm", "rms_norm",
    "scaled_dot_product_attention",
]  # fmt: skip


# -- issue 13 . in-place activations: PyTorch's ``F.relu_`` ..., each its function with
# inplace=True (the input updated and returned; a leaf that requires grad refused)


def _in_place_form(fn: Any) -> Any:
    def in_place(input: Tensor, *args: Any, **kwargs: Any) -> Tensor:  # noqa: A002
        return fn(input, *args, **kwargs, inplace=True)

    in_place.__name__ = in_place.__qualname__ = fn.__name__ + "_"
    in_place.__doc__ = f"``{fn.__name__}(input, ..., inplace=True)``, as PyTorch's."
    return in_place


relu_ = _in_place_form(relu)
leaky_relu_ = _in_place_form(leaky_relu)
elu_ = _in_place_form(elu)
selu_ = _in_place_form(selu)
celu_ = _in_place_form(celu)
hardtanh_ = _in_place_form(hardtanh)
threshold_ = _in_place_form(threshold)
__all__ += ["celu_", "elu_", "hardtanh_", "leaky_relu_", "relu_", "selu_", "threshold_"]

# -- issue 13 . more layers' functional forms (symbp.nn.more)
from symbp.nn.more import (  # noqa: E402
    avg_pool1d,
    bilinear,
    conv1d,
    cosine_similarity,
    dropout1d,
    dropout2d,
    interpolate,
    max_pool1d,
    normalize,
    prelu,
    softmin,
)

__all__ += [
    "avg_pool1d",
    "bilinear",
    "conv1d",
    "cosine_similarity",
    "dropout1d",
    "dropout2d",
    "interpolate",
    "max_pool1d",
    "normalize",
    "prelu",
    "softmin",
]
