"""Grad mode and in-place updates, against PyTorch itself.

The tutorial loops: ``with torch.no_grad(): w -= lr * w.grad; w.grad.zero_()``, a manual SGD over
``model.parameters()``, ``p.data.sub_(lr * p.grad.data)``; the grad-mode context managers and
decorators; each ``_`` method; and PyTorch's errors for updates it refuses.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import symbp
from symbp import nn

torch = pytest.importorskip("torch")


def pair(a, requires_grad=False):
    a = np.asarray(a, dtype=np.float64)
    return (
        symbp.tensor(a, dtype=np.float64, requires_grad=requires_grad),
        torch.tensor(a, requires_grad=requires_grad),
    )


def data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(16, 3))
    y = x @ np.array([[1.5], [-2.0], [0.5]]) + 0.3 + 0.1 * rng.normal(size=(16, 1))
    return x, y


# ---------------------------------------------------------------- the tutorial loops


def test_manual_linear_regression_matches_pytorch():
    x, y = data()
    w, tw = pair(np.full((3, 1), 0.1), requires_grad=True)
    b, tb = pair(0.0, requires_grad=True)
    xs, ys = symbp.tensor(x), symbp.tensor(y)
    txs, tys = torch.tensor(x), torch.tensor(y)
    lr = 0.05
    w_obj = w
    for _ in range(6):
        loss = ((xs @ w + b - ys) ** 2).mean()
        tloss = ((txs @ tw + tb - tys) ** 2).mean()
        loss.backward()
        tloss.backward()
        np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-12)
        with symbp.no_grad():
            w -= lr * w.grad
            b -= b.grad * lr
            w.grad.zero_()
            b.grad.zero_()
        with torch.no_grad():
            tw -= lr * tw.grad
            tb -= tb.grad * lr
            tw.grad.zero_()
            tb.grad.zero_()
    assert w is w_obj and w.is_leaf and w.requires_grad
    np.testing.assert_allclose(w.numpy(), tw.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(b.numpy(), tb.detach().numpy(), rtol=1e-12)
    np.testing.assert_array_equal(w.grad.numpy(), np.zeros((3, 1)))


def _nets():
    symbp.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    tnet = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)
    ).double()
    with torch.no_grad():
        for p, tp in zip(net.parameters(), tnet.parameters()):
            tp.copy_(torch.tensor(p.numpy()))
    return net, tnet


@pytest.mark.parametrize("form", ["isub", "data.sub_", "sub_ alpha"])
def test_manual_sgd_over_parameters_matches_pytorch(float64, form):
    x, y = data()
    net, tnet = _nets()
    params = list(net.parameters())
    lr = 0.1
    for _ in range(4):
        net.zero_grad()
        tnet.zero_grad()
        ((net(symbp.tensor(x)) - symbp.tensor(y)) ** 2).mean().backward()
        ((tnet(torch.tensor(x)) - torch.tensor(y)) ** 2).mean().backward()
        with torch.no_grad():
            for tp in tnet.parameters():
                tp -= lr * tp.grad
        if form == "isub":
            with symbp.no_grad():
                for p in net.parameters():
                    p -= lr * p.grad
        elif form == "data.sub_":  # no no_grad needed: .data records no graph
            for p in net.parameters():
                p.data.sub_(lr * p.grad.data)
        else:
            with symbp.no_grad():
                for p in net.parameters():
                    p.sub_(p.grad, alpha=lr)
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]  # the same leaves
    for p, tp in zip(net.parameters(), tnet.parameters()):
        np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-12, atol=1e-15)


def test_an_optimizer_sees_parameters_updated_in_place(float64):
    net, tnet = _nets()
    opt = symbp.optim.SGD(net.parameters(), lr=0.1)
    topt = torch.optim.SGD(tnet.parameters(), lr=0.1)
    with symbp.no_grad():
        for p in net.parameters():
            p.mul_(0.5)
    with torch.no_grad():
        for tp in tnet.parameters():
            tp.mul_(0.5)
    x, y = data()
    for _ in range(2):
        opt.zero_grad()
        topt.zero_grad()
        ((net(symbp.tensor(x)) - symbp.tensor(y)) ** 2).mean().backward()
        ((tnet(torch.tensor(x)) - torch.tensor(y)) ** 2).mean().backward()
        opt.step()
        topt.step()
    for p, tp in zip(net.parameters(), tnet.parameters()):
        np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- .grad and .data


def test_grad_and_data_are_tensors_sharing_memory():
    w, tw = pair([1.0, 2.0], requires_grad=True)
    (w * w).sum().backward()
    (tw * tw).sum().backward()
    assert isinstance(w.grad, symbp.Tensor) and isinstance(w.data, symbp.Tensor)
    assert not w.grad.requires_grad and not w.data.requires_grad
    assert w.grad is w.grad  # as PyTorch: the same tensor until replaced
    assert np.shares_memory(w.grad.numpy(), w.grad.data.numpy())
    assert np.shares_memory(w.data.numpy(), w.numpy())
    assert np.allclose(w.grad, tw.grad.numpy())  # __array__ keeps NumPy's functions working
    assert w.grad.tolist() == tw.grad.tolist() and w.grad.data.tolist() == tw.grad.data.tolist()
    # printed as a tensor, not a memory buffer: as PyTorch prints it (float64 names its dtype)
    assert repr(w.grad) == repr(tw.grad).replace("torch.", "symbp.")
    assert repr(w.grad) == "tensor([2., 4.], dtype=symbp.float64)"
    w.data.mul_(3)
    tw.data.mul_(3)
    assert w.tolist() == tw.tolist() and w.requires_grad and w.is_leaf
    g, tg = w.grad, tw.grad
    (w * w).sum().backward()
    (tw * tw).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), tw.grad.numpy())  # accumulated
    assert g.tolist() == tg.tolist()  # in place, where the held gradient sees it
    w.grad = None
    assert w.grad is None
    with pytest.raises(RuntimeError, match=r"assign a gradient of size '\[3\]'"):
        w.grad = symbp.tensor([1.0, 2.0, 3.0])


def test_parameter_data_assignment_and_grad_of_a_parameter():
    p = nn.Parameter(np.array([1.0, 2.0]))
    p.data = np.array([3.0, 4.0])
    assert p.tolist() == [3.0, 4.0]
    p.data = symbp.tensor([5.0, 6.0], dtype=np.float64)
    assert p.tolist() == [5.0, 6.0]
    (p * p).sum().backward()
    assert isinstance(p.grad, symbp.Tensor) and p.grad.tolist() == [10.0, 12.0]
    p.grad.data.zero_()
    assert p.grad.tolist() == [0.0, 0.0]
    p.data[0] = 7.0  # writes through .data into the parameter
    assert p.tolist() == [7.0, 6.0]


def test_module_zero_grad_sets_none_as_pytorch_2(float64):
    net, tnet = _nets()
    x, _ = data()
    net(symbp.tensor(x)).sum().backward()
    tnet(torch.tensor(x)).sum().backward()
    net.zero_grad()
    tnet.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    assert all(p.grad is None for p in tnet.parameters())
    for mine, theirs in [(net, tnet), (symbp.optim.SGD(net.parameters(), lr=0.1), None)]:
        net(symbp.tensor(x)).sum().backward()
        held = [p.grad for p in net.parameters()]
        mine.zero_grad(set_to_none=False)  # in place: a held gradient sees the zeros
        assert all(g is p.grad and not g.numpy().any() for g, p in zip(held, net.parameters()))
    tnet(torch.tensor(x)).sum().backward()
    held = [p.grad for p in tnet.parameters()]
    tnet.zero_grad(set_to_none=False)
    assert all(g is p.grad and not g.numpy().any() for g, p in zip(held, tnet.parameters()))


# ---------------------------------------------------------------- grad mode


def test_results_under_no_grad_are_constants():
    w, tw = pair([1.0, -2.0, 3.0], requires_grad=True)
    with symbp.no_grad():
        c = w * 2
    with torch.no_grad():
        tc = tw * 2
    assert c.requires_grad is tc.requires_grad is False
    assert c.is_leaf and tc.is_leaf
    (c * w).sum().backward()  # d/dw (c * w) = c: the constant carries no gradient
    (tc * tw).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), tw.grad.numpy())


def test_modes_nest_and_restore_as_pytorch():
    def modes(lib):
        seen = [lib.is_grad_enabled()]
        with lib.no_grad():
            seen.append(lib.is_grad_enabled())
            with lib.enable_grad():
                seen.append(lib.is_grad_enabled())
                with lib.set_grad_enabled(False):
                    seen.append(lib.is_grad_enabled())
                seen.append(lib.is_grad_enabled())
            with lib.inference_mode(False):
                seen.append(lib.is_grad_enabled())
            seen.append(lib.is_grad_enabled())
        with lib.inference_mode():
            seen.append(lib.is_grad_enabled())
        try:
            with lib.no_grad():
                raise KeyError
        except KeyError:
            seen.append(lib.is_grad_enabled())  # restored after an exception
        lib.set_grad_enabled(False)  # a plain call switches it
        seen.append(lib.is_grad_enabled())
        lib.set_grad_enabled(True)
        seen.append(lib.is_grad_enabled())
        return seen

    assert modes(symbp) == modes(torch)


def test_decorators_as_pytorch():
    def run(lib):
        w = lib.tensor([1.0], requires_grad=True)

        @lib.no_grad()
        def a(x):
            return x * 2

        @lib.no_grad
        def b(x):
            return x * 2

        @lib.inference_mode
        def c(x):
            return x * 2

        @lib.inference_mode()
        def d(x):
            return x * 2

        @lib.enable_grad()
        def e(x):
            return x * 2

        @lib.set_grad_enabled(False)
        def f(x):
            return x * 2

        lib.set_grad_enabled(True)  # decorating with set_grad_enabled(False) switched it
        with lib.no_grad():
            inside = e(w).requires_grad
        out = [g(w).requires_grad for g in (a, b, c, d, e, f)]
        return [*out, inside, lib.is_grad_enabled(), a.__name__]

    assert run(symbp) == run(torch)


def test_grad_mode_is_per_thread():
    seen = []
    with symbp.no_grad():
        t = threading.Thread(target=lambda: seen.append(symbp.is_grad_enabled()))
        t.start()
        t.join()
        assert not symbp.is_grad_enabled()
    assert seen == [True] and symbp.is_grad_enabled()


def test_no_grad_in_a_traced_function_cuts_the_gradient():
    w = nn.Parameter(np.array([2.0, 3.0]))

    def f(x):
        with symbp.no_grad():
            c = x * w
        return (c * w).sum()

    traced = symbp.trace(f, np.zeros((4, 2)))
    d = symbp.derive(traced.outputs[0], [w.node])
    x = np.arange(8.0).reshape(4, 2)
    from symbp.compiler.reference import evaluate

    g = evaluate([d.grads[0]], {traced.inputs["x"]: x, w.node: w.numpy()})[0]
    np.testing.assert_allclose(g, (x * w.numpy()).sum(0))  # c is a constant


# ---------------------------------------------------------------- each in-place method

METHODS = {
    "add_": lambda t, lib: t.add_(lib.tensor([0.5, -1.0, 2.0], dtype=lib.float64)),
    "add_ alpha": lambda t, lib: t.add_(lib.tensor([0.5, -1.0, 2.0], dtype=lib.float64), alpha=3),
    "sub_": lambda t, lib: t.sub_(0.25),
    "mul_": lambda t, lib: t.mul_(lib.tensor([[2.0], [3.0]], dtype=lib.float64)),
    "div_": lambda t, lib: t.div_(3.0),
    "pow_": lambda t, lib: t.pow_(2),
    "neg_": lambda t, lib: t.neg_(),
    "abs_": lambda t, lib: t.abs_(),
    "exp_": lambda t, lib: t.exp_(),
    "log_": lambda t, lib: t.abs_().log_(),
    "sqrt_": lambda t, lib: t.abs_().sqrt_(),
    "clamp_": lambda t, lib: t.clamp_(-0.5, 1.0),
    "clamp_ min": lambda t, lib: t.clamp_(min=0.0),
    "clamp_min_": lambda t, lib: t.clamp_min_(0.2),
    "clamp_max_": lambda t, lib: t.clamp_max_(0.2),
    "zero_": lambda t, lib: t.zero_(),
    "fill_": lambda t, lib: t.fill_(7.5),
    "fill_ tensor": lambda t, lib: t.fill_(lib.tensor(2.5, dtype=lib.float64)),
    "copy_": lambda t, lib: t.copy_(lib.tensor([1.0, 2.0, 3.0], dtype=lib.float32)),
    "+=": lambda t, lib: t.__iadd__(1.5),
    "-=": lambda t, lib: t.__isub__(lib.tensor([1.0, 2.0, 3.0], dtype=lib.float64)),
    "*=": lambda t, lib: t.__imul__(-2.0),
    "/=": lambda t, lib: t.__itruediv__(lib.tensor([[2.0], [4.0]], dtype=lib.float64)),
    "**=": lambda t, lib: t.__ipow__(3),
    "setitem int": lambda t, lib: t.__setitem__(1, 9.0),
    "setitem slice": lambda t, lib: t.__setitem__((slice(None), slice(0, 2)), 0.0),
    "setitem row": lambda t, lib: t.__setitem__(0, lib.tensor([1.0, 2.0, 3.0], dtype=lib.float64)),
}


@pytest.mark.parametrize("name", list(METHODS))
def test_in_place_methods_match_pytorch(name):
    a = np.array([[1.0, -2.0, 0.3], [-0.7, 2.5, 0.0]])
    x, tx = pair(a)
    alias, talias = x, tx
    out, tout = METHODS[name](x, symbp), METHODS[name](tx, torch)
    assert (out is x or out is None) and (tout is tx or tout is None)
    # NumPy's and PyTorch's sqrt and pow may differ in the last bit
    np.testing.assert_allclose(alias.numpy(), talias.numpy(), rtol=1e-15, atol=0)
    assert alias.dtype == np.float64


def test_in_place_under_no_grad_on_a_leaf_keeps_it_a_leaf():
    w, tw = pair([1.0, 2.0], requires_grad=True)
    for lib, t in ((symbp, w), (torch, tw)):
        with lib.no_grad():
            t.clamp_(max=1.5).mul_(2).add_(1)
    assert w.tolist() == tw.tolist() and w.is_leaf and w.requires_grad
    (w * w).sum().backward()  # a new graph from the updated values
    (tw * tw).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), tw.grad.numpy())


def test_uniform_and_normal_fill_in_place_from_the_seeded_stream():
    x = symbp.tensor(np.zeros((200,)), dtype=np.float64)
    alias = x
    symbp.manual_seed(5)
    x.uniform_(-2.0, 3.0)
    first = x.tolist()
    assert alias is x and min(first) >= -2.0 and max(first) < 3.0
    symbp.manual_seed(5)
    assert x.uniform_(-2.0, 3.0).tolist() == first  # reproducible
    x.normal_(1.0, 0.5)
    assert abs(np.mean(x.numpy()) - 1.0) < 0.15 and abs(np.std(x.numpy()) - 0.5) < 0.1


def test_requires_grad_as_pytorch():
    for lib in (symbp, torch):
        x = lib.tensor([1.0, 2.0], dtype=lib.float64)
        y = x * 2
        assert y.requires_grad_() is y and y.requires_grad and y.is_leaf
        (y * y).sum().backward()
        assert y.grad.tolist() == [4.0, 8.0]


# ---------------------------------------------------------------- errors


def _both_raise(fn, err=RuntimeError):
    """Run ``fn`` on a symbp and a torch input; both raise, symbp's message starts as torch's."""
    messages = []
    for lib in (symbp, torch):
        with pytest.raises(err) as info:
            fn(lib)
        messages.append(str(info.value))
    assert messages[0].startswith(messages[1].split(" Hint:")[0]), messages


def test_in_place_on_a_leaf_that_requires_grad_raises_as_pytorch():
    def leaf(lib):
        w = lib.tensor([1.0, 2.0], requires_grad=True)
        w -= 0.1

    def method(lib):
        lib.tensor([1.0, 2.0], requires_grad=True).zero_()

    _both_raise(leaf)
    _both_raise(method)


def test_in_place_dtype_and_shape_errors_as_pytorch():
    def to_long(lib):
        x = lib.tensor([1, 2])
        x += 1.5

    def broadcast(lib):
        x = lib.tensor([1.0, 2.0])
        x += lib.tensor([[1.0, 2.0], [3.0, 4.0]])

    def non_leaf_grad_flag(lib):
        w = lib.tensor([1.0], requires_grad=True)
        (w * 2).requires_grad_(False)

    def int_requires_grad(lib):
        lib.tensor([1, 2]).requires_grad_()

    for fn in (to_long, broadcast, non_leaf_grad_flag, int_requires_grad):
        _both_raise(fn)


def test_backward_after_an_input_changed_in_place_raises_as_pytorch():
    def stale(lib):
        w = lib.tensor([1.0, 2.0], requires_grad=True, dtype=lib.float64)
        a = lib.tensor([3.0, 4.0], dtype=lib.float64)
        loss = (w * a).sum()
        a += 1  # the gradient of w is a: the forward's a is gone
        loss.backward()

    def stale_leaf(lib):
        w = lib.tensor([1.0, 2.0], requires_grad=True, dtype=lib.float64)
        loss = (w * w).sum()
        with lib.no_grad():
            w -= 0.5
        loss.backward()

    _both_raise(stale)
    _both_raise(stale_leaf)


def test_in_place_on_a_tensor_in_a_graph_is_recorded_as_pytorch():
    """h += 1 on a computed tensor, and x += w on a constant with w requiring grad, are
    recorded in the graph as PyTorch records them (tests/test_inplace_in_graph.py has more)."""
    got = []
    for lib in (symbp, torch):
        w = lib.tensor([1.0, 2.0], requires_grad=True)
        h = w * 2
        h += 1
        x = lib.tensor([1.0, 2.0])
        x += w  # x joins w's graph
        (h * x).sum().backward()
        got.append((h.tolist(), x.tolist(), w.grad.tolist(), x.requires_grad))
    assert got[0] == got[1]


def test_integer_array_assignment_writes_as_pytorch():
    x, tx = symbp.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 3.0])
    alias = x.data  # the same memory: PyTorch's x[idx] = v writes in place
    x[np.array([0, 2])] = 0.5
    tx[torch.tensor([0, 2])] = 0.5
    assert x.tolist() == tx.tolist() == [0.5, 2.0, 0.5] and alias.tolist() == x.tolist()
    x[symbp.tensor(np.array([True, False, False]))] = 0.0  # a bool mask, as PyTorch
    assert x.tolist() == [0.0, 2.0, 0.5]


def test_compiled_step_grads_are_tensors_and_in_place_updates_reach_the_program(float64):
    x, y = data()
    net, tnet = _nets()
    model = symbp.compile(net, nn.MSELoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
    topt = torch.optim.SGD(tnet.parameters(), lr=0.1)

    def torch_step():
        topt.zero_grad()
        torch.nn.functional.mse_loss(tnet(torch.tensor(x)), torch.tensor(y)).backward()
        topt.step()

    model.step(x, y)
    torch_step()
    for p, tp in zip(net.parameters(), tnet.parameters()):
        assert isinstance(p.grad, symbp.Tensor)
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-12, atol=1e-15)
    with symbp.no_grad():  # a manual update between compiled steps, seen by the next one
        for p in net.parameters():
            p.mul_(0.5)
    with torch.no_grad():
        for tp in tnet.parameters():
            tp.mul_(0.5)
    model.step(x, y)
    torch_step()
    for p, tp in zip(net.parameters(), tnet.parameters()):
        np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-12, atol=1e-15)
