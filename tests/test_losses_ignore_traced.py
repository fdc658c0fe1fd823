"""ignore_index with labels a compiled program only sees at run time: PyTorch's default
builds the textbook loss (a label of -100 is then an error), a chosen index masks."""

import numpy as np
import pytest

import symbp
from symbp import nn

torch = pytest.importorskip("torch")


def test_the_default_is_told_apart_from_a_chosen_minus_100():
    assert nn.CrossEntropyLoss().ignore_index == torch.nn.CrossEntropyLoss().ignore_index
    assert repr(nn.CrossEntropyLoss().ignore_index) == "-100"
    from symbp.nn.losses import _DefaultIndex

    assert isinstance(nn.CrossEntropyLoss().ignore_index, _DefaultIndex)
    assert not isinstance(nn.CrossEntropyLoss(ignore_index=-100).ignore_index, _DefaultIndex)


@pytest.mark.slow
def test_compiled_with_a_chosen_minus_100_ignores_as_pytorch_and_the_default_refuses():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3))
    y = np.array([1, -100, 3, -100])
    w0 = rng.standard_normal((4, 3)) * 0.5
    net = nn.Linear(3, 4, dtype=np.float64)
    net.weight.data = w0.copy()
    net.bias.data = np.zeros(4)
    model = symbp.compile(
        net, nn.CrossEntropyLoss(ignore_index=-100), symbp.optim.SGD(net.parameters(), lr=0.5)
    )
    loss = model.step(x, y)
    t = torch.nn.Linear(3, 4).double()
    with torch.no_grad():
        t.weight.copy_(torch.tensor(w0))
        t.bias.zero_()
    tl = torch.nn.CrossEntropyLoss(ignore_index=-100)(t(torch.tensor(x)), torch.tensor(y))
    tl.backward()
    np.testing.assert_allclose(float(loss), tl.item(), rtol=1e-12)
    np.testing.assert_allclose(
        net.weight.numpy(), w0 - 0.5 * t.weight.grad.numpy(), rtol=1e-12, atol=1e-15
    )
    plain = nn.Linear(3, 4, dtype=np.float64)
    refusing = symbp.compile(
        plain, nn.CrossEntropyLoss(), symbp.optim.SGD(plain.parameters(), lr=0.5)
    )
    before = plain.weight.numpy().copy()
    with pytest.raises(IndexError, match="out of range"):
        refusing.step(x, y)
    np.testing.assert_array_equal(plain.weight.numpy(), before)
