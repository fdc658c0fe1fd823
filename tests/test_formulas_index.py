"""symbp.formulas writes the structural ops in index notation where a textbook does (issue 12):
a batched product Z[b,i,j] = Σ_k A[b,i,k]·B[b,k,j], a cumsum Σ_{j′≤j}, a cumprod Π_{j′≤j}, a
roll's wrapped index (j−2) mod 5, a constant pad's cases.

The strings are the output format, so they are asserted exactly. Independently, each printed
formula is transcribed by hand into a plain NumPy loop and compared with what symbp computes
(the loss, or backward()'s gradient) in float64: a check that the printed formula is the
computed one.
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import sympy

import symbp
import symbp.nn.functional as F
from symbp import nn
from symbp.formulas import LatexPrinter, TextPrinter
from symbp.formulas.linalg import Tril, Triu
from symbp.formulas.vocabulary import Dot, Permute


def equations(f) -> dict[str, str]:
    """lhs -> rhs of every printed equation, the column alignment collapsed."""
    out = {}
    for line in str(f).split("\nwhere")[0].splitlines():
        if " = " in line:
            lhs, rhs = re.sub(r" +", " ", line.strip()).split(" = ", 1)
            out[lhs] = rhs
    return out


def entries(*sizes: int):
    return itertools.product(*(range(n) for n in sizes))


def data(rng, *shapes):
    return [symbp.tensor(rng.normal(size=s)) for s in shapes]


def test_the_textbook_batched_product_and_its_transpose():
    A, Bm = sympy.Symbol("A", real=True), sympy.Symbol("B", real=True)
    shapes = {A: (2, 3, 4), Bm: (2, 4, 5)}
    assert TextPrinter({"shapes": shapes}).indexed(Dot(A, Bm)) == (
        "[b,i,j]",
        "Σ_{k} A[b,i,k]·B[b,k,j]",
    )
    assert LatexPrinter({"shapes": shapes}).indexed(Dot(A, Bm)) == (
        "[b,i,j]",
        r"\sum_{k} A[b,i,k] \cdot B[b,k,j]",
    )
    # Aᵀ of the last two axes is A read at swapped indices: Σ_k A[b,k,i]·A[b,k,j]
    gram = Dot(Permute(A, sympy.Tuple(0, 2, 1)), A)
    assert TextPrinter({"shapes": shapes}).indexed(gram)[1] == "Σ_{k} A[b,k,i]·A[b,k,j]"


def test_bmm_prints_its_sum_over_k_and_the_printed_loops_are_its_values():
    rng = np.random.default_rng(0)
    x, t = data(rng, (2, 3, 4), (2, 3, 5))
    w = nn.Parameter(rng.normal(size=(2, 4, 5)))
    loss = (symbp.bmm(x, w) * t).sum()
    f = symbp.formulas(loss, params={"w": w})
    eqs = equations(f)
    assert eqs["E"] == "Σ_{b,i,j} t[b,i,j]·Σ_{k} x[b,i,k]·w[b,k,j]"
    assert eqs["∂E/∂w[b,i,j]"] == "Σ_{k} x[b,k,i]·t[b,k,j]"
    assert r"\frac{\partial E}{\partial w[b,i,j]} &= \sum_{k} x[b,k,i] \cdot t[b,k,j]" in f.latex()

    X, W, T = x.numpy(), w.numpy(), t.numpy()
    E = sum(
        T[b, i, j] * sum(X[b, i, k] * W[b, k, j] for k in range(4)) for b, i, j in entries(2, 3, 5)
    )
    assert abs(E - loss.item()) < 1e-12
    loss.backward()
    G = np.zeros((2, 4, 5))
    for b, i, j in entries(2, 4, 5):
        G[b, i, j] = sum(X[b, k, i] * T[b, k, j] for k in range(3))
    np.testing.assert_allclose(G, w.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_cumsum_prints_as_a_running_sum_and_its_adjoint_runs_backwards():
    rng = np.random.default_rng(1)
    x, t = data(rng, (2, 4), (2, 4))
    w = nn.Parameter(rng.normal(size=(2, 4)))
    loss = ((w * x).cumsum(1) * t).sum()
    f = symbp.formulas(loss, params={"w": w})
    eqs = equations(f)
    assert eqs["E"] == "Σ_{i,j} t[i,j]·Σ_{j′≤j} w[i,j′]·x[i,j′]"
    assert eqs["∂E/∂w[i,j]"] == "x[i,j]·Σ_{j′≥j} t[i,j′]"
    latex = f.latex()
    assert r"E &= \sum_{i,j} t[i,j] \cdot \sum_{j' \leq j} w[i,j'] \cdot x[i,j']" in latex
    assert r"&= x[i,j] \cdot \sum_{j' \geq j} t[i,j']" in latex

    X, W, T = x.numpy(), w.numpy(), t.numpy()
    E = sum(T[i, j] * sum(W[i, k] * X[i, k] for k in range(j + 1)) for i, j in entries(2, 4))
    assert abs(E - loss.item()) < 1e-12
    loss.backward()
    G = np.zeros((2, 4))
    for i, j in entries(2, 4):
        G[i, j] = X[i, j] * sum(T[i, k] for k in range(j, 4))
    np.testing.assert_allclose(G, w.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_cumsum_along_the_first_axis():
    rng = np.random.default_rng(2)
    (x,) = data(rng, (3, 2))
    w = nn.Parameter(rng.normal(size=(3, 2)))
    loss = (w.cumsum(0) * x).sum()
    eqs = equations(symbp.formulas(loss, params={"w": w}))
    assert eqs["E"] == "Σ_{i,j} x[i,j]·Σ_{i′≤i} w[i′,j]"
    assert eqs["∂E/∂w[i,j]"] == "Σ_{i′≥i} x[i′,j]"
    X = x.numpy()
    loss.backward()
    G = np.array([[sum(X[k, j] for k in range(i, 3)) for j in range(2)] for i in range(3)])
    np.testing.assert_allclose(G, w.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_cumprod_prints_as_a_running_product():
    rng = np.random.default_rng(3)
    (x,) = data(rng, (2, 4))
    w = nn.Parameter(rng.normal(size=(2, 4)))
    loss = (w.cumprod(1) * x).sum()
    f = symbp.formulas(loss, params={"w": w})
    assert equations(f)["E"] == "Σ_{i,j} x[i,j]·Π_{j′≤j} w[i,j′]"
    assert r"E &= \sum_{i,j} x[i,j] \cdot \prod_{j' \leq j} w[i,j']" in f.latex()
    # its adjoint without a division (exact where w has zeros): a sum of running products
    assert equations(f)["∂E/∂w[i,j]"] == "Σ_{j′≥j} x[i,j′]·Π_{j′′≤j′,j′′≠j} w[i,j′′]"
    assert r"\prod_{j'' \leq j', j'' \neq j} w[i,j'']" in f.latex()
    X, W = x.numpy(), w.numpy()
    E = sum(X[i, j] * np.prod([W[i, k] for k in range(j + 1)]) for i, j in entries(2, 4))
    assert abs(E - loss.item()) < 1e-12
    loss.backward()
    G = np.zeros((2, 4))
    for i, j in entries(2, 4):
        G[i, j] = sum(
            X[i, k] * np.prod([W[i, m] for m in range(k + 1) if m != j]) for k in range(j, 4)
        )
    np.testing.assert_allclose(G, w.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_roll_reads_its_argument_at_wrapped_indices():
    rng = np.random.default_rng(4)
    (x,) = data(rng, (2, 5))
    w = nn.Parameter(rng.normal(size=(2, 5)))
    loss = (w.roll(2, 1) * x).sum()
    f = symbp.formulas(loss, params={"w": w})
    eqs = equations(f)
    assert eqs["E"] == "Σ_{i,j} w[i,(j−2) mod 5]·x[i,j]"
    assert eqs["∂E/∂w[i,j]"] == "x[i,(j−3) mod 5]"  # the roll back: by 5 − 2
    assert r"&= x[i,\left(j-3\right) \bmod 5]" in f.latex()
    X, W = x.numpy(), w.numpy()
    E = sum(W[i, (j - 2) % 5] * X[i, j] for i, j in entries(2, 5))
    assert abs(E - loss.item()) < 1e-12
    loss.backward()
    G = np.array([[X[i, (j - 3) % 5] for j in range(5)] for i in range(2)])
    np.testing.assert_allclose(G, w.grad.numpy(), rtol=0, atol=0)


def test_roll_along_two_axes():
    rng = np.random.default_rng(5)
    (x,) = data(rng, (3, 4))
    w = nn.Parameter(rng.normal(size=(3, 4)))
    loss = (w.roll((1, 3), (0, 1)) * x).sum()
    eqs = equations(symbp.formulas(loss, params={"w": w}))
    assert eqs["∂E/∂w[i,j]"] == "x[(i−2) mod 3,(j−1) mod 4]"
    X = x.numpy()
    loss.backward()
    G = np.array([[X[(i - 2) % 3, (j - 1) % 4] for j in range(4)] for i in range(3)])
    np.testing.assert_allclose(G, w.grad.numpy(), rtol=0, atol=0)


def test_a_constant_pad_prints_as_cases():
    rng = np.random.default_rng(6)
    (x,) = data(rng, (2, 7))
    w = nn.Parameter(rng.normal(size=(2, 4)))
    loss = (F.pad(w, (2, 1), value=0.5) * x).sum()
    f = symbp.formulas(loss, params={"w": w})
    assert equations(f)["E"] == "Σ_{i,j} {w[i,j−2] if 2 ≤ j < 6; 1/2 otherwise}·x[i,j]"
    assert (
        r"\begin{cases}w[i,j-2] & 2 \leq j < 6 \\ \frac{1}{2} & \text{otherwise}\end{cases}"
        in f.latex()
    )
    X, W = x.numpy(), w.numpy()
    E = sum((W[i, j - 2] if 2 <= j < 6 else 0.5) * X[i, j] for i, j in entries(2, 7))
    assert abs(E - loss.item()) < 1e-12


def test_a_pad_on_one_side_of_each_axis():
    rng = np.random.default_rng(7)
    (x,) = data(rng, (4, 5))
    w = nn.Parameter(rng.normal(size=(2, 4)))
    loss = (F.pad(w, (1, 0, 0, 2)) * x).sum()  # dim 1 by (1, 0), dim 0 by (0, 2)
    eqs = equations(symbp.formulas(loss, params={"w": w}))
    assert eqs["E"] == "Σ_{i,j} {w[i,j−1] if i < 2, j ≥ 1; 0 otherwise}·x[i,j]"
    X, W = x.numpy(), w.numpy()
    E = sum((W[i, j - 1] if i < 2 and j >= 1 else 0.0) * X[i, j] for i, j in entries(4, 5))
    assert abs(E - loss.item()) < 1e-12


def test_a_reflect_pad_and_ops_without_an_index_form_keep_their_names():
    # index notation only where every op of the equation has one: a reflect pad or a cat
    # print by name, and the equation stays at the tensor level
    rng = np.random.default_rng(8)
    (x,) = data(rng, (2, 6))
    w = nn.Parameter(rng.normal(size=(2, 4)))
    loss = (F.pad(w, (1, 1), "reflect") * x).sum()
    eqs = equations(symbp.formulas(loss, params={"w": w}))
    assert eqs["E"].startswith("Σ (pad(w)")
    loss = (symbp.cat([w.cumsum(1), w], 1) * symbp.tensor(rng.normal(size=(2, 8)))).sum()
    assert "cumsum(w)" in equations(symbp.formulas(loss, params={"w": w}))["E"]


def test_a_triangle_in_index_notation_is_its_mask():
    a = sympy.Symbol("a", real=True)
    p = TextPrinter({"shapes": {a: (3, 4)}})
    assert p.indexed(Tril(a, sympy.Integer(-1))) == ("[i,j]", "{a[i,j] if j ≤ i−1; 0 otherwise}")
    assert p.indexed(Triu(a, sympy.Integer(1)))[1] == "{a[i′,j′] if j′ ≥ i′+1; 0 otherwise}"
    A = np.random.default_rng(10).normal(size=(3, 4))
    lower = np.array([[A[i, j] if j <= i - 1 else 0.0 for j in range(4)] for i in range(3)])
    upper = np.array([[A[i, j] if j >= i + 1 else 0.0 for j in range(4)] for i in range(3)])
    np.testing.assert_array_equal(lower, symbp.tril(symbp.tensor(A), -1).numpy())  # the op's
    np.testing.assert_array_equal(upper, symbp.triu(symbp.tensor(A), 1).numpy())


def test_a_gather_reads_its_index_array_at_the_row_it_picks_for():
    # torch.gather's own positions print as their letters, and the labels beside them at
    # those letters: w[i, y[i]], the textbook's E[b, labels[b]]
    rng = np.random.default_rng(9)
    w = nn.Parameter(rng.normal(size=(3, 4)))
    y = symbp.tensor([2, 0, 3])
    loss = (w.gather(1, y[:, None]) ** 2).sum()
    eqs = equations(symbp.formulas(loss, params={"w": w}))
    assert eqs["E"] == "Σ w[i, y[i]]²"
    assert eqs["∂E/∂w"] == "scatter_add(2·w[i, y[i]] at [i, y[i]])"
    W, Y = w.numpy(), y.numpy()
    assert abs(sum(W[i, Y[i]] ** 2 for i in range(3)) - loss.item()) < 1e-12
    loss.backward()
    G = np.zeros((3, 4))
    for i in range(3):
        G[i, Y[i]] += 2 * W[i, Y[i]]
    np.testing.assert_allclose(G, w.grad.numpy(), rtol=1e-12, atol=1e-15)
