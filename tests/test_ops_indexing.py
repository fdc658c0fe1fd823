"""Indexing as PyTorch (issue 12): x[key] for every key form, the indexing functions, and
x[key] = v, against PyTorch (values, shapes, gradients) and NumPy; errors; compiled."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_kernel_matches, kernel_results, numeric_grads

import symbp
from symbp import nn

torch = pytest.importorskip("torch")

X = np.random.default_rng(0).normal(size=(4, 5, 3))
I2 = np.array([3, 0, 3, -1])  # repeated and negative
J2 = np.array([[1], [4], [0]])
MASK = X[:, :, 0] > 0


# id -> (key, same in NumPy): np arrays in a key become torch/symbp tensors for each library
KEYS = {
    "int": (1, True),
    "negative int": (-1, True),
    "int int int": ((1, -2, 0), True),
    "slice": (slice(1, 3), True),
    "slice step": (slice(None, None, 2), True),
    "slice negative bounds": ((slice(-3, -1), slice(None, -2)), True),
    "slice past the end": (slice(2, 100), True),
    "empty slice": (slice(3, 1), True),
    "None": (None, True),
    "None between": ((slice(None), None, 2), True),
    "ellipsis": ((Ellipsis, 0), True),
    "ellipsis None": ((0, Ellipsis, None), True),
    "int array": (I2, True),
    "int list": ([0, 2, 2], True),
    "array slice": ((I2, slice(1, 4)), True),
    "slice array": ((slice(None), np.array([4, 4, 0])), True),
    "two arrays": ((I2, np.array([0, 1, 4, 4])), True),
    "broadcast arrays": ((I2[:, None], np.array([0, 2])), True),
    "arrays apart": ((I2, slice(None), np.array([0, 2, 1, 1])), True),
    "array None array": ((I2, None, np.array([0, 2, 1, 1])), True),
    "int then array": ((0, slice(None), np.array([2, 0])), False),  # PyTorch selects first
    "matrix index": (np.array([[0, 1], [3, 3]]), True),
    "index matrix columns": ((slice(None), J2), True),
    "bool mask rows": (np.array([True, False, True, True]), True),
    "bool mask 2-D": (MASK, True),
    "bool mask then slice": ((MASK, slice(0, 2)), True),
    "slice then bool mask": ((slice(None), np.array([1, 0, 1, 1, 0], bool)), True),
    "range": (range(1, 3), True),
}


def _lib_key(key, lib):
    """The key with its arrays as the library's tensors (symbp: tensor, torch: tensor)."""
    keys = key if isinstance(key, tuple) else (key,)
    made = tuple(lib(k) if isinstance(k, np.ndarray) else k for k in keys)
    return made if isinstance(key, tuple) else made[0]


@pytest.mark.parametrize("form", KEYS)
def test_getitem_matches_pytorch_values_shape_and_gradient(form):
    key, numpy_too = KEYS[form]
    x = symbp.tensor(X, requires_grad=True)
    tx = torch.tensor(X, requires_grad=True)
    got = x[_lib_key(key, symbp.tensor)]
    want = tx[_lib_key(key, torch.tensor)]
    assert tuple(got.shape) == tuple(want.shape)
    np.testing.assert_array_equal(got.numpy(), want.detach().numpy())
    if numpy_too:
        np.testing.assert_array_equal(got.numpy(), X[key])
    w = np.random.default_rng(1).normal(size=tuple(want.shape))
    (got * symbp.tensor(w)).sum().backward()
    (want * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-15, atol=0)


def test_repeated_indices_accumulate_and_match_central_differences():
    key = (I2, np.array([0, 1, 4, 4]))
    x = symbp.tensor(X, requires_grad=True)
    w = np.arange(1.0, 4.0 * 3 + 1).reshape(4, 3)
    (x[key] * symbp.tensor(w)).sum().backward()
    (want,) = numeric_grads(lambda a: np.sum(a[key] * w), [X])
    np.testing.assert_allclose(x.grad, want, rtol=1e-8, atol=1e-10)
    g = x.grad.numpy()
    assert g[3, 0, 0] == w[0, 0] and g[3, 4, 0] == w[2, 0] + w[3, 0]  # x[3, 4] twice


def test_negative_steps_are_refused_as_pytorch():
    x = symbp.tensor(X)
    with pytest.raises(ValueError, match="step must be greater than zero"):
        torch.tensor(X)[::-1]
    with pytest.raises(ValueError, match="step must be greater than zero"):
        x[::-1]
    with pytest.raises(ValueError, match="step must be greater than zero"):
        x[:, 3:0:-1]


# ---------------------------------------------------------------- the indexing functions

IDX = np.array([[0, 2, 2], [1, 0, 2], [4, 4, 3], [0, 1, 2]])  # for dim-1 gathers of [4, 5, 3]


def _pair(a, grad=True):
    return symbp.tensor(a, requires_grad=grad), torch.tensor(a, requires_grad=grad)


FUNCS = {
    "index_select": lambda m, x, s: m.index_select(x, 1, m.tensor([4, 0, 4])),
    "index_select dim 0": lambda m, x, s: m.index_select(x, 0, m.tensor([3, 3])),
    "gather": lambda m, x, s: m.gather(x, 1, m.tensor(IDX[:, :, None].repeat(3, 2))),
    "gather short": lambda m, x, s: m.gather(x, 2, m.tensor(np.array([[[2], [0]]] * 3))),
    "take": lambda m, x, s: m.take(x, m.tensor([[0, 59], [-1, 7]])),
    "narrow": lambda m, x, s: m.narrow(x, 1, 1, 3),
    "narrow negative": lambda m, x, s: m.narrow(x, 0, -2, 2),
    "masked_select": lambda m, x, s: m.masked_select(x, m.tensor(X > 0.3)),
    "masked_select broadcast": lambda m, x, s: m.masked_select(x, m.tensor(X[0, :, :1] > 0)),
    "scatter src": lambda m, x, s: x.scatter(
        1, m.tensor(np.array([[[0, 1, 2]], [[4, 3, 2]], [[1, 1, 1]], [[2, 0, 4]]])), s[:, :1]
    ),
    "scatter value": lambda m, x, s: x.scatter(1, m.tensor(np.array([[[0]], [[4]]])), value=2.5),
    "scatter_add": lambda m, x, s: x.scatter_add(
        1, m.tensor(IDX[:, :, None].repeat(3, 2)), s[:, :3]
    ),
    "index_add": lambda m, x, s: x.index_add(1, m.tensor([0, 4, 0]), s[:, :3], alpha=2.0),
    "index_put": lambda m, x, s: x.index_put((m.tensor([0, 3]), m.tensor([1, 1])), s[0, 0, :1]),
    "index_put accumulate": lambda m, x, s: x.index_put(
        (m.tensor([0, 0, 3]), m.tensor([1, 1, 1])), s[0, :3], accumulate=True
    ),
}
SRC = np.random.default_rng(2).normal(size=(4, 5, 3))


@pytest.mark.parametrize("name", FUNCS)
def test_indexing_functions_match_pytorch_values_and_gradients(name):
    (x, tx), (s, ts) = _pair(X), _pair(SRC)
    got, want = FUNCS[name](symbp, x, s), FUNCS[name](torch, tx, ts)
    assert tuple(got.shape) == tuple(want.shape)
    # adding into x after the scatter-add, not entry by entry: the order of additions differs
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-14, atol=1e-15)
    w = np.random.default_rng(3).normal(size=tuple(want.shape))
    (got * symbp.tensor(w)).sum().backward()
    (want * torch.tensor(w)).sum().backward()
    for mine, theirs in ((x, tx), (s, ts)):
        if theirs.grad is None:
            assert mine.grad is None or not mine.grad.numpy().any()
        else:
            np.testing.assert_allclose(mine.grad, theirs.grad.numpy(), rtol=1e-15, atol=0)


def test_gather_and_scatter_add_gradients_match_central_differences():
    idx = IDX[:, :, None].repeat(3, 2)
    x = symbp.tensor(X, requires_grad=True)
    w = np.random.default_rng(4).normal(size=idx.shape)
    (x.gather(1, symbp.tensor(idx)) * symbp.tensor(w)).sum().backward()
    (want,) = numeric_grads(lambda a: np.sum(np.take_along_axis(a, idx, 1) * w), [X])
    np.testing.assert_allclose(x.grad, want, rtol=1e-7, atol=1e-8)


# ---------------------------------------------------------------- x[key] = v

SETS = {
    "int": (1, 0.5),
    "slice": ((slice(None), slice(1, 4)), 2.0),
    "slice step row": ((slice(None, None, 2), 0), np.arange(3.0)),
    "array": (np.array([0, 3]), -1.0),
    "arrays": ((np.array([0, 3]), np.array([4, -1])), np.array([[7.0], [8.0]])),
    "bool mask": (MASK, 9.0),
    "ellipsis None": ((Ellipsis, 1), np.arange(4.0)[:, None]),
    "int then array": ((0, slice(None), np.array([2, 0])), np.arange(5.0)[:, None]),
}


@pytest.mark.parametrize("form", SETS)
def test_setitem_on_a_constant_writes_in_place_as_pytorch(form):
    key, value = SETS[form]
    x, tx = symbp.tensor(X.copy()), torch.tensor(X.copy())
    alias = x.data
    x[_lib_key(key, symbp.tensor)] = symbp.tensor(value) if np.ndim(value) else value
    tx[_lib_key(key, torch.tensor)] = torch.tensor(value) if np.ndim(value) else value
    np.testing.assert_array_equal(x.numpy(), tx.numpy())
    np.testing.assert_array_equal(alias.numpy(), tx.numpy())  # the same memory, as PyTorch


@pytest.mark.parametrize("form", SETS)
def test_setitem_in_a_graph_is_functional_and_differentiates_as_pytorch(form):
    key, value = SETS[form]
    (w, tw) = _pair(X)
    v, tv = _pair(np.asarray(value, dtype=np.float64))
    h, th = w * 2, tw * 2
    h[_lib_key(key, symbp.tensor)] = v * 3
    th[_lib_key(key, torch.tensor)] = tv * 3
    np.testing.assert_array_equal(h.numpy(), th.detach().numpy())
    c = np.random.default_rng(5).normal(size=X.shape)
    (h * symbp.tensor(c)).sum().backward()
    (th * torch.tensor(c)).sum().backward()
    np.testing.assert_allclose(w.grad, tw.grad.numpy(), rtol=1e-15)
    np.testing.assert_allclose(v.grad, tv.grad.numpy(), rtol=1e-15)


def test_setitem_bumps_the_version_so_a_stale_backward_is_refused_as_pytorch():
    (w, tw) = _pair(X)
    h, th = w * 2, tw * 2
    y, ty = h * h, th * th  # saves h
    h[0] = 1.0
    th[0] = 1.0
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        ty.sum().backward()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_setitem_of_a_tensor_that_requires_grad_into_a_constant_joins_the_graph():
    v, tv = _pair(np.array([1.5, -2.0]))
    x, tx = symbp.zeros(4, dtype=symbp.float64), torch.zeros(4, dtype=torch.float64)
    x[1:3] = v
    tx[1:3] = tv
    assert x.requires_grad and tx.requires_grad
    (x * symbp.tensor(np.array([1.0, 2.0, 3.0, 4.0]))).sum().backward()
    (tx * torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)).sum().backward()
    np.testing.assert_array_equal(v.grad, tv.grad.numpy())


def test_setitem_on_a_leaf_that_requires_grad_is_refused_as_pytorch():
    x = symbp.tensor(X, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        x[0] = 1.0
    with symbp.no_grad():
        x[0] = 1.0  # a parameter update
    assert (x.numpy()[0] == 1.0).all()


def test_setitem_with_repeated_indices_refuses_to_pick_a_winner():
    x = symbp.tensor(np.zeros(3))
    with pytest.raises(NotImplementedError, match="more than once"):
        x[[0, 0]] = symbp.tensor([1.0, 2.0])
    y = symbp.tensor(np.zeros(3))
    y.index_put_((symbp.tensor([0, 0]),), symbp.tensor([1.0, 2.0]), accumulate=True)
    assert y.tolist() == [3.0, 0.0, 0.0]


def test_in_place_scatter_and_index_add_as_pytorch():
    (w, tw) = _pair(X)
    h, th = w * 1, tw * 1
    idx = np.array([[[0, 1, 2]], [[4, 3, 2]], [[1, 1, 1]], [[2, 0, 4]]])
    h.scatter_add_(1, symbp.tensor(idx), symbp.tensor(SRC))
    th.scatter_add_(1, torch.tensor(idx), torch.tensor(SRC))
    h.index_add_(2, symbp.tensor([0, 0]), symbp.tensor(SRC[:, :, :2]))
    th.index_add_(2, torch.tensor([0, 0]), torch.tensor(SRC[:, :, :2]))
    np.testing.assert_allclose(h.numpy(), th.detach().numpy(), rtol=1e-14, atol=1e-15)
    (h * h).sum().backward()
    (th * th).sum().backward()
    np.testing.assert_allclose(w.grad, tw.grad.numpy(), rtol=1e-14, atol=1e-15)


# ---------------------------------------------------------------- errors


def test_out_of_range_indices_name_the_op_the_dim_the_index_and_the_size():
    x = symbp.tensor(X)
    cases = [
        (lambda: x[4], r"x\[\.\.\.\]: index 4 is out of bounds for dimension 0 with size 4"),
        (lambda: x[:, -6], "index -6 is out of bounds for dimension 1 with size 5"),
        (lambda: x[:, [0, 5]], "index 5 is out of bounds for dimension 1 with size 5"),
        (lambda: x[0, :, symbp.tensor([3])], "index 3 is out of bounds for dimension 2 with"),
        (lambda: x.index_select(1, symbp.tensor([-1])), "index_select: index -1 is out of b"),
        (lambda: x.gather(2, symbp.tensor(np.full((1, 1, 1), 3))), "gather: index 3 is out"),
        (lambda: x.take(symbp.tensor([60])), "take: index 60 is out of bounds for dimension 0"),
        (lambda: x.index_add(0, symbp.tensor([4]), x[:1]), "index_add: index 4 is out"),
    ]
    for fn, message in cases:
        with pytest.raises(IndexError, match=message):
            fn()


def test_bool_masks_of_the_wrong_shape_are_refused_as_pytorch():
    x, tx = symbp.tensor(X), torch.tensor(X)
    bad = np.array([True, False, True])
    with pytest.raises(IndexError, match=r"shape of the mask \[3\] at index 0 does not match"):
        tx[torch.tensor(bad)]
    with pytest.raises(IndexError, match=r"the shape of the mask \[3\] at index 0 does not match"):
        x[symbp.tensor(bad)]
    with pytest.raises(IndexError, match="too many indices for tensor of dimension 3"):
        x[0, 0, 0, 0]


def test_compiling_a_data_dependent_mask_says_so_and_names_the_alternative():
    def fn(x, m):
        return x[m]

    with pytest.raises(NotImplementedError, match=r"where\(mask, x, 0\).*masked_fill"):
        symbp.trace(fn, np.zeros((4, 3)), np.zeros((4, 3), bool))
    with pytest.raises(NotImplementedError, match=r"masked_select.*where"):
        symbp.trace(lambda x, m: symbp.masked_select(x, m), np.zeros((4, 3)), np.ones((4, 3), bool))


def test_traced_shapes_keep_the_batch_symbol_where_pytorch_would():
    B = symbp.B
    assert symbp.trace(lambda x: x[:, 2:5], (4, 10)).outputs[0].shape == (B, 3)
    assert symbp.trace(lambda x: x[1:], (4, 10)).outputs[0].shape == (B - 1, 10)
    assert symbp.trace(lambda x: x[0], (4, 10)).outputs[0].shape == (10,)
    assert symbp.trace(lambda x: x[..., None, 1], (4, 10)).outputs[0].shape == (B, 1)
    assert symbp.trace(lambda x: x[:, [1, 1, 0]], (4, 10)).outputs[0].shape == (B, 3)
    with pytest.raises(NotImplementedError, match="symbolic size B"):
        symbp.trace(lambda x: x[3], (4, 10))
    with pytest.raises(NotImplementedError, match="symbolic size B"):
        symbp.trace(lambda x: x[:2], (4, 10))


# ---------------------------------------------------------------- compiled

G = symbp.tensor(np.array([[0, 0, 1], [3, 1, 3], [2, 2, 0]]))
IX = symbp.tensor(np.array([2, 0, 2, -1]))


def _setitem_case(x, w):
    h = x * 1
    h[1:, ::2] = w[:2, :2] * 3
    return h


def _scatter_case(x, w):
    return (x * 0).scatter_add(1, G, w[:, :3]) + x.index_add(0, symbp.tensor([2, 2]), w[:2])


CASES = {
    "slice": (lambda x, w: x[1:, ::2] * w[1:, ::2], (3, 4), (3, 4), None),
    "int": (lambda x, w: x[1] * w[-1, None], (3, 4), (3, 4), None),
    "none ellipsis": (lambda x, w: x[None, ..., 1:3] + w[:, None, 2], (3, 4), (3, 4), None),
    "take": (lambda x, w: x[IX, 1:] * w[0, 1:], (3, 4), (3, 4), None),
    "arrays apart": (lambda x, w: x[IX[:3], :, IX[1:]] * w, (3, 4, 3), (3, 4), None),
    "gather": (lambda x, w: (x * w).gather(1, G), (3, 4), (3, 4), None),
    "scatter": (_scatter_case, (3, 4), (3, 4), None),
    "setitem": (_setitem_case, (3, 4), (3, 4), None),
    "bool mask": (lambda x, w: x[symbp.tensor(np.array([1, 0, 1], bool))] * w[0], (3, 4),
                  (3, 4), None),
    "embedding": (lambda x, w: x[symbp.tensor([[0, 2], [2, 1]])] * w[0], (3, 4), (3, 4), None),
    "take flat": (lambda x, w: x.take(symbp.tensor([[11, 0], [5, 5]])) * w[:2, :2], (3, 4),
                  (3, 4), None),
}  # fmt: skip


def _make_xw(rng, xs, ws, lo_hi):
    return rng.uniform(-1.5, 1.5, xs), rng.uniform(-1.5, 1.5, ws)


@pytest.fixture(scope="module")
def results(tmp_cache):
    return kernel_results(CASES, 5, _make_xw)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.slow
def test_compiled_indexing_matches_eager(name, dtype, results):
    assert_kernel_matches(results, name, dtype)


class _Picker(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        return self.fc(x)


def _picked_loss(out, y):
    return -(out.log_softmax(1).gather(1, y[:, None])).mean() + out[:, 1:3].sum() * 0.01


@pytest.mark.slow
def test_compiled_gather_by_data_labels_trains_and_refuses_out_of_range_labels(float64):
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(8, 3)), rng.integers(0, 4, 8)
    net = _Picker()
    tnet = torch.nn.Linear(3, 4).double()
    with torch.no_grad():
        tnet.weight.copy_(torch.tensor(net.fc.weight.numpy()))
        tnet.bias.copy_(torch.tensor(net.fc.bias.numpy()))
    model = symbp.compile(net, _picked_loss, symbp.optim.SGD(net.parameters(), lr=0.1))
    topt = torch.optim.SGD(tnet.parameters(), lr=0.1)
    for _ in range(3):
        model.step(x, y)
        topt.zero_grad()
        out = tnet(torch.tensor(x))
        loss = -(out.log_softmax(1).gather(1, torch.tensor(y)[:, None])).mean()
        (loss + out[:, 1:3].sum() * 0.01).backward()
        topt.step()
    np.testing.assert_allclose(net.fc.weight.numpy(), tnet.weight.detach().numpy(), rtol=1e-10)
    before = net.fc.weight.numpy().copy()
    bad = y.copy()
    bad[5] = 4
    with pytest.raises(IndexError, match="gather: index 4 is out of bounds for dimension 1"):
        model.step(x, bad)
    np.testing.assert_array_equal(net.fc.weight.numpy(), before)  # nothing was updated


# ---------------------------------------------------------------- formulas


def test_formulas_print_indexing_in_python_notation_and_evaluate_to_the_gradients():
    w = nn.Parameter(np.random.default_rng(7).normal(size=(3, 6)))
    x = symbp.tensor(np.arange(12.0).reshape(2, 6) / 5)
    y = symbp.tensor([1, 0])

    def loss_fn():
        h = x[:, 2:5] * w[0, 2:5]
        return h.gather(1, y[:, None]).sum() + (x @ w.T)[:, [0, 2]].sum() + w[1:, ::2].sum()

    loss = loss_fn()
    f = symbp.formulas(loss, params={"w": w})
    text = str(f)
    assert "x[:, 2:5]" in text and "[i, y[i]]" in text and "w[1:, ::2]" in text
    assert "scatter_add(" in text and "place(" in text  # the adjoints, by name
    loss.backward()
    printed = f.evaluate()[f.grad("w").lhs].reshape(w.shape)
    np.testing.assert_allclose(printed, w.grad.numpy(), rtol=1e-13, atol=1e-15)


def test_gradcheck_reads_indexing_as_linear():
    def fn(t):
        h = t * 1
        h[0, :2] = t[1, 1:3] ** 2  # a setitem in the graph: its Piecewise picks by position
        picked = h[IX[:3], 1:].gather(1, symbp.tensor([[0], [2], [2]]))
        return (picked**2).sum() + h[1:, ::2].exp().sum() + h.scatter_add(1, G, t[:, :3]).sum()

    report = symbp.check_grads(fn, np.random.default_rng(8).normal(size=(3, 4)))
    assert report.ok
