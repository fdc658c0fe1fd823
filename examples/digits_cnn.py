"""A small CNN on scikit-learn's 8×8 digits (bundled with symbp), trained eagerly.

    Conv2d(1, 16, 3, padding=1) - ReLU - MaxPool2d(2)       1×8×8 -> 16×4×4
    Conv2d(16, 32, 3, padding=1) - ReLU - MaxPool2d(2)      -> 32×2×2
    Flatten - Dropout(0.25) - Linear(128, 10)

Adam (lr 0.005), batch 32, cross-entropy, 10 epochs on a seeded 80/20 split: 98.6% test
accuracy on the held-out 20% (above 97% from epoch 7), in about 9 s on 2 cores. Eager mode:
every op runs through the NumPy reference, and one symbolic derivation of the backward graph
serves every step. On a busy machine OPENBLAS_NUM_THREADS=1 keeps BLAS from spinning.

    python examples/digits_cnn.py [--epochs N]
    SYMBP_EXAMPLE_QUICK=1 python examples/digits_cnn.py   # 2 epochs, as CI runs it
"""

import argparse
import os
import time

import numpy as np

import symbp
from symbp import nn
from symbp.datasets import load_digits, train_test_split
from symbp.models import digits_cnn

BATCH, LR = 32, 0.005


def accuracy(model, X, y):
    model.eval()  # dropout off
    logits = model(symbp.tensor(X)).numpy()
    model.train()
    return float(np.mean(logits.argmax(1) == y))


def main(epochs: int = 10) -> float:
    X, y = load_digits()
    X = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)  # pixels 0..16 -> 0..1, NCHW
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
    symbp.manual_seed(0)
    model = digits_cnn()
    opt = symbp.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    order_rng = np.random.default_rng(0)
    start = time.perf_counter()
    for epoch in range(epochs):
        order = order_rng.permutation(len(X_train))
        total = 0.0
        for i in range(0, len(order), BATCH):
            idx = order[i : i + BATCH]
            opt.zero_grad()
            loss = loss_fn(model(symbp.tensor(X_train[idx])), symbp.tensor(y_train[idx]))
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        acc = accuracy(model, X_test, y_test)
        print(
            f"epoch {epoch + 1}: loss {total / len(X_train):.4f}  test accuracy {acc:.4f}  "
            f"({time.perf_counter() - start:.1f} s)"
        )
    return acc


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    quick = os.environ.get("SYMBP_EXAMPLE_QUICK") == "1"
    parser.add_argument("--epochs", type=int, default=2 if quick else 10)
    epochs = parser.parse_args().epochs
    acc = main(epochs)
    # the numbers: above 85% after 2 epochs, above 97% after 7 (see the docstring)
    assert acc >= (0.97 if epochs >= 7 else 0.85 if epochs >= 2 else 0.0), acc
    print("all checks passed")
