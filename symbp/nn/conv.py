"""Convolutional layers: Conv2d, pooling, dropout and batch norm, with PyTorch's semantics.

Each layer checks its input in the model's own terms ("Conv2d 'conv2' expects 32 input
channels, got input of shape [B,16,16,16]") and then calls ``symbp.functional``.

Buffers and tracing. Eagerly, ``BatchNorm`` updates its running statistics in place after each
training forward, as PyTorch. Traced (inputs without values), a layer cannot write anything:
it reads each buffer through an ``input`` leaf named after it (``bn1.running_mean``) and
records a ``StateUpdate`` per buffer, the leaf it read and, in training, the node of its new
value. ``state_updates(model)`` collects them after a trace: ``symbp.compile`` keeps each
buffer in the program's memory (the module's buffer becomes a view of it, as parameters do),
computes the ``new`` values with the gradients and writes them there with each update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy

from symbp import functional as F
from symbp.compiler.ir import B, Node, ShapeError, int64, numel, shape_str, toposort
from symbp.devices import check as check_device
from symbp.nn import init
from symbp.nn.module import Module
from symbp.tensor import Parameter, Tensor, get_default_dtype, placeholder, tensor


def _check_image(layer: Module, x: Tensor, channels: int | None = None) -> None:
    if x.ndim != 4:
        raise ShapeError(
            f"{layer.describe()} expects a 4-D input [N, C, H, W], got input of shape "
            f"{shape_str(x.shape)}"
        )
    if channels is not None and x.shape[1] != channels:
        raise ShapeError(
            f"{layer.describe()} expects {channels} input channels, got input of shape "
            f"{shape_str(x.shape)}"
        )


def _check_fits(layer: Module, x: Tensor, kernel, padding, dilation) -> None:
    """A window must fit the padded input at least once: an output of at least 1×1."""
    need = [max(1, d * (k - 1) + 1 - lo - hi) for k, (lo, hi), d in zip(kernel, padding, dilation)]
    if any(size < n for size, n in zip(x.shape[2:], need)):
        (t, b), (left, r) = padding
        pad = f"{t}" if t == b == left == r else f"{t}:{b},{left}:{r}"
        dil = f", dilation {dilation[0]}" if dilation != (1, 1) else ""
        raise ShapeError(
            f"{layer.describe()} (kernel {kernel[0]}×{kernel[1]}, padding {pad}{dil}) needs an "
            f"input of at least {need[0]}×{need[1]}, got input of shape {shape_str(x.shape)}: "
            f"its output would be empty"
        )


def _pair_repr(v: tuple[int, int] | int) -> str:
    return str(tuple(v)) if isinstance(v, tuple) else str(v)


class Conv2d(Module):
    """2-D convolution over NCHW input; weight [out, in/groups, kh, kw], PyTorch's init.

    ``padding`` is an int, a pair, 'valid' or 'same' (stride 1 only).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__()
        if device is not None:
            check_device(device, type(self).__name__)
        if padding_mode != "zeros":
            raise NotImplementedError(f"Conv2d: padding_mode={padding_mode!r} (only 'zeros')")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"Conv2d: in_channels {in_channels} and out_channels {out_channels} must be "
                f"divisible by groups {groups}"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = F._pair(kernel_size, "Conv2d: kernel_size")
        self.stride = F._pair(stride, "Conv2d: stride")
        self.dilation = F._pair(dilation, "Conv2d: dilation")
        self.padding = padding if isinstance(padding, str) else F._pair(padding, "padding")
        self.arg = F.conv_arg(self.kernel_size, stride, padding, dilation, groups)  # checks
        dtype = np.dtype(dtype or get_default_dtype())
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = Parameter(np.zeros(shape, dtype))
        self.bias = Parameter(np.zeros(out_channels, dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # kaiming_uniform_(a=sqrt(5)): U(±1/sqrt(fan_in)), fan_in = in/groups · kh · kw; the
        # bias uses the same bound, as PyTorch
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight._data[0].size
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        _check_image(self, x, self.in_channels)
        _check_fits(self, x, self.kernel_size, self.arg.padding, self.dilation)
        return F.conv2d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )

    def extra_repr(self) -> str:
        out = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding != (0, 0):
            out += (
                f", padding={self.padding!r}"
                if isinstance(self.padding, str)
                else (f", padding={self.padding}")
            )
        if self.dilation != (1, 1):
            out += f", dilation={self.dilation}"
        if self.groups != 1:
            out += f", groups={self.groups}"
        return out + ("" if self.bias is not None else ", bias=False")


class _Pool2d(Module):
    what = ""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation = dilation
        # an invalid window fails here, at construction
        self.arg = F._pool_arg(self.what, kernel_size, stride, padding, dilation)

    def check(self, x: Tensor) -> None:
        _check_image(self, x)
        _check_fits(self, x, self.arg.kernel, self.arg.pads, self.arg.dilation)

    def extra_repr(self) -> str:
        stride = self.kernel_size if self.stride is None else self.stride
        return (
            f"kernel_size={_pair_repr(self.kernel_size)}, stride={_pair_repr(stride)}, "
            f"padding={_pair_repr(self.padding)}"
        )


class MaxPool2d(_Pool2d):
    """The maximum of each window; stride defaults to the kernel size. Gradients go to the
    first maximum of each window, as PyTorch."""

    what = "max_pool2d"

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        dilation: Any = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ):
        if return_indices or ceil_mode:
            raise NotImplementedError("MaxPool2d: return_indices and ceil_mode are not supported")
        super().__init__(kernel_size, stride, padding, dilation)

    def forward(self, x: Tensor) -> Tensor:
        self.check(x)
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation)


class AvgPool2d(_Pool2d):
    """The mean of each window; zero padding counts unless ``count_include_pad=False``."""

    what = "avg_pool2d"

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ):
        if ceil_mode:
            raise NotImplementedError("AvgPool2d: ceil_mode is not supported")
        super().__init__(kernel_size, stride, padding)
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, x: Tensor) -> Tensor:
        self.check(x)
        return F.avg_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            count_include_pad=self.count_include_pad,
            divisor_override=self.divisor_override,
        )


class AdaptiveAvgPool2d(Module):
    """Average pooling to ``output_size``: (1, 1) is the mean over H and W (global pooling)."""

    def __init__(self, output_size: Any):
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        _check_image(self, x)
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class Dropout(Module):
    """Inverted dropout: in training, zero entries with probability ``p`` and scale the rest
    by 1/(1 - p); in eval mode, the identity. Eager masks are seeded by symbp's generator,
    compiled ones by (``fit``'s seed, the step): see ``functional.dropout``."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p, self.inplace = float(p), inplace

    def forward(self, x: Tensor) -> Tensor:
        out = F.dropout(x, self.p, self.training, seed_name=f"{self._path}.seed")
        # inplace=True: x itself holds the result (PyTorch's); eval returns x unchanged
        return x._inplace("dropout_", out) if self.inplace and out is not x else out

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


@dataclass(frozen=True, eq=False)
class StateUpdate:
    """A buffer a traced forward read, and (training only) its new value after the step."""

    module: Module
    buffer: str  # the buffer's attribute name on ``module``
    read: Node  # the input leaf the traced graph reads the buffer through
    new: Node | None  # its new value, an output for the compiler to write back; None: read only
    count: Any = None  # the values per channel of the batch it comes from (a Dim, maybe in B)

    @property
    def name(self) -> str:
        return str(self.read.arg)

    def min_batch(self) -> int:
        """The smallest batch that updates it: PyTorch needs more than one value per channel."""
        if self.new is None or self.count is None:
            return 1
        per_row = sympy.sympify(self.count).xreplace({B: 1})
        return 2 if per_row <= 1 else 1


_STATS = ("running_mean", "running_var")


class _BatchNorm(Module):
    """Batch normalisation per channel (axis 1), PyTorch's running statistics and modes."""

    dims: tuple[int, ...] = ()
    _sync = False  # batch statistics summed over the ranks of a data-parallel job

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ):
        super().__init__()
        if device is not None:
            check_device(device, type(self).__name__)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self._has_bias = bias  # PyTorch 2.13's bias=False: a scale without a shift
        dtype = np.dtype(dtype or get_default_dtype())
        self.weight = Parameter(np.ones(num_features, dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_features, dtype)) if affine and bias else None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=int64))
        self._traced: list[StateUpdate] = []

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            for name, value in zip((*_STATS, "num_batches_tracked"), (0, 1, 0)):
                self._state(name)[...] = value

    def _check_input_dim(self, x: Tensor) -> None:
        if x.ndim not in self.dims:
            want = " or ".join(f"{d}-D" for d in self.dims)
            raise ShapeError(
                f"{self.describe()} expects a {want} input, got input of shape {shape_str(x.shape)}"
            )

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        if x.shape[1] != self.num_features:
            raise ShapeError(
                f"{self.describe()} expects {self.num_features} channels, got input of shape "
                f"{shape_str(x.shape)}"
            )
        self._traced = []
        traced = not x.has_value
        stats = self._stats(traced)  # None without running statistics: batch statistics always
        update = self.training and stats is not None
        mean, var = stats if stats is not None else (None, None)
        y, new_mean, new_var = F.batch_norm_parts(
            x,
            mean,
            var,
            self.weight,
            self.bias,
            self.training,
            self._factor(traced) if update else 0.0,
            self.eps,
            sync=self._sync and self.training,
        )
        if traced and stats is not None:
            news = (new_mean, new_var) if update else (None, None)
            count = numel((x.shape[0], *x.shape[2:]))
            self._traced = [
                StateUpdate(self, name, s.node, None if new is None else new.node, count)
                for name, s, new in zip(_STATS, stats, news)
            ]
        elif update:  # PyTorch's side effect: the buffers move after each training forward
            assert new_mean is not None and new_var is not None
            self._state("running_mean")[...] = new_mean.numpy()
            self._state("running_var")[...] = new_var.numpy()
            self._state("num_batches_tracked")[...] += 1
        return y

    def _factor(self, traced: bool) -> float:
        """The weight of this batch in the running statistics: momentum, or 1/steps when
        momentum is None (a cumulative average)."""
        if self.momentum is not None:
            return self.momentum
        if traced:  # 1/steps changes every step: a compiled step would need a step input
            raise NotImplementedError(
                f"{self.describe()}: momentum=None (a cumulative average) works eagerly only"
            )
        return 1.0 / (int(self._state("num_batches_tracked")) + 1)

    def _stats(self, traced: bool) -> tuple[Tensor, Tensor] | None:
        """The running statistics as Tensors: values eagerly, named input leaves traced."""
        if not self.track_running_stats:
            return None
        bufs = [self._state(n) for n in _STATS]
        if traced:
            mean, var = (
                placeholder(f"{self._path}.{n}", b.shape, b.dtype) for n, b in zip(_STATS, bufs)
            )
        else:
            mean, var = (tensor(b) for b in bufs)
        return mean, var

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, bias={self.bias is not None}, "
            f"track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Batch norm over [N, C] or [N, C, L] input."""

    dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over [N, C, H, W] input."""

    dims = (4,)


class SyncBatchNorm(_BatchNorm):
    """Batch norm over [N, C, ...] input whose training statistics are those of the whole
    batch across the ranks of a data-parallel job (``symbp.distributed``), PyTorch's
    ``nn.SyncBatchNorm``: the per-channel sums, sums of squared deviations and counts are
    summed over the ranks, in the forward pass and (their cotangents) in the backward pass.

    In a program compiled with ``distributed=True`` the sums run inside the compiled step;
    eagerly after ``symbp.distributed.init()`` they go through mpi4py; in one process it is
    ``BatchNorm``. Unlike PyTorch's, it needs no GPU. Ranks synchronise over the
    communicator given to ``symbp.distributed.init``.
    """

    _sync = True

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: Any = None,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device,
                         dtype, bias=bias)  # fmt: skip
        if process_group is not None:
            raise NotImplementedError(
                "SyncBatchNorm: process_group is not supported; symbp synchronises over the "
                "communicator given to symbp.distributed.init(comm) (a split communicator "
                "scopes it)"
            )
        self.process_group = None

    def _check_input_dim(self, x: Tensor) -> None:
        if x.ndim < 2:  # PyTorch's words, after the layer's name and the shape
            raise ValueError(
                f"{self.describe()}: expected at least 2D input (got {x.ndim}D input of shape "
                f"{shape_str(x.shape)})"
            )
        if x.shape[1] == 0:
            raise ValueError(
                f"{self.describe()}: number of input channels should be non-zero "
                f"(input of shape {shape_str(x.shape)})"
            )

    @classmethod
    def convert_sync_batchnorm(cls, module: Module, process_group: Any = None) -> Module:
        """``module`` with every ``BatchNorm1d``/``BatchNorm2d`` in it replaced by a
        ``SyncBatchNorm`` holding the same parameters and buffers (the same objects) and
        mode; a batch norm itself is returned converted, as PyTorch's."""
        out = module
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            out = cls(module.num_features, module.eps, module.momentum, module.affine,
                      module.track_running_stats, process_group, bias=module._has_bias)  # fmt: skip
            for name in ("weight", "bias"):
                setattr(out, name, getattr(module, name))
            for name, buf in module._buffers.items():
                out.register_buffer(name, buf)
            out.train(module.training)
        for name, child in list(module._modules.items()):
            if child is not None:
                converted = cls.convert_sync_batchnorm(child, process_group)
                if converted is not child:
                    out.add_module(name, converted)
        return out


def state_updates(model: Module) -> list[StateUpdate]:
    """The buffers the last traced forward of ``model`` read, and their new values.

    After ``symbp.trace`` of a model with batch norm, the compiler binds each update's
    ``read`` leaf to ``getattr(u.module, u.buffer)`` and, when ``u.new`` is not None, adds it
    to the program's outputs and copies its value into that buffer after every step. Eager
    forwards update buffers themselves and record nothing here.
    """
    out: list[StateUpdate] = []
    for m in model.modules():
        out.extend(getattr(m, "_traced", ()))
    return out


def check_compilable(model: Any) -> None:
    """Prepare ``model`` for a trace by ``symbp.compile``: forget the state updates of earlier
    traces, and raise ``NotImplementedError`` naming the first layer the compiled program
    cannot train: a BatchNorm with ``momentum=None`` (a cumulative average, whose factor
    1/steps would have to be an input of every step)."""
    if not isinstance(model, Module):  # a plain function of tensors: nothing to check
        return
    for path, m in model.named_modules():
        if not isinstance(m, _BatchNorm):
            continue
        m._traced = []
        if m.training and m.track_running_stats and m.momentum is None:
            layer = f"{type(m).__name__} '{path}'" if path else type(m).__name__
            raise NotImplementedError(
                f"symbp.compile: {layer} with momentum=None (a cumulative average of the "
                f"batch statistics) trains eagerly only; give it a momentum (PyTorch's default "
                f"is 0.1), or call .eval() on it"
            )


def mode_dependent(m: Module) -> bool:
    """Whether ``m`` computes differently in training and eval mode (Dropout, BatchNorm)."""
    return isinstance(m, (Dropout, _BatchNorm))


def program_inputs(model: Any, traced: Any) -> tuple[list[StateUpdate], list[Node]]:
    """What a traced program of ``model`` reads besides its data, parameters and constants.

    Returns the ``StateUpdate``s of the buffers the trace reads (running statistics; ``new``
    set in training) and the seed leaves of its dropout masks, in program order. Any other
    leaf is an error naming it: nothing would feed it.
    """
    updates = state_updates(model) if isinstance(model, Module) else []
    news = [u.new for u in updates if u.new is not None]
    order = toposort([*traced.outputs, *news])
    reached = set(order)
    updates = [u for u in updates if u.read in reached]  # a layer the output does not use
    seeds = [n.src[0] for n in order if n.op == "bernoulli" and n.src[0].op == "input"]
    seeds = [s for s in dict.fromkeys(seeds) if s not in traced.constants]
    known = {
        *traced.inputs.values(),
        *(p.node for p in traced.params.values()),
        *traced.constants,
        *(u.read for u in updates),
        *seeds,
    }
    dtype = traced.outputs[0].dtype
    for n in order:
        if n.op == "input" and n not in known:
            raise ShapeError(
                f"symbp.compile: the model reads '{n.arg}' {shape_str(n.shape)}, which is "
                f"none of its inputs, parameters, buffers or dropout seeds: nothing feeds it"
            )
    for u in updates:
        if u.read.dtype != dtype:
            raise ShapeError(
                f"symbp.compile: {u.module.describe()} keeps its {u.buffer} in {u.read.dtype}, "
                f"the model computes in {dtype}: convert the whole model with .float() or "
                f".double()"
            )
    return updates, seeds


__all__ = [
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "MaxPool2d",
    "StateUpdate",
    "SyncBatchNorm",
    "check_compilable",
    "mode_dependent",
    "program_inputs",
    "state_updates",
]
