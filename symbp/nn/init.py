"""Parameter initialisers, in place, as ``torch.nn.init`` (seeded by ``symbp.manual_seed``)."""

from __future__ import annotations

import math

import numpy as np

from symbp import random as _random
from symbp.grad_mode import no_grad
from symbp.tensor import Parameter, Tensor

# The default generator lives in symbp.random; these two names stay for existing callers.
manual_seed = _random.manual_seed


def generator() -> np.random.Generator:
    return _random.default_generator.numpy_generator


def _fill(p: Tensor, values: np.ndarray) -> Tensor:
    """``values`` into ``p`` in place, as PyTorch's initialisers (under no_grad): a Parameter
    takes them as its new data, any other tensor in its own memory."""
    if isinstance(p, Parameter):
        p.data = values.astype(p._data.dtype).reshape(_arr(p).shape)
    else:
        with no_grad():
            p.copy_(np.asarray(values).reshape(tuple(p.shape)))
    return p


def _arr(p: Tensor) -> np.ndarray:
    if not isinstance(p, Tensor):
        raise TypeError(f"nn.init: expected a Tensor, got {type(p).__name__}")
    return p._data if isinstance(p, Parameter) else p.numpy()


def uniform_(p: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    return _fill(p, generator().uniform(a, b, _arr(p).shape))


def normal_(p: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    return _fill(p, generator().normal(mean, std, _arr(p).shape))


def constant_(p: Tensor, value: float) -> Tensor:
    return _fill(p, np.full(_arr(p).shape, value))


def zeros_(p: Tensor) -> Tensor:
    return constant_(p, 0.0)


def ones_(p: Tensor) -> Tensor:
    return constant_(p, 1.0)


def _fans(p: Tensor) -> tuple[int, int]:
    shape = _arr(p).shape
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need at least 2 dimensions, got {list(shape)}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """PyTorch's recommended gain for ``nonlinearity`` (``'leaky_relu'`` with slope ``param``,
    0.01 by default)."""
    linear = {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d"}
    linear |= {"conv_transpose3d", "sigmoid"}
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"negative_slope {slope} not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _gain(nonlinearity: str, a: float = 0.0) -> float:
    return calculate_gain(nonlinearity, a)


def kaiming_uniform_(
    p: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> Tensor:
    fan = _fans(p)[0 if mode == "fan_in" else 1]
    bound = _gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return uniform_(p, -bound, bound)


def kaiming_normal_(
    p: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> Tensor:
    fan = _fans(p)[0 if mode == "fan_in" else 1]
    return normal_(p, 0.0, _gain(nonlinearity, a) / math.sqrt(fan))


def xavier_uniform_(p: Tensor, gain: float = 1.0) -> Tensor:
    fan_in, fan_out = _fans(p)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(p, -bound, bound)


def xavier_normal_(p: Tensor, gain: float = 1.0) -> Tensor:
    fan_in, fan_out = _fans(p)
    return normal_(p, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def trunc_normal_(
    p: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0
) -> Tensor:
    """Normal(mean, std) values redrawn until inside [a, b] (symbp's stream, PyTorch's law)."""
    shape = _arr(p).shape
    out = generator().normal(mean, std, shape)
    bad = (out < a) | (out > b)
    while bad.any():
        out[bad] = generator().normal(mean, std, int(bad.sum()))
        bad = (out < a) | (out > b)
    return _fill(p, out)


def eye_(p: Tensor) -> Tensor:
    shape = _arr(p).shape
    if len(shape) != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    return _fill(p, np.eye(*shape))


def orthogonal_(p: Tensor, gain: float = 1.0) -> Tensor:
    """A (semi-)orthogonal matrix, as PyTorch's: the Q of a normal matrix's QR, its signs
    fixed by R's diagonal, over the tensor flattened to [rows, rest]."""
    shape = _arr(p).shape
    if len(shape) < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    rows = shape[0]
    cols = int(np.prod(shape[1:]))
    flat = generator().normal(0.0, 1.0, (rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return _fill(p, gain * q.reshape(shape))
