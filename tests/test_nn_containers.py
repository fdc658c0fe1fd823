"""PyTorch's containers and Module protocol, each against torch.nn on the same program:
names, order, state-dict keys, reprs, and the values a model built from them computes."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

import symbp
from symbp import nn

torch = pytest.importorskip("torch")


def _both(build):
    """The same construction on symbp's nn and torch's, ``build(nn)``."""
    return build(nn), build(torch.nn)


def _copy_weights(src, dst):
    """torch module ``src``'s parameters into symbp module ``dst``, by state-dict name."""
    dst.load_state_dict(
        {k: v.detach().numpy().astype(np.float64) for k, v in src.state_dict().items()}
    )


class _Tower:
    """A model holding a ModuleList, a ModuleDict, a ParameterList and a ParameterDict."""

    @staticmethod
    def build(lib):
        class Tower(lib.Module):
            def __init__(self):
                super().__init__()
                self.blocks = lib.ModuleList([lib.Linear(3, 3) for _ in range(2)])
                self.blocks.append(lib.Linear(3, 4))
                self.heads = lib.ModuleDict({"a": lib.Linear(4, 2), "b": lib.Linear(4, 2)})
                self.scales = lib.ParameterList([lib.Parameter(_t(lib, np.ones(4) * 0.5))])
                self.shift = lib.ParameterDict({"a": lib.Parameter(_t(lib, np.full(2, 0.1)))})

            def forward(self, x):
                for block in self.blocks:
                    x = lib.functional.relu(block(x)) if lib is torch.nn else symbp.relu(block(x))
                x = x * self.scales[0]
                return self.heads["a"](x) + self.shift["a"] - self.heads["b"](x)

        return Tower()


def _t(lib, a):
    return torch.tensor(a) if lib is torch.nn else symbp.tensor(a)


def test_container_names_and_values_match_torch():
    mine, theirs = _both(_Tower.build)
    theirs.double()
    mine.double()
    assert list(mine.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in mine.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in mine.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [n for n, _ in mine.named_children()] == [n for n, _ in theirs.named_children()]
    _copy_weights(theirs, mine)
    x = np.random.default_rng(0).standard_normal((5, 3))
    want = theirs(torch.tensor(x))
    got = mine(symbp.tensor(x))
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-12)
    want.sum().backward()
    got.sum().backward()
    for (n, p), (_, q) in zip(mine.named_parameters(), theirs.named_parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-12, err_msg=n)


@pytest.mark.slow
def test_a_model_of_containers_compiles_and_trains_as_eager():
    net = _Tower.build(nn).double()
    ref = _Tower.build(nn).double()
    ref.load_state_dict(net.state_dict())
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))

    def loss_fn(out, t):
        return ((out - t) ** 2).mean()

    model = symbp.compile(net, loss_fn, symbp.optim.SGD(net.parameters(), lr=0.1))
    opt = symbp.optim.SGD(ref.parameters(), lr=0.1)
    for _ in range(3):
        model.step(x, y)
        opt.zero_grad()
        loss_fn(ref(symbp.tensor(x)), symbp.tensor(y)).backward()
        opt.step()
    for (n, p), q in zip(net.named_parameters(), ref.parameters()):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-12, err_msg=n)


def test_module_list_is_a_list():
    mine, theirs = _both(lambda lib: lib.ModuleList([lib.Linear(2, 2), lib.ReLU(), lib.Tanh()]))
    for lst in (mine, theirs):
        lst.insert(1, type(lst[0])(2, 3))
        lst.extend([type(lst[-1])()])
        del lst[0]
        lst += [type(lst[1])()]
        lst.pop(2)
    assert [type(m).__name__ for m in mine] == [type(m).__name__ for m in theirs]
    assert [n for n, _ in mine.named_children()] == [n for n, _ in theirs.named_children()]
    assert [type(m).__name__ for m in mine[1:]] == [type(m).__name__ for m in theirs[1:]]
    assert type(mine[1:]) is nn.ModuleList
    assert len(mine) == len(theirs) and type(mine[-1]).__name__ == type(theirs[-1]).__name__
    with pytest.raises(IndexError, match="out of range"):
        mine[len(mine)]
    with pytest.raises(TypeError, match="holds modules"):
        mine.append(np.ones(2))
    with pytest.raises(NotImplementedError, match="iterate over it"):
        mine(symbp.tensor(np.ones(2)))


def test_module_dict_is_a_dict():
    mine, theirs = _both(lambda lib: lib.ModuleDict([("x", lib.ReLU()), ("y", lib.Tanh())]))
    for d in (mine, theirs):
        d["z"] = type(d["x"])()
        d.update({"w": type(d["y"])()})
        d.pop("x")
    assert list(mine.keys()) == list(theirs.keys())
    assert [type(m).__name__ for m in mine.values()] == [type(m).__name__ for m in theirs.values()]
    assert ("y" in mine) and ("x" not in mine)
    assert [n for n, _ in mine.named_modules()] == [n for n, _ in theirs.named_modules()]


def test_sequential_of_an_ordered_dict_keeps_names_and_slices_keep_them_too():
    def build(lib):
        return lib.Sequential(
            OrderedDict([("fc1", lib.Linear(2, 3)), ("act", lib.ReLU()), ("fc2", lib.Linear(3, 1))])
        )

    mine, theirs = _both(build)
    assert list(mine.state_dict()) == list(theirs.state_dict())
    assert list(mine[1:].state_dict()) == list(theirs[1:].state_dict())
    assert type(mine[-1]).__name__ == "Linear" and mine[-1] is mine.fc2
    del mine[1]
    del theirs[1]
    assert [n for n, _ in mine.named_children()] == [n for n, _ in theirs.named_children()]


def test_repr_is_pytorchs():
    def build(lib):
        inner = lib.Sequential(lib.Linear(4, 3), lib.ReLU())
        return lib.Sequential(
            lib.Linear(2, 4), inner, lib.ModuleList([lib.Linear(3, 1, bias=False)])
        )

    mine, theirs = _both(build)
    assert repr(mine) == repr(theirs)
    assert repr(nn.Sequential()) == repr(torch.nn.Sequential())


def test_parameter_list_repr_and_entries():
    mine = nn.ParameterList(
        [nn.Parameter(np.ones((2, 3), np.float32)), symbp.tensor(np.zeros(2, np.float32))]
    )
    theirs = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(2, 3)), torch.zeros(2)])
    assert repr(mine).replace("symbp.", "torch.") == repr(theirs)
    assert all(isinstance(p, nn.Parameter) for p in mine)  # a tensor becomes a parameter
    assert [n for n, _ in mine.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    d = nn.ParameterDict({"w": nn.Parameter(np.ones(3, np.float32))})
    td = torch.nn.ParameterDict({"w": torch.nn.Parameter(torch.ones(3))})
    assert repr(d).replace("symbp.", "torch.") == repr(td)


def test_apply_visits_children_before_parents_as_pytorch():
    mine, theirs = _both(lambda lib: lib.Sequential(lib.Linear(2, 2), lib.Sequential(lib.ReLU())))
    seen_mine, seen_theirs = [], []
    mine.apply(lambda m: seen_mine.append(type(m).__name__))
    theirs.apply(lambda m: seen_theirs.append(type(m).__name__))
    assert seen_mine == seen_theirs


def test_apply_initialises_weights():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))

    def init(m):
        if isinstance(m, nn.Linear):
            nn.init.constant_(m.weight, 0.25)
            nn.init.zeros_(m.bias)

    assert net.apply(init) is net
    for m in (net[0], net[2]):
        np.testing.assert_array_equal(m.weight.numpy(), np.full(m.weight.shape, 0.25))
        np.testing.assert_array_equal(m.bias.numpy(), 0)


def test_shared_module_appears_once():
    def build(lib):
        shared = lib.Linear(2, 2)
        return lib.Sequential(shared, lib.ReLU(), shared)

    mine, theirs = _both(build)
    assert [n for n, _ in mine.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [n for n, _ in mine.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert len(list(mine.children())) == len(list(theirs.children()))


def test_recurse_false_and_buffers():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    assert list(net.parameters(recurse=False)) == []
    assert [n for n, _ in net[1].named_parameters(recurse=False)] == ["weight", "bias"]
    theirs = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    assert [n for n, _ in net.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert len(list(net.buffers())) == len(list(theirs.buffers()))


def test_non_persistent_buffer_is_not_in_the_state_dict():
    m, t = nn.Module(), torch.nn.Module()
    m.register_buffer("kept", np.ones(2))
    m.register_buffer("cache", np.zeros(2), persistent=False)
    t.register_buffer("kept", torch.ones(2))
    t.register_buffer("cache", torch.zeros(2), persistent=False)
    assert list(m.state_dict()) == list(t.state_dict()) == ["kept"]
    assert [n for n, _ in m.named_buffers()] == [n for n, _ in t.named_buffers()]


def test_get_submodule_and_parameter():
    net = nn.Sequential(OrderedDict(enc=nn.Sequential(nn.Linear(2, 3)), act=nn.ReLU()))
    assert net.get_submodule("enc.0") is net.enc[0]
    assert net.get_parameter("enc.0.bias") is net.enc[0].bias
    with pytest.raises(AttributeError, match="no attribute `dec`"):
        net.get_submodule("dec")


def test_requires_grad_freezes_a_module():
    net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    net[0].requires_grad_(False)
    (net(symbp.tensor(np.ones((1, 2), np.float32))).sum()).backward()
    assert net[0].weight.grad is None and net[1].weight.grad is not None


def test_register_errors_name_what_is_wrong():
    m = nn.Module()
    with pytest.raises(TypeError, match=r"nn\.Parameter or None required"):
        m.register_parameter("w", np.ones(2))
    with pytest.raises(KeyError, match=r"without '\.'"):
        m.add_module("a.b", nn.ReLU())
    with pytest.raises(ValueError, match="boolean"):
        m.train("yes")
