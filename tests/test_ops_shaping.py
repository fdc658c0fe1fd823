"""Joining and shaping (issue 12): cat, stack, split, chunk, unbind, view, expand, repeat,
repeat_interleave, tile, flip, roll, squeeze/unsqueeze, movedim, swapaxes and F.pad, each
against NumPy and PyTorch (values, shapes, gradients), eager and compiled, with PyTorch's
errors named for the op."""

from __future__ import annotations

import re

import numpy as np
import pytest
import sympy
from conftest import assert_kernel_matches, kernel_results, numeric_grads

import symbp
from symbp import nn
from symbp.compiler import ops
from symbp.compiler.ir import B, Node, ShapeError
from symbp.compiler.reference import evaluate
from symbp.nn import functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _both(fn, *arrays, grad=True):
    """fn on symbp and on torch tensors of the same float64 arrays: (symbp out, torch out,
    symbp grads, torch grads), the gradients of sum(out · w) for a fixed random w."""
    xs = [symbp.tensor(a, requires_grad=grad) for a in arrays]
    ts = [torch.tensor(a, requires_grad=grad) for a in arrays]
    out, ref = fn(xs), fn(ts)
    if not grad:
        return out, ref, None, None
    outs = out if isinstance(out, (tuple, list)) else [out]
    refs = ref if isinstance(ref, (tuple, list)) else [ref]
    rng = np.random.default_rng(7)
    ws = [rng.normal(size=tuple(r.shape)) for r in refs]
    sum((o * symbp.tensor(w)).sum() for o, w in zip(outs, ws)).backward()
    sum((r * torch.tensor(w)).sum() for r, w in zip(refs, ws)).backward()
    grads = [None if x.grad is None else x.grad.numpy() for x in xs]
    return out, ref, grads, [None if t.grad is None else t.grad.numpy() for t in ts]


def _same(fn, *arrays):
    out, ref, g, tg = _both(fn, *arrays)
    outs = out if isinstance(out, (tuple, list)) else [out]
    refs = ref if isinstance(ref, (tuple, list)) else [ref]
    assert len(outs) == len(refs)
    for o, r in zip(outs, refs):
        assert tuple(o.shape) == tuple(r.shape)
        np.testing.assert_allclose(o.numpy(), r.detach().numpy(), rtol=0, atol=0)
    for a, b in zip(g, tg):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    return out


RNG = np.random.default_rng(0)
A = RNG.normal(size=(2, 3, 4))
M = RNG.normal(size=(3, 4))
V = RNG.normal(size=(5,))

# name -> (fn on a list of tensors, arrays): the same spelling on symbp and torch tensors
SAME = {
    "cat0": (lambda t: symbp.cat(t, 0) if _is(t) else torch.cat(t, 0), [M, M[:1]]),
    "cat-neg": (lambda t: _lib(t).cat([t[0], t[1]], dim=-1), [A, A[..., :2]]),
    "concat": (lambda t: _lib(t).concat(t, 1), [M, M]),
    "concatenate": (lambda t: _lib(t).concatenate(t, 1), [M, M]),
    "stack0": (lambda t: _lib(t).stack(t), [M, M * 2]),
    "stack-neg": (lambda t: _lib(t).stack(t, dim=-2), [M, M * 2, M]),
    "hstack1d": (lambda t: _lib(t).hstack(t), [V, V[:2]]),
    "hstack2d": (lambda t: _lib(t).hstack(t), [M, M[:, :1]]),
    "vstack1d": (lambda t: _lib(t).vstack(t), [V, V]),
    "vstack2d": (lambda t: _lib(t).vstack(t), [M, M[:2]]),
    "split-int": (lambda t: t[0].split(3, 1), [M]),
    "split-list": (lambda t: t[0].split([1, 0, 3], dim=-1), [M]),
    "split-fn": (lambda t: _lib(t).split(t[0], 2), [M]),
    "chunk": (lambda t: t[0].chunk(3, dim=1), [A]),
    "chunk-uneven": (lambda t: t[0].chunk(3), [V]),
    "unbind": (lambda t: t[0].unbind(1), [A]),
    "unbind-fn": (lambda t: _lib(t).unbind(t[0], -1), [M]),
    "view": (lambda t: t[0].view(4, -1), [M]),
    "view-tuple": (lambda t: t[0].view((2, -1, 2)), [M]),
    "view_as": (lambda t: t[0].view_as(t[1]), [M, A[0].T]),
    "reshape_as": (lambda t: t[0].reshape_as(t[1]), [A, A.reshape(4, 6)]),
    "expand": (lambda t: t[0].expand(2, 3, 4), [M]),
    "expand-keep": (lambda t: t[0].reshape(3, 1, 4).expand(-1, 5, -1), [M]),
    "expand_as": (lambda t: t[0].expand_as(t[1]), [M[:1], M]),
    "broadcast_to": (lambda t: _lib(t).broadcast_to(t[0], (2, 3, 4)), [M[:, :1]]),
    "repeat": (lambda t: t[0].repeat(2, 1, 3), [M]),
    "repeat-tuple": (lambda t: t[0].repeat((1, 2)), [M]),
    "tile": (lambda t: t[0].tile((2,)), [M]),
    "tile-fn": (lambda t: _lib(t).tile(t[0], (2, 1, 1, 2)), [A]),
    "repeat_interleave": (lambda t: t[0].repeat_interleave(2, dim=1), [M]),
    "repeat_interleave-flat": (lambda t: t[0].repeat_interleave(3), [M]),
    "repeat_interleave-fn": (lambda t: _lib(t).repeat_interleave(t[0], 2, dim=-1), [A]),
    "flip": (lambda t: t[0].flip(0, 2), [A]),
    "flip-fn": (lambda t: _lib(t).flip(t[0], (-1,)), [A]),
    "flip-kw": (lambda t: t[0].flip(dims=(1, 0)), [M]),
    "flip-fn-kw": (lambda t: _lib(t).flip(t[0], dims=[2]), [A]),
    "concatenate-axis": (lambda t: _lib(t).concatenate(t, axis=-1), [M, M]),
    "fliplr": (lambda t: _lib(t).fliplr(t[0]), [M]),
    "flipud": (lambda t: t[0].flipud(), [M]),
    "roll": (lambda t: t[0].roll(2, 1), [M]),
    "roll-many": (lambda t: t[0].roll((1, -5), (0, -1)), [A]),
    "roll-flat": (lambda t: _lib(t).roll(t[0], 5), [M]),
    "roll-same-dim": (lambda t: t[0].roll((1, 2), (1, 1)), [M]),
    "squeeze": (lambda t: t[0].reshape(1, 3, 1, 4).squeeze(), [M]),
    "squeeze-dim": (lambda t: t[0].reshape(1, 3, 1, 4).squeeze(2), [M]),
    "squeeze-neg": (lambda t: t[0].reshape(1, 3, 1, 4).squeeze(-2), [M]),
    "squeeze-not-1": (lambda t: t[0].reshape(1, 3, 1, 4).squeeze(1), [M]),
    "squeeze-tuple": (lambda t: t[0].reshape(1, 3, 1, 4).squeeze((0, 1, 2)), [M]),
    "squeeze-fn": (lambda t: _lib(t).squeeze(t[0].reshape(1, 12), 0), [M]),
    "unsqueeze0": (lambda t: t[0].unsqueeze(0), [M]),
    "unsqueeze-end": (lambda t: t[0].unsqueeze(2), [M]),
    "unsqueeze-neg": (lambda t: t[0].unsqueeze(-1), [M]),
    "unsqueeze-neg-mid": (lambda t: _lib(t).unsqueeze(t[0], -2), [M]),
    "movedim": (lambda t: t[0].movedim(0, -1), [A]),
    "movedim-tuple": (lambda t: _lib(t).movedim(t[0], (0, 1), (2, 0)), [A]),
    "moveaxis": (lambda t: _lib(t).moveaxis(t[0], -1, 0), [A]),
    "swapaxes": (lambda t: t[0].swapaxes(0, -1), [A]),
    "swapdims": (lambda t: _lib(t).swapdims(t[0], 1, 2), [A]),
}


def _is(t):
    return isinstance(t[0], symbp.Tensor)


def _lib(t):
    return symbp if _is(t) else torch


@pytest.mark.parametrize("name", sorted(SAME))
def test_against_torch(name):
    fn, arrays = SAME[name]
    _same(fn, *arrays)


# F.pad: every mode against PyTorch, in PyTorch's pad order (last dim first)
PADS = [
    ("constant", (1, 2), (3, 4), None),
    ("constant", (1, 2, 0, 3), (3, 4), 0.25),
    ("constant", (-1, 2, 1, -2), (3, 4), 1.5),  # negative widths crop
    ("constant", (1, 1, 1, 1, 1, 1), (2, 3, 4), None),
    ("reflect", (3, 2), (3, 4), None),
    ("reflect", (1, 2, 2, 0), (2, 3, 4), None),
    ("reflect", (1, 1, 2, 1), (1, 2, 3, 4), None),
    ("replicate", (4, 0), (3, 4), None),
    ("replicate", (2, 1, 3, 2), (2, 3, 4), None),
    ("replicate", (1, 1, 1, 0, 2, 1), (1, 2, 3, 4), None),
    ("circular", (4, 2), (3, 4), None),
    ("circular", (1, 3, 2, 1), (1, 2, 3, 4), None),
]


@pytest.mark.parametrize("mode, pad, shape, value", PADS, ids=[f"{p[0]}{p[1]}" for p in PADS])
def test_pad_against_torch(mode, pad, shape, value):
    x = np.random.default_rng(len(pad)).normal(size=shape)
    kw = {} if value is None else {"value": value}
    _same(lambda t: (F.pad if _is(t) else TF.pad)(t[0], pad, mode, **kw), x)


def test_pad_gradient_against_central_differences():
    """The reflected, replicated and wrapped borders send their cotangent back onto the
    entries they copy: the gradient from float64 central differences of NumPy's np.pad."""
    x = np.random.default_rng(1).normal(size=(2, 3, 4))
    w = np.random.default_rng(2).normal(size=(2, 6, 7))
    for mode, np_mode in [("reflect", "reflect"), ("replicate", "edge"), ("circular", "wrap")]:
        t = symbp.tensor(x, requires_grad=True)
        (F.pad(t, (1, 2, 2, 1), mode) * symbp.tensor(w)).sum().backward()

        def loss(a, np_mode=np_mode):
            return np.sum(np.pad(a, ((0, 0), (2, 1), (1, 2)), np_mode) * w)

        (fd,) = numeric_grads(loss, [x])
        np.testing.assert_allclose(t.grad.numpy(), fd, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize(
    "layer, torch_layer, shape",
    [
        (nn.ZeroPad2d(1), torch.nn.ZeroPad2d(1), (1, 2, 3, 4)),
        (nn.ZeroPad2d((1, 0, 2, 1)), torch.nn.ZeroPad2d((1, 0, 2, 1)), (2, 3, 4)),
        (nn.ConstantPad1d(2, 0.5), torch.nn.ConstantPad1d(2, 0.5), (2, 3, 4)),
        (nn.ConstantPad2d((1, 2, 0, 1), -1.0), torch.nn.ConstantPad2d((1, 2, 0, 1), -1.0),
         (1, 2, 3, 4)),
        (nn.ReflectionPad1d(2), torch.nn.ReflectionPad1d(2), (2, 3, 4)),
        (nn.ReflectionPad2d((1, 2, 2, 0)), torch.nn.ReflectionPad2d((1, 2, 2, 0)), (1, 2, 3, 4)),
        (nn.ReplicationPad1d((3, 1)), torch.nn.ReplicationPad1d((3, 1)), (2, 3, 4)),
        (nn.ReplicationPad2d(2), torch.nn.ReplicationPad2d(2), (1, 2, 3, 4)),
        (nn.CircularPad1d(1), torch.nn.CircularPad1d(1), (2, 3, 4)),
        (nn.CircularPad2d((1, 2, 2, 0)), torch.nn.CircularPad2d((1, 2, 2, 0)), (1, 2, 3, 4)),
    ],
)  # fmt: skip
def test_padding_layers_against_torch(layer, torch_layer, shape):
    x = np.random.default_rng(3).normal(size=shape)
    _same(lambda t: (layer if _is(t) else torch_layer)(t[0]), x)


def test_int_and_float_cat_promotes_as_torch():
    i = symbp.tensor([[1, 2]])
    f = symbp.tensor([[0.5, 1.5]], dtype=symbp.float64)
    out = symbp.cat([i, f])
    ref = torch.cat([torch.tensor([[1, 2]]), torch.tensor([[0.5, 1.5]], dtype=torch.float64)])
    assert out.dtype == symbp.float64 and str(ref.dtype) == "torch.float64"
    np.testing.assert_array_equal(out.numpy(), ref.numpy())
    assert symbp.cat([i, i]).dtype == symbp.int64


def test_split_pieces_and_chunk_counts_are_torch_s():
    x = symbp.tensor(np.arange(10.0))
    for n in (1, 2, 3, 4, 6, 10, 11):
        got = [p.shape for p in x.chunk(n)]
        assert got == [tuple(p.shape) for p in torch.arange(10.0).chunk(n)]
        got = [p.shape for p in x.split(n)]
        assert got == [tuple(p.shape) for p in torch.arange(10.0).split(n)]


def test_squeeze_and_unsqueeze_every_form():
    x = symbp.zeros(1, 3, 1, 4)
    tx = torch.zeros(1, 3, 1, 4)
    for dim in (None, 0, 1, 2, 3, -1, -2, -4, (0, 2), (1, 3), (-4, -2), ()):
        got = x.squeeze() if dim is None else x.squeeze(dim)
        want = tx.squeeze() if dim is None else tx.squeeze(dim)
        assert got.shape == tuple(want.shape), dim
    for dim in range(-5, 5):
        assert x.unsqueeze(dim).shape == tuple(tx.unsqueeze(dim).shape), dim
    s = symbp.tensor(2.0)  # a 0-d tensor: dims 0 and -1, as PyTorch
    assert (
        s.squeeze(0).shape == () and s.unsqueeze(0).shape == (1,) and s.unsqueeze(-1).shape == (1,)
    )


# ---------------------------------------------------------------- errors


def test_cat_of_mismatched_shapes_names_the_op_the_tensor_and_the_shapes():
    with pytest.raises(ShapeError, match=r"cat: .*tensor 0 is \[3,4\], tensor 1 is \[3,2\]"):
        symbp.cat([symbp.zeros(3, 4), symbp.zeros(3, 2)])
    with pytest.raises(ShapeError, match=r"cat: .*same number of dimensions.*tensor 1 is \[4\]"):
        symbp.cat([symbp.zeros(3, 4), symbp.zeros(4)])
    with pytest.raises(ShapeError, match=r"cat: tensor 1 is float64 but tensor 0 is float32"):
        symbp.cat([symbp.zeros(3), symbp.zeros(3, dtype=symbp.float64)])
    with pytest.raises(IndexError, match=r"cat: dimension out of range .*\[-2, 1\].* got 2"):
        symbp.cat([symbp.zeros(3, 4)], dim=2)
    with pytest.raises(ValueError, match="cat: expects a non-empty list"):
        symbp.cat([])
    with pytest.raises(TypeError, match="cat: expects a list or tuple of tensors"):
        symbp.cat(symbp.zeros(3))
    with pytest.raises(
        ShapeError, match=r"stack: .*equal size.*\[3\] at entry 0 and \[4\] at entry 1"
    ):
        symbp.stack([symbp.zeros(3), symbp.zeros(4)])


def test_shaping_errors_are_torch_s_and_name_the_op():
    x = symbp.zeros(3, 4)
    with pytest.raises(ValueError, match=r"split: .*sum exactly to 4.*split_sizes=\[1, 1\]"):
        x.split([1, 1], 1)
    with pytest.raises(
        ShapeError, match=r"expand: the expanded size of the tensor \(5\) must match"
    ):
        x.expand(3, 5)
    with pytest.raises(ShapeError, match="expand: the size -1 is not allowed"):
        x.expand(-1, 3, 4)
    with pytest.raises(ShapeError, match="repeat: the number of repeat dims"):
        x.repeat(2)
    with pytest.raises(ValueError, match="flip: dim 1 appears multiple times"):
        x.flip(1, -1)
    with pytest.raises(IndexError, match=r"squeeze: dimension out of range"):
        x.squeeze(2)
    with pytest.raises(IndexError, match=r"unsqueeze: dimension out of range .*\[-3, 2\]"):
        x.unsqueeze(3)
    with pytest.raises(ValueError, match="roll: shifts and dimensions must align"):
        x.roll((1, 2), 0)
    with pytest.raises(ValueError, match="movedim: invalid source or destination"):
        x.movedim((0, 1), 0)
    with pytest.raises(NotImplementedError, match="repeat_interleave: repeats per entry"):
        x.repeat_interleave(symbp.tensor([1, 2, 3]), dim=0)
    with pytest.raises(ShapeError, match="fliplr: input must be at least 2-D"):
        symbp.fliplr(symbp.zeros(3))


def test_pad_errors_are_torch_s():
    x = symbp.zeros(3, 4)
    with pytest.raises(ShapeError, match="pad: reflect padding of 4 along dim 1 must be at most 3"):
        F.pad(x, (4, 0), "reflect")
    with pytest.raises(
        ShapeError, match="pad: circular padding of 5 along dim 1 must be at most 4"
    ):
        F.pad(x, (5, 0), "circular")
    with pytest.raises(NotImplementedError, match="needs a 3-D or 4-D input"):
        F.pad(x, (1, 1, 1, 1), "reflect")  # PyTorch: 2-D input, 4 pads: not supported
    with pytest.raises(ValueError, match='padding mode "reflect" does not take a value'):
        F.pad(x, (1, 1), "reflect", value=2.0)
    with pytest.raises(ValueError, match="mode 'wrap' is none of"):
        F.pad(x, (1, 1), "wrap")
    with pytest.raises(ValueError, match="padding length must be even"):
        F.pad(x, (1, 1, 1))


# ---------------------------------------------------------------- the batch dimension B


def test_traced_shapes_keep_the_batch_symbol():
    x = symbp.placeholder("x", (B, 4))
    y = symbp.placeholder("y", (B, 3))
    assert symbp.cat([x, y], 1).shape == (B, 7)
    assert symbp.stack([x, x]).shape == (2, B, 4)
    assert [p.shape for p in x.split([1, 3], 1)] == [(B, 1), (B, 3)]
    assert x.flip(0, 1).shape == (B, 4)  # a flip keeps the size, even B's
    assert F.pad(x, (1, 2)).shape == (B, 7)
    assert x.unsqueeze(1).expand(-1, 2, -1).shape == (B, 2, 4)
    assert x.repeat(1, 2).shape == (B, 8) and x.repeat_interleave(2, 1).shape == (B, 8)
    assert x.movedim(0, 1).shape == (4, B)


def test_changing_the_batch_dimension_is_a_clear_error():
    """Joining two [B, n] batches along B would make a batch of 2B, which no compiled
    program of symbp has (its buffers are sized by the one batch B): an error naming the op
    and the dim, not a B-expression nothing downstream expects."""
    x = symbp.placeholder("x", (B, 4))
    with pytest.raises(ShapeError, match=r"cat: dim 0 of .* is the batch dimension B"):
        symbp.cat([x, x])
    with pytest.raises(ShapeError, match=r"split: dim 0 of .* is the batch dimension B"):
        x.split(2)
    with pytest.raises(ShapeError, match=r"pad: dim 0 of .* is the batch dimension B"):
        F.pad(x, (0, 0, 1, 0))
    with pytest.raises(ShapeError, match="repeat: repeating dim 0"):
        x.repeat(2, 1)
    with pytest.raises(ShapeError, match=r"roll: dim 0 of .* is the batch dimension B"):
        x.roll(1, 0)


# ---------------------------------------------------------------- formulas


def test_formulas_print_cat_as_a_block_and_a_crop_as_a_slice():
    from symbp.formulas import Cat, Crop, Flip, TextPrinter

    a, b = sympy.symbols("a b")
    p = TextPrinter({"shapes": {a: (2, 3), b: (1, 3)}})
    tup = sympy.Tuple
    assert p.doprint(Cat(a, b, 0)) == "[a; b]"
    assert p.doprint(Cat(a, a, 1)) == "[a, a]"
    assert p.doprint(Crop(a, tup(tup(0, 2), tup(1, 3)))) == "a[:, 1:3]"
    assert p.doprint(Flip(a, tup(1))) == "flip(a)"
    # index notation: a flip reads its argument at mirrored indices, a crop at shifted ones
    assert p.indexed(Flip(a, tup(0))) == ("[i,j]", "a[−i+1,j]")
    assert p.indexed(Crop(a, tup(tup(0, 2), tup(1, 3))))[1] == "a[i′,j′+1]"


# ---------------------------------------------------------------- compiled


def _pad(x, pads, mode="constant", **kw):
    return F.pad(x, pads, mode, **kw)


# name -> (f(X, W), shape of X, shape of W, None): each shaping op inside a program, read
# through by its consumer (views) or computed into a buffer (cat, pad_grad)
CASES = {
    "cat": (lambda x, w: symbp.cat([x.flip(0), w.exp(), x], 1), (3, 2), (3, 4), None),
    "cat0": (lambda x, w: symbp.cat([x, w * 2], 0) * 3, (2, 3), (1, 3), None),
    "stack": (lambda x, w: symbp.stack([x, x * w], 1), (3, 4), (3, 4), None),
    "flip": (lambda x, w: x.flip(0, 1) * w, (3, 4), (4,), None),
    "flip_of_crop": (lambda x, w: x.split([1, 3], 1)[1].flip(1) * w, (3, 4), (3,), None),
    "roll": (lambda x, w: x.roll((1, -1), (0, 1)) * w, (3, 4), (4,), None),
    "roll_of_cat": (lambda x, w: symbp.cat([x, w], 1).roll(2, 1), (3, 2), (3, 3), None),
    "chunk": (lambda x, w: x.chunk(2, 1)[1] * w, (3, 4), (2,), None),
    "unbind": (lambda x, w: x.unbind(1)[2] * w, (3, 4), (3,), None),
    "pad_constant": (lambda x, w: _pad(x, (1, 2, 0, 1), value=0.5) * w, (3, 4), (4, 7), None),
    "pad_reflect": (lambda x, w: _pad(x, (3, 2), "reflect") * w, (3, 4), (3, 9), None),
    "pad_replicate": (lambda x, w: _pad(x, (2, 1, 1, 2), "replicate") * w, (2, 3, 4),
                      (2, 6, 7), None),
    "pad_circular": (lambda x, w: _pad(x, (4, 1), "circular") * w, (3, 4), (3, 9), None),
    "pad_of_pad": (lambda x, w: _pad(_pad(x, (1, 1), "reflect"), (2, 0), value=1.5) * w,
                   (3, 4), (3, 8), None),
    "pad_of_flip": (lambda x, w: _pad(x.flip(1), (1, 2), "reflect").flip(0) * w, (3, 4),
                    (3, 7), None),
    "repeat": (lambda x, w: x.repeat(2, 3) * w, (3, 4), (6, 12), None),
    "repeat_interleave": (lambda x, w: x.repeat_interleave(2, dim=0) * w, (3, 4), (4,), None),
    "expand_movedim": (lambda x, w: x.unsqueeze(1).expand(-1, 2, -1).movedim(0, -1) * w,
                       (3, 4), (3,), None),
    "flip_matmul": (lambda x, w: x.flip(1) @ w.roll(1, 0), (3, 4), (4, 2), None),
}  # fmt: skip

CHUNK = 10


@pytest.fixture(scope="module")
def results(tmp_cache):
    return kernel_results(
        CASES, CHUNK, lambda rng, xs, ws, _: (rng.normal(size=xs), rng.normal(size=ws))
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.slow
def test_compiled_matches_eager(name, dtype, results):
    assert_kernel_matches(results, name, dtype)


# ---------------------------------------------------------------- a compiled model


class _CatSplit:
    """A model joining and splitting features: split the hidden layer, roll one part,
    join them with a piece of the input, pad the join reflectively, read it out. The same
    code runs on symbp (``lib=symbp``) and on torch."""

    def __init__(self, lib, pad):
        self.lib, self.pad = lib, pad

    def __call__(self, net, x):
        h = net.fc1(x).tanh()
        a, b = h.split([2, 4], dim=1)
        x0, _ = x.split([1, 3], 1)
        z = self.lib.cat([b, a.roll(1, 1) * a, x0], 1)
        return net.fc2(self.pad(z.unsqueeze(1), (1, 2), "reflect").squeeze(1))


class _SymbpNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 6, dtype=np.float64)
        self.fc2 = nn.Linear(10, 3, dtype=np.float64)

    def forward(self, x):
        return _CatSplit(symbp, F.pad)(self, x)


class _TorchNet(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 6, dtype=torch.float64)
        self.fc2 = torch.nn.Linear(10, 3, dtype=torch.float64)
        with torch.no_grad():
            for name, p in self.named_parameters():
                p.copy_(torch.tensor(dict(net.named_parameters())[name].numpy()))

    def forward(self, x):
        return _CatSplit(torch, TF.pad)(self, x)


@pytest.mark.slow
def test_compiled_model_with_cat_and_split_trains_as_eager_and_torch(tmp_cache):
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(8, 4)), rng.normal(size=(8, 3))
    nets = [_SymbpNet() for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    tnet = _TorchNet(nets[0])
    lr, steps = 0.1, 4

    def mse(out, t):
        return ((out - t) ** 2).mean()

    compiled = symbp.compile(nets[0], mse, symbp.optim.SGD(nets[0].parameters(), lr=lr))
    eager_opt = symbp.optim.SGD(nets[1].parameters(), lr=lr)
    torch_opt = torch.optim.SGD(tnet.parameters(), lr=lr)
    for step in range(steps + 1):
        xb, yb = (x, y) if step < steps else (x[:1], y[:1])  # and a batch of one
        got = compiled.step(xb, yb)
        eager_opt.zero_grad()
        loss = mse(nets[1](symbp.tensor(xb)), symbp.tensor(yb))
        loss.backward()
        eager_opt.step()
        torch_opt.zero_grad()
        tloss = mse(tnet(torch.tensor(xb)), torch.tensor(yb))
        tloss.backward()
        torch_opt.step()
        np.testing.assert_allclose(got, float(loss), rtol=1e-12)
        np.testing.assert_allclose(got, tloss.item(), rtol=1e-10)
        for name, p in tnet.named_parameters():
            want = p.detach().numpy()
            for net in nets:
                got_p = dict(net.named_parameters())[name].numpy()
                np.testing.assert_allclose(got_p, want, rtol=1e-10, atol=1e-12, err_msg=name)


def test_formulas_of_a_model_with_cat_split_and_pads_evaluate_to_its_gradients():
    symbp.manual_seed(0)
    l1, l2 = nn.Linear(3, 4, dtype=np.float64), nn.Linear(10, 1, dtype=np.float64)
    x = symbp.randn(5, 3, dtype=symbp.float64)
    t = symbp.randn(5, 1, dtype=symbp.float64)
    h = symbp.sigmoid(l1(x))
    a, b = h.split([1, 3], 1)
    wide = F.pad(b.unsqueeze(1), (1, 0), "reflect").squeeze(1)  # [5, 4]
    z = symbp.cat([b, a.flip(1), F.pad(a, (1, 0)), wide], 1)
    loss = ((l2(z) - t) ** 2).sum() / 2
    f = symbp.formulas(loss)
    text = str(f)
    # a split's piece is a slice, printed as Python writes it (no bound at an axis' end)
    assert "[h[:, 1:], h[:, :1], pad(h[:, :1])" in text and "pad_grad(" in text
    values = f.evaluate()  # every printed equation, evaluated with NumPy
    loss.backward()
    for lin, names in ((l1, ("W", "b")), (l2, ("W′", "b′"))):
        for name, p in zip(names, (lin.weight, lin.bias)):
            printed = values[f.grad(name).lhs].reshape(p.shape)
            np.testing.assert_allclose(printed, p.grad.numpy(), rtol=1e-12, atol=1e-15)


class _Views(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(10, 2)

    def forward(self, x):
        a, b = x.split([1, 3], 1)
        z = symbp.cat([b.flip(1), F.pad(a, (2, 1), "replicate"), b.roll(1, 1)], 1)
        return self.fc(z)


@pytest.mark.slow
def test_views_are_read_through_and_cat_is_one_kernel(tmp_cache):
    """Split pieces, flips, rolls and pads are never stored: the cat's loops read x at moved
    indices, and the one buffer between x and the matrix product is the cat's."""
    net = _Views()
    model = symbp.compile(
        net, lambda o, t: ((o - t) ** 2).mean(), symbp.optim.SGD(net.parameters(), lr=0.1)
    )
    model.build(np.zeros((4, 4), np.float32), np.zeros((4, 2), np.float32))
    code = model.source
    forward = code[code.index("# ---- forward") : code.index("# ---- backward")]
    assert len(re.findall(r"cat0\[i, [^\]]*\] = ", forward)) == 3  # a loop nest per piece
    assert "copy" not in forward  # no view copied into a buffer
    assert "cat0[i, j] = x[i, (3 - 1 - j) + 1]" in forward  # flip of the piece 1:4
    assert "x[i, ((j + 2) % 3) + 1]" in forward  # its roll by one


def _leaf(name, shape):
    return Node("input", (), name, shape, np.dtype(np.float64))


# each op's node from a leaf x of the given shape: its adjoint must be its transpose
ADJOINTS = {
    "cat": ((3, 2), lambda x: ops.cat([x, ops.flip(x, (0,)), x], 1)),
    "flip": ((3, 4), lambda x: ops.flip(x, (0, 1))),
    "roll": ((3, 4), lambda x: ops.roll(x, [(0, 1), (1, 3)])),
    "crop": ((3, 4), lambda x: ops.crop(x, [(1, 3), (0, 4)])),
    **{
        f"pad-{mode}": ((3, 4), lambda x, mode=mode: ops.pad(x, [(1, 2), (3, 2)], mode, 0.0))
        for mode in ops.PAD_MODES
    },
    **{
        f"pad_grad-{mode}": ((6, 9), lambda x, mode=mode: ops.pad_grad(x, [(1, 2), (3, 2)], mode))
        for mode in ops.PAD_MODES[1:]
    },
}


@pytest.mark.parametrize("name", sorted(ADJOINTS))
def test_adjoint_is_the_transpose(name):
    """<op(x), y> = <x, adjoint(y)> for random x, y: each linear op's adjoint rule (and so
    a gradient of a gradient through it, pad_grad's being the pad) is exact."""
    shape, build = ADJOINTS[name]
    x = _leaf("x", shape)
    out = build(x)
    y = _leaf("y", out.shape)
    adj = list(ops.OPS[out.op].adjoint(out, y))
    rng = np.random.default_rng(11)
    xv, yv = rng.normal(size=shape), rng.normal(size=out.shape)
    fwd, *vals = evaluate([out, *out.src, *adj], {x: xv, y: yv})
    srcs, backs = vals[: len(adj)], vals[len(adj) :]
    assert [b.shape for b in backs] == [s.shape for s in srcs]
    inner = sum(np.sum(s * b) for s, b in zip(srcs, backs))
    np.testing.assert_allclose(np.sum(fwd * yv), inner, rtol=1e-13)


class _Maps(nn.Module):
    """Image-sized joins and pads: their batch loops run on all cores (prange)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(np.random.default_rng(4).normal(size=(2, 48, 48)))

    def forward(self, x):
        h = x * self.w
        z = symbp.cat([h, h.flip(3)], 1)  # [B, 4, 48, 48]
        return F.pad(z, (1, 1, 2, 1), "reflect").sum((1, 2, 3))


@pytest.mark.slow
def test_big_joins_and_pads_run_their_batch_loop_on_all_cores(tmp_cache):
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(3, 2, 48, 48)), rng.normal(size=(3,))
    net = _Maps()

    def mse(out, t):
        return ((out - t) ** 2).mean()

    loss = mse(net(symbp.tensor(x)), symbp.tensor(y))
    loss.backward()
    want = net.w.grad.numpy().copy()
    net.w.grad = None
    compiled = symbp.compile(net, mse)
    got_loss, got = compiled.loss_and_grads(x, y)
    assert "for i in prange(B):" in compiled.source.split("# ---- backward")[0]  # the cat
    assert "dpad" in compiled.source
    np.testing.assert_allclose(got_loss, float(loss), rtol=1e-12)
    np.testing.assert_allclose(got["w"], want, rtol=1e-12, atol=1e-12)
