"""A makemore-style character MLP language model (Bengio et al. 2003), compiled by symbp.

Each name is read one character at a time; the previous ``BLOCK`` characters (``.`` pads the
start) are looked up in an embedding table, the embeddings joined (Flatten), and a tanh
hidden layer predicts the next character (``.`` ends the name):

    Embedding(27, 10) -> Flatten -> Linear(30, 200) -> tanh -> Linear(200, 27)

The word list is generated (seeded, nothing downloaded): names made of syllables, so there is
structure to learn. Trained with SGD in minibatches, whole epochs in one compiled call
(``fit``), then names sampled from the model. With PyTorch installed, the first steps are
checked against it from the same initial weights.

    python examples/makemore_mlp.py                          # 10 epochs
    SYMBP_EXAMPLE_QUICK=1 python examples/makemore_mlp.py    # 2 epochs, as CI runs it
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

QUICK = os.environ.get("SYMBP_EXAMPLE_QUICK") == "1"
CHARS = ".abcdefghijklmnopqrstuvwxyz"  # '.' starts and ends every name
VOCAB, BLOCK, EMB, HIDDEN = len(CHARS), 3, 10, 200


def make_words(n: int = 2000, seed: int = 0) -> list[str]:
    """``n`` pronounceable names from onset-vowel-coda syllables (1 to 3 syllables)."""
    rng = np.random.default_rng(seed)
    onsets = [
        "b",
        "br",
        "c",
        "ch",
        "d",
        "f",
        "g",
        "h",
        "j",
        "k",
        "l",
        "m",
        "n",
        "p",
        "r",
        "s",
        "sh",
        "t",
        "th",
        "v",
        "w",
        "z",
        "",
    ]
    vowels = ["a", "e", "i", "o", "u", "ai", "ea", "y"]
    codas = ["", "", "", "n", "r", "l", "s", "th", "x"]
    words = []
    for _ in range(n):
        syllables = rng.integers(1, 4)
        words.append(
            "".join(
                rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
                for _ in range(syllables)
            )
        )
    return words


def dataset(words: list[str], block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Contexts [N, block] of character ids and the next character's id [N]."""
    xs, ys = [], []
    for w in words:
        context = [0] * block
        for ch in w + ".":
            ix = CHARS.index(ch)
            xs.append(context)
            ys.append(ix)
            context = [*context[1:], ix]
    return np.array(xs, np.int64), np.array(ys, np.int64)


def build(nn: Any, emb: int = EMB, hidden: int = HIDDEN, block: int = BLOCK) -> Any:
    """The model, written once: ``nn`` is ``torch.nn`` or ``symbp.nn``."""
    return nn.Sequential(
        nn.Embedding(VOCAB, emb),
        nn.Flatten(),
        nn.Linear(block * emb, hidden),
        nn.Tanh(),
        nn.Linear(hidden, VOCAB),
    )


def sample(logits_fn: Any, n: int, seed: int = 0, block: int = BLOCK) -> list[str]:
    """Names drawn from the model: ``logits_fn(context [1, block]) -> [1, VOCAB]``."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        context, name = [0] * block, ""
        while len(name) < 20:
            z = np.asarray(logits_fn(np.array([context])), np.float64)[0]
            p = np.exp(z - z.max())
            ix = int(rng.choice(VOCAB, p=p / p.sum()))
            if ix == 0:
                break
            name += CHARS[ix]
            context = [*context[1:], ix]
        out.append(name)
    return out


def main() -> None:
    import symbp
    from symbp import nn

    words = make_words(500 if QUICK else 2000)
    x, y = dataset(words)
    split = int(0.9 * len(x))
    symbp.manual_seed(0)
    net = build(nn)
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
    start = time.perf_counter()
    history = model.fit(
        x[:split],
        y[:split],
        epochs=2 if QUICK else 10,
        batch_size=32,
        seed=0,
        validation_data=(x[split:], y[split:]),
        verbose=1,
    )
    seconds = time.perf_counter() - start
    dev = model.evaluate(x[split:], y[split:])["loss"]
    print(f"{len(x)} examples, dev loss {dev:.3f} (uniform: {np.log(VOCAB):.3f}), {seconds:.2f} s")
    print("samples:", ", ".join(sample(lambda c: model.predict(c), 8)))
    assert history["loss"][-1] < history["loss"][0]
    assert dev < np.log(VOCAB) - 0.5, dev  # well below guessing
    print("all checks passed")


if __name__ == "__main__":
    main()
