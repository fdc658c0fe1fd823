"""Recurrent layers: ``RNN``, ``LSTM``, ``GRU`` and their cells, as PyTorch's.

Same constructor arguments, parameter names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...),
layouts (gates stacked along dim 0 in PyTorch's order: LSTM i, f, g, o; GRU r, z, n), default
initialisation (every parameter U(-1/√hidden, 1/√hidden)) and returns (``output, h_n`` or
``output, (h_n, c_n)``), so a ``state_dict`` moves between the two.

Each (layer, direction) is one ``scan`` node (``symbp.compiler.loops``) over time, after the
input projection of all steps in one matmul: traced for ``symbp.compile``, the step is
derived, emitted and compiled once, whatever the sequence length (docs/guides/recurrent.md
measures it); eagerly the node runs the loop in NumPy, so the eager graph is the traced one
and ``symbp.formulas`` prints the same loop for both.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import sympy

from symbp import factories
from symbp import functional as F
from symbp import tensor as T
from symbp.api import scan
from symbp.compiler import ops
from symbp.compiler.ir import ShapeError, shape_str
from symbp.nn import functional as NF
from symbp.nn import init
from symbp.nn.module import Module
from symbp.tensor import Parameter, Tensor, get_default_dtype

# Gate rows per hidden unit in the stacked weights: LSTM i,f,g,o; GRU r,z,n; RNN one.
_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}
# What the formulas call a scan's step (ir.StepNames, marked on its tensor): the carry's
# parts and the gates.
_STEP_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "LSTM": {"carry": ("h", "c"), "gates": ("i", "f", "g", "o")},
    "GRU": {"gates": ("r", "z", "n")},
}


def _step(
    mode: str, xw: Tensor, h: Tensor, c: Tensor | None, w_hh: Tensor, b_hh: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """One time step of ``mode`` from the input's projection ``xw = x W_ihᵀ + b_ih``.

    The one place each recurrence is written; the cells and the sequence layers both call it.
    Returns the new (h, c); c is None except for the LSTM (whose h here is before projection).
    """
    hw = NF.linear(h, w_hh, b_hh)  # h W_hhᵀ + b_hh, gates stacked as in w_hh
    if mode == "LSTM":
        i, f, g, o = T.chunk(xw + hw, 4, -1)
        c_new = f.sigmoid() * c + i.sigmoid() * g.tanh()
        return o.sigmoid() * c_new.tanh(), c_new
    if mode == "GRU":
        # PyTorch's GRU keeps b_hn inside the reset gate's product: n = tanh(xw_n + r ⊙ hw_n)
        x_r, x_z, x_n = T.chunk(xw, 3, -1)
        h_r, h_z, h_n = T.chunk(hw, 3, -1)
        r, z = (x_r + h_r).sigmoid(), (x_z + h_z).sigmoid()
        n = (x_n + r * h_n).tanh()
        return (1 - z) * n + z * h, None
    pre = xw + hw
    return (pre.tanh() if mode == "RNN_TANH" else pre.relu()), None


def _mode(name: str, nonlinearity: str) -> str:
    if name != "RNN":
        return name
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"RNN: unknown nonlinearity '{nonlinearity}' (choose 'tanh' or 'relu')")
    return "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"


def _uniform_all(module: Module, hidden_size: int) -> None:
    """PyTorch's reset_parameters for every recurrent layer: U(-1/√hidden, 1/√hidden)."""
    bound = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
    for p in module.parameters():
        init.uniform_(p, -bound, bound)


def _check_state(layer: Module, what: str, state: Tensor, expected: tuple, dims: str) -> None:
    if tuple(state.shape) != tuple(expected):
        raise ShapeError(
            f"{layer.describe()} expects {what} of shape {shape_str(expected)} ({dims}), got "
            f"{shape_str(state.shape)}"
        )


# ----------------------------------------------------------------------------- sequences


class RNNBase(Module):
    """The sequence layers' common body: parameters per (layer, direction) and the time loop."""

    _name = "RNN"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__()
        name = self._name
        if not isinstance(hidden_size, int) or hidden_size <= 0:
            raise ValueError(f"{name}: hidden_size must be a positive int, got {hidden_size!r}")
        if not isinstance(num_layers, int) or num_layers <= 0:
            raise ValueError(f"{name}: num_layers must be a positive int, got {num_layers!r}")
        if not 0.0 <= float(dropout) <= 1.0 or isinstance(dropout, bool):
            raise ValueError(
                f"{name}: dropout should be a number in range [0, 1] representing the "
                f"probability of an element being zeroed, got {dropout!r}"
            )
        if proj_size < 0:
            raise ValueError(f"{name}: proj_size should be a positive integer or zero")
        if proj_size and name != "LSTM":
            raise ValueError(f"{name}: proj_size argument is only supported for LSTM, not {name}")
        if proj_size >= hidden_size:
            raise ValueError(f"{name}: proj_size has to be smaller than hidden_size")
        self.mode = _mode(name, nonlinearity)
        self.nonlinearity = nonlinearity
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        dtype = np.dtype(dtype or get_default_dtype())
        gates = _GATES[self.mode] * hidden_size
        out = proj_size or hidden_size  # what h carries (LSTM with a projection: proj_size)
        for layer in range(num_layers):
            width = input_size if layer == 0 else out * self.num_directions
            for suffix in self._suffixes():
                # Registration order is PyTorch's, so parameters() and state_dict() line up.
                tag = f"l{layer}{suffix}"
                setattr(self, f"weight_ih_{tag}", Parameter(np.zeros((gates, width), dtype)))
                setattr(self, f"weight_hh_{tag}", Parameter(np.zeros((gates, out), dtype)))
                if bias:
                    setattr(self, f"bias_ih_{tag}", Parameter(np.zeros(gates, dtype)))
                    setattr(self, f"bias_hh_{tag}", Parameter(np.zeros(gates, dtype)))
                if proj_size:
                    setattr(
                        self, f"weight_hr_{tag}", Parameter(np.zeros((out, hidden_size), dtype))
                    )
        self.reset_parameters()

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def reset_parameters(self) -> None:
        _uniform_all(self, self.hidden_size)

    def _param(self, kind: str, tag: str) -> Tensor | None:
        return self._parameters.get(f"{kind}_{tag}")

    # -- forward

    def _states(self, hx: Any, like: Tensor, unbatched: bool) -> tuple[Tensor, Any]:
        """(h0, c0) as [layers·directions, batch, size], zeros where not given; ``like`` is
        one step of the input, [batch, features]."""
        batch = like.shape[0]
        lengths = self.num_layers * self.num_directions
        h_shape = (lengths, batch, self.proj_size or self.hidden_size)
        c_shape = (lengths, batch, self.hidden_size)
        if self.mode == "LSTM":
            if hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise TypeError(f"{self.describe()} expects hx as a tuple (h0, c0)")
            h0, c0 = (None, None) if hx is None else hx
        else:
            if isinstance(hx, (tuple, list)):
                raise TypeError(f"{self.describe()} expects hx as one tensor h0, not a tuple")
            h0, c0 = hx, None
        h0 = self._init_state("h0", h0, h_shape, like, unbatched)
        c0 = self._init_state("c0", c0, c_shape, like, unbatched) if self.mode == "LSTM" else None
        return h0, c0

    def _init_state(self, what: str, s: Any, shape: tuple, like: Tensor, unbatched: bool) -> Tensor:
        if s is None:
            # a constant node of the (maybe symbolic) batch size, eagerly as traced: the
            # formulas print h_0 = 0 either way (a leaf of zeros would be an input of its own)
            zero = ops.const(0, shape, like.node.dtype)
            return T._result(zero, [], False) if like.has_value else Tensor(zero)
        s = s if isinstance(s, Tensor) else T.tensor(np.asarray(s))
        if unbatched:  # PyTorch's unbatched states lack the batch dim too
            _check_state(self, what, s, (shape[0], shape[2]), "layers·directions, size")
            return T.unsqueeze(s, 1)
        _check_state(self, what, s, shape, "layers·directions, batch, size")
        return s

    def forward(self, input: Tensor, hx: Any = None) -> Any:  # noqa: A002 -- PyTorch's name
        x = input if isinstance(input, Tensor) else T.tensor(np.asarray(input))
        if x.ndim not in (2, 3):
            raise ShapeError(
                f"{self.describe()} expects a 2-D (unbatched) or 3-D input, got "
                f"{shape_str(x.shape)}"
            )
        if x.shape[-1] != self.input_size:
            raise ShapeError(
                f"{self.describe()} expects {self.input_size} input features (weight_ih_l0 "
                f"{shape_str(self._parameters['weight_ih_l0'].shape)}), got an input of shape "
                f"{shape_str(x.shape)}"
            )
        unbatched = x.ndim == 2
        if unbatched:
            x = T.unsqueeze(x, 0 if self.batch_first else 1)
        if not self.batch_first:
            x = x.transpose(0, 1)  # [batch, time, features] inside
        if isinstance(x.shape[1], sympy.Expr) and not x.shape[1].is_Integer:
            # symbp.compile keeps dim 0 of the data symbolic (the batch): time must be fixed
            raise ShapeError(
                f"{self.describe()} unrolls time and needs a fixed sequence length, got input "
                f"{shape_str(input.shape)} (time symbolic); under symbp.compile, whose data "
                f"lead with the batch, use batch_first=True"
            )
        if int(x.shape[1]) == 0:
            raise ShapeError(f"{self.describe()} got an empty sequence {shape_str(input.shape)}")
        h0, c0 = self._states(hx, x[:, 0], unbatched)
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outs = []
            for d, suffix in enumerate(self._suffixes()):
                k = layer * self.num_directions + d
                seq, h, c = self._run(
                    x, f"l{layer}{suffix}", h0[k], None if c0 is None else c0[k], d == 1
                )
                outs.append(seq)
                h_n.append(h)
                if c is not None:
                    c_n.append(c)
            x = outs[0] if len(outs) == 1 else T.cat(outs, -1)
            if self.dropout and layer < self.num_layers - 1:
                x = F.dropout(
                    x, self.dropout, self.training, seed_name=f"{self._path}.l{layer}.seed"
                )
        output = x if self.batch_first else x.transpose(0, 1)
        hn = T.stack(h_n, 0)
        cn = T.stack(c_n, 0) if c_n else None
        if unbatched:
            output = T.squeeze(output, 0 if self.batch_first else 1)
            hn = T.squeeze(hn, 1)
            cn = None if cn is None else T.squeeze(cn, 1)
        return (output, (hn, cn)) if self.mode == "LSTM" else (output, hn)

    def _run(
        self, x: Tensor, tag: str, h: Tensor, c: Tensor | None, reverse: bool
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """One direction of one layer over x [batch, time, features]: ([batch, time, H], h, c)."""
        w_ih, w_hh = self._parameters[f"weight_ih_{tag}"], self._parameters[f"weight_hh_{tag}"]
        b_ih, b_hh = self._param("bias_ih", tag), self._param("bias_hh", tag)
        w_hr = self._param("weight_hr", tag)
        xw = NF.linear(x, w_ih, b_ih)  # the input's projection, all steps in one matmul
        return self._scan(xw, h, c, reverse, w_hh, b_hh, w_hr)

    def _scan(
        self,
        xw: Tensor,
        h: Tensor,
        c: Tensor | None,
        reverse: bool,
        w_hh: Tensor,
        b_hh: Tensor | None,
        w_hr: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """``_run``'s loop, one ``scan`` over time, eager or traced: the carry is h (an LSTM's
        h and c side by side), the step's input its row of ``xw``, the consts the recurrent
        weights."""
        mode, width = self.mode, int(h.shape[-1])
        consts = [w for w in (w_hh, b_hh, w_hr) if w is not None]

        def step(carry: Tensor, xw_t: Tensor, *ws: Tensor) -> Tensor:
            it = iter(ws)
            w, b = next(it), next(it) if b_hh is not None else None
            hr = next(it) if w_hr is not None else None
            h_t, c_t = (carry[:, :width], carry[:, width:]) if mode == "LSTM" else (carry, None)
            h_t, c_t = _step(mode, xw_t, h_t, c_t, w, b)
            if hr is not None:
                h_t = NF.linear(h_t, hr)
            return h_t if c_t is None else T.cat([h_t, c_t], -1)

        xs = xw.transpose(0, 1)  # [time, batch, gates]: a step's rows are one block
        if reverse:
            xs = xs.flip(0)
        carry = h if c is None else T.cat([h, c], -1)
        out = scan(step, carry, xs, consts)  # [time, batch, K]: the carry after each
        if mode in _STEP_NAMES:
            out._steps = (out.node, _STEP_NAMES[mode])  # the program's, as a label is
        hs = out[:, :, :width]
        if reverse:
            hs = hs.flip(0)
        last = out[-1]
        h_n, c_n = (last[:, :width], last[:, width:]) if c is not None else (last, None)
        return hs.transpose(0, 1), h_n, c_n

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class RNN(RNNBase):
    """Elman RNN: h_t = tanh(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh) (or relu)."""

    _name = "RNN"


class LSTM(RNNBase):
    """LSTM with PyTorch's gates i, f, g, o stacked in that order; ``proj_size`` projects h."""

    _name = "LSTM"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__(
            input_size, hidden_size, num_layers, "tanh", bias, batch_first, dropout,
            bidirectional, proj_size, device, dtype,
        )  # fmt: skip


class GRU(RNNBase):
    """GRU with PyTorch's gates r, z, n; n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))."""

    _name = "GRU"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__(
            input_size, hidden_size, num_layers, "tanh", bias, batch_first, dropout,
            bidirectional, 0, device, dtype,
        )  # fmt: skip


# ----------------------------------------------------------------------------- cells


class RNNCellBase(Module):
    _name = "RNNCell"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__()
        if not isinstance(hidden_size, int) or hidden_size <= 0:
            raise ValueError(
                f"{self._name}: hidden_size must be a positive int, got {hidden_size!r}"
            )
        self.mode = _mode(self._name.removesuffix("Cell"), nonlinearity)
        self.nonlinearity = nonlinearity
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        dtype = np.dtype(dtype or get_default_dtype())
        gates = _GATES[self.mode] * hidden_size
        self.weight_ih = Parameter(np.zeros((gates, input_size), dtype))
        self.weight_hh = Parameter(np.zeros((gates, hidden_size), dtype))
        self.bias_ih = Parameter(np.zeros(gates, dtype)) if bias else None
        self.bias_hh = Parameter(np.zeros(gates, dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _uniform_all(self, self.hidden_size)

    def _input(self, input: Any) -> Tensor:  # noqa: A002
        x = input if isinstance(input, Tensor) else T.tensor(np.asarray(input))
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ShapeError(
                f"{self.describe()} expects an input [batch, {self.input_size}] or "
                f"[{self.input_size}], got {shape_str(x.shape)}"
            )
        return x

    def _init_state(self, what: str, s: Any, x: Tensor) -> Tensor:
        if s is None:  # zeros of the (maybe symbolic) batch size, as in RNNBase._state
            return factories.zeros_like(x[..., :1]).expand(*x.shape[:-1], self.hidden_size)
        s = s if isinstance(s, Tensor) else T.tensor(np.asarray(s))
        dims = "batch, hidden_size" if x.ndim == 2 else "hidden_size"
        _check_state(self, what, s, (*x.shape[:-1], self.hidden_size), dims)
        return s

    def _cell(self, x: Tensor, h: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor | None]:
        xw = NF.linear(x, self.weight_ih, self.bias_ih)
        return _step(self.mode, xw, h, c, self.weight_hh, self.bias_hh)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        return s


class RNNCell(RNNCellBase):
    """One Elman step: h' = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh) (or relu)."""

    _name = "RNNCell"

    def forward(self, input: Any, hx: Any = None) -> Tensor:  # noqa: A002
        x = self._input(input)
        return self._cell(x, self._init_state("hx", hx, x), None)[0]


class LSTMCell(RNNCellBase):
    """One LSTM step; returns (h', c')."""

    _name = "LSTMCell"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__(input_size, hidden_size, bias, "tanh", device, dtype)

    def forward(self, input: Any, hx: Any = None) -> tuple[Tensor, Tensor]:  # noqa: A002
        x = self._input(input)
        if hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise TypeError(f"{self.describe()} expects hx as a tuple (h, c)")
        h0, c0 = (None, None) if hx is None else hx
        h, c = self._cell(x, self._init_state("h", h0, x), self._init_state("c", c0, x))
        return h, c  # type: ignore[return-value]


class GRUCell(RNNCellBase):
    """One GRU step: h' = (1 - z) ⊙ n + z ⊙ h."""

    _name = "GRUCell"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__(input_size, hidden_size, bias, "tanh", device, dtype)

    def forward(self, input: Any, hx: Any = None) -> Tensor:  # noqa: A002
        x = self._input(input)
        return self._cell(x, self._init_state("hx", hx, x), None)[0]


__all__ = ["GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNBase", "RNNCell", "RNNCellBase"]
