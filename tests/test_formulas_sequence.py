"""symbp.formulas on sequence layers: a recurrent layer's loop (one ``scan``) prints its step
with a time index and its δ recurrence; LayerNorm and attention's softmax print their error
signals in closed form.

As in tests/test_formulas_cnn.py, the printed lines are asserted exactly, and independently
each printed formula is transcribed into plain NumPy loops (forward, then the δ recurrence
over t backwards) and compared with backward() to 1e-12 in float64: a check that what is
printed is what symbp computes. The RNN, the GRU and the LSTM print from the same code.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import symbp
from symbp import nn
from symbp.nn import functional as F

pytestmark = pytest.mark.usefixtures("float64")  # conftest's; its autouse one restores it

B, T, N_IN, H = 2, 3, 2, 3  # batch, steps, inputs, hidden


def one_line(text: str) -> str:
    """Collapse the column alignment: 'δ2     = ...' -> 'δ2 = ...'."""
    return re.sub(r" +", " ", text)


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


class Head(nn.Module):
    """A recurrent layer (batch first) and a linear read-out of every step."""

    def __init__(self, layer):
        super().__init__()
        self.rnn = layer
        self.fc = nn.Linear(H, 1)

    def forward(self, x):
        return self.fc(self.rnn(x)[0])


def recurrent(kind: str):
    """(net, printed text, the traced formulas, x, y, grads of backward()) of a tiny model."""
    symbp.manual_seed(0)
    net = Head(getattr(nn, kind)(N_IN, H, batch_first=True)).double()
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((B, T, N_IN)), rng.standard_normal((B, T, 1))

    def loss(x, y):
        return ((net(x) - y) ** 2).sum() / 2

    f = symbp.formulas(symbp.trace(loss, x, y, names=["x", "y"]))
    net.zero_grad()
    loss(symbp.tensor(x), symbp.tensor(y)).backward()
    grads = {n: p.grad.numpy() for n, p in net.named_parameters()}
    return net, one_line(str(f)), f, x, y, grads


def params(net, kind):
    """The layer's weights as NumPy: W_ih, b_ih, W_hh, b_hh, and the read-out's W2, b2."""
    r = net.rnn
    return [p.numpy() for p in (r.weight_ih_l0, r.bias_ih_l0, r.weight_hh_l0, r.bias_hh_l0,
                                 net.fc.weight, net.fc.bias)]  # fmt: skip


def check(grads, got):
    for name, g in got.items():
        np.testing.assert_allclose(g, grads[name], rtol=0, atol=1e-12, err_msg=name)


def assert_lines(text: str, lines: list[str]) -> None:
    for line in lines:
        assert line in text, f"{line!r} not in\n{text}"


def head(h, W2, b2, y):
    """z2 = h·W2ᵀ + b2 (h is [T, B, H]: z2[b,t] reads h[t,b]), δ2 = z2 − y, and the loop's
    ε[t,b,k] = Σ_k′ δ2[b,t,k′]·W2[k′,k], as printed."""
    z2 = np.einsum("tbk,jk->btj", h, W2) + b2
    d2 = z2 - y
    return d2, np.einsum("btj,jk->tbk", d2, W2)


def outer_grads(x, du, h, d2, tag=""):
    """∂E/∂W_ih = Σ_{t,b} δu[t,b]ᵀ·x[b,t], ∂E/∂b_ih = Σ δu, ∂E/∂W2 = Σ δ2ᵀ·h."""
    return {
        "rnn.weight_ih_l0": np.einsum("tbg,bti->gi", du, x),
        "rnn.bias_ih_l0": du.sum((0, 1)),
        "fc.weight": np.einsum("btj,tbk->jk", d2, h),
        "fc.bias": d2.sum((0, 1)),
    }


# ---------------------------------------------------------------- LSTM

LSTM_LINES = [
    "u[i,j,k] = Σ_{k′} x[j,i,k′]·W_ih1[k,k′] + b_ih1[k]",
    "h_0 = 0",
    "c_0 = 0",
    "for t = 1 … 3:",
    "a_t = h_{t−1}·W_hh1ᵀ + b_hh1 + u_t",
    "i_t = σ(a^i_t)",
    "f_t = σ(a^f_t)",
    "g_t = tanh(a^g_t)",
    "o_t = σ(a^o_t)",
    "c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t",
    "h_t = o_t ⊙ tanh(c_t)",
    "z2[b,i,j] = Σ_{k} h[i,b,k]·W2[j,k] + b2[0]",
    "δ2 = z2 − y",
    "ε^h[i,j,k] = Σ_{k′} δ2[j,i,k′]·W2[k′,k]",
    "for t = 3 … 1: (δa_4 = δc_4 = 0)",
    "δh_t = δa_{t+1}·W_hh1 + ε^h_t",
    "δc_t = δc_{t+1} ⊙ f_{t+1} + δh_t ⊙ o_t ⊙ (1 − tanh(c_t)²)",
    "δi_t = δc_t ⊙ i_t ⊙ (1 − i_t) ⊙ g_t",
    "δf_t = δc_t ⊙ f_t ⊙ (1 − f_t) ⊙ c_{t−1}",
    "δg_t = δc_t ⊙ i_t ⊙ (1 − g_t²)",
    "δo_t = δh_t ⊙ o_t ⊙ (1 − o_t) ⊙ tanh(c_t)",
    "δa_t = [δi_t, δf_t, δg_t, δo_t]",
    "∂E/∂W_hh1 = Σ_t δa_tᵀ·h_{t−1}",
    "∂E/∂b_hh1 = Σ_t Σ_batch δa_t",
    "∂E/∂b_ih1[k] = Σ_{i,j} δa[j,i,k]",
    "i_t gate i of rnn at step t f64[B,3]",
    "δa δa_t at every step t, stacked f64[3,B,12]",
]


def test_lstm_prints_its_step_and_the_delta_recurrence():
    *_, text, f, x, y, grads = recurrent("LSTM")
    assert_lines(text, LSTM_LINES)
    values = f.evaluate({"x": x, "y": y})  # the SymPy equations behind the text, step by step
    check(grads, {name: values[f.grad(name).lhs].reshape(grads[name].shape) for name in grads})


def test_the_printed_lstm_formulas_are_the_gradients():
    """Each line of LSTM_LINES, transcribed into NumPy loops, against backward()."""
    net, text, _, x, y, grads = recurrent("LSTM")
    assert_lines(text, LSTM_LINES)
    W_ih, b_ih, W_hh, b_hh, W2, b2 = params(net, "LSTM")
    u = np.einsum("bti,gi->tbg", x, W_ih) + b_ih
    h, c = np.zeros((T + 1, B, H)), np.zeros((T + 1, B, H))  # h[t]: h_t, h[0] = h_0 = 0
    gates = np.zeros((T + 1, 4, B, H))
    for t in range(1, T + 1):
        a = h[t - 1] @ W_hh.T + b_hh + u[t - 1]
        i, f_, g, o = (a[:, k * H : (k + 1) * H] for k in range(4))
        i, f_, g, o = sigmoid(i), sigmoid(f_), np.tanh(g), sigmoid(o)
        c[t] = f_ * c[t - 1] + i * g
        h[t] = o * np.tanh(c[t])
        gates[t] = i, f_, g, o
    d2, eps = head(h[1:], W2, b2, y)
    da = np.zeros((T + 2, B, 4 * H))  # da[T+1] = δa_{T+1} = 0, likewise δc
    dc = np.zeros((T + 2, B, H))
    gW, gb = np.zeros_like(W_hh), np.zeros_like(b_hh)
    f_next = np.zeros((B, H))
    for t in range(T, 0, -1):
        i, f_, g, o = gates[t]
        dh = da[t + 1] @ W_hh + eps[t - 1]
        dc[t] = dc[t + 1] * f_next + dh * o * (1 - np.tanh(c[t]) ** 2)
        di = dc[t] * i * (1 - i) * g
        df = dc[t] * f_ * (1 - f_) * c[t - 1]
        dg = dc[t] * i * (1 - g**2)
        do = dh * o * (1 - o) * np.tanh(c[t])
        da[t] = np.concatenate([di, df, dg, do], axis=1)
        gW += da[t].T @ h[t - 1]  # ∂E/∂W_hh1 = Σ_t δa_tᵀ·h_{t−1}
        gb += da[t].sum(0)
        f_next = f_
    got = outer_grads(x, da[1 : T + 1], h[1:], d2)
    got |= {"rnn.weight_hh_l0": gW, "rnn.bias_hh_l0": gb}
    check(grads, got)


# ---------------------------------------------------------------- GRU and RNN: the same code

GRU_LINES = [
    "a_t = h_{t−1}·W_hh1ᵀ + b_hh1",
    "r_t = σ(a^r_t + u^r_t)",
    "z_t = σ(a^z_t + u^z_t)",
    "n_t = tanh(r_t ⊙ a^n_t + u^n_t)",
    "h_t = z_t ⊙ h_{t−1} + (1 − z_t) ⊙ n_t",
    "ε[i,j,k] = Σ_{k′} δ2[j,i,k′]·W2[k′,k]",
    "for t = 3 … 1: (δa_4 = δh_4 = 0)",
    "δh_t = δa_{t+1}·W_hh1 + δh_{t+1} ⊙ z_{t+1} + ε_t",
    "δr_t = δh_t ⊙ r_t ⊙ (1 − r_t) ⊙ (1 − z_t) ⊙ (1 − n_t²) ⊙ a^n_t",
    "δz_t = (h_{t−1} − n_t) ⊙ δh_t ⊙ z_t ⊙ (1 − z_t)",
    "δn_t = δh_t ⊙ (1 − z_t) ⊙ (1 − n_t²)",
    "δa^n_t = δh_t ⊙ r_t ⊙ (1 − z_t) ⊙ (1 − n_t²)",
    "δu_t = [δr_t, δz_t, δn_t]",
    "δa_t = [δr_t, δz_t, δa^n_t]",
    "∂E/∂W_hh1 = Σ_t δa_tᵀ·h_{t−1}",
    "∂E/∂b_hh1 = Σ_t Σ_batch δa_t",
]


def test_the_printed_gru_formulas_are_the_gradients():
    net, text, f, x, y, grads = recurrent("GRU")
    assert_lines(text, GRU_LINES)
    W_ih, b_ih, W_hh, b_hh, W2, b2 = params(net, "GRU")
    u = np.einsum("bti,gi->tbg", x, W_ih) + b_ih
    h = np.zeros((T + 1, B, H))
    keep = {}
    for t in range(1, T + 1):
        a = h[t - 1] @ W_hh.T + b_hh
        blk = [slice(k * H, (k + 1) * H) for k in range(3)]
        r = sigmoid(a[:, blk[0]] + u[t - 1][:, blk[0]])
        z = sigmoid(a[:, blk[1]] + u[t - 1][:, blk[1]])
        n = np.tanh(r * a[:, blk[2]] + u[t - 1][:, blk[2]])
        h[t] = z * h[t - 1] + n * (1 - z)
        keep[t] = a, r, z, n
    d2, eps = head(h[1:], W2, b2, y)
    da_next, dh_next, z_next = np.zeros((B, 3 * H)), np.zeros((B, H)), np.zeros((B, H))
    du = np.zeros((T, B, 3 * H))
    gW, gb = np.zeros_like(W_hh), np.zeros_like(b_hh)
    for t in range(T, 0, -1):
        a, r, z, n = keep[t]
        dh = da_next @ W_hh + z_next * dh_next + eps[t - 1]
        dr = dh * (1 - n**2) * (1 - z) * r * (1 - r) * a[:, 2 * H :]
        dz = (h[t - 1] - n) * dh * z * (1 - z)
        dn = dh * (1 - n**2) * (1 - z)
        dan = dh * (1 - n**2) * (1 - z) * r
        du[t - 1] = np.concatenate([dr, dz, dn], axis=1)
        da = np.concatenate([dr, dz, dan], axis=1)
        gW += da.T @ h[t - 1]
        gb += da.sum(0)
        da_next, dh_next, z_next = da, dh, z
    got = outer_grads(x, du, h[1:], d2)
    got |= {"rnn.weight_hh_l0": gW, "rnn.bias_hh_l0": gb}
    check(grads, got)
    values = f.evaluate({"x": x, "y": y})
    check(grads, {name: values[f.grad(name).lhs].reshape(grads[name].shape) for name in grads})


RNN_LINES = [
    "h_t = tanh(h_{t−1}·W_hh1ᵀ + b_hh1 + u_t)",
    "for t = 3 … 1: (δu_4 = 0)",
    "δu_t = (δu_{t+1}·W_hh1 + ε_t) ⊙ (1 − h_t²)",
    "∂E/∂W_hh1 = Σ_t δu_tᵀ·h_{t−1}",
    "∂E/∂b_hh1 = Σ_t Σ_batch δu_t",
]


def test_the_printed_rnn_formulas_are_the_gradients():
    net, text, f, x, y, grads = recurrent("RNN")
    assert_lines(text, RNN_LINES)
    W_ih, b_ih, W_hh, b_hh, W2, b2 = params(net, "RNN")
    u = np.einsum("bti,gi->tbg", x, W_ih) + b_ih
    h = np.zeros((T + 1, B, H))
    for t in range(1, T + 1):
        h[t] = np.tanh(h[t - 1] @ W_hh.T + b_hh + u[t - 1])
    d2, eps = head(h[1:], W2, b2, y)
    du = np.zeros((T + 1, B, H))  # du[T] = δu_{T+1} = 0 (shifted by one: du[t-1] is δu_t)
    for t in range(T, 0, -1):
        du[t - 1] = (du[t] @ W_hh + eps[t - 1]) * (1 - h[t] ** 2)
    got = outer_grads(x, du[:T], h[1:], d2)
    got["rnn.weight_hh_l0"] = sum(du[t - 1].T @ h[t - 1] for t in range(1, T + 1))
    got["rnn.bias_hh_l0"] = du[:T].sum((0, 1))
    check(grads, got)
    values = f.evaluate({"x": x, "y": y})
    check(grads, {name: values[f.grad(name).lhs].reshape(grads[name].shape) for name in grads})


def test_stacked_and_bidirectional_loops_print_one_block_each():
    """Layers of one body each print (and evaluate) their own loop, with names of their own."""
    for kw, lines in [
        ({"num_layers": 2}, ["h′_t = o′_t ⊙ tanh(c′_t)", "i′_t = σ(a′^i_t)", "u′[i,j,k] = "]),
        ({"bidirectional": True}, ["h′_t = o′_t ⊙ tanh(c′_t)"]),
    ]:
        symbp.manual_seed(0)
        net = nn.LSTM(N_IN, H, batch_first=True, **kw).double()
        rng = np.random.default_rng(2)
        x = rng.standard_normal((B, T, N_IN))

        def loss(x, net=net):
            return (net(x)[0] ** 2).sum()

        f = symbp.formulas(symbp.trace(loss, x, names=["x"]))
        text = one_line(str(f))
        assert text.count("for t = 1 … 3:") == 2 and text.count("for t = 3 … 1:") == 2, text
        assert_lines(text, lines)
        net.zero_grad()
        loss(symbp.tensor(x)).backward()
        values = f.evaluate({"x": x})
        for name, p in net.named_parameters():
            got = values[f.grad(name).lhs].reshape(p.grad.shape)
            np.testing.assert_allclose(got, p.grad.numpy(), rtol=0, atol=1e-12, err_msg=name)


def test_the_lstm_formulas_in_latex():
    *_, f, _, _, _ = recurrent("LSTM")
    latex = f.latex()
    for piece in [
        r"&\textbf{for } t = 1, \dots, 3",
        r"\quad i_{t} &= \sigma\left(a^{i}_{t}\right)",
        r"\quad c_{t} &= f_{t} \odot c_{t-1} + i_{t} \odot g_{t}",
        r"&\textbf{for } t = 3, \dots, 1 \quad (\delta a_{4} = \delta c_{4} = 0)",
        r"\quad \delta c_{t} &= \delta c_{t+1} \odot f_{t+1} + \delta h_{t} \odot o_{t} \odot "
        r"\left(1 - {\tanh\left(c_{t}\right)}^{2}\right)",
        r"\quad \delta a_{t} &= \left[\delta i_{t}, \delta f_{t}, \delta g_{t}, "
        r"\delta o_{t}\right]",
        r"\frac{\partial E}{\partial W_{hh,1}} &= \sum_{t} {\delta a_{t}}^{\top} \cdot h_{t-1}",
        r"\varepsilon^{h}[i,j,k]",
    ]:
        assert piece in latex, f"{piece!r} not in\n{latex}"


def test_the_sequence_formulas_render_with_mathtext(tmp_path):
    pytest.importorskip("matplotlib")
    *_, f, _, _, _ = recurrent("GRU")
    symbp.plot_formula(f, tmp_path / "gru.png")  # raises on anything mathtext cannot parse
    assert (tmp_path / "gru.png").stat().st_size > 0
    symbp.plot_formula(layer_norm()[2], tmp_path / "ln.png")
    symbp.plot_formula(attention()[2], tmp_path / "att.png")


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
def test_an_eager_loss_prints_the_loop_as_the_traced_one(kind):
    """symbp.formulas on an eager loss (the guide's first form) prints the loop the traced
    loss prints, line for line; only the legend's types hold the batch's size where the
    traced ones hold B. Its equations, evaluated from the eager forward pass, are the
    gradients backward() computed. (An eager layer once ran time as a Python loop: its
    unrolled steps printed no loop, and a batch-first LSTM's ended in an IndexError.)"""
    symbp.manual_seed(0)
    net = Head(getattr(nn, kind)(N_IN, H, batch_first=True)).double()
    rng = np.random.default_rng(1)
    x, t = rng.standard_normal((B, T, N_IN)), rng.standard_normal((B, T, 1))

    def loss(x, t):
        return ((net(x) - t) ** 2).sum() / 2

    traced = str(symbp.formulas(symbp.trace(loss, x, t, names=["x", "t"])))
    eager_loss = loss(symbp.tensor(x), symbp.tensor(t))
    net.zero_grad()
    eager_loss.backward()
    f = symbp.formulas(eager_loss)
    assert "for t = 1 … 3:" in str(f)
    body, legend = traced.split("\nwhere\n")
    legend = re.sub(r"(?<=[\[,])B(?=[,\]])", str(B), legend)  # f64[3,B,12] -> f64[3,2,12]
    legend = "\n".join(line for line in legend.splitlines() if "batch size" not in line)
    assert str(f) == f"{body}\nwhere\n{legend}"
    values = f.evaluate()
    for name, p in net.named_parameters():
        got = values[f.grad(name).lhs].reshape(p.grad.shape)
        np.testing.assert_allclose(got, p.grad.numpy(), rtol=0, atol=1e-12, err_msg=name)


def test_a_loop_written_by_hand_prints_its_legend_with_the_slices_it_flattens():
    """An Elman recurrence written as a Python loop over the steps of x·Wᵀ + b (batch first)
    prints unrolled; the legend's flatten line shows the slice it flattens, printed with the
    tensors' shapes as the equations are (it printed ``(δ3·W3)[]``, and a flattened slice
    of an unnamed product, x·W_ih1ᵀ + b_ih1 of an unrolled LSTM, ended in an IndexError)."""

    class Elman(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp, self.rec = nn.Linear(N_IN, H), nn.Linear(H, H, bias=False)
            self.fc = nn.Linear(H, 1)

        def forward(self, x):
            xw = x @ self.inp.weight.t() + self.inp.bias  # every step's input, in one product
            h, hs = None, []
            for k in range(T):
                h = (xw[:, k] if h is None else xw[:, k] + self.rec(h)).tanh()
                hs.append(h)
            return self.fc(symbp.stack(hs, 1))

    symbp.manual_seed(0)
    net = Elman().double()
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal((B, T, N_IN)), rng.standard_normal((B, T, 1))
    loss = ((net(symbp.tensor(x)) - symbp.tensor(t)) ** 2).sum() / 2
    net.zero_grad()
    loss.backward()
    f = symbp.formulas(loss)
    legend = str(f).splitlines()[-1]
    assert legend == (
        "  flatten((δ3·W3)[:, 2:])[b,3i+j] = (δ3·W3)[:, 2:][b,i,j]: "
        "each sample's entries in one row"
    )
    values = f.evaluate()
    for name, p in net.named_parameters():
        got = values[f.grad(name).lhs].reshape(p.grad.shape)
        np.testing.assert_allclose(got, p.grad.numpy(), rtol=0, atol=1e-12, err_msg=name)


# ---------------------------------------------------------------- LayerNorm


def layer_norm():
    """(net, x, formulas, text, t) after an eager float64 forward and backward pass."""
    symbp.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Tanh(), nn.Linear(4, 2)).double()
    rng = np.random.default_rng(3)
    x, t = rng.standard_normal((2, 3)), rng.standard_normal((2, 2))
    loss = ((net(symbp.tensor(x)) - symbp.tensor(t)) ** 2).sum() / 2
    net.zero_grad()
    loss.backward()
    f = symbp.formulas(loss)
    return net, x, f, one_line(str(f)), t


LN_LINES = [
    "z1 = x·W1ᵀ + b1",
    "μ2 = mean(z1)",
    "σ2 = √(1e−05 + mean((z1 − μ2)²))",
    "x̂2 = (z1 − μ2)/σ2",
    "h1 = x̂2 ⊙ W2 + b2",
    "h = tanh(h1)",
    "δ2 = (δ3·W3) ⊙ (1 − h²)",
    "∂E/∂W2 = Σ_batch (δ2 ⊙ x̂2)",
    "∂E/∂b2 = Σ_batch δ2",
    "δ1 = (δ2 ⊙ W2 − mean(δ2 ⊙ x̂2 ⊙ W2) ⊙ x̂2 − mean(δ2 ⊙ W2))/σ2",
    "∂E/∂W1 = δ1ᵀ·x",
    "δ2 ∂E/∂h1, error signal f64[2,4]",
    "mean(·) the mean along the axes a LayerNorm normalises, kept in its dims",
]


def test_layer_norm_prints_its_delta_in_closed_form():
    net, x, f, text, t = layer_norm()
    assert_lines(text, LN_LINES)
    W1, b1 = net[0].weight.numpy(), net[0].bias.numpy()
    W2, b2 = net[1].weight.numpy(), net[1].bias.numpy()
    W3, b3 = net[3].weight.numpy(), net[3].bias.numpy()
    z1 = x @ W1.T + b1
    mu = z1.mean(1, keepdims=True)
    sigma = np.sqrt(1e-05 + ((z1 - mu) ** 2).mean(1, keepdims=True))
    xhat = (z1 - mu) / sigma
    h = np.tanh(xhat * W2 + b2)
    d3 = h @ W3.T + b3 - t
    d2 = (d3 @ W3) * (1 - h**2)
    g = d2 * W2
    d1 = (g - (g * xhat).mean(1, keepdims=True) * xhat - g.mean(1, keepdims=True)) / sigma
    got = {
        "0.weight": d1.T @ x, "0.bias": d1.sum(0), "1.weight": (d2 * xhat).sum(0),
        "1.bias": d2.sum(0), "3.weight": d3.T @ h, "3.bias": d3.sum(0),
    }  # fmt: skip
    for name, p in net.named_parameters():
        np.testing.assert_allclose(got[name], p.grad, rtol=0, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(f.evaluate()[f.grad(name).lhs], p.grad, rtol=0, atol=1e-12)


def test_layer_norm_in_latex_and_without_its_affine():
    *_, f, _, _ = layer_norm()
    latex = f.latex()
    for piece in [
        r"\mu_{2} &= \operatorname{mean}\left(z_{1}\right)",
        r"\hat{x}_{2} &= \frac{z_{1} - \mu_{2}}{\sigma_{2}}",
        r"\operatorname{mean}\left(\delta_{2} \odot \hat{x}_{2} \odot W_{2}\right)",
    ]:
        assert piece in latex, f"{piece!r} not in\n{latex}"
    symbp.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4, elementwise_affine=False),
                        nn.Linear(4, 2)).double()  # fmt: skip
    x = symbp.tensor(np.random.default_rng(4).standard_normal((2, 3)))
    loss = (net(x) ** 2).sum()
    net.zero_grad()
    loss.backward()
    f = symbp.formulas(loss)
    assert "δ1 = (δ2·W2 − mean((δ2·W2) ⊙ x̂) ⊙ x̂ − mean(δ2·W2))/σ" in one_line(str(f))
    values = f.evaluate()
    for name, p in net.named_parameters():
        np.testing.assert_allclose(values[f.grad(name).lhs], p.grad, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- attention


class Attention(nn.Module):
    """Single-head self-attention: softmax(q·kᵀ/√d)·v of three projections."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(4, 4, bias=False) for _ in range(3))

    def forward(self, x):
        return F.scaled_dot_product_attention(self.q(x), self.k(x), self.v(x))


def attention():
    symbp.manual_seed(0)
    net = Attention().double()
    rng = np.random.default_rng(5)
    x, t = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    loss = ((net(symbp.tensor(x)) - symbp.tensor(t)) ** 2).sum() / 2
    net.zero_grad()
    loss.backward()
    f = symbp.formulas(loss)
    return net, x, f, one_line(str(f)), t


ATTENTION_LINES = [
    "S[b,i,j] = Σ_{k} z1[b,i,k]·z2[b,j,k]",
    "P = softmax(S/2)",
    "z[b,i,j] = Σ_{k} P[b,i,k]·z3[b,k,j]",
    "δ3 = z − t",
    "δP[b,i,j] = Σ_{k} δ3[b,i,k]·z3[b,j,k]",
    "δS[i,j,k] = (δP[i,j,k] − Σ_{k′} δP[i,j,k′]·P[i,j,k′])·P[i,j,k]/2",
    "∂E/∂W1[i,j] = ((δS·z2)ᵀ·x)[i,j]",
    "P attention weights: softmax along dim 2 f64[2,3,3]",
]


def test_attention_prints_the_delta_through_the_softmax_in_closed_form():
    net, x, f, text, t = attention()
    assert_lines(text, ATTENTION_LINES)
    Wq, Wk, Wv = (m.weight.numpy() for m in (net.q, net.k, net.v))
    z1, z2, z3 = x @ Wq.T, x @ Wk.T, x @ Wv.T
    S = np.einsum("bik,bjk->bij", z1, z2)
    e = np.exp(S / 2 - (S / 2).max(2, keepdims=True))
    P = e / e.sum(2, keepdims=True)
    d3 = np.einsum("bik,bkj->bij", P, z3) - t
    dP = np.einsum("bik,bjk->bij", d3, z3)
    dS = (dP - (dP * P).sum(2, keepdims=True)) * P / 2  # δS as printed, 1/√d = 1/2
    got = {
        "q.weight": np.einsum("bik,bkj,bil->jl", dS, z2, x),  # (δS·z2)ᵀ·x
        "k.weight": np.einsum("bkl,bki,blj->ij", dS, z1, x),  # (δSᵀ·z1)ᵀ·x
        "v.weight": np.einsum("bki,bkj,bil->jl", P, d3, x),
    }
    values = f.evaluate()
    for name, p in net.named_parameters():
        np.testing.assert_allclose(got[name], p.grad, rtol=0, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(values[f.grad(name).lhs], p.grad, rtol=0, atol=1e-12)
    latex = f.latex()
    assert r"P &= \operatorname{softmax}\left(\frac{S}{2}\right)" in latex, latex
    assert r"\delta S[i,j,k]" in latex and r"\delta P[i,j,k']" in latex, latex
