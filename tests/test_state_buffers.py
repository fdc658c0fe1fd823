"""State dicts, buffers, Parameter reprs and Size as PyTorch has them (issue 13).

PyTorch is the reference: ``state_dict()`` values are detached tensors sharing the model's
memory, buffers are tensors (``bn.running_mean`` prints ``tensor([...])``), a Parameter prints
``Parameter containing:`` over its tensor, and shapes are ``torch.Size`` tuples.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import symbp
from symbp import nn

torch = pytest.importorskip("torch")


def same_text(ours: object, theirs: object) -> None:
    """symbp prints its own name where PyTorch prints torch's; the rest must be equal."""
    assert str(ours).replace("symbp.", "torch.") == str(theirs)


def pair(seed: int = 0):
    """A symbp and a torch Linear + BatchNorm1d holding the same weights."""
    symbp.manual_seed(seed)
    ours = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    theirs.load_state_dict({k: torch.tensor(v.numpy()) for k, v in ours.state_dict().items()})
    return ours, theirs


def test_state_dict_values_are_detached_tensors_sharing_the_models_memory():
    ours, theirs = pair()
    sd, tsd = ours.state_dict(), theirs.state_dict()
    assert list(sd) == list(tsd)
    for k in sd:
        assert isinstance(sd[k], symbp.Tensor) and not isinstance(sd[k], symbp.Parameter), k
        assert sd[k].requires_grad == tsd[k].requires_grad is False, k
        same_text(sd[k], tsd[k])
    with symbp.no_grad():
        ours[0].weight.add_(1.0)  # an in-place update of the model shows in the state dict
    with torch.no_grad():
        theirs[0].weight.add_(1.0)
    np.testing.assert_array_equal(sd["0.weight"].numpy(), tsd["0.weight"].numpy())
    snapshot = copy.deepcopy(ours.state_dict())  # the usual way to keep one
    with symbp.no_grad():
        ours[0].weight.mul_(0.0)
    assert np.all(snapshot["0.weight"].numpy() != 0)


def test_keep_vars_gives_the_parameters_and_buffers_themselves():
    ours, theirs = pair()
    sd = ours.state_dict(keep_vars=True)
    assert sd["0.weight"] is ours[0].weight and sd["1.running_mean"] is ours[1].running_mean
    tsd = theirs.state_dict(keep_vars=True)
    assert tsd["0.weight"] is theirs[0].weight and tsd["1.running_mean"] is theirs[1].running_mean
    assert list(ours.state_dict(prefix="net.")) == list(theirs.state_dict(prefix="net."))


def test_buffers_are_tensors_printed_and_updated_as_pytorchs():
    ours, theirs = pair()
    rm = ours[1].running_mean  # held across the training step: the same tensor moves
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    ours(symbp.tensor(x))
    theirs(torch.tensor(x))
    assert isinstance(rm, symbp.Tensor) and rm is ours[1].running_mean
    same_text(ours[1].running_mean, theirs[1].running_mean)
    same_text(ours[1].running_var, theirs[1].running_var)
    same_text(ours[1].num_batches_tracked, theirs[1].num_batches_tracked)
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert all(isinstance(b, symbp.Tensor) for b in ours.buffers())


def test_assigning_a_buffer_keeps_it_a_buffer_and_a_non_tensor_is_refused():
    ours, theirs = pair()
    ours[1].running_mean = symbp.zeros(4) + 2
    theirs[1].running_mean = torch.zeros(4) + 2
    np.testing.assert_array_equal(
        ours.state_dict()["1.running_mean"].numpy(), theirs.state_dict()["1.running_mean"].numpy()
    )
    with pytest.raises(TypeError, match="cannot assign 'str' as buffer 'running_var'"):
        ours[1].running_var = "x"
    with pytest.raises(TypeError, match="cannot assign 'str' as buffer 'running_var'"):
        theirs[1].running_var = "x"
    ours[1].register_buffer("extra", None)  # an empty slot: not in the state dict, as PyTorch
    theirs[1].register_buffer("extra", None)
    assert list(ours.state_dict()) == list(theirs.state_dict())


def test_load_state_dict_copies_into_the_same_buffer_tensors():
    ours, _ = pair()
    src, _ = pair(seed=1)
    x = symbp.tensor(np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32))
    src(x)  # moves src's statistics
    rm = ours[1].running_mean
    ours.load_state_dict(src.state_dict())
    assert ours[1].running_mean is rm  # PyTorch copies in place: references stay live
    np.testing.assert_array_equal(rm.numpy(), src[1].running_mean.numpy())
    assert int(ours[1].num_batches_tracked) == 1


def test_module_to_keeps_buffer_tensors_and_changes_their_dtype():
    ours, theirs = pair()
    rm = ours[1].running_mean
    ours.double()
    theirs.double()
    assert ours[1].running_mean is rm and rm.dtype == symbp.float64
    assert theirs[1].running_mean.dtype == torch.float64
    assert ours[1].num_batches_tracked.dtype == symbp.int64  # integers stay, as PyTorch's
    same_text(ours.state_dict()["1.running_var"], theirs.state_dict()["1.running_var"])


def test_save_and_load_a_state_dict_of_tensors(tmp_path):
    ours, _ = pair()
    symbp.save(ours.state_dict(), tmp_path / "sd.pt")
    back = symbp.load(tmp_path / "sd.pt")
    fresh, _ = pair(seed=3)
    fresh.load_state_dict(back)
    for k, v in ours.state_dict().items():
        assert isinstance(back[k], symbp.Tensor)
        np.testing.assert_array_equal(fresh.state_dict()[k].numpy(), v.numpy(), err_msg=k)


def test_parameter_prints_as_pytorchs():
    w = np.array([[0.15, 0.2], [0.25, 0.3]], np.float32)
    same_text(nn.Parameter(symbp.tensor(w)), torch.nn.Parameter(torch.tensor(w)))
    same_text(
        nn.Parameter(symbp.tensor(w), requires_grad=False),
        torch.nn.Parameter(torch.tensor(w), requires_grad=False),
    )


def test_batchnorm_takes_pytorchs_bias_and_device_arguments():
    ours = nn.BatchNorm1d(3, bias=False, device="cpu")
    theirs = torch.nn.BatchNorm1d(3, bias=False, device="cpu")
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert repr(nn.BatchNorm2d(2)) == repr(torch.nn.BatchNorm2d(2))
    assert repr(nn.Linear(2, 3, bias=False, device="cpu")) == repr(
        torch.nn.Linear(2, 3, bias=False, device="cpu")
    )


def test_size_is_a_tuple_printed_as_torch_size():
    x, t = symbp.zeros(2, 3), torch.zeros(2, 3)
    for ours, theirs in [
        (x.shape, t.shape),
        (x.size(), t.size()),
        (x.shape[1:], t.shape[1:]),
        (x.sum().shape, t.sum().shape),
        (x.shape + (4,), t.shape + (4,)),  # noqa: RUF005 (Size's +, as torch.Size's)
        (symbp.Size([5]), torch.Size([5])),
    ]:
        assert isinstance(ours, symbp.Size) and isinstance(ours, tuple)
        same_text(ours, theirs)
        same_text(repr(ours), repr(theirs))
        assert ours == tuple(theirs) and ours.numel() == theirs.numel()
    assert x.size(1) == 3 and x.shape == (2, 3) and hash(x.shape) == hash((2, 3))
    assert np.zeros(x.shape).shape == (2, 3)
    assert str(symbp.placeholder("x", (symbp.B, 4)).shape) == "symbp.Size([B, 4])"
