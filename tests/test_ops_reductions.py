"""Reductions over any dim (issue 12): values, indices, dtypes and gradients against NumPy and
PyTorch, over several dims and keepdim; ties as PyTorch breaks them; empty and integer
inputs; and the compiled kernels against the eager reference (float64 1e-12, float32 1e-5).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
from conftest import assert_kernel_matches, kernel_results, numeric_grads

import symbp
from symbp.compiler import ops
from symbp.compiler.ir import ShapeError, toposort

torch = pytest.importorskip("torch")

X = np.random.default_rng(7).normal(size=(3, 4, 5))
# ties: two maxima in row 0, three in row 1, one in row 2; and zeros for the products
TIES = np.array([[0.0, 2.0, 1.0, 2.0], [5.0, 5.0, -1.0, 5.0], [0.0, 1.0, 3.0, 2.0]])
ZEROS = np.array([[2.0, 0.0, 3.0, 0.5], [0.0, 1.5, 0.0, 2.0], [1.0, -2.0, 0.5, 3.0]])


def _both(fn_s, fn_t, x, grad=True, rng=None):
    """fn on a symbp tensor and on a torch tensor of the same values: the same values,
    indices, shapes and dtypes, and (``grad``) the same gradient of Σ out·w."""
    rng = rng or np.random.default_rng(0)
    a = symbp.tensor(x, requires_grad=grad)
    t = torch.tensor(x, requires_grad=grad)
    got, want = fn_s(a), fn_t(t)
    if isinstance(want, tuple):
        assert type(got).__name__ == type(want).__name__  # torch.return_types.<name>
        for g, w in zip(got, want):
            _same(g, w)
        got, want = got[0], want[0]
    _same(got, want)
    if grad:
        w = rng.normal(size=want.shape)
        (got * symbp.tensor(w)).sum().backward()
        (want * torch.tensor(w)).sum().backward()
        np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=1e-10, atol=1e-14)
        return a.grad.numpy(), w
    return None, None


def _same(got, want):
    w = want.detach().numpy()
    assert got.shape == w.shape and got.dtype == w.dtype, (got.shape, w.shape, got.dtype, w.dtype)
    np.testing.assert_allclose(got.numpy(), w, rtol=1e-12, atol=1e-14)


DIMS = [(None, False), (0, False), (-1, True), ((0, 2), False), ((0, 2), True), ((1,), True)]


@pytest.mark.parametrize("dim,keepdim", DIMS, ids=str)
@pytest.mark.parametrize(
    "name", ["sum", "mean", "amax", "amin", "var", "std", "logsumexp", "nansum_free_norm"]
)
def test_over_dims_against_torch(name, dim, keepdim):
    kw = {} if dim is None else {"dim": dim, "keepdim": keepdim}
    if name == "logsumexp":
        d = (0, 1, 2) if dim is None else dim
        _both(lambda a: a.logsumexp(d, keepdim), lambda t: t.logsumexp(d, keepdim), X)
    elif name == "nansum_free_norm":
        for p in (1, 2, 3, 0.5, float("inf"), -float("inf")):
            _both(
                lambda a: symbp.vector_norm(a, p, dim, keepdim),
                lambda t: torch.linalg.vector_norm(t, p, dim, keepdim),
                X,
            )
    else:
        _both(lambda a: getattr(a, name)(**kw), lambda t: getattr(t, name)(**kw), X)


def test_against_numpy():
    """The same reductions against NumPy written independently (not through torch)."""
    a = symbp.tensor(X)
    np.testing.assert_allclose(a.sum((0, 2)).numpy(), X.sum((0, 2)), rtol=1e-12)
    np.testing.assert_allclose(a.prod(1).numpy(), X.prod(1), rtol=1e-12)
    np.testing.assert_allclose(a.var(1, correction=0).numpy(), X.var(1), rtol=1e-12)
    np.testing.assert_allclose(a.std((0, 2)).numpy(), X.std((0, 2), ddof=1), rtol=1e-12)
    np.testing.assert_allclose(
        a.logsumexp((1, 2)).numpy(), scipy.special.logsumexp(X, (1, 2)), rtol=1e-12
    )
    np.testing.assert_allclose(a.norm(3, 2).numpy(), np.linalg.norm(X, 3, 2), rtol=1e-12)
    np.testing.assert_allclose(a.cumsum(1).numpy(), np.cumsum(X, 1), rtol=1e-12)
    np.testing.assert_allclose(a.cumprod(2).numpy(), np.cumprod(X, 2), rtol=1e-12)
    np.testing.assert_array_equal(a.argmax(2).numpy(), X.argmax(2))
    np.testing.assert_array_equal(a.argsort(0).numpy(), np.argsort(X, 0, kind="stable"))
    np.testing.assert_allclose(a.amin((0, 1)).numpy(), X.min((0, 1)), rtol=1e-12)


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("name", ["max", "min", "prod", "median"])
def test_dim_reductions_against_torch(name, dim, keepdim):
    _both(lambda a: getattr(a, name)(dim, keepdim), lambda t: getattr(t, name)(dim, keepdim), X)


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_indices_against_torch(dim, keepdim):
    for name in ("argmax", "argmin"):
        _both(
            lambda a: getattr(a, name)(dim, keepdim),
            lambda t: getattr(t, name)(dim, keepdim),
            X,
            grad=False,
        )
    _both(lambda a: a.argmax(), lambda t: t.argmax(), X, grad=False)
    _both(lambda a: a.argmin(keepdim=True), lambda t: t.argmin(keepdim=True), X, grad=False)
    _both(lambda a: a.count_nonzero(dim), lambda t: t.count_nonzero(dim), ZEROS, grad=False)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_scans_and_sorts_against_torch(dim):
    for fn in (
        lambda a: a.cumsum(dim),
        lambda a: a.cumprod(dim),
        lambda a: a.cummax(dim),
        lambda a: a.cummin(dim),
        lambda a: a.sort(dim),
        lambda a: a.sort(dim, descending=True),
        lambda a: a.topk(2, dim),
        lambda a: a.topk(3, dim, largest=False),
    ):
        _both(fn, fn, X)
    _both(lambda a: a.argsort(dim, True), lambda t: t.argsort(dim, True), X, grad=False)


def test_whole_tensor_reductions_against_torch():
    for fn in (
        lambda a: a.max(),
        lambda a: a.min(),
        lambda a: a.prod(),
        lambda a: a.median(),
        lambda a: a.norm(),
        lambda a: a.var(unbiased=False),
    ):
        _both(fn, fn, X)
    v, m = symbp.var_mean(symbp.tensor(X), (0, 1), correction=0)
    tv, tm = torch.var_mean(torch.tensor(X), (0, 1), correction=0)
    _same(v, tv), _same(m, tm)
    s, m = symbp.std_mean(symbp.tensor(X), 2)
    ts, tm = torch.std_mean(torch.tensor(X), 2)
    _same(s, ts), _same(m, tm)


# ---------------------------------------------------------------- ties, zeros, infinities


TIE_FNS = {
    "max": lambda a: a.max(),  # spread evenly over the tied maxima
    "amax-dim": lambda a: a.amax(1),  # spread evenly too, even over one dim
    "max-dim": lambda a: a.max(1),  # the first maximum, and the gradient to it
    "min-dim": lambda a: a.min(1),
    "amin": lambda a: a.amin(0),
    "argmax": lambda a: a.argmax(1),
    "sort": lambda a: a.sort(1, descending=True),  # stable: tied entries keep their order
    "argsort": lambda a: a.argsort(1),
    "cummax": lambda a: a.cummax(1),  # the last of tied maxima, as PyTorch
    "cummin": lambda a: a.cummin(1),
    "median-dim": lambda a: a.median(1),
    "median": lambda a: a.median(),  # spread evenly over the entries equal to it
    "inf-norm": None,
}


@pytest.mark.parametrize("name", TIE_FNS)
def test_ties_as_torch(name):
    fn = TIE_FNS[name]
    if fn is None:
        _both(
            lambda a: symbp.vector_norm(a, float("inf"), 1),
            lambda t: torch.linalg.vector_norm(t, float("inf"), 1),
            TIES,
        )
        return
    grad = name not in ("argmax", "argsort")
    _both(fn, fn, TIES, grad=grad)
    _both(fn, fn, -TIES, grad=grad)


def test_tie_gradients_closed_form():
    """Hand-worked: max() shares w among the tied maxima; max(1) sends each row's w to its
    first maximum; cummax sends each position's w to the last tied maximum so far."""
    g, w = _both(lambda a: a.max(), lambda t: t.max(), TIES)
    np.testing.assert_allclose(g, np.where(TIES == 5.0, w / 3, 0.0))
    g, w = _both(lambda a: a.max(1).values, lambda t: t.max(1).values, TIES)
    want = np.zeros_like(TIES)
    want[[0, 1, 2], [1, 0, 2]] = w
    np.testing.assert_allclose(g, want)
    g, w = _both(lambda a: a.cummax(1).values, lambda t: t.cummax(1).values, TIES[:1])
    # row [0, 2, 1, 2]: running maxima at indices 0, 1, 1, 3
    np.testing.assert_allclose(g, [[w[0, 0], w[0, 1] + w[0, 2], 0.0, w[0, 3]]])


def test_topk_picks_first_of_ties():
    """PyTorch's topk leaves the order among ties unspecified; symbp picks the first tied
    entries (a stable sort), and its values and gradient still equal PyTorch's there."""
    a = symbp.tensor(TIES)
    np.testing.assert_array_equal(a.topk(2, 1).indices.numpy(), [[1, 3], [0, 1], [2, 3]])
    _both(lambda a: a.topk(2, 1).values, lambda t: t.topk(2, 1).values, TIES[2:])


def test_products_with_zeros_as_torch():
    for fn in (lambda a: a.prod(1), lambda a: a.prod(), lambda a: a.cumprod(1)):
        _both(fn, fn, ZEROS)
    # and against central differences: the product is a polynomial, smooth at zeros
    x = ZEROS.copy()
    w = np.random.default_rng(1).normal(size=3)
    a = symbp.tensor(x, requires_grad=True)
    (a.prod(1) * symbp.tensor(w)).sum().backward()
    (fd,) = numeric_grads(lambda v: np.sum(v.prod(1) * w), [x])
    np.testing.assert_allclose(a.grad.numpy(), fd, rtol=1e-6, atol=1e-8)


def test_norm_gradient_at_zero_is_zero():
    for p in (2, 1, 3, 0.5, float("inf")):
        _both(
            lambda a: symbp.vector_norm(a, p, 1),
            lambda t: torch.linalg.vector_norm(t, p, 1),
            np.array([[0.0, 0.0, 0.0], [0.0, 1.0, -2.0]]),
        )
    _both(lambda a: a.norm("fro"), lambda t: t.norm("fro"), np.zeros((2, 2)))


def test_logsumexp_infinite_rows():
    x = np.array([[-np.inf, -np.inf, -np.inf], [1.0, np.inf, 0.0], [1e308, 1e308, 0.0]])
    got = symbp.tensor(x).logsumexp(1).numpy()
    np.testing.assert_array_equal(got, torch.tensor(x).logsumexp(1).numpy())
    # stable: exp(1000) overflows, the shifted sum does not
    big = np.array([[1000.0, 1000.0], [-1000.0, -1001.0]])
    _both(lambda a: a.logsumexp(1), lambda t: t.logsumexp(1), big)


@pytest.mark.filterwarnings("ignore:(var|std).*degrees of freedom")  # torch's own warning
def test_var_with_too_few_entries_is_nan_or_inf_as_torch():
    x = np.array([[1.0], [2.0]])
    for fn in (lambda a: a.var(1), lambda a: a.std(1), lambda a: a.var(0, correction=2)):
        got, want = fn(symbp.tensor(x)).numpy(), fn(torch.tensor(x)).numpy()
        np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------- empty and integer tensors


def test_empty_tensors():
    e = symbp.tensor(np.zeros((0, 3)))
    te = torch.zeros((0, 3), dtype=torch.float64)
    assert np.isnan(e.mean().item()) and np.isnan(te.mean().item())
    np.testing.assert_array_equal(e.mean(0).numpy(), te.mean(0).numpy())  # nan per column
    assert e.sum().item() == 0.0 and e.prod().item() == 1.0
    np.testing.assert_array_equal(e.sum(1).numpy(), np.zeros(0))
    assert e.cumsum(0).shape == (0, 3) and e.count_nonzero().item() == 0
    assert np.isnan(e.median().item()) and np.isnan(te.median().item())
    for fn in (lambda a: a.max(), lambda a: a.min(), lambda a: a.argmax(), lambda a: a.amax()):
        with pytest.raises(ShapeError, match="empty"):
            fn(e)
        with pytest.raises((RuntimeError, IndexError)):  # torch raises one or the other
            fn(te)
    with pytest.raises(ShapeError, match=r"max\(\): dim 0 of \[0,3\] is empty"):
        e.max(0)


def test_integer_and_bool_dtypes_as_torch():
    n = np.array([[1, 2, 3], [4, 5, 6]])
    for fn in (
        lambda a: a.sum(),
        lambda a: a.sum(1),
        lambda a: a.prod(0),
        lambda a: a.cumsum(1),
        lambda a: a.cumprod(0),
        lambda a: a.max(),
        lambda a: a.max(1),
        lambda a: a.amin(0),
        lambda a: a.min(1),
        lambda a: a.argmax(0),
        lambda a: a.sort(1, descending=True),
        lambda a: a.cummax(1),
    ):
        _both(fn, fn, n, grad=False)
    b = np.array([[True, False, True], [True, True, False]])
    for fn in (lambda a: a.sum(), lambda a: a.sum(0), lambda a: a.cumsum(1)):
        _both(fn, fn, b, grad=False)
    with pytest.raises(TypeError, match=r"mean\(\).*int64"):
        symbp.tensor(n).mean()
    with pytest.raises(RuntimeError, match="mean"):
        torch.tensor(n).mean()
    assert symbp.tensor(n).sum(dtype=symbp.float64).dtype == np.float64


def test_max_with_a_tensor_is_the_elementwise_maximum():
    a, b = symbp.tensor(TIES), symbp.tensor(-TIES)
    np.testing.assert_array_equal(symbp.max(a, b).numpy(), np.maximum(TIES, -TIES))
    np.testing.assert_array_equal(symbp.min(a, b).numpy(), np.minimum(TIES, -TIES))


def test_zero_dim_tensors():
    s = np.array(2.5)
    for fn in (lambda a: a.max(0), lambda a: a.cumsum(0), lambda a: a.sum(0), lambda a: a.amax()):
        _both(fn, fn, s)


def test_bad_dims_name_the_op_and_shape():
    a = symbp.tensor(X)
    with pytest.raises(
        ShapeError,
        match=r"max: dimension out of range .*\[-3, 2\], but got 3\) for a tensor of "
        r"shape \[3,4,5\]",
    ):
        a.max(3)
    with pytest.raises(ShapeError, match="topk: k=6 out of range"):
        a.topk(6)
    with pytest.raises(TypeError, match="cumsum: dim must be an int"):
        a.cumsum((0, 1))


# ---------------------------------------------------------------- IR: compositions, not ops


def _ops(t) -> set[str]:
    return {n.op for n in toposort([t.node])}


def test_compositions_build_no_ops_of_their_own():
    a = symbp.tensor(X)
    assert _ops(a.mean(1)) <= {"input", "sum", "ew"}
    assert _ops(a.amin(1)) <= {"input", "max", "ew"}
    assert _ops(a.var(1)) <= {"input", "sum", "ew", "expand", "reshape"}
    assert _ops(a.norm(3, 1)) <= {"input", "sum", "ew"}
    assert _ops(a.logsumexp((0, 1))) <= {"input", "sum", "ew", "max", "detach", "expand", "reshape"}
    assert "argidx" in _ops(a.max(1).indices) and "take_along" in _ops(a.max(1).values)


def test_formulas_print_the_reductions():
    w = symbp.nn.Parameter(np.random.default_rng(3).normal(size=(2, 3)))
    x = symbp.tensor(np.random.default_rng(4).normal(size=(2, 3)))
    loss = (w * x).cumsum(1).sum() + (w * x).prod(1).sum() + (w * x).max(1).values.sum()
    text = str(symbp.formulas(loss, params={"w": w}))
    assert "cumsum" in text and "Π" in text and "take_along" in text, text


def test_gradcheck_knows_the_tie_kinks():
    """At a tie, gradcheck warns that the point sits on a kink (the regime is the picked
    index), rather than failing on the one-sided differences."""
    with pytest.warns(symbp.GradcheckWarning, match="tie"):
        symbp.check_grads(lambda t: t.max(1).values.sum(), TIES)
    symbp.check_grads(lambda t: (t.sort(1).values * symbp.tensor(X[0, :3, :4])).sum(), X[0, :3, :4])
    symbp.check_grads(lambda t: t.cumprod(1).sum() + t.prod(0).sum(), ZEROS)


# ---------------------------------------------------------------- compiled against eager


def _f(t, like):
    """An index tensor as the float dtype of ``like`` (so it can be weighted by R); the
    cases add x, so that X has a gradient (an index has none)."""
    return t.double() if like.dtype == np.float64 else t.float()


def _nonzero(x, w):
    return _f(symbp.relu(x).count_nonzero(0), x) * w + x


CASES = {
    "sum_dims": (lambda x, w: (x * w).sum((0, 2)), (2, 3, 4), (4,), None),
    "prod_dim": (lambda x, w: (x * w).prod(1), (3, 4), (4,), None),
    "prod_zeros": (lambda x, w: symbp.relu(x * w).prod(1, keepdim=True), (3, 4), (4,), None),
    "cumsum0": (lambda x, w: (x * w).cumsum(0), (3, 4), (4,), None),
    "cumsum1": (lambda x, w: (x * w).cumsum(1) * x, (3, 4), (4,), None),
    "cumprod": (lambda x, w: (x * w).cumprod(1), (3, 4), (4,), None),
    "cumprod_zeros": (lambda x, w: symbp.relu(x * w).cumprod(1), (3, 4), (4,), None),
    "max_dim0": (lambda x, w: (x * w).max(0).values, (3, 4), (4,), None),
    "min_dim": (lambda x, w: (x * w).min(1, keepdim=True).values * x, (3, 4), (4,), None),
    "amax_dims": (lambda x, w: (x * w).amax((0, 2)), (2, 3, 4), (4,), None),
    "amin": (lambda x, w: (x * w).amin(1), (3, 4), (4,), None),
    "argmax": (lambda x, w: _f((x * w).argmax(0), x) * w + x, (3, 4), (4,), None),
    "argmin_all": (lambda x, w: _f((x * w).argmin(), x) * w + x, (3, 4), (4,), None),
    "sort": (lambda x, w: (x * w).sort(1, descending=True).values, (3, 4), (4,), None),
    "sort_idx": (lambda x, w: _f((x * w).sort(0).indices, x) * w + x, (3, 4), (4,), None),
    "topk": (lambda x, w: (x * w).topk(2, 1).values, (3, 4), (4,), None),
    "cummax": (lambda x, w: (x * w).cummax(1).values, (3, 4), (4,), None),
    "cummin_idx": (lambda x, w: _f((x * w).cummin(0).indices, x) * w + x, (3, 4), (4,), None),
    "median": (lambda x, w: (x * w).median(1).values, (3, 5), (5,), None),
    "var": (lambda x, w: (x * w).var(1), (3, 4), (4,), None),
    "std": (lambda x, w: (x * w).std((0, 1), correction=0), (3, 4), (4,), None),
    "norm2": (lambda x, w: (x * w).norm(2, 1), (3, 4), (4,), None),
    "norm3": (lambda x, w: (x * w).norm(3, 0), (3, 4), (4,), None),
    "norm_inf": (lambda x, w: symbp.vector_norm(x * w, float("inf"), 1), (3, 4), (4,), None),
    "logsumexp": (lambda x, w: (x * w).logsumexp((0, 1)), (3, 4), (4,), None),
    "count_nonzero": (_nonzero, (3, 4), (4,), None),
}  # fmt: skip

CHUNK = 13  # cases per compiled program: two programs per dtype


def _make_xw(rng, xs, ws, lo_hi):
    lo, hi = lo_hi or (-1.5, 1.5)
    return rng.uniform(lo, hi, xs), rng.uniform(-1.5, 1.5, ws)


@pytest.fixture(scope="module")
def compiled(tmp_cache):
    return kernel_results(CASES, CHUNK, _make_xw)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_matches_eager(name, dtype, compiled):
    assert_kernel_matches(compiled, name, dtype)


def test_the_new_ops_are_in_the_cases():
    """The compiled cases reach every op this family added (so each has a kernel tested)."""
    built: set[str] = set()
    for fn, xs, ws, _ in CASES.values():
        x = symbp.nn.Parameter(np.ones(xs))
        w = symbp.nn.Parameter(np.linspace(0.5, 1.5, ws[0]))
        out = fn(x, w)
        loss = (out * symbp.tensor(np.ones(out.shape))).sum()
        derived = symbp.derive(loss.node, [x.node, w.node])
        built |= {n.op for n in toposort([*derived.grads, out.node])}
    new = {"argidx", "argsort", "cumarg", "take_along", "put_along", "prod", "cumsum"}
    assert new | {"cumprod", "cumprod_grad"} <= built
    assert set(ops.OPS) >= built
