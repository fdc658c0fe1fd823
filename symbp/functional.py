"""PyTorch's ``torch.nn.functional`` spellings for convolution, pooling, dropout and batch norm.

Each takes Tensors, turns PyTorch's argument forms (an int or a pair, ``padding='same'``) into
the op's arg, and builds one node of the op table or a short composition of existing ops:

>>> import numpy as np, symbp
>>> from symbp import functional as F
>>> x = symbp.tensor(np.arange(16.0).reshape(1, 1, 4, 4))
>>> F.max_pool2d(x, 2).numpy().ravel().tolist()
[5.0, 7.0, 13.0, 15.0]
>>> F.conv2d(x, symbp.tensor(np.ones((1, 1, 3, 3))), padding="same").shape
symbp.Size([1, 1, 4, 4])

``conv2d`` is the ``conv2d`` op plus a broadcast bias add; ``max_pool2d`` and ``avg_pool2d``
are their ops; ``adaptive_avg_pool2d`` is a mean (output 1×1) or an average pool;
``dropout`` multiplies by a ``bernoulli`` mask; ``batch_norm`` is a composition of means,
elementwise formulas and broadcasts, so its gradient is derived like any other formula's.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import sympy

from symbp import tensor as T
from symbp.compiler import ops
from symbp.compiler.ir import ShapeError, int64, numel, shape_error, shape_str
from symbp.compiler.ops import Conv2dArg, Pool2dArg
from symbp.tensor import Tensor

_dropout_ids = itertools.count()


def _pair(value: Any, what: str) -> tuple[int, int]:
    """An int or a pair of ints as a (height, width) pair."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise ValueError(f"{what} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def _tensor(x: Any, like: Tensor | None = None) -> Tensor:
    if isinstance(x, Tensor):
        return x
    return T.tensor(x, dtype=like.dtype if like is not None else None)


def conv_arg(
    kernel: tuple[int, int],
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Conv2dArg:
    """The ``conv2d`` op's arg from PyTorch's forms; ``padding`` is an int, a pair, 'valid'
    or 'same' (stride 1; an odd total padding puts the extra row and column at the end, as
    PyTorch does)."""
    stride, dilation = _pair(stride, "conv2d: stride"), _pair(dilation, "conv2d: dilation")
    if min(stride) < 1 or min(dilation) < 1:
        raise ValueError(f"conv2d: stride {stride} and dilation {dilation} must be positive")
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    if padding == "valid":
        padding = 0
    if padding == "same":
        if stride != (1, 1):
            raise ValueError("conv2d: padding='same' is not supported for strided convolutions")
        total = [d * (k - 1) for d, k in zip(dilation, kernel)]
        pads = tuple((t // 2, t - t // 2) for t in total)
    elif isinstance(padding, str):
        raise ValueError(
            f"conv2d: padding must be an int, a pair, 'valid' or 'same', got {padding!r}"
        )
    else:
        ph, pw = _pair(padding, "conv2d: padding")
        if min(ph, pw) < 0:
            raise ValueError(f"conv2d: padding must be non-negative, got {padding!r}")
        pads = ((ph, ph), (pw, pw))
    return Conv2dArg(stride, pads, dilation, int(groups))  # type: ignore[arg-type]


def conv2d(
    input: Tensor,  # noqa: A002 (PyTorch's name)
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Tensor:
    """2-D convolution (cross-correlation) of NCHW ``input`` with ``weight`` [O, C/groups, kh, kw],
    plus ``bias`` [O] broadcast over batch and positions, as ``torch.nn.functional.conv2d``."""
    x = _tensor(input)
    w = _tensor(weight, x)
    arg = conv_arg(tuple(int(k) for k in w.shape[2:4]), stride, padding, dilation, groups)  # type: ignore[arg-type]
    y = T._result(ops.conv2d(x.node, w.node, arg), [x, w])
    if bias is None:
        return y
    b = _tensor(bias, x)
    if b.shape != (w.shape[0],):
        raise shape_error(
            f"conv2d: bias must have one entry per output channel ({w.shape[0]}), got shape "
            f"{shape_str(b.shape)}"
        )
    return y + b.reshape(1, -1, 1, 1)


def _pool_arg(
    what: str,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any = 1,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor: int | None = None,
) -> Pool2dArg:
    if ceil_mode:
        raise NotImplementedError(f"{what}: ceil_mode=True is not supported (floor only)")
    kernel = _pair(kernel_size, f"{what}: kernel_size")
    # PyTorch's default stride is the kernel size (stride=None or an empty list)
    stride = kernel if stride is None or stride == [] else _pair(stride, f"{what}: stride")
    padding, dilation = _pair(padding, f"{what}: padding"), _pair(dilation, f"{what}: dilation")
    if min(*kernel, *stride, *dilation) < 1 or min(padding) < 0:
        raise ValueError(
            f"{what}: kernel {kernel}, stride {stride} and dilation {dilation} must be "
            f"positive and padding {padding} non-negative"
        )
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(f"{what}: padding {padding} must be at most half the kernel size {kernel}")
    if divisor is not None and divisor == 0:
        raise ValueError(f"{what}: divisor_override must be non-zero")
    return Pool2dArg(kernel, stride, padding, dilation, bool(count_include_pad), divisor)


def max_pool2d(
    input: Tensor,  # noqa: A002
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor:
    """The maximum of each window (padding counts as -inf), as ``F.max_pool2d``; the gradient
    goes to each window's first maximum."""
    if return_indices:
        raise NotImplementedError("max_pool2d: return_indices=True is not supported")
    x = _tensor(input)
    arg = _pool_arg("max_pool2d", kernel_size, stride, padding, dilation, ceil_mode)
    return T._result(ops.maxpool2d(x.node, arg), [x])


def avg_pool2d(
    input: Tensor,  # noqa: A002
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """The mean of each window (zero padding, counted unless ``count_include_pad=False``)."""
    x = _tensor(input)
    arg = _pool_arg(
        "avg_pool2d",
        kernel_size,
        stride,
        padding,
        1,
        ceil_mode,
        count_include_pad,
        divisor_override,
    )
    return T._result(ops.avgpool2d(x.node, arg), [x])


def adaptive_avg_pool2d(input: Tensor, output_size: Any) -> Tensor:  # noqa: A002
    """Average pooling to a given output size: the mean over H and W for (1, 1), an average
    pool with kernel = stride = H/oh × W/ow when the output size divides the input size."""
    x = _tensor(input)
    if x.ndim != 4:
        raise shape_error(
            f"adaptive_avg_pool2d: expects a 4-D input [N, C, H, W], got {shape_str(x.shape)}"
        )
    h, w = x.shape[2:]
    size = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    oh, ow = (h if size[0] is None else size[0]), (w if size[1] is None else size[1])
    if (oh, ow) == (1, 1):
        return T.mean(x, (2, 3), keepdim=True)
    if oh < 1 or ow < 1 or h % oh or w % ow:
        raise NotImplementedError(
            f"adaptive_avg_pool2d: output size {oh}×{ow} must divide the input size {h}×{w} "
            f"(PyTorch's uneven windows are not supported)"
        )
    return avg_pool2d(x, (h // oh, w // ow))


def dropout(
    input: Tensor,  # noqa: A002
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    seed_name: str | None = None,
) -> Tensor:
    """Zero each entry with probability ``p`` and scale the rest by 1/(1 - p) (inverted
    dropout, as PyTorch); the identity when not ``training``.

    The mask is a ``bernoulli`` node fed by an int64 seed input: eagerly a fresh draw from
    symbp's generator (``symbp.manual_seed``), traced an input leaf named ``seed_name`` that
    the compiled program feeds ``lower.support.dropout_seed(base, t, k)`` at optimizer
    step ``t`` (``base``: ``fit``'s seed, or for ``step`` a draw from symbp's generator when the
    program is built). The mask is a hash of (seed, index): ``symbp.compiler.ops.bernoulli_mask``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    x = _tensor(input)
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0.0
    if x.has_value:
        from symbp.nn.init import generator

        seed = T.tensor(np.int64(generator().integers(0, 2**63 - 1)))
    else:
        name = seed_name or f"dropout{next(_dropout_ids)}.seed"
        seed = T.placeholder(name, (), int64)
    mask = T._result(ops.bernoulli(seed.node, 1.0 - p, x.shape, x.dtype), [seed], False)
    return x * mask / (1.0 - p)  # 1 - p stays exact in the formula when it can (3/4)


def _as_stat(stat: Any, like: Tensor, name: str) -> Tensor:
    """A running statistic (array or Tensor) as a Tensor in the input's dtype."""
    t = stat if isinstance(stat, Tensor) else T.tensor(np.asarray(stat))
    if t.shape != (like.shape[1],):
        raise shape_error(
            f"batch_norm: {name} must have one entry per channel ({like.shape[1]}), got shape "
            f"{shape_str(t.shape)}"
        )
    return T.cast(t, like.dtype)


def _world_size() -> int:
    from symbp import distributed

    return distributed.world_size()


def _psum(x: Tensor) -> Tensor:
    """``x`` summed over the ranks of a data-parallel job (``ops.AllReduce``)."""
    return T._unary_node(ops.psum(x.node), x)


def _count(count: Any, like: Tensor) -> Tensor:
    """The number ``count`` (maybe in the batch size B) as a 0-d constant of ``like``'s dtype."""
    return T._result(ops.const(count, (), like.dtype), [like], requires_grad=False)


def batch_norm_parts(
    x: Tensor,
    running_mean: Any,
    running_var: Any,
    weight: Tensor | None,
    bias: Tensor | None,
    training: bool,
    momentum: float,
    eps: float,
    sync: bool = False,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """(output, new running mean, new running variance); the new statistics are None unless
    ``training`` with running statistics given. No side effects: the caller writes them back.

    Training normalises with the batch's biased variance and moves the running variance
    toward the unbiased one, as PyTorch; otherwise the running statistics normalise.
    ``sync``: the batch statistics are those of the whole batch across the ranks of a
    data-parallel job (``nn.SyncBatchNorm``): the per-channel sums, the sums of squared
    deviations from the global mean and the counts are summed over the ranks (``ops.psum``).
    """
    if x.ndim < 2:
        raise shape_error(f"batch_norm: expects an input [N, C, ...], got {shape_str(x.shape)}")
    c = x.shape[1]
    axes = (0, *range(2, x.ndim))
    bshape = (1, c, *([1] * (x.ndim - 2)))  # per-channel values broadcast along the rest
    new_mean = new_var = None
    if training or running_mean is None:
        count = numel(tuple(x.shape[a] for a in axes))
        alone = not sync or _world_size() == 1
        if isinstance(count, int) and count <= 1 and training and alone:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input size "
                f"{list(x.shape)}"
            )
        if sync:  # two passes over the data, as the stable variance takes
            total = _psum(T.sum(x, axes, keepdim=True))
            n_all = _psum(_count(count, x))
            mean = total / n_all
            centred = x - mean
            var = _psum(T.sum(centred * centred, axes, keepdim=True)) / n_all
        else:
            mean = T.mean(x, axes, keepdim=True)
            centred = x - mean
            var = T.mean(centred * centred, axes, keepdim=True)
        y = centred / (var + eps).sqrt()
        if training and running_mean is not None:
            rm = _as_stat(running_mean, x, "running_mean")
            rv = _as_stat(running_var, x, "running_var")
            if sync:
                unbiased = (var * (n_all / (n_all - 1))).detach().reshape(c)
            else:
                n = sympy.sympify(count)
                unbiased = var.detach().reshape(c) * (n / (n - 1))
            new_mean = rm * (1 - momentum) + mean.detach().reshape(c) * momentum
            new_var = rv * (1 - momentum) + unbiased * momentum
    else:
        rm = _as_stat(running_mean, x, "running_mean").reshape(*bshape)
        rv = _as_stat(running_var, x, "running_var").reshape(*bshape)
        y = (x - rm) / (rv + eps).sqrt()
    if weight is not None:
        y = y * _tensor(weight, x).reshape(*bshape)
    if bias is not None:
        y = y + _tensor(bias, x).reshape(*bshape)
    return y, new_mean, new_var


def batch_norm(
    input: Tensor,  # noqa: A002
    running_mean: Any,
    running_var: Any,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalisation over every axis but the channels (axis 1), as ``F.batch_norm``.

    In training the running statistics (NumPy arrays, or Tensors with values) are updated in
    place, as PyTorch does; a traced call cannot do that, use ``nn.BatchNorm2d``, which
    exposes the updates to the compiler (``nn.state_updates``).
    """
    x = _tensor(input)
    y, new_mean, new_var = batch_norm_parts(
        x, running_mean, running_var, weight, bias, training, momentum, eps
    )
    for stat, new in ((running_mean, new_mean), (running_var, new_var)):
        if new is None:
            continue
        if not new.has_value:
            raise ShapeError(
                "batch_norm: a traced call cannot update running statistics in place; use "
                "nn.BatchNorm1d/2d, whose updates nn.state_updates(model) returns"
            )
        target = stat.numpy() if isinstance(stat, Tensor) else stat
        target[...] = new.numpy()
    return y


__all__ = [
    "adaptive_avg_pool2d",
    "avg_pool2d",
    "batch_norm",
    "batch_norm_parts",
    "conv2d",
    "conv_arg",
    "dropout",
    "max_pool2d",
]
