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
from symbp.functional import (
    adaptive_avg_pool2d,
    avg_pool2d,
    batch_norm,
    conv2d,
    max_pool2d,
)
from symbp.functional import dropout as _dropout
from symbp.ir import ShapeError, int64, shape_str
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
