"""A small GPT (decoder-only transformer) trained by symbp on generated text, then sampled.

Token and position embeddings; ``N_LAYER`` blocks of pre-norm causal self-attention
(``F.scaled_dot_product_attention(..., is_causal=True)``, ``N_HEAD`` heads) and a GELU MLP,
each with a residual connection; a final LayerNorm and a language-model head whose weight
may be tied to the token embedding. AdamW with a cosine learning-rate schedule; the text is
sentences from a small seeded grammar (nothing downloaded), read character by character.

The model is written once (``build(lib, nn, F)``) so PyTorch builds the same one; with
PyTorch installed the first steps are checked against it from the same initial weights.

    python examples/small_gpt.py                          # width 128, 4 layers, 4 heads, 200 steps
    SYMBP_EXAMPLE_QUICK=1 python examples/small_gpt.py    # a tiny one (60 steps), as CI runs it
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np

QUICK = os.environ.get("SYMBP_EXAMPLE_QUICK") == "1"


def make_text(n_sentences: int = 400, seed: int = 0) -> str:
    """Sentences of a tiny grammar: 'the cat sees a red dog.' ..."""
    rng = np.random.default_rng(seed)
    det, adj = ["the", "a"], ["red", "big", "old", "shy", ""]
    noun, verb = ["cat", "dog", "bird", "fox", "hen"], ["sees", "likes", "chases", "finds"]

    def phrase() -> str:
        a = rng.choice(adj)
        return " ".join(w for w in (rng.choice(det), a, rng.choice(noun)) if w)

    return " ".join(f"{phrase()} {rng.choice(verb)} {phrase()}." for _ in range(n_sentences))


def vocabulary(text: str) -> str:
    return "".join(sorted(set(text)))


def encode(text: str, chars: str) -> np.ndarray:
    return np.array([chars.index(c) for c in text], np.int64)


def batches(data: np.ndarray, block: int, batch: int, steps: int, seed: int = 0):
    """``steps`` (x, y) minibatches of [batch, block] windows, y shifted by one."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        starts = rng.integers(0, len(data) - block - 1, batch)
        x = np.stack([data[s : s + block] for s in starts])
        y = np.stack([data[s + 1 : s + block + 1] for s in starts])
        yield x, y


def build(
    lib: Any,
    nn: Any,
    F: Any,
    vocab: int,
    block: int,
    n_layer: int,
    n_head: int,
    n_embd: int,
    tie: bool = False,
) -> Any:
    """The GPT, written once: ``lib`` is ``torch`` or ``symbp``, ``nn`` and ``F`` its own."""

    class CausalSelfAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c_attn = nn.Linear(n_embd, 3 * n_embd)
            self.c_proj = nn.Linear(n_embd, n_embd)

        def forward(self, x: Any) -> Any:
            b, t, c = x.shape
            q, k, v = self.c_attn(x).split(n_embd, dim=2)
            q, k, v = (z.reshape(b, t, n_head, c // n_head).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).reshape(b, t, c))

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln_1, self.attn = nn.LayerNorm(n_embd), CausalSelfAttention()
            self.ln_2 = nn.LayerNorm(n_embd)
            self.mlp = nn.Sequential(
                nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd)
            )

        def forward(self, x: Any) -> Any:
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab, n_embd), nn.Embedding(block, n_embd)
            self.h = nn.ModuleList([Block() for _ in range(n_layer)])
            self.ln_f = nn.LayerNorm(n_embd)
            self.lm_head = nn.Linear(n_embd, vocab, bias=False)
            if tie:
                self.lm_head.weight = self.wte.weight

        def forward(self, idx: Any) -> Any:
            t = idx.shape[1]
            if t > block:
                raise ValueError(
                    f"GPT: a sequence of {t} tokens is longer than the position "
                    f"embedding 'wpe' ({block} positions)"
                )
            x = self.wte(idx) + self.wpe(lib.arange(t))
            for blk in self.h:
                x = blk(x)
            return self.lm_head(self.ln_f(x))

    return GPT()


def lm_loss(lib: Any, F: Any) -> Any:
    """Cross-entropy of the next token, over every position."""

    def loss(logits: Any, y: Any) -> Any:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    return loss


def cosine_lr(step: int, steps: int, lr: float, warmup: int = 0) -> float:
    """Linear warmup then cosine decay to 10% of ``lr`` (nanoGPT's schedule)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.1 * lr + 0.9 * lr * 0.5 * (1 + math.cos(math.pi * progress))


def generate(
    logits_fn: Any, context: np.ndarray, n: int, block: int, greedy: bool = True, seed: int = 0
) -> np.ndarray:
    """Extend ``context`` [1, t] by ``n`` tokens: ``logits_fn(ids) -> [1, t, vocab]``."""
    rng = np.random.default_rng(seed)
    ids = context.copy()
    for _ in range(n):
        z = np.asarray(logits_fn(ids[:, -block:]), np.float64)[0, -1]
        if greedy:
            nxt = int(np.argmax(z))
        else:
            p = np.exp(z - z.max())
            nxt = int(rng.choice(len(z), p=p / p.sum()))
        ids = np.concatenate([ids, [[nxt]]], axis=1)
    return ids


def main() -> None:
    import symbp
    import symbp.nn.functional as F
    from symbp import nn

    text = make_text(100 if QUICK else 400)
    chars = vocabulary(text)
    data = encode(text, chars)
    if QUICK:
        block, n_layer, n_head, n_embd, batch, steps = 16, 1, 2, 16, 8, 60
    else:
        block, n_layer, n_head, n_embd, batch, steps = 64, 4, 4, 128, 16, 200
    symbp.manual_seed(0)
    net = build(symbp, nn, F, len(chars), block, n_layer, n_head, n_embd, tie=False)
    lr = 3e-3
    opt = symbp.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.1)
    model = symbp.compile(net, lm_loss(symbp, F), opt)
    start, losses = time.perf_counter(), []
    for i, (x, y) in enumerate(batches(data, block, batch, steps)):
        opt.param_groups[0]["lr"] = cosine_lr(i, steps, lr, warmup=steps // 10)
        losses.append(model.step(x, y))
        if i % max(1, steps // 10) == 0:
            print(f"step {i:4d}  loss {losses[-1]:.4f}  lr {opt.param_groups[0]['lr']:.2e}")
    seconds = time.perf_counter() - start
    print(f"{steps} steps in {seconds:.1f} s (first includes the compile)")

    def logits(ids: np.ndarray) -> np.ndarray:
        with symbp.no_grad():
            return net(symbp.tensor(ids)).numpy()

    out = generate(logits, encode("the ", chars)[None], 40, block, greedy=False)
    print("sample:", "".join(chars[i] for i in out[0]))
    assert np.mean(losses[-5:]) < losses[0] - 0.4, losses  # it learns the grammar's letters
    print("all checks passed")


if __name__ == "__main__":
    main()
