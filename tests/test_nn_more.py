"""The layers of symbp.nn.more against PyTorch (issue 13): reprs, parameter names and
shapes, outputs and gradients of inputs and parameters in float64."""

from __future__ import annotations

import numpy as np
import pytest

import symbp
import symbp.nn.functional as F
from symbp import nn

torch = pytest.importorskip("torch")
TF = torch.nn.functional
RNG = np.random.default_rng(13)


def copy_params(ours, theirs) -> None:
    theirs.load_state_dict({k: torch.tensor(v.numpy()) for k, v in ours.state_dict().items()})


def check(ours, theirs, *inputs, rtol=1e-10):
    """Same output, input gradients and parameter gradients for a random cotangent."""
    assert repr(ours) == repr(theirs)
    assert [(n, tuple(p.shape)) for n, p in ours.named_parameters()] == [
        (n, tuple(p.shape)) for n, p in theirs.named_parameters()
    ]
    copy_params(ours, theirs)
    xs = [symbp.tensor(x, requires_grad=True) for x in inputs]
    txs = [torch.tensor(x, requires_grad=True) for x in inputs]
    out, tout = ours(*xs), theirs(*txs)
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=rtol, atol=1e-13)
    ct = RNG.normal(size=tuple(tout.shape))
    (out * symbp.tensor(ct)).sum().backward()
    (tout * torch.tensor(ct)).sum().backward()
    for x, tx in zip(xs, txs):
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=rtol, atol=1e-12)
    for (n, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=rtol, atol=1e-12, err_msg=n)


CASES = [
    ("Softmin", (1,), [(3, 4)]),
    ("Softmin", (), [(3, 4)]),
    ("PReLU", (), [(3, 4)]),
    ("PReLU", (4, 0.1), [(3, 4, 5)]),
    ("Unflatten", (1, (2, 3)), [(4, 6)]),
    ("Bilinear", (3, 4, 5), [(6, 3), (6, 4)]),
    ("Bilinear", (2, 3, 2, False), [(2, 5, 2), (2, 5, 3)]),
    ("Conv1d", (2, 4, 3), [(3, 2, 9)]),
    ("Conv1d", (4, 6, 3, 2, 1, 1, 2), [(2, 4, 11)]),
    ("Conv1d", (2, 3, 3, 1, "same", 2), [(2, 2, 8)]),
    ("Conv1d", (2, 3, 2), [(2, 7)]),  # unbatched
    ("MaxPool1d", (2,), [(2, 3, 8)]),
    ("MaxPool1d", (3, 2, 1), [(2, 3, 9)]),
    ("AvgPool1d", (2,), [(2, 3, 8)]),
    ("AvgPool1d", (3, 2, 1), [(2, 3, 9)]),
    ("AvgPool1d", (3, 1, 1, False, False), [(3, 7)]),
]


@pytest.mark.parametrize("name, args, shapes", CASES)
def test_layer_matches_pytorch(name, args, shapes):
    symbp.manual_seed(0)
    ours = getattr(nn, name)(*args).double()
    theirs = getattr(torch.nn, name)(*args).double()
    check(ours, theirs, *(RNG.normal(size=s) for s in shapes))


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        ({"scale_factor": 2}, (1, 2, 5)),
        ({"scale_factor": 2}, (2, 1, 3, 4)),
        ({"scale_factor": (2, 3)}, (1, 2, 3, 2)),
        ({"size": 7}, (1, 2, 4)),
        ({"size": (5, 3)}, (1, 1, 3, 4)),
        ({"scale_factor": 1.5}, (1, 2, 5, 4)),
    ],
)
def test_upsample_nearest_matches_pytorch(kwargs, shape):
    check(nn.Upsample(**kwargs), torch.nn.Upsample(**kwargs), RNG.normal(size=shape))
    x = RNG.normal(size=shape)
    np.testing.assert_array_equal(
        F.interpolate(symbp.tensor(x), **kwargs).numpy(), TF.interpolate(torch.tensor(x), **kwargs)
    )


def test_other_interpolate_modes_are_refused_by_name():
    with pytest.raises(NotImplementedError, match="mode='bilinear'"):
        nn.Upsample(scale_factor=2, mode="bilinear")
    with pytest.raises(NotImplementedError, match="mode='bilinear'"):
        F.interpolate(symbp.zeros(1, 1, 2, 2), scale_factor=2, mode="bilinear")


def test_functional_forms_match_pytorch():
    x, x2 = RNG.normal(size=(3, 4)), RNG.normal(size=(3, 5))
    w, b = RNG.normal(size=(2, 4, 5)), RNG.normal(size=2)
    np.testing.assert_allclose(
        F.bilinear(symbp.tensor(x), symbp.tensor(x2), symbp.tensor(w), symbp.tensor(b)).numpy(),
        TF.bilinear(torch.tensor(x), torch.tensor(x2), torch.tensor(w), torch.tensor(b)),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        F.softmin(symbp.tensor(x), 0).numpy(), TF.softmin(torch.tensor(x), 0), rtol=1e-12
    )
    a = RNG.uniform(0, 1, size=4)
    np.testing.assert_allclose(
        F.prelu(symbp.tensor(x), symbp.tensor(a)).numpy(),
        TF.prelu(torch.tensor(x), torch.tensor(a)),
        rtol=1e-12,
    )
    s, wc = RNG.normal(size=(2, 3, 10)), RNG.normal(size=(4, 3, 3))
    np.testing.assert_allclose(
        F.conv1d(symbp.tensor(s), symbp.tensor(wc), None, 2, 1).numpy(),
        TF.conv1d(torch.tensor(s), torch.tensor(wc), None, 2, 1),
        rtol=1e-12,
    )
    np.testing.assert_array_equal(
        F.max_pool1d(symbp.tensor(s), 3, 2).numpy(), TF.max_pool1d(torch.tensor(s), 3, 2)
    )
    np.testing.assert_allclose(
        F.avg_pool1d(symbp.tensor(s), 2).numpy(), TF.avg_pool1d(torch.tensor(s), 2), rtol=1e-12
    )


def test_prelu_gradient_at_zero_is_the_weight_as_pytorchs():
    ours, theirs = nn.PReLU(init=0.3).double(), torch.nn.PReLU(init=0.3).double()
    check(ours, theirs, np.array([-1.0, 0.0, 2.0]))


def test_conv1d_initialisation_follows_pytorchs_bounds():
    symbp.manual_seed(0)
    conv = nn.Conv1d(3, 5, 4)
    bound = 1 / np.sqrt(3 * 4)
    assert np.abs(conv.weight.numpy()).max() <= bound and np.abs(conv.bias.numpy()).max() <= bound
    assert conv.weight.numpy().std() > bound / 3  # spread over the range, not a constant
    lin = nn.Bilinear(4, 2, 3)
    assert np.abs(lin.weight.numpy()).max() <= 0.5 and lin.weight.shape == (3, 4, 2)


@pytest.mark.parametrize("layer, shape", [("Dropout1d", (6, 40, 7)), ("Dropout2d", (6, 40, 3, 3))])
def test_channel_dropout_zeroes_whole_channels(layer, shape):
    symbp.manual_seed(0)
    drop = getattr(nn, layer)(p=0.25)
    assert repr(drop) == repr(getattr(torch.nn, layer)(p=0.25))
    x = symbp.tensor(RNG.uniform(1.0, 2.0, size=shape), requires_grad=True)
    y = drop(x)
    flat = (y.detach().numpy() / x.detach().numpy()).reshape(shape[0], shape[1], -1)
    per_channel = flat[:, :, 0]
    assert np.allclose(flat, per_channel[:, :, None])  # one draw per sample and channel
    assert set(np.round(np.unique(per_channel), 12)) == {0.0, round(1 / 0.75, 12)}
    assert 0.1 < (per_channel == 0).mean() < 0.4
    y.sum().backward()  # the gradient is the mask
    np.testing.assert_allclose(x.grad.numpy().reshape(flat.shape), flat, rtol=1e-12)
    drop.eval()
    assert drop(x) is x


def test_channel_dropout_inplace_and_unbatched():
    symbp.manual_seed(1)
    x = symbp.ones(8, 5)
    assert F.dropout1d(x, 0.5, inplace=True) is x  # an unbatched [C, L]: channels are rows
    rows = x.numpy()
    assert all(len(set(r)) == 1 for r in rows.tolist()) and set(rows[:, 0]) <= {0.0, 2.0}


def test_normalize_and_cosine_similarity_match_pytorch():
    a, b = RNG.normal(size=(4, 5)), RNG.normal(size=(4, 5))
    a[1] = 0.0  # a zero row: the eps clamps, as PyTorch's
    for dim in (0, 1):
        np.testing.assert_allclose(
            F.normalize(symbp.tensor(a), dim=dim).numpy(),
            TF.normalize(torch.tensor(a), dim=dim),
            rtol=1e-12,
        )
        np.testing.assert_allclose(
            F.normalize(symbp.tensor(a), p=1.0, dim=dim).numpy(),
            TF.normalize(torch.tensor(a), p=1.0, dim=dim),
            rtol=1e-12,
        )
    check(nn.CosineSimilarity(), torch.nn.CosineSimilarity(), a, b)
    check(nn.CosineSimilarity(dim=0), torch.nn.CosineSimilarity(dim=0), a, b)
