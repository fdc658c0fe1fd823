"""symbp.formulas on convolutional networks: conv and pooling print in index notation.

The strings are the output format, so they are asserted exactly. Independently, the printed
formulas are transcribed into plain NumPy loops (``entry`` leaves out a term whose index is
outside its tensor or no whole number, as the legend says) and compared with symbp's
gradients to 1e-12 in float64: a check that the printed formula is the computed one.
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

import symbp
from symbp import nn
from symbp.cli import main


def one_line(text: str) -> str:
    """Collapse the column alignment: 'δ2     = ...' -> 'δ2 = ...'."""
    return re.sub(r" +", " ", text)


def run(net, x_shape, seed: int = 0):
    """(net, loss, x, labels, formulas) after an eager float64 forward pass."""
    rng = np.random.default_rng(seed)
    symbp.manual_seed(seed)
    net = net.double()
    x = symbp.tensor(rng.standard_normal(x_shape))
    y = symbp.tensor(rng.integers(0, 3, size=x_shape[0]))
    loss = nn.CrossEntropyLoss()(net(x), y)
    net.zero_grad()
    loss.backward()
    return net, loss, x.numpy(), y.numpy(), symbp.formulas(loss)


def entry(t: np.ndarray, *idx) -> float:
    """t[idx], or 0 where the printed formula leaves the term out: an index that is no whole
    number (a stride's transposed position) or falls outside the tensor (zero padding)."""
    out = []
    for i, n in zip(idx, t.shape):
        if i != int(i) or not 0 <= i < n:
            return 0.0
        out.append(int(i))
    return float(t[tuple(out)])


def grid(*sizes: int):
    return itertools.product(*(range(n) for n in sizes))


# ---------------------------------------------------------------- the network


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3)
    )


SMALL_TEXT = "\n".join(
    [
        "forward",
        "  z1[b,o,y,x]     = Σ_{i,p,q} W1[o,i,p,q]·x[b,i,y+p−1,x+q−1] + b1[o]",
        "  h               = relu(z1)",
        "  s1[b,c,y,x]     = max_{p,q} h[b,c,2y+p,2x+q]",
        "  z2              = flatten(s1)·W2ᵀ + b2",
        "  E               = −Σ Σ_dim1 (log_softmax(z2) ⊙ onehot(y))/2",
        "backward",
        "  δ2              = (softmax(z2) − onehot(y))/2",
        "  ∂E/∂W2          = δ2ᵀ·flatten(s1)",
        "  ∂E/∂b2          = Σ_batch δ2",
        "  δ1[b,c,u,v]     = [z1[b,c,u,v] > 0]·Σ_{y,x} (δ2·W2)[b,4c+2y+x]"
        "·[(u, v) = argmax_{p,q} h[b,c,2y+p,2x+q]]",
        "  ∂E/∂W1[o,i,p,q] = Σ_{b,y,x} δ1[b,o,y,x]·x[b,i,y+p−1,x+q−1]",
        "  ∂E/∂b1[o]       = Σ_{b,y,x} δ1[b,o,y,x]",
        "where",
    ]
)

SMALL_LEGEND = [
    "  s1  output of layer 2     f64[2,2,2,2]",
    "  δ1  ∂E/∂z1, error signal  f64[2,2,4,4]",
    "  flatten(s1)[b,4c+2y+x] = s1[b,c,y,x]: each sample's entries in one row",
    "  Σ_{p,q} sums over all values of p and q, leaving out every term whose index falls "
    "outside its tensor (zero padding)",
    "  argmax_{p,q} the position of the window's first maximum in row-major (p, q) order, "
    "which alone receives the window's gradient (ties as in PyTorch)",
]


def test_small_cnn_prints_in_index_notation():
    *_, f = run(small_cnn(), (2, 1, 4, 4))
    text = str(f)
    assert text.startswith(SMALL_TEXT), text
    for line in SMALL_LEGEND:
        assert line in text.splitlines(), f"{line!r} not in\n{text}"


def test_small_cnn_latex():
    *_, f = run(small_cnn(), (2, 1, 4, 4))
    latex = f.latex()
    for line in [
        r"z_{1}[b,o,y,x] &= \sum_{i,p,q} W_{1}[o,i,p,q] \cdot x[b,i,y+p-1,x+q-1] + b_{1}[o]",
        r"s_{1}[b,c,y,x] &= \max_{p,q} h[b,c,2y+p,2x+q]",
        r"z_{2} &= \operatorname{flatten}\left(s_{1}\right) \cdot {W_{2}}^{\top} + b_{2}",
        r"\delta_{1}[b,c,u,v] &= \left[z_{1}[b,c,u,v] > 0\right] \cdot \sum_{y,x} "
        r"\left(\delta_{2} \cdot W_{2}\right)[b,4c+2y+x] \cdot \left[(u, v) = "
        r"\operatorname{argmax}_{p,q}\, h[b,c,2y+p,2x+q]\right]",
        r"\frac{\partial E}{\partial W_{1}[o,i,p,q]} &= \sum_{b,y,x} \delta_{1}[b,o,y,x] "
        r"\cdot x[b,i,y+p-1,x+q-1]",
        r"\frac{\partial E}{\partial b_{1}[o]} &= \sum_{b,y,x} \delta_{1}[b,o,y,x]",
    ]:
        assert line in latex, f"{line!r} not in\n{latex}"


def test_small_cnn_equations_evaluate_to_the_gradients():
    net, *_, f = run(small_cnn(), (2, 1, 4, 4))
    values = f.evaluate()  # the SymPy equations behind the text, lambdified
    for name, p in net.named_parameters():
        got = values[f.grad(name).lhs].reshape(p.data.shape)
        np.testing.assert_allclose(got, p.grad, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- strides, transposed sums


def strided_cnn():
    """Two stride-2, padding-1 convolutions, then an overlapping max pool (stride 1)."""
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(2, 3, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2, stride=1),
        nn.Flatten(),
        nn.Linear(12, 3),
    )


STRIDED_LINES = [
    "z1[b,o,y,x] = Σ_{i,p,q} W1[o,i,p,q]·x[b,i,2y+p−1,2x+q−1] + b1[o]",
    "h1 = relu(z1)",
    "z2[b,o,y,x] = Σ_{i,p,q} W2[o,i,p,q]·h1[b,i,2y+p−1,2x+q−1] + b2[o]",
    "h2 = relu(z2)",
    "s2[b,c,y,x] = max_{p,q} h2[b,c,y+p,x+q]",
    "z3 = flatten(s2)·W3ᵀ + b3",
    "δ2[b,c,u,v] = [z2[b,c,u,v] > 0]·Σ_{y,x} (δ3·W3)[b,4c+2y+x]·"
    "[(u, v) = argmax_{p,q} h2[b,c,y+p,x+q]]",
    "∂E/∂W2[o,i,p,q] = Σ_{b,y,x} δ2[b,o,y,x]·h1[b,i,2y+p−1,2x+q−1]",
    "∂E/∂b2[o] = Σ_{b,y,x} δ2[b,o,y,x]",
    "δ1[b,i,u,v] = [z1[b,i,u,v] > 0]·Σ_{o,p,q} δ2[b,o,(u−p+1)/2,(v−q+1)/2]·W2[o,i,p,q]",
    "∂E/∂W1[o,i,p,q] = Σ_{b,y,x} δ1[b,o,y,x]·x[b,i,2y+p−1,2x+q−1]",
    "∂E/∂b1[o] = Σ_{b,y,x} δ1[b,o,y,x]",
    "Σ_{p,q} sums over all values of p and q, leaving out every term whose index falls "
    "outside its tensor or is no whole number (zero padding)",
]


def test_strided_cnn_prints_strides_padding_and_the_transposed_sum():
    *_, f = run(strided_cnn(), (2, 1, 10, 10))
    text = one_line(str(f))
    for line in STRIDED_LINES:
        assert line in text, f"{line!r} not in\n{text}"


def test_the_printed_strided_formulas_are_the_gradients():
    """Each printed formula of STRIDED_LINES, transcribed into loops, against backward()."""
    net, _, x, labels, f = run(strided_cnn(), (2, 1, 10, 10))
    W1, b1 = net[0].weight.numpy(), net[0].bias.numpy()
    W2, b2 = net[2].weight.numpy(), net[2].bias.numpy()
    W3, b3 = net[6].weight.numpy(), net[6].bias.numpy()
    B = x.shape[0]

    # forward, as printed
    z1 = np.zeros((B, 2, 5, 5))
    for b, o, y, xx in grid(*z1.shape):
        z1[b, o, y, xx] = b1[o] + sum(
            W1[o, i, p, q] * entry(x, b, i, 2 * y + p - 1, 2 * xx + q - 1)
            for i, p, q in grid(1, 3, 3)
        )
    h1 = np.maximum(z1, 0)
    z2 = np.zeros((B, 3, 3, 3))
    for b, o, y, xx in grid(*z2.shape):
        z2[b, o, y, xx] = b2[o] + sum(
            W2[o, i, p, q] * entry(h1, b, i, 2 * y + p - 1, 2 * xx + q - 1)
            for i, p, q in grid(2, 3, 3)
        )
    h2 = np.maximum(z2, 0)
    s2 = np.zeros((B, 3, 2, 2))
    for b, c, y, xx in grid(*s2.shape):
        s2[b, c, y, xx] = max(h2[b, c, y + p, xx + q] for p, q in grid(2, 2))
    z3 = s2.reshape(B, 12) @ W3.T + b3  # flatten(s2)[b,4c+2y+x] = s2[b,c,y,x]
    e = np.exp(z3 - z3.max(axis=1, keepdims=True))
    d3 = (e / e.sum(axis=1, keepdims=True) - np.eye(3)[labels]) / B  # δ3: mean cross-entropy

    # backward, as printed
    g = d3 @ W3  # (δ3·W3)[b, 4c+2y+x]

    def argmax(b, c, y, xx):  # the first maximum in row-major (p, q) order
        window = [(h2[b, c, y + p, xx + q], (y + p, xx + q)) for p, q in grid(2, 2)]
        best = max(v for v, _ in window)
        return next(pos for v, pos in window if v == best)

    d2 = np.zeros(z2.shape)
    for b, c, u, v in grid(*d2.shape):
        d2[b, c, u, v] = (z2[b, c, u, v] > 0) * sum(
            g[b, 4 * c + 2 * y + xx] * ((u, v) == argmax(b, c, y, xx)) for y, xx in grid(2, 2)
        )
    gW2 = np.zeros(W2.shape)
    for o, i, p, q in grid(*W2.shape):
        gW2[o, i, p, q] = sum(
            d2[b, o, y, xx] * entry(h1, b, i, 2 * y + p - 1, 2 * xx + q - 1)
            for b, y, xx in grid(B, 3, 3)
        )
    gb2 = np.array([sum(d2[b, o, y, xx] for b, y, xx in grid(B, 3, 3)) for o in range(3)])
    d1 = np.zeros(z1.shape)
    for b, i, u, v in grid(*d1.shape):
        d1[b, i, u, v] = (z1[b, i, u, v] > 0) * sum(
            entry(d2, b, o, (u - p + 1) / 2, (v - q + 1) / 2) * W2[o, i, p, q]
            for o, p, q in grid(3, 3, 3)
        )
    gW1 = np.zeros(W1.shape)
    for o, i, p, q in grid(*W1.shape):
        gW1[o, i, p, q] = sum(
            d1[b, o, y, xx] * entry(x, b, i, 2 * y + p - 1, 2 * xx + q - 1)
            for b, y, xx in grid(B, 5, 5)
        )
    gb1 = np.array([sum(d1[b, o, y, xx] for b, y, xx in grid(B, 5, 5)) for o in range(2)])

    for printed, p in [(gW1, net[0].weight), (gb1, net[0].bias)]:
        np.testing.assert_allclose(printed, p.grad, rtol=0, atol=1e-12)
    for printed, p in [(gW2, net[2].weight), (gb2, net[2].bias)]:
        np.testing.assert_allclose(printed, p.grad, rtol=0, atol=1e-12)
    assert np.abs(gW1).max() > 1e-3 and np.abs(gW2).max() > 1e-3  # not vacuous
    # and the printed equations' own SymPy forms evaluate to the same
    values = f.evaluate()
    np.testing.assert_allclose(values[f.grad("W1").lhs], gW1, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- dilation, average pooling


def test_dilation_and_average_pooling():
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=2, dilation=2),
        nn.Tanh(),
        nn.AvgPool2d(3, stride=2, padding=1),
        nn.Flatten(),
        nn.Linear(2 * 3 * 3, 3),
    )
    net, *_, f = run(net, (2, 1, 6, 6))
    text = one_line(str(f))
    for line in [
        "z1[b,o,y,x] = Σ_{i,p,q} W1[o,i,p,q]·x[b,i,y+2p−2,x+2q−2] + b1[o]",
        "s1[b,c,y,x] = Σ_{p,q} h[b,c,2y+p−1,2x+q−1]/9",
        "δ1[b,c,u,v] = (1 − h[b,c,u,v]²)·Σ_{p,q} unflatten(δ2·W2)[b,c,(u−p+1)/2,(v−q+1)/2]/9",
        "unflatten(δ2·W2)[b,c,y,x] = (δ2·W2)[b,9c+3y+x]: each sample's row back in shape [2,3,3]",
        "∂E/∂W1[o,i,p,q] = Σ_{b,y,x} δ1[b,o,y,x]·x[b,i,y+2p−2,x+2q−2]",
    ]:
        assert line in text, f"{line!r} not in\n{text}"
    values = f.evaluate()
    for name, p in net.named_parameters():
        got = values[f.grad(name).lhs].reshape(p.data.shape)
        np.testing.assert_allclose(got, p.grad, rtol=1e-12, atol=1e-14)

    # the average-pool gradient as printed: each window's share, transposed
    W2 = net[4].weight.numpy()
    h = np.tanh(values[f.symbols["z1"]])
    d2 = values[f.symbols["δ2"]]
    g = (d2 @ W2).reshape(2, 2, 3, 3)  # unflatten(δ2·W2)
    d1 = np.zeros(h.shape)
    for b, c, u, v in grid(*h.shape):
        d1[b, c, u, v] = (1 - h[b, c, u, v] ** 2) * sum(
            entry(g, b, c, (u - p + 1) / 2, (v - q + 1) / 2) / 9 for p, q in grid(3, 3)
        )
    np.testing.assert_allclose(d1, values[f.symbols["δ1"]], rtol=0, atol=1e-12)


def test_a_grouped_convolution_still_prints_and_evaluates():
    net = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(16, 3))
    net, *_, f = run(net, (2, 2, 4, 4))
    text = one_line(str(f))
    assert "z1[b,o,y,x] = conv2d(x, W1)[b,o,y,x] + b1[o]" in text
    assert "∂E/∂W1[o,i,p,q] = conv2d_weight_grad(x, δ1)[o,i,p,q]" in text
    values = f.evaluate()
    np.testing.assert_allclose(values[f.grad("W1").lhs], net[0].weight.grad, atol=1e-14)


def test_adaptive_average_pooling_is_a_mean_over_positions():
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
        nn.Linear(2, 3),
    )
    *_, f = run(net, (2, 1, 5, 5))
    text = one_line(str(f))
    assert "s1[b,o,0,0] = Σ_{y,x} h[b,o,y,x]/25" in text
    assert "δ1[b,c,u,v] = (δ2·W2)[b,c]·[z1[b,c,u,v] > 0]/25" in text


# ---------------------------------------------------------------- command line


def test_command_line_formulas_of_a_cnn(capsys):
    assert main(["formulas", "examples/model_cnn.py"]) == 0
    text = one_line(capsys.readouterr().out)
    assert "∂E/∂W1[o,i,p,q] = Σ_{b,y,x} δ1[b,o,y,x]·x[b,i,y+p−1,x+q−1]" in text
    assert main(["formulas", "examples/model_cnn.py", "--latex"]) == 0
    latex = capsys.readouterr().out
    assert r"\operatorname{argmax}_{p,q}\, h[b,c,2y+p,2x+q]" in latex


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).resolve().parents[1])


def test_dropout_and_batch_norm_print_and_evaluate():
    """The dropout mask is a named tensor m (its seed is no data of the model), and batch
    norm's means over images are index sums; every equation still evaluates to backward()."""
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, bias=False),
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.25),
        nn.Linear(8, 3),
    )
    net, *_, f = run(net, (2, 1, 4, 4))
    text = one_line(str(f))
    assert "h′ = 4·flatten(s) ⊙ m/3" in text
    assert "m dropout mask: 1 with probability 0.75, else 0 f64[2,8]" in text
    assert "∂E/∂b2[o] = Σ_{b,y,x} " in text  # batch norm's shift, summed over an image
    values = f.evaluate()
    for name, p in net.named_parameters():
        got = values[f.grad(name).lhs].reshape(p.data.shape)
        np.testing.assert_allclose(got, p.grad, rtol=1e-10, atol=1e-13)


def test_sync_batch_norm_prints_and_evaluates_as_batch_norm():
    """Formulas describe one process, where SyncBatchNorm's sums across ranks are their own
    values: its equations evaluate to backward() as batch norm's do."""
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.SyncBatchNorm(2), nn.Tanh(),
                        nn.Flatten(), nn.Linear(32, 3))  # fmt: skip
    net, *_, f = run(net, (3, 1, 4, 4))
    assert "∂E/∂b2[o] = Σ_{b,y,x} " in one_line(str(f))
    values = f.evaluate()
    for name, p in net.named_parameters():
        got = values[f.grad(name).lhs].reshape(p.data.shape)
        np.testing.assert_allclose(got, p.grad, rtol=1e-10, atol=1e-13)


def test_the_scalar_level_points_at_the_index_notation():
    *_, f = run(small_cnn(), (1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"conv2d.*in index notation: print\(formulas\)"):
        f.scalar("b1")


def test_the_index_notation_renders_with_mathtext(tmp_path):
    pytest.importorskip("matplotlib")
    *_, f = run(strided_cnn(), (2, 1, 10, 10))
    symbp.plot_formula(f, tmp_path / "cnn.png")  # raises on anything mathtext cannot parse
    assert (tmp_path / "cnn.png").stat().st_size > 0


def test_stride_and_dilation_together_in_the_transposed_sum():
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        nn.Tanh(),
        nn.Conv2d(2, 2, 3, stride=2, padding=2, dilation=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * 3 * 3, 3),
    )
    net, _, x, _, f = run(net, (2, 1, 6, 6))
    text = one_line(str(f))
    for line in [
        "z2[b,o,y,x] = Σ_{i,p,q} W2[o,i,p,q]·h1[b,i,2y+2p−2,2x+2q−2] + b2[o]",
        "δ2[b,c,u,v] = (δ3·W3)[b,9c+3u+v]·[z2[b,c,u,v] > 0]",
        "δ1[b,i,u,v] = (1 − h1[b,i,u,v]²)·Σ_{o,p,q} δ2[b,o,(u−2p+2)/2,(v−2q+2)/2]·W2[o,i,p,q]",
    ]:
        assert line in text, f"{line!r} not in\n{text}"
    values = f.evaluate()
    s = f.symbols
    h1, d2, W2 = values[s["h1"]], values[s["δ2"]], net[2].weight.numpy()
    d1 = np.zeros(h1.shape)
    for b, i, u, v in grid(*d1.shape):  # the printed δ1, term by term
        d1[b, i, u, v] = (1 - h1[b, i, u, v] ** 2) * sum(
            entry(d2, b, o, (u - 2 * p + 2) / 2, (v - 2 * q + 2) / 2) * W2[o, i, p, q]
            for o, p, q in grid(2, 3, 3)
        )
    np.testing.assert_allclose(d1, values[s["δ1"]], rtol=0, atol=1e-12)
    gW1 = np.zeros((2, 1, 3, 3))
    for o, i, p, q in grid(*gW1.shape):
        gW1[o, i, p, q] = sum(
            d1[b, o, y, xx] * entry(x, b, i, y + p - 1, xx + q - 1) for b, y, xx in grid(2, 6, 6)
        )
    np.testing.assert_allclose(gW1, net[0].weight.grad, rtol=0, atol=1e-12)
