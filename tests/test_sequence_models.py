"""Issue 17: the sequence models of examples/ train compiled as PyTorch trains them.

Each example's model is written once as a function of the library; here both are built
small (compile time), PyTorch's initial weights copied into symbp's, and five compiled
steps in float64 must give PyTorch's losses and parameters to 1e-9. Then a few tokens are
sampled from each (greedy) and must be the same.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import symbp
import symbp.nn.functional as F
from symbp import nn as snn

torch = pytest.importorskip("torch")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
STEPS, RTOL = 5, 1e-9


def _example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def float64():
    default = symbp.get_default_dtype()
    symbp.set_default_dtype(symbp.float64)
    yield
    symbp.set_default_dtype(default)


def _copy_weights(t_net: Any, s_net: Any) -> None:
    s_params = dict(s_net.named_parameters())
    t_params = dict(t_net.named_parameters())
    assert list(s_params) == list(t_params), "parameter names differ"
    for name, p in t_params.items():
        s_params[name].data = p.detach().numpy().copy()


def _assert_same(losses, ref_losses, s_net, t_net) -> None:
    np.testing.assert_allclose(losses, ref_losses, rtol=RTOL, atol=0, err_msg="losses")
    t_params = dict(t_net.named_parameters())
    for name, p in s_net.named_parameters():
        ref = t_params[name].detach().numpy()
        err = np.max(np.abs(np.asarray(p.data) - ref)) / max(1.0, np.max(np.abs(ref)))
        assert err <= RTOL, f"parameter {name} differs by {err:.3g} relative"


@pytest.mark.slow
def test_makemore_mlp_trains_as_torch(float64):
    ex = _example("makemore_mlp")
    x, y = ex.dataset(ex.make_words(40, seed=1))
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, len(x), 16) for _ in range(STEPS)]
    sizes = {"emb": 4, "hidden": 12}
    torch.manual_seed(0)
    t_net = ex.build(torch.nn, **sizes).double()
    s_net = ex.build(snn, **sizes)
    _copy_weights(t_net, s_net)
    w0 = t_net[0].weight.detach().numpy().copy()
    t_opt = torch.optim.SGD(t_net.parameters(), lr=0.1, momentum=0.9)
    ref = []
    for b in batches:
        t_opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(t_net(torch.tensor(x[b])), torch.tensor(y[b]))
        loss.backward()
        t_opt.step()
        ref.append(loss.item())
    s_opt = symbp.optim.SGD(s_net.parameters(), lr=0.1, momentum=0.9)
    model = symbp.compile(s_net, snn.CrossEntropyLoss(), s_opt)
    losses = [model.step(x[b], y[b]) for b in batches]
    # the run moves (a trajectory standing still would compare nothing); the minibatches
    # differ, so the losses need not fall in 5 steps
    assert np.max(np.abs(t_net[0].weight.detach().numpy() - w0)) > 1e-3
    _assert_same(losses, ref, s_net, t_net)
    # sampling from both: the same names from the same draws
    with torch.no_grad():
        t_names = ex.sample(lambda c: t_net(torch.tensor(c)).numpy(), 3)
    assert ex.sample(lambda c: model.predict(c), 3) == t_names


@pytest.mark.slow
def test_small_gpt_trains_as_torch_and_samples_the_same(float64):
    ex = _example("small_gpt")
    text = ex.make_text(20)
    chars = ex.vocabulary(text)
    data = ex.encode(text, chars)
    dims = {"vocab": len(chars), "block": 6, "n_layer": 1, "n_head": 2, "n_embd": 8, "tie": True}
    torch.manual_seed(0)
    t_net = ex.build(torch, torch.nn, torch.nn.functional, **dims).double()
    s_net = ex.build(symbp, snn, F, **dims)
    _copy_weights(t_net, s_net)
    steps, lr = STEPS, 1e-2
    data_batches = list(ex.batches(data, dims["block"], 3, steps))
    t_opt = torch.optim.AdamW(t_net.parameters(), lr=lr, weight_decay=0.1)
    t_loss = ex.lm_loss(torch, torch.nn.functional)
    ref = []
    for i, (x, y) in enumerate(data_batches):
        t_opt.param_groups[0]["lr"] = ex.cosine_lr(i, steps, lr, warmup=1)
        t_opt.zero_grad()
        loss = t_loss(t_net(torch.tensor(x)), torch.tensor(y))
        loss.backward()
        t_opt.step()
        ref.append(loss.item())
    s_opt = symbp.optim.AdamW(s_net.parameters(), lr=lr, weight_decay=0.1)
    model = symbp.compile(s_net, ex.lm_loss(symbp, F), s_opt)
    losses = []
    for i, (x, y) in enumerate(data_batches):
        s_opt.param_groups[0]["lr"] = ex.cosine_lr(i, steps, lr, warmup=1)
        losses.append(model.step(x, y))
    _assert_same(losses, ref, s_net, t_net)
    assert s_net.lm_head.weight is s_net.wte.weight  # still tied after training

    context = ex.encode("the ", chars)[None]
    with torch.no_grad():
        t_ids = ex.generate(lambda ids: t_net(torch.tensor(ids)).numpy(), context, 4, 6)

    def s_logits(ids):
        with symbp.no_grad():
            return s_net(symbp.tensor(ids)).numpy()

    np.testing.assert_array_equal(ex.generate(s_logits, context, 4, 6), t_ids)


def test_small_gpt_refuses_a_sequence_longer_than_its_positions(float64):
    ex = _example("small_gpt")
    net = ex.build(symbp, snn, F, vocab=5, block=4, n_layer=1, n_head=1, n_embd=4)
    with pytest.raises(ValueError, match="5 tokens is longer than the position embedding 'wpe'"):
        net(symbp.tensor(np.zeros((1, 5), np.int64)))
