"""``load_state_dict`` of modules and optimizers: PyTorch's semantics, checked before any change.

PyTorch copies the keys before a bad one and then raises; symbp checks every key, shape and
dtype first, so a failed load leaves the model (or optimizer) exactly as it was, and reports
every problem in PyTorch's words.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import symbp
from symbp import nn

torch = pytest.importorskip("torch")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)
        self.fc2 = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc2(self.bn(self.fc1(x)).relu())


class TorchNets:  # a namespace, so that PyTorch's class is named Net too)
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(3, 4)
            self.bn = torch.nn.BatchNorm1d(4)
            self.fc2 = torch.nn.Linear(4, 2)


TorchNet = TorchNets.Net


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model, before):
    after = model.state_dict()
    assert list(after) == list(before)
    for k, v in before.items():
        np.testing.assert_array_equal(after[k], v, err_msg=k)
        assert after[k].dtype == v.dtype, k


def both_errors(state, strict=True):
    """(symbp's message, torch's message with torch.Size([a, b]) written [a,b])."""
    ours, theirs = Net(), TorchNet()
    before = snapshot(ours)
    with pytest.raises(RuntimeError) as mine:
        ours.load_state_dict(state, strict=strict)
    assert_unchanged(ours, before)  # nothing loaded, not even the keys before the bad one
    with pytest.raises(RuntimeError) as err:
        theirs.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in state.items()}, strict)
    torch_msg = re.sub(
        r"torch\.Size\(\[([^\]]*)\]\)", lambda m: "[" + m[1].replace(" ", "") + "]", str(err.value)
    )
    return str(mine.value), torch_msg


def test_a_mis_shaped_weight_after_good_keys_changes_nothing():
    state = snapshot(Net())
    for k in state:
        state[k] = state[k] + 1 if state[k].dtype.kind == "f" else state[k]
    state["fc2.weight"] = np.zeros((3, 4), np.float32)  # the last parameter, wrong
    mine, theirs = both_errors(state)
    assert mine == theirs  # "Error(s) in loading state_dict for Net:\n\tsize mismatch for ..."
    assert "size mismatch for fc2.weight: copying a param with shape [3,4]" in mine


def test_a_mis_shaped_buffer_is_refused():
    state = snapshot(Net())
    state["bn.running_mean"] = np.zeros(7, np.float32)  # 7 statistics for 4 features
    mine, theirs = both_errors(state)
    assert mine == theirs
    assert (
        "size mismatch for bn.running_mean: copying a param with shape [7] from checkpoint, "
        "the shape in current model is [4]." in mine
    )
    mine, theirs = both_errors(state, strict=False)  # shapes are checked without strict too
    assert mine == theirs


def test_missing_unexpected_and_mis_shaped_are_reported_together_as_pytorch():
    state = snapshot(Net())
    del state["fc1.bias"], state["fc2.bias"]  # (PyTorch fills in a missing num_batches_tracked)
    state["fc3.weight"] = np.zeros((2, 2), np.float32)
    state["bn.running_var"] = np.ones(5, np.float32)
    mine, theirs = both_errors(state)
    assert mine == theirs
    lines = mine.split("\n\t")
    assert lines[0] == "Error(s) in loading state_dict for Net:"
    assert lines[1] == 'Missing key(s) in state_dict: "fc1.bias", "fc2.bias". '
    assert lines[2] == 'Unexpected key(s) in state_dict: "fc3.weight". '
    assert lines[3].startswith("size mismatch for bn.running_var")


def test_strict_false_returns_the_incompatible_keys_as_pytorch():
    ours, theirs = Net(), TorchNet()
    src = Net()
    state = {k: v for k, v in snapshot(src).items() if not k.startswith("fc2")}
    state["extra.weight"] = np.zeros(1, np.float32)
    got = ours.load_state_dict(state, strict=False)
    tstate = {k: torch.tensor(np.asarray(v)) for k, v in state.items()}
    want = theirs.load_state_dict(tstate, strict=False)
    assert got.missing_keys == want.missing_keys == ["fc2.weight", "fc2.bias"]
    assert got.unexpected_keys == want.unexpected_keys == ["extra.weight"]
    missing, unexpected = got  # a NamedTuple, as PyTorch's _IncompatibleKeys
    assert (missing, unexpected) == (want.missing_keys, want.unexpected_keys)
    np.testing.assert_array_equal(ours.fc1.weight.data, src.fc1.weight.data)  # the rest loaded
    np.testing.assert_array_equal(ours.bn.running_mean, src.bn.running_mean)
    full = ours.load_state_dict(src.state_dict())
    assert repr(full) == repr(theirs.load_state_dict(theirs.state_dict()))
    assert repr(full) == "<All keys matched successfully>"


def test_values_are_cast_to_the_models_dtypes_and_copied_as_pytorch():
    ours, theirs = Net(), TorchNet()
    state = {k: np.asarray(v, dtype=np.float64) for k, v in snapshot(Net()).items()}
    state["bn.num_batches_tracked"] = np.array(3)
    ours.load_state_dict(state)
    theirs.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    for name, value in ours.state_dict().items():
        want = theirs.state_dict()[name].numpy()
        assert value.dtype == want.dtype, name  # float32 parameters stay float32
        np.testing.assert_array_equal(value, want, err_msg=name)
    state["fc1.weight"][:] = 99  # the model holds copies
    assert not np.any(ours.fc1.weight.numpy() == 99)


@pytest.mark.parametrize(
    "name,value,why",
    [
        ("fc1.bias", np.array(["a", "b", "c", "d"]), "cannot load <U1 into float32"),
        ("bn.num_batches_tracked", np.array(2.5), "cannot hold exactly"),
        ("fc1.bias", np.full(4, 1e300), "overflows the model's float32"),
    ],
    ids=["strings", "fractional count", "overflow"],
)
def test_values_the_model_cannot_hold_are_refused_and_change_nothing(name, value, why):
    model = Net()
    before = snapshot(model)
    state = {k: v + 1 if v.dtype.kind == "f" else v for k, v in snapshot(Net()).items()}
    state[name] = value
    with pytest.raises(RuntimeError, match=f"dtype mismatch for {re.escape(name)}: .*{why}"):
        model.load_state_dict(state)
    assert_unchanged(model, before)


def test_a_state_dict_must_be_a_mapping_as_pytorch():
    with pytest.raises(TypeError) as theirs:
        TorchNet().load_state_dict([1])
    with pytest.raises(TypeError) as mine:
        Net().load_state_dict([1])  # type: ignore[arg-type]
    assert str(mine.value) == str(theirs.value)


# ---------------------------------------------------------------- optimizers


def two_group_sgd(momentum=0.9):
    a, b, c = (nn.Parameter(np.full(s, 1.0)) for s in ((2, 3), (3,), (4,)))
    opt = symbp.optim.SGD(
        [{"params": [a, b]}, {"params": [c], "lr": 0.5}], lr=0.1, momentum=momentum
    )
    for p in (a, b, c):
        p.grad = np.ones_like(p.data)
    opt.step()
    return opt, (a, b, c)


def opt_snapshot(opt):
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    state = {k: {n: np.copy(v) for n, v in st.items()} for k, st in opt.state.items()}
    return groups, state


def assert_opt_unchanged(opt, before):
    groups, state = before
    assert [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups] == groups
    assert opt.state.keys() == state.keys()
    for k, st in state.items():
        assert opt.state[k].keys() == st.keys()
        for n, v in st.items():
            np.testing.assert_array_equal(opt.state[k][n], v)


def test_optimizer_group_sizes_are_checked_before_any_group_changes():
    opt, _ = two_group_sgd()
    saved = opt.state_dict()
    saved["param_groups"][0]["lr"] = 7.0  # the first group fits ...
    saved["param_groups"][1]["params"] = [2, 3]  # ... the second does not
    before = opt_snapshot(opt)
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        opt.load_state_dict(saved)
    assert_opt_unchanged(opt, before)
    tp = [torch.nn.Parameter(torch.ones(2, 3)), torch.nn.Parameter(torch.ones(4))]
    topt = torch.optim.SGD([{"params": tp[:1]}, {"params": tp[1:]}], lr=0.1)
    tsaved = topt.state_dict()
    tsaved["param_groups"][1]["params"] = [1, 2]
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        topt.load_state_dict(tsaved)  # the same check, the same error type


@pytest.mark.parametrize(
    "corrupt,match",
    [
        (lambda s: s["state"][2].update(momentum_buffer=np.zeros(5)), r"'momentum_buffer'.*\[5\]"),
        (lambda s: s["state"].update({7: {"step": 1}}), "state for parameter 7"),
        (lambda s: s["state"][1].update(exp_avg=np.zeros(3)), "'exp_avg' that SGD"),
        (lambda s: s["state"][0].update(step=-1), "step -1"),
        (lambda s: s["param_groups"][1].update(lr=-1.0), "invalid lr=-1.0"),
    ],
    ids=["state shape", "slot", "another optimizer", "step", "hyperparameter"],
)
def test_optimizer_state_is_checked_before_anything_changes(corrupt, match):
    opt, _ = two_group_sgd()
    saved = opt.state_dict()
    saved["param_groups"][0]["lr"] = 7.0  # a change that would have been applied first
    corrupt(saved)
    before = opt_snapshot(opt)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(saved)
    assert_opt_unchanged(opt, before)


def test_optimizer_state_round_trip_continues_as_pytorch():
    rng = np.random.default_rng(0)
    w0, grads = rng.normal(size=(3, 2)), rng.normal(size=(4, 3, 2))
    p = nn.Parameter(w0.copy())
    opt = symbp.optim.SGD([p], lr=0.1, momentum=0.9)
    tp = torch.nn.Parameter(torch.tensor(w0))
    topt = torch.optim.SGD([tp], lr=0.1, momentum=0.9)
    for g in grads[:2]:
        p.grad, tp.grad = g.copy(), torch.tensor(g)
        opt.step()
        topt.step()
    q = nn.Parameter(p.data.numpy().copy())
    opt2 = symbp.optim.SGD([q], lr=3.0, momentum=0.9)
    opt2.load_state_dict(opt.state_dict())
    for g in grads[2:]:
        q.grad, tp.grad = g.copy(), torch.tensor(g)
        opt2.step()
        topt.step()
    np.testing.assert_allclose(q.data, tp.detach().numpy(), rtol=1e-14)
