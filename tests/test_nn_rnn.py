"""Issue 17: the recurrent layers (RNN, LSTM, GRU and their cells) against PyTorch.

Each case builds the same layer in torch and symbp (float64), copies torch's initial weights
into symbp through ``state_dict``, runs one forward on the same input (and initial states), and
compares the output, the final states, and the gradients of every parameter, the input and the
initial states of a loss that weights each output entry differently, to 1e-10.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import symbp
from symbp import nn as snn
from symbp.compiler.ir import ShapeError

torch = pytest.importorskip("torch")

TOL = 1e-10
IN, H, T, N = 3, 4, 5, 2  # input size, hidden size, sequence length, batch


@pytest.fixture(autouse=True)
def float64():
    default = symbp.get_default_dtype()
    symbp.set_default_dtype(symbp.float64)
    yield
    symbp.set_default_dtype(default)


def close(a: Any, b: Any, what: str) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    err = np.max(np.abs(a - b)) if a.size else 0.0
    assert err <= TOL * max(1.0, float(np.max(np.abs(b)))), f"{what}: differs by {err:.3g}"


def pair(name: str, *args: Any, **kw: Any) -> tuple[Any, Any]:
    """The torch layer and a symbp one holding the same (torch's initial) weights."""
    tm = getattr(torch.nn, name)(*args, **kw).double()
    sm = getattr(snn, name)(*args, **kw)
    assert list(sm.state_dict()) == list(tm.state_dict())  # names and order are PyTorch's
    assert [p.shape for p in sm.parameters()] == [tuple(p.shape) for p in tm.parameters()]
    sm.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    return tm, sm


def flatten_out(out: Any) -> list[Any]:
    """(output, h_n) or (output, (h_n, c_n)) or h or (h, c) as a flat list."""
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in flatten_out(o)]
    return [out]


def compare(tm: Any, sm: Any, x: np.ndarray, states: list[np.ndarray] | None, pack: Any) -> None:
    """Forward, a weighted-sum loss and backward in both; every value and gradient agrees."""
    rng = np.random.default_rng(3)
    tx = torch.tensor(x, requires_grad=True)
    sx = symbp.tensor(x, requires_grad=True)
    ts = [torch.tensor(s, requires_grad=True) for s in states or []]
    ss = [symbp.tensor(s, requires_grad=True) for s in states or []]
    tout = flatten_out(tm(tx, pack(ts)) if states else tm(tx))
    sout = flatten_out(sm(sx, pack(ss)) if states else sm(sx))
    assert len(tout) == len(sout)
    weights = [rng.standard_normal(tuple(o.shape)) for o in tout]
    tloss = sum((o * torch.tensor(w)).sum() for o, w in zip(tout, weights))
    sloss = sum((o * symbp.tensor(w)).sum() for o, w in zip(sout, weights))
    tloss.backward()
    sloss.backward()
    for k, (a, b) in enumerate(zip(sout, tout)):
        close(a.numpy(), b.detach().numpy(), f"returned value {k}")
    tgrads = dict(tm.named_parameters())
    for name, p in sm.named_parameters():
        close(p.grad.numpy(), tgrads[name].grad.numpy(), f"grad of {name}")
    close(sx.grad.numpy(), tx.grad.numpy(), "grad of the input")
    for k, (a, b) in enumerate(zip(ss, ts)):
        close(a.grad.numpy(), b.grad.numpy(), f"grad of initial state {k}")


OPTIONS = {
    "plain": {},
    "two_layers": {"num_layers": 2},
    "bidirectional": {"bidirectional": True},
    "batch_first": {"batch_first": True},
    "no_bias": {"bias": False},
    "all": {"num_layers": 2, "bidirectional": True, "batch_first": True},
}
LAYERS = {
    "RNN_tanh": ("RNN", {}),
    "RNN_relu": ("RNN", {"nonlinearity": "relu"}),
    "LSTM": ("LSTM", {}),
    "GRU": ("GRU", {}),
}


def inputs(name: str, kw: dict, with_states: bool, batched: bool = True):
    rng = np.random.default_rng(11)
    x_shape = (N, T, IN) if kw.get("batch_first") else (T, N, IN)
    x = rng.standard_normal(x_shape if batched else (T, IN))
    layers = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    h_size = kw.get("proj_size") or H
    lead = (layers, N) if batched else (layers,)
    states = None
    if with_states:
        states = [rng.standard_normal((*lead, h_size))]
        if name == "LSTM":
            states.append(rng.standard_normal((*lead, H)))
    pack = (lambda s: tuple(s)) if name == "LSTM" else (lambda s: s[0])
    return x, states, pack


@pytest.mark.parametrize("with_states", [False, True], ids=["zero_h0", "h0_given"])
@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("layer", list(LAYERS))
def test_layer_matches_torch(layer: str, option: str, with_states: bool) -> None:
    name, extra = LAYERS[layer]
    kw = {**extra, **OPTIONS[option]}
    tm, sm = pair(name, IN, H, **kw)
    x, states, pack = inputs(name, kw, with_states)
    compare(tm, sm, x, states, pack)


@pytest.mark.parametrize("with_states", [False, True], ids=["zero_h0", "h0_given"])
@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_unbatched_input_matches_torch(name: str, with_states: bool) -> None:
    kw = {"num_layers": 2, "bidirectional": True}
    tm, sm = pair(name, IN, H, **kw)
    x, states, pack = inputs(name, kw, with_states, batched=False)
    compare(tm, sm, x, states, pack)


@pytest.mark.parametrize("with_states", [False, True], ids=["zero_h0", "h0_given"])
def test_lstm_projection_matches_torch(with_states: bool) -> None:
    kw = {"num_layers": 2, "bidirectional": True, "proj_size": 2}
    tm, sm = pair("LSTM", IN, H, **kw)
    assert "weight_hr_l1_reverse" in sm.state_dict()
    x, states, pack = inputs("LSTM", kw, with_states)
    compare(tm, sm, x, states, pack)


def test_dropout_between_layers_is_off_in_eval_mode() -> None:
    """dropout=0.5 leaves eval mode the plain stack (training masks differ from torch's)."""
    tm, sm = pair("LSTM", IN, H, num_layers=2, dropout=0.5)
    tm.eval()
    sm.eval()
    x, states, pack = inputs("LSTM", {"num_layers": 2}, True)
    compare(tm, sm, x, states, pack)


def test_dropout_between_layers_masks_in_training() -> None:
    """In training, the second layer sees a dropped input: outputs change from eval's."""
    symbp.manual_seed(0)
    sm = snn.GRU(IN, H, num_layers=2, dropout=0.5)
    x = np.random.default_rng(0).standard_normal((T, N, IN))
    train_out = sm(symbp.tensor(x))[0].numpy()
    sm.eval()
    eval_out = sm(symbp.tensor(x))[0].numpy()
    assert not np.allclose(train_out, eval_out)


CELLS = {
    "RNNCell_tanh": ("RNNCell", {}),
    "RNNCell_relu": ("RNNCell", {"nonlinearity": "relu"}),
    "LSTMCell": ("LSTMCell", {}),
    "GRUCell": ("GRUCell", {}),
    "GRUCell_no_bias": ("GRUCell", {"bias": False}),
}


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("with_states", [False, True], ids=["zero_h", "h_given"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_cell_matches_torch(cell: str, with_states: bool, batched: bool) -> None:
    name, kw = CELLS[cell]
    tm, sm = pair(name, IN, H, **kw)
    rng = np.random.default_rng(5)
    lead = (N,) if batched else ()
    x = rng.standard_normal((*lead, IN))
    states = None
    if with_states:
        states = [rng.standard_normal((*lead, H)) for _ in range(2 if name == "LSTMCell" else 1)]
    pack = (lambda s: tuple(s)) if name == "LSTMCell" else (lambda s: s[0])
    compare(tm, sm, x, states, pack)


def test_a_cell_step_is_one_step_of_the_layer() -> None:
    """LSTMCell on x_0 with the layer's weights gives the layer's first output."""
    symbp.manual_seed(1)
    layer, cell = snn.LSTM(IN, H), snn.LSTMCell(IN, H)
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in layer.state_dict().items()})
    x = np.random.default_rng(2).standard_normal((T, N, IN))
    out, _ = layer(symbp.tensor(x))
    h, _ = cell(symbp.tensor(x[0]))
    close(h.numpy(), out.numpy()[0], "first step")


@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell", "RNNCell"])
def test_gradcheck_cell(name: str) -> None:
    """The cells' symbolic gradients against float64 central differences (no torch)."""
    symbp.manual_seed(4)
    cell = getattr(snn, name)(IN, H)
    rng = np.random.default_rng(6)
    x = symbp.tensor(rng.standard_normal((N, IN)), requires_grad=True)
    h0 = rng.standard_normal((N, H))
    weights = rng.standard_normal((N, H))

    def loss(out: Any, h: Any) -> Any:
        hh = out[0] if isinstance(out, tuple) else out
        return (hh * symbp.tensor(weights)).sum() + (hh * hh).sum()

    report = symbp.gradcheck(cell, loss, x, h0)
    assert report.ok, report.failed


def test_default_init_is_pytorchs_uniform() -> None:
    """Every parameter U(-1/√hidden, 1/√hidden): inside the bound, spread as a uniform."""
    symbp.manual_seed(0)
    hidden = 64
    for m in (snn.LSTM(8, hidden, num_layers=2), snn.GRUCell(8, hidden), snn.RNN(8, hidden)):
        bound = 1 / math.sqrt(hidden)
        for name, p in m.named_parameters():
            v = p.numpy()
            assert np.abs(v).max() <= bound, name
            assert abs(v.std() - bound / math.sqrt(3)) < 0.2 * bound, name


def test_a_wrong_hidden_state_shape_names_the_layer_and_shapes() -> None:
    lstm = snn.LSTM(IN, H, num_layers=2)
    x = symbp.tensor(np.zeros((T, N, IN)))
    with pytest.raises(
        ShapeError, match=r"LSTM 'lstm' expects h0 of shape \[2,2,4\] .*got \[1,2,4\]"
    ):
        lstm(x, (symbp.zeros(1, N, H), symbp.zeros(2, N, H)))
    with pytest.raises(
        ShapeError, match=r"LSTM 'lstm' expects c0 of shape \[2,2,4\] .*got \[2,3,4\]"
    ):
        lstm(x, (symbp.zeros(2, N, H), symbp.zeros(2, 3, H)))
    with pytest.raises(TypeError, match="tuple"):
        lstm(x, symbp.zeros(2, N, H))
    with pytest.raises(
        ShapeError, match=r"GRUCell 'grucell' expects hx of shape \[2,4\] .*got \[2,5\]"
    ):
        snn.GRUCell(IN, H)(symbp.tensor(np.zeros((N, IN))), symbp.zeros(N, 5))


def test_a_wrong_input_size_names_the_layer() -> None:
    with pytest.raises(ShapeError, match=r"GRU 'gru' expects 3 input features"):
        snn.GRU(IN, H)(symbp.tensor(np.zeros((T, N, IN + 1))))
    with pytest.raises(ShapeError, match="RNNCell 'rnncell' expects an input"):
        snn.RNNCell(IN, H)(symbp.tensor(np.zeros((N, IN + 1))))


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="nonlinearity"):
        snn.RNN(IN, H, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="proj_size"):
        snn.LSTM(IN, H, proj_size=H)
    with pytest.raises(ValueError, match="dropout"):
        snn.LSTM(IN, H, dropout=1.5)


def test_repr_is_pytorchs() -> None:
    for args, kw in [((3, 4), {}), ((3, 4), {"num_layers": 2, "bidirectional": True})]:
        assert repr(snn.LSTM(*args, **kw)) == repr(torch.nn.LSTM(*args, **kw))
    assert repr(snn.GRUCell(3, 4, bias=False)) == repr(torch.nn.GRUCell(3, 4, bias=False))


# ----------------------------------------------------------------------------- compiled


V, HID, SEQ, BATCH, STEPS = 5, 6, 6, 3, 5  # small: the unrolled program's compile time


def char_lstm(nn: Any) -> Any:
    """A character LSTM written once for torch and symbp: 2 layers over one-hot characters
    (batch first), a linear head, logits flattened to [batch·time, vocabulary]."""

    class CharLSTM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(V, HID, num_layers=2, batch_first=True)
            self.head = nn.Linear(HID, V)

        def forward(self, x: Any) -> Any:
            out, _ = self.lstm(x)
            return self.head(out).reshape(-1, V)

    return CharLSTM()


def char_data() -> tuple[np.ndarray, np.ndarray]:
    """Next-character prediction on a repeating text, one-hot inputs."""
    text = "hello world, hello rnn. " * 4
    vocab = sorted(set(text))[:V]
    ids = np.array([vocab.index(ch) if ch in vocab else 0 for ch in text])
    starts = [0, 7, 13]
    seqs = np.stack([ids[s : s + SEQ + 1] for s in starts])
    return np.eye(V)[seqs[:, :-1]], seqs[:, 1:]


def char_loss(nn: Any) -> Any:
    ce = nn.CrossEntropyLoss()
    return lambda logits, y: ce(logits, y.reshape(-1))


@pytest.mark.slow
def test_compiled_char_lstm_trains_as_torch() -> None:
    """Five compiled SGD-with-momentum steps of the char LSTM: torch's losses and parameters."""
    torch.manual_seed(0)
    tnet = char_lstm(torch.nn).double()
    w0 = {k: v.numpy().copy() for k, v in tnet.state_dict().items()}
    x, y = char_data()
    topt = torch.optim.SGD(tnet.parameters(), lr=0.5, momentum=0.9)
    tloss_fn = char_loss(torch.nn)
    ref = []
    for _ in range(STEPS):
        topt.zero_grad()
        loss = tloss_fn(tnet(torch.tensor(x)), torch.tensor(y))
        loss.backward()
        topt.step()
        ref.append(loss.item())
    assert ref[-1] < ref[0]  # it learns: a standing trajectory would compare nothing

    snet = char_lstm(snn)
    snet.load_state_dict(w0)
    model = symbp.compile(
        snet, char_loss(snn), symbp.optim.SGD(snet.parameters(), lr=0.5, momentum=0.9)
    )
    losses = [model.step(x, y) for _ in range(STEPS)]
    np.testing.assert_allclose(losses, ref, rtol=1e-9, atol=0)
    for name, p in tnet.named_parameters():
        got = dict(snet.named_parameters())[name].numpy()
        err = np.max(np.abs(got - p.detach().numpy())) / np.max(np.abs(p.detach().numpy()))
        assert err <= 1e-9, f"{name} differs by {err:.3g} relative"


def test_compiled_time_first_input_asks_for_batch_first() -> None:
    """symbp.compile's data lead with the (symbolic) batch: a time-first layer would see a
    symbolic sequence length, which unrolling cannot take; the error says what to do (the
    trace fails before anything is compiled)."""

    class Net(snn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = snn.GRU(IN, H)

        def forward(self, x: Any) -> Any:
            return self.rnn(x)[0].sum(-1)

    net = Net()
    model = symbp.compile(net, snn.MSELoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
    with pytest.raises(ShapeError, match=r"GRU 'rnn' unrolls time.*use batch_first=True"):
        model.build(np.zeros((N, T, IN)), np.zeros((N, T)))


def classifier(nn: Any, kind: str, read: str, batch_first: bool, layers: int) -> Any:
    """Sequence classification, written once for torch and symbp: a recurrent layer whose
    loss reads the last step's output alone (``read="last"``) or the final state alone
    (``"state"``: h_n, and c_n for an LSTM, every layer's), then a linear head. A time-first
    layer gets the batch-first data transposed."""

    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = getattr(nn, kind)(IN, H, num_layers=layers, batch_first=batch_first)
            self.head = nn.Linear(H, 2)

        def forward(self, x: Any) -> Any:
            out, state = self.rnn(x if batch_first else x.transpose(0, 1))
            if read == "last":
                return self.head(out[:, -1] if batch_first else out[-1])
            if kind == "LSTM":
                h_n, c_n = state
                return self.head(h_n.sum(0) + 0.5 * c_n.sum(0))
            return self.head(state.sum(0))

    return Classifier()


CLASSIFIERS = [  # every kind reads each way, time first and batch first, 1 and 2 layers
    ("RNN", "last", True, 1), ("RNN", "state", False, 2), ("RNN", "last", False, 2),
    ("GRU", "last", False, 2), ("GRU", "state", True, 1),
    ("LSTM", "last", True, 2), ("LSTM", "state", False, 1), ("LSTM", "state", True, 2),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "read", "batch_first", "layers"), CLASSIFIERS)
def test_compiled_sequence_classifier_trains_as_torch(
    kind: str, read: str, batch_first: bool, layers: int
) -> None:
    """A loss that reads only the last step or only the final state, compiled: three Adam
    steps give torch's losses and parameters to 1e-9. (An Elman RNN's loop back reads
    nothing of a step but its carry, tanh' = 1 - h²: the training program's store-for-
    backward pass once failed on a loop that stores nothing more.)"""
    torch.manual_seed(2)
    tnet = classifier(torch.nn, kind, read, batch_first, layers).double()
    w0 = {k: v.numpy().copy() for k, v in tnet.state_dict().items()}
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(4, 7, IN)), rng.integers(0, 2, 4)
    topt = torch.optim.Adam(tnet.parameters(), lr=0.05)
    ref = []
    for _ in range(3):
        topt.zero_grad()
        loss = torch.nn.functional.cross_entropy(tnet(torch.tensor(x)), torch.tensor(y))
        loss.backward()
        topt.step()
        ref.append(loss.item())

    snet = classifier(snn, kind, read, batch_first, layers)
    snet.load_state_dict(w0)
    model = symbp.compile(
        snet, snn.CrossEntropyLoss(), symbp.optim.Adam(snet.parameters(), lr=0.05)
    )
    losses = [model.step(x, y) for _ in range(3)]
    np.testing.assert_allclose(losses, ref, rtol=1e-9, atol=0)
    got = dict(snet.named_parameters())
    for name, p in tnet.named_parameters():
        want = p.detach().numpy()
        err = np.max(np.abs(got[name].numpy() - want)) / np.max(np.abs(want))
        assert err <= 1e-9, f"{name} differs by {err:.3g} relative"
