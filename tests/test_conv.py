"""Convolution, pooling, dropout and batch norm against independent oracles.

- NumPy references written here as direct loops over output positions (not the tap-by-tap
  views of ``ops``), forward and, through float64 central differences, gradients;
- PyTorch, when installed: float64 to 1e-10 and float32 to 1e-4, forward and gradients;
- the tutorial CNN trained five steps with SGD, SGD with momentum and Adam next to PyTorch.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from conftest import numeric_grads

import symbp
from symbp import api, nn
from symbp import functional as F
from symbp.compiler import ops
from symbp.compiler.autodiff import vjp
from symbp.compiler.ir import B, toposort
from symbp.compiler.reference import evaluate
from symbp.models import tutorial_cnn


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


# ---------------------------------------------------------------- NumPy references (loops)


def _pads(padding, kernel=None, dilation=(1, 1)):
    """PyTorch's padding forms as ((top, bottom), (left, right))."""
    if padding == "same":
        total = [d * (k - 1) for d, k in zip(dilation, kernel)]
        return tuple((t // 2, t - t // 2) for t in total)
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return (ph, ph), (pw, pw)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def ref_conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Each output entry is its window of the zero-padded input dotted with one filter."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    (t, bo), (left, r) = _pads(padding, (kh, kw), (dh, dw))
    xp = np.zeros((n, c, h + t + bo, wd + left + r))
    xp[:, :, t : t + h, left : left + wd] = x
    ho = (h + t + bo - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + left + r - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, o, ho, wo))
    per_group = o // groups
    for f in range(o):
        g = f // per_group
        for i in range(ho):
            for j in range(wo):
                window = xp[
                    :,
                    g * cg : (g + 1) * cg,
                    i * sh : i * sh + dh * (kh - 1) + 1 : dh,
                    j * sw : j * sw + dw * (kw - 1) + 1 : dw,
                ]
                out[:, f, i, j] = np.sum(window * w[f], axis=(1, 2, 3))
    return out if b is None else out + b[None, :, None, None]


def _pool_windows(x, kernel, stride, padding, dilation):
    """Yield (i, j, [(row, col) of each tap inside the input, in row-major tap order])."""
    h, w = x.shape[2:]
    (kh, kw), (sh, sw) = _pair(kernel), _pair(stride if stride is not None else kernel)
    (ph, pw), (dh, dw) = _pair(padding), _pair(dilation)
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    for i in range(ho):
        for j in range(wo):
            taps = [
                (i * sh - ph + p * dh, j * sw - pw + q * dw) for p in range(kh) for q in range(kw)
            ]
            yield i, j, ho, wo, taps, kh * kw


def ref_max_pool2d(x, kernel, stride=None, padding=0, dilation=1):
    """(output, arg-max (row, col) per output entry): the first maximum among in-input taps."""
    out, where = None, None
    for i, j, ho, wo, taps, _ in _pool_windows(x, kernel, stride, padding, dilation):
        if out is None:
            out = np.zeros((*x.shape[:2], ho, wo))
            where = np.zeros((*x.shape[:2], ho, wo, 2), dtype=int)
        for n in range(x.shape[0]):
            for c in range(x.shape[1]):
                best, arg = -np.inf, None
                inside = [(r, s) for r, s in taps if 0 <= r < x.shape[2] and 0 <= s < x.shape[3]]
                for r, s in inside:
                    if arg is None or x[n, c, r, s] > best:
                        best, arg = x[n, c, r, s], (r, s)
                out[n, c, i, j], where[n, c, i, j] = best, arg
    return out, where


def ref_max_pool2d_grad(x, ct, *args):
    _, where = ref_max_pool2d(x, *args)
    g = np.zeros_like(x)
    for idx in np.ndindex(ct.shape):
        n, c = idx[:2]
        r, s = where[idx]
        g[n, c, r, s] += ct[idx]
    return g


def ref_avg_pool2d(x, kernel, stride=None, padding=0, count_include_pad=True, divisor=None):
    out = None
    for i, j, ho, wo, taps, size in _pool_windows(x, kernel, stride, padding, 1):
        if out is None:
            out = np.zeros((*x.shape[:2], ho, wo))
        inside = [(r, s) for r, s in taps if 0 <= r < x.shape[2] and 0 <= s < x.shape[3]]
        total = sum(x[:, :, r, s] for r, s in inside)
        count = divisor or (size if count_include_pad else len(inside))
        out[:, :, i, j] = total / count
    return out


def check_against(fn, ref, arrays, rng, grad_of=None, rtol=1e-6):
    """fn on Tensors vs ref on arrays (forward to 1e-12), and d sum(fn * r) vs central
    differences of ref (float64) for every array in ``grad_of`` (default: all)."""
    grad_of = grad_of or [True] * len(arrays)
    ts = [symbp.tensor(a, requires_grad=g) for a, g in zip(arrays, grad_of)]
    out = fn(*ts)
    want = ref(*arrays)
    assert out.shape == want.shape
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-12, atol=1e-12)
    r = rng.normal(size=want.shape)
    (out * symbp.tensor(r)).sum().backward()
    diff = [a for a, g in zip(arrays, grad_of) if g]

    def loss(*d):
        it = iter(d)
        return np.sum(ref(*[next(it) if g else a for a, g in zip(arrays, grad_of)]) * r)

    for t, g in zip([t for t in ts if t.requires_grad], numeric_grads(loss, diff)):
        np.testing.assert_allclose(t.grad, g, rtol=rtol, atol=1e-8)
    return out


# ---------------------------------------------------------------- conv2d

# (in, out, kernel, stride, padding, dilation, groups, input H×W, batch)
CONV_GRID = [
    (2, 3, 3, 1, 0, 1, 1, (5, 6), 2),
    (2, 3, 3, 1, 1, 1, 1, (5, 5), 1),  # batch 1
    (2, 2, 1, 1, 0, 1, 1, (4, 3), 2),  # 1×1 kernel
    (1, 2, (2, 3), 2, 0, 1, 1, (7, 6), 2),  # odd sizes, stride 2 leaves a row unread
    (2, 2, 3, (2, 1), (1, 2), 1, 1, (6, 5), 1),
    (2, 2, 3, 1, 0, 2, 1, (7, 7), 1),  # dilation
    (1, 2, 3, 2, 2, (2, 1), 1, (5, 6), 2),  # stride, padding and dilation at once
    (2, 2, 3, 1, "same", 1, 1, (5, 4), 1),
    (2, 2, 4, 1, "same", 1, 1, (5, 5), 1),  # even kernel: asymmetric padding
    (1, 2, 2, 1, "same", 3, 1, (6, 5), 1),  # 'same' with dilation
    (4, 2, 3, 1, 1, 1, 2, (4, 5), 2),  # groups
    (2, 4, 3, 2, 1, 1, 2, (5, 5), 1),
    (2, 2, 5, 3, 2, 1, 1, (5, 5), 1),  # stride larger than the overlap
]


def _conv_id(case):
    _, _, k, s, p, d, g, hw, n = case
    return f"k{k}-s{s}-p{p}-d{d}-g{g}-{hw[0]}x{hw[1]}-n{n}"


@pytest.mark.parametrize("case", CONV_GRID, ids=[_conv_id(c) for c in CONV_GRID])
def test_conv2d_against_loops_and_differences(case, rng):
    cin, cout, k, s, p, d, g, (h, w), n = case
    kh, kw = _pair(k)
    x = rng.normal(size=(n, cin, h, w))
    weight = rng.normal(size=(cout, cin // g, kh, kw))
    bias = rng.normal(size=cout)
    check_against(
        lambda x, wt, b: F.conv2d(x, wt, b, s, p, d, g),
        lambda x, wt, b: ref_conv2d(x, wt, b, s, p, d, g),
        [x, weight, bias],
        rng,
    )


@pytest.mark.parametrize("case", CONV_GRID, ids=[_conv_id(c) for c in CONV_GRID])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_conv2d_against_torch(case, dtype, tol, rng, torch):
    cin, cout, k, s, p, d, g, (h, w), n = case
    kh, kw = _pair(k)
    arrays = [
        rng.normal(size=(n, cin, h, w)).astype(dtype),
        rng.normal(size=(cout, cin // g, kh, kw)).astype(dtype),
        rng.normal(size=cout).astype(dtype),
    ]
    ts = [symbp.tensor(a, requires_grad=True) for a in arrays]
    tt = [torch.tensor(a, requires_grad=True) for a in arrays]
    y = F.conv2d(*ts, s, p, d, g)
    with warnings.catch_warnings():  # PyTorch warns that even 'same' kernels copy the input
        warnings.simplefilter("ignore")
        yt = torch.nn.functional.conv2d(*tt, s, p, d, g)
    assert y.dtype == dtype and y.shape == tuple(yt.shape)
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=tol, atol=tol)
    r = rng.normal(size=y.shape).astype(dtype)
    (y * symbp.tensor(r)).sum().backward()
    (yt * torch.tensor(r)).sum().backward()
    for a, b in zip(ts, tt):
        assert a.grad.dtype == dtype
        np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=tol, atol=tol)


def test_conv2d_backward_graph_is_two_convolutions(rng):
    x = symbp.placeholder("x", (B, 3, 8, 8))
    w = symbp.placeholder("w", (4, 3, 3, 3))
    loss = F.conv2d(x, w, stride=2, padding=1).sum()
    derived = symbp.derive(loss.node, [x.node, w.node])
    gx, gw = derived.grads
    assert gx.op == "conv2d_input_grad" and gx.shape == (B, 3, 8, 8)
    assert gw.op == "conv2d_weight_grad" and gw.shape == (4, 3, 3, 3)
    text = str(derived)
    assert "conv2d_input_grad[stride=2 pad=1 dilation=1 input=8]" in text
    assert "conv2d_weight_grad[stride=2 pad=1 dilation=1 kernel=3]" in text


def test_conv2d_double_backward(rng):
    """The gradient ops' own adjoints (each made of the other two ops) against differences."""
    a = F.conv_arg((3, 2), stride=(2, 1), padding=1, dilation=(1, 2))
    vals = {"x": rng.normal(size=(2, 2, 6, 7)), "w": rng.normal(size=(3, 2, 3, 2))}
    leaf = {k: symbp.placeholder(k, v.shape, np.float64).node for k, v in vals.items()}
    y = ops.conv2d(leaf["x"], leaf["w"], a)
    vals["ct"] = rng.normal(size=y.shape)
    leaf["ct"] = symbp.placeholder("ct", y.shape, np.float64).node
    cases = [
        (ops.conv2d_input_grad(leaf["ct"], leaf["w"], a, (6, 7)), ["ct", "w"]),
        (ops.conv2d_weight_grad(leaf["x"], leaf["ct"], a, (3, 2)), ["x", "ct"]),
    ]
    for grad, names in cases:
        # a scalar of the gradient, <grad, s>, differentiated once more
        vals["s"] = rng.normal(size=grad.shape)
        leaf["s"] = symbp.placeholder("s", grad.shape, np.float64).node
        dot = ops.sum_(ops.apply("mul", grad, leaf["s"]), range(4))
        wrt = [leaf[n] for n in names]
        grads = vjp([dot], [ops.const(1, (), np.dtype(np.float64))], wrt)
        assert {g.op for g in grads} <= {"conv2d", "conv2d_input_grad", "conv2d_weight_grad"}
        env = {leaf[k]: v for k, v in vals.items()}
        got = evaluate(grads, env)

        def f(*arrays, names=names, dot=dot):
            e = {**env, **{leaf[n]: v for n, v in zip(names, arrays)}}
            return float(evaluate([dot], e)[0])

        for g, fd in zip(got, numeric_grads(f, [vals[n] for n in names])):
            np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- pooling

# (kernel, stride, padding, dilation, input H×W, batch)
POOL_GRID = [
    (2, None, 0, 1, (4, 6), 2),
    (2, None, 0, 1, (5, 7), 1),  # odd sizes: the last row and column are never read
    (3, 2, 1, 1, (5, 5), 2),
    (3, 1, 1, 1, (4, 5), 1),
    ((2, 3), (1, 2), (1, 1), 1, (5, 6), 2),
    (3, 1, 1, 2, (6, 6), 1),  # dilation (max pooling only)
    (2, 3, 0, 1, (7, 8), 1),  # stride larger than the kernel
]


def _pool_id(case):
    k, s, p, d, hw, n = case
    return f"k{k}-s{s}-p{p}-d{d}-{hw[0]}x{hw[1]}-n{n}"


@pytest.mark.parametrize("case", POOL_GRID, ids=[_pool_id(c) for c in POOL_GRID])
def test_max_pool2d_against_loops_and_differences(case, rng):
    k, s, p, d, (h, w), n = case
    x = rng.normal(size=(n, 2, h, w))  # distinct values: no ties, differences apply
    out = check_against(
        lambda x: F.max_pool2d(x, k, s, p, d),
        lambda x: ref_max_pool2d(x, k, s, p, d)[0],
        [x],
        rng,
    )
    assert out.node.op == "maxpool2d"


@pytest.mark.parametrize("case", [c for c in POOL_GRID if c[3] == 1], ids=_pool_id)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool2d_against_loops_and_differences(case, count_include_pad, rng):
    k, s, p, _, (h, w), n = case
    check_against(
        lambda x: F.avg_pool2d(x, k, s, p, count_include_pad=count_include_pad),
        lambda x: ref_avg_pool2d(x, k, s, p, count_include_pad),
        [rng.normal(size=(n, 2, h, w))],
        rng,
    )


def test_avg_pool2d_divisor_override(rng):
    check_against(
        lambda x: F.avg_pool2d(x, 3, 2, 1, divisor_override=4),
        lambda x: ref_avg_pool2d(x, 3, 2, 1, divisor=4),
        [rng.normal(size=(1, 2, 5, 5))],
        rng,
    )


def _tied(rng, shape):
    """Inputs full of ties: few distinct values, whole windows equal, equal neighbours."""
    x = rng.integers(0, 3, size=shape).astype(np.float64)
    x[0, 0] = 1.0  # one channel constant: every window a tie
    return x


@pytest.mark.parametrize("case", POOL_GRID, ids=[_pool_id(c) for c in POOL_GRID])
def test_max_pool2d_ties_route_to_the_first_maximum(case, rng):
    k, s, p, d, (h, w), n = case
    x = _tied(rng, (max(n, 1), 2, h, w))
    ct = rng.normal(size=ref_max_pool2d(x, k, s, p, d)[0].shape)
    xt = symbp.tensor(x, requires_grad=True)
    (F.max_pool2d(xt, k, s, p, d) * symbp.tensor(ct)).sum().backward()
    want = ref_max_pool2d_grad(x, ct, k, s, p, d)  # overlapping windows sum: rounding only
    np.testing.assert_allclose(xt.grad, want, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("case", POOL_GRID, ids=[_pool_id(c) for c in POOL_GRID])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_pooling_against_torch(case, dtype, tol, rng, torch):
    k, s, p, d, (h, w), n = case
    tf = torch.nn.functional
    for x in (rng.normal(size=(n, 3, h, w)), _tied(rng, (n, 3, h, w))):
        pools = [(F.max_pool2d, tf.max_pool2d, (k, s, p, d))]
        if d == 1:
            pools += [
                (F.avg_pool2d, tf.avg_pool2d, (k, s, p)),
                (F.avg_pool2d, tf.avg_pool2d, (k, s, p, False, False)),
            ]
        for fn, tfn, args in pools:
            xs = symbp.tensor(x.astype(dtype), requires_grad=True)
            xt = torch.tensor(x.astype(dtype), requires_grad=True)
            y, yt = fn(xs, *args), tfn(xt, *args)
            np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=tol, atol=tol)
            r = rng.normal(size=y.shape).astype(dtype)
            (y * symbp.tensor(r)).sum().backward()
            (yt * torch.tensor(r)).sum().backward()
            np.testing.assert_allclose(xs.grad, xt.grad.numpy(), rtol=tol, atol=tol)


def test_max_pool2d_nan_and_infinity_as_torch(torch):
    x = np.array(
        [[[[1.0, np.nan, 3.0, np.nan], [-np.inf, -np.inf, 0.0, 2.0], [-np.inf] * 4, [5.0] * 4]]]
    )
    xs = symbp.tensor(x, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    for args in [(2,), (3, 1, 1)]:
        xs.grad, xt.grad = None, None
        y, yt = F.max_pool2d(xs, *args), torch.nn.functional.max_pool2d(xt, *args)
        np.testing.assert_array_equal(y.numpy(), yt.detach().numpy())
        y.sum().backward()
        yt.sum().backward()
        np.testing.assert_array_equal(xs.grad, xt.grad.numpy())


def test_pool_gradient_ops_in_the_backward_graph():
    x = symbp.placeholder("x", (B, 2, 6, 6))
    for fn, op in [(F.max_pool2d, "maxpool2d_grad"), (F.avg_pool2d, "avgpool2d_grad")]:
        (g,) = symbp.derive(fn(x, 3, 2, 1).sum().node, [x.node]).grads
        assert g.op == op and g.shape == (B, 2, 6, 6)


def test_avg_pool2d_double_backward_and_max_pool_says_it_has_none(rng):
    a = ops.Pool2dArg((3, 2), (2, 1), (1, 1))
    ct = symbp.placeholder("ct", (2, 2, 3, 6), np.float64).node
    g = ops.avgpool2d_grad(ct, a, (5, 5))
    (back,) = vjp([g], [ops.const(1, g.shape, np.dtype(np.float64))], [ct])
    assert back.op == "avgpool2d"
    x = symbp.placeholder("x", (2, 2, 5, 5), np.float64).node
    mg = ops.maxpool2d_grad(x, ops.maxpool2d(x, a), a)
    with pytest.raises(NotImplementedError, match="no double backward through max pooling"):
        vjp([mg], [ops.const(1, mg.shape, np.dtype(np.float64))], [x])


def test_adaptive_avg_pool2d(rng, torch):
    x = rng.normal(size=(2, 3, 6, 4))
    for size in [(1, 1), 1, (3, 2), (None, 2)]:
        xs = symbp.tensor(x, requires_grad=True)
        xt = torch.tensor(x, requires_grad=True)
        y = nn.AdaptiveAvgPool2d(size)(xs)
        yt = torch.nn.AdaptiveAvgPool2d(size)(xt)
        np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-12)
        r = rng.normal(size=y.shape)
        (y * symbp.tensor(r)).sum().backward()
        (yt * torch.tensor(r)).sum().backward()
        np.testing.assert_allclose(xs.grad, xt.grad.numpy(), rtol=1e-12)
    g = nn.AdaptiveAvgPool2d((1, 1))(symbp.placeholder("x", (B, 3, 6, 4)))
    assert g.node.op == "ew" and g.shape == (B, 3, 1, 1)  # a mean: no pooling op needed
    with pytest.raises(NotImplementedError, match="must divide the input size 6×4"):
        nn.AdaptiveAvgPool2d((4, 4))(symbp.tensor(x))


# ---------------------------------------------------------------- dropout


def test_dropout_statistics_and_seeding():
    x = symbp.tensor(np.ones((200, 500)))
    for p in (0.1, 0.5, 0.8):
        y = F.dropout(x, p).numpy()
        kept = y != 0
        assert abs(1 - kept.mean() - p) < 0.01  # the fraction zeroed is p
        assert abs(y.mean() - 1) < 0.03  # inverted scaling keeps the mean
        np.testing.assert_allclose(y[kept], 1 / (1 - p), rtol=1e-15)
    symbp.manual_seed(7)
    a = F.dropout(x, 0.5).numpy()
    b = F.dropout(x, 0.5).numpy()
    symbp.manual_seed(7)
    np.testing.assert_array_equal(F.dropout(x, 0.5).numpy(), a)  # same seed, same masks
    assert (a != b).any()  # successive calls draw new masks


def test_dropout_gradient_is_exact_given_the_mask(rng, torch):
    x = rng.normal(size=(4, 6))
    xs = symbp.tensor(x, requires_grad=True)
    layer = nn.Dropout(0.25)
    y = layer(xs)
    mask = y.numpy() != 0
    np.testing.assert_allclose(y.numpy(), x * mask / 0.75, rtol=1e-15)
    r = rng.normal(size=x.shape)
    (y * symbp.tensor(r)).sum().backward()
    np.testing.assert_allclose(xs.grad, r * mask / 0.75, rtol=1e-15)
    # PyTorch, given the same mask (its own generator draws others)
    xt = torch.tensor(x, requires_grad=True)
    (xt * torch.tensor(mask) / 0.75 * torch.tensor(r)).sum().backward()
    np.testing.assert_allclose(xs.grad, xt.grad.numpy(), rtol=1e-15)


def test_dropout_modes_and_edge_probabilities():
    x = symbp.tensor(np.arange(1.0, 7.0).reshape(2, 3))
    layer = nn.Dropout(0.5)
    layer.eval()
    assert layer(x) is x  # eval mode: the identity
    layer.train()
    assert layer(x) is not x
    assert F.dropout(x, 0.0) is x
    np.testing.assert_array_equal(F.dropout(x, 1.0).numpy(), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


def test_dropout_traced_mask_is_a_bernoulli_node_fed_by_a_seed_input():
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    traced = symbp.trace(model, np.zeros((3, 4), np.float32))
    (mask,) = [n for n in toposort(traced.outputs) if n.op == "bernoulli"]
    assert mask.shape == (B, 8) and mask.arg[0] == 0.5
    (seed,) = mask.src
    assert seed.op == "input" and seed.arg == "1.seed" and seed.dtype == np.int64
    assert "bernoulli[p=0.5] 1.seed" in str(traced)
    # the reference draws the mask from the seed: equal seeds, equal masks, any batch size
    env = {n: np.ones((5, *n.shape[1:]), np.float32) for n in traced.inputs.values()}
    env.update({p.node: p.numpy() for p in model.parameters()})
    (m1,) = evaluate([mask], {**env, seed: np.int64(3)}, dims={B: 5})
    (m2,) = evaluate([mask], {**env, seed: np.int64(3)}, dims={B: 5})
    assert m1.shape == (5, 8)
    np.testing.assert_array_equal(m1, m2)


# ---------------------------------------------------------------- batch norm


@pytest.mark.parametrize(
    "cls,shape",
    [("BatchNorm1d", (6, 3)), ("BatchNorm1d", (4, 3, 5)), ("BatchNorm2d", (3, 3, 4, 5))],
)
@pytest.mark.parametrize(
    "options",
    [{}, {"affine": False}, {"momentum": None}, {"track_running_stats": False}, {"eps": 1e-3}],
    ids=["default", "no-affine", "cumulative", "no-running", "eps"],
)
def test_batch_norm_train_and_eval_against_torch(cls, shape, options, rng, torch):
    ours = getattr(nn, cls)(3, dtype=np.float64, **options)
    theirs = getattr(torch.nn, cls)(3, dtype=torch.float64, **options)
    if ours.affine:  # not the trivial ones and zeros
        for name in ("weight", "bias"):
            value = rng.normal(size=3)
            getattr(ours, name).data = value
            getattr(theirs, name).data = torch.tensor(value)
    for mode in ("train", "train", "train", "eval", "train", "eval"):
        getattr(ours, mode)()
        getattr(theirs, mode)()
        x = rng.normal(2.0, 3.0, size=shape)
        r = rng.normal(size=shape)
        xs = symbp.tensor(x, requires_grad=True)
        xt = torch.tensor(x, requires_grad=True)
        y, yt = ours(xs), theirs(xt)
        np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-10)
        (y * symbp.tensor(r)).sum().backward()
        (yt * torch.tensor(r)).sum().backward()
        np.testing.assert_allclose(xs.grad, xt.grad.numpy(), rtol=1e-10, atol=1e-10)
        if ours.affine:
            for p, q in [(ours.weight, theirs.weight), (ours.bias, theirs.bias)]:
                np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-10, atol=1e-10)
                p.grad, q.grad = None, None
        state = {k: v.numpy() for k, v in theirs.state_dict().items()}
        for k, v in ours.state_dict().items():  # running statistics and the step count
            np.testing.assert_allclose(v, state[k], rtol=1e-12, err_msg=k)


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (3, 3, 4, 5), (2, 3, 2, 3, 2)])
@pytest.mark.parametrize(
    "options",
    [{}, {"affine": False}, {"momentum": None}, {"track_running_stats": False}],
    ids=["default", "no-affine", "cumulative", "no-running"],
)
def test_sync_batch_norm_in_one_process_against_torch(shape, options, rng, torch):
    """Outside a data-parallel job SyncBatchNorm is batch norm over any [N, C, ...] input,
    as PyTorch's is (which falls back to batch_norm there); tests/test_distributed.py runs
    it on N ranks."""
    ours = nn.SyncBatchNorm(3, dtype=np.float64, **options)
    theirs = torch.nn.SyncBatchNorm(3, dtype=torch.float64, **options)
    assert repr(ours) == repr(theirs)
    for mode in ("train", "train", "eval", "train"):
        getattr(ours, mode)()
        getattr(theirs, mode)()
        x = rng.normal(1.0, 2.0, size=shape)
        r = rng.normal(size=shape)
        xs, xt = symbp.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        y, yt = ours(xs), theirs(xt)
        np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-10)
        (y * symbp.tensor(r)).sum().backward()
        (yt * torch.tensor(r)).sum().backward()
        np.testing.assert_allclose(xs.grad, xt.grad.numpy(), rtol=1e-10, atol=1e-10)
        state = {k: v.numpy() for k, v in theirs.state_dict().items()}
        assert sorted(ours.state_dict()) == sorted(state)
        for k, v in ours.state_dict().items():
            np.testing.assert_allclose(v, state[k], rtol=1e-12, err_msg=k)


def test_convert_sync_batchnorm_as_torch(torch):
    def build(lib):
        return lib.Sequential(
            lib.Conv2d(1, 2, 3), lib.BatchNorm2d(2, momentum=0.3),
            lib.Sequential(lib.Flatten(), lib.Linear(8, 4), lib.BatchNorm1d(4, affine=False)),
            lib.ReLU(),
        )  # fmt: skip

    ours, theirs = build(nn), build(torch.nn)
    ours[2].eval()
    theirs[2].eval()
    params = [id(p) for p in ours.parameters()]
    running = ours[1].running_mean
    ours = nn.SyncBatchNorm.convert_sync_batchnorm(ours)
    theirs = torch.nn.SyncBatchNorm.convert_sync_batchnorm(theirs)
    assert repr(ours) == repr(theirs)  # the same layers, in the same places
    assert [(k, m.training) for k, m in ours.named_modules()] == [
        (k, m.training) for k, m in theirs.named_modules()
    ]
    assert [id(p) for p in ours.parameters()] == params  # the same parameters, not copies
    assert ours[1].running_mean is running
    assert list(ours.state_dict()) == list(theirs.state_dict())
    lone = nn.SyncBatchNorm.convert_sync_batchnorm(nn.BatchNorm1d(3))
    assert type(lone) is nn.SyncBatchNorm and lone.num_features == 3
    with pytest.raises(NotImplementedError, match="process_group"):
        nn.SyncBatchNorm(3, process_group=object())
    with pytest.raises(ValueError, match="at least 2D input"):
        nn.SyncBatchNorm(3)(symbp.tensor(np.ones(3)))


def test_a_module_assigned_again_keeps_its_place(torch):
    """``net.a = other`` for an existing submodule replaces it where it was, as in PyTorch
    (what convert_sync_batchnorm relies on); a new name goes last."""
    for lib in (nn, torch.nn):
        net = lib.Sequential(lib.Linear(2, 3), lib.ReLU(), lib.Linear(3, 1))
        net[0] = lib.Linear(2, 3, bias=False)
        net.add_module("1", lib.Tanh())
        net.extra = lib.Identity()
        assert [type(m).__name__ for m in net.children()] == [
            "Linear",
            "Tanh",
            "Linear",
            "Identity",
        ]


def test_batch_norm_float32_and_state_dict_from_torch(rng, torch):
    theirs = torch.nn.BatchNorm2d(4)
    theirs.train()
    for _ in range(3):
        theirs(torch.randn(5, 4, 3, 3) * 2 + 1)
    ours = nn.BatchNorm2d(4)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = rng.normal(size=(2, 4, 3, 3)).astype(np.float32)
    for mode in ("eval", "train"):
        getattr(ours, mode)()
        getattr(theirs, mode)()
        y, yt = ours(symbp.tensor(x)), theirs(torch.tensor(x))
        assert y.dtype == np.float32
        np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-4, atol=1e-4)
    assert ours.running_mean.dtype == np.float32
    ours.double()  # float buffers follow the module's dtype, as in PyTorch
    assert ours.running_mean.dtype == np.float64 and ours.num_batches_tracked.dtype == np.int64


def test_batch_norm_needs_more_than_one_value_per_channel_when_training():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(symbp.tensor(np.ones((1, 3), np.float32)))
    nn.BatchNorm1d(3).eval()(symbp.tensor(np.ones((1, 3), np.float32)))  # eval mode is fine


def test_batch_norm_traced_exposes_its_state_updates(rng):
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3))
    x = rng.normal(size=(4, 2, 5, 5)).astype(np.float32)
    traced = symbp.trace(model, x)
    updates = nn.state_updates(model)
    assert [(u.buffer, u.name) for u in updates] == [
        ("running_mean", "1.running_mean"),
        ("running_var", "1.running_var"),
    ]
    assert all(u.module is model[1] and u.new is not None for u in updates)
    # the traced updates, evaluated, are what an eager training forward writes
    env = {traced.inputs["x"]: x, **{p.node: p.numpy() for p in model.parameters()}}
    env.update({u.read: getattr(u.module, u.buffer) for u in updates})
    new = evaluate([u.new for u in updates], env)
    y = evaluate(traced.outputs, env)[0]
    eager = model(symbp.tensor(x))
    np.testing.assert_allclose(y, eager.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new[0], model[1].running_mean, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(new[1], model[1].running_var, rtol=1e-5, atol=1e-7)
    # eval mode reads the buffers and updates nothing
    model.eval()
    symbp.trace(model, x)
    assert [u.new for u in nn.state_updates(model)] == [None, None]


# ---------------------------------------------------------------- symbolic batch and checks


def test_traced_cnn_has_a_symbolic_batch_and_runs_at_any_batch_size(rng):
    symbp.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    traced = symbp.trace(model, np.zeros((7, 1, 8, 8), np.float32))
    shapes = {n.op: n.shape for n in toposort(traced.outputs)}
    assert shapes["conv2d"][0] == B and shapes["maxpool2d"] == (B, 4, 4, 4)
    assert traced.outputs[0].shape == (B, 3)
    for batch in (1, 3):
        x = rng.normal(size=(batch, 1, 8, 8)).astype(np.float32)
        env = {traced.inputs["x"]: x, **{p.node: p.numpy() for p in model.parameters()}}
        np.testing.assert_allclose(
            evaluate(traced.outputs, env)[0], model(symbp.tensor(x)).numpy(), rtol=1e-6
        )


def test_gradcheck_small_cnn_with_pooling(rng):
    symbp.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        nn.Tanh(),
        nn.MaxPool2d(2),
        nn.Conv2d(2, 2, 2),
        nn.Flatten(),
        nn.Linear(2, 3),
    )
    x = rng.normal(size=(2, 1, 4, 4))
    report = symbp.gradcheck(model, nn.CrossEntropyLoss(), x, np.array([0, 2]))
    assert report.ok, str(report)


def test_gradcheck_reports_max_pool_ties_honestly():
    model = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.MaxPool2d(2), nn.Flatten())
    model[0].weight.data = np.ones((1, 1, 1, 1))
    x = np.ones((1, 1, 2, 2))  # one window, four tied maxima
    with pytest.warns(symbp.GradcheckWarning, match="tied maxima"):
        report = symbp.gradcheck(model, lambda y: y.sum(), x)
    assert "max pooling" in " ".join(report.notes)


# ---------------------------------------------------------------- the tutorial CNN
# (symbp.models.tutorial_cnn: conv 3→32 5×5 pad 2, pool, conv 32→32, pool, conv 32→64, pool,
# flatten, 1024→64→10)


@pytest.mark.parametrize(
    "name,options",
    [
        ("SGD", {"lr": 0.001}),
        ("SGD", {"lr": 0.01, "momentum": 0.9}),
        ("Adam", {"lr": 0.001}),
    ],
    ids=["sgd", "sgd-momentum", "adam"],
)
def test_tutorial_cnn_trains_as_pytorch(name, options, rng, torch):
    torch.manual_seed(0)
    theirs = tutorial_cnn(torch.nn).double()
    ours = tutorial_cnn().double()
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    opt = getattr(symbp.optim, name)(ours.parameters(), **options)
    topt = getattr(torch.optim, name)(theirs.parameters(), **options)
    x = rng.normal(size=(2, 3, 32, 32))
    y = np.array([3, 7])
    loss_fn, tloss_fn = nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    for _ in range(5):
        opt.zero_grad()
        topt.zero_grad()
        loss = loss_fn(ours(symbp.tensor(x)), symbp.tensor(y))
        tloss = tloss_fn(theirs(torch.tensor(x)), torch.tensor(y))
        loss.backward()
        tloss.backward()
        opt.step()
        topt.step()
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-10)
    state = theirs.state_dict()
    for k, v in ours.state_dict().items():
        np.testing.assert_allclose(v, state[k].numpy(), rtol=1e-9, atol=1e-12, err_msg=k)


# ---------------------------------------------------------------- bad input, at trace time


class ThreeConvs(nn.Module):
    def __init__(self, wrong_channels=False):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(32 if wrong_channels else 16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 8, 5)

    def forward(self, x):
        return self.conv3(self.conv2(self.conv1(x)))


def test_mismatched_channels_name_the_layer_and_shapes():
    with pytest.raises(
        symbp.ShapeError,
        match=re.escape(
            "Conv2d 'conv2' expects 32 input channels, got input of shape [B,16,16,16]"
        ),
    ):
        symbp.trace(ThreeConvs(wrong_channels=True), (1, 3, 16, 16))


def test_conv_shrinking_below_one_names_the_layer_and_shapes():
    with pytest.raises(symbp.ShapeError) as err:
        symbp.trace(ThreeConvs(), (1, 3, 4, 4))
    msg = str(err.value)
    assert "Conv2d 'conv3'" in msg and "kernel 5×5" in msg and "[B,32,4,4]" in msg
    assert "at least 5×5" in msg
    pools = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.MaxPool2d(2))
    with pytest.raises(symbp.ShapeError, match=re.escape("MaxPool2d '2' (kernel 2×2, padding 0)")):
        symbp.trace(pools, (1, 1, 5, 5))


def test_non_4d_input_names_the_layer_and_shape():
    with pytest.raises(
        symbp.ShapeError,
        match=re.escape(
            "Conv2d 'conv1' expects a 4-D input [N, C, H, W], got input of shape [B,3,16]"
        ),
    ):
        symbp.trace(ThreeConvs(), (1, 3, 16))
    with pytest.raises(symbp.ShapeError, match=re.escape("MaxPool2d '0' expects a 4-D input")):
        symbp.trace(nn.Sequential(nn.MaxPool2d(2)), (2, 8))
    with pytest.raises(symbp.ShapeError, match=re.escape("BatchNorm2d '0' expects a 4-D input")):
        symbp.trace(nn.Sequential(nn.BatchNorm2d(3)), (2, 3))


def test_functional_errors_name_the_op_and_shapes():
    x = symbp.placeholder("x", (B, 3, 4, 4))
    with pytest.raises(
        symbp.ShapeError,
        match=re.escape("conv2d: weight [5,2,3,3] expects 2 input channels, got input of shape"),
    ):
        F.conv2d(x, symbp.placeholder("w", (5, 2, 3, 3)))
    with pytest.raises(
        symbp.ShapeError,
        match=re.escape(
            "conv2d: a 5×5 window (padding 0, stride 1) does not fit an input of shape "
            "[B,3,4,4]: the output would be 0×0"
        ),
    ):
        F.conv2d(x, symbp.placeholder("w", (5, 3, 5, 5)))
    with pytest.raises(ValueError, match="padding='same' is not supported for strided"):
        F.conv2d(x, symbp.placeholder("w", (5, 3, 3, 3)), stride=2, padding="same")
    with pytest.raises(ValueError, match="at most half the kernel size"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(symbp.ShapeError, match="float64 but weight is float32"):
        F.conv2d(
            symbp.placeholder("x", (1, 3, 4, 4), np.float64), symbp.placeholder("w", (5, 3, 3, 3))
        )


def test_printed_program_shows_the_window_arguments():
    x = symbp.placeholder("x", (B, 3, 8, 8))
    y = F.max_pool2d(F.conv2d(x, symbp.placeholder("w", (4, 3, 4, 4)), padding="same"), 3, 2, 1)
    text = symbp.print_program([y.node])
    assert "conv2d[stride=1 pad=1:2,1:2 dilation=1] x w" in text
    assert "maxpool2d[kernel=3 stride=2 pad=1]" in text


def test_layers_repr_like_torch():
    assert repr(nn.Conv2d(3, 32, 5, padding=2)) == (
        "Conv2d(3, 32, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))"
    )
    assert repr(nn.MaxPool2d(2)) == "MaxPool2d(kernel_size=2, stride=2, padding=0)"


def test_derive_caches_the_eager_cnn_backward(rng, monkeypatch):
    # one derivation serves every step of an eager loop: same structure, same cached program
    # (an empty cache of its own: the process-wide one may be full, and stays at its bound)
    monkeypatch.setattr(api, "_BACKWARD_CACHE", api.LRUCache(api.BACKWARD_CACHE_SIZE))
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 2))
    before = len(api._BACKWARD_CACHE)
    for _ in range(3):
        x = symbp.tensor(rng.normal(size=(2, 1, 6, 6)).astype(np.float32))
        nn.CrossEntropyLoss()(model(x), symbp.tensor([0, 1])).backward()
    assert len(api._BACKWARD_CACHE) == before + 1


def test_gradcheck_of_a_batch_norm_model_leaves_its_buffers_alone(rng):
    symbp.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = symbp.gradcheck(model, nn.CrossEntropyLoss(), rng.normal(size=(3, 1, 4, 4)), [0, 1, 1])
    assert report.ok, str(report)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_digits_cnn_example_learns(capsys):
    import runpy
    from pathlib import Path

    example = runpy.run_path(str(Path(__file__).parent.parent / "examples" / "digits_cnn.py"))
    assert example["main"](epochs=1) > 0.8  # the full 10 epochs reach 98% (see its docstring)
    assert "epoch 1" in capsys.readouterr().out
