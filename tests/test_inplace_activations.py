"""``inplace=True`` activations and dropout as PyTorch's (issue 13): the input tensor is
updated and returned; inside a graph the update is recorded, so gradients flow as PyTorch's;
an in-place op on a leaf that requires grad is refused, as PyTorch refuses it. PyTorch is the
reference for values, gradients (float64) and reprs; the compiled path is checked against
eager symbp."""

from __future__ import annotations

import numpy as np
import pytest

import symbp
import symbp.nn.functional as F
from symbp import nn

torch = pytest.importorskip("torch")
TF = torch.nn.functional

X = np.array([[-2.5, -0.7, 0.0, 0.3, 1.9], [3.1, -1.2, 0.8, -0.1, 25.0]])

# (name, positional arguments after the input); each F.name takes inplace=
FUNCTIONS = [
    ("relu", ()),
    ("leaky_relu", (0.2,)),
    ("elu", (0.7,)),
    ("selu", ()),
    ("celu", (1.3,)),
    ("hardtanh", (-0.5, 0.9)),
    ("relu6", ()),
    ("hardsigmoid", ()),
    ("hardswish", ()),
    ("silu", ()),
    ("mish", ()),
    ("threshold", (0.25, -3.0)),
]


@pytest.mark.parametrize("name, args", FUNCTIONS)
def test_inplace_on_a_constant_writes_into_the_input_and_returns_it(name, args):
    ours, theirs = symbp.tensor(X), torch.tensor(X)
    got = getattr(F, name)(ours, *args, inplace=True)
    want = getattr(TF, name)(theirs, *args, inplace=True)
    assert got is ours and want is theirs
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name, args", FUNCTIONS)
def test_inplace_inside_a_graph_gives_pytorchs_gradients(name, args):
    w, tw = symbp.tensor(X, requires_grad=True), torch.tensor(X, requires_grad=True)
    c = np.linspace(-1.0, 2.0, X.size).reshape(X.shape)
    h, th = w * 1.5, tw * 1.5
    out = getattr(F, name)(h, *args, inplace=True)
    tout = getattr(TF, name)(th, *args, inplace=True)
    assert out is h and tout is th
    (h * symbp.tensor(c)).sum().backward()
    (th * torch.tensor(c)).sum().backward()
    np.testing.assert_allclose(h.detach().numpy(), th.detach().numpy(), rtol=1e-12, atol=1e-15)
    # PyTorch's float64 celu and hardsigmoid backwards carry float32 constants (1/alpha, 1/6)
    rtol = 1e-7 if name in ("celu", "hardsigmoid") else 1e-10
    np.testing.assert_allclose(w.grad.numpy(), tw.grad.numpy(), rtol=rtol, atol=1e-14)


@pytest.mark.parametrize("name, args", FUNCTIONS[:4])
def test_inplace_on_a_leaf_that_requires_grad_is_refused_as_pytorch(name, args):
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
        getattr(TF, name)(torch.tensor(X, requires_grad=True), *args, inplace=True)
    w = symbp.tensor(X, requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
        getattr(F, name)(w, *args, inplace=True)
    np.testing.assert_array_equal(w.numpy(), X)  # nothing written
    with symbp.no_grad():  # allowed there, as in PyTorch: the leaf stays a leaf
        getattr(F, name)(w, *args, inplace=True)
    with torch.no_grad():
        tw = torch.tensor(X, requires_grad=True)
        getattr(TF, name)(tw, *args, inplace=True)
    np.testing.assert_allclose(w.detach().numpy(), tw.detach().numpy(), rtol=1e-12)
    assert w.is_leaf and w.requires_grad


def test_underscore_forms_as_pytorchs():
    for name in ["relu_", "leaky_relu_", "elu_", "selu_", "celu_"]:
        ours, theirs = symbp.tensor(X), torch.tensor(X)
        assert getattr(F, name)(ours) is ours and getattr(TF, name)(theirs) is theirs
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-12, err_msg=name)
    ours, theirs = symbp.tensor(X), torch.tensor(X)
    F.hardtanh_(ours, -0.5, 0.5), TF.hardtanh_(theirs, -0.5, 0.5)
    F.threshold_(ours, 0.1, 9.0), TF.threshold_(theirs, 0.1, 9.0)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    for name in ["relu_", "sigmoid_", "tanh_"]:
        ours, theirs = symbp.tensor(X), torch.tensor(X)
        assert getattr(symbp, name)(ours) is ours and getattr(ours, name)() is ours
        getattr(torch, name)(theirs), getattr(theirs, name)()
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-12, err_msg=name)


LAYERS = [
    ("ReLU", ()),
    ("LeakyReLU", (0.1,)),
    ("ELU", (0.5,)),
    ("CELU", (0.5,)),
    ("SELU", ()),
    ("Mish", ()),
    ("SiLU", ()),
    ("Hardtanh", (-0.3, 0.4)),
    ("ReLU6", ()),
    ("Hardsigmoid", ()),
    ("Hardswish", ()),
    ("Threshold", (0.1, 2.0)),
    ("Dropout", (0.5,)),
]


@pytest.mark.parametrize("name, args", LAYERS)
def test_layers_take_inplace_and_print_it_as_pytorch(name, args):
    for inplace in (False, True):
        ours = getattr(nn, name)(*args, inplace=inplace)
        theirs = getattr(torch.nn, name)(*args, inplace=inplace)
        assert repr(ours) == repr(theirs)
        assert ours.inplace is inplace


def test_a_cnn_with_relu_inplace_trains_as_pytorchs():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 1, 6, 6))
    y = np.array([0, 2, 1, 2])

    def build(lib):
        return lib.nn.Sequential(
            lib.nn.Conv2d(1, 2, 3),
            lib.nn.ReLU(inplace=True),
            lib.nn.Flatten(),
            lib.nn.Linear(32, 3),
            lib.nn.LeakyReLU(0.1, inplace=True),
        ).double()

    symbp.manual_seed(0)
    ours, theirs = build(symbp), build(torch)
    theirs.load_state_dict({k: torch.tensor(v.numpy()) for k, v in ours.state_dict().items()})
    loss = nn.CrossEntropyLoss()(ours(symbp.tensor(x)), symbp.tensor(y))
    tloss = torch.nn.CrossEntropyLoss()(theirs(torch.tensor(x)), torch.tensor(y))
    loss.backward()
    tloss.backward()
    np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-12)
    for (n, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-9, atol=1e-13, err_msg=n)


def test_dropout_inplace_zeroes_the_input_itself_and_eval_leaves_it():
    symbp.manual_seed(0)
    drop = nn.Dropout(0.5, inplace=True)
    x = symbp.ones(3, 400)
    assert drop(x) is x
    assert set(np.unique(x.numpy())) == {0.0, 2.0}  # kept entries scaled by 1/(1-p)
    drop.eval()
    z = symbp.ones(3)
    assert drop(z) is z and z.tolist() == [1.0, 1.0, 1.0]
    z = symbp.ones(5)
    assert F.dropout(z, 0.5, training=False, inplace=True) is z and z.tolist() == [1.0] * 5


@pytest.mark.slow
@pytest.mark.usefixtures("tmp_cache")
def test_compiled_model_with_inplace_activations_matches_eager():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(8, 4))
    y = rng.integers(0, 3, size=8)

    def build():
        symbp.manual_seed(1)
        return nn.Sequential(
            nn.Linear(4, 6),
            nn.ReLU(inplace=True),
            nn.Linear(6, 5),
            nn.ELU(inplace=True),
            nn.Linear(5, 3),
        ).double()

    net, ref = build(), build()
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
    opt = symbp.optim.SGD(ref.parameters(), lr=0.1)
    for _ in range(3):
        got = model.step(x, y)
        opt.zero_grad()
        want = nn.CrossEntropyLoss()(ref(symbp.tensor(x)), symbp.tensor(y))
        want.backward()
        opt.step()
        np.testing.assert_allclose(float(got), want.item(), rtol=1e-10)
    for (n, p), (_, q) in zip(net.named_parameters(), ref.named_parameters()):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-9, atol=1e-12, err_msg=n)
