"""PyTorch-style layers and losses; each is a composition of symbp's tensor ops."""

from symbp.nn import functional, init
from symbp.nn.containers import ModuleDict, ModuleList, ParameterDict, ParameterList
from symbp.nn.conv import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    MaxPool2d,
    StateUpdate,
    SyncBatchNorm,
    state_updates,
)
from symbp.nn.layers import (
    CELU,
    ELU,
    GELU,
    SELU,
    Flatten,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    Identity,
    LeakyReLU,
    Linear,
    LogSigmoid,
    LogSoftmax,
    Mish,
    ReLU,
    ReLU6,
    Sequential,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Softsign,
    Tanh,
    Tanhshrink,
    Threshold,
)
from symbp.nn.losses import (
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
)
from symbp.nn.module import Module
from symbp.nn.more import (
    AvgPool1d,
    Bilinear,
    Conv1d,
    CosineSimilarity,
    Dropout1d,
    Dropout2d,
    MaxPool1d,
    PReLU,
    Softmin,
    Unflatten,
    Upsample,
)
from symbp.tensor import Parameter

__all__ = [
    "CELU",
    "ELU",
    "GELU",
    "SELU",
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BCELoss",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "CosineEmbeddingLoss",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "Hardsigmoid",
    "Hardswish",
    "Hardtanh",
    "HuberLoss",
    "Identity",
    "KLDivLoss",
    "L1Loss",
    "LeakyReLU",
    "Linear",
    "LogSigmoid",
    "LogSoftmax",
    "MSELoss",
    "MarginRankingLoss",
    "MaxPool2d",
    "Mish",
    "Module",
    "ModuleDict",
    "ModuleList",
    "NLLLoss",
    "Parameter",
    "ParameterDict",
    "ParameterList",
    "ReLU",
    "ReLU6",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "SmoothL1Loss",
    "SoftMarginLoss",
    "Softmax",
    "Softplus",
    "Softsign",
    "StateUpdate",
    "SyncBatchNorm",
    "Tanh",
    "Tanhshrink",
    "Threshold",
    "functional",
    "init",
    "state_updates",
]

# issue 12 . shaping: the padding layers
from symbp.nn import padding as _padding
from symbp.nn.padding import *  # noqa: F403

__all__ += _padding.__all__

# issue 17 . recurrent layers (RNN, LSTM, GRU and their cells)
from symbp.nn import rnn as _rnn  # noqa: E402 (after the shaping family's block)
from symbp.nn.rnn import *  # noqa: E402, F403

__all__ += _rnn.__all__

# issue 17 . sequence and attention: embeddings, normalisation, attention, transformer
from symbp.nn import attention as _attention  # noqa: E402
from symbp.nn import normalization as _normalization  # noqa: E402
from symbp.nn import sparse as _sparse  # noqa: E402
from symbp.nn import transformer as _transformer  # noqa: E402
from symbp.nn.attention import *  # noqa: E402, F403
from symbp.nn.normalization import *  # noqa: E402, F403
from symbp.nn.sparse import *  # noqa: E402, F403
from symbp.nn.transformer import *  # noqa: E402, F403

__all__ += _sparse.__all__ + _normalization.__all__ + _attention.__all__ + _transformer.__all__

# issue 13: more of PyTorch's layers (compositions of supported ops)
__all__ += [
    "AvgPool1d",
    "Bilinear",
    "Conv1d",
    "CosineSimilarity",
    "Dropout1d",
    "Dropout2d",
    "MaxPool1d",
    "PReLU",
    "Softmin",
    "Unflatten",
    "Upsample",
]
from symbp.nn import utils  # noqa: E402  (torch.nn.utils: clip_grad_norm_ ...)

__all__ += ["utils"]
