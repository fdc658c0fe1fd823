"""More of PyTorch's layers, each a composition of ops symbp has (issue 13).

PyTorch's constructor arguments, parameter names and layouts, and reprs. The 1-D convolution
and pooling layers run their 2-D counterparts on a unit height (an [N, C, L] input is read as
[N, C, 1, L]), so their formulas, gradients and compiled kernels are the 2-D ones.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from symbp import functional as F2
from symbp import tensor as T
from symbp.compiler.ir import ShapeError, shape_str
from symbp.devices import check as check_device
from symbp.nn import init
from symbp.nn.module import Module
from symbp.tensor import Parameter, Tensor, get_default_dtype


def _dtype(device: Any, dtype: Any, what: str) -> np.dtype:
    if device is not None:
        check_device(device, what)
    return np.dtype(dtype or get_default_dtype())


def _one(value: Any, what: str) -> int:
    """A 1-D layer's size argument: an int or a 1-tuple, as PyTorch takes it."""
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"{what} must be an int or a 1-tuple, got {value!r}")
        value = value[0]
    return int(value)


# ---------------------------------------------------------------- functional forms


def softmin(input: Tensor, dim: int | None = None) -> Tensor:  # noqa: A002 (PyTorch's name)
    """softmax(-x) along ``dim``."""
    if dim is None:  # PyTorch's legacy implicit dim: 0 for 0-D, 1-D and 3-D input, else 1
        dim = 0 if input.ndim in (0, 1, 3) else 1
    return T.softmax(-input, dim)


def prelu(input: Tensor, weight: Tensor) -> Tensor:  # noqa: A002
    """x where x > 0, else weight·x; one weight, or one per channel (axis 1)."""
    w = weight
    if w.numel() != 1:
        if input.ndim < 2 or input.shape[1] != w.shape[0]:
            raise ShapeError(
                f"prelu: {w.shape[0]} weights need an input with {w.shape[0]} channels on "
                f"axis 1, got input of shape {shape_str(input.shape)}"
            )
        w = w.reshape(-1, *([1] * (input.ndim - 2)))
    elif w.ndim:
        w = w.reshape(())
    return T.where_(input > 0, input, w * input)


def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y_k = x1ᵀ W_k x2 + b_k for W of shape [out, in1, in2], over any leading dims."""
    out, in1, in2 = weight.shape
    lead = tuple(input1.shape[:-1])
    if input1.shape[-1] != in1 or input2.shape[-1] != in2 or tuple(input2.shape[:-1]) != lead:
        raise ShapeError(
            f"bilinear: inputs of shapes {shape_str(input1.shape)} and {shape_str(input2.shape)} "
            f"do not fit a weight of shape {shape_str(weight.shape)}"
        )
    x1, x2 = input1.reshape(-1, in1), input2.reshape(-1, in2)
    # x1 · W_k for every k at once: [n, in1] @ [in1, out·in2], then the dot with x2 per k
    t = T.matmul(x1, weight.permute(1, 0, 2).reshape(in1, out * in2)).reshape(-1, out, in2)
    y = (t * x2.unsqueeze(1)).sum(-1)
    if bias is not None:
        y = y + bias
    return y.reshape(*lead, out)


def _channel_dropout(what: str, x: Tensor, p: float, training: bool, batched: bool) -> Tensor:
    """Zero whole channels with probability ``p`` (one draw per sample and channel, shared
    along the rest), scaling the kept ones by 1/(1 - p), as PyTorch's dropout1d/2d."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0:
        return x
    if not x.has_value:
        raise NotImplementedError(f"{what}: channel dropout runs eagerly only (not compiled)")
    keep = 2 if batched else 1  # [N, C, ...] or an unbatched [C, ...]
    shape = (*x.shape[:keep], *([1] * (x.ndim - keep)))
    # symbp's dropout of ones: the mask, 0 or 1/(1 - p), broadcast along each channel
    return x * F2.dropout(T.tensor(np.ones(shape, x.dtype)), p)


def dropout1d(
    input: Tensor,  # noqa: A002
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
) -> Tensor:
    if input.ndim not in (2, 3):
        raise ShapeError(f"dropout1d: expects a 2-D or 3-D input, got {shape_str(input.shape)}")
    out = _channel_dropout("dropout1d", input, p, training, input.ndim == 3)
    return input._inplace("dropout1d_", out) if inplace and out is not input else out


def dropout2d(
    input: Tensor,  # noqa: A002
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
) -> Tensor:
    # a 3-D input is read as [N, C, L], as PyTorch 2 reads it (channel-wise 1-D dropout)
    if input.ndim not in (3, 4):
        raise ShapeError(f"dropout2d: expects a 3-D or 4-D input, got {shape_str(input.shape)}")
    out = _channel_dropout("dropout2d", input, p, training, True)
    return input._inplace("dropout2d_", out) if inplace and out is not input else out


def _as_2d(what: str, x: Tensor) -> tuple[Tensor, bool]:
    """[N, C, L] as [N, C, 1, L] (and an unbatched [C, L] as [1, C, 1, L])."""
    if x.ndim not in (2, 3):
        raise ShapeError(f"{what}: expects a 2-D or 3-D input, got {shape_str(x.shape)}")
    unbatched = x.ndim == 2
    return (x.unsqueeze(0) if unbatched else x).unsqueeze(2), unbatched


def _from_2d(y: Tensor, unbatched: bool) -> Tensor:
    y = y.squeeze(2)
    return y.squeeze(0) if unbatched else y


def conv1d(
    input: Tensor,  # noqa: A002
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Tensor:
    x, unbatched = _as_2d("conv1d", input)
    pad = padding if isinstance(padding, str) else (0, _one(padding, "conv1d: padding"))
    y = F2.conv2d(
        x,
        weight.unsqueeze(2),
        bias,
        (1, _one(stride, "conv1d: stride")),
        pad,
        (1, _one(dilation, "conv1d: dilation")),
        groups,
    )
    return _from_2d(y, unbatched)


def max_pool1d(
    input: Tensor,  # noqa: A002
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor:
    x, unbatched = _as_2d("max_pool1d", input)
    k = _one(kernel_size, "max_pool1d: kernel_size")
    s = k if stride is None or stride == [] else _one(stride, "max_pool1d: stride")
    p, d = _one(padding, "max_pool1d: padding"), _one(dilation, "max_pool1d: dilation")
    y = F2.max_pool2d(x, (1, k), (1, s), (0, p), (1, d), ceil_mode, return_indices)
    return _from_2d(y, unbatched)


def avg_pool1d(
    input: Tensor,  # noqa: A002
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Tensor:
    x, unbatched = _as_2d("avg_pool1d", input)
    k = _one(kernel_size, "avg_pool1d: kernel_size")
    s = k if stride is None or stride == [] else _one(stride, "avg_pool1d: stride")
    p = _one(padding, "avg_pool1d: padding")
    y = F2.avg_pool2d(x, (1, k), (1, s), (0, p), ceil_mode, count_include_pad)
    return _from_2d(y, unbatched)


def interpolate(
    input: Tensor,  # noqa: A002
    size: Any = None,
    scale_factor: Any = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
    antialias: bool = False,
) -> Tensor:
    """Resize the spatial dims (all after N and C) by PyTorch's 'nearest' rule: output index
    i reads input index floor(i · scale), scale = in/out for ``size``, 1/scale_factor for
    ``scale_factor`` (as PyTorch when ``recompute_scale_factor`` is not True)."""
    if mode != "nearest":
        raise NotImplementedError(
            f"interpolate: mode={mode!r} is not supported (symbp has mode='nearest')"
        )
    if align_corners is not None or antialias:
        raise ValueError("interpolate: align_corners and antialias apply to other modes only")
    spatial = input.ndim - 2
    if spatial < 1:
        raise ShapeError(f"interpolate: expects [N, C, ...] input, got {shape_str(input.shape)}")
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor")
    ins = [int(n) for n in input.shape[2:]]
    if size is not None:
        outs = list(size) if isinstance(size, (tuple, list)) else [size] * spatial
        scales = [i / o for i, o in zip(ins, outs)]
    else:
        sf = list(scale_factor) if isinstance(scale_factor, (tuple, list)) else [scale_factor]
        sf = sf * spatial if len(sf) == 1 else sf
        outs = [math.floor(i * f) for i, f in zip(ins, sf)]
        scales = [i / o if recompute_scale_factor else 1.0 / f for i, o, f in zip(ins, outs, sf)]
    if len(outs) != spatial:
        raise ValueError(f"interpolate: {len(outs)} sizes for {spatial} spatial dims")
    y = input
    for d, (n, m, scale) in enumerate(zip(ins, outs, scales)):
        if m == n:
            continue
        # PyTorch's nearest: src = min(floor(dst * scale), n - 1), in float32 arithmetic
        src = np.minimum(np.floor(np.arange(m, dtype=np.float32) * np.float32(scale)), n - 1)
        y = y.index_select(2 + d, T.tensor(src.astype(np.int64)))
    return y


def normalize(
    input: Tensor,  # noqa: A002
    p: float = 2.0,
    dim: int = 1,
    eps: float = 1e-12,
    out: Any = None,
) -> Tensor:
    """x / max(‖x‖_p, eps) along ``dim``, as PyTorch's."""
    if out is not None:
        raise NotImplementedError("normalize: out= is not supported (symbp returns new tensors)")
    return input / input.norm(p, dim, keepdim=True).clamp_min(eps)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """Σ x1·x2 along ``dim`` of the two inputs each divided by its norm clamped at ``eps``
    (PyTorch's form since 1.12)."""
    n1 = x1.norm(2, dim, keepdim=True).clamp_min(eps)
    n2 = x2.norm(2, dim, keepdim=True).clamp_min(eps)
    return ((x1 / n1) * (x2 / n2)).sum(dim)


# ---------------------------------------------------------------- layers


class CosineSimilarity(Module):
    def __init__(self, dim: int = 1, eps: float = 1e-8):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return cosine_similarity(x1, x2, self.dim, self.eps)


class Softmin(Module):
    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return softmin(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class PReLU(Module):
    """max(0, x) + weight·min(0, x) with a learnable ``weight`` of ``num_parameters`` entries
    (1, or one per channel), initialised to ``init``."""

    def __init__(
        self, num_parameters: int = 1, init: float = 0.25, device: Any = None, dtype: Any = None
    ):
        super().__init__()
        self.num_parameters, self.init = num_parameters, init
        self.weight = Parameter(np.full(num_parameters, init, _dtype(device, dtype, "PReLU")))

    def forward(self, x: Tensor) -> Tensor:
        return prelu(x, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class Unflatten(Module):
    """Dim ``dim`` split into ``unflattened_size``."""

    def __init__(self, dim: int, unflattened_size: Any):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, x: Tensor) -> Tensor:
        d = self.dim % x.ndim
        return x.reshape(*x.shape[:d], *self.unflattened_size, *x.shape[d + 1 :])

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class Bilinear(Module):
    """y = x1ᵀ W x2 + b, W [out, in1, in2]; PyTorch's U(±1/sqrt(in1)) initialisation."""

    def __init__(
        self,
        in1_features: int,
        in2_features: int,
        out_features: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__()
        dt = _dtype(device, dtype, "Bilinear")
        self.in1_features, self.in2_features = in1_features, in2_features
        self.out_features = out_features
        self.weight = Parameter(np.zeros((out_features, in1_features, in2_features), dt))
        self.bias = Parameter(np.zeros(out_features, dt)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.in1_features)
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input1: Tensor, input2: Tensor) -> Tensor:
        return bilinear(input1, input2, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
            f"out_features={self.out_features}, bias={self.bias is not None}"
        )


class _ChannelDropout(Module):
    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p, self.inplace = float(p), inplace

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout1d(_ChannelDropout):
    """Zero whole channels of [N, C, L] (or [C, L]) input with probability ``p``."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout1d(x, self.p, self.training, self.inplace)


class Dropout2d(_ChannelDropout):
    """Zero whole channels of [N, C, H, W] input with probability ``p``."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout2d(x, self.p, self.training, self.inplace)


class Conv1d(Module):
    """1-D convolution of [N, C, L] input, weight [out, in/groups, k]: Conv2d on a unit height."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__()
        if padding_mode != "zeros":
            raise NotImplementedError(f"Conv1d: padding_mode={padding_mode!r} (only 'zeros')")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"Conv1d: in_channels {in_channels} and out_channels {out_channels} must be "
                f"divisible by groups {groups}"
            )
        dt = _dtype(device, dtype, "Conv1d")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = (_one(kernel_size, "Conv1d: kernel_size"),)
        self.stride = (_one(stride, "Conv1d: stride"),)
        self.dilation = (_one(dilation, "Conv1d: dilation"),)
        self.padding = padding if isinstance(padding, str) else (_one(padding, "padding"),)
        shape = (out_channels, in_channels // groups, self.kernel_size[0])
        self.weight = Parameter(np.zeros(shape, dt))
        self.bias = Parameter(np.zeros(out_channels, dt)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # U(±1/sqrt(in/groups · k))
        if self.bias is not None:
            fan_in = self.weight._data[0].size
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim not in (2, 3) or x.shape[-2] != self.in_channels:
            raise ShapeError(
                f"{self.describe()} expects [N, {self.in_channels}, L] input, got input of "
                f"shape {shape_str(x.shape)}"
            )
        pad = self.padding if isinstance(self.padding, str) else self.padding[0]
        return conv1d(x, self.weight, self.bias, self.stride[0], pad, self.dilation[0], self.groups)

    def extra_repr(self) -> str:
        out = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding != (0,):
            out += f", padding={self.padding}"
        if self.dilation != (1,):
            out += f", dilation={self.dilation}"
        if self.groups != 1:
            out += f", groups={self.groups}"
        if self.bias is None:
            out += ", bias=False"
        return out


class MaxPool1d(Module):
    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        dilation: Any = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ):
        super().__init__()
        if return_indices or ceil_mode:
            raise NotImplementedError("MaxPool1d: return_indices and ceil_mode are not supported")
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, x: Tensor) -> Tensor:
        return max_pool1d(x, self.kernel_size, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class AvgPool1d(Module):
    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ):
        super().__init__()
        if ceil_mode:
            raise NotImplementedError("AvgPool1d: ceil_mode is not supported")
        self.kernel_size = (_one(kernel_size, "AvgPool1d: kernel_size"),)
        self.stride = self.kernel_size if stride is None else (_one(stride, "AvgPool1d: stride"),)
        self.padding = (_one(padding, "AvgPool1d: padding"),)
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def forward(self, x: Tensor) -> Tensor:
        return avg_pool1d(
            x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class Upsample(Module):
    """``interpolate`` as a layer (mode 'nearest')."""

    def __init__(
        self,
        size: Any = None,
        scale_factor: Any = None,
        mode: str = "nearest",
        align_corners: bool | None = None,
        recompute_scale_factor: bool | None = None,
    ):
        super().__init__()
        if mode != "nearest":
            raise NotImplementedError(
                f"Upsample: mode={mode!r} is not supported (symbp has mode='nearest')"
            )
        self.size, self.mode = size, mode
        if isinstance(scale_factor, (tuple, list)):
            self.scale_factor: Any = tuple(float(f) for f in scale_factor)
        else:
            self.scale_factor = None if scale_factor is None else float(scale_factor)
        self.align_corners, self.recompute_scale_factor = align_corners, recompute_scale_factor

    def forward(self, x: Tensor) -> Tensor:
        return interpolate(
            x,
            self.size,
            self.scale_factor,
            self.mode,
            self.align_corners,
            self.recompute_scale_factor,
        )

    def extra_repr(self) -> str:
        if self.scale_factor is not None:
            return f"scale_factor={self.scale_factor}, mode={self.mode!r}"
        return f"size={self.size}, mode={self.mode!r}"
