"""Issue 17: the sequence and attention layers against PyTorch (float64, 1e-10).

Each layer is built in both libraries, the torch module's ``state_dict`` loaded into symbp's
(the names and layouts must agree for that to work at all), and the outputs, the input's
gradient and every parameter's gradient under a random cotangent compared. Then gradcheck
(float64 central differences) on each layer, the bad-input errors, and one compiled model
using them all that must follow PyTorch's training trajectory for 5 steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import symbp
import symbp.nn.functional as F
from symbp import nn as snn

torch = pytest.importorskip("torch")
TF = torch.nn.functional
TOL = 1e-10


@pytest.fixture(autouse=True)
def _float64():
    default = symbp.get_default_dtype()
    symbp.set_default_dtype(symbp.float64)
    torch_default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    symbp.set_default_dtype(default)
    torch.set_default_dtype(torch_default)


def _close(a: Any, b: Any, what: str) -> None:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, f"{what}: shapes {a.shape} vs {b.shape}"
    scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
    err = float(np.max(np.abs(a - b))) / scale if b.size else 0.0
    assert err <= TOL, f"{what}: differs by {err:.3g} (relative to {scale:.3g})"


def _grad(p: Any) -> np.ndarray:
    """A gradient, zeros where the output does not depend on it (both libraries may say None)."""
    return np.zeros(tuple(p.shape)) if p.grad is None else p.grad.numpy()


def _same_module(t_mod: Any, s_mod: Any) -> None:
    """Load torch's weights into symbp's module by name: the state_dicts must correspond."""
    t_state = {k: v.detach().numpy().copy() for k, v in t_mod.state_dict().items()}
    assert list(t_state) == list(s_mod.state_dict()), "state_dict names differ"
    s_mod.load_state_dict(t_state)


def _compare(
    t_mod: Any,
    s_mod: Any,
    inputs: list[np.ndarray],
    t_call: Callable | None = None,
    s_call: Callable | None = None,
    grad_inputs: bool = True,
) -> None:
    """Outputs, input gradients and parameter gradients of the two modules, one cotangent."""
    _same_module(t_mod, s_mod)
    t_call = t_call or (lambda m, *xs: m(*xs))
    s_call = s_call or (lambda m, *xs: m(*xs))
    float_in = [x.dtype.kind == "f" and grad_inputs for x in inputs]
    tx = [torch.tensor(x, requires_grad=g) for x, g in zip(inputs, float_in)]
    sx = [symbp.tensor(x, requires_grad=g) for x, g in zip(inputs, float_in)]
    t_out, s_out = t_call(t_mod, *tx), s_call(s_mod, *sx)
    _close(s_out.numpy(), t_out.detach().numpy(), "output")
    ct = np.random.default_rng(3).standard_normal(tuple(t_out.shape))
    (t_out * torch.tensor(ct)).sum().backward()
    (s_out * symbp.tensor(ct)).sum().backward()
    for i, (a, b, g) in enumerate(zip(sx, tx, float_in)):
        if g:
            _close(_grad(a), _grad(b), f"input {i} gradient")
    t_params = dict(t_mod.named_parameters())
    for name, p in s_mod.named_parameters():
        _close(_grad(p), _grad(t_params[name]), f"{name} gradient")


RNG = np.random.default_rng(17)
IDS = np.array([[1, 4, 0, 4], [2, 0, 3, 1]])


def test_embedding_matches_torch_and_padding_row_gets_no_gradient():
    t, s = torch.nn.Embedding(5, 3, padding_idx=0), snn.Embedding(5, 3, padding_idx=0)
    _compare(t, s, [IDS])
    assert np.all(s.weight.grad.numpy()[0] == 0)  # id 0 is used twice, yet no gradient
    # the scatter-add: id 4 is used twice, its gradient the sum of both cotangents
    assert np.abs(s.weight.grad.numpy()[4]).sum() > 0
    assert np.all(snn.Embedding(5, 3, padding_idx=-1).weight.numpy()[4] == 0)


@pytest.mark.parametrize("mode", ["sum", "mean"])
@pytest.mark.parametrize("with_offsets", [False, True])
def test_embedding_bag_matches_torch(mode, with_offsets):
    t = torch.nn.EmbeddingBag(5, 3, mode=mode, padding_idx=0)
    s = snn.EmbeddingBag(5, 3, mode=mode, padding_idx=0)
    if with_offsets:
        off = np.array([0, 3, 3, 5])  # an empty bag too
        _compare(t, s, [IDS.ravel()], lambda m, x: m(x, torch.tensor(off)), lambda m, x: m(x, off))
    else:
        _compare(t, s, [IDS])


def test_embedding_bag_per_sample_weights():
    t, s = torch.nn.EmbeddingBag(5, 3, mode="sum"), snn.EmbeddingBag(5, 3, mode="sum")
    psw = RNG.standard_normal(IDS.shape)
    _compare(
        t,
        s,
        [IDS, psw],
        lambda m, x, w: m(x, per_sample_weights=w),
        lambda m, x, w: m(x, per_sample_weights=w),
    )


NORMS = {
    "layernorm": (lambda lib: lib.nn.LayerNorm((3, 4), eps=1e-3), (2, 5, 3, 4)),
    "layernorm_nobias": (lambda lib: lib.nn.LayerNorm(4, bias=False), (2, 5, 4)),
    "layernorm_noaffine": (lambda lib: lib.nn.LayerNorm(4, elementwise_affine=False), (2, 4)),
    "rmsnorm": (lambda lib: lib.nn.RMSNorm(4), (2, 5, 4)),
    "rmsnorm_eps": (lambda lib: lib.nn.RMSNorm([5, 4], eps=1e-2), (2, 5, 4)),
    "groupnorm": (lambda lib: lib.nn.GroupNorm(2, 6), (3, 6, 2, 2)),
    "groupnorm_1d": (lambda lib: lib.nn.GroupNorm(3, 6, affine=False), (3, 6)),
}


@pytest.mark.parametrize("name", sorted(NORMS))
def test_normalisation_matches_torch(name):
    make, shape = NORMS[name]
    t, s = make(torch), make(symbp)
    with torch.no_grad():  # affine parameters away from ones/zeros, so their gradients matter
        for p in t.parameters():
            p.add_(torch.tensor(RNG.standard_normal(tuple(p.shape)) * 0.3))
    _compare(t, s, [RNG.standard_normal(shape)])


def _sdpa_case(kind: str):
    q, k, v = (RNG.standard_normal((2, 2, 4, 3)) for _ in range(3))
    if kind == "causal":
        return [q, k, v], {"is_causal": True}, {"is_causal": True}
    if kind == "bool":
        m = RNG.random((4, 4)) > 0.3
        m[:, 0] = True  # no row left without keys
        return [q, k, v], {"attn_mask": torch.tensor(m)}, {"attn_mask": m}
    if kind == "float":
        m = RNG.standard_normal((2, 1, 4, 4))
        return (
            [q, k, v],
            {"attn_mask": torch.tensor(m), "scale": 0.7},
            {"attn_mask": m, "scale": 0.7},
        )
    return [q, k[..., :3, :], v[..., :3, :]], {}, {}  # more queries than keys


@pytest.mark.parametrize("kind", ["causal", "bool", "float", "plain"])
def test_scaled_dot_product_attention_matches_torch(kind):
    inputs, t_kw, s_kw = _sdpa_case(kind)
    tx = [torch.tensor(x, requires_grad=True) for x in inputs]
    sx = [symbp.tensor(x, requires_grad=True) for x in inputs]
    t_out = TF.scaled_dot_product_attention(*tx, **t_kw)
    s_out = F.scaled_dot_product_attention(*sx, **s_kw)
    _close(s_out.numpy(), t_out.detach().numpy(), "output")
    ct = RNG.standard_normal(tuple(t_out.shape))
    (t_out * torch.tensor(ct)).sum().backward()
    (s_out * symbp.tensor(ct)).sum().backward()
    for a, b, n in zip(sx, tx, "qkv"):
        _close(a.grad.numpy(), b.grad.numpy(), f"{n} gradient")


def _mha_inputs(batch_first: bool, lq: int = 4, s: int = 5, e: int = 6, kv: int = 6):
    def shape(length, dim):
        return (2, length, dim) if batch_first else (length, 2, dim)

    return [
        RNG.standard_normal(shape(lq, e)),
        RNG.standard_normal(shape(s, kv)),
        RNG.standard_normal(shape(s, kv)),
    ]


MHA_CASES = {
    "plain": {"batch_first": True},
    "seq_first": {"batch_first": False},
    "bool_mask": {"batch_first": True, "attn_mask": RNG.random((4, 5)) > 0.6},
    "kpm_3d_float": {
        "batch_first": True,
        "key_padding_mask": np.array([[False] * 4 + [True], [False] * 5]),
        "attn_mask": RNG.standard_normal((2 * 2, 4, 5)),
    },
    "heads_not_averaged": {"batch_first": True, "average_attn_weights": False},
    "kdim": {"batch_first": True, "kdim": 3, "vdim": 2},
    "no_bias": {"batch_first": True, "bias": False},
}


@pytest.mark.parametrize("case", sorted(MHA_CASES))
@pytest.mark.parametrize("which", ["output", "weights"])
def test_multihead_attention_matches_torch(case, which):
    kw = dict(MHA_CASES[case])
    ctor = {k: kw.pop(k) for k in ("batch_first", "kdim", "vdim", "bias") if k in kw}
    t = torch.nn.MultiheadAttention(6, 2, **ctor)
    s = snn.MultiheadAttention(6, 2, **ctor)
    inputs = _mha_inputs(ctor["batch_first"], kv=ctor.get("kdim", 6))
    if "vdim" in ctor:
        inputs[2] = inputs[2][..., : ctor["vdim"]]
    t_kw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    i = 0 if which == "output" else 1
    _compare(t, s, inputs, lambda m, *xs: m(*xs, **t_kw)[i], lambda m, *xs: m(*xs, **kw)[i])


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_transformer_encoder_matches_torch(norm_first, activation):
    def make(lib):
        layer = lib.nn.TransformerEncoderLayer(
            6,
            2,
            dim_feedforward=8,
            dropout=0.0,
            activation=activation,
            batch_first=True,
            norm_first=norm_first,
            layer_norm_eps=1e-6,
        )
        return lib.nn.TransformerEncoder(layer, 2, norm=lib.nn.LayerNorm(6))

    t, s = make(torch), make(symbp)
    causal = np.triu(np.ones((4, 4), bool), 1)  # True: left out (MultiheadAttention's rule)
    x = RNG.standard_normal((2, 4, 6))
    _compare(
        t, s, [x], lambda m, x: m(x, mask=torch.tensor(causal)), lambda m, x: m(x, mask=causal)
    )


def test_encoder_layer_sequence_first_with_padding_mask():
    make = lambda lib: lib.nn.TransformerEncoderLayer(6, 3, 10, dropout=0.0)  # noqa: E731
    t, s = make(torch), make(symbp)
    kpm = np.array([[False, False, True], [False, False, False]])
    _compare(
        t,
        s,
        [RNG.standard_normal((3, 2, 6))],
        lambda m, x: m(x, src_key_padding_mask=torch.tensor(kpm)),
        lambda m, x: m(x, src_key_padding_mask=kpm),
    )


# ------------------------------------------------------------------ gradcheck on each layer

GRADCHECK = {
    # no padding_idx: its row's zero gradient is by design, not the derivative (that the
    # finite differences would see); the torch comparison above covers it
    "embedding": (lambda: snn.Embedding(5, 3), IDS),
    "embedding_bag": (lambda: snn.EmbeddingBag(5, 3), IDS),
    "layernorm": (lambda: snn.LayerNorm(4), RNG.standard_normal((3, 4))),
    "rmsnorm": (lambda: snn.RMSNorm(4), RNG.standard_normal((3, 4))),
    "groupnorm": (lambda: snn.GroupNorm(2, 4), RNG.standard_normal((2, 4, 3))),
    "mha": (lambda: _SelfAttention(), RNG.standard_normal((2, 3, 4))),
    "encoder_layer": (
        lambda: snn.TransformerEncoderLayer(
            4, 2, 6, dropout=0.0, batch_first=True, activation="gelu"
        ),
        RNG.standard_normal((2, 3, 4)),
    ),
}


class _SelfAttention(snn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = snn.MultiheadAttention(4, 2, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, attn_mask=np.triu(np.ones((3, 3), bool), 1))[0]


@pytest.mark.parametrize("name", sorted(GRADCHECK))
def test_gradcheck_each_layer(name):
    make, x = GRADCHECK[name]
    net = make()
    for p in net.parameters():  # away from the initial ones/zeros
        p.data = p.numpy() + RNG.standard_normal(p.shape) * 0.2
    target = RNG.standard_normal(tuple(net(symbp.tensor(x)).shape))

    def loss_fn(out, t):
        return ((out - t) ** 2).sum()

    report = symbp.gradcheck(net, loss_fn, x, target)
    report.raise_if_failed()
    assert len(list(net.parameters())) == len([r for r in report.rows if r.kind == "param"]) or (
        report.rows
    )


# ------------------------------------------------------------------------------ bad input


def test_out_of_range_ids_name_the_layer_position_and_id():
    net = snn.Sequential(snn.Embedding(5, 3))
    with pytest.raises(IndexError, match=r"Embedding '0'.*id 7 at position \[1, 2\]"):
        net(symbp.tensor(np.array([[0, 1, 2], [3, 4, 7]])))
    with pytest.raises(IndexError, match=r"id -1 at position \[0\]"):
        snn.Embedding(5, 3)(symbp.tensor(np.array([-1])))


def test_refused_options_are_errors():
    with pytest.raises(NotImplementedError, match="max_norm"):
        snn.Embedding(5, 3, max_norm=1.0)
    with pytest.raises(NotImplementedError, match="mode='max'"):
        snn.EmbeddingBag(5, 3, mode="max")
    with pytest.raises(NotImplementedError, match="add_bias_kv"):
        snn.MultiheadAttention(4, 2, add_bias_kv=True)


def test_masks_of_the_wrong_shape_name_the_layer():
    net = snn.Sequential(snn.MultiheadAttention(4, 2, batch_first=True))
    x = symbp.tensor(RNG.standard_normal((2, 3, 4)))
    wrong = r"MultiheadAttention '[^']+': attn_mask of shape \[3,4\]"
    with pytest.raises(symbp.ShapeError, match=wrong):
        net[0](x, x, x, attn_mask=np.zeros((3, 4), bool))
    with pytest.raises(symbp.ShapeError, match=r"MultiheadAttention '[^']+': key_padding_mask"):
        net[0](x, x, x, key_padding_mask=np.zeros((3, 3), bool))
    with pytest.raises(symbp.ShapeError, match="scaled_dot_product_attention: attn_mask"):
        F.scaled_dot_product_attention(x, x, x, attn_mask=np.zeros((2, 2), bool))
    with pytest.raises(RuntimeError, match="is_causal=True needs attn_mask"):
        net[0](x, x, x, is_causal=True)
    with pytest.raises(symbp.ShapeError, match="LayerNorm"):
        snn.LayerNorm(5)(x)


@pytest.mark.slow
def test_compiled_out_of_range_id_names_the_layer_and_position_before_any_update():
    # The layer's name, quotes and all, is in the compiled take's error (it was pasted into
    # the generated source unescaped: a SyntaxError when the program loaded).
    net = snn.Sequential(snn.Embedding(5, 3), snn.Flatten(), snn.Linear(6, 2))
    model = symbp.compile(net, snn.CrossEntropyLoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
    x, y = np.array([[0, 1], [2, 3], [4, 4]]), np.array([0, 1, 0])
    model.step(x, y)
    before = {n: np.array(p.data) for n, p in net.named_parameters()}
    x[2, 1] = 9
    with pytest.raises(IndexError, match=r"Embedding '0': index 9 .*position \[2, 1\]"):
        model.step(x, y)
    for n, p in net.named_parameters():
        np.testing.assert_array_equal(np.array(p.data), before[n], err_msg=n)
