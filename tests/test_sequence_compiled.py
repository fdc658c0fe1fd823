"""Issue 17: small models made of the sequence layers, compiled (symbp.compile), follow
PyTorch's training trajectory: five steps in float64, the same losses and parameters to
1e-10 relative, from the same initial weights (PyTorch's, loaded by state_dict)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import symbp

torch = pytest.importorskip("torch")
STEPS, RTOL = 5, 1e-10
V, T, C = 7, 4, 6


def encoder_model(lib: Any) -> Any:
    """Embedding (padding row) + position embedding -> a pre-norm GELU encoder layer with a
    causal mask (MultiheadAttention, LayerNorm) -> RMSNorm -> Linear."""
    nn = lib.nn

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok, self.pos = nn.Embedding(V, C, padding_idx=0), nn.Embedding(T, C)
            self.block = nn.TransformerEncoderLayer(
                C, 2, 8, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
            )
            self.norm, self.head = nn.RMSNorm(C), nn.Linear(C, V)

        def forward(self, x: Any) -> Any:
            h = self.tok(x) + self.pos(lib.arange(x.shape[1]))
            mask = np.triu(np.ones((T, T), bool), 1)
            h = self.block(h, src_mask=lib.tensor(mask) if lib is torch else mask)
            return self.head(self.norm(h))

    return M()


def bag_model(lib: Any) -> Any:
    """EmbeddingBag (mean of each row's ids) -> GroupNorm over [B, 4, 1] -> Linear."""
    nn = lib.nn

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bag, self.gn = nn.EmbeddingBag(V, 4, mode="mean"), nn.GroupNorm(2, 4)
            self.head = nn.Linear(4, V)

        def forward(self, x: Any) -> Any:
            b = self.bag(x)
            return self.head(self.gn(b.reshape(b.shape[0], 4, 1)).reshape(b.shape[0], 4))

    return M()


def seq_loss(lib: Any) -> Any:
    f = lib.nn.functional

    def loss(out: Any, y: Any) -> Any:
        return f.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))

    return loss


@pytest.mark.slow
@pytest.mark.parametrize("make", [encoder_model, bag_model], ids=["encoder", "bag"])
def test_compiled_training_follows_torch(make):
    rng = np.random.default_rng(0)
    x = rng.integers(0, V, (3, T))
    y = rng.integers(0, V, (3, T) if make is encoder_model else (3,))
    torch.manual_seed(0)
    t_net = make(torch).double()
    with torch.no_grad():  # affine parameters away from ones and zeros
        for p in t_net.parameters():
            p.add_(torch.tensor(rng.standard_normal(tuple(p.shape)) * 0.1))
    default = symbp.get_default_dtype()
    symbp.set_default_dtype(symbp.float64)
    try:
        s_net = make(symbp)
    finally:
        symbp.set_default_dtype(default)
    s_net.load_state_dict({k: v.numpy().copy() for k, v in t_net.state_dict().items()})
    t_opt = torch.optim.AdamW(t_net.parameters(), lr=0.01)
    ref = []
    for _ in range(STEPS):
        t_opt.zero_grad()
        loss = seq_loss(torch)(t_net(torch.tensor(x)), torch.tensor(y))
        loss.backward()
        t_opt.step()
        ref.append(loss.item())
    model = symbp.compile(s_net, seq_loss(symbp), symbp.optim.AdamW(s_net.parameters(), lr=0.01))
    losses = [model.step(x, y) for _ in range(STEPS)]
    np.testing.assert_allclose(losses, ref, rtol=RTOL, atol=0)
    t_params = dict(t_net.named_parameters())
    for name, p in s_net.named_parameters():
        r = t_params[name].detach().numpy()
        err = np.max(np.abs(np.asarray(p.data) - r)) / max(1.0, np.max(np.abs(r)))
        assert err <= RTOL, f"{name} differs by {err:.3g}"
