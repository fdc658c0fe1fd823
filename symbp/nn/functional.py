"""``torch.nn.functional`` for symbp: PyTorch's names, argument order and defaults.

>>> import symbp, symbp.nn.functional as F
>>> F.mse_loss(symbp.tensor([1.0, 2.0]), symbp.tensor([0.0, 0.0])).item()
2.5

Nothing here has maths of its own where symbp already has it: activations are the op table's
elementwise ops, softmax the tensor module's, convolution, pooling, dropout and batch norm
``symbp.functional``'s, and the losses the ``symbp.nn`` loss modules' ``forward``. Only the
Huber / smooth L1 loss, which has no module yet, is composed here.

An argument symbp cannot honour (a class ``weight``, a label equal to ``ignore_index``,
``label_smoothing``, PyTorch's deprecated ``size_average``/``reduce``) raises an error naming
it; none is ignored.
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
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    _Loss,
)
from symbp.tensor import Tensor


def _x(input: Any) -> Tensor:  # noqa: A002 (PyTorch's name)
    return input if isinstance(input, Tensor) else T.tensor(input)


def _no_inplace(fn: str, inplace: bool) -> None:
    # symbp tensors are values in a graph: there is nothing to overwrite
    if inplace:
        raise NotImplementedError(
            f"{fn}: inplace=True is not supported (symbp has no in-place ops)"
        )


# --- activations --------------------------------------------------------------------------


def relu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    _no_inplace("relu", inplace)
    return T.unary("relu", input)


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
    _no_inplace("silu", inplace)
    return T.unary("silu", input)


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
    """``symbp.functional.dropout`` (inverted dropout), refusing ``inplace=True``."""
    _no_inplace("dropout", inplace)
    return _dropout(input, p, training)


# --- losses -------------------------------------------------------------------------------


def _loss_args(fn: str, size_average: Any = None, reduce: Any = None, weight: Any = None) -> None:
    if size_average is not None or reduce is not None:
        raise NotImplementedError(
            f"{fn}: size_average and reduce are deprecated in PyTorch and not supported; "
            f"use reduction='mean'|'sum'|'none'"
        )
    if weight is not None:
        raise NotImplementedError(f"{fn}: weight is not supported yet (pass weight=None)")


def _ignore_index(fn: str, input: Tensor, target: Any, ignore_index: int) -> None:  # noqa: A002
    """symbp has no ignored labels: an error if one would be ignored, or might be when traced."""
    t = _x(target)
    if t.dtype.kind == "f":  # class probabilities: PyTorch has no ignore_index for them
        return
    if t.has_value:
        if (t.numpy() == ignore_index).any():
            raise NotImplementedError(
                f"{fn}: target contains ignore_index={ignore_index}; ignored labels are not "
                f"supported yet"
            )
    elif input.ndim == 2 and 0 <= ignore_index < input.shape[1]:
        raise NotImplementedError(
            f"{fn}: ignore_index={ignore_index} is a class of the input and the traced target "
            f"cannot be checked for it; ignored labels are not supported yet"
        )


def _run(loss: type[_Loss], reduction: str, input: Any, target: Any) -> Tensor:  # noqa: A002
    # the module's forward, not __call__: a functional call names no layer
    return loss(reduction).forward(_x(input), target)


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):  # noqa: A002
    _loss_args("mse_loss", size_average, reduce, weight)
    return _run(MSELoss, reduction, input, target)


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):  # noqa: A002
    _loss_args("l1_loss", size_average, reduce, weight)
    return _run(L1Loss, reduction, input, target)


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):  # noqa: A002
    """0.5 d² for |d| < delta, else delta (|d| - delta/2), as m = min(|d|, delta):
    0.5 m² + delta (|d| - m), one formula whose derivative is d inside and ±delta outside."""
    _loss_args("huber_loss", weight=weight)
    if not delta > 0:
        raise ValueError(f"huber_loss: delta must be positive, got {delta!r}")
    holder = _Loss(reduction)  # checks reduction and the shapes, as the loss modules do
    x = _x(input)
    t = holder.as_tensor(target, x)
    holder.same_shape(x, t)
    a = (x - t).abs()
    m = T.binary("minimum", a, float(delta))
    return holder.reduce(m * m * 0.5 + (a - m) * delta)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):  # noqa: A002
    """The Huber loss with delta = beta, divided by beta (PyTorch's definition)."""
    _loss_args("smooth_l1_loss", size_average, reduce)
    if beta == 0:
        return l1_loss(input, target, reduction=reduction)
    return huber_loss(input, target, reduction, beta) / beta


def nll_loss(
    input,  # noqa: A002
    target,
    weight=None,
    size_average=None,
    ignore_index=-100,
    reduce=None,
    reduction="mean",
):
    _loss_args("nll_loss", size_average, reduce, weight)
    _ignore_index("nll_loss", _x(input), target, ignore_index)
    return _run(NLLLoss, reduction, input, target)


def cross_entropy(
    input,  # noqa: A002
    target,
    weight=None,
    size_average=None,
    ignore_index=-100,
    reduce=None,
    reduction="mean",
    label_smoothing=0.0,
):
    _loss_args("cross_entropy", size_average, reduce, weight)
    if label_smoothing != 0:
        raise NotImplementedError(
            f"cross_entropy: label_smoothing={label_smoothing!r} is not supported yet (only 0.0)"
        )
    _ignore_index("cross_entropy", _x(input), target, ignore_index)
    return _run(CrossEntropyLoss, reduction, input, target)


def binary_cross_entropy(
    input,  # noqa: A002
    target,
    weight=None,
    size_average=None,
    reduce=None,
    reduction="mean",
):
    _loss_args("binary_cross_entropy", size_average, reduce, weight)
    return _run(BCELoss, reduction, input, target)


def binary_cross_entropy_with_logits(
    input,  # noqa: A002
    target,
    weight=None,
    size_average=None,
    reduce=None,
    reduction="mean",
    pos_weight=None,
):
    _loss_args("binary_cross_entropy_with_logits", size_average, reduce, weight)
    if pos_weight is not None:
        raise NotImplementedError(
            "binary_cross_entropy_with_logits: pos_weight is not supported yet (pass None)"
        )
    return _run(BCEWithLogitsLoss, reduction, input, target)


__all__ = [
    "adaptive_avg_pool2d",
    "avg_pool2d",
    "batch_norm",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "conv2d",
    "cross_entropy",
    "dropout",
    "gelu",
    "huber_loss",
    "l1_loss",
    "linear",
    "log_softmax",
    "max_pool2d",
    "mse_loss",
    "nll_loss",
    "one_hot",
    "relu",
    "sigmoid",
    "silu",
    "smooth_l1_loss",
    "softmax",
    "softplus",
    "tanh",
]

# -- issue 12 . math (rows of this family go below this line)
# PyTorch's activations with their parameters, each a formula of ops.ELEMENTWISE with the
# parameters folded in as constants (inplace=True is refused, as by relu above).


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:  # noqa: A002
    _no_inplace("leaky_relu", inplace)
    return T.apply_math("leaky_relu", input, params=(negative_slope,))


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:  # noqa: A002
    _no_inplace("elu", inplace)
    return T.apply_math("elu", input, params=(alpha,))


def selu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    _no_inplace("selu", inplace)
    return T.apply_math("selu", input)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:  # noqa: A002
    _no_inplace("celu", inplace)
    if alpha == 0:
        raise ValueError("celu: alpha must not be 0 (the formula divides by it)")
    return T.apply_math("celu", input, params=(alpha,))


def mish(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    _no_inplace("mish", inplace)
    return T.apply_math("mish", input)


def hardtanh(
    input: Tensor,  # noqa: A002
    min_val: float = -1.0,
    max_val: float = 1.0,
    inplace: bool = False,
) -> Tensor:
    _no_inplace("hardtanh", inplace)
    if min_val > max_val:
        raise ValueError(
            f"hardtanh: min_val ({min_val}) cannot be greater than max_val ({max_val})"
        )
    return T.apply_math("hardtanh", input, params=(min_val, max_val))


def relu6(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    _no_inplace("relu6", inplace)
    return T.apply_math("relu6", input)


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    _no_inplace("hardsigmoid", inplace)
    return T.apply_math("hardsigmoid", input)


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    _no_inplace("hardswish", inplace)
    return T.apply_math("hardswish", input)


def softsign(input: Tensor) -> Tensor:  # noqa: A002
    return T.apply_math("softsign", input)


def tanhshrink(input: Tensor) -> Tensor:  # noqa: A002
    return T.apply_math("tanhshrink", input)


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:  # noqa: A002
    """x where x > threshold, else value (PyTorch's gradient is 0 at x = threshold)."""
    _no_inplace("threshold", inplace)
    return T.apply_math("threshold", input, params=(threshold, value))


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
