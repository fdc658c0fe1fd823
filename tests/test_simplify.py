"""The derived backward program is simplified on purpose: textbook δs that reuse σ, CSE,
constant folding, stable forms, and one trace for every batch size."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.special
import sympy
from conftest import T222, X222, backprop_222, half_sse

import symbp
from symbp import nn
from symbp.compiler.ir import toposort
from symbp.compiler.ops import xsym
from symbp.compiler.reference import evaluate
from symbp.compiler.scalar import sigmoid, softplus
from symbp.compiler.simplify import simplify


def derive_222(net222):
    net, x, t = net222(np.float64)
    loss = half_sse(net(x), t)
    derived = symbp.derive(loss.node, [p.node for p in net.parameters()])
    return net, x, t, derived


def backward_ew(derived):
    """The elementwise nodes the backward pass adds (those the forward loss does not have)."""
    forward = set(toposort([derived.outputs[0]]))
    return [n for n in toposort(derived.grads) if n.op == "ew" and n not in forward]


def test_sigmoid_output_delta_is_textbook_and_has_no_exp(net222):
    net, x, t, derived = derive_222(net222)
    for n in toposort(derived.outputs):
        if n.op == "ew":
            assert not n.arg.expr.has(sympy.exp), f"{n.arg} recomputes σ through exp"
    deltas = backward_ew(derived)
    assert len(deltas) == 2  # exactly one ew node per δ: δ2 and δ1
    # δ1 reads δ2 through a matmul (δ2 W2); δ2 reads only forward nodes
    d1 = next(n for n in deltas if any(s.op == "matmul" and s.src[0] in deltas for s in n.src))
    d2 = next(n for n in deltas if n is not d1)

    # δ2 = (o - t) ⊙ o ⊙ (1 - o) with o = σ(z2), z2 = h W2ᵀ + b2. Its sources are h W2ᵀ
    # (a matmul), the broadcast bias and the target: rename them z - b, b and t.
    z, b, tt = sympy.symbols("z b t", real=True)
    kinds = {s.op: xsym(i) for i, s in enumerate(d2.src)}
    assert set(kinds) == {"matmul", "reshape", "input"}
    got = d2.arg.expr.xreplace({kinds["matmul"]: z - b, kinds["reshape"]: b, kinds["input"]: tt})
    o = sigmoid(z)
    assert sympy.expand(got - (o - tt) * o * (1 - o)) == 0

    # δ1 = (δ2 W2) ⊙ h ⊙ (1 - h): h is the forward node itself, reused (not recomputed)
    back, h = d1.src
    assert back.op == "matmul" and back.src[0] is d2
    assert h in set(toposort([derived.outputs[0]])) and h.op == "ew"  # a forward node
    assert sympy.expand(d1.arg.expr - xsym(0) * xsym(1) * (1 - xsym(1))) == 0

    # and the program computes the hand-written backprop
    env = {p.node: p.numpy() for p in net.parameters()}
    values = evaluate(derived.outputs, {**env, x.node: X222, t.node: T222})
    ref_loss, ref_grads = backprop_222()
    assert values[0] == pytest.approx(ref_loss, rel=1e-14)
    for (name, _), g in zip(net.named_parameters(), values[1:]):
        np.testing.assert_allclose(g, ref_grads[name], rtol=1e-13)


def test_cse_same_subgraph_built_twice_is_one_node():
    x = symbp.placeholder("x", (symbp.B, 3))
    w = symbp.placeholder("w", (3, 2))
    a = symbp.sigmoid(x @ w)
    b = symbp.sigmoid(x @ w)
    assert a.node is b.node
    program = toposort([(a + b).node])
    assert [n.op for n in program].count("matmul") == 1
    # in a derived program forward and backward share nodes: the gradient of w reads x and
    # the forward σ(x w) through the very same nodes the loss uses
    derived = symbp.derive((a * b).sum().node, [w.node])
    forward = set(toposort([derived.outputs[0]]))
    backward = set(toposort(derived.grads))
    assert sum(n.op == "matmul" for n in forward) == 1
    assert any(n.op == "matmul" for n in forward & backward)


def test_constant_folding_leaves_no_node():
    x = symbp.placeholder("x", (symbp.B, 3))
    assert (x * 1).node is x.node
    assert (x + 0).node is x.node
    assert (1 * x - 0).node is x.node
    assert (x / 1).node is x.node
    assert (x**1).node is x.node
    # a chain of elementwise ops is one node after simplify, its constants folded
    (y,) = simplify([(x * 2 * 3 + 1 - 1).node])
    assert y.op == "ew" and y.src == (x.node,)  # one node, not four
    assert y.arg.expr == 6 * xsym(0)
    assert (x - x).node.op == "const" and (x * 0).node.op == "const"
    # nothing in a derived program is an identity formula or pure-constant arithmetic
    derived = symbp.derive((symbp.tanh(x * 1 + 0) * 1).sum().node, [x.node])
    for n in toposort(derived.outputs):
        if n.op == "ew":
            assert n.arg.expr != xsym(0) and n.arg.expr.free_symbols - {symbp.B}
            assert all(s.op != "const" for s in n.src)


def test_log_sigmoid_becomes_minus_softplus():
    x = symbp.placeholder("x", (symbp.B,), np.float64)
    derived = symbp.derive(symbp.log(symbp.sigmoid(x)).sum().node, [x.node])
    exprs = [n.arg.expr for n in toposort(derived.outputs) if n.op == "ew"]
    assert any(e.has(softplus) for e in exprs)
    assert not any(e.has(sympy.log) for e in exprs)
    xs = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0])
    loss, g = evaluate(derived.outputs, {x.node: xs})
    # log σ(x) = -softplus(-x): -1000 at -1000, 0 at 1000; d/dx = σ(-x)
    assert np.isfinite(loss)
    ref = -np.logaddexp(0, -xs)
    assert loss == pytest.approx(ref.sum(), rel=1e-15)
    np.testing.assert_allclose(g, scipy.special.expit(-xs), rtol=1e-15)


def test_log_sigmoid_gradient_is_finite_where_the_naive_chain_is_not():
    # Eager values run op by op (log σ(-1000) = log 0, as in PyTorch), but backward derives
    # and simplifies the whole chain: d log σ(x)/dx = σ(-x) = 1, where σ'/σ would be 0/0.
    x = symbp.tensor([-1000.0, 1000.0], dtype=np.float64, requires_grad=True)
    symbp.log(symbp.sigmoid(x)).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 0.0])
    x.grad = None
    symbp.log(1 - symbp.sigmoid(x)).sum().backward()  # = -softplus(x)
    np.testing.assert_array_equal(x.grad, [0.0, -1.0])
    x1 = symbp.placeholder("x", (2,), np.float64)
    derived = symbp.derive(symbp.log(1 - symbp.sigmoid(x1)).sum().node, [x1.node])
    loss, _ = evaluate(derived.outputs, {x1.node: np.array([-1000.0, 1000.0])})
    assert loss == -1000.0


@pytest.mark.parametrize("big", [1000.0, -1000.0])
def test_losses_on_logits_are_stable(big):
    logits = symbp.tensor([[big, 0.0, -big]], dtype=np.float64, requires_grad=True)
    loss = nn.CrossEntropyLoss()(logits, symbp.tensor([1]))
    assert loss.item() == pytest.approx(abs(big), rel=1e-15)  # -log softmax: finite
    loss.backward()
    assert np.all(np.isfinite(logits.grad))
    z = symbp.tensor([big, -big], dtype=np.float64, requires_grad=True)
    bce = nn.BCEWithLogitsLoss(reduction="sum")(z, symbp.tensor([0.0, 1.0], dtype=np.float64))
    assert bce.item() == pytest.approx(2 * abs(big) if big > 0 else 0.0, abs=1e-12)
    bce.backward()
    np.testing.assert_allclose(z.grad, [1.0, -1.0] if big > 0 else [0.0, 0.0], atol=1e-300)


def test_symbolic_batch_one_trace_every_batch_size(net222):
    net, _, _ = net222(np.float64)
    traced = symbp.trace(lambda x, t: half_sse(net(x), t), X222, T222)
    x, t = traced.inputs["x"], traced.inputs["y"]
    assert x.shape[0] == symbp.B and t.shape[0] == symbp.B
    params = list(traced.params.values())
    derived = symbp.derive(traced.outputs[0], [p.node for p in params])
    rng = np.random.default_rng(0)
    for batch in (3, 7):
        xs, ts = rng.uniform(0, 1, (batch, 2)), rng.uniform(0, 1, (batch, 2))
        env = {x: xs, t: ts, **{p.node: p.numpy() for p in params}}
        loss, *grads = evaluate(derived.outputs, env)
        # eager, on this batch: the same numbers (and the hand-written backprop)
        net.zero_grad()
        eager = half_sse(net(symbp.tensor(xs)), symbp.tensor(ts))
        eager.backward()
        ref_loss, ref = backprop_222(x=xs, t=ts)
        assert loss == pytest.approx(eager.item(), rel=1e-14)
        assert loss == pytest.approx(ref_loss, rel=1e-13)
        for p, g in zip(params, grads):
            np.testing.assert_allclose(g, p.grad, rtol=1e-14)
            np.testing.assert_allclose(g, ref[p.name], rtol=1e-12)


def test_mean_over_symbolic_batch_divides_by_the_batch():
    x = symbp.placeholder("x", (symbp.B, 2), np.float64)
    derived = symbp.derive((x**2).mean().node, [x.node])
    for batch in (2, 5):
        xs = np.arange(batch * 2, dtype=np.float64).reshape(batch, 2)
        loss, g = evaluate(derived.outputs, {x.node: xs})
        assert loss == pytest.approx(np.mean(xs**2), rel=1e-15)
        np.testing.assert_allclose(g, 2 * xs / xs.size, rtol=1e-15)


def test_deriving_a_large_mlp_is_fast():
    # symbolic work scales with graph nodes, not parameters
    model = nn.Sequential(
        nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
    )
    start = time.perf_counter()
    traced = symbp.trace(
        lambda x, y: nn.CrossEntropyLoss()(model(x), y),
        np.zeros((32, 784), np.float32),
        np.zeros(32, np.int64),
    )
    derived = symbp.derive(traced.outputs[0], [p.node for p in model.parameters()])
    elapsed = time.perf_counter() - start
    assert len(derived.grads) == 6
    assert elapsed < 1.0, f"trace + derive took {elapsed:.2f} s"


def test_placed_cotangents_that_tile_an_axis_are_concatenated():
    """The adjoint of an LSTM's four gate slices, a sum of four cotangents each placed into
    zeros, is lowered as their concatenation: no zero fill, no sum; the same values (NumPy);
    a sum whose placements overlap or leave a gap stays a sum."""
    from symbp.compiler import ops
    from symbp.compiler.ir import Node
    from symbp.compiler.ops import SliceArg

    rng = np.random.default_rng(0)
    parts = [Node("input", (), f"gate{k}", (3, 4), np.dtype(np.float64)) for k in range(4)]
    values = {p: rng.standard_normal((3, 4)) for p in parts}

    def placed(p: Node, start: int) -> Node:
        return ops.slice_grad(p, (SliceArg(0, 3, 1), SliceArg(start, 4, 1)), (3, 16))

    order = [2, 0, 3, 1]  # summed in any order
    total = ops.ew(sum(xsym(i) for i in range(4)), [placed(parts[k], 4 * k) for k in order])
    from symbp.compiler.simplify import lowered

    assert simplify([total])[0].op == "ew"  # what the formulas print: the placements' sum
    (new,) = lowered([total])
    assert new.op == "cat" and new.src == tuple(parts) and new.arg == 1
    want = np.concatenate([values[p] for p in parts], axis=1)
    np.testing.assert_array_equal(evaluate([new], values)[0], want)
    np.testing.assert_array_equal(evaluate([total], values)[0], want)
    gap = ops.ew(xsym(0) + xsym(1), [placed(parts[0], 0), placed(parts[1], 8)])
    overlap = ops.ew(xsym(0) + xsym(1), [placed(parts[0], 0), placed(parts[1], 2)])
    for kept in (gap, overlap):
        (same,) = lowered([kept])
        assert same.op == "ew"
