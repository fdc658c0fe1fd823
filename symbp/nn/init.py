"""Parameter initialisers, in place, as ``torch.nn.init`` (seeded by ``symbp.manual_seed``)."""

from __future__ import annotations

import math

import numpy as np

from symbp import random as _random
from symbp.tensor import Parameter

# The default generator lives in symbp.random; these two names stay for existing callers.
manual_seed = _random.manual_seed


def generator() -> np.random.Generator:
    return _random.default_generator.numpy_generator


def _fill(p: Parameter, values: np.ndarray) -> Parameter:
    p.data = values.astype(p._data.dtype).reshape(p._data.shape)
    return p


def uniform_(p: Parameter, a: float = 0.0, b: float = 1.0) -> Parameter:
    return _fill(p, generator().uniform(a, b, p._data.shape))


def normal_(p: Parameter, mean: float = 0.0, std: float = 1.0) -> Parameter:
    return _fill(p, generator().normal(mean, std, p._data.shape))


def constant_(p: Parameter, value: float) -> Parameter:
    return _fill(p, np.full(p.data.shape, value))


def zeros_(p: Parameter) -> Parameter:
    return constant_(p, 0.0)


def ones_(p: Parameter) -> Parameter:
    return constant_(p, 1.0)


def _fans(p: Parameter) -> tuple[int, int]:
    shape = p._data.shape
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need at least 2 dimensions, got {list(shape)}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _gain(nonlinearity: str, a: float = 0.0) -> float:
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1 + a**2))
    if nonlinearity == "tanh":
        return 5.0 / 3
    return 1.0


def kaiming_uniform_(
    p: Parameter, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> Parameter:
    fan = _fans(p)[0 if mode == "fan_in" else 1]
    bound = _gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return uniform_(p, -bound, bound)


def kaiming_normal_(
    p: Parameter, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> Parameter:
    fan = _fans(p)[0 if mode == "fan_in" else 1]
    return normal_(p, 0.0, _gain(nonlinearity, a) / math.sqrt(fan))


def xavier_uniform_(p: Parameter, gain: float = 1.0) -> Parameter:
    fan_in, fan_out = _fans(p)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(p, -bound, bound)


def xavier_normal_(p: Parameter, gain: float = 1.0) -> Parameter:
    fan_in, fan_out = _fans(p)
    return normal_(p, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))
