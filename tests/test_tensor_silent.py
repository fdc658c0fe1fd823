"""Tensor Python protocol: where PyTorch gives a meaning symbp does not have yet, a clear error.

Python's fallbacks would answer silently and wrongly: ``a == b`` by object identity, ``p -= g`` by
rebinding the name (now an update in place, as PyTorch's: tests/test_nograd.py), ``bool(x)`` as
``len(x) != 0``, ``x[:, labels]`` as one entry per row.
Each test states PyTorch's behaviour (asserted on torch itself) and checks symbp either matches
it exactly or refuses with an error that names the form.
"""

from __future__ import annotations

import operator

import numpy as np
import pytest

import symbp
from symbp import nn

torch = pytest.importorskip("torch")

LABELS = [2, 0, 4, 1]


def pair(a, requires_grad=False):
    """The same float64 values as a symbp and a torch tensor."""
    a = np.asarray(a, dtype=np.float64)
    return (
        symbp.tensor(a, dtype=np.float64, requires_grad=requires_grad),
        torch.tensor(a, requires_grad=requires_grad),
    )


# ---------------------------------------------------------------- comparisons


COMPARISONS = [
    ("==", operator.eq),
    ("!=", operator.ne),
    ("<", operator.lt),
    ("<=", operator.le),
    (">", operator.gt),
    (">=", operator.ge),
]


@pytest.mark.parametrize("name,op", COMPARISONS, ids=[c[0] for c in COMPARISONS])
@pytest.mark.parametrize("other", ["tensor", "scalar", "array"])
def test_comparisons_are_elementwise_as_pytorch(name, op, other):
    x, tx = pair([1.0, 2.0, 3.0])
    y, ty = pair([1.0, 0.0, 3.0])
    theirs = {"tensor": ty, "scalar": 2.0, "array": torch.tensor([1.0, 0.0, 3.0])}[other]
    mine = {"tensor": y, "scalar": 2.0, "array": np.array([1.0, 0.0, 3.0])}[other]
    got, want = op(x, mine), op(tx, theirs)
    assert isinstance(want, torch.Tensor) and want.dtype == torch.bool  # an elementwise answer
    assert got.dtype == symbp.bool and not got.requires_grad
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    # reflected: a Python number or a NumPy array on the left (torch's answer for an array on
    # the left is NumPy's, so its reference is the tensor's)
    their_left = {"tensor": ty, "scalar": 2.0, "array": ty}[other]
    got, want = op(mine, x), op(their_left, tx)
    np.testing.assert_array_equal(np.asarray(got.numpy()), np.asarray(want))
    assert (x == None) is (tx == None) is False  # noqa: E711 (PyTorch's one object comparison)
    assert (x != None) is (tx != None) is True  # noqa: E711


def test_tensors_still_hash_by_identity():
    x, tx = pair([1.0, 2.0])
    y, ty = pair([1.0, 2.0])  # equal values, other objects
    assert len({x, y}) == len({tx, ty}) == 2
    assert {x: "x", y: "y"}[y] == "y"
    assert x in [x] and x in {x}  # identity first, as for torch tensors
    # list membership compares values: a two-entry answer is ambiguous, in both
    with pytest.raises(RuntimeError, match="more than one value is ambiguous"):
        tx in [ty]
    with pytest.raises(RuntimeError, match="more than one value is ambiguous"):
        x in [y]
    one, tone = pair([3.0])
    other, tother = pair([3.0])
    assert (one in [other]) is (tone in [tother]) is True  # one entry: its truth value
    with pytest.raises(RuntimeError, match="more than one value is ambiguous"):
        bool(tx > 0)
    with pytest.raises(RuntimeError, match="more than one value is ambiguous"):
        bool(x > 0)


def test_contains_is_elementwise_as_pytorch():
    x, tx = pair([1.0, 2.0])
    for v in (2.0, 5.0, 1):
        assert (v in x) is (v in tx)
    with pytest.raises(RuntimeError, match="only supports Tensor or scalar"):
        "a" in tx
    with pytest.raises(RuntimeError, match="only supports Tensor or scalar"):
        "a" in x


# ---------------------------------------------------------------- in place


IN_PLACE = ["+=", "-=", "*=", "/=", "**="]


def _apply_in_place(op, x, y):
    if op == "+=":
        x += y
    elif op == "-=":
        x -= y
    elif op == "*=":
        x *= y
    elif op == "/=":
        x /= y
    else:
        x **= y
    return x


@pytest.mark.parametrize("op", IN_PLACE)
def test_in_place_operators_update_in_place_as_pytorch(op):
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    x, tx = pair(a)
    y, ty = pair(a / 4)
    alias, talias = x, tx
    _apply_in_place(op, tx, ty)
    _apply_in_place(op, x, y)
    assert not np.array_equal(talias.numpy(), a)  # torch changed the one tensor both names hold
    assert alias is x and talias is tx
    np.testing.assert_allclose(alias.numpy(), talias.numpy(), rtol=1e-15, atol=0)


def test_matmul_in_place_rebinds_as_in_pytorch():  # a guard: PyTorch has no in-place @ either
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    x, tx = pair(a)
    y, ty = pair(a / 4)
    alias, talias = x, tx
    tx @= ty  # PyTorch has no in-place matmul: Python rebinds tx = tx @ ty
    x @= y
    assert talias is not tx and alias is not x
    np.testing.assert_array_equal(alias.numpy(), talias.numpy())
    np.testing.assert_array_equal(x.numpy(), tx.numpy())


def test_manual_sgd_over_parameters_as_pytorch(float64):
    rng = np.random.default_rng(0)
    xs, ys = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    symbp.manual_seed(0)
    net = nn.Linear(3, 2)
    tnet = torch.nn.Linear(3, 2).double()
    with torch.no_grad():
        tnet.weight.copy_(torch.tensor(net.weight.numpy()))
        tnet.bias.copy_(torch.tensor(net.bias.numpy()))
    lr = 0.1

    before = net.weight.numpy().copy()
    ((net(symbp.tensor(xs)) - symbp.tensor(ys)) ** 2).mean().backward()
    ((tnet(torch.tensor(xs)) - torch.tensor(ys)) ** 2).mean().backward()
    for p, tp in zip(net.parameters(), tnet.parameters()):
        with pytest.raises(RuntimeError, match="leaf Variable that requires grad") as theirs:
            tp -= lr * tp.grad  # outside no_grad: PyTorch refuses
        with pytest.raises(RuntimeError) as mine:
            p -= lr * p.grad  # the silent no-op of old
        assert str(mine.value).startswith(str(theirs.value))
    np.testing.assert_array_equal(net.weight.numpy(), before)  # nothing half-done

    for form in ("no_grad", "data"):  # both loops, against PyTorch's no_grad loop
        for _ in range(3):
            net.zero_grad()
            tnet.zero_grad()
            ((net(symbp.tensor(xs)) - symbp.tensor(ys)) ** 2).mean().backward()
            ((tnet(torch.tensor(xs)) - torch.tensor(ys)) ** 2).mean().backward()
            if form == "data":
                for p in net.parameters():
                    p.data -= lr * p.grad
            else:
                with symbp.no_grad():
                    for p in net.parameters():
                        p -= lr * p.grad
            with torch.no_grad():
                for tp in tnet.parameters():
                    tp -= lr * tp.grad
        np.testing.assert_allclose(net.weight.numpy(), tnet.weight.detach().numpy(), rtol=1e-13)
        np.testing.assert_allclose(net.bias.numpy(), tnet.bias.detach().numpy(), rtol=1e-13)


def test_item_assignment_as_pytorch():
    x, tx = pair([1.0, 2.0, 3.0])
    tx[0] = 5.0
    x[0] = 5.0
    assert x.tolist() == tx.tolist() == [5.0, 2.0, 3.0]
    tp = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    p = nn.Parameter(np.zeros(3))
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        tp[0] = 1.0
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        p[0] = 1.0
    with torch.no_grad():
        tp[1:] = 2.0
    with symbp.no_grad():
        p[1:] = 2.0
    assert p.tolist() == tp.tolist() == [0.0, 2.0, 2.0]


# ---------------------------------------------------------------- truth, length, iteration


@pytest.mark.parametrize("values", [[1.0, 2.0], [], [[0.0, 1.0]]], ids=["two", "empty", "row"])
def test_bool_of_several_or_no_values_raises_as_pytorch(values):
    x, tx = pair(values)
    with pytest.raises(RuntimeError) as theirs:
        bool(tx)
    with pytest.raises(RuntimeError) as mine:
        bool(x)
    assert str(mine.value) == str(theirs.value)  # "Boolean value of Tensor with ... ambiguous"


@pytest.mark.parametrize("values", [0.0, 2.5, [0.0], [[-1.0]]])
def test_bool_of_one_value_is_its_truth_as_pytorch(values):
    x, tx = pair(values)
    assert bool(x) is bool(tx)
    assert (not x) is (not tx)


def test_bool_of_a_traced_tensor_says_control_flow_cannot_depend_on_it():
    def f(x):
        if x.sum():
            return x
        return -x

    with pytest.raises(RuntimeError, match=r"bool\(\) of a traced \[\] tensor.*control flow"):
        symbp.trace(f, (4, 3))


def test_len_as_pytorch():
    x, tx = pair(np.zeros((3, 2)))
    assert len(x) == len(tx) == 3
    s, ts = pair(1.0)
    with pytest.raises(TypeError) as theirs:
        len(ts)
    with pytest.raises(TypeError) as mine:
        len(s)
    assert str(mine.value) == str(theirs.value)  # "len() of a 0-d tensor"
    traced = symbp.placeholder("x", (symbp.B, 3))
    with pytest.raises(TypeError, match=r"len\(\) of a traced \[B,3\] tensor.*x\.shape\[0\]"):
        len(traced)


def test_iteration_yields_rows_as_pytorch():
    x, tx = pair([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    for it in (list, tuple, lambda t: [*t]):
        assert [r.tolist() for r in it(x)] == [r.tolist() for r in it(tx)] == [[1, 2], [3, 4]]
    a, b = x
    ta, tb = tx
    (a * 2 + b * b).sum().backward()
    (ta * 2 + tb * tb).sum().backward()
    np.testing.assert_array_equal(x.grad, tx.grad.numpy())
    with pytest.raises(TypeError, match=r"len\(\) of a traced"):
        list(symbp.placeholder("x", (symbp.B, 3)))
    s, ts = pair(1.0)
    with pytest.raises(TypeError) as theirs:
        list(ts)
    with pytest.raises(TypeError) as mine:
        list(s)
    assert str(mine.value) == str(theirs.value)  # "iteration over a 0-d tensor"


def test_an_optimizer_given_one_parameter_says_so_as_pytorch():
    with pytest.raises(TypeError, match="iterable of Tensors or dicts"):
        torch.optim.SGD(torch.nn.Parameter(torch.zeros(3)), lr=0.1)
    with pytest.raises(TypeError, match=r"SGD: params should be an iterable.*pass \[p\]"):
        symbp.optim.SGD(nn.Parameter(np.zeros(3)), lr=0.1)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # torch's
@pytest.mark.parametrize("values", [2.5, [1.0, 2.0], [[1.0], [2.0]]])
def test_numpy_asarray_gives_the_values_as_pytorch(values):
    x, tx = pair(values)
    got, want = np.asarray(x), np.asarray(tx)
    assert got.dtype == want.dtype == np.float64 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    assert np.asarray(x, dtype=np.float32).dtype == np.float32
    assert np.shares_memory(np.asarray(x), x.numpy()) == np.shares_memory(want, tx.numpy())
    assert np.shares_memory(np.array(x), x.numpy()) == np.shares_memory(np.array(tx), tx.numpy())
    g, tg = pair(values, requires_grad=True)
    with pytest.raises(RuntimeError, match="Can't call numpy"):
        np.asarray(tg)
    with pytest.raises(RuntimeError, match=r"Can't call numpy\(\) on Tensor that requires grad"):
        np.asarray(g)


def test_numpy_on_the_left_keeps_the_graph():  # a guard: __array__ must not detach the graph
    x, _ = pair([1.0, 2.0], requires_grad=True)
    for out in (np.array([2.0, 3.0]) * x, np.float64(2.0) * x, x * np.float64(2.0)):
        assert isinstance(out, symbp.Tensor) and out.requires_grad


# ---------------------------------------------------------------- indexing


X = np.arange(20.0).reshape(4, 5) / 7


def _x():
    return pair(X)


# Each index form PyTorch defines: symbp gives PyTorch's values and shape (issue 12; these
# forms used to raise, naming the form).
INDEX_FORMS = {
    "integer": 1,
    "negative integer": -1,
    "slice": slice(1, 3),
    "slice with step": slice(None, None, 2),
    "None": None,
    "Ellipsis": Ellipsis,
    "columns by labels": (slice(None), LABELS),
    "columns by label array": (slice(None), np.array(LABELS)),
    "rows not in order": ([3, 2, 1, 0], LABELS),
    "a subset of rows": ([0, 1], [2, 0]),
    "row subset by range": (range(2), [2, 0]),
    "scalar label": (range(4), 1),
    "label matrix": (range(4), [[2], [0], [4], [1]]),
    "broadcast label": (range(4), [1]),
    "bool mask of rows": np.array([True, False, True, False]),
    "bool mask of entries": X > 1,
    "bool rows with labels": ([True, False, True, True], [2, 0, 4]),
    "integer pair": (0, 1),
    "row then slice": (0, slice(None)),
    "ellipsis then integer": (Ellipsis, 0),
    "None then slice": (None, slice(None)),
    "integer list alone": [0, 2],
    "range alone": range(2),
    "float tensor labels": (range(4), "float labels"),
    "bool array rows with labels": (np.array([True, False, True, True]), [2, 0, 4]),
    "index tensor then slice": ("row tensor", slice(None)),
    "ragged list": [[0, 1], [2]],  # PyTorch reads it as x[[0, 1], [2]] (deprecated)
}
# Forms PyTorch refuses too: symbp's error must still name the form, not leak from NumPy.
PYTORCH_ERRORS = {
    "too many indices": (0, 1, 2),
    "ragged labels": ([0, 1], [[1], [2, 3]]),
    "a string": "a",
    "a float": 1.5,
}


def _keys(key):
    """(symbp's key, torch's key): the strings above stand for tensors made by each library."""
    if not isinstance(key, tuple) or not any(isinstance(k, str) for k in key):
        return key, key
    made = {
        "float labels": (symbp.tensor([2.0, 0.0, 4.0, 1.0]), torch.tensor([2.0, 0.0, 4.0, 1.0])),
        "row tensor": (symbp.tensor([0, 1, 2, 3]), torch.arange(4)),
    }
    return tuple(tuple(made[k][i] if isinstance(k, str) else k for k in key) for i in (0, 1))


@pytest.mark.filterwarnings("ignore:Using a non-tuple sequence:UserWarning")  # torch, ragged
@pytest.mark.parametrize("key", list(INDEX_FORMS.values()), ids=list(INDEX_FORMS))
def test_index_forms_give_pytorchs_values_and_gradient(key):
    x, tx = pair(X, requires_grad=True)
    key, tkey = _keys(key)
    if isinstance(key, tuple) and isinstance(key[-1], symbp.Tensor) and key[-1].dtype.kind == "f":
        with pytest.raises(IndexError, match="tensors used as indices must be long"):
            tx[tkey]  # float labels
        with pytest.raises(IndexError, match=r"x\[.*\] on a \[4,5\] tensor: tensors used as"):
            x[key]
        return
    got, want = x[key], tx[tkey]
    assert tuple(got.shape) == tuple(want.shape)
    np.testing.assert_array_equal(got.numpy(), want.detach().numpy())
    w = np.random.default_rng(0).normal(size=tuple(want.shape))
    (got * symbp.tensor(w)).sum().backward()
    (want * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-15)


@pytest.mark.filterwarnings("ignore:Using a non-tuple sequence:UserWarning")  # torch, "a"
@pytest.mark.parametrize("key", list(PYTORCH_ERRORS.values()), ids=list(PYTORCH_ERRORS))
def test_index_forms_pytorch_refuses_raise_naming_the_form(key):
    x, tx = _x()
    with pytest.raises((IndexError, TypeError, ValueError)):
        tx[key]
    with pytest.raises((IndexError, TypeError, ValueError), match=r"x\[.*\] on a \[4,5\] tensor"):
        x[key]


def test_columns_by_labels_select_columns_as_pytorch():
    x, tx = _x()
    assert tuple(x[:, LABELS].shape) == tuple(tx[:, LABELS].shape) == (4, 4)  # whole columns
    np.testing.assert_array_equal(x[:, LABELS].numpy(), tx[:, LABELS].numpy())
    np.testing.assert_array_equal(x[::2].numpy(), tx[::2].numpy())
    np.testing.assert_array_equal(x[X > 1].numpy(), tx[torch.tensor(X > 1)].numpy())


@pytest.mark.parametrize(
    "rows", [range(4), list(range(4)), np.arange(4)], ids=["range", "list", "array"]
)
@pytest.mark.parametrize(
    "labels",
    [LABELS, np.array(LABELS), [-3, 0, -1, 1]],
    ids=["list", "array", "negative"],
)
def test_pick_by_labels_matches_pytorch_values_and_gradient(rows, labels):
    x, tx = pair(X, requires_grad=True)
    got, want = x[rows, labels], tx[rows, labels]
    np.testing.assert_array_equal(got.numpy(), want.detach().numpy())
    w = np.array([1.0, -2.0, 0.5, 3.0])
    (got * symbp.tensor(w)).sum().backward()
    (want * torch.tensor(w)).sum().backward()
    np.testing.assert_array_equal(x.grad, tx.grad.numpy())


def test_pick_with_tensor_rows_and_labels_matches_pytorch():
    x, tx = pair(X)
    got = x[symbp.tensor(np.arange(4)), symbp.tensor(LABELS)]
    want = tx[torch.arange(4), torch.tensor(LABELS)]
    np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_pick_out_of_range_raises_as_pytorch():
    x, tx = _x()
    for bad in ([2, 0, 5, 1], [2, 0, -6, 1]):
        with pytest.raises(IndexError, match="out of bounds for dimension 1 with size 5"):
            tx[range(4), bad]
        with pytest.raises(
            IndexError, match=r"index -?[56] is out of bounds for dimension 1 with size 5"
        ):
            x[range(4), bad]


def test_pick_beside_inf_reads_only_the_picked_entries_as_pytorch():
    a = X.copy()
    a[1, 3] = -np.inf  # a masked logit, not picked
    for bad in (-np.inf, np.nan):
        a[1, 3] = bad
        x, tx = pair(a)
        want = tx[range(4), LABELS].numpy()
        assert np.isfinite(want).all()  # PyTorch reads only picked entries; so does the gather
        np.testing.assert_array_equal(x[range(4), LABELS].numpy(), want)


def test_losses_pick_as_before():
    x, tx = pair(X, requires_grad=True)
    for mine, theirs in [
        (nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()),
        (nn.NLLLoss(), torch.nn.NLLLoss()),
    ]:
        x.grad, tx.grad = None, None
        got = mine(x, symbp.tensor(LABELS))
        want = theirs(tx, torch.tensor(LABELS))
        np.testing.assert_allclose(got.item(), want.item(), rtol=1e-14)
        got.backward()
        want.backward()
        np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-13, atol=1e-16)


def test_the_errors_name_the_layer_they_happen_in():
    class Gate(nn.Module):
        def __init__(self, form):
            super().__init__()
            self.form = form

        def forward(self, x):
            return self.form(x)

    class Net(nn.Module):
        def __init__(self, form):
            super().__init__()
            self.gate = Gate(form)

        def forward(self, x):
            return self.gate(x)

    x = symbp.tensor(np.zeros((2, 3)))
    for form in (lambda x: x[:, [0, 7]], lambda x: x & x, lambda x: x[range(2), [0, 7]]):
        with pytest.raises((NotImplementedError, IndexError), match=r"\(in Gate 'gate'\)$"):
            Net(form)(x)
