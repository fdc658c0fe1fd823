"""Every loss and option against torch.nn.functional: values and input gradients in float64
(1e-12 relative), eager; and one compiled training run against PyTorch's trajectory."""

from __future__ import annotations

import numpy as np
import pytest

import symbp
import symbp.nn.functional as F
from symbp import nn

torch = pytest.importorskip("torch")
TF = torch.nn.functional

RNG = np.random.default_rng(13)
X = RNG.normal(size=(6, 4))  # logits or inputs [N, C]
XS = RNG.normal(size=(3, 4, 2, 5))  # [N, C, d1, d2]
Y = np.array([0, 3, -100, 1, 2, 3])  # one label ignored
Y3 = np.array([0, 3, 3, 1, 2, 1])  # labels for ignore_index=3 (-100 would be out of range)
YS = RNG.integers(0, 4, size=(3, 2, 5))
YS[0, 1, 2] = YS[2, 0, 0] = -100
W = RNG.uniform(0.5, 2.0, size=4)  # class weights
P = RNG.uniform(0.05, 0.95, size=(6, 4))  # probabilities / binary targets
PROB = RNG.dirichlet(np.ones(4), size=6)  # class-probability targets
PROBS = np.moveaxis(RNG.dirichlet(np.ones(4), size=(3, 2, 5)), -1, 1)
T0 = RNG.normal(size=(6, 4))
SIGN = np.where(RNG.uniform(size=(6, 4)) < 0.5, -1.0, 1.0)


def _sym(a):
    a = np.asarray(a)
    return symbp.tensor(a, requires_grad=a.dtype.kind == "f")


def _tor(a):
    a = np.asarray(a)
    return torch.tensor(a, requires_grad=a.dtype.kind == "f")


def _case(name, inputs, others, kwargs):
    """F.<name> and torch's of the differentiated inputs, then the other arguments, kwargs"""
    return pytest.param(name, inputs, others, kwargs, id=f"{name}-{kwargs}")


REDS = ("mean", "sum", "none")
CASES = []
for red in REDS:
    CASES += [
        _case("cross_entropy", [X], [Y], {"reduction": red}),
        _case("cross_entropy", [X], [Y], {"reduction": red, "weight": W}),
        _case("cross_entropy", [X], [Y3], {"reduction": red, "ignore_index": 3}),
        _case("cross_entropy", [X], [Y], {"reduction": red, "label_smoothing": 0.2}),
        _case("cross_entropy", [X], [Y], {"reduction": red, "weight": W, "label_smoothing": 0.1}),
        _case("cross_entropy", [XS], [YS], {"reduction": red, "weight": W, "label_smoothing": 0.3}),
        _case("cross_entropy", [XS], [YS], {"reduction": red}),
        _case("cross_entropy", [X], [PROB], {"reduction": red}),
        _case(
            "cross_entropy", [X], [PROB], {"reduction": red, "weight": W, "label_smoothing": 0.2}
        ),
        _case("cross_entropy", [XS], [PROBS], {"reduction": red, "weight": W}),
        _case("cross_entropy", [X[0]], [np.array(2)], {"reduction": red, "weight": W}),
        _case("nll_loss", [X], [Y], {"reduction": red}),
        _case("nll_loss", [X], [Y], {"reduction": red, "weight": W}),
        _case("nll_loss", [X], [Y3], {"reduction": red, "weight": W, "ignore_index": 1}),
        _case("nll_loss", [XS], [YS], {"reduction": red, "weight": W}),
        _case("binary_cross_entropy", [P], [P[::-1].copy()], {"reduction": red}),
        _case("binary_cross_entropy", [P], [P[::-1].copy()], {"reduction": red, "weight": W}),
        _case("binary_cross_entropy_with_logits", [X], [P], {"reduction": red, "weight": W}),
        _case("binary_cross_entropy_with_logits", [X], [P], {"reduction": red, "pos_weight": W}),
        _case(
            "binary_cross_entropy_with_logits",
            [X],
            [P],
            {"reduction": red, "weight": W[::-1].copy(), "pos_weight": W},
        ),
        _case("mse_loss", [X], [T0], {"reduction": red}),
        _case("l1_loss", [X], [T0], {"reduction": red}),
        _case("huber_loss", [X], [T0], {"reduction": red, "delta": 0.7}),
        _case("huber_loss", [X], [T0], {"reduction": red, "delta": 0.7, "weight": P}),
        _case("mse_loss", [X], [T0], {"reduction": red, "weight": P}),
        _case("l1_loss", [X], [T0], {"reduction": red, "weight": P}),
        _case("smooth_l1_loss", [X], [T0], {"reduction": red, "beta": 0.6}),
        _case("smooth_l1_loss", [X], [T0], {"reduction": red, "beta": 0.0}),
        _case("soft_margin_loss", [X], [SIGN], {"reduction": red}),
        _case("cosine_embedding_loss", [X, T0], [SIGN[:, 0]], {"reduction": red, "margin": 0.2}),
        _case("cosine_embedding_loss", [X[0], T0[0]], [SIGN[0, 0]], {"reduction": red}),
        _case("margin_ranking_loss", [X, T0], [SIGN], {"reduction": red, "margin": 0.3}),
    ]
for red in (*REDS, "batchmean"):
    CASES += [
        _case("kl_div", [np.log(PROB)], [PROB[::-1].copy()], {"reduction": red}),
        _case("kl_div", [X], [np.log(PROB)], {"reduction": red, "log_target": True}),
    ]
# a zero target: t log t is 0 there (xlogy), as PyTorch
_PZ = PROB.copy()
_PZ[1, 2] = 0.0
CASES.append(_case("kl_div", [X], [_PZ], {"reduction": "sum"}))


def _kw(kwargs, conv):
    return {k: conv(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}


@pytest.mark.filterwarnings("ignore::UserWarning")  # kl_div's 'mean' warning
@pytest.mark.parametrize("name, inputs, others, kwargs", CASES)
def test_loss_matches_torch(name, inputs, others, kwargs):
    def const(v):
        return torch.tensor(v)

    xs, ts = [_sym(a) for a in inputs], [_tor(a) for a in inputs]
    got = getattr(F, name)(*xs, *[symbp.tensor(o) for o in others], **_kw(kwargs, np.asarray))
    want = getattr(TF, name)(*ts, *[torch.tensor(o) for o in others], **_kw(kwargs, const))
    assert got.shape == tuple(want.shape)
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-12, atol=1e-15)
    seed = RNG.normal(size=got.shape) if got.ndim else np.array(1.0)
    (got * symbp.tensor(seed)).sum().backward()
    (want * torch.tensor(seed)).sum().backward()
    for x, t in zip(xs, ts, strict=True):
        np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("fn", ["cross_entropy", "nll_loss"])
@pytest.mark.parametrize("weight", [None, W])
def test_all_labels_ignored_mean_is_nan(fn, weight):
    # PyTorch: 'mean' over no labels is 0/0; 'sum' is 0
    y = np.full(6, -100)
    wt = None if weight is None else torch.tensor(weight)
    for red in ("mean", "sum"):
        got = getattr(F, fn)(symbp.tensor(X), symbp.tensor(y), weight=weight, reduction=red)
        want = getattr(TF, fn)(torch.tensor(X), torch.tensor(y), weight=wt, reduction=red)
        np.testing.assert_equal(float(got), float(want))  # nan == nan for assert_equal
        assert np.isnan(float(got)) == (red == "mean")


def test_modules_take_pytorchs_constructor_arguments():
    x, y = symbp.tensor(X), symbp.tensor(Y3)
    loss = nn.CrossEntropyLoss(W, None, 3, None, "sum", 0.1)(x, y)
    want = torch.nn.CrossEntropyLoss(torch.tensor(W), None, 3, None, "sum", 0.1)(
        torch.tensor(X), torch.tensor(Y3)
    )
    np.testing.assert_allclose(float(loss), float(want), rtol=1e-12)
    assert "weight" in nn.NLLLoss(weight=W).state_dict()
    for mod, tmod, args in [
        (nn.HuberLoss, torch.nn.HuberLoss, ("sum", 0.4)),
        (nn.SmoothL1Loss, torch.nn.SmoothL1Loss, (None, None, "sum", 0.4)),
        (nn.KLDivLoss, torch.nn.KLDivLoss, (None, None, "batchmean", True)),
    ]:
        got = mod(*args)(symbp.tensor(X), symbp.tensor(T0))
        want = tmod(*args)(torch.tensor(X), torch.tensor(T0))
        np.testing.assert_allclose(float(got), float(want), rtol=1e-12)


def test_loss_argument_errors():
    with pytest.raises(IndexError, match=r"label 4 out of range for 4 classes"):
        F.cross_entropy(symbp.tensor(X), symbp.tensor(np.array([0, 4, 1, 1, 1, 1])))
    with pytest.raises(symbp.ShapeError, match=r"weight must hold one value per class, \[4\]"):
        F.nll_loss(symbp.tensor(X), symbp.tensor(Y), weight=np.ones(3))
    with pytest.raises(ValueError, match="reduction must be 'mean', 'batchmean', 'sum' or"):
        nn.KLDivLoss(reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        nn.CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(NotImplementedError, match="size_average and reduce are deprecated"):
        nn.NLLLoss(size_average=True)


@pytest.mark.slow
def test_compiled_training_with_weight_ignore_index_and_smoothing_matches_torch(float64):
    # the masks and weights are IR expressions: the compiled step traces them like any layer.
    # ignore_index=2 is a class, so the mask (not an out-of-range label) does the ignoring.
    rng = np.random.default_rng(5)
    x = rng.normal(size=(8, 3))
    y = np.array([0, 2, 1, 3, 2, 1, 0, 3])
    tnet = torch.nn.Sequential(
        torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 4)
    ).double()
    net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4))
    net.load_state_dict({k: v.detach().numpy().copy() for k, v in tnet.state_dict().items()})
    args = {"weight": W, "ignore_index": 2, "label_smoothing": 0.1}
    model = symbp.compile(
        net, nn.CrossEntropyLoss(**args), symbp.optim.SGD(net.parameters(), lr=0.5)
    )
    tloss = torch.nn.CrossEntropyLoss(**{**args, "weight": torch.tensor(W)})
    topt = torch.optim.SGD(tnet.parameters(), lr=0.5)
    for _ in range(3):
        got = model.step(x, y)
        topt.zero_grad()
        want = tloss(tnet(torch.tensor(x)), torch.tensor(y))
        want.backward()
        topt.step()
        np.testing.assert_allclose(got, want.item(), rtol=1e-10)
    for k, v in tnet.state_dict().items():
        np.testing.assert_allclose(net.state_dict()[k], v.numpy(), rtol=1e-10, atol=1e-12)
