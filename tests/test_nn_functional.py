"""symbp.nn.functional against torch.nn.functional: forward values and input gradients, float64."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import symbp

torch = pytest.importorskip("torch")
tF = torch.nn.functional
F = importlib.import_module("symbp.nn.functional")

RNG = np.random.default_rng(13)
X = RNG.normal(size=(4, 5)) * 3  # spans both sides of relu's, gelu's and huber's kinks
T5 = RNG.normal(size=(4, 5))
P = RNG.uniform(0.05, 0.95, size=(4, 5))
B01 = RNG.integers(0, 2, size=(4, 5)).astype(np.float64)
LABELS = np.array([0, 4, 2, 4])
IMG = RNG.normal(size=(2, 3, 6, 6))
KER = RNG.normal(size=(4, 3, 3, 3))
W = RNG.normal(size=(3, 5))
BIAS = RNG.normal(size=3)
BIAS4 = RNG.normal(size=4)


def _compare(fn, differentiable, fixed=(), kwargs=None):
    """fn(*differentiable, *fixed, **kwargs) in symbp and torch: values, then the gradients of
    sum(y * r) for a random r with respect to every differentiable argument."""
    kwargs = kwargs or {}
    name = fn.__name__
    s_in = [symbp.tensor(a, requires_grad=True) for a in differentiable]
    t_in = [torch.tensor(a, requires_grad=True) for a in differentiable]
    s_fix = [symbp.tensor(a) for a in fixed]
    t_fix = [torch.tensor(a) for a in fixed]
    ys = getattr(F, name)(*s_in, *s_fix, **kwargs)
    yt = getattr(tF, name)(*t_in, *t_fix, **kwargs)
    np.testing.assert_allclose(ys.numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    r = RNG.normal(size=yt.shape)
    (ys * symbp.tensor(r)).sum().backward()
    (yt * torch.tensor(r)).sum().backward()
    for s, t in zip(s_in, t_in):
        np.testing.assert_allclose(s.grad, t.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_import_forms():
    import symbp.nn.functional as F1
    from symbp.nn import functional as F2

    assert F1 is F2 is symbp.nn.functional


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("relu", {}),
        ("sigmoid", {}),
        ("tanh", {}),
        ("gelu", {}),
        ("silu", {}),
        ("softplus", {}),
        ("softplus", {"beta": 2.0}),
        ("softmax", {"dim": 1}),
        ("softmax", {"dim": 0}),
        ("log_softmax", {"dim": 1}),
        ("log_softmax", {"dim": -2}),
    ],
)
def test_activations(name, kwargs, float64):
    _compare(getattr(F, name), [X], kwargs=kwargs)


def test_linear(float64):
    _compare(F.linear, [X, W, BIAS])
    _compare(F.linear, [X, W])


def test_conv_and_pools(float64):
    _compare(F.conv2d, [IMG, KER, BIAS4], kwargs={"padding": 1})
    _compare(F.max_pool2d, [IMG], kwargs={"kernel_size": 2})
    _compare(F.avg_pool2d, [IMG], kwargs={"kernel_size": 3, "stride": 2, "padding": 1})


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_regression_losses(reduction, float64):
    for name in ("mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss"):
        _compare(getattr(F, name), [X], [T5], {"reduction": reduction})
    _compare(F.huber_loss, [X], [T5], {"reduction": reduction, "delta": 0.7})
    _compare(F.smooth_l1_loss, [X], [T5], {"reduction": reduction, "beta": 1.8})


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_classification_losses(reduction, float64):
    kw = {"reduction": reduction}
    _compare(F.cross_entropy, [X], [LABELS], kw)
    _compare(F.cross_entropy, [X], [P / P.sum(1, keepdims=True)], kw)  # probability targets
    logp = tF.log_softmax(torch.tensor(X), 1).numpy()
    _compare(F.nll_loss, [logp], [LABELS], kw)
    _compare(F.binary_cross_entropy, [P], [B01], kw)
    _compare(F.binary_cross_entropy_with_logits, [X], [B01], kw)


def test_one_hot():
    labels = np.array([0, 3, 1])
    for n in (-1, 5):
        got = F.one_hot(symbp.tensor(labels), n)
        want = tF.one_hot(torch.tensor(labels), n)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_dropout_eval_is_identity_and_train_scales(float64):
    x = symbp.tensor(X)
    np.testing.assert_array_equal(F.dropout(x, 0.3, training=False).numpy(), X)
    y = F.dropout(x, 0.5).numpy()
    assert np.all((y == 0) | np.isclose(y, 2 * X, rtol=1e-15))


def test_top_level_functions(float64):
    x = symbp.tensor(IMG)
    for start, end in ((0, -1), (1, -1), (1, 2)):
        assert symbp.flatten(x, start, end).shape == tuple(
            torch.flatten(torch.tensor(IMG), start, end).shape
        )
    np.testing.assert_array_equal(symbp.flatten(x).numpy(), IMG.ravel())
    v = symbp.tensor(X)
    for name in ("relu", "sigmoid", "tanh"):
        np.testing.assert_allclose(
            getattr(symbp, name)(v).numpy(), getattr(torch, name)(torch.tensor(X)).numpy(), 1e-12
        )
    np.testing.assert_allclose(
        symbp.softmax(v, 1).numpy(), torch.softmax(torch.tensor(X), 1).numpy(), 1e-12
    )


@pytest.mark.parametrize(
    "call,error,words",
    [
        # class weights, ignore_index, label_smoothing and pos_weight are supported now
        # (tests/test_losses_torch.py); a weight of the wrong size is an error
        (lambda x, y: F.cross_entropy(x, y, weight=np.ones(4)), symbp.ShapeError, r"\[5\]"),
        (lambda x, y: F.cross_entropy(x, y, label_smoothing=1.5), ValueError, "smoothing"),
        (lambda x, y: F.nll_loss(x, symbp.tensor([0, 7, 1, 2])), IndexError, "label 7"),
        (lambda x, y: F.nll_loss(x, y, reduction="avg"), ValueError, "reduction"),
        (lambda x, y: F.mse_loss(x, x, size_average=True), NotImplementedError, "size_average"),
        (lambda x, y: F.mse_loss(x, x, weight=x[0]), symbp.ShapeError, "input's size"),
        # approximate='tanh' and softplus's threshold are supported now (tests/test_ops_math.py)
        (lambda x, y: F.gelu(x, approximate="tan"), ValueError, "approximate"),
        (lambda x, y: F.softmax(x), ValueError, "dim"),
        (lambda x, y: F.log_softmax(x, 1, dtype="float32"), NotImplementedError, "dtype"),
        (lambda x, y: F.one_hot(y, 3), ValueError, "one_hot"),
        (lambda x, y: F.linear(x, symbp.tensor(np.ones((3, 4)))), symbp.ShapeError, "linear"),
    ],
)
def test_unsupported_arguments_raise(call, error, words, float64):
    with pytest.raises(error, match=words):
        call(symbp.tensor(X), symbp.tensor(LABELS))


def test_ignore_index_absent_from_the_labels_is_fine(float64):
    x = symbp.tensor(X)
    got = F.cross_entropy(x, symbp.tensor(LABELS), ignore_index=1)  # no label is 1
    want = tF.cross_entropy(torch.tensor(X), torch.tensor(LABELS), ignore_index=1)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)


def test_traced_labels_with_an_in_range_ignore_index_trace():
    # the mask of ignored labels is an IR expression, so traced labels need no check
    x = symbp.placeholder("x", (4, 5), symbp.float64)
    y = symbp.placeholder("y", (4,), symbp.int64)
    assert F.nll_loss(x, y, ignore_index=2).shape == ()
    assert F.nll_loss(x, y).shape == ()
