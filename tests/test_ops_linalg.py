"""Linear algebra (issue 12, linalg family): every function against NumPy and PyTorch (values,
shapes, gradients, broadcasting of batch axes, 1-D cases), einsum strings against np.einsum
and torch.einsum, errors naming the op and the shapes, compiled kernels against eager, and a
small causal self-attention trained compiled, eager and in PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_kernel_matches, kernel_results, numeric_grads

import symbp
from symbp import nn
from symbp.compiler.ir import ShapeError, toposort

torch = pytest.importorskip("torch")


def _check(fn, tfn, arrays, rng, ref=None, rtol=1e-12):
    """fn on symbp tensors against tfn on torch tensors (and ref on arrays): values, shapes,
    gradients (also against float64 central differences)."""
    ts = [symbp.tensor(a, requires_grad=True) for a in arrays]
    tt = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, tout = fn(*ts), tfn(*tt)
    assert tuple(out.shape) == tuple(tout.shape)
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=rtol, atol=1e-12)
    if ref is not None:
        np.testing.assert_allclose(out.numpy(), ref(*arrays), rtol=rtol, atol=1e-12)
    w = rng.normal(size=tuple(tout.shape))
    (out * symbp.tensor(w)).sum().backward()
    (tout * torch.tensor(w)).sum().backward()
    for t, r in zip(ts, tt):
        np.testing.assert_allclose(t.grad, r.grad.numpy(), rtol=1e-10, atol=1e-12)
    fd = numeric_grads(
        lambda *a: float(np.sum(tfn(*(torch.tensor(x) for x in a)).numpy() * w)), arrays
    )
    for t, g in zip(ts, fd):
        np.testing.assert_allclose(t.grad, g, rtol=1e-6, atol=1e-8)
    return out


# name -> (symbp function, torch function, shapes)
FUNCTIONS = {
    "matmul-dot": (lambda a, b: a @ b, lambda a, b: a @ b, [(4,), (4,)]),
    "matmul-vec-mat": (lambda a, b: a @ b, lambda a, b: a @ b, [(4,), (4, 3)]),
    "matmul-mat-vec": (lambda a, b: a @ b, lambda a, b: a @ b, [(3, 4), (4,)]),
    "matmul-2d": (symbp.matmul, torch.matmul, [(3, 4), (4, 2)]),
    "matmul-3d-2d": (lambda a, b: a @ b, lambda a, b: a @ b, [(2, 3, 4), (4, 5)]),
    "matmul-2d-3d": (lambda a, b: a @ b, lambda a, b: a @ b, [(3, 4), (2, 4, 5)]),
    "matmul-vec-4d": (lambda a, b: a @ b, lambda a, b: a @ b, [(4,), (2, 3, 4, 5)]),
    "matmul-4d-vec": (lambda a, b: a @ b, lambda a, b: a @ b, [(2, 3, 5, 4), (4,)]),
    "matmul-attention": (
        lambda q, k: q @ k.transpose(-2, -1),
        lambda q, k: q @ k.transpose(-2, -1),
        [(2, 3, 5, 4), (2, 3, 5, 4)],
    ),
    "matmul-broadcast": (lambda a, b: a @ b, lambda a, b: a @ b, [(2, 1, 3, 4), (1, 3, 4, 2)]),
    "matmul-broadcast-rank": (lambda a, b: a @ b, lambda a, b: a @ b, [(3, 1, 2, 4), (5, 4, 3)]),
    "mm": (symbp.mm, torch.mm, [(3, 4), (4, 2)]),
    "Tensor.mm": (lambda a, b: a.mm(b), lambda a, b: a.mm(b), [(3, 4), (4, 2)]),
    "bmm": (symbp.bmm, torch.bmm, [(2, 3, 4), (2, 4, 5)]),
    "mv": (symbp.mv, torch.mv, [(3, 4), (4,)]),
    "dot": (symbp.dot, torch.dot, [(5,), (5,)]),
    "outer": (symbp.outer, torch.outer, [(3,), (4,)]),
    "ger": (lambda a, b: a.ger(b), lambda a, b: torch.outer(a, b), [(3,), (4,)]),
    "inner": (symbp.inner, torch.inner, [(2, 3, 4), (5, 4)]),
    "inner-1d": (symbp.inner, torch.inner, [(4,), (4,)]),
    "addmm": (
        lambda i, a, b: symbp.addmm(i, a, b, beta=0.5, alpha=2.0),
        lambda i, a, b: torch.addmm(i, a, b, beta=0.5, alpha=2.0),
        [(4,), (3, 5), (5, 4)],
    ),
    "addmv": (
        lambda i, a, v: i.addmv(a, v, beta=-1.0, alpha=0.25),
        lambda i, a, v: i.addmv(a, v, beta=-1.0, alpha=0.25),
        [(3,), (3, 5), (5,)],
    ),
    "baddbmm": (
        lambda i, a, b: symbp.baddbmm(i, a, b, beta=2.0, alpha=3.0),
        lambda i, a, b: torch.baddbmm(i, a, b, beta=2.0, alpha=3.0),
        [(1, 3, 4), (2, 3, 5), (2, 5, 4)],
    ),
    "addbmm": (
        lambda i, a, b: symbp.addbmm(i, a, b, alpha=0.5),
        lambda i, a, b: torch.addbmm(i, a, b, alpha=0.5),
        [(3, 4), (2, 3, 5), (2, 5, 4)],
    ),
    "tensordot-int": (symbp.tensordot, torch.tensordot, [(2, 3, 4), (3, 4, 5)]),
    "tensordot-lists": (
        lambda a, b: symbp.tensordot(a, b, ([0, 2], [2, 0])),
        lambda a, b: torch.tensordot(a, b, ([0, 2], [2, 0])),
        [(2, 3, 4), (4, 5, 2)],
    ),
    "tril": (lambda x: x.tril(), lambda x: x.tril(), [(4, 4)]),
    "tril-offset": (lambda x: symbp.tril(x, 1), lambda x: torch.tril(x, 1), [(2, 3, 5)]),
    "triu": (lambda x: symbp.triu(x, -1), lambda x: torch.triu(x, -1), [(5, 3)]),
    "trace": (symbp.trace, torch.trace, [(3, 4)]),
    "Tensor.trace": (lambda x: x.trace(), lambda x: x.trace(), [(4, 4)]),
    "diag-vector": (lambda x: symbp.diag(x), lambda x: torch.diag(x), [(3,)]),
    "diag-vector-offset": (lambda x: symbp.diag(x, 2), lambda x: torch.diag(x, 2), [(3,)]),
    "diag-matrix": (lambda x: symbp.diag(x, -1), lambda x: torch.diag(x, -1), [(4, 3)]),
    "diagonal": (lambda x: x.diagonal(), lambda x: x.diagonal(), [(3, 4)]),
    "diagonal-dims": (
        lambda x: symbp.diagonal(x, -1, -1, 0),
        lambda x: torch.diagonal(x, -1, -1, 0),
        [(4, 2, 3)],
    ),
    "diag_embed": (symbp.diag_embed, torch.diag_embed, [(2, 3)]),
    "diag_embed-dims": (
        lambda x: symbp.diag_embed(x, 1, 0, 2),
        lambda x: torch.diag_embed(x, 1, 0, 2),
        [(2, 3)],
    ),
    "norm": (symbp.linalg.norm, torch.linalg.norm, [(3, 4)]),
    "norm-dim": (
        lambda x: symbp.linalg.norm(x, dim=1, keepdim=True),
        lambda x: torch.linalg.norm(x, dim=1, keepdim=True),
        [(3, 4)],
    ),
    "vector_norm-1": (
        lambda x: symbp.linalg.vector_norm(x, 1, dim=0),
        lambda x: torch.linalg.vector_norm(x, 1, dim=0),
        [(3, 4)],
    ),
    "vector_norm-3": (
        lambda x: symbp.linalg.vector_norm(x, 3),
        lambda x: torch.linalg.vector_norm(x, 3),
        [(3, 4)],
    ),
    "vector_norm-inf": (
        lambda x: symbp.linalg.vector_norm(x, float("inf"), dim=1),
        lambda x: torch.linalg.vector_norm(x, float("inf"), dim=1),
        [(3, 4)],
    ),
    "matrix_norm-fro": (symbp.linalg.matrix_norm, torch.linalg.matrix_norm, [(2, 3, 4)]),
    "matrix_norm-1": (
        lambda x: symbp.linalg.matrix_norm(x, 1),
        lambda x: torch.linalg.matrix_norm(x, 1),
        [(2, 3, 4)],
    ),
    "matrix_norm-inf": (
        lambda x: symbp.linalg.matrix_norm(x, float("inf")),
        lambda x: torch.linalg.matrix_norm(x, float("inf")),
        [(3, 4)],
    ),
}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_matches_torch(name, rng):
    fn, tfn, shapes = FUNCTIONS[name]
    _check(fn, tfn, [rng.normal(size=s) for s in shapes], rng)


def test_batched_matmul_is_one_bmm_node_and_2d_right_operands_fold(rng):
    q = symbp.tensor(rng.normal(size=(2, 3, 5, 4)))
    k = symbp.tensor(rng.normal(size=(2, 3, 5, 4)))
    found = {n.op for n in toposort([(q @ k.transpose(-2, -1)).node])}
    assert "bmm" in found and "matmul" not in found
    # [B, T, d] @ [d, n]: a Linear layer on a sequence is one 2-D product, as PyTorch folds it
    x, w = symbp.tensor(rng.normal(size=(2, 5, 4))), symbp.tensor(rng.normal(size=(4, 3)))
    found = {n.op for n in toposort([(x @ w).node])}
    assert "matmul" in found and "bmm" not in found


def test_float32_in_float32_out(rng):
    a, b = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 4, 5))
    out = symbp.tensor(a, dtype=np.float32) @ symbp.tensor(b, dtype=np.float32)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), a @ b, rtol=1e-5, atol=1e-5)
    t = symbp.tril(symbp.tensor(a, dtype=np.float32))
    assert t.dtype == np.float32


# einsum: (equation, operand shapes)
EINSUM = [
    ("ij,jk->ik", [(2, 3), (3, 4)]),
    ("bij,bjk->bik", [(2, 2, 3), (2, 3, 4)]),
    ("ii->", [(3, 3)]),
    ("ii->i", [(3, 3)]),
    ("ij->ji", [(2, 3)]),
    ("ij->", [(2, 3)]),
    ("ij->j", [(2, 3)]),
    ("i,i->", [(3,), (3,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("ij,ij->ij", [(2, 3), (2, 3)]),
    ("ij,ij->", [(2, 3), (2, 3)]),
    ("...ij,...jk->...ik", [(2, 1, 2, 3), (5, 3, 4)]),
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("bhqk,bhkd->bhqd", [(2, 3, 4, 6), (2, 3, 6, 5)]),
    ("ij", [(2, 3)]),
    ("ji", [(2, 3)]),
    ("ij,jk", [(2, 3), (3, 4)]),
    ("ba,ac", [(2, 3), (3, 4)]),
    ("ijk,kl,lm->im", [(2, 3, 4), (4, 5), (5, 2)]),
    ("bii->bi", [(2, 3, 3)]),
    ("iij->j", [(3, 3, 2)]),
    ("ij,ik->jk", [(3, 2), (3, 4)]),
    ("i,ij,j->", [(3,), (3, 4), (4,)]),
    ("...i,...i->...", [(2, 3), (2, 3)]),
    ("...,...->...", [(2, 3), (3,)]),
    ("ijk->kji", [(2, 3, 4)]),
    ("ab,cd->abcd", [(2, 3), (4, 5)]),
    ("bij,jk->bik", [(2, 3, 4), (4, 5)]),
    ("ij,j->i", [(3, 4), (4,)]),
    ("b i d, b j d -> b i j", [(2, 3, 4), (2, 5, 4)]),
    ("ij,kj->ik", [(3, 4), (2, 4)]),
    ("abc,cd,db->a", [(2, 3, 4), (4, 5), (5, 3)]),
]


@pytest.mark.parametrize("eq,shapes", EINSUM, ids=[e for e, _ in EINSUM])
def test_einsum_matches_numpy_and_torch(eq, shapes, rng):
    arrays = [rng.normal(size=s) for s in shapes]
    _check(
        lambda *t: symbp.einsum(eq, *t),
        lambda *t: torch.einsum(eq, *t),
        arrays,
        rng,
        ref=lambda *a: np.einsum(eq.replace(" ", ""), *a),
    )


def test_einsum_list_of_operands_and_batched_matmul_trace(rng):
    a, b = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 4, 5))
    out = symbp.einsum("bij,bjk->bik", [symbp.tensor(a), symbp.tensor(b)])
    np.testing.assert_allclose(out.numpy(), a @ b, rtol=1e-12)
    traced = symbp.trace(lambda x, y: symbp.einsum("bij,bjk->bik", x, y), a, b, batch=False)
    found = [n.op for n in toposort(list(traced.outputs))]
    assert found.count("bmm") == 1 and "ew" not in found and "sum" not in found


def _raises(fn, *pieces):
    with pytest.raises((ShapeError, ValueError)) as info:
        fn()
    for p in pieces:
        assert p in str(info.value), f"{p!r} not in {info.value}"


def test_mismatched_shapes_name_the_op_and_shapes():
    t = symbp.ones
    _raises(lambda: t(2, 3) @ t(4, 5), "matmul", "[2,3]", "[4,5]", "3 != 4")
    _raises(lambda: t(3) @ t(4), "matmul", "3 != 4")
    _raises(lambda: t(2, 2, 3) @ t(3, 3, 4), "matmul", "[2,2,3]", "[3,3,4]")
    _raises(lambda: symbp.mm(t(2, 3), t(4, 5)), "mm", "[2,3]", "[4,5]")
    _raises(lambda: symbp.mm(t(2, 3, 1), t(1, 5)), "mm", "2-D", "[2,3,1]")
    _raises(lambda: symbp.bmm(t(2, 3, 4), t(3, 4, 5)), "bmm", "batch sizes differ")
    _raises(lambda: symbp.bmm(t(2, 3, 4), t(2, 5, 5)), "bmm", "4 != 5")
    _raises(lambda: symbp.mv(t(2, 3), t(4)), "mv", "3 != 4")
    _raises(lambda: symbp.dot(t(3), t(4)), "dot", "3 != 4")
    _raises(lambda: symbp.dot(t(3, 1), t(3)), "dot", "1-D")
    _raises(lambda: symbp.addmm(t(3, 3), t(2, 3), t(3, 4)), "addmm", "[3,3]", "[2,4]")
    _raises(lambda: symbp.tensordot(t(2, 3), t(4, 5), 1), "tensordot", "[2,3]", "[4,5]")
    _raises(lambda: symbp.einsum("ij,jk->ik", t(2, 3), t(4, 5)), "einsum", "'j'", "3", "4")
    _raises(lambda: symbp.einsum("ij,jk->ik", t(2, 3)), "einsum", "2 subscript terms")
    _raises(lambda: symbp.einsum("ij->ik", t(2, 3)), "einsum", "'k'")
    _raises(lambda: symbp.einsum("ijk->i", t(2, 3)), "einsum", "3 dimensions", "2-D")
    _raises(lambda: symbp.tril(t(3)), "tril", "2 dimensions")
    _raises(lambda: symbp.trace(t(2, 2, 2)), "trace", "2-D")


def test_tril_masks_like_a_select_not_a_product():
    # nan above the diagonal is dropped, as PyTorch's tril does (a product would keep it)
    x = np.array([[1.0, np.nan], [2.0, 3.0]])
    np.testing.assert_array_equal(symbp.tril(symbp.tensor(x)).numpy(), torch.tril(torch.tensor(x)))


def test_linalg_norms_without_svd_say_so():
    with pytest.raises(NotImplementedError, match="singular values"):
        symbp.linalg.matrix_norm(symbp.ones(2, 2), "nuc")


def test_gradcheck_through_batched_products_and_views(rng):
    def f(t):
        tri = symbp.tril(t @ t.transpose(-2, -1), -1) + symbp.triu(t @ t.transpose(-2, -1))
        return tri.sum() + (symbp.diag_embed(symbp.diagonal(t, 1, 1, 2)) ** 2).sum()

    report = symbp.check_grads(f, rng.normal(size=(2, 3, 4)))
    assert report.ok  # check_grads raises on a wrong gradient


def test_formulas_scalar_level_reads_bmm_and_the_views(rng):
    """The scalar level evaluates the backward program on SymPy entries: the printed
    gradient of one weight entry, evaluated, is backward()'s."""
    x = symbp.tensor(rng.normal(size=(2, 3)))
    w = symbp.nn.Parameter(rng.normal(size=(2, 3, 2)))
    loss = (symbp.diagonal(symbp.tril(x @ w), 0, 1, 2) ** 2).sum()
    grad = symbp.formulas(loss, params={"w": w}).scalar("w", (1, 2, 1))
    loss.backward()
    assert abs(float(grad.value) - w.grad.numpy()[1, 2, 1]) < 1e-12
    text = str(symbp.formulas(loss, params={"w": w}))
    assert "tril" in text and "diag" in text


# ---------------------------------------------------------------- compiled kernels vs eager


def _swap(t):
    return t.transpose(-2, -1)


def _causal(x, w):
    scores = x @ _swap(w)
    mask = symbp.tril(symbp.ones(scores.shape[-2], scores.shape[-1], dtype=x.dtype))
    return (scores - 1e9 * (1 - mask)).softmax(-1)


# name -> (f(X, W), shape of X, shape of W, extra)
CASES = {
    "bmm": (lambda x, w: x @ w, (2, 3, 4), (2, 4, 5), None),
    "bmm_nt": (lambda x, w: x @ _swap(w), (2, 2, 3, 4), (2, 2, 5, 4), None),
    "bmm_tn": (lambda x, w: _swap(x) @ w, (2, 4, 3), (2, 4, 5), None),
    # big enough for np.dot per batch (> emit.SMALL_MATMUL multiply-adds), plain and q @ kᵀ
    "bmm_blas": (lambda x, w: x @ w, (2, 16, 24), (2, 24, 16), None),
    "bmm_blas_nt": (lambda x, w: (x * 2) @ _swap(w), (2, 2, 16, 24), (2, 2, 16, 24), None),
    "bmm_blas_tn": (lambda x, w: _swap(x) @ (w + 1), (2, 24, 16), (2, 24, 16), None),
    "bmm_bcast": (lambda x, w: x @ w, (2, 1, 3, 4), (3, 4, 2), None),
    "bmm_vec": (lambda x, w: w @ x, (2, 4, 3), (4,), None),
    "fold_2d": (lambda x, w: x @ w, (2, 3, 4), (4, 5), None),
    "mv": (lambda x, w: symbp.mv(x, w), (3, 4), (4,), None),
    "dot": (lambda x, w: symbp.dot(x, w) * x, (4,), (4,), None),
    "outer": (lambda x, w: symbp.outer(x, w), (3,), (4,), None),
    "baddbmm": (lambda x, w: symbp.baddbmm(w.sum(1, keepdim=True), x, w, beta=0.5, alpha=2.0),
                (2, 3, 4), (2, 4, 3), None),
    "tril": (lambda x, w: symbp.tril(x * w, -1), (2, 4, 4), (4,), None),
    "triu": (lambda x, w: symbp.triu(x, 1) @ w, (3, 4), (4, 2), None),
    "diagonal": (lambda x, w: symbp.diagonal(x * w, 1, 0, 2), (3, 2, 4), (4,), None),
    "diag_embed": (lambda x, w: symbp.diag_embed(x * w, -1) * 2, (2, 3), (3,), None),
    "diag_trace": (lambda x, w: symbp.trace(x @ w) * symbp.diag(w @ x, 1), (3, 4), (4, 3), None),
    "einsum": (lambda x, w: symbp.einsum("bij,bkj->bik", x, w), (2, 3, 4), (2, 5, 4), None),
    "einsum_diag": (lambda x, w: symbp.einsum("ii,i->i", x, w), (3, 3), (3,), None),
    "causal": (_causal, (2, 4, 3), (2, 4, 3), None),
    "norm": (lambda x, w: symbp.linalg.norm(x * w, dim=1) + symbp.linalg.matrix_norm(x),
             (3, 4), (4,), None),
}  # fmt: skip


def _make_xw(rng, xs, ws, extra):
    return rng.uniform(-1.5, 1.5, xs), rng.uniform(-1.5, 1.5, ws)


@pytest.fixture(scope="module")
def results(tmp_cache):
    return kernel_results(CASES, 7, _make_xw)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(CASES))
def test_kernel_matches_eager(name, dtype, results):
    assert_kernel_matches(results, name, dtype)


# ---------------------------------------------------------------- causal self-attention


class Attention(nn.Module):
    """One head of causal self-attention: q, k, v projections, scores q·kᵀ/√d masked to the
    past (additively: -1e9 above the diagonal), softmax, times v; a linear read-out."""

    def __init__(self, width, d):
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(width, d, bias=False) for _ in range(3))
        self.out = nn.Linear(d, 2)
        self.d = d

    def forward(self, x):
        q, k, v = self.q(x), self.k(x), self.v(x)
        scores = q @ k.transpose(-2, -1) / self.d**0.5
        t = scores.shape[-1]
        mask = symbp.tril(symbp.ones(t, t, dtype=x.dtype))
        att = (scores - 1e9 * (1 - mask)).softmax(-1)
        return self.out(att @ v).sum(1)


class TorchAttention(torch.nn.Module):
    def __init__(self, width, d):
        super().__init__()
        self.q, self.k, self.v = (torch.nn.Linear(width, d, bias=False) for _ in range(3))
        self.out = torch.nn.Linear(d, 2)
        self.d = d

    def forward(self, x):
        q, k, v = self.q(x), self.k(x), self.v(x)
        scores = q @ k.transpose(-2, -1) / self.d**0.5
        t = scores.shape[-1]
        mask = torch.tril(torch.ones(t, t, dtype=x.dtype))
        att = (scores - 1e9 * (1 - mask)).softmax(-1)
        return self.out(att @ v).sum(1)


def _attention_models(values):
    """symbp's model (float64) and PyTorch's, with the parameters ``values`` (by name)."""
    symbp.set_default_dtype(symbp.float64)
    try:
        net = Attention(6, 4)
    finally:
        symbp.set_default_dtype(symbp.float32)
    for name, p in net.named_parameters():
        p.data = values[name].copy()
    tnet = TorchAttention(6, 4).double()
    with torch.no_grad():
        for name, p in tnet.named_parameters():
            p.copy_(torch.tensor(values[name]))
    return net, tnet


def _mse(out, t):
    return ((out - t) ** 2).mean()


@pytest.mark.slow
def test_causal_attention_trains_compiled_as_eager_and_torch(rng, tmp_cache):
    x = rng.normal(size=(3, 5, 6))
    t = rng.normal(size=(3, 2))
    shapes = {"q.weight": (4, 6), "k.weight": (4, 6), "v.weight": (4, 6)}
    shapes.update({"out.weight": (2, 4), "out.bias": (2,)})
    values = {name: rng.normal(scale=0.5, size=s) for name, s in shapes.items()}
    net, tnet = _attention_models(values)
    eager, _ = _attention_models(values)
    model = symbp.compile(net, _mse, symbp.optim.SGD(net.parameters(), lr=0.1))
    opt = symbp.optim.SGD(eager.parameters(), lr=0.1)
    topt = torch.optim.SGD(tnet.parameters(), lr=0.1)
    for _ in range(4):
        got = model.step(x, t)
        opt.zero_grad()
        loss = _mse(eager(symbp.tensor(x)), symbp.tensor(t))
        loss.backward()
        opt.step()
        topt.zero_grad()
        tloss = _mse(tnet(torch.tensor(x)), torch.tensor(t))
        tloss.backward()
        topt.step()
        np.testing.assert_allclose(float(got), tloss.item(), rtol=1e-10)
        np.testing.assert_allclose(float(loss), tloss.item(), rtol=1e-10)
    eager_p, compiled_p = dict(eager.named_parameters()), dict(net.named_parameters())
    for name, p in tnet.named_parameters():
        want = p.detach().numpy()
        np.testing.assert_allclose(eager_p[name].numpy(), want, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(compiled_p[name].numpy(), want, rtol=1e-9, atol=1e-12)


class _BigBatched(nn.Module):
    """Products big enough for np.dot per batch and outputs of 64·64 entries per sample, so
    the batch loops run on all cores (prange): one through BLAS (q @ kᵀ), one broadcast."""

    def __init__(self, rng):
        super().__init__()
        self.w = nn.Parameter(rng.normal(size=(64, 80)))
        self.v = nn.Parameter(rng.normal(size=(1, 80, 64)))

    def forward(self, x):
        q = x * self.w
        a = q @ (x + self.w).transpose(-2, -1)
        b = q @ self.v
        return (a * a).sum((1, 2)) + (b * b).sum((1, 2))


@pytest.mark.slow
def test_big_batched_products_run_blas_on_all_cores_as_eager(rng, tmp_cache):
    symbp.set_default_dtype(symbp.float64)
    try:
        net = _BigBatched(rng)
    finally:
        symbp.set_default_dtype(symbp.float32)
    x, t = rng.normal(size=(6, 64, 80)), rng.normal(size=6)
    loss = _mse(net(symbp.tensor(x)), symbp.tensor(t))
    loss.backward()
    want = {n: p.grad.numpy().copy() for n, p in net.named_parameters()}
    for p in net.parameters():
        p.grad = None
    model = symbp.compile(net, _mse)
    got_loss, got = model.loss_and_grads(x, t)
    source = model.source
    assert "np.dot(" in source and "for b0 in prange(B):" in source
    np.testing.assert_allclose(got_loss, float(loss), rtol=1e-12)
    for name, g in want.items():
        np.testing.assert_allclose(got[name], g, rtol=1e-12, atol=1e-12 * np.abs(g).max())
