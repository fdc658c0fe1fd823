"""Issue 17: ``scan`` (symbp/compiler/loops.py), one IR node for a recurrence, and its adjoint.

The op's own rows (NumPy forward, the reverse loop's gradients against central differences
and PyTorch) are in tests/test_ops.py. Here: what the loop node buys (a compiled program whose
size does not depend on the sequence length), compiled recurrent layers of every kind against
PyTorch, kinks inside a body for gradcheck, ONNX export, and errors.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np
import pytest

import symbp
from symbp import nn as snn
from symbp.check import GradcheckWarning, gradcheck
from symbp.compiler import loops
from symbp.compiler.ir import ShapeError, toposort

torch = pytest.importorskip("torch")


pytestmark = pytest.mark.usefixtures("float64")  # conftest's; its autouse one restores it


def _relu_step(h: Any, x: Any, w: Any, b: Any) -> Any:
    return (h @ w + x + b).relu()


def _relu_scan_ref(h0: np.ndarray, xs: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    hs, h = [], h0
    for x in xs:
        h = np.maximum(h @ w + x + b, 0)
        hs.append(h)
    return np.stack(hs)


# ---------------------------------------------------------------- the program's size


class _Tagger(snn.Module):
    """Characters in, next-character logits out: embedding-free, one-hot inputs."""

    def __init__(self, layer: str) -> None:
        super().__init__()
        kw: dict[str, Any] = {"batch_first": True, "num_layers": 2}
        self.rnn = getattr(snn, layer)(4, 5, **kw)
        self.head = snn.Linear(5, 4)

    def forward(self, x: Any) -> Any:
        return self.head(self.rnn(x)[0]).reshape(-1, 4)


def _source(layer: str, steps: int) -> str:
    net = _Tagger(layer)
    ce = snn.CrossEntropyLoss()
    model = symbp.compile(net, lambda z, y: ce(z, y.reshape(-1)),
                          symbp.optim.SGD(net.parameters(), lr=0.1))  # fmt: skip
    x = np.eye(4)[np.arange(3 * steps).reshape(3, steps) % 4]
    model.build(x, np.zeros((3, steps), np.int64))  # generates the code; Numba compiles later
    return model._train.source


def _loops_of(source: str) -> list[list[str]]:
    """The lines of each ``for step`` loop of a generated program, its header included."""
    lines, out = source.splitlines(), []
    for k, line in enumerate(lines):
        if line.lstrip().startswith("for step"):
            pad = len(line) - len(line.lstrip())
            end = k + 1
            while end < len(lines) and len(lines[end]) - len(lines[end].lstrip()) > pad:
                end += 1
            out.append(lines[k:end])
    return out


@pytest.mark.parametrize("layer", ["LSTM", "GRU"])
def test_the_program_does_not_grow_with_the_sequence(layer: str) -> None:
    """T = 3 and T = 24: the loop forward and the loop back are written once each (the two
    layers' loops call one function), their bodies the same lines whatever T (only the
    loops' bounds differ), and the longer sequence's program is no longer (unrolled, it had
    about 100 lines per step and layer)."""
    short, long = _source(layer, 3), _source(layer, 24)
    a, b = _loops_of(short), _loops_of(long)
    assert len(a) == len(b) == 2  # forward and back
    for text in (short, long):  # each layer calls them (once per block of rows)
        calls = re.compile(r"^\s+(scan_body|scan_vjp_body)\(", re.M).findall(text)
        assert calls.count("scan_body") == calls.count("scan_vjp_body") == 2, text
    for la, lb in zip(a, b):
        assert la[1:] == lb[1:]
        bound = re.compile(r"range\((.*)\):$")
        assert bound.sub("", la[0]) == bound.sub("", lb[0])
        assert bound.search(la[0])[1] in ("3", "2, -1, -1")  # type: ignore[index]
        assert bound.search(lb[0])[1] in ("24", "23, -1, -1")  # type: ignore[index]
    assert len(long.splitlines()) <= len(short.splitlines())


# ---------------------------------------------------------------- what the loops store


def test_the_loop_back_reads_what_the_loop_forward_stored() -> None:
    """The LSTM's reverse loop computes no sigmoid and no tanh (the gates' activations and
    tanh(c) were stored by the forward loop) and one product a step, δ W_hh: the product
    with W_hh is not recomputed, and ∂E/∂W_hh is one product after the loop."""
    source = _source("LSTM", 3)
    forward, back = _loops_of(source)
    assert any("saved" in line for line in forward)
    assert not any("sigmoid_" in line or "tanh_" in line for line in back), back
    assert sum("call_matmul" in line for line in back) == 1, back
    after = source.split("the consts' cotangents summed over the steps")
    assert len(after) == 3  # one sum after each layer's loop back, a product δᵀ h
    product = re.compile(
        r"call_matmul_f64\(\w+, True, \w+, False, \w+_acc\)|np.dot\(\w+.T, \w+, \w+_acc\)"
    )
    assert all(product.search(a) for a in after[1:])


def _lstm_step(carry: Any, x: Any, w: Any, b: Any) -> Any:
    h, c = carry[:, :2], carry[:, 2:]
    z = h @ w + x + b
    i, f, g, o = z[:, :2].sigmoid(), z[:, 2:4].sigmoid(), z[:, 4:6].tanh(), z[:, 6:].sigmoid()
    c = f * c + i * g
    return symbp.cat([o * c.tanh(), c], 1)


def _gru_step(h: Any, x: Any, w: Any, b: Any) -> Any:
    hh = h @ w + b  # its δ (r ⊙ δn in a third of it) is not the step input's: stored too
    r, z = (x[:, :2] + hh[:, :2]).sigmoid(), (x[:, 2:4] + hh[:, 2:4]).sigmoid()
    n = (x[:, 4:] + r * hh[:, 4:]).tanh()
    return (1 - z) * n + z * h


def _tanh_step(h: Any, x: Any, w: Any, b: Any) -> Any:
    return (h @ w + x + b).tanh()  # tanh' = 1 - h²: the carry is all it reads


@pytest.mark.parametrize(
    ("step", "k", "gates"), [(_lstm_step, 4, 8), (_gru_step, 2, 6), (_tanh_step, 2, 2)]
)
def test_storing_for_the_loop_back_changes_no_value(step: Any, k: int, gates: int) -> None:
    """The training program's pass (loops.save_for_backward) against the loop as derived,
    both run by the NumPy reference on one batch: the same loss and gradients to 1e-12. The
    rewritten adjoint reads no activation it would recompute, sums ∂E/∂W as one product
    after the loop, and its rows, like the forward's, are apart (one block per thread). An
    Elman step's adjoint reads nothing but the carry (tanh' = 1 - h²): the loop stores
    nothing more, and its output keeps its shape."""
    from symbp.api import derive
    from symbp.compiler.ir import B, Node, float64
    from symbp.compiler.reference import evaluate
    from symbp.tensor import Tensor

    shapes = [("h0", (B, k)), ("xs", (5, B, gates)), ("w", (2, gates)), ("b", (gates,))]
    leaves = [Node("input", (), name, shape, float64) for name, shape in shapes]
    node = loops.scan_node(lambda *n: step(*(Tensor(m) for m in n)).node, *leaves[:2], leaves[2:])
    weights = Tensor(Node("input", (), "r", node.shape, float64))
    loss = (Tensor(node).tanh() * weights).sum()
    derived = derive(loss.node, leaves)
    stored = loops.save_for_backward(list(derived.outputs))
    rng = np.random.default_rng(3)
    env = {n: rng.normal(size=tuple(3 if d == B else d for d in n.shape)) for n in leaves}
    env[weights.node] = rng.normal(size=(5, 3, k))
    for a, b in zip(evaluate(derived.outputs, env, {B: 3}), evaluate(stored, env, {B: 3})):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)
    (fwd,) = [n for n in toposort(stored) if n.op == "scan"]
    (back,) = [n for n in toposort(stored) if n.op == "scan_vjp"]
    assert "product" in back.arg.sums
    if step is _tanh_step:  # it stores the carry alone: the loop's output is as traced
        assert len(fwd.arg.outputs) == 1 and fwd.shape == node.shape
    else:
        assert len(fwd.arg.outputs) > 1
    body = toposort(back.arg.outputs)
    assert not any(loops.is_activation(n) for n in body)
    assert loops.rows_apart(fwd.arg) and loops.rows_apart(back.arg)


def test_a_step_mixing_the_rows_is_not_run_by_blocks() -> None:
    """A step that reads across the batch (it subtracts the batch's mean) is no recurrence
    per row: rows_apart says so, where the LSTM's and a ReLU RNN's steps are apart."""
    from symbp.compiler.ir import B, Node, float64
    from symbp.tensor import Tensor

    h0, xs, w = (Node("input", (), n, s, float64) for n, s in
                 [("h0", (B, 3)), ("xs", (4, B, 3)), ("w", (3, 3))])  # fmt: skip

    def body(step: Any) -> Any:
        return loops.scan_node(lambda *n: step(*(Tensor(m) for m in n)).node, h0, xs, [w]).arg

    assert not loops.rows_apart(body(lambda h, x, w: (h @ w + x - (h @ w).mean(0)).tanh()))
    assert loops.rows_apart(body(lambda h, x, w: (h @ w + x).relu()))


# ---------------------------------------------------------------- compiled layers, as torch


def _stack(nn: Any) -> Any:
    """The same model in torch and symbp: every recurrent layer kind and option in a row."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(3, 5, batch_first=True, bidirectional=True, proj_size=2)
            self.gru = nn.GRU(4, 3, num_layers=2, batch_first=True, bidirectional=True)
            self.rnn = nn.RNN(6, 4, batch_first=True, nonlinearity="relu", bias=False)
            self.head = nn.Linear(4, 1)

        def forward(self, x: Any) -> Any:
            out, (h_n, c_n) = self.lstm(x)
            out, g_n = self.gru(out)
            out, r_n = self.rnn(out)
            # the final states enter the loss too: their cotangents start the reverse loops
            extra = (h_n.sum() + c_n.sum() + g_n.sum() + r_n.sum()) * 0.1
            return self.head(out).sum(-1) + extra

    return Net()


@pytest.mark.slow
def test_compiled_recurrent_layers_match_torch() -> None:
    """An LSTM (bidirectional, projected), a 2-layer bidirectional GRU and a ReLU RNN without
    biases, compiled: three Adam steps follow torch's losses and parameters to 1e-9."""
    torch.manual_seed(1)
    tnet = _stack(torch.nn).double()
    w0 = {k: v.numpy().copy() for k, v in tnet.state_dict().items()}
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 7, 3)), rng.normal(size=(4, 7))
    topt = torch.optim.Adam(tnet.parameters(), lr=0.01)
    ref = []
    for _ in range(3):
        topt.zero_grad()
        loss = torch.nn.functional.mse_loss(tnet(torch.tensor(x)), torch.tensor(y))
        loss.backward()
        topt.step()
        ref.append(loss.item())

    snet = _stack(snn)
    snet.load_state_dict(w0)
    model = symbp.compile(snet, snn.MSELoss(), symbp.optim.Adam(snet.parameters(), lr=0.01))
    losses = [model.step(x, y) for _ in range(3)]
    np.testing.assert_allclose(losses, ref, rtol=1e-9, atol=0)
    got = dict(snet.named_parameters())
    for name, p in tnet.named_parameters():
        want = p.detach().numpy()
        np.testing.assert_allclose(got[name].numpy(), want, rtol=0, atol=1e-9 * np.abs(want).max(),
                                   err_msg=name)  # fmt: skip
    # the inference program loops too: the trained model predicts as torch's
    with torch.no_grad():
        want = tnet(torch.tensor(x)).numpy()
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-9, atol=1e-12)
    traced = symbp.trace(snet, x)
    scans = [n for n in toposort(traced.outputs) if n.op == "scan"]
    assert len(scans) == 7  # one loop per layer and direction (1·2 + 2·2 + 1), none unrolled


# ---------------------------------------------------------------- kinks inside the body


def _relu_problem() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    h0, xs = rng.normal(size=(2, 3)), rng.normal(size=(4, 2, 3))
    w, b = rng.normal(size=(3, 3)) / 2, rng.normal(size=3) / 4
    return [h0, xs, w, b]


def _loss(h0: Any, xs: Any, w: Any, b: Any) -> Any:
    return (symbp.scan(_relu_step, h0, xs, [w, b]) ** 2).sum()


def test_gradcheck_through_a_scan_agrees_with_differences() -> None:
    report = symbp.check_grads(_loss, *_relu_problem())
    assert report.ok and all(r.checked == r.size for r in report.rows)


def test_a_relu_near_its_kink_inside_the_loop_is_skipped_not_failed() -> None:
    """Step 2's pre-activation of unit 1 (sample 0) is 3e-7: differences of the entries that
    move it across 0 would straddle the kink, so gradcheck skips them (found by running the
    body's own kink rule at every step)."""
    h0, xs, w, b = _relu_problem()
    hs = _relu_scan_ref(h0, xs, w, b)
    xs[2, 0, 1] += 3e-7 - (hs[1][0] @ w[:, 1] + xs[2, 0, 1] + b[1])
    pre = _relu_scan_ref(h0, xs, w, b)[1][0] @ w[:, 1] + xs[2, 0, 1] + b[1]
    assert abs(pre - 3e-7) < 1e-12  # the setup is what we think
    report = gradcheck(None, _loss, h0, xs, w, b, wrt_inputs=True)
    assert report.ok
    xs_row = next(r for r in report.rows if r.shape == (4, 2, 3))
    assert (2, 0, 1) in set(xs_row.skipped_indices)  # its own difference crosses the kink
    assert all(r.checked + r.skipped == r.size for r in report.rows)


def test_a_point_on_a_kink_inside_the_loop_is_named() -> None:
    h0, xs, w, b = _relu_problem()
    hs = _relu_scan_ref(h0, xs, w, b)
    xs[1, 1, 0] -= hs[0][1] @ w[:, 0] + xs[1, 1, 0] + b[0]  # exactly 0 (up to rounding)
    xs[1, 1, 0] -= hs[0][1] @ w[:, 0] + xs[1, 1, 0] + b[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gradcheck(None, _loss, h0, xs, w, b, wrt_inputs=True)
    said = [str(c.message) for c in caught if issubclass(c.category, GradcheckWarning)]
    assert any("at a step of a scan" in m and "exactly on a kink" in m for m in said), said


# ---------------------------------------------------------------- ONNX


def test_onnx_export_writes_the_loop_out_step_by_step() -> None:
    pytest.importorskip("onnx")
    from tests.test_onnx import _check_against_eager

    class Net(snn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = snn.LSTM(3, 4, batch_first=True, bidirectional=True)
            self.fc = snn.Linear(8, 2)

        def forward(self, x: Any) -> Any:
            return self.fc(self.lstm(x)[0][:, -1])

    symbp.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(2, 5, 3))
    model = _check_against_eager(Net(), x, tol=1e-9)
    assert sum(n.op_type == "Gather" and n.output[0].startswith("x_t") for n in model.graph.node)


# ---------------------------------------------------------------- errors


def test_a_step_reading_a_tensor_it_was_not_given_is_an_error() -> None:
    w = symbp.tensor(np.eye(3), requires_grad=True)
    h0, xs = symbp.zeros(2, 3), symbp.ones(4, 2, 3)
    with pytest.raises(ShapeError, match=r"the step reads 't\d+' \[3,3\].*pass it in consts"):
        symbp.scan(lambda h, x: (h @ w + x).tanh(), h0, xs)


def test_a_step_changing_the_carry_shape_is_an_error() -> None:
    h0, xs = symbp.zeros(2, 3), symbp.ones(4, 2, 3)
    with pytest.raises(ShapeError, match=r"the step returns f64\[2,1\], the carry is f64\[2,3\]"):
        symbp.scan(lambda h, x: (h + x).sum(-1, keepdim=True), h0, xs)


def test_an_empty_sequence_is_an_error() -> None:
    with pytest.raises(ShapeError, match=r"a fixed number of steps >= 1, got \[0,2,3\]"):
        symbp.scan(lambda h, x: h + x, symbp.zeros(2, 3), symbp.ones(0, 2, 3))


def test_no_second_derivative_through_a_scan() -> None:
    h0 = symbp.tensor(np.ones((2, 3)), requires_grad=True)
    xs = symbp.tensor(np.ones((4, 2, 3)))
    out = symbp.scan(lambda h, x: (h * x).tanh(), h0, xs).sum()
    (g,) = symbp.autograd.grad(out, [h0], create_graph=True)
    with pytest.raises(NotImplementedError, match="no second derivatives through a recurrent"):
        g.sum().backward()
