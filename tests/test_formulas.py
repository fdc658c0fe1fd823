"""symbp.formulas: the printed gradient formulas are checked by evaluating them.

Every check of a printed formula evaluates its SymPy form with numbers and compares with
loss.backward() and with float64 central differences; the strings are a secondary check.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import sympy

import symbp
from symbp import nn
from symbp.formulas import ScalarGradient, ScalarGradients

# ---------------------------------------------------------------- models


class Net222(nn.Module):
    """The tutorial's 2-2-2 sigmoid network."""

    def __init__(self) -> None:
        super().__init__()
        self.linear1 = nn.Linear(2, 2)
        self.sigmoid = nn.Sigmoid()
        self.linear2 = nn.Linear(2, 2)

    def forward(self, x):
        return self.sigmoid(self.linear2(self.sigmoid(self.linear1(x))))


W1 = np.array([[0.15, 0.20], [0.25, 0.30]])
B1 = np.array([0.35, 0.35])
W2 = np.array([[0.40, 0.45], [0.50, 0.55]])
B2 = np.array([0.60, 0.60])
X = np.array([[0.05, 0.10]])
T = np.array([[0.01, 0.99]])


def half_sse(out, t):
    return ((out - t) ** 2).sum() / 2


@pytest.fixture
def tutorial():
    """(net, loss, formulas) of the 2-2-2 network in float64, after one forward pass."""
    net = Net222().double()
    net.load_state_dict(
        {"linear1.weight": W1, "linear1.bias": B1, "linear2.weight": W2, "linear2.bias": B2}
    )
    x = symbp.tensor(X, dtype=symbp.float64)
    t = symbp.tensor(T, dtype=symbp.float64)
    loss = half_sse(net(x), t)
    return net, loss, symbp.formulas(loss)


def relu_ce(batch: int = 4, seed: int = 0):
    """A small ReLU MLP with cross-entropy, in float64: (net, loss function, x, labels)."""
    rng = np.random.default_rng(seed)
    symbp.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    x = symbp.tensor(rng.normal(size=(batch, 3)), dtype=symbp.float64)
    y = symbp.tensor(rng.integers(0, 3, size=batch))
    return net, (lambda: nn.CrossEntropyLoss()(net(x), y)), x, y


# ---------------------------------------------------------------- helpers


def backward_grads(net, loss) -> dict[str, np.ndarray]:
    net.zero_grad()
    loss.backward()
    return {name: p.grad.numpy().copy() for name, p in net.named_parameters()}


def central_differences(net, loss_fn, eps: float = 1e-6) -> dict[str, np.ndarray]:
    """float64 central differences of loss_fn() by every parameter entry."""
    out = {}
    for name, p in net.named_parameters():
        g = np.zeros_like(p.data)
        for idx in np.ndindex(*p.data.shape):
            keep = p.data.numpy()[idx]
            p.data.numpy()[idx] = keep + eps
            up = loss_fn().item()
            p.data.numpy()[idx] = keep - eps
            down = loss_fn().item()
            p.data.numpy()[idx] = keep
            g[idx] = (up - down) / (2 * eps)
        out[name] = g
    return out


def one_line(text: str) -> str:
    """Collapse the column alignment: 'δ2     = ...' -> 'δ2 = ...'."""
    return re.sub(r" +", " ", text)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def numpy_222() -> dict[str, float]:
    """The 2-2-2 forward pass in plain NumPy, under the scalar level's entry names."""
    z1 = X @ W1.T + B1
    h = sigmoid(z1)
    z2 = h @ W2.T + B2
    o = sigmoid(z2)
    values = {}
    for i in range(2):
        values |= {f"x{i + 1}": X[0, i], f"t{i + 1}": T[0, i]}
        values |= {f"z1_{i + 1}": z1[0, i], f"h{i + 1}": h[0, i]}
        values |= {f"z2_{i + 1}": z2[0, i], f"o{i + 1}": o[0, i]}
    for k, w in enumerate([*W1.ravel(), *W2.ravel()]):
        values[f"w{k + 1}"] = w
    for k, b in enumerate([*B1, *B2]):
        values[f"b{k + 1}"] = b
    return values


def at(expr: sympy.Expr, values: dict[str, float]) -> float:
    """Evaluate a scalar formula by substituting numbers for its symbols."""
    subs = {s: values[s.name] for s in expr.free_symbols}
    return float(expr.xreplace(subs).evalf(30))


# ---------------------------------------------------------------- tensor level, 2-2-2


def test_tutorial_tensor_level_reads_like_the_textbook(tutorial):
    _, _, f = tutorial
    text = one_line(str(f))
    for line in [
        "z1 = x·W1ᵀ + b1",
        "h = σ(z1)",
        "z2 = h·W2ᵀ + b2",
        "o = σ(z2)",
        "E = Σ (o − t)²/2",
        "δ2 = (o − t) ⊙ o ⊙ (1 − o)",
        "∂E/∂W2 = δ2ᵀ·h",
        "∂E/∂b2 = δ2",
        "δ1 = (δ2·W2) ⊙ h ⊙ (1 − h)",
        "∂E/∂W1 = δ1ᵀ·x",
        "∂E/∂b1 = δ1",
        "W1 linear1.weight f64[2,2]",
    ]:
        assert line in text, f"{line!r} not in\n{text}"
    # backpropagation order: δ2 and its gradients, then δ1 and its gradients
    order = [e.lhs.name for e in f.backward]
    assert order == ["δ2", "∂E/∂W2", "∂E/∂b2", "δ1", "∂E/∂W1", "∂E/∂b1"]


def test_tutorial_tensor_equations_evaluate_to_the_gradients(tutorial):
    net, loss, f = tutorial
    values = f.evaluate()  # every printed equation, evaluated with NumPy
    grads = backward_grads(net, loss)
    fd = central_differences(net, lambda: half_sse(net(symbp.tensor(X)), symbp.tensor(T)))
    for name, p in net.named_parameters():
        printed = values[f.grad(name).lhs].reshape(p.data.shape)
        np.testing.assert_allclose(printed, grads[name], rtol=1e-13, atol=1e-16)
        np.testing.assert_allclose(printed, fd[name], rtol=1e-7, atol=1e-9)
    # the named intermediates are the forward pass
    s = f.symbols
    np.testing.assert_allclose(values[s["o"]], sigmoid(sigmoid(X @ W1.T + B1) @ W2.T + B2))
    assert values[sympy.Symbol("E", real=True)] == pytest.approx(0.298371109, abs=1e-9)


def test_tutorial_equations_are_sympy(tutorial):
    _, _, f = tutorial
    s = f.symbols
    delta2 = dict(f.backward)[s["δ2"]]
    o, t = s["o"], s["t"]
    assert sympy.simplify(delta2 - (o - t) * o * (1 - o)) == 0
    assert {str(e.lhs) for e in f.forward} == {"z1", "h", "z2", "o", "E"}
    assert f.grad("W2") is f.grad("linear2.weight")


def test_tutorial_latex(tutorial):
    _, _, f = tutorial
    tex = f.latex()
    for piece in [r"\sigma", r"\odot", r"\delta_{2}", r"^{\top}", r"\partial W_{1}", r"\sum"]:
        assert piece in tex
    assert tex.count("{") == tex.count("}")
    assert tex.count(r"\left") == tex.count(r"\right")
    assert f._repr_latex_().startswith("$$\\begin{aligned}")


# ---------------------------------------------------------------- scalar level, 2-2-2


def test_tutorial_scalar_w5_and_w1_textbook_values(tutorial):
    _, _, f = tutorial
    w5 = f.scalar("w5")
    assert isinstance(w5, ScalarGradient)
    assert str(w5).splitlines()[0].startswith("∂E/∂w5 = (o1 − t1)·o1·(1 − o1)·h1 = 0.0821670")
    assert w5.value == pytest.approx(0.082167041, abs=1e-9)
    assert at(w5.expr, numpy_222()) == pytest.approx(0.082167041, abs=1e-9)
    assert (w5.param, w5.index) == ("linear2.weight", (0, 0))
    w1 = f.scalar("w1")
    assert w1.value == pytest.approx(0.000438568, abs=1e-9)
    assert at(w1.expr, numpy_222()) == pytest.approx(0.000438568, abs=1e-9)
    assert "(1 − h1)·x1" in str(w1)
    # the same entry, three spellings
    assert f.scalar(param="linear2.weight", index=(0, 0)).expr == w5.expr
    assert f.scalar("W2", (0, 0)).expr == w5.expr


def test_tutorial_every_scalar_formula_evaluates_to_the_gradient(tutorial):
    net, loss, f = tutorial
    grads = backward_grads(net, loss)
    fd = central_differences(net, lambda: half_sse(net(symbp.tensor(X)), symbp.tensor(T)))
    every = f.scalar()
    assert isinstance(every, ScalarGradients) and len(every) == 12
    names = [g.symbol.name for g in every]
    # row-major in model order: linear1.weight, linear1.bias, linear2.weight, linear2.bias
    assert names == ["w1", "w2", "w3", "w4", "b1", "b2", "w5", "w6", "w7", "w8", "b3", "b4"]
    values = numpy_222()  # intermediates from an independent NumPy forward pass
    for g in every:
        want = grads[g.param][g.index]
        assert at(g.expr, values) == pytest.approx(want, abs=1e-13)
        assert g.value == pytest.approx(want, abs=1e-13)
        assert at(g.expr, values) == pytest.approx(fd[g.param][g.index], abs=1e-9)
    assert "linear1.weight = [[w1, w2], [w3, w4]]" in str(every)


def test_tutorial_scalar_expanded_in_inputs_and_weights(tutorial):
    _, _, f = tutorial
    values = numpy_222()
    for name in ["w1", "w5", "b2"]:
        g = f.scalar(name, expand=True)
        leaves = {s.name for s in g.expr.free_symbols}
        assert leaves <= {f"w{i}" for i in range(1, 9)} | {"b1", "b2", "b3", "b4"} | {
            "x1",
            "x2",
            "t1",
            "t2",
        }
        assert at(g.expr, values) == pytest.approx(f.scalar(name).value, abs=1e-13)
    assert "σ(w1·x1 + w2·x2 + b1)" in str(f.scalar("w5", expand=True))


def test_scalar_latex(tutorial):
    _, _, f = tutorial
    tex = f.scalar("w5").latex()
    assert r"\frac{\partial E}{\partial w_{5}}" in tex and r"\sigma" in tex
    assert tex.count("{") == tex.count("}")
    assert f.scalar()._repr_latex_().startswith("$$")


# ---------------------------------------------------------------- other models


def test_relu_cross_entropy_tensor_level():
    net, loss_fn, _, _ = relu_ce(batch=5)
    loss = loss_fn()
    f = symbp.formulas(loss)
    text = one_line(str(f))
    assert "h = relu(z1)" in text
    assert "δ2 = (softmax(z2) − onehot(y))/5" in text
    assert "δ1 = (δ2·W2) ⊙ [z1 > 0]" in text
    assert "∂E/∂b1 = Σ_batch δ1" in text
    values = f.evaluate()
    grads = backward_grads(net, loss)
    fd = central_differences(net, loss_fn)
    for name, p in net.named_parameters():
        printed = values[f.grad(name).lhs].reshape(p.data.shape)
        np.testing.assert_allclose(printed, grads[name], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(printed, fd[name], rtol=1e-6, atol=1e-9)
    assert r"\left[z_{1} > 0\right]" in f.latex()


@pytest.mark.slow
def test_relu_cross_entropy_scalar_level():
    net, loss_fn, x, _ = relu_ce(batch=2, seed=1)
    loss = loss_fn()
    f = symbp.formulas(loss)
    grads = backward_grads(net, loss)
    every = f.scalar()
    # leaves by the scalar level's names: weights and biases row-major in model order
    params = list(net.named_parameters())
    ws = [p.numpy() for name, p in params if name.endswith("weight")]
    bs = [p.numpy() for name, p in params if name.endswith("bias")]
    values = {f"w{k + 1}": v for k, v in enumerate(np.concatenate([w.ravel() for w in ws]))}
    values |= {f"b{k + 1}": v for k, v in enumerate(np.concatenate(bs))}
    values |= {f"x[{n + 1},{j + 1}]": x.numpy()[n, j] for n in range(2) for j in range(3)}
    for g in every:
        full = f.scalar(g.symbol.name, expand=True).expr  # only leaves remain
        assert at(full, values) == pytest.approx(grads[g.param][g.index], abs=1e-12)
    # softmax entries are named once: p2[n,j] = exp(z2[n,j]) / Σ_k exp(z2[n,k])
    assert re.search(r"p2\[1,\d\] = exp\(z2\[1,\d\]\)/\(exp", str(every))


def test_deeper_tanh_mlp_and_custom_op():
    rng = np.random.default_rng(2)
    swish = symbp.elementwise("swish_f", lambda u: u / (1 + sympy.exp(-u)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.fc3 = nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc3(swish(self.fc2(symbp.tanh(self.fc1(x)))))

    net = Net().double()
    x = symbp.tensor(rng.normal(size=(3, 3)))
    t = symbp.tensor(rng.normal(size=(3, 2)))

    def loss_fn():
        return nn.MSELoss()(net(x), t)

    loss = loss_fn()
    f = symbp.formulas(loss)
    text = one_line(str(f))
    assert "h1 = tanh(z1)" in text and "δ3 = (z3 − t)/3" in text
    assert "δ1 = (δ2·W2) ⊙ (1 − h1²)" in text
    values = f.evaluate()
    grads = backward_grads(net, loss)
    fd = central_differences(net, loss_fn)
    for name, p in net.named_parameters():
        printed = values[f.grad(name).lhs].reshape(p.data.shape)
        np.testing.assert_allclose(printed, grads[name], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(printed, fd[name], rtol=1e-6, atol=1e-9)


def test_linear_regression_with_named_tensors():
    x = symbp.tensor([1.0, 2.0, 3.0], dtype=symbp.float64)
    y = symbp.tensor([6.0, 9.0, 12.0], dtype=symbp.float64)
    w = symbp.tensor(2.0, requires_grad=True, dtype=symbp.float64)
    b = symbp.tensor(1.0, requires_grad=True, dtype=symbp.float64)
    f = symbp.formulas(((w * x + b - y) ** 2).mean(), params={"w": w, "b": b})
    assert "∂E/∂b = 2·Σ (w ⊙ x + b − t)/3" in one_line(str(f))
    gw, gb = f.scalar("w"), f.scalar("b")
    assert gw.value == pytest.approx(-52 / 3) and gb.value == pytest.approx(-8)
    values = {"w": 2.0, "b": 1.0, "x1": 1.0, "x2": 2.0, "x3": 3.0, "t1": 6.0, "t2": 9.0}
    values["t3"] = 12.0
    assert at(gw.expr, values) == pytest.approx(-52 / 3)


def test_traced_model_gives_the_same_formulas_with_a_symbolic_batch(tutorial):
    net, loss, eager = tutorial
    tr = symbp.trace(lambda x, t: half_sse(net(x), t), X, T, names=["x", "t"])
    f = symbp.formulas(tr)
    # the same, except that a batch of B rows sums the bias gradients over it
    traced = one_line(str(f)).split("where")[0]
    assert "∂E/∂b2 = Σ_batch δ2" in traced
    assert traced.replace("Σ_batch ", "") == one_line(str(eager)).split("where")[0]
    assert "B batch size" in one_line(str(f)) and "f64[B,2]" in str(f)
    values = f.evaluate({"x": X, "t": T})
    grads = backward_grads(net, loss)
    for name in grads:
        printed = values[f.grad(name).lhs].reshape(grads[name].shape)
        np.testing.assert_allclose(printed, grads[name], rtol=1e-13)
    assert f.scalar("w5").expr == eager.scalar("w5").expr  # one sample of the batch


def test_unreached_parameter_has_zero_gradient_and_says_so(tutorial):
    net, loss, _ = tutorial
    spare = nn.Linear(2, 2).double()
    f = symbp.formulas(loss, params=[*net.parameters(), *spare.parameters()])
    assert "= 0 (E does not depend on it)" in one_line(str(f))
    assert len(f.grads) == 6


def test_scalar_level_refuses_large_models():
    net = nn.Linear(30, 10)
    loss = net(symbp.tensor(np.ones((1, 30)), dtype=symbp.float32)).sum()
    f = symbp.formulas(loss)
    with pytest.raises(ValueError, match="310 parameter entries"):
        f.scalar()


def test_bad_requests(tutorial):
    _, _, f = tutorial
    with pytest.raises(KeyError, match="w99"):
        f.scalar("w99")
    with pytest.raises(KeyError, match="nope"):
        f.grad("nope")
    with pytest.raises(ValueError, match="requires grad"):
        symbp.formulas((symbp.tensor([1.0, 2.0]) ** 2).sum())
    with pytest.raises(symbp.ShapeError, match="scalar"):
        symbp.formulas(nn.Linear(2, 2)(symbp.tensor([[1.0, 2.0]])))
