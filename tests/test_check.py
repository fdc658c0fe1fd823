"""symbp.gradcheck: symbolic gradients against float64 central differences.

Each test has an oracle of its own, independent of symbp: hand-written NumPy forward passes
and backprop, central differences from ``conftest.numeric_grad``, or the kink crossings
worked out by hand.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
import sympy
from conftest import T222, X222, Net222, backprop_222, half_sse, numeric_grad

import symbp
from symbp import nn
from symbp.check import GradcheckError, GradcheckWarning, check_grads, gradcheck

# A deliberately wrong custom op: x² whose "derivative" is 3x. Registered once per session.
badsq = symbp.elementwise("badsq", lambda x: x**2, derivative=lambda x: 3 * x)
# ReLU with its own backward, as the tutorials write it: an opaque function whose kink
# shows only in its derivative (the Heaviside).
myrelu = symbp.elementwise(
    "check_relu", lambda x: sympy.Max(x, 0), derivative=lambda x: sympy.Heaviside(x, 0)
)
leaky = symbp.elementwise("check_leaky", lambda x: sympy.Piecewise((x, x > 0), (x / 10, True)))


def sig(z):
    return 1 / (1 + np.exp(-z))


@contextlib.contextmanager
def no_gradcheck_warnings():
    """Fail on any GradcheckWarning inside the block."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradcheckWarning)
        yield


class MLP(nn.Module):
    """fc1 -> act -> fc2, with the activation a plain function."""

    def __init__(self, sizes=(3, 4, 2), act=symbp.tanh, extra=False):
        super().__init__()
        self.fc1 = nn.Linear(sizes[0], sizes[1], dtype=np.float64)
        self.fc2 = nn.Linear(sizes[1], sizes[2], dtype=np.float64)
        if extra:  # a layer forward() never uses
            self.unused = nn.Linear(2, 2, dtype=np.float64)
        self.act = act

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def params(net):
    return {n: p.data.numpy().astype(np.float64) for n, p in net.named_parameters()}


# ---------------------------------------------------------------- smooth models pass


def test_smooth_mlp_passes_and_matches_independent_gradients(rng):
    symbp.manual_seed(0)
    net = MLP((3, 5, 2), act=symbp.sigmoid)
    x, t = rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    report = gradcheck(net, nn.MSELoss(), x, t)

    assert report.ok
    assert report.max_rel_error < 1e-6
    assert [r.name for r in report.rows] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    for r in report.rows:
        assert (r.checked, r.skipped, r.verdict) == (r.size, 0, "ok")
        assert r.direction_error < 1e-6

    # Oracle: the model written in NumPy, differentiated by hand and by central differences.
    p = params(net)

    def loss(W1, b1, W2, b2):
        h = sig(x @ W1.T + b1)
        return np.mean((h @ W2.T + b2 - t) ** 2)

    h = sig(x @ p["fc1.weight"].T + p["fc1.bias"])
    o = h @ p["fc2.weight"].T + p["fc2.bias"]
    d2 = 2 * (o - t) / o.size
    d1 = (d2 @ p["fc2.weight"]) * h * (1 - h)
    by_hand = {"fc1.weight": d1.T @ x, "fc1.bias": d1.sum(0), "fc2.weight": d2.T @ h}
    by_hand["fc2.bias"] = d2.sum(0)
    names = list(p)
    for k, name in enumerate(names):

        def f(a, k=k):
            return loss(*[a if j == k else p[n] for j, n in enumerate(names)])

        np.testing.assert_allclose(report[name].symbolic, by_hand[name], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(report[name].numeric, numeric_grad(f, p[name]), atol=1e-9)


def test_tutorial_222_network():
    net = Net222()  # float32 parameters, as the tutorial: the check runs in float64 anyway
    report = gradcheck(net, half_sse, X222, T222)
    loss, grads = backprop_222()
    assert report.ok
    assert report.loss == pytest.approx(0.298371, abs=1e-6)
    assert report.loss == pytest.approx(loss, rel=1e-7)  # float32 weights, float64 arithmetic
    for name, g in grads.items():
        np.testing.assert_allclose(report[name].symbolic, g, rtol=1e-6)


def test_cross_entropy_mlp(rng):
    symbp.manual_seed(1)
    net = MLP((4, 6, 3))
    x, y = rng.standard_normal((8, 4)), rng.integers(0, 3, 8)
    report = gradcheck(net, nn.CrossEntropyLoss(), x, y)
    assert report.ok and report.max_rel_error < 1e-6

    p = params(net)

    def loss(W1, b1, W2, b2):
        z = np.tanh(x @ W1.T + b1) @ W2.T + b2
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        return -logp[np.arange(len(y)), y].mean()

    names = list(p)
    for k, name in enumerate(names):

        def f(a, k=k):
            return loss(*[a if j == k else p[n] for j, n in enumerate(names)])

        np.testing.assert_allclose(report[name].symbolic, numeric_grad(f, p[name]), atol=1e-9)


def test_softmax_shift_is_no_kink(rng):
    """Cross-entropy subtracts a detached max: tied logits are no kink of the loss."""
    net = MLP((4, 6, 3))
    net.fc2.weight.data = np.zeros((3, 6))
    net.fc2.bias.data = np.zeros(3)  # every logit 0: the max is a three-way tie
    x, y = rng.standard_normal((5, 4)), rng.integers(0, 3, 5)
    with no_gradcheck_warnings():
        report = gradcheck(net, nn.CrossEntropyLoss(), x, y)
    assert report.ok and all(r.skipped == 0 for r in report.rows)


# ---------------------------------------------------------------- wrong gradients are caught


def test_wrong_derivative_caught_with_worst_index():
    w = np.array([0.5, -2.0, 1.0])
    report = gradcheck(None, lambda w: badsq(w).sum(), w)
    assert not report.ok
    (row,) = report.failed
    assert row.name == "w" and row.kind == "input"
    assert row.worst_index == (1,)  # the error |3w - 2w| = |w| is largest at w = -2
    assert row.max_abs_error == pytest.approx(2.0, rel=1e-6)
    np.testing.assert_allclose(row.numeric, 2 * w, rtol=1e-8)  # the true derivative
    np.testing.assert_allclose(row.symbolic, 3 * w)  # the wrong rule, faithfully applied
    assert "FAIL" in str(report)
    with pytest.raises(GradcheckError, match="gradient check failed for w"):
        report.raise_if_failed()
    with pytest.raises(GradcheckError):
        check_grads(lambda w: badsq(w).sum(), w)


def test_wrong_derivative_in_a_network_names_the_right_parameters(rng):
    symbp.manual_seed(2)
    net = MLP((3, 4, 1), act=badsq)
    x, t = rng.standard_normal((5, 3)), rng.standard_normal((5, 1))
    report = gradcheck(net, half_sse, x, t)
    # Upstream of badsq the gradient is wrong; downstream it only reads badsq's forward value.
    assert {r.name for r in report.failed} == {"fc1.weight", "fc1.bias"}

    # Oracle: the true and the wrong backprop by hand; the worst entry is the one furthest
    # out of the documented tolerance rtol·|true| + atol·max|g|.
    p = params(net)
    z = x @ p["fc1.weight"].T + p["fc1.bias"]
    d2 = z**2 @ p["fc2.weight"].T + p["fc2.bias"] - t
    dh = d2 @ p["fc2.weight"]
    true_dz, wrong_dz = dh * 2 * z, dh * 3 * z
    for name, true, wrong in [
        ("fc1.bias", true_dz.sum(0), wrong_dz.sum(0)),
        ("fc1.weight", true_dz.T @ x, wrong_dz.T @ x),
    ]:
        row = report[name]
        np.testing.assert_allclose(row.symbolic, wrong, rtol=1e-12)
        np.testing.assert_allclose(row.numeric, true, rtol=1e-7)
        scale = max(np.abs(wrong).max(), np.abs(true).max())
        ratio = np.abs(wrong - true) / (1e-5 * np.abs(true) + 1e-7 * scale)
        assert row.worst_index == np.unravel_index(np.argmax(ratio), true.shape)


def test_random_direction_catches_what_the_subset_skips(rng):
    net = MLP((3, 4, 1), act=badsq)
    x, t = rng.standard_normal((5, 3)), rng.standard_normal((5, 1))
    report = gradcheck(net, half_sse, x, t, max_entries=0)
    assert all(r.checked == 0 for r in report.rows)
    assert {r.name for r in report.failed} == {"fc1.weight", "fc1.bias"}
    assert report["fc1.weight"].direction_error > 0.1
    assert report["fc2.weight"].direction_error < 1e-6


# ---------------------------------------------------------------- kinks


def _relu_net():
    net = MLP((3, 4, 1), act=symbp.relu)
    net.fc1.weight.data = np.array(
        [[0.5, -0.3, 0.8], [0.2, 0.7, -0.4], [-0.6, 0.1, 0.3], [0.9, -0.5, 0.2]]
    )
    net.fc1.bias.data = np.array([0.1, -0.2, 0.3, -0.1])
    net.fc2.weight.data = np.array([[0.7, -1.1, 0.4, 0.9]])
    net.fc2.bias.data = np.array([0.05])
    return net


def _crossings(W, b, x, eps=1e-6):
    """Hand oracle: which entries of W, b flip the sign of some pre-activation under ±h."""
    z = x @ W.T + b
    out = {"fc1.weight": set(), "fc1.bias": set()}
    for name, a in [("fc1.weight", W), ("fc1.bias", b)]:
        for i in np.ndindex(a.shape):
            h = eps * max(1.0, abs(a[i]))
            for s in (h, -h):
                dz = np.zeros_like(z)
                if name == "fc1.bias":
                    dz[:, i[0]] = s
                else:
                    dz[:, i[0]] = s * x[:, i[1]]
                if np.any(np.sign(z + dz) != np.sign(z)):
                    out[name].add(i)
    return out


def test_relu_within_eps_of_kink_is_skipped_not_failed():
    net = _relu_net()
    x = np.array([[1.0, 2.0, -1.0], [0.5, -0.4, 0.9], [-1.5, 0.3, 0.6]])
    t = np.array([[0.3], [-0.2], [0.8]])
    W, b = net.fc1.weight.data.numpy(), net.fc1.bias.data.numpy().copy()
    b[1] = 3e-7 - (x[1] @ W[1])  # row 1's pre-activation of unit 1 is 3e-7: within eps of 0
    net.fc1.bias.data = b
    assert abs((x @ W.T + b)[1, 1] - 3e-7) < 1e-15

    report = gradcheck(net, half_sse, x, t)
    assert report.ok
    expected = _crossings(W, b, x)
    assert expected["fc1.bias"] == {(1,)} and expected["fc1.weight"]  # the setup is what we think
    for name in ("fc1.weight", "fc1.bias"):
        row = report[name]
        assert set(row.skipped_indices) == expected[name]
        assert row.checked + row.skipped == row.size
        assert all(np.isnan(row.numeric[i]) for i in row.skipped_indices)
    assert report["fc2.weight"].skipped == 0
    assert "fc1.bias': skipped (1,)" in str(report)

    # Skipping was necessary: the plain central difference of b[1] straddles the kink.
    def loss_b(bb):
        h = np.maximum(x @ W.T + bb, 0)
        return 0.5 * np.sum((h @ net.fc2.weight.numpy().T + net.fc2.bias.numpy() - t) ** 2)

    naive = numeric_grad(loss_b, b)
    assert abs(naive[1] - report["fc1.bias"].symbolic[1]) > 1e-2


def test_exactly_on_a_kink_warns_and_follows_pytorch():
    net = _relu_net()
    b = net.fc1.bias.data.numpy().copy()
    b[1] = 0.0
    net.fc1.bias.data = b
    x = np.array([[0.0, 0.0, 0.0], [0.5, -0.4, 0.9]])  # row 0: unit 1's pre-activation is 0
    t = np.array([[0.3], [-0.2]])
    with pytest.warns(GradcheckWarning, match=r"exactly on a kink of relu.*1 element"):
        report = gradcheck(net, half_sse, x, t)
    assert report.ok
    assert report["fc1.bias"].skipped_indices == ((1,),)
    assert report["fc1.weight"].skipped == 0  # x = 0 there: weights do not move that input
    assert "exactly on a kink" in str(report)
    # relu'(0) = 0: row 0 contributes nothing to unit 1's bias gradient (PyTorch's rule).
    W, W2, b2 = net.fc1.weight.numpy(), net.fc2.weight.numpy(), net.fc2.bias.numpy()
    z = x @ W.T + b
    d = ((np.maximum(z, 0) @ W2.T + b2 - t) @ W2) * (z > 0)
    np.testing.assert_allclose(report["fc1.bias"].symbolic, d.sum(0), rtol=1e-12)


@pytest.mark.parametrize("act", [myrelu, leaky, symbp.abs], ids=["custom-relu", "piecewise", "abs"])
def test_kinks_found_in_custom_and_piecewise_ops(act):
    w = np.array([2e-7, -0.5, 0.7, -3e-7])  # entries 0 and 3 are within eps of the kink at 0
    with no_gradcheck_warnings():  # near the kinks, not on them
        report = gradcheck(None, lambda w: (act(w) * np.array([1.0, 2.0, 3.0, 4.0])).sum(), w)
    assert report.ok
    assert report["w"].skipped_indices == ((0,), (3,))


def test_max_over_everything_with_ties():
    w = np.array([1.0, 3.0, 3.0, 3.0, 2.0])  # a three-way tie: ±h gives slope 1 or 0, not 1/3
    with pytest.warns(GradcheckWarning, match=r"kink of max: 1 tie"):
        report = gradcheck(None, lambda w: w.max() * 2, w)
    row = report["w"]
    assert report.ok
    assert row.skipped_indices == ((1,), (2,), (3,))
    np.testing.assert_allclose(row.symbolic, [0, 2 / 3, 2 / 3, 2 / 3, 0])  # PyTorch shares ties
    np.testing.assert_array_equal(row.numeric[[0, 4]], [0.0, 0.0])


def test_max_pooling_routes_to_the_max(rng):
    def pool(w):  # max-pooling of windows of 3, then a weighted sum
        return (w.reshape(4, 3).max(1).values * np.array([1.0, -2.0, 0.5, 3.0])).sum()

    w = rng.permutation(12).astype(float) / 4  # distinct values: no ties
    report = gradcheck(None, pool, w)
    expected = np.zeros(12)
    for k, c in enumerate([1.0, -2.0, 0.5, 3.0]):
        expected[3 * k + np.argmax(w[3 * k : 3 * k + 3])] = c
    assert report.ok and report["w"].skipped == 0
    np.testing.assert_allclose(report["w"].symbolic, expected)
    np.testing.assert_allclose(report["w"].numeric, expected, atol=1e-9)

    w[3:6] = [1.5, 1.5, 0.25]  # a tie for the maximum of window 1
    with pytest.warns(GradcheckWarning, match="max over dim 1: 1 tie"):
        report = gradcheck(None, pool, w)
    assert report.ok and report["w"].skipped_indices == ((3,), (4,))


# ---------------------------------------------------------------- bad input, odd models


def test_nan_input_names_it():
    net = MLP()
    x = np.ones((2, 3))
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"input 'x \(inputs\[0\]\)' has nan at index \(1, 2\)"):
        gradcheck(net, nn.MSELoss(), x, np.zeros((2, 2)))
    t = np.zeros((2, 2))
    t[0, 1] = np.inf
    with pytest.raises(ValueError, match=r"input 't \(inputs\[1\]\)' has inf at index \(0, 1\)"):
        gradcheck(net, nn.MSELoss(), np.ones((2, 3)), t)


def test_inf_parameter_names_it():
    net = MLP()
    w = net.fc2.weight.data.numpy().copy()
    w[1, 3] = -np.inf
    net.fc2.weight.data = w
    with pytest.raises(ValueError, match=r"parameter 'fc2.weight' has inf at index \(1, 3\)"):
        gradcheck(net, nn.MSELoss(), np.ones((2, 3)), np.zeros((2, 2)))


def test_unreached_parameter_is_reported_not_failed():
    net = MLP(extra=True)
    with pytest.warns(GradcheckWarning) as caught:
        report = gradcheck(net, nn.MSELoss(), np.ones((2, 3)), np.zeros((2, 2)))
    assert sorted(str(w.message) for w in caught) == [
        f"gradcheck: parameter 'unused.{p}' is not reached by the loss: its gradient is zero"
        for p in ("bias", "weight")
    ]
    assert report.ok
    row = report["unused.weight"]
    assert not row.reached and row.verdict == "not reached by the loss"
    np.testing.assert_array_equal(row.symbolic, np.zeros((2, 2)))
    line = next(s for s in str(report).splitlines() if s.startswith("unused.weight"))
    assert line.endswith("not reached by the loss")


def test_non_scalar_loss_is_a_clear_error():
    with pytest.raises(ValueError, match=r"the loss must be a scalar, got shape \[2,2\]"):
        gradcheck(MLP(), lambda out, t: (out - t) ** 2, np.ones((2, 3)), np.zeros((2, 2)))
    with pytest.raises(TypeError, match="loss_fn must return a scalar Tensor"):
        gradcheck(MLP(), lambda out, t: 1.0, np.ones((2, 3)), np.zeros((2, 2)))


def test_model_is_left_unchanged():
    symbp.manual_seed(3)
    net = MLP()
    net.float()  # float32 parameters; the check itself runs in float64
    before = {n: p.numpy() for n, p in net.named_parameters()}
    snapshot = {n: a.copy() for n, a in before.items()}
    report = gradcheck(net, nn.MSELoss(), np.ones((2, 3), np.float32), np.zeros((2, 2), np.float32))
    assert report.ok
    for n, p in net.named_parameters():
        assert p.numpy() is before[n] and p.data.dtype == np.float32 and p.grad is None
        np.testing.assert_array_equal(p.data, snapshot[n])
    assert symbp.get_default_dtype() == np.float32


def test_function_form_checks_inputs_and_closed_over_parameters(rng):
    w = symbp.nn.Parameter(rng.standard_normal((3, 2)))
    x = rng.standard_normal((4, 3))

    def f(x):
        return symbp.tanh(x @ w).sum()

    report = gradcheck(None, f, x)
    assert report.ok
    assert {(r.name, r.kind) for r in report.rows} == {(w.name, "parameter"), ("x", "input")}
    sech2 = 1 - np.tanh(x @ w.data) ** 2
    np.testing.assert_allclose(report["x"].symbolic, sech2 @ w.numpy().T, rtol=1e-12)
    np.testing.assert_allclose(report[w.name].symbolic, x.T @ sech2, rtol=1e-12)
    assert check_grads(f, x).ok


def test_tutorial_linear_regression_gradients_of_w_b_and_x():
    """x = [1, 2, 3], w = 2, b = 1, y = [6, 9, 12], mean squared error: by hand,
    dL/dw = 2/3 Σ (wx + b - y) x = -52/3, dL/db = -8, dL/dx = 2/3 (wx + b - y) w."""
    w, b = symbp.nn.Parameter(2.0), symbp.nn.Parameter(1.0)
    x, y = np.array([1.0, 2.0, 3.0]), np.array([6.0, 9.0, 12.0])
    report = gradcheck(None, lambda x, y: ((w * x + b - y) ** 2).mean(), x, y)
    assert report.ok
    assert [r.name for r in report.rows] == [w.name, b.name, "x", "y"]  # as the loss reads them
    assert report[w.name].symbolic == pytest.approx(-52 / 3)
    assert report[b.name].symbolic == pytest.approx(-8.0)
    np.testing.assert_allclose(report["x"].symbolic, [-4.0, -16 / 3, -20 / 3])
    assert w.data.dtype == np.float32  # the parameters were only borrowed


def test_nothing_to_check_is_an_error():
    with pytest.raises(ValueError, match="nothing to check"):
        gradcheck(nn.Sequential(nn.ReLU()), nn.MSELoss(), np.ones(3), np.zeros(3))


def test_max_entries_checks_a_seeded_subset():
    net = MLP((50, 40, 1))
    x, t = np.ones((2, 50)), np.zeros((2, 1))
    a = gradcheck(net, nn.MSELoss(), x, t, max_entries=7, seed=5)
    b = gradcheck(net, nn.MSELoss(), x, t, max_entries=7, seed=5)
    row = a["fc1.weight"]
    assert a.ok and row.checked == 7 and row.size == 2000
    assert row.direction_error is not None and row.direction_error < 1e-6
    np.testing.assert_array_equal(np.isnan(row.numeric), np.isnan(b["fc1.weight"].numeric))
    assert a["fc2.bias"].checked == 1  # smaller than max_entries: checked whole


def test_report_table_has_a_row_per_parameter():
    net = Net222()
    report = gradcheck(net, half_sse, X222, T222)
    text = str(report)
    lines = text.splitlines()
    assert lines[0].startswith("gradcheck passed: loss 0.298371")
    assert "max abs err" in lines[1] and "worst at" in lines[1]
    for name, p in net.named_parameters():
        (line,) = [s for s in lines if s.split()[0] == name]
        assert f"{p.data.numpy().size}/{p.data.numpy().size}" in line and line.endswith("ok")
    assert repr(report).startswith("<GradcheckReport ok")


def test_tolerance_arguments_are_validated():
    with pytest.raises(ValueError, match="eps > 0"):
        gradcheck(None, lambda x: x.sum(), np.ones(2), eps=0)
    with pytest.raises(ValueError, match="max_entries"):
        gradcheck(None, lambda x: x.sum(), np.ones(2), max_entries=-1)


def test_what_a_leaf_moves_is_found_by_the_irs_walks():
    """gradcheck recomputes only what depends on the perturbed leaf (and watches the kinks
    its gradient reaches): the nodes whose sources lead back to it, through differentiable
    ops for the gradient. Checked against the definition, and check.py walks no graph of its
    own (the tensor graph's walk is tensor.graph_tensors, the IR's ir.consumers)."""
    import ast
    import inspect

    from symbp import check
    from symbp.compiler.ir import consumers, toposort
    from symbp.compiler.ops import OPS

    x, w = symbp.tensor(np.ones((2, 3))), symbp.tensor(np.ones((3,)), requires_grad=True)
    h = symbp.relu(x * w)
    loss = (h.detach() * h + symbp.argmax(h, 1).double().sum()).sum()
    order = toposort([loss.node])
    users = consumers(order)

    def depends(n, through_grad):
        if n is w.node:
            return True
        if through_grad and not OPS[n.op].differentiable:
            return False
        return any(depends(s, through_grad) for s in n.src)

    found = {}
    for grad_only in (False, True):
        found[grad_only] = check._downstream(users, w.node, grad_only)
        assert found[grad_only] == {n for n in order if depends(n, grad_only)}
    assert found[True] < found[False]  # argmax: moved by the leaf, no gradient through it
    tree = ast.parse(inspect.getsource(check))
    assert not [a for a in ast.walk(tree) if isinstance(a, ast.Attribute) and a.attr == "_parents"]
